"""stages.lint on tiny temporary projects (runs ruff as a subprocess, as the stage does)."""

from __future__ import annotations

import json

import pytest

from mlci.context import StageContext
from mlci.errors import ConfigError
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
    assert result.summary == "0 finding(s)"
    assert lines == ["lint: ruff check src"]
    report = json.loads((tmp_path / "reports" / "lint.json").read_text())
    assert report["findings"] == 0
    assert json.loads((tmp_path / "reports" / "ruff.json").read_text()) == []


def test_findings_are_reported_and_the_gate_decides(lint_project, tmp_path):
    (tmp_path / "src" / "dirty.py").write_text("import os\nimport sys\n")
    ctx, lines = lint_project()
    result = lint_stage.run(ctx)
    # One place decides how many findings a build may have: the gate's violations condition.
    assert result.status == PASSED
    assert result.summary == "2 finding(s) (the gate decides)"
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
