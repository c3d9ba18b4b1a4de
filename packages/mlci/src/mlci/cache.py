"""The stage cache: a stage whose inputs are unchanged since its last success does not run.

A stage module declares what it reads in ``inputs(ctx)`` (a train or promote stage: per model,
``model_inputs(ctx)``): file contents by hash, the settings it reads, upstream reports, the
installed distributions, the servers it writes to. The key is the SHA-256 of those inputs.
After a success the result and the stage's reports (``OUTPUTS``, globs under the reports
folder) are kept under ``<state_dir>/cache/<unit>/``; a later run with the same key gets the
recorded result back with the status ``cached``, its reports restored, and runs nothing.

``inputs`` returning None means "do not cache this run" (scan and a SonarQube gate: the
server holds the truth). A failure or a skip records nothing; ``cache.force`` (``--force``,
``--force-stage``) runs a stage anyway, and ``cache.enabled = false`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlci.context import StageContext
    from mlci.stages import StageResult

#: Bumped when the record's layout or the meaning of a key changes: old records then miss.
FORMAT = 1
RECORD = "record.json"


def digest(value: Any) -> str:
    """SHA-256 of a JSON value, keys sorted (the same inputs give the same key anywhere)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path) -> str:
    """SHA-256 of a file's content, remembered per (path, size, mtime) within a process."""
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    known = _FILE_HASHES.get(memo)
    if known is None:
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        known = _FILE_HASHES[memo] = sha.hexdigest()
    return known


def project_files(root: Path, paths: Sequence[str], exclude: Iterable[Path] = ()) -> list[Path]:
    """The files under ``paths`` that belong to the project: what git tracks or would add
    (ignored files left out), else every file but .git's; never those under ``exclude``."""
    skipped = [p.resolve() for p in exclude]
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
            cwd=root,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        candidates = [root / name for name in sorted(set(listed.decode().split("\0"))) if name]
    except (OSError, subprocess.SubprocessError):
        candidates = sorted(
            Path(folder) / name
            for p in paths
            for folder, _dirs, names in os.walk(root / p)
            if ".git" not in Path(folder).parts
            for name in names
        ) + [root / p for p in paths if (root / p).is_file()]
    return [
        path
        for path in candidates
        if path.is_file() and not any(path.resolve().is_relative_to(s) for s in skipped)
    ]


def files_digest(ctx: StageContext, paths: Sequence[str]) -> str:
    """One hash over the project's files under ``paths`` (names and contents); the reports
    and state folders never count, whether or not git ignores them."""
    settings = ctx.settings
    root = settings.project_root
    files = project_files(root, paths, exclude=(settings.reports_path, settings.state_path))
    return digest([[str(p.relative_to(root)), file_hash(p)] for p in files])


def reports_digest(folder: Path, names: Iterable[str]) -> dict[str, str | None]:
    """Upstream outputs by content: report name -> hash (None when it is missing)."""
    return {name: file_hash(folder / name) if (folder / name).is_file() else None for name in names}


@cache
def environment() -> str:
    """The Python and every installed distribution with its version, as one hash: an upgrade
    of a tool, a library or mlci itself changes what a stage does."""
    from importlib.metadata import distributions

    found = sorted(
        {(d.metadata["Name"] or "", d.version) for d in distributions() if d.metadata["Name"]}
    )
    return digest([sys.version, sys.executable, found])


def store_id(folder: Path, marker: str) -> str:
    """A name for the data in ``folder`` (a local server's store), kept in a file beside it;
    "new" while ``marker`` does not exist (nothing is written then: a run that fails changes
    nothing). Deleting the data makes every key that named it new."""
    if not (folder / marker).exists():
        return "new"
    id_file = folder / ".mlci-store-id"
    if id_file.is_file():
        return id_file.read_text().strip()
    made = uuid.uuid4().hex
    id_file.write_text(made + "\n")
    return made


def tracking_server(ctx: StageContext) -> str:
    """The tracking server the stage writes to: its URL, or the local store's identity."""
    if not ctx.tracking_is_local:
        return ctx.settings.mlflow.tracking_uri.rstrip("/")
    return "local:" + store_id(ctx.state / "mlflow", "mlflow.db")


def package_index(ctx: StageContext) -> str:
    """The package index the release goes to: its URL, or the local index's identity."""
    release = ctx.settings.release
    if release.repository_url:
        return release.repository_url.rstrip("/")
    return "local:" + store_id(ctx.state / "packages", ".")


def settings_values(ctx: StageContext, *keys: str) -> dict[str, Any]:
    """The named settings' values (never a secret's: those are not inputs, only access)."""
    return {key: ctx.settings.get(key) for key in keys}


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def forced(ctx: StageContext, stage: str) -> bool:
    force = ctx.settings.cache.force
    return "all" in force or stage in force


