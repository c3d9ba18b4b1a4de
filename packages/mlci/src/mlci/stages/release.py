"""release: build sdist + wheel of each package, twine check, upload, verify.

Check -> act -> check again. Before anything is uploaded the index is asked what it already
has: files with the same sha256 are skipped (a re-run finishes an interrupted release), a
different file under an existing name refuses the whole release, and nothing is uploaded.
After the upload every file is downloaded back and its hash compared.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from mlci import cache
from mlci.context import StageContext
from mlci.errors import ConfigError, PackageIndexError, ReleaseRefused, StageFailed
from mlci.lineage import UNKNOWN, commit_time, git_info, package_metadata, tags_at_head
from mlci.reports import write_json
from mlci.settings import BUILD_SOURCE_ENV
from mlci.stages import PASSED, StageResult
from mlci.table import format_table
from mlci.tools import python_module_command
from mlci.tools import run as run_tool

REPORT = "release.json"
UPLOAD, SKIP = "upload", "already on index"


@dataclass
class DistFile:
    package: str
    path: Path
    sha256: str
    action: str = UPLOAD


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalize(name: str) -> str:
    """PEP 503 project-name normalisation, as used in simple-API URLs."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def _credentials(ctx: StageContext, local: bool) -> tuple[str | None, str | None]:
    if local:  # the embedded index accepts uploads without authentication
        return "mlci", "unused"
    release = ctx.settings.release
    username = release.username or os.environ.get("TWINE_USERNAME") or None
    password = release.password or os.environ.get("TWINE_PASSWORD") or None
    return username, password


def _session(auth: tuple[str | None, str | None]):  # -> requests.Session
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "mlci-release"
    if auth[0] and auth[1]:
        session.auth = (auth[0], auth[1])
    return session


def index_files(
    session, simple_url: str, project: str, timeout: float
) -> dict[str, tuple[str, str]]:
    """{filename: (download URL, sha256 or "")} the index lists for ``project``."""
    import requests

    page = urljoin(simple_url, normalize(project) + "/")
    try:
        resp = session.get(page, timeout=timeout)
    except requests.RequestException as exc:
        raise PackageIndexError(
            f"the package index at {_host(simple_url)} cannot be reached",
            str(exc)[:500],
            "check MLCI_RELEASE_REPOSITORY_URL / MLCI_RELEASE_INDEX_URL and that the index is up",
        ) from None
    if resp.status_code == 404:
        return {}
    if resp.status_code in (401, 403):
        raise PackageIndexError(
            f"the package index refused to list {project} (HTTP {resp.status_code})",
            "the credentials are missing or wrong",
            "set TWINE_USERNAME / TWINE_PASSWORD (or MLCI_RELEASE_USERNAME / _PASSWORD)",
        )
    if resp.status_code != 200:
        raise PackageIndexError(
            f"the package index answered HTTP {resp.status_code} for {page}",
            resp.text[:300],
            "check the index's log and MLCI_RELEASE_INDEX_URL",
        )
    parser = _Links()
    parser.feed(resp.text)
    files = {}
    for href in parser.hrefs:
        url, _, fragment = urljoin(page, href).partition("#")
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        sha = fragment.split("=", 1)[1] if fragment.startswith("sha256=") else ""
        files[name] = (url, sha)
    return files


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


@dataclass(frozen=True)
class PackagePlan:
    folder: str
    path: Path
    name: str
    version: str


