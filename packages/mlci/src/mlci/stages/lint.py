"""lint: ruff over the configured paths; the findings go to a JSON report.

The stage reports findings and fails only when ruff cannot check the code: how many
findings a build may have is the quality gate's ``violations`` condition, decided in one
place (locally or in SonarQube, which imports the same ruff report).
"""

from __future__ import annotations

import json
import os

from mlci.context import StageContext
from mlci.errors import ConfigError, LintFailed
from mlci.reports import write_json
from mlci.stages import PASSED, StageResult
from mlci.tools import python_module_command
from mlci.tools import run as run_tool

REPORT = "ruff.json"
SHOWN = 50  # findings printed to the console; the report has them all


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    paths = settings.lint.paths
    missing = [p for p in paths if not settings.path(p).exists()]
    if missing:
        raise ConfigError(
            f"lint.paths names paths that do not exist: {', '.join(missing)}",
            f"they are resolved against the project root {settings.project_root}",
            "fix [tool.mlci.lint] paths or MLCI_LINT_PATHS",
        )
    report = ctx.reports / REPORT
    argv = python_module_command(
        "ruff", "check", "--output-format", "json", "--output-file", str(report), *paths
    )
    ctx.log(f"lint: ruff check {' '.join(paths)}")
    # ruff's cache goes to the state folder: a stage writes nothing into the tree it releases.
    env = {**os.environ, "RUFF_CACHE_DIR": str(ctx.state / "ruff-cache")}
    proc = run_tool(argv, settings.project_root, capture=True, timeout=600, env=env)
    if proc.returncode not in (0, 1):
        raise LintFailed(
            f"ruff could not check the code (exit code {proc.returncode})",
            (proc.stderr or proc.stdout).strip()[-2000:],
            "fix the ruff configuration in pyproject.toml ([tool.ruff])",
        )
    findings = json.loads(report.read_text() or "[]") if report.exists() else []
    root = settings.project_root
    for item in findings[:SHOWN]:
        where = item.get("location") or {}
        name = os.path.relpath(item.get("filename", "?"), root)
        ctx.log(
            f"  {name}:{where.get('row')}:{where.get('column')}: "
            f"{item.get('code')} {item.get('message')}"
        )
    if len(findings) > SHOWN:
        ctx.log(f"  ... and {len(findings) - SHOWN} more in {report}")
    # only safe fixes: `ruff check --fix` leaves unsafe ones alone
    fixable = sum(1 for f in findings if (f.get("fix") or {}).get("applicability") == "safe")
    details = {"findings": len(findings), "fixable": fixable, "report": str(report)}
    write_json(ctx.reports / "lint.json", details)
    summary = f"{len(findings)} finding(s)"
    if findings:
        ctx.log(
            f"lint: {len(findings)} finding(s); the quality gate's violations condition decides "
            "whether the build may go on"
            + (f"; {fixable} can be fixed with `ruff check --fix`" if fixable else "")
        )
        summary += " (the gate decides)"
    return StageResult("lint", PASSED, summary, details=details)
