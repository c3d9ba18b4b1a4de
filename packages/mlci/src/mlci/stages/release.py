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
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from mlci.context import StageContext
from mlci.errors import ConfigError, PackageIndexError, ReleaseRefused, StageFailed
from mlci.lineage import commit_time, package_metadata
from mlci.reports import write_json
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


def build_packages(ctx: StageContext) -> list[DistFile]:
    settings = ctx.settings
    dist_root = settings.state_path / "dist"
    env = dict(os.environ)
    epoch = commit_time(settings.project_root)
    if epoch:  # same sources -> same bytes, so a re-run can recognise its own files
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    files: list[DistFile] = []
    for folder in settings.release.packages:
        package_dir = settings.path(folder)
        if not (package_dir / "pyproject.toml").is_file():
            raise ConfigError(
                f"release.packages names {folder!r}, which has no pyproject.toml",
                "each entry must be a package folder",
                "fix [tool.mlci.release] packages or MLCI_RELEASE_PACKAGES",
            )
        name, version = package_metadata(package_dir)
        out = dist_root / normalize(name)
        shutil.rmtree(out, ignore_errors=True)
        ctx.log(f"release: building {name} {version}")
        argv = python_module_command(
            "build", "--sdist", "--wheel", "--outdir", str(out), str(package_dir)
        )
        proc = run_tool(argv, settings.project_root, capture=True, timeout=900, env=env)
        if proc.returncode != 0:
            raise StageFailed(
                f"building {name} failed (exit code {proc.returncode})",
                (proc.stdout + proc.stderr).strip()[-1500:],
                f"fix the packaging of {folder}; `python -m build {folder}` shows the same error",
            )
        built = sorted(out.glob("*.tar.gz")) + sorted(out.glob("*.whl"))
        files += [DistFile(name, p, sha256_of(p)) for p in built]
    return files


def twine_check(ctx: StageContext, files: list[DistFile]) -> None:
    argv = python_module_command("twine", "check", "--strict", *(str(f.path) for f in files))
    proc = run_tool(argv, ctx.settings.project_root, capture=True, timeout=300)
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


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    files = build_packages(ctx)
    twine_check(ctx, files)
    local = not settings.release.repository_url
    upload_url, simple_url = ctx.package_index()
    auth = _credentials(ctx, local)
    session = _session(auth)
    timeout = settings.release.timeout
    plan(session, simple_url, files, timeout)
    todo = [f for f in files if f.action == UPLOAD]
    for line in format_table(
        ("file", "sha256", "action"),
        [(f.path.name, f.sha256[:16], f.action) for f in files],
    ):
        ctx.log("  " + line)
    if todo:
        ctx.log(f"release: uploading {len(todo)} files to {_host(upload_url)}")
        upload(upload_url, auth, todo)
    verify(session, simple_url, files, timeout)
    ctx.log(f"release: verified {len(files)} files by downloading them back")
    details = {
        "index": _host(upload_url) + ("  (local pypiserver)" if local else ""),
        "simple_url": simple_url,
        "files": [{"name": f.path.name, "sha256": f.sha256, "action": f.action} for f in files],
    }
    write_json(ctx.reports / REPORT, details)
    return StageResult(
        "release",
        PASSED,
        f"{len(todo)} uploaded, {len(files) - len(todo)} already there, verified",
        details=details,
        links={"index": simple_url},
    )