def preflight(ctx: StageContext) -> list[PackagePlan]:
    """Refuse before anything is built: dirty tree, untagged commit, tag/version mismatch."""
    settings = ctx.settings
    root = settings.project_root
    packages = []
    for folder in settings.release.packages:
        package_dir = settings.path(folder)
        if not (package_dir / "pyproject.toml").is_file():
            raise ConfigError(
                f"release.packages names {folder!r}, which has no pyproject.toml",
                "each entry must be a package folder",
                "fix [tool.mlci.release] packages or MLCI_RELEASE_PACKAGES",
            )
        name, version = package_metadata(package_dir)
        packages.append(PackagePlan(folder, package_dir, name, version))
    git = git_info(root)
    if git.sha == UNKNOWN:
        # No commit to build from: versions from git tags would fall back to 0.0.0, and
        # nothing could trace the release back to its source (release.allow_dev included).
        shown = ", ".join(f"{p.name} {p.version}" for p in packages)
        raise ReleaseRefused(
            f"{root} has no git commit to release from",
            f"it is not a git repository, or one without a commit; the packages would go out "
            f"as {shown}, traceable to nothing",
            "release from a git checkout with the commit tagged (git tag v1.2.0), e.g. a clone "
            "rather than an exported tree",
        )
    allow_dev = settings.release.allow_dev
    if git.dirty and not allow_dev:
        raise ReleaseRefused(
            "the work tree has uncommitted changes",
            "a release must be built from a commit, so that it can be rebuilt and traced",
            "commit or stash the changes (git status shows them), or set release.allow_dev "
            "for a .devN release",
        )
    if git.dirty:
        # setuptools-scm marks tracked changes (+...dYYYYMMDD) but not untracked files, and a
        # static version never changes: such work would go out under a real version.
        clean_versions = [
            f"{p.name} {p.version}"
            for p in packages
            if "+" not in p.version and ".dev" not in p.version
        ]
        if clean_versions:
            raise ReleaseRefused(
                "the work tree has uncommitted changes that would be released as "
                + ", ".join(clean_versions),
                "only a .devN version may carry uncommitted work; this one would later clash "
                "with the real release of that version",
                "commit or remove the changes (git status shows them), then release",
            )
    tags = [t for t in tags_at_head(root) if re.fullmatch(r"v?\d+(\.\d+)*([abrc.].*)?", t)]
    if not tags:
        if not allow_dev:
            raise ReleaseRefused(
                f"HEAD ({git.short_sha}) has no version tag",
                "releases are made from tags such as v1.2.0",
                "tag the commit (git tag v1.2.0 && git push --tags), or set release.allow_dev "
                "for a .devN release",
            )
        return packages
    wanted = {t.removeprefix("v") for t in tags}
    wrong = [f"{p.name} {p.version}" for p in packages if p.version not in wanted]
    if wrong:
        raise ReleaseRefused(
            f"the tag {', '.join(sorted(tags))} does not match the packages' versions",
            "packages at other versions: " + ", ".join(wrong),
            "make the versions come from the tag (hatch-vcs) or fix the static version, "
            "then move the tag",
        )
    return packages


def source_copy(ctx: StageContext, package: PackagePlan) -> Path:
    """The package's files as git sees them (tracked, and untracked but not ignored), copied
    under the state folder. Build backends write build/ and *.egg-info beside the sources:
    building the copy keeps the work tree exactly as it was."""
    settings = ctx.settings
    source = package.path.resolve()
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
        cwd=source, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise StageFailed(
            f"git cannot list the files of {package.folder}",
            proc.stderr.decode(errors="replace").strip()[-500:],
            "release from a git checkout",
        )
    target = ctx.state / "build-src" / normalize(package.name)
    shutil.rmtree(target, ignore_errors=True)
    skipped = (settings.state_path.resolve(), settings.reports_path.resolve())
    for name in filter(None, proc.stdout.decode().split("\0")):
        path = source / name
        if not path.is_file() or any(path.is_relative_to(folder) for folder in skipped):
            continue  # deleted but still tracked, or mlci's own output
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / name)
    return target


