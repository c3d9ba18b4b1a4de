"""mlci init: what it writes, that it never overwrites, and that this repository is its output."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mlci.errors import ConfigError
from mlci.init import COPIES, apply, plan
from mlci.resources import template
from mlci.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "name"), [(p, n) for p, n, _ in COPIES if p not in ("Dockerfile", ".dockerignore")]
)
def test_this_repository_holds_what_init_writes(path: str, name: str) -> None:
    # This repository's Dockerfile and .dockerignore are its own (two packages in one image);
    # the rest is exactly what `mlci init` writes into any repository.
    assert (REPO / path).read_text() == template(name)


def _repository(tmp_path: Path) -> Path:
    (tmp_path / "src" / "my_model").mkdir(parents=True)
    (tmp_path / "src" / "my_model" / "__init__.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-model"\nversion = "1.0"\n')
    (tmp_path / ".gitignore").write_text(".venv/\n")
    return tmp_path


def test_init_writes_settings_and_files_that_mlci_loads(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    planned = plan(root, metric="rmse", lower=True)
    assert [(p.path, p.action) for p in planned] == [
        ("pyproject.toml", "append"),
        *[(path, "create") for path, _, _ in COPIES],
        (".gitignore", "append"),
    ]
    apply(root, planned)
    table = tomllib.loads((root / "pyproject.toml").read_text())
    assert table["project"]["name"] == "my-model"  # the user's part is kept
    settings = load_settings(root=root, environ={})
    assert settings.model.module == "my_model"
    assert settings.mlflow.registered_model == "my-model"
    assert settings.promotion.primary_metric == "rmse"
    assert settings.promotion.directions == {"rmse": "lower"}
    assert settings.lint.paths == ["src", "tests"]
    assert settings.bootstrap.requirements[-1] == "-e ."
    assert (root / ".ci" / "bootstrap").stat().st_mode & 0o111
    lines = (root / ".gitignore").read_text().splitlines()
    assert [line for line in lines if line.endswith("/")] == [".venv/", "reports/", ".mlci/"]
    assert "services/.env" in lines  # the platform's secrets never get committed


def test_init_never_overwrites_and_writes_nothing_when_it_would(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    (root / "Jenkinsfile").write_text("mine\n")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as info:
        plan(root)
    assert info.value.what == "mlci init would overwrite Jenkinsfile"
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    (root / "Jenkinsfile").unlink()
    apply(root, plan(root))
    with pytest.raises(ConfigError) as info:
        plan(root)
    assert info.value.what.startswith("mlci init would overwrite pyproject.toml ([tool.mlci])")


def test_init_asks_for_the_module_when_it_cannot_tell(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "thing"\nversion = "1"\n')
    for name in ("a", "b"):
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / "__init__.py").write_text("")
    with pytest.raises(ConfigError) as info:
        plan(tmp_path)
    assert info.value.why == "pyproject.toml names thing; src/ holds a, b"
    assert "--module" in info.value.fix
    assert plan(tmp_path, module="b")[0].content.count('module = "b"') == 1


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    root = _repository(tmp_path)
    before = sorted(p.name for p in root.rglob("*"))
    argv = [sys.executable, "-m", "mlci", "init", "--dry-run"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}  # a user's shell
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "would create Jenkinsfile" in proc.stdout
    assert 'module = "my_model"' in proc.stdout
    assert sorted(p.name for p in root.rglob("*")) == before
