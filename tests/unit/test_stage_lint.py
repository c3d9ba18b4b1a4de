"""stages.lint on tiny temporary projects (runs ruff as a subprocess, as the stage does)."""

from __future__ import annotations

import json
import subprocess

import pytest

from mlci.context import StageContext
from mlci.errors import ConfigError, LintFailed
from mlci.stages import PASSED
from mlci.stages import lint as lint_stage

RUFF = """
[tool.ruff]
line-length = 100

[tool.ruff.lint]
select = ["F"]
"""


@pytest.fixture
def lint_project(write_project, load, tmp_path):
    write_project('[tool.mlci.lint]\npaths = ["src"]', extra=RUFF)
    src = tmp_path / "src"
    src.mkdir()
    (src / "clean.py").write_text("def add(a, b):\n    return a + b\n")

    def context():
        lines: list[str] = []
        return StageContext(load(), log=lines.append), lines

    return context


def test_clean_code_passes(lint_project, tmp_path):
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    assert result.status == PASSED
    assert result.summary == "0 finding(s): 0 ruff, 0 format"
    assert lines == ["lint: ruff check src", "lint: ruff format --check src"]
    report = json.loads((tmp_path / "reports" / "lint.json").read_text())
    assert report["findings"] == 0
    assert json.loads((tmp_path / "reports" / "ruff.json").read_text()) == []


def test_findings_are_reported_and_the_gate_decides(lint_project, tmp_path):
    (tmp_path / "src" / "dirty.py").write_text("import os\nimport sys\n")
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    # One place decides how many findings a build may have: the gate's violations condition.
    assert result.status == PASSED
    assert result.summary == "2 finding(s): 2 ruff, 0 format (the gate decides)"
    assert "  src/dirty.py:1:8: F401 `os` imported but unused" in lines
    assert "  src/dirty.py:2:8: F401 `sys` imported but unused" in lines
    assert any("2 can be fixed with `ruff check --fix`" in line for line in lines)
    # the gate reads the count from lint.json
    assert json.loads((tmp_path / "reports" / "lint.json").read_text())["findings"] == 2


def test_paths_that_do_not_exist_are_a_config_error(write_project, load, tmp_path):
    write_project('[tool.mlci.lint]\npaths = ["src", "missing", "also/missing.py"]')
    (tmp_path / "src").mkdir()
    ctx = StageContext(load(), log=lambda _: None)
    with pytest.raises(ConfigError) as info:
        lint_stage.run(ctx)
    assert info.value.what == ("lint.paths names paths that do not exist: missing, also/missing.py")
    assert str(tmp_path.resolve()) in info.value.why
    assert "MLCI_LINT_PATHS" in info.value.fix
    assert not (tmp_path / "reports" / "lint.json").exists()


def test_fix_hint_does_not_count_unsafe_fixes(lint_project, tmp_path):
    (tmp_path / "src" / "unused_var.py").write_text("def f():\n    x = 1\n")
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    assert result.details["findings"] == 1 and result.details["fixable"] == 0
    assert not any("ruff check --fix" in line for line in lines)


# ---- ruff format --check and mypy ---------------------------------------------------------

MYPY_STRICT = "\n[tool.mypy]\nstrict = true\n"


def test_a_file_ruff_would_reformat_is_one_finding(lint_project, tmp_path):
    (tmp_path / "src" / "ugly.py").write_text("x=1\ny = {'a':1}\n")
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    assert (result.details["findings"], result.details["ruff"], result.details["format"]) == (
        1,
        0,
        1,
    )
    assert result.summary == "1 finding(s): 0 ruff, 1 format (the gate decides)"
    assert "  src/ugly.py:1:2: unformatted File would be reformatted" in lines
    assert "lint: `ruff format src` reformats 1 file(s)" in lines
    report = json.loads((tmp_path / "reports" / "ruff-format.json").read_text())
    assert [item["filename"] for item in report] == [str(tmp_path / "src" / "ugly.py")]
    # the check changes nothing: formatting is the developer's to apply
    assert (tmp_path / "src" / "ugly.py").read_text() == "x=1\ny = {'a':1}\n"


def test_format_false_skips_the_format_check_and_its_old_report(lint_project, tmp_path):
    (tmp_path / "src" / "ugly.py").write_text("x=1\n")
    ctx, _ = lint_project()
    lint_stage.run(ctx)
    assert (tmp_path / "reports" / "ruff-format.json").is_file()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('paths = ["src"]', 'paths = ["src"]\nformat = false')
    )
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    assert result.details["format"] is None and result.summary == "0 finding(s)"
    assert lines == ["lint: ruff check src"]
    assert not (tmp_path / "reports" / "ruff-format.json").exists()


def _typecheck(write_project, load, tmp_path, mypy_config=MYPY_STRICT):
    write_project(
        '[tool.mlci.lint]\npaths = ["src"]\ntypecheck = ["src"]', extra=RUFF + mypy_config
    )
    (tmp_path / "src").mkdir(exist_ok=True)
    lines: list[str] = []
    return StageContext(load(), log=lines.append), lines