def build_packages(
    ctx: StageContext, packages: list[PackagePlan], records: dict[Path, tuple[str, dict]]
) -> list[DistFile]:
    """sdist + wheel of each package, built from a copy (see :func:`source_copy`);
    ``records``: package path -> (file inside it, model record) written into the copy."""
    settings = ctx.settings
    dist_root = ctx.state / "dist"
    env = _without_secrets()
    epoch = commit_time(settings.project_root)
    if epoch:  # same sources -> same bytes, so a re-run can recognise its own files
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    files: list[DistFile] = []
    for package in packages:
        out = dist_root / normalize(package.name)
        shutil.rmtree(out, ignore_errors=True)
        ctx.log(f"release: building {package.name} {package.version}")
        copy = source_copy(ctx, package)
        if package.path.resolve() in records:
            inside, record = records[package.path.resolve()]
            write_json(copy / inside, record)
        # The copy has no git: the version preflight read from it comes in (hatch-vcs and
        # setuptools-scm read this; a static version ignores it).
        env["SETUPTOOLS_SCM_PRETEND_VERSION"] = package.version
        env[BUILD_SOURCE_ENV] = str(settings.project_root)  # for mlci's own build hook
        argv = python_module_command("build", "--sdist", "--wheel", "--outdir", str(out), str(copy))
        proc = run_tool(argv, settings.project_root, capture=True, timeout=900, env=env)
        if proc.returncode != 0:
            raise StageFailed(
                f"building {package.name} failed (exit code {proc.returncode})",
                (proc.stdout + proc.stderr).strip()[-1500:],
                f"fix the packaging of {package.folder}; `python -m build {package.folder}` "
                "shows the same error",
            )
        built = sorted(out.glob("*.tar.gz")) + sorted(out.glob("*.whl"))
        stem = f"{normalize(package.name).replace('-', '_')}-{package.version}"
        unexpected = [p.name for p in built if not p.name.startswith(stem)]
        if unexpected or not built:
            raise StageFailed(
                f"the build of {package.name} did not produce version {package.version}",
                "built: " + (", ".join(p.name for p in built) or "nothing"),
                "check the package's version configuration ([tool.hatch.version])",
            )
        files += [DistFile(package.name, p, sha256_of(p)) for p in built]
    return files


# Never handed to the build backend: it runs third-party code.
_SECRET_VARIABLES = ("TWINE_PASSWORD", "MLCI_RELEASE_PASSWORD", "MLFLOW_TRACKING_PASSWORD")


def model_record(
    ctx: StageContext, packages: list[PackagePlan]
) -> tuple[dict | None, tuple[Path, str] | None]:
    """The champion this release ships, and where in which package it goes (package path,
    file inside it): the build writes it into the package's copy."""
    settings = ctx.settings
    if not settings.model.package or not settings.model.module:
        return None, None
    model_dir = settings.path(settings.model.package).resolve()
    if not any(p.path.resolve() == model_dir for p in packages):
        return None, None
    from mlci.clients import mlflow as mlflow_client

    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    name, alias = settings.mlflow.registered_model, settings.promotion.alias
    with mlflow_client.server_errors(f"reading the {alias} of {name}", uri):
        champion = mlflow_client.alias_version(client, name, alias)
        if champion is None:
            raise ReleaseRefused(
                f"{name} has no {alias}: there is no validated model to ship",
                f"the release of {settings.model.package} records the {alias} it ships",
                "run `invoke train` and `invoke promote` first",
            )
        metrics = dict(client.get_run(champion.run_id).data.metrics)
    record = {
        "registered_model": name,
        "alias": alias,
        "version": str(champion.version),
        "run_id": champion.run_id,
        "metrics": {k: metrics[k] for k in sorted(metrics)},
        "tracking_uri": "local" if ctx.tracking_is_local else uri,
    }
    module = settings.model.module.replace(".", "/")
    inside = f"src/{module}" if (model_dir / "src" / module).is_dir() else module
    ctx.log(f"release: {settings.model.package} ships {name} v{champion.version} ({alias})")
    return record, (model_dir, f"{inside}/model_record.json")


def tag_model_version(ctx: StageContext, record: dict, packages: list[PackagePlan]) -> None:
    from mlci.clients import mlflow as mlflow_client

    settings = ctx.settings
    model_dir = settings.path(settings.model.package).resolve()
    package = next(p for p in packages if p.path.resolve() == model_dir)
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    with mlflow_client.server_errors("tagging the released model version", uri):
        client.set_model_version_tag(
            record["registered_model"], record["version"], "mlci.released_as",
            f"{package.name}=={package.version}",
        )  # fmt: skip


