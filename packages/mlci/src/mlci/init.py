"""`mlci init`: editable copies of mlci's defaults, written into a repository.

What it writes: ``[tool.mlci]`` in pyproject.toml (the model module it is given or finds),
the Jenkinsfile, the nightly scoring job's jenkins/score.Jenkinsfile, .ci/bootstrap (installs
what ``[tool.mlci.bootstrap]`` lists), tasks.py, the quality gate, the model Dockerfile and
.dockerignore, and .gitignore entries for mlci's folders. It never overwrites: when any of
those files exists (or pyproject.toml already has ``[tool.mlci]``) it writes nothing and says
which. ``dry_run`` shows the plan only.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.errors import ConfigError
from mlci.resources import template

CREATE, APPEND = "create", "append"
#: (path in the repository, template name, file mode)
COPIES = (
    ("Jenkinsfile", "Jenkinsfile", 0o644),
    ("jenkins/score.Jenkinsfile", "score.Jenkinsfile", 0o644),
    (".ci/bootstrap", "bootstrap", 0o755),
    ("tasks.py", "tasks.py", 0o644),
    ("sonarqube/quality-gate.toml", "quality-gate.toml", 0o644),
    ("Dockerfile", "Dockerfile", 0o644),
    (".dockerignore", "dockerignore", 0o644),
)
# mlci's folders, and the platform's generated secrets (`mlci platform.up` writes them there).
IGNORED = ("reports/", ".mlci/", ".venv/", "services/.env")


@dataclass(frozen=True)
class Planned:
    path: str
    action: str
    content: str
    mode: int = 0o644


def _project(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} cannot be read as TOML",
            str(exc),
            "fix it first: mlci init adds [tool.mlci] to it",
        ) from None


def find_module(root: Path, data: Mapping[str, Any]) -> str:
    """The model package's import name: from [project] name, else the one package in src/."""
    name = str(data.get("project", {}).get("name", ""))
    candidates = [re.sub(r"[-.]+", "_", name).lower()] if name else []
    for folder in (root / "src", root):
        for candidate in candidates:
            if (folder / candidate / "__init__.py").is_file():
                return candidate
    found = sorted(p.parent.name for p in (root / "src").glob("*/__init__.py"))
    if len(found) == 1:
        return found[0]
    raise ConfigError(
        "mlci init cannot tell which package holds the model",
        f"pyproject.toml names {name or 'no project'}; src/ holds "
        f"{', '.join(found) or 'no package'}",
        "name it: mlci init --module <import name> (it must have train_and_evaluate)",
    )


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def tool_table(root: Path, module: str, name: str, metric: str, lower: bool) -> str:
    import mlci

    layout_src = (root / "src").is_dir()
    sources = ["src"] if layout_src else [module]
    tests = ["tests"] if (root / "tests").is_dir() else []
    version = mlci.__version__
    pinned = "mlci[all]" if "+" in version or version == "0.0.0" else f"mlci[all]=={version}"
    direction = f'\ndirections = {{ {metric} = "lower" }}' if lower else ""
    return f"""
[tool.mlci]
# mlci's settings (written by `mlci init`; `mlci config` shows every setting and its source).
reports_dir = "reports"
state_dir = ".mlci"

[tool.mlci.lint]
paths = {_toml_list(sources + tests)}

[tool.mlci.test]
paths = {_toml_list(tests or ["tests"])}
cov = ["{module}"]

[tool.mlci.sonar]
project_key = "{name}"
sources = {_toml_list(sources)}
tests = {_toml_list(tests)}

[tool.mlci.model]
module = "{module}"
package = "."

[tool.mlci.mlflow]
tracking_uri = ""  # empty: mlci starts a local MLflow server
experiment = "{name}"
registered_model = "{name}"

[tool.mlci.promotion]
primary_metric = "{metric}"{direction}

[tool.mlci.release]
packages = ["."]
repository_url = ""  # empty: mlci starts a local package index
# Untagged commits release as .devN versions; a tag vX.Y.Z on HEAD releases X.Y.Z.
allow_dev = true

[tool.mlci.bootstrap]
# What .ci/bootstrap installs into .venv (pip arguments).
requirements = ["{pinned}", "-e ."]
"""


def plan(
    root: Path, module: str = "", metric: str = "f1_macro", lower: bool = False
) -> list[Planned]:
    """What init would write into ``root``; a ConfigError when any of it is there already."""
    data = _project(root)
    existing = [path for path, _, _ in COPIES if (root / path).exists()]
    if "mlci" in data.get("tool", {}):
        existing.insert(0, "pyproject.toml ([tool.mlci])")
    if existing:
        raise ConfigError(
            f"mlci init would overwrite {', '.join(existing)}",
            "init writes only files that are not there, so that nothing of yours is lost",
            "move them aside (or delete them) and run it again; mlci init --dry-run shows "
            "what it writes",
        )
    module = module or find_module(root, data)
    name = str(data.get("project", {}).get("name") or root.resolve().name)
    planned = [
        Planned(
            "pyproject.toml",
            APPEND if (root / "pyproject.toml").is_file() else CREATE,
            tool_table(root, module, name, metric, lower),
        )
    ]
    planned += [Planned(path, CREATE, template(name_), mode) for path, name_, mode in COPIES]
    gitignore = root / ".gitignore"
    present = set(gitignore.read_text().split()) if gitignore.is_file() else set()
    missing = [entry for entry in IGNORED if entry not in present]
    if missing:
        text = "\n# What mlci writes while it runs\n" + "\n".join(missing) + "\n"
        planned.append(Planned(".gitignore", APPEND if gitignore.is_file() else CREATE, text))
    return planned


def apply(root: Path, planned: list[Planned]) -> None:
    for item in planned:
        path = root / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if item.action == APPEND:
            before = path.read_text(encoding="utf-8")
            joiner = "" if before.endswith("\n") or not before else "\n"
            path.write_text(before + joiner + item.content, encoding="utf-8")
        else:
            path.write_text(item.content.lstrip("\n"), encoding="utf-8")
            path.chmod(item.mode)