def test_mypy_errors_under_the_projects_own_config_are_findings(write_project, load, tmp_path):
    ctx, lines = _typecheck(write_project, load, tmp_path)
    (tmp_path / "src" / "untyped.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "src" / "typed.py").write_text(
        "def add(a: int, b: int) -> int:\n    return a + b\n"
    )
    result = lint_stage.run(ctx)
    assert result.details["mypy"] == 1 and result.details["findings"] == 1
    assert result.summary == "1 finding(s): 0 ruff, 0 format, 1 mypy (the gate decides)"
    assert "lint: mypy src" in lines
    assert any(
        line.startswith("  src/untyped.py:1:") and "no-untyped-def" in line for line in lines
    )
    report = json.loads((tmp_path / "reports" / "mypy.json").read_text())
    assert [(item["file"], item["code"]) for item in report] == [
        ("src/untyped.py", "no-untyped-def")
    ]
    # its cache goes to the state folder, not into the tree
    assert not (tmp_path / ".mypy_cache").exists()
    assert (tmp_path / ".mlci" / "mypy-cache").is_dir()


def test_a_mypy_configuration_mypy_rejects_is_a_lint_failure(write_project, load, tmp_path):
    ctx, _ = _typecheck(
        write_project, load, tmp_path, '\n[tool.mypy]\nplugins = ["no_such_plugin"]\n'
    )
    (tmp_path / "src" / "ok.py").write_text("X = 1\n")
    with pytest.raises(LintFailed) as info:
        lint_stage.run(ctx)
    assert info.value.what.startswith("mypy could not check the code (exit code 2)")
    assert "[tool.mypy]" in info.value.fix


def test_typecheck_paths_that_do_not_exist_are_a_config_error(write_project, load, tmp_path):
    write_project('[tool.mlci.lint]\npaths = ["src"]\ntypecheck = ["nowhere"]', extra=RUFF)
    (tmp_path / "src").mkdir()
    with pytest.raises(ConfigError) as info:
        lint_stage.run(StageContext(load(), log=lambda _: None))
    assert info.value.what == "lint.typecheck names paths that do not exist: nowhere"


# ---- hadolint over the project's Dockerfiles ------------------------------------------------

LATEST = 'FROM python:latest\nCMD ["python"]\n'  # DL3007: the one finding
PINNED = 'FROM python:3.11-slim\nCMD ["python"]\n'


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_hadolint_finds_a_real_finding_and_the_gate_counts_it(lint_project, tmp_path):
    (tmp_path / "Dockerfile").write_text(LATEST)  # the image stage's default Dockerfile
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    assert result.status == PASSED
    assert result.summary == "1 finding(s): 0 ruff, 0 format, 1 hadolint (the gate decides)"
    assert "lint: hadolint Dockerfile" in lines
    shown = [line for line in lines if "DL3007" in line]
    assert len(shown) == 1 and shown[0].startswith("  Dockerfile:1:1: DL3007 Using latest")
    assert shown[0].endswith("(warning)")
    report = json.loads((tmp_path / "reports" / "hadolint.json").read_text())
    assert [(f["file"], f["line"], f["code"]) for f in report] == [("Dockerfile", 1, "DL3007")]
    lint = json.loads((tmp_path / "reports" / "lint.json").read_text())
    assert (lint["findings"], lint["ruff"], lint["hadolint"]) == (1, 0, 1)
    assert lint["dockerfiles"] == ["Dockerfile"]


def test_ruff_and_hadolint_findings_add_up(lint_project, tmp_path):
    (tmp_path / "src" / "dirty.py").write_text("import os\n")
    (tmp_path / "Dockerfile").write_text(LATEST)
    ctx, _ = lint_project()
    result = lint_stage.run(ctx)
    assert result.details["findings"] == 2
    assert result.summary == "2 finding(s): 1 ruff, 0 format, 1 hadolint (the gate decides)"


def test_a_clean_dockerfile_has_no_findings(lint_project, tmp_path):
    (tmp_path / "Dockerfile").write_text(PINNED)
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    assert result.summary == "0 finding(s): 0 ruff, 0 format, 0 hadolint"
    assert lines == [
        "lint: ruff check src",
        "lint: ruff format --check src",
        "lint: hadolint Dockerfile",
    ]
    assert json.loads((tmp_path / "reports" / "hadolint.json").read_text()) == []


def test_the_repositorys_hadolint_yaml_is_respected(lint_project, tmp_path):
    (tmp_path / "Dockerfile").write_text(LATEST)
    (tmp_path / ".hadolint.yaml").write_text("ignored:\n  - DL3007\n")
    ctx, _ = lint_project()
    assert lint_stage.run(ctx).details["hadolint"] == 0