def _without_secrets() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _SECRET_VARIABLES}


def twine_check(ctx: StageContext, files: list[DistFile]) -> None:
    argv = python_module_command("twine", "check", "--strict", *(str(f.path) for f in files))
    proc = run_tool(
        argv, ctx.settings.project_root, capture=True, timeout=300, env=_without_secrets()
    )
    if proc.returncode != 0:
        raise StageFailed(
            "twine check --strict found problems in the built files",
            (proc.stdout + proc.stderr).strip()[-1500:],
            "fix the package metadata (README as long description, license, classifiers)",
        )
    ctx.log(f"release: twine check --strict passed for {len(files)} files")


def _listings(
    session, simple_url: str, files: list[DistFile], timeout: float
) -> dict[str, dict[str, tuple[str, str]]]:
    """The index's file list for each package among ``files``, one request per package."""
    packages = dict.fromkeys(f.package for f in files)
    return {p: index_files(session, simple_url, p, timeout) for p in packages}


def plan(session, simple_url: str, files: list[DistFile], timeout: float) -> None:
    """Mark files already on the index; refuse when a same-named file differs."""
    conflicts = []
    listings = _listings(session, simple_url, files, timeout)
    for f in files:
        existing = listings[f.package].get(f.path.name)
        if existing is None:
            continue
        remote_sha = existing[1] or _download_sha(session, existing[0], timeout)
        if remote_sha == f.sha256:
            f.action = SKIP
        else:
            conflicts.append(
                f"{f.path.name}: index has sha256 {remote_sha[:16]}..., built {f.sha256[:16]}..."
            )
    if conflicts:
        raise ReleaseRefused(
            "the index already has different files under the same names; nothing was uploaded",
            "; ".join(conflicts),
            "a released version is immutable: bump the package version (or remove the old "
            "files from a private index) and release again",
        )


def _download_sha(session, url: str, timeout: float) -> str:
    import requests

    try:
        resp = session.get(url, timeout=timeout)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise PackageIndexError(
            f"downloading {url.rsplit('/', 1)[-1]} back from the index failed",
            str(exc)[:500],
            "check the index; run `invoke release` again, it resumes where it stopped",
        ) from None
    return hashlib.sha256(resp.content).hexdigest()


def upload(upload_url: str, auth: tuple[str | None, str | None], files: list[DistFile]) -> None:
    import requests
    from twine.commands.upload import upload as twine_upload
    from twine.exceptions import TwineException
    from twine.settings import Settings as TwineSettings

    # Credentials go through twine's API, never onto a command line.
    twine_settings = TwineSettings(
        repository_url=upload_url,
        username=auth[0],
        password=auth[1],
        non_interactive=True,
        disable_progress_bar=True,
    )
    twine_logger = logging.getLogger("twine")
    level = twine_logger.level
    twine_logger.setLevel(logging.ERROR)  # its "retry with --verbose" hint does not apply here
    try:
        twine_upload(twine_settings, [str(f.path) for f in files])
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        why = f"HTTP {status}: {exc.response.reason if exc.response is not None else exc}"
        fix = "check the index's log; run `invoke release` again, it skips what arrived"
        if status in (401, 403):
            fix = "check TWINE_USERNAME / TWINE_PASSWORD (or MLCI_RELEASE_USERNAME / _PASSWORD)"
        raise PackageIndexError(
            f"the package index {_host(upload_url)} refused the upload", why, fix
        ) from None
    except requests.RequestException as exc:
        raise PackageIndexError(
            f"the upload to {_host(upload_url)} was interrupted",
            str(exc)[:500],
            "run `invoke release` again once the index answers; it skips what arrived",
        ) from None
    except TwineException as exc:
        raise PackageIndexError(
            f"twine could not upload to {_host(upload_url)}",
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            "set TWINE_USERNAME / TWINE_PASSWORD (or MLCI_RELEASE_USERNAME / _PASSWORD)",
        ) from None
    finally:
        twine_logger.setLevel(level)


