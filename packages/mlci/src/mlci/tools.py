"""Running the programs the stages drive (ruff, pytest, build, git) as subprocesses."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mlci.errors import ToolMissing


def python_module_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ...`` with this interpreter, after checking the module exists."""
    if importlib.util.find_spec(module) is None:
        raise ToolMissing(
            f"the Python module {module!r} is not installed",
            "a stage runs it with this interpreter",
            f"install it into this environment: {sys.executable} -m pip install {module}",
        )
    return [sys.executable, "-m", module, *args]


def run(
    argv: Sequence[str],
    cwd: Path,
    *,
    capture: bool = False,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a program; output streams to the console unless captured."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        capture_output=capture,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
