"""The whole platform for real: up -> wire -> push -> build on the agent -> gate -> image ->
train inside it -> promote, as tests/integration/test_jenkins_run.py does with doubles.

Opt-in (``pytest --live``): it starts services/compose.yaml with the real images, so it needs
a Docker engine with access to Docker Hub, ghcr.io and quay.io (the CUDA base image among
them), the SonarQube kernel settings (sonarqube/README.md), and free ports 8080, 8081, 9000,
5000, 5001 and 8082. Train runs on the `docker` agent unless ``TRAIN_AGENT_LABEL=gpu`` is in
the env file and a GPU machine is connected (jenkins/README.md). It leaves the platform
running; `invoke platform.down` stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

REPO_ROOT = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]
BUILD_TIMEOUT = float(os.environ.get("MLCI_LIVE_BUILD_TIMEOUT", "3600"))


def invoke(*args: str, timeout: float = 1800) -> str:
    done = subprocess.run(
        [*INVOKE, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_push_builds_on_the_agent_passes_the_gate_and_trains_in_the_image(
    tmp_path: Path,
) -> None:
    import requests
    from mlflow.tracking import MlflowClient

    from mlci.clients.jenkins import jenkins_client
    from mlci.platform.git_push import push_head
    from mlci.platform.secrets import read_env_file
    from mlci.settings import load_settings
    from mlci.tools import run

    invoke("platform.up")
    invoke("platform.wire")
    again = invoke("platform.wire")
    assert "0 change(s)" in again

    settings = load_settings()
    platform = settings.platform
    env = read_env_file(settings.path(platform.env_file))
    # The CI user's view of the registry: what Train and Promote see.
    os.environ["MLFLOW_TRACKING_USERNAME"] = env.values.get("MLFLOW_CI_USERNAME") or "mlci-ci"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = env["MLFLOW_CI_PASSWORD"]
    mlflow = MlflowClient(platform.mlflow_url)
    model = settings.mlflow.registered_model
    versions_before = len(mlflow.search_model_versions(f"name='{model}'"))

    client = jenkins_client(
        platform.jenkins_url, "admin", env["JENKINS_ADMIN_PASSWORD"], platform.timeout
    )
    client.whoami()
    # The agent container connected with the secret wiring gave it.
    deadline = time.monotonic() + 300
    while client.lib.get_node_info("docker-agent").get("offline"):
        assert time.monotonic() < deadline, "docker-agent did not connect"
        time.sleep(10)

    # A new commit on top of this checkout, pushed like a developer would.
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(work)], check=True, timeout=300)
    (work / "LIVE_TEST.md").write_text(f"live test {time.time()}\n")
    subprocess.run(["git", "-C", str(work), "add", "LIVE_TEST.md"], check=True)
    subprocess.run(
        ["git", "-C", str(work), "-c", "user.name=mlci", "-c", "user.email=mlci@localhost",
         "commit", "-q", "-m", "live test"], check=True,
    )  # fmt: skip
    remote = f"{platform.gitbucket_url}/git/{platform.organisation}/{platform.repository}.git"
    pushed = push_head(work, remote, "main", "root", env["GITBUCKET_ROOT_PASSWORD"], run, 120)
    assert pushed.pushed

    deadline = time.monotonic() + BUILD_TIMEOUT
    build = None
    while time.monotonic() < deadline:
        info = client.lib.get_job_info(platform.job, depth=1)
        for candidate in info.get("builds", []):
            details = client.lib.get_build_info(platform.job, candidate["number"])
            params = {
                p.get("name"): p.get("value")
                for action in details.get("actions", [])
                for p in action.get("parameters", []) or []
            }
            if params.get("commit") == pushed.local and not details.get("building"):
                build = details
        if build:
            break
        time.sleep(15)
    assert build is not None, "no finished build of the pushed commit"
    assert build["result"] == "SUCCESS", build.get("url")
    assert build.get("builtOn") != "", "the controller has no executors: builds run on agents"

    gate = requests.get(
        f"{platform.sonarqube_url}/api/qualitygates/project_status",
        params={"projectKey": settings.sonar.project_key or "mlci"},
        auth=("admin", env["SONARQUBE_ADMIN_PASSWORD"]),
        timeout=30,
    ).json()
    assert gate["projectStatus"]["status"] == "OK"
    versions = mlflow.search_model_versions(f"name='{model}'")
    assert len(versions) > versions_before
    newest = max(versions, key=lambda v: int(v.version))
    # Trained inside the image the build pushed, by digest, at the pushed commit.
    assert "@sha256:" in newest.tags["mlci.image_digest"]
    assert newest.tags["mlci.git_sha"] == pushed.local