def verify(session, simple_url: str, files: list[DistFile], timeout: float) -> None:
    mismatched = []
    listings = _listings(session, simple_url, files, timeout)
    for f in files:
        entry = listings[f.package].get(f.path.name)
        got = _download_sha(session, entry[0], timeout) if entry else "missing"
        if got != f.sha256:
            mismatched.append(f"{f.path.name}: {got[:16]}")
    if mismatched:
        raise PackageIndexError(
            "files downloaded back from the index differ from what was built",
            "; ".join(mismatched),
            "check the index; do not use this release until it is repaired",
        )


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
    keys = ["release.packages", "release.repository_url", "release.index_url",
            "release.username", "release.allow_dev", "release.dry_run"]  # fmt: skip
    return {
        "packages": cache.files_digest(ctx, settings.release.packages),
        "commit": [git.sha, git.dirty, sorted(tags_at_head(root))],
        "models": models,
        "settings": cache.settings_values(ctx, *keys),
        "index": cache.package_index(ctx),
        "tracking_server": cache.tracking_server(ctx),
        "environment": cache.environment(),
    }


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    dry_run = settings.release.dry_run
    packages = preflight(ctx)
    local = not settings.release.repository_url
    upload_url, simple_url = ctx.package_index()
    auth = _credentials(ctx, local)
    session = _session(auth)
    timeout = settings.release.timeout
    # Ask the index first: an unreachable index or refused listing fails before any build.
    for package in packages:
        index_files(session, simple_url, package.name, timeout)
    # One record per model whose package is released (a project may hold several models);
    # each goes into the built files, never into the work tree.
    shipped, records = [], {}
    for settings in ctx.settings.each_model():
        model_ctx = ctx if settings is ctx.settings else ctx.for_model(settings)
        record, where = model_record(model_ctx, packages)
        if record is not None and where is not None:
            shipped.append((model_ctx, record))
            records[where[0]] = (where[1], record)
    files = build_packages(ctx, packages, records)
    twine_check(ctx, files)
    plan(session, simple_url, files, timeout)
    todo = [f for f in files if f.action == UPLOAD]
    ctx.log(f"release: plan for {_host(upload_url)}{' (local index)' if local else ''}:")
    for line in format_table(
        ("file", "version", "sha256", "action"),
        [(f.path.name, _version_of(f, packages), f.sha256[:16], f.action) for f in files],
    ):
        ctx.log("  " + line)
    details = {
        "index": _host(upload_url),
        "local_index": local,
        "simple_url": simple_url,
        "dry_run": dry_run,
        "models": [record for _, record in shipped],
        "packages": {p.name: p.version for p in packages},
        "files": [{"name": f.path.name, "sha256": f.sha256, "action": f.action} for f in files],
    }
    if dry_run:
        ctx.log("release: dry run: nothing uploaded, nothing tagged")
        return StageResult(
            "release", PASSED, f"dry run: {len(todo)} to upload, {len(files) - len(todo)} there",
            details=details,
        )  # fmt: skip
    if todo:
        ctx.log(f"release: uploading {len(todo)} files to {_host(upload_url)}")
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


def _version_of(f: DistFile, packages: list[PackagePlan]) -> str:
    return next((p.version for p in packages if p.name == f.package), "?")


def release_notes(details: dict) -> str:
    lines = ["# Release", ""]
    lines += [f"- {name} {version}" for name, version in sorted(details["packages"].items())]
    for model in details.get("models") or []:
        lines += [
            "",
            f"Ships the registered model {model['registered_model']} v{model['version']} "
            f"({model['alias']}), run {model['run_id']}.",
        ]
        lines += [f"- {k}: {v:.4f}" for k, v in model["metrics"].items()]
    lines += ["", f"Index: {details['index']}", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| {f['name']} | {f['sha256']} |" for f in details["files"]]
    return "\n".join(lines) + "\n"
