"""The files mlci ships: templates for `mlci init`, and defaults for a repository without
its own copy (the quality gate, the model Dockerfile, the platform's Compose stack).

A repository's own file always wins; the shipped one is used only when the setting still
names the default path and nothing is there, and the stage says so.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mlci.settings import SOURCE_DEFAULT, Settings

#: Settings whose default path falls back to a shipped file, and the file.
SHIPPED_DEFAULTS = {
    "gate.file": "templates/quality-gate.toml",
    "image.dockerfile": "templates/Dockerfile",
}
#: The platform's folders, shipped in the wheel (see packages/mlci/hatch_build.py).
PLATFORM_FOLDERS = ("services", "jenkins", "sonarqube", "gitbucket")


def shipped(relative: str) -> Path:
    """A file inside the installed mlci package (wheels install as plain files)."""
    return Path(str(resources.files("mlci").joinpath(relative)))


def template(name: str) -> str:
    return shipped(f"templates/{name}").read_text(encoding="utf-8")


def setting_file(settings: Settings, key: str, path: Path) -> tuple[Path, bool]:
    """(the file to use, whether it is mlci's shipped default) for a file setting."""
    if path.exists() or settings.sources.get(key, SOURCE_DEFAULT) != SOURCE_DEFAULT:
        return path, False
    default = shipped(SHIPPED_DEFAULTS[key])
    return (default, True) if default.is_file() else (path, False)


def platform_file(settings: Settings, relative: str) -> Path:
    """A platform file (compose.yaml, the job template): the repository's, else mlci's."""
    own = settings.path(relative)
    if own.exists() or Path(relative).is_absolute():
        return own
    candidate = shipped(f"platform_files/{relative}")
    return candidate if candidate.exists() else own


def gate_file(settings: Settings) -> Path:
    """The quality-gate definition: gate.file, else the gate mlci ships."""
    return setting_file(settings, "gate.file", settings.path(settings.gate.file))[0]
