"""release against a real pypiserver: upload, verify, re-run, refuse a changed file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlci.errors import ReleaseRefused
from mlci.stages import release

from .conftest import make_context

pytestmark = pytest.mark.integration


def _demo_project(root: Path, name: str, body: str = "VALUE = 1\n") -> Path:
    """A tiny project with one hatchling package under packages/<name>."""
    pkg = root / "packages" / name
    module = name.replace("-", "_")
    (pkg / "src" / module).mkdir(parents=True)
    (pkg / "src" / module / "__init__.py").write_text(body)
    (pkg / "README.md").write_text(f"# {name}\n\nA package mlci's release tests publish.\n")
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["hatchling>=1.26"]
            build-backend = "hatchling.build"

            [project]
            name = "{name}"
            version = "1.0.0"
            description = "release test package"
            readme = "README.md"
            requires-python = ">=3.11"
            license = "Apache-2.0"
            """
        )
    )
    (root / "pyproject.toml").write_text(f'[tool.mlci.release]\npackages = ["packages/{name}"]\n')
    _commit(root, "the demo project")  # release wants a tagged commit behind the files
    return pkg


def _commit(root: Path, message: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": os.environ["PATH"],
    }
    steps = [["add", "-A"], ["commit", "-q", "-m", message], ["tag", "-f", "v1.0.0"]]
    if not (root / ".git").exists():
        steps.insert(0, ["init", "-q", "-b", "main"])
    for args in steps:  # (a moved tag: the same version with other content)
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_uploads_verifies_and_pip_gets_the_same_files(
    tmp_path: Path, pypi_server: tuple[str, Path]
) -> None:
    url, packages_dir = pypi_server
    project = tmp_path / "project"
    _demo_project(project, "mlci-demo-one")
    ctx, _ = make_context(tmp_path, root=project, **_index(url))
    with ctx:
        result = release.run(ctx)
    assert result.summary == "2 uploaded, 0 already there, verified"
    built = {f["name"]: f["sha256"] for f in result.details["files"]}
    assert set(built) == {"mlci_demo_one-1.0.0.tar.gz", "mlci_demo_one-1.0.0-py3-none-any.whl"}
    assert {p.name for p in packages_dir.iterdir()} >= set(built)

    download = tmp_path / "download"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-build-isolation",
            "--index-url",
            url + "/simple/",
            "-d",
            str(download),
            "mlci-demo-one==1.0.0",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = download.glob("*.whl")
    assert _sha(wheel) == built[wheel.name]

    # A second run finds identical files on the index and uploads nothing.
    ctx, _ = make_context(tmp_path, root=project, **_index(url))
    with ctx:
        again = release.run(ctx)
    assert again.summary == "0 uploaded, 2 already there, verified"


def test_changed_file_under_same_version_is_refused_and_nothing_uploads(
    tmp_path: Path, pypi_server: tuple[str, Path]
) -> None:
    url, packages_dir = pypi_server
    project = tmp_path / "project"
    pkg = _demo_project(project, "mlci-demo-two")
    ctx, _ = make_context(tmp_path, root=project, **_index(url))
    with ctx:
        release.run(ctx)
    before = {p.name: _sha(p) for p in packages_dir.iterdir()}

    (pkg / "src" / "mlci_demo_two" / "__init__.py").write_text("VALUE = 2\n")
    _commit(project, "changed, version not bumped")
    ctx, _ = make_context(tmp_path, root=project, **_index(url))
    with ctx, pytest.raises(ReleaseRefused, match="nothing was uploaded") as err:
        release.run(ctx)
    assert "bump the package version" in str(err.value)
    assert {p.name: _sha(p) for p in packages_dir.iterdir()} == before


def _index(url: str) -> dict[str, str]:
    # This pypiserver accepts any credentials; twine still needs some, as on a real index.
    return {
        "release.repository_url": url + "/",
        "release.username": "ci",
        "release.password": "not-checked-here",
    }
