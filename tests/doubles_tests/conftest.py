"""Make ``tests.doubles`` importable however pytest is started, and offer its fixture."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# `python -m pytest` from the repository root already has the root on sys.path; the bare
# `pytest` entry point (with --import-mode=importlib) does not.


def _doubles_importable() -> bool:
    try:
        return importlib.util.find_spec("tests.doubles") is not None
    except ImportError:
        return False


if not _doubles_importable():  # pragma: no cover - depends on how pytest was launched
    sys.path.insert(0, str(REPO_ROOT))

from tests.doubles.fixtures import sonarqube  # noqa: E402, F401
