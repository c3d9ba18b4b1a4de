"""The package index as the release sees it: who we are to it, what its simple API lists for
each package, the bytes behind a listed file, and the upload plan drawn from that.

The listing is read with pypi-simple (PEP 503 HTML and PEP 691 JSON pages alike); the
download of a listed file stays a plain GET, as only its sha256 is wanted.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name as normalize

from mlci.context import StageContext
from mlci.errors import PackageIndexError, ReleaseRefused
from mlci.release.build import SKIP, DistFile

if TYPE_CHECKING:
    import requests

__all__ = [
    "credentials",
    "download_sha",
    "host",
    "index_files",
    "index_session",
    "listings",
    "normalize",
    "plan",
]

#: filename -> (download URL, sha256 as the index lists it, or "")
Listing = dict[str, tuple[str, str]]


def credentials(ctx: StageContext, local: bool) -> tuple[str | None, str | None]:
    """User name and password for the index: settings first, then TWINE_USERNAME/_PASSWORD."""
    if local:  # the embedded index accepts uploads without authentication
        return "mlci", "unused"
    release = ctx.settings.release
    username = release.username or os.environ.get("TWINE_USERNAME") or None
    password = release.password or os.environ.get("TWINE_PASSWORD") or None
    return username, password


def index_session(auth: tuple[str | None, str | None], timeout: float) -> requests.Session:
    """The session every listing and download goes through (see :mod:`mlci.http`)."""
    from mlci import http

    user, password = auth
    return http.session(timeout, auth=(user, password) if user and password else None)


def host(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what messages show, never the credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


def index_files(
    session: requests.Session, simple_url: str, project: str, timeout: float
) -> Listing:
    """{filename: (download URL, sha256 or "")} the index lists for ``project``."""
    import requests
    from pypi_simple import (
        NoSuchProjectError,
        PyPISimple,
        UnsupportedContentTypeError,
        UnsupportedRepoVersionError,
    )

    client = PyPISimple(simple_url, session=session)
    page_url = client.get_project_url(project)
    try:
        page = client.get_project_page(project, timeout=timeout)
    except NoSuchProjectError:
        return {}
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise PackageIndexError(
                f"the package index refused to list {project} (HTTP {status})",
                "the credentials are missing or wrong",
                "set TWINE_USERNAME / TWINE_PASSWORD (or MLCI_RELEASE_USERNAME / _PASSWORD)",
            ) from None
        raise PackageIndexError(
            f"the package index answered HTTP {status} for {page_url}",
            exc.response.text[:300] if exc.response is not None else str(exc)[:300],
            "check the index's log and MLCI_RELEASE_INDEX_URL",
        ) from None
    except requests.RequestException as exc:
        raise PackageIndexError(
            f"the package index at {host(simple_url)} cannot be reached",
            str(exc)[:500],
            "check MLCI_RELEASE_REPOSITORY_URL / MLCI_RELEASE_INDEX_URL and that the index is up",
        ) from None
    except (UnsupportedContentTypeError, UnsupportedRepoVersionError) as exc:
        raise PackageIndexError(
            f"the package index answered {page_url} with a page that is not a simple-API listing",
            str(exc)[:300],
            "check MLCI_RELEASE_INDEX_URL: it must be the index's simple API (.../simple/)",
        ) from None
    # A file's name is the last part of its URL (PEP 503 makes the link text the same).
    return {
        unquote(posixpath.basename(urlsplit(package.url).path)): (
            package.url,
            package.digests.get("sha256", ""),
        )
        for package in page.packages
    }


def listings(
    session: requests.Session, simple_url: str, files: list[DistFile], timeout: float
) -> dict[str, Listing]:
    """The index's file list for each package among ``files``, one request per package."""
    packages = dict.fromkeys(f.package for f in files)
    return {p: index_files(session, simple_url, p, timeout) for p in packages}


def download_sha(session: requests.Session, url: str, timeout: float) -> str:
    """sha256 of the file the index serves at ``url``."""
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


def plan(session: requests.Session, simple_url: str, files: list[DistFile], timeout: float) -> None:
    """Mark files already on the index; refuse when a same-named file differs."""
    conflicts = []
    listed = listings(session, simple_url, files, timeout)
    for f in files:
        existing = listed[f.package].get(f.path.name)
        if existing is None:
            continue
        remote_sha = existing[1] or download_sha(session, existing[0], timeout)
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
