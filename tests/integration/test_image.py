"""image: a real build on the local Docker engine from the model package's Dockerfile."""

from __future__ import annotations

import subprocess

import pytest

from mlci.lineage import package_metadata
from mlci.stages import image

from .conftest import BASE_IMAGE, REPO_ROOT, make_context

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def test_image_builds_labels_and_runs(tmp_path, docker_engine):
    import docker

    ctx, lines = make_context(tmp_path, **{"image.base_image": BASE_IMAGE, "image.network": "host"})
    with ctx:
        result = image.run(ctx)
    assert result.status == "passed"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    version = package_metadata(REPO_ROOT / "packages" / "wine-classifier")[1]
    labels = result.details["labels"]
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.version"] == version
    assert f"mlci/wine-classifier:{head[:12]}" in result.details["tags"]
    assert any(line.startswith("  Step ") for line in lines)  # build progress was shown

    client = docker.from_env(timeout=60)
    out = client.containers.run(result.details["tags"][0], ["info"], remove=True)
    assert out.decode().splitlines()[0] == f"wine-classifier {version}"


def test_no_engine_is_a_skip_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    ctx, lines = make_context(tmp_path)
    with ctx:
        result = image.run(ctx)
    assert result.status == "skipped"
    assert result.summary == "skipped: no Docker engine"
    assert lines == ["image: skipped: no Docker engine answers (set DOCKER_HOST or start dockerd)"]
