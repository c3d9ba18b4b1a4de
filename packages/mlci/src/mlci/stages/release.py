"""release: build sdist + wheel of each package, twine check, upload, verify.

Check -> act -> check again. Before anything is uploaded the index is asked what it already
has: files with the same sha256 are skipped (a re-run finishes an interrupted release), a
different file under an existing name refuses the whole release, and nothing is uploaded.
After the upload every file is downloaded back and its hash compared.

The steps live in :mod:`mlci.release`; this module runs them in order and declares the
stage's cache inputs. Their names stay importable from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlci import cache
from mlci.context import StageContext
from mlci.lineage import SECRET_VARIABLES, git_info, tags_at_head, without_secrets
from mlci.release.build import (
    SKIP,
    UPLOAD,
    DistFile,
    build_packages,
    sha256_of,
    source_copy,
    twine_check,
)
from mlci.release.index import (
    credentials,
    download_sha,
    host,
    index_files,
    index_session,
    listings,
    normalize,
    plan,
)
from mlci.release.preflight import PackagePlan, preflight
from mlci.release.publish import (
    model_record,
    release_notes,
    tag_model_version,
    upload,
    verify,
)
from mlci.reports import write_json
from mlci.stages import PASSED, StageResult
from mlci.table import format_table

# The names these steps had when they were private to this module.
_credentials, _download_sha, _host, _listings = credentials, download_sha, host, listings
_SECRET_VARIABLES, _without_secrets = SECRET_VARIABLES, without_secrets

__all__ = [
    "OUTPUTS",
    "REPORT",
    "SKIP",
    "UPLOAD",
    "DistFile",
    "PackagePlan",
    "build_packages",
    "index_files",
    "inputs",
    "model_record",
    "normalize",
    "plan",
    "preflight",
    "release_notes",
    "run",
    "sha256_of",
    "source_copy",
    "tag_model_version",
    "twine_check",
    "upload",
    "verify",
]

REPORT = "release.json"

#: What the stage leaves in the reports folder, kept with its cache entry.
OUTPUTS = (REPORT, "release-notes.md")


def inputs(ctx: StageContext) -> dict[str, Any]:
    """The released packages' files, the commit and its tags (the versions), the champions
    each model ships (train's and promote's reports), the index and the release settings."""
    settings = ctx.settings
    root = settings.project_root
    git = git_info(root)
    models = {
        each.model_name: cache.reports_digest(
            each.model_reports_path, ["train.json", "promote.json"]
        )
        for each in settings.each_model()
    }
    keys = [
        "release.packages",
        "release.repository_url",
        "release.index_url",
        "release.username",
        "release.allow_dev",
        "release.dry_run",
    ]
    return {
        "packages": cache.files_digest(ctx, settings.release.packages),
        "commit": [git.sha, git.dirty, sorted(tags_at_head(root))],
        "models": models,
        "settings": cache.settings_values(ctx, *keys),
        "index": cache.package_index(ctx),
        "tracking_server": cache.tracking_server(ctx),
        "environment": cache.environment(),
    }


def _shipped_models(
    ctx: StageContext, packages: list[PackagePlan]
) -> tuple[list[tuple[StageContext, dict[str, Any]]], dict[Path, tuple[str, dict[str, Any]]]]:
    """One record per model whose package is released (a project may hold several models);
    each goes into the built files, never into the work tree."""
    shipped: list[tuple[StageContext, dict[str, Any]]] = []
    records: dict[Path, tuple[str, dict[str, Any]]] = {}
    for model_settings in ctx.settings.each_model():
        model_ctx = ctx if model_settings is ctx.settings else ctx.for_model(model_settings)
        record, where = model_record(model_ctx, packages)
        if record is not None and where is not None:
            shipped.append((model_ctx, record))
            records[where[0]] = (where[1], record)
    return shipped, records


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    dry_run = settings.release.dry_run
    packages = preflight(ctx)
    local = not settings.release.repository_url
    upload_url, simple_url = ctx.package_index()
    auth = credentials(ctx, local)
    timeout = settings.release.timeout
    session = index_session(auth, timeout)
    # Ask the index first: an unreachable index or refused listing fails before any build.
    for package in packages:
        index_files(session, simple_url, package.name, timeout)
    shipped, records = _shipped_models(ctx, packages)
    files = build_packages(ctx, packages, records)
    twine_check(ctx, files)
    plan(session, simple_url, files, timeout)
    todo = [f for f in files if f.action == UPLOAD]
    ctx.log(f"release: plan for {host(upload_url)}{' (local index)' if local else ''}:")
    versions = {p.name: p.version for p in packages}
    for line in format_table(
        ("file", "version", "sha256", "action"),
        [(f.path.name, versions.get(f.package, "?"), f.sha256[:16], f.action) for f in files],
    ):
        ctx.log("  " + line)
    details = {
        "index": host(upload_url),
        "local_index": local,
        "simple_url": simple_url,
        "dry_run": dry_run,
        "models": [record for _, record in shipped],
        "packages": versions,
        "files": [{"name": f.path.name, "sha256": f.sha256, "action": f.action} for f in files],
    }
    if dry_run:
        ctx.log("release: dry run: nothing uploaded, nothing tagged")
        summary = f"dry run: {len(todo)} to upload, {len(files) - len(todo)} there"
        return StageResult("release", PASSED, summary, details=details)
    if todo:
        ctx.log(f"release: uploading {len(todo)} files to {host(upload_url)}")
        upload(upload_url, auth, todo)
    verify(session, simple_url, files, timeout)
    ctx.log(f"release: verified {len(files)} files by downloading them back")
    for model_ctx, record in shipped:
        tag_model_version(model_ctx, record, packages)
    write_json(ctx.reports / REPORT, details)
    (ctx.reports / "release-notes.md").write_text(release_notes(details))
    return StageResult(
        "release",
        PASSED,
        f"{len(todo)} uploaded, {len(files) - len(todo)} already there, verified",
        details=details,
        links={"index": simple_url},
    )
