"""Building each package's sdist and wheel from a clean copy of its sources, and
``twine check --strict`` on the result.

``python -m build`` and ``twine`` run as subprocesses, without mlci's secrets in their
environment (the backend is third-party code). The copy is ``git ls-files`` plus ``shutil``:
it must hold exactly the files git would, which no copying library knows.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from mlci.context import StageContext
from mlci.errors import StageFailed
from mlci.lineage import commit_time, without_secrets
from mlci.release.preflight import PackagePlan
from mlci.reports import write_json
from mlci.settings import BUILD_SOURCE_ENV
from mlci.tools import python_module_command
from mlci.tools import run as run_tool

UPLOAD, SKIP = "upload", "already on index"


@dataclass
class DistFile:
    """One built file: the package it belongs to, where it is, its hash, what to do with it."""

    package: str
    path: Path
    sha256: str
    action: str = UPLOAD


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def source_copy(ctx: StageContext, package: PackagePlan) -> Path:
    """The package's files as git sees them (tracked, and untracked but not ignored), copied
    under the state folder. Build backends write build/ and *.egg-info beside the sources:
    building the copy keeps the work tree exactly as it was."""
    settings = ctx.settings
    source = package.path.resolve()
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
        cwd=source,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise StageFailed(
            f"git cannot list the files of {package.folder}",
            proc.stderr.decode(errors="replace").strip()[-500:],
            "release from a git checkout",
        )
    target = ctx.state / "build-src" / canonicalize_name(package.name)
    shutil.rmtree(target, ignore_errors=True)
    skipped = (settings.state_path.resolve(), settings.reports_path.resolve())
    for name in filter(None, proc.stdout.decode().split("\0")):
        path = source / name
        if not path.is_file() or any(path.is_relative_to(folder) for folder in skipped):
            continue  # deleted but still tracked, or mlci's own output
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / name)
    return target


def _is_built_from(filename: str, package: PackagePlan) -> bool:
    """Whether ``filename`` is an sdist or wheel of ``package`` at its planned version."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
        return name == canonicalize_name(package.name) and version == Version(package.version)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return False


def build_packages(
    ctx: StageContext,
    packages: list[PackagePlan],
    records: dict[Path, tuple[str, dict[str, Any]]],
) -> list[DistFile]:
    """sdist + wheel of each package, built from a copy (see :func:`source_copy`);
    ``records``: package path -> (file inside it, model record) written into the copy."""
    settings = ctx.settings
    dist_root = ctx.state / "dist"
    env = without_secrets()
    epoch = commit_time(settings.project_root)
    if epoch:  # same sources -> same bytes, so a re-run can recognise its own files
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    files: list[DistFile] = []
    for package in packages:
        out = dist_root / canonicalize_name(package.name)
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
        unexpected = [p.name for p in built if not _is_built_from(p.name, package)]
        if unexpected or not built:
            raise StageFailed(
                f"the build of {package.name} did not produce version {package.version}",
                "built: " + (", ".join(p.name for p in built) or "nothing"),
                "check the package's version configuration ([tool.hatch.version])",
            )
        files += [DistFile(package.name, p, sha256_of(p)) for p in built]
    return files


def twine_check(ctx: StageContext, files: list[DistFile]) -> None:
    """``twine check --strict`` on every built file (README renders, metadata complete)."""
    argv = python_module_command("twine", "check", "--strict", *(str(f.path) for f in files))
    proc = run_tool(
        argv, ctx.settings.project_root, capture=True, timeout=300, env=without_secrets()
    )
    if proc.returncode != 0:
        raise StageFailed(
            "twine check --strict found problems in the built files",
            (proc.stdout + proc.stderr).strip()[-1500:],
            "fix the package metadata (README as long description, license, classifiers)",
        )
    ctx.log(f"release: twine check --strict passed for {len(files)} files")