def _outputs(folder: Path, patterns: Sequence[str]) -> list[Path]:
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def _save(unit_dir: Path, record: dict[str, Any], folder: Path, outputs: list[Path]) -> None:
    """Replace the unit's record and copies; the record is written last, atomically, so an
    interrupted save leaves no record (a miss next time), never a record without its files."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (unit_dir / RECORD).unlink()
    shutil.rmtree(unit_dir / "outputs", ignore_errors=True)
    for path in outputs:
        copy = unit_dir / "outputs" / path.relative_to(folder)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    temporary = unit_dir / (RECORD + ".tmp")
    temporary.write_text(json.dumps(record, indent=2, default=str))
    temporary.replace(unit_dir / RECORD)


def _restore(unit_dir: Path, record: dict[str, Any], folder: Path) -> bool:
    """Put the recorded reports back where they are missing or differ; False when a copy
    is gone or cannot be put back (then the stage runs)."""
    try:
        for name, sha in record["outputs"].items():
            copy = unit_dir / "outputs" / name
            if not copy.is_file() or file_hash(copy) != sha:
                return False
            target = folder / name
            if not target.is_file() or file_hash(target) != sha:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(copy, target)
    except OSError:
        return False
    return True


def run_cached(
    ctx: StageContext,
    stage: str,
    run: Callable[[StageContext], StageResult],
    inputs: Callable[[StageContext], dict[str, Any] | None],
    outputs: Sequence[str],
    folder: Path,
    unit: str | None = None,
    still_valid: Callable[[StageContext, dict[str, Any]], bool] | None = None,
) -> StageResult:
    """``run(ctx)``, or the recorded result of the last success with the same inputs.

    ``folder`` is where ``outputs`` (globs) lie: the reports folder, or a model's own.
    ``still_valid(ctx, details)`` may veto a hit whose product is gone (a deleted image).
    """
    from mlci.stages import CACHED, PASSED, StageResult

    if not ctx.settings.cache.enabled:
        return run(ctx)
    unit = unit or stage
    declared = _declared(ctx, inputs)
    if declared is None:
        return run(ctx)
    key = _key(unit, declared)
    unit_dir = ctx.state / "cache" / unit
    record = _load(unit_dir / RECORD)
    if forced(ctx, stage):
        ctx.log(f"{stage}: running although cached: cache.force names it")
    elif (
        record is not None
        and record.get("key") == key
        and (still_valid is None or still_valid(ctx, record["result"]["details"]))
        and _restore(unit_dir, record, folder)
    ):
        age = _age(max(0.0, time.time() - record["finished_epoch"]))
        saved = record["result"]
        ctx.log(f"{stage}: cached: inputs unchanged since {record['finished']} (key {key[:12]})")
        details = {**saved["details"], "cache": {"key": key, "finished": record["finished"]}}
        return StageResult(
            saved["stage"],
            CACHED,
            f"{saved['summary']} [cached {age} ago, key {key[:12]}]",
            details=details,
            links=saved["links"],
        )
    result = run(ctx)
    # The inputs once more, after the run: a store the stage created has its name now.
    declared = _declared(ctx, inputs) if result.status == PASSED else None
    if declared is not None:
        key = _key(unit, declared)
        now = time.time()
        saved = {
            "stage": result.stage,
            "summary": result.summary,
            "details": result.details,
            "links": result.links,
        }
        files = _outputs(folder, outputs)
        try:
            _save(
                unit_dir,
                {
                    "format": FORMAT,
                    "key": key,
                    "inputs": declared,
                    "finished": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
                    "finished_epoch": now,
                    "result": saved,
                    "outputs": {str(p.relative_to(folder)): file_hash(p) for p in files},
                },
                folder,
                files,
            )
        except OSError as exc:  # the stage succeeded; only the next run loses its shortcut
            ctx.log(f"{stage}: the result could not be cached ({exc}); the next run runs it")
    return result


def _declared(
    ctx: StageContext, inputs: Callable[[StageContext], dict[str, Any] | None]
) -> dict[str, Any] | None:
    try:
        return inputs(ctx)
    except (OSError, ValueError, KeyError, TypeError):
        # Bad input (a missing gate file, an unreadable report) that the stage itself checks
        # and reports in its own words: it runs, uncached.
        return None


def _key(unit: str, declared: dict[str, Any]) -> str:
    return digest({"format": FORMAT, "stage": unit, "inputs": declared})


def _load(path: Path) -> dict[str, Any] | None:
    """A record, or None for a missing, unreadable or older-format one (a miss, not an error)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    needed = ("key", "finished", "finished_epoch", "result", "outputs")
    return record if all(k in record for k in needed) else None
