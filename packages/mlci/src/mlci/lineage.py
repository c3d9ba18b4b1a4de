"""Where a model comes from: the facts recorded on every run, version and release.

Package versions come from setuptools-scm (hatch-vcs projects) or the package's own PEP 517
backend through ``build``. Git is asked through its command line: four read-only commands do
not justify a git library as a dependency.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tomllib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@dataclass(frozen=True)
class GitInfo:
    sha: str
    branch: str
    dirty: bool

    @property
    def short_sha(self) -> str:
        return self.sha[:12] if self.sha != UNKNOWN else UNKNOWN


def git_info(root: Path) -> GitInfo:
    """The commit, branch and dirty flag of the work tree (Jenkins' env wins for the branch)."""
    sha = _git(root, "rev-parse", "HEAD") or UNKNOWN
    branch = (
        os.environ.get("BRANCH_NAME")
        or os.environ.get("GIT_BRANCH")
        or _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        or UNKNOWN
    )
    # Untracked files count: a build backend packs every file that git does not ignore.
    status = _git(root, "status", "--porcelain")
    return GitInfo(sha=sha, branch=branch, dirty=bool(status) if status is not None else False)


def commit_time(root: Path) -> int | None:
    """Unix time of HEAD's commit; used as SOURCE_DATE_EPOCH for reproducible builds."""
    out = _git(root, "log", "-1", "--format=%ct")
    return int(out) if out and out.isdigit() else None


#: Never handed to a package's build backend (it runs third-party code).
SECRET_VARIABLES = ("TWINE_PASSWORD", "MLCI_RELEASE_PASSWORD", "MLFLOW_TRACKING_PASSWORD")


def without_secrets() -> dict[str, str]:
    """This process's environment less :data:`SECRET_VARIABLES`: for build backends."""
    return {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}


def package_metadata(package_dir: Path) -> tuple[str, str]:
    """(name, version) of a package folder, as its build backend will compute them.

    The cheap ways first: a static ``name`` and ``version`` are read from pyproject.toml, and
    a version from git tags through hatch-vcs (``[tool.hatch.version] source = "vcs"``) is
    computed with setuptools-scm and the same options, so lineage, image tags and releases all
    name the version that gets built. Any other declared backend (setuptools, flit, poetry-core,
    hatchling with another version source) is asked through its PEP 517 metadata hook
    (:func:`backend_metadata`); when that cannot answer, the version is "unknown".
    """
    path = package_dir / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        from mlci.errors import ConfigError

        raise ConfigError(
            f"{path} is not valid UTF-8 TOML", str(exc)[:300], "fix the file's syntax"
        ) from None
    project = data.get("project", {})
    name = str(project.get("name", package_dir.name))
    if "version" in project:
        return name, str(project["version"])
    hatch_version = data.get("tool", {}).get("hatch", {}).get("version", {})
    if "version" in project.get("dynamic", []) and hatch_version.get("source") == "vcs":
        return name, _scm_version(name, package_dir, dict(hatch_version.get("raw-options", {})))
    declares_backend = "build-backend" in data.get("build-system", {})
    if declares_backend or (package_dir / "setup.py").is_file():
        found = backend_metadata(package_dir)
        if found is not None:
            return found
    return name, str(project.get("version", UNKNOWN))


def _scm_version(name: str, package_dir: Path, options: dict[str, Any]) -> str:
    """The version hatch-vcs will build, computed with setuptools-scm and its options."""
    from setuptools_scm import get_version

    root = (package_dir / options.pop("root", ".")).resolve()
    try:
        with _quiet_scm():  # it warns (and logs) before it raises; mlci says it once
            return str(get_version(root=str(root), **options))
    except LookupError:
        return str(options.get("fallback_version", UNKNOWN))
    except ValueError as exc:  # a tag that is not a version, e.g. v1.x
        from mlci.errors import ConfigError

        raise ConfigError(
            f"the version of {name} cannot be computed from git: {exc}".split(" (tag_regex")[0],
            "hatch-vcs takes it from the nearest tag, which must be a version (v1.2.0)",
            "delete or rename that tag (git tag -d TAG; a new tag on a later commit also "
            "works), then run the stage again",
        ) from None


#: Seconds one call of a build backend's metadata hook may take.
BACKEND_TIMEOUT = 120


def _backend_runner(
    cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
) -> None:
    """Runs a PEP 517 hook: quietly, with a timeout, and without mlci's secrets."""
    env = {**without_secrets(), **(extra_environ or {})}
    subprocess.run(
        list(cmd), cwd=cwd, env=env, capture_output=True, timeout=BACKEND_TIMEOUT, check=True
    )


def backend_metadata(package_dir: Path) -> tuple[str, str] | None:
    """(name, version) from the package's own build backend, or None when it cannot say
    (backend not installed in this environment, broken configuration, hook failing).

    This starts a Python process that runs the backend's ``prepare_metadata_for_build_wheel``
    hook (a whole wheel build for backends without it): call it once per package and stage,
    never in a loop over runs or files.
    """
    from build import BuildBackendException, BuildException
    from build.util import project_wheel_metadata

    try:
        metadata = project_wheel_metadata(package_dir, isolated=False, runner=_backend_runner)
    except (BuildException, BuildBackendException, OSError, subprocess.SubprocessError):
        return None
    if "Name" not in metadata or "Version" not in metadata:
        return None
    return str(metadata["Name"]), str(metadata["Version"])


@contextlib.contextmanager
def _quiet_scm() -> Iterator[None]:
    """setuptools-scm configures its own loggers on every call: silence warnings for a moment."""
    previous = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def tags_at_head(root: Path) -> list[str]:
    out = _git(root, "tag", "--points-at", "HEAD")
    return out.split() if out else []


@dataclass(frozen=True)
class Lineage:
    git_sha: str
    git_branch: str
    git_dirty: bool
    data_hash: str
    package: str
    package_version: str
    build_url: str
    image_digest: str

    def tags(self) -> dict[str, str]:
        """MLflow tags, all under the ``mlci.`` prefix so they are easy to filter on."""
        return {
            f"mlci.{key}": str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in asdict(self).items()
        }
