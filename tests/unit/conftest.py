"""Fixtures for mlci's unit tests: temporary projects with their own [tool.mlci] table.

Every settings object here is loaded with ``root=`` and ``environ=`` given explicitly, so the
developer's own environment and the repository's pyproject never leak into a test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from mlci.settings import Settings, load_settings


@pytest.fixture
def write_project(tmp_path: Path) -> Callable[..., Path]:
    """Write ``tmp_path/pyproject.toml`` holding ``[tool.mlci]`` plus the given TOML text.

    ``mlci`` is placed right after the ``[tool.mlci]`` header (top-level keys first, then
    section tables); ``extra`` is appended as it is (e.g. ``[tool.ruff]`` tables).
    """

    def write(mlci: str = "", extra: str = "") -> Path:
        text = '[project]\nname = "demo"\nversion = "0.1.0"\n\n[tool.mlci]\n'
        text += dedent(mlci).strip() + "\n\n" + dedent(extra).strip() + "\n"
        (tmp_path / "pyproject.toml").write_text(text)
        return tmp_path

    return write


@pytest.fixture
def load(tmp_path: Path) -> Callable[..., Settings]:
    """load_settings for the temporary project, with an explicit (default empty) environment."""

    def _load(
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        root: Path | None = None,
    ) -> Settings:
        return load_settings(overrides, root=root or tmp_path, environ=dict(env or {}))

    return _load


@pytest.fixture
def isolated_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Mapping | None]:
    """Make ``mlci.settings.load_settings()`` (as the task layer calls it) read only tmp_path.

    Returns the list of overrides each call received, so a test can check what a task passed.
    """
    import mlci.settings

    real = mlci.settings.load_settings
    calls: list[Mapping | None] = []

    def fake(overrides: Mapping[str, Any] | None = None, **_: Any) -> Settings:
        calls.append(overrides)
        return real(overrides, root=tmp_path, environ={})

    monkeypatch.setattr(mlci.settings, "load_settings", fake)
    return calls
