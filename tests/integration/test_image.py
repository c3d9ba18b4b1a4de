"""image and training inside it: real builds on the local Docker engine, a real registry.

The image is built from the model package's Dockerfile on the local base image, pushed to a
real registry (Debian's docker-registry with htpasswd), and the train stage pulls it back by
digest and runs `mlci train` inside it against a real mlflow server.
"""

from __future__ import annotations

import subprocess

import pytest
import requests

from mlci.errors import DockerEngineError
from mlci.lineage import package_metadata
from mlci.stages import image, train

from .conftest import BASE_IMAGE, REPO_ROOT, make_context

pytestmark = [pytest.mark.integration, pytest.mark.docker]

BUILD = {"image.base_image": BASE_IMAGE, "image.network": "host"}


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_image_builds_labels_and_runs(tmp_path, docker_engine):
    import docker

    ctx, lines = make_context(tmp_path, **BUILD)
    with ctx:
        result = image.run(ctx)
    assert result.status == "passed"
    version = package_metadata(REPO_ROOT / "packages" / "wine-classifier")[1]
    labels = result.details["labels"]
    assert labels["org.opencontainers.image.revision"] == _head()
    assert labels["org.opencontainers.image.version"] == version
    assert f"mlci/models:{_head()[:12]}" in result.details["tags"]
    assert "pushed" not in result.details  # no registry set: the image stays local
    assert any(line.startswith("  Step ") for line in lines)  # build progress was shown

    client = docker.from_env(timeout=60)
    tag = result.details["tags"][0]
    out = client.containers.run(tag, ["info"], entrypoint=["wine-classifier"], remove=True)
    assert out.decode().splitlines()[0] == f"wine-classifier {version}"
    # mlci (the entry point: the train stage runs it there) and the second model too.
    assert client.containers.run(tag, ["--version"], remove=True).decode().startswith("mlci ")
    probe = ["-c", "import diabetes_regressor as d; print(d.__version__)"]
    out = client.containers.run(tag, probe, entrypoint=["python"], remove=True)
    assert out.decode().strip() == version


def test_image_is_pushed_and_training_runs_inside_it_by_digest(
    tmp_path, docker_engine, image_registry, mlflow_server
):
    import docker
    from mlflow import MlflowClient

    registry = image_registry.address
    ctx, lines = make_context(
        tmp_path,
        **BUILD,
        **{
            "image.registry": registry,
            "image.registry_username": image_registry.username,
            "image.registry_password": image_registry.password,
            "mlflow.tracking_uri": mlflow_server,
        },
    )
    with ctx:
        built = image.run(ctx)
        pushed = built.details["pushed"]
        name, _, digest = pushed.partition("@")
        assert name == f"{registry}/mlci/models"
        assert digest.startswith("sha256:") and len(digest) == 71
        # The registry really holds that manifest (and wants the login for it).
        manifest = f"http://{registry}/v2/mlci/models/manifests/{digest}"
        accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        assert requests.get(manifest, headers=accept, timeout=10).status_code == 401
        login = (image_registry.username, image_registry.password)
        assert requests.get(manifest, headers=accept, auth=login, timeout=10).status_code == 200

        trained = train.run(ctx)
    assert trained.status == "passed"
    assert trained.summary.endswith("(in image)")
    assert any(line.startswith(f"train: pulling {pushed}") for line in lines)
    assert any("running `mlci train` in" in line and "no GPU" in line for line in lines)
    details = trained.details
    client = MlflowClient(mlflow_server)
    version = client.get_model_version(details["registered_model"], details["version"])
    assert version.run_id == details["run_id"]
    tags = version.tags
    # Lineage names the digest it ran and the commit, although the image has no git.
    assert tags["mlci.image_digest"] == pushed
    assert tags["mlci.git_sha"] == _head()
    # The training container is gone.
    engine = docker.from_env(timeout=30)
    assert engine.containers.list(all=True, filters={"label": "org.mlci.stage=train"}) == []


def test_a_wrong_registry_login_is_named(tmp_path, docker_engine, image_registry):
    ctx, _ = make_context(
        tmp_path,
        **BUILD,
        **{
            "image.registry": image_registry.address,
            "image.registry_username": image_registry.username,
            "image.registry_password": "not-the-password",
        },
    )
    with ctx, pytest.raises(DockerEngineError) as info:
        image.run(ctx)
    assert "refused the login" in info.value.what
    assert "not-the-password" not in str(info.value)


def test_no_engine_is_a_skip_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    ctx, lines = make_context(tmp_path)
    with ctx:
        result = image.run(ctx)
    assert result.status == "skipped"
    assert result.summary == "skipped: no Docker engine"
    assert lines == ["image: skipped: no Docker engine answers (set DOCKER_HOST or start dockerd)"]


def test_no_engine_where_a_push_is_expected_is_an_error(tmp_path, monkeypatch):
    # The Jenkins path sets a registry: a stage without an engine must not go green.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    ctx, _ = make_context(tmp_path, **{"image.registry": "127.0.0.1:5001"})
    with ctx, pytest.raises(DockerEngineError) as info:
        image.run(ctx)
    assert "no Docker engine answers" in info.value.what
    assert "127.0.0.1:5001" in info.value.what
