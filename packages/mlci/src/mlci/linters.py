"""The Python linters of the lint stage: ``ruff check``, ``ruff format --check`` and mypy.

Each runs as ``python -m`` with this interpreter, in the project root (so it reads the
project's own configuration: ``[tool.ruff]``, ``[tool.mypy]`` or ``mypy.ini``), writes its
findings as JSON into the reports folder and prints the first of them. Their caches go to the
state folder: a stage writes nothing into the tree it releases. A linter that cannot check
the code (a broken configuration, a crash) fails the stage; findings never do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlci.context import StageContext
from mlci.errors import LintFailed
from mlci.reports import write_json
from mlci.tools import python_module_command
from mlci.tools import run as run_tool

RUFF_REPORT = "ruff.json"
FORMAT_REPORT = "ruff-format.json"
MYPY_REPORT = "mypy.json"
SHOWN = 50  # findings of each linter printed to the console; the reports have them all

#: A finding as the console shows it: file, line, column, code, message.
Row = tuple[Any, Any, Any, Any, Any]


def ruff_check(ctx: StageContext, paths: list[str]) -> tuple[list[dict[str, Any]], int, Path]:
    """ruff's findings, how many it can fix safely, and its report."""
    report = ctx.reports / RUFF_REPORT
    argv = python_module_command(
        "ruff", "check", "--output-format", "json", "--output-file", str(report), *paths
    )
    ctx.log(f"lint: ruff check {' '.join(paths)}")
    proc = run_tool(argv, ctx.settings.project_root, capture=True, timeout=600, env=_ruff_env(ctx))
    if proc.returncode not in (0, 1):
        raise _could_not_check("ruff", proc.returncode, proc.stderr or proc.stdout)
    findings = json.loads(report.read_text() or "[]") if report.exists() else []
    show(ctx, [_ruff_row(ctx, item) for item in findings], report)
    # only safe fixes: `ruff check --fix` leaves unsafe ones alone
    fixable = sum(1 for f in findings if (f.get("fix") or {}).get("applicability") == "safe")
    return findings, fixable, report


def ruff_format(ctx: StageContext, paths: list[str]) -> list[dict[str, Any]]:
    """The files ``ruff format`` would change: one finding per file, at its first change."""
    report = ctx.reports / FORMAT_REPORT
    argv = python_module_command("ruff", "format", "--check", "--output-format", "json", *paths)
    ctx.log(f"lint: ruff format --check {' '.join(paths)}")
    proc = run_tool(argv, ctx.settings.project_root, capture=True, timeout=600, env=_ruff_env(ctx))
    if proc.returncode not in (0, 1):
        raise _could_not_check("ruff format", proc.returncode, proc.stderr or proc.stdout)
    findings = _json(proc.stdout, "ruff format") if proc.stdout.strip() else []
    write_json(report, findings)
    show(ctx, [_ruff_row(ctx, item) for item in findings], report)
    if findings:
        ctx.log(f"lint: `ruff format {' '.join(paths)}` reformats {len(findings)} file(s)")
    return findings


def mypy(ctx: StageContext, paths: list[str]) -> list[dict[str, Any]]:
    """mypy's errors over ``paths`` (its notes belong to the error above them)."""
    report = ctx.reports / MYPY_REPORT
    cache = ctx.state / "mypy-cache"
    argv = python_module_command("mypy", "--output", "json", "--cache-dir", str(cache), *paths)
    ctx.log(f"lint: mypy {' '.join(paths)}")
    proc = run_tool(argv, ctx.settings.project_root, capture=True, timeout=1200)
    # 0: no errors, 1: errors found, 2: mypy could not check (configuration, usage, crash)
    if proc.returncode not in (0, 1):
        raise _could_not_check("mypy", proc.returncode, proc.stderr or proc.stdout)
    entries = [_json(line, "mypy") for line in proc.stdout.splitlines() if line.startswith("{")]
    findings = [entry for entry in entries if entry.get("severity") == "error"]
    write_json(report, findings)
    rows = [
        (e.get("file"), e.get("line"), e.get("column"), e.get("code"), e.get("message"))
        for e in findings
    ]
    show(ctx, rows, report)
    return findings


def show(ctx: StageContext, rows: list[Row], report: Path) -> None:
    for name, row, column, code, message in rows[:SHOWN]:
        ctx.log(f"  {name}:{row}:{column}: {code} {message}")
    if len(rows) > SHOWN:
        ctx.log(f"  ... and {len(rows) - SHOWN} more in {report}")


def _ruff_env(ctx: StageContext) -> dict[str, str]:
    return {**os.environ, "RUFF_CACHE_DIR": str(ctx.state / "ruff-cache")}


def _ruff_row(ctx: StageContext, item: dict[str, Any]) -> Row:
    location = item.get("location") or {}
    name = os.path.relpath(item.get("filename", "?"), ctx.settings.project_root)
    return (name, location.get("row"), location.get("column"), item.get("code"), item["message"])


def _json(text: str, tool: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise LintFailed(
            f"{tool}'s JSON output could not be read",
            text.strip()[-2000:],
            f"run {tool} by hand in the project root to see why (mlci's 'lint' extra pins "
            "versions that write JSON: pip install -U 'mlci[lint]')",
        ) from None


def _could_not_check(tool: str, code: int, output: str) -> LintFailed:
    config = "[tool.mypy] or mypy.ini" if tool == "mypy" else "[tool.ruff]"
    return LintFailed(
        f"{tool} could not check the code (exit code {code})",
        output.strip()[-2000:],
        f"fix the {tool} configuration in pyproject.toml ({config}) or the file it names",
    )