def test_an_inline_ignore_is_respected(lint_project, tmp_path):
    (tmp_path / "Dockerfile").write_text("# hadolint ignore=DL3007\n" + LATEST)
    ctx, _ = lint_project()
    assert lint_stage.run(ctx).details["hadolint"] == 0


def test_a_hadolint_yaml_hadolint_cannot_read_is_a_lint_failure(lint_project, tmp_path):
    # hadolint itself would go on without the file and count what it meant to ignore
    (tmp_path / "Dockerfile").write_text(LATEST)
    (tmp_path / ".hadolint.yaml").write_text("ignored: DL3007: [\n")
    ctx, _ = lint_project()
    with pytest.raises(LintFailed) as info:
        lint_stage.run(ctx)
    assert info.value.what.startswith("hadolint could not check the Dockerfiles")
    assert ".hadolint.yaml" in info.value.fix


def test_dockerfiles_git_lists_are_linted_and_ignored_ones_are_not(lint_project, tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("build/\n")
    for name in ("services/api/Dockerfile", "docker/gpu.Dockerfile", "build/Dockerfile"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(LATEST)
    (tmp_path / "docker" / "notes.txt").write_text("FROM python:latest\n")
    _git(tmp_path, "add", "services/api/Dockerfile")  # tracked; gpu.Dockerfile is new
    ctx, _ = lint_project()
    result = lint_stage.run(ctx)
    # build/ is git-ignored; there is no root Dockerfile (mlci's shipped one is not linted)
    assert result.details["dockerfiles"] == ["docker/gpu.Dockerfile", "services/api/Dockerfile"]
    assert result.details["hadolint"] == 2


def test_the_configured_dockerfile_is_linted_once(write_project, load, tmp_path):
    write_project(
        '[tool.mlci.lint]\npaths = ["src"]\n\n[tool.mlci.image]\ncontext = "docker"\n'
        'dockerfile = "model.Dockerfile"',
        extra=RUFF,
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "model.Dockerfile").write_text(LATEST)
    _git(tmp_path, "init", "-q")
    ctx = StageContext(load(), log=lambda _: None)
    result = lint_stage.run(ctx)
    assert result.details["dockerfiles"] == ["docker/model.Dockerfile"]
    assert result.details["hadolint"] == 1


def test_without_hadolint_one_line_says_so_and_ruff_still_runs(lint_project, tmp_path, monkeypatch):
    monkeypatch.setattr(lint_stage, "HADOLINT", "hadolint-is-not-installed-here")
    (tmp_path / "Dockerfile").write_text(LATEST)
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    assert result.status == PASSED
    assert result.summary == "0 finding(s): 0 ruff, 0 format"
    assert lines == [
        "lint: ruff check src",
        "lint: ruff format --check src",
        "lint: hadolint is not installed, 1 Dockerfile(s) not checked (it comes with mlci's "
        "'lint' extra: pip install 'mlci[lint]')",
    ]
    lint = json.loads((tmp_path / "reports" / "lint.json").read_text())
    assert lint["hadolint"] is None and lint["findings"] == 0
    assert not (tmp_path / "reports" / "hadolint.json").exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Dockerfile", True),
        ("jenkins/agent/Dockerfile", True),
        ("benchmarks/single-stage.Dockerfile", True),
        ("gpu.dockerfile", True),
        ("Containerfile", True),
        ("packages/mlci/templates/dockerignore", False),
        ("Dockerfile.md", False),
        ("docs/Dockerfile-notes.txt", False),
        ("MyDockerfile", False),
    ],
)
def test_which_files_are_dockerfiles(name, expected):
    assert lint_stage.is_dockerfile(name) is expected


def test_an_earlier_hadolint_report_does_not_outlive_a_run_without_hadolint(
    lint_project, tmp_path, monkeypatch
):
    (tmp_path / "Dockerfile").write_text(LATEST)
    ctx, _ = lint_project()
    lint_stage.run(ctx)
    assert (tmp_path / "reports" / "hadolint.json").is_file()
    monkeypatch.setattr(lint_stage, "HADOLINT", "hadolint-is-not-installed-here")
    ctx, _ = lint_project()
    lint_stage.run(ctx)
    assert not (tmp_path / "reports" / "hadolint.json").exists()


def test_the_cache_inputs_change_with_a_dockerfile_and_hadolints_config(lint_project, tmp_path):
    (tmp_path / "Dockerfile").write_text(PINNED)
    ctx, _ = lint_project()
    before = lint_stage.inputs(ctx)
    assert before == lint_stage.inputs(ctx)  # the same tree gives the same inputs
    (tmp_path / "Dockerfile").write_text(LATEST)
    edited = lint_stage.inputs(ctx)
    assert edited["dockerfiles"] != before["dockerfiles"]
    (tmp_path / ".hadolint.yaml").write_text("ignored:\n  - DL3007\n")
    assert lint_stage.inputs(ctx)["config"] != edited["config"]
