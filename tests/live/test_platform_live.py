"""The whole platform for real: up -> wire -> push -> Jenkins builds -> gate -> a new model.

Opt-in (``pytest --live``): it starts services/compose.yaml with the real images, so it needs
a Docker engine with access to Docker Hub, ghcr.io and quay.io, the SonarQube kernel settings
(sonarqube/README.md), a free 8080/8081/9000/5000, and a GPU agent connected for the Train
stage (jenkins/README.md). It leaves the platform running; `invoke platform.down` stops it.
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


def test_push_builds_passes_the_gate_and_registers_a_model(tmp_path: Path) -> None:
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
    mlflow = MlflowClient(platform.mlflow_url)
    model = settings.mlflow.registered_model
    versions_before = len(mlflow.search_model_versions(f"name='{model}'"))

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

    client = jenkins_client(
        platform.jenkins_url, "admin", env["JENKINS_ADMIN_PASSWORD"], platform.timeout
    )
    client.whoami()
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

    import requests

    gate = requests.get(
        f"{platform.sonarqube_url}/api/qualitygates/project_status",
        params={"projectKey": settings.sonar.project_key or "mlci"},
        auth=("admin", env["SONARQUBE_ADMIN_PASSWORD"]),
        timeout=30,
    ).json()
    assert gate["projectStatus"]["status"] == "OK"
    assert len(mlflow.search_model_versions(f"name='{model}'")) > versions_before
