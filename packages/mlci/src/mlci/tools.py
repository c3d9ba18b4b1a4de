"""Running the programs the stages drive (ruff, pytest, build, git, pysonar) as subprocesses.

Python tools run as ``python -m`` with this interpreter. A program that has no module entry
(the scanner) is looked up next to the running interpreter first, then on PATH: Jenkins runs
``.venv/bin/invoke`` without ``.venv/bin`` on PATH, and the scanner installed into that
environment must still be found.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mlci.errors import ToolMissing

#: The tools that are extras of mlci (a core install trains, promotes and releases), and
#: the extra that brings each: pip install 'mlci[lint]', or 'mlci[all]' for every one.
EXTRAS = {
    "ruff": "lint",
    "mypy": "lint",
    "pytest": "test",
    "pytest_cov": "test",
    "pysonar": "scan",
    "pypiserver": "index",
}


def require_module(module: str, why: str = "a stage runs it with this interpreter") -> None:
    """A clear ToolMissing, naming mlci's extra, when ``module`` cannot be imported here."""
    if importlib.util.find_spec(module) is not None:
        return
    extra = EXTRAS.get(module)
    install = f"'mlci[{extra}]'" if extra else module
    raise ToolMissing(
        f"the Python module {module!r} is not installed",
        why + (f"; it comes with mlci's {extra!r} extra" if extra else ""),
        f"install it into this environment: {sys.executable} -m pip install {install}",
    )


def python_module_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ...`` with this interpreter, after checking the module exists."""
    require_module(module)
    return [sys.executable, "-m", module, *args]


def find_program(name: str) -> str | None:
    """The path of ``name``: beside this interpreter (its environment's bin/), else on PATH.

    A name with a slash is a path and is returned as it is when it is executable.
    """
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def run(
    argv: Sequence[str],
    cwd: Path,
    *,
    capture: bool = False,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
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
