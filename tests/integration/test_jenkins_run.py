"""The Jenkins-like run: the real Jenkinsfile's steps, run for real, as Jenkins would run them.

The platform is wired by ``platform.wire`` itself against the three doubles (GitBucket with
anonymous access off, SonarQube, Jenkins configured from jenkins/casc.yaml: nodes, secret
texts, the trigger's HMAC whitelist) and real servers: an MLflow server with basic auth, an
image registry with htpasswd, a package index with a login, the Docker engine, and the
platform's serving proxy (services/serving/proxy.py) with its token. Then:

* the first build ``platform.wire`` starts (Train on the ``docker`` agent: no GPU machine);
* a push to ``main`` delivered by GitBucket's webhook, with ``TRAIN_AGENT_LABEL=gpu``: Train
  runs in the GPU agent's workspace, which reaches MLflow by another URL (localhost);
* a tag push: Release runs and uploads;
* a manual build (Build Now): the job parameters' defaults build main's head;
* deleting the tag: GitBucket sends a push, and no build starts.

Each build runs in the Groovy stub's exec mode (see jenkins_runner.py): every stage in the
workspace of the agent its label selects, the checkout done as the git plugin does it from
the job's SCM, with the agent's own PATH (no virtualenv), casc.yaml's global and node
variables, the trigger's variables and job parameters, and credentials bound only where the
Jenkinsfile binds them. Two things are this machine's, not the platform's, and are given to
the agents' node environment here: the base image (no registry holds the CUDA one here) and
the Test stage's test set (the model package's tests: the full suite runs in CI anyway, and
this run is about the Jenkins path). The scanner is the real pysonar, pointed (as a user
points it at a local JRE) at a stand-in for the engine it would download from SonarQube.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mlci import servers
from mlci.platform.secrets import ensure_for_compose, read_env_file, set_value
from mlci.platform.wire import wire
from mlci.settings import load_settings
from tests.doubles.gitbucket import GitBucketDouble
from tests.doubles.jenkins import DECLARED_OPTIONS_PROPERTIES, JenkinsDouble
from tests.doubles.sonarqube import SonarQubeDouble

from .conftest import BASE_IMAGE, REPO_ROOT
from .jenkins_runner import Build, Controller, Runner, configure_jenkins_double, groovy_or_none

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.contract]

COMPOSE = REPO_ROOT / "services" / "compose.yaml"
ENGINE = REPO_ROOT / "tests" / "doubles" / "sonar_engine.py"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip
STAGES = [
    "Prepare", "Lint", "Test", "Scan", "Gate", "Image", "Train", "Promote", "Deploy", "Release",
]  # fmt: skip


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", **GIT_IDENTITY, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def snapshot_of_the_working_tree(target: Path) -> Path:
    """A fresh repository holding this checkout's files as they are now (committed or not)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(source.read_bytes())
            destination.chmod(source.stat().st_mode)
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "mlci as it is in this checkout")
    return target


def pushing_env(password: str, work: Path) -> dict[str, str]:
    helper = work / "push-askpass.sh"
    helper.write_text(
        '#!/bin/sh\ncase "$1" in Username*) echo root ;; *) echo "$PUSH_PW" ;; esac\n'
    )
    helper.chmod(0o700)
    return {"GIT_ASKPASS": str(helper), "PUSH_PW": password, "GIT_TERMINAL_PROMPT": "0"}


@dataclass
class Platform:
    work: Path
    env_path: Path
    source: Path
    jenkins: JenkinsDouble
    gitbucket: GitBucketDouble
    sonarqube: SonarQubeDouble
    mlflow_url: str
    pypi_url: str
    packages: Path
    registry: Any
    services: dict[str, str]
    groovy: str

    def env(self) -> Any:
        return read_env_file(self.env_path)

    def settings(self) -> Any:
        return load_settings(
            {
                "platform.env_file": str(self.env_path),
                "platform.jenkins_url": self.jenkins.url,
                "platform.gitbucket_url": self.gitbucket.url,
                "platform.sonarqube_url": self.sonarqube.url,
                "platform.mlflow_url": self.mlflow_url,
                # GitBucket delivers to the Jenkins double directly (http://jenkins:8080/).
                "platform.jenkins_internal_url": self.jenkins.url + "/",
                "platform.ready_timeout": 30,
            },
            root=REPO_ROOT,
            environ={},
        )

    def runner(self, **compose_env: str) -> Runner:
        """The controller as casc.yaml configures it, with the env file and ``compose_env``."""
        controller = Controller.from_casc({**self.env().values, **compose_env})
        passed_on = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
        machine = {
            **passed_on,
            "PIP_CACHE_DIR": str(self.work / "pip-cache"),
            "DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        }
        docker_agent = {
            **machine,
            # This machine has no registry for the CUDA base image (see the module docstring).
            "MLCI_IMAGE_BASE_IMAGE": BASE_IMAGE,
            "MLCI_IMAGE_NETWORK": "host",
            "MLCI_TEST_PATHS": "packages/wine-classifier/tests",
            "MLCI_TEST_COV": "wine_classifier",
            # pysonar starts this instead of downloading a JRE and the engine from SonarQube.
            "SONAR_SCANNER_JAVA_EXE_PATH": str(ENGINE),
            "SONAR_SCANNER_ENGINE_JAR_PATH": str(ENGINE),
            "SONAR_USER_HOME": str(self.work / "sonar-home"),
        }
        return Runner(
            work=self.work / "jenkins",
            controller=controller,
            services=self.services,
            node_process_env={"docker-agent": docker_agent, "gpu-agent": machine},
            jenkins_url=self.jenkins.url,
            groovy=self.groovy,
        )

    def run_next(self, **compose_env: str) -> Build:
        """Run the one build the Jenkins double started, as Jenkins and its agents would."""
        self.sonarqube.queue_submission_scenario(gate_status="OK")
        self.jenkins.start_queued_builds()
        (record,) = self.jenkins.take_started_builds()
        build = self.runner(**compose_env).run("mlci", self.jenkins.jobs["mlci"], record)
        self.jenkins.finish_build("mlci", record.number, build.result)
        return build


@pytest.fixture(scope="module")
def groovy() -> str:
    path = groovy_or_none()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide groovy (.ci/provision)")
        pytest.skip("groovy is not installed (apt-get install groovy)")
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str, str]]:
    """pypiserver demanding a login for uploads, as the platform's index does."""
    from passlib.apache import HtpasswdFile

    base = tmp_path_factory.mktemp("index")
    packages = base / "packages"
    packages.mkdir()
    user, password = "mlci", secrets.token_urlsafe(18)
    htpasswd = HtpasswdFile(str(base / "htpasswd"), new=True, default_scheme="apr_md5_crypt")
    htpasswd.set_password(user, password)
    htpasswd.save()

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "pypiserver", "run", "--host", "127.0.0.1",
            "--port", str(port), "-P", str(base / "htpasswd"), "-a", "update",
            "--disable-fallback", str(packages),
        ]  # fmt: skip

    with servers.local_server("pypiserver (login)", command, "/health", base / "log") as server:
        yield server.url, packages, user, password


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
    groovy: str,
    docker_engine: None,
    image_registry: Any,
    mlflow_auth_server: Any,
    index: tuple[str, Path, str, str],
) -> Iterator[Platform]:
    work = tmp_path_factory.mktemp("jenkins-run")
    index_url, packages, index_user, index_password = index
    env_path = work / "platform.env"
    ensure_for_compose(env_path, COMPOSE)
    localhost = mlflow_auth_server.url.replace("127.0.0.1", "localhost")
    for name, value in {
        "MLFLOW_ADMIN_PASSWORD": mlflow_auth_server.admin_password,
        "REGISTRY_USERNAME": image_registry.username,
        "REGISTRY_PASSWORD": image_registry.password,
        "PYPI_USERNAME": index_user,
        "PYPI_PASSWORD": index_password,
        "IMAGE_REGISTRY": image_registry.address,
        # The GPU machine reaches MLflow through a tunnel: another URL, the same server.
        "GPU_AGENT_MLFLOW_TRACKING_URI": localhost,
    }.items():
        set_value(env_path, name, value)
    env = read_env_file(env_path)
    source = snapshot_of_the_working_tree(work / "source")
    jenkins = JenkinsDouble(admin_password=env["JENKINS_ADMIN_PASSWORD"])
    gitbucket = GitBucketDouble(allow_anonymous_access=False)
    sonarqube = SonarQubeDouble()
    for double in (jenkins, gitbucket, sonarqube):
        double.start()
    # The platform's model-serving: the real proxy, with the env file's token.
    proxy = servers.local_server(
        "serving proxy", serving_proxy_command(work / "serving-proxy"), "/-/ping",
        work / "serving-proxy.log", env={"MLCI_SERVING_PROXY_TOKEN": env["SERVING_PROXY_TOKEN"]},
    )  # fmt: skip
    try:
        serving = proxy.__enter__()
        configure_jenkins_double(jenkins, Controller.from_casc(env.values))
        services = {
            "http://mlflow:5000": mlflow_auth_server.url,
            "http://pypi:8080": index_url,
            "http://sonarqube:9000": sonarqube.url,
            "http://gitbucket:8080": gitbucket.url,
            "http://jenkins:8080": jenkins.url,
            "http://model-serving:8000": serving.url,
            # The Compose network the slots join is, here, the host's: the proxy is a local
            # process, so the slot containers take the host's network and a loopback port.
            "mlci_mlci": "",
        }
        yield Platform(
            work, env_path, source, jenkins, gitbucket, sonarqube, mlflow_auth_server.url,
            index_url, packages, image_registry, services, groovy,
        )  # fmt: skip
    finally:
        proxy.__exit__(None, None, None)
        remove_slot_containers()
        for double in (jenkins, gitbucket, sonarqube):
            double.stop()


def serving_proxy_command(folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    script = REPO_ROOT / "services" / "serving" / "proxy.py"

    def command(port: int) -> list[str]:
        return [sys.executable, str(script), "--host", "127.0.0.1", "--port", str(port),
                "--state-file", str(folder / "state.json")]  # fmt: skip

    return command


def remove_slot_containers() -> None:
    """The slots the Deploy stage started for this repository's served model."""
    import docker

    engine = docker.from_env(timeout=60)
    for container in engine.containers.list(
        all=True,
        filters={"label": ["org.mlci.role=serving-slot", "org.mlci.model=wine-classifier"]},
    ):
        if container.name.startswith("mlci-serving-wine-classifier-"):
            container.remove(force=True)


def serving_status(platform: Platform) -> dict[str, Any]:
    url = platform.services["http://model-serving:8000"]
    return requests.get(f"{url}/-/status", timeout=10).json()


@pytest.fixture(scope="module")
def wired(platform: Platform) -> Platform:
    wire(platform.settings(), platform.env(), source=platform.source, log=lambda _line: None,
         recreate_jenkins=lambda: None, recreate_agent=lambda: None)  # fmt: skip
    # Every build of the declarative Jenkinsfile re-saves the job with its options.
    platform.jenkins.set_declared_job_properties("mlci", DECLARED_OPTIONS_PROPERTIES)
    return platform


def statuses(build: Build) -> dict[str, str]:
    return {s["name"]: s["status"] for s in build.stages}


def assert_green(build: Build, *, release: bool) -> None:
    failed = [s for s in build.stages if s["status"] == "failed"]
    assert build.result == "SUCCESS", (failed and failed[0].get("error"), build.console[-6000:])
    want = {name: "passed" for name in STAGES}
    if not release:
        want["Release"] = "skipped"
    assert statuses(build) == want


def assert_no_secret_in_the_log(platform: Platform, build: Build) -> None:
    values = [*platform.env().secrets(), platform.registry.password]
    for value in values:
        assert value not in build.console_raw, "a secret reached the build's output"


def model_version(platform: Platform, build: Build, model: str = "wine") -> Any:
    """train.json of ``model`` (this repository has two: reports/models/<name>/) and its
    registered version."""
    from mlflow import MlflowClient

    reports = Path(build.stage("Train")["workspace"]) / "reports" / "models" / model
    report = json.loads((reports / "train.json").read_text())
    env = platform.env()
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = env["MLFLOW_ADMIN_PASSWORD"]
    try:
        client = MlflowClient(platform.mlflow_url, registry_uri=platform.mlflow_url)
        return report, client.get_model_version(report["registered_model"], report["version"])
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")


# ---- the builds, in order (each test uses the platform as the one before left it) ----------


def test_the_first_build_platform_wire_starts_is_green_without_a_gpu(wired: Platform) -> None:
    build = wired.run_next()
    assert_green(build, release=False)
    # Every stage ran on the build agent; none on the controller (it has no executors).
    assert {s["node"] for s in build.stages if s["status"] == "passed"} == {"docker-agent"}
    # Scan: the real pysonar, found in the workspace's venv although PATH lacks it, uploaded
    # with the CI user's project analysis token; Gate read the verdict with the same token.
    (submission,) = wired.sonarqube.submissions
    assert (submission.login, submission.token_type) == ("mlci-ci", "PROJECT_ANALYSIS_TOKEN")
    # Image: built and pushed to the registry; Train ran inside it, by digest.
    workspace = Path(build.stage("Image")["workspace"])
    image = json.loads((workspace / "reports" / "image.json").read_text())
    assert image["pushed"].startswith(f"{wired.registry.address}/mlci/models@sha256:")
    report, version = model_version(wired, build)
    assert version.tags["mlci.image_digest"] == image["pushed"]
    assert version.tags["mlci.build_url"] == f"{wired.jenkins.url}/job/mlci/{build.number}/"
    assert "(in image)" in build.console
    # Promote moved the alias of each model (the first version is the champion).
    for model in ("wine", "diabetes"):
        report, version = model_version(wired, build, model)
        assert version.tags["mlci.image_digest"] == image["pushed"]
        promoted = workspace / "reports" / "models" / model / "promote.json"
        assert json.loads(promoted.read_text())["champion_after"] == report["version"]
    # Deploy: the champion of the served model (serving.model: wine) in a slot container of
    # the pushed image, behind the platform's proxy, switched with the serving-proxy token.
    report, _ = model_version(wired, build)
    status = serving_status(wired)
    assert (status["model"], status["version"], status["slot"]) == (
        "wine-classifier", report["version"], "blue",
    )  # fmt: skip
    deployed = json.loads((workspace / "reports" / "models" / "wine" / "deploy.json").read_text())
    assert (deployed["runtime"], deployed["image"]) == ("docker", image["pushed"])
    assert deployed["smoke"]["passed"] is True
    assert_no_secret_in_the_log(wired, build)


def test_a_push_to_main_trains_on_the_gpu_agent_reaching_mlflow_by_another_url(
    wired: Platform,
) -> None:
    env = wired.env()
    (wired.source / "packages" / "wine-classifier" / "CHANGELOG.md").write_text("- a change\n")
    git(wired.source, "add", "-A")
    git(wired.source, "commit", "-q", "-m", "a change on main")
    head = git(wired.source, "rev-parse", "HEAD")
    remote = f"{wired.gitbucket.url}/git/mlci/mlci.git"
    git(wired.source, "push", "-q", remote, "main",
        env=pushing_env(env["GITBUCKET_ROOT_PASSWORD"], wired.work))  # fmt: skip
    delivered = [d for d in wired.gitbucket.settle_deliveries() if d.payload.get("after") == head]
    assert delivered and delivered[0].status == 200, delivered
    build = wired.run_next(TRAIN_AGENT_LABEL="gpu")
    assert_green(build, release=False)
    assert build.revision == head
    train = build.stage("Train")
    assert (train["node"], train["node_label"]) == ("gpu-agent", "gpu")
    assert train["workspace"] != build.stage("Promote")["workspace"]
    report, version = model_version(wired, build)
    # Train reached MLflow as the GPU machine does; Promote by the service's name. Promote
    # accepted the version because its run is the one Train recorded.
    assert report["tracking_uri"].startswith("http://localhost:")
    assert version.run_id == report["run_id"]
    assert version.tags["mlci.git_sha"] == head
    assert_no_secret_in_the_log(wired, build)


def test_a_tag_push_releases(wired: Platform) -> None:
    env = wired.env()
    git(wired.source, "tag", "-a", "v0.1.0", "-m", "release 0.1.0")
    remote = f"{wired.gitbucket.url}/git/mlci/mlci.git"
    git(wired.source, "push", "-q", remote, "refs/tags/v0.1.0",
        env=pushing_env(env["GITBUCKET_ROOT_PASSWORD"], wired.work))  # fmt: skip
    build = wired.run_next()
    assert_green(build, release=True)
    uploaded = sorted(p.name for p in wired.packages.iterdir())
    assert "wine_classifier-0.1.0-py3-none-any.whl" in uploaded, uploaded
    assert "diabetes_regressor-0.1.0-py3-none-any.whl" in uploaded, uploaded
    assert "mlci-0.1.0-py3-none-any.whl" in uploaded, uploaded
    assert_no_secret_in_the_log(wired, build)


def test_deleting_the_tag_starts_no_build(wired: Platform) -> None:
    env = wired.env()
    remote = f"{wired.gitbucket.url}/git/mlci/mlci.git"
    queued = len(wired.jenkins.queue)
    git(wired.source, "push", "-q", remote, ":refs/tags/v0.1.0",
        env=pushing_env(env["GITBUCKET_ROOT_PASSWORD"], wired.work))  # fmt: skip
    deletion = [d for d in wired.gitbucket.settle_deliveries() if d.payload["after"] == "0" * 40]
    assert deletion and deletion[-1].status == 200
    assert len(wired.jenkins.queue) == queued
    assert wired.jenkins.take_started_builds() == []


def test_wiring_again_changes_nothing_after_the_builds(wired: Platform) -> None:
    # The builds re-saved the job with what the Jenkinsfile's options declare: not drift.
    assert "jenkins.model.BuildDiscarderProperty" in wired.jenkins.jobs["mlci"]
    changes = wire(wired.settings(), wired.env(), source=wired.source,
                   log=lambda _line: None)  # fmt: skip
    assert [c for c in changes if c.outcome != "unchanged" and c.step != "push"] == []


def test_a_manual_build_builds_mains_head(wired: Platform) -> None:
    jk = wired.jenkins
    # Build Now: a job with parameters builds with their defaults (the UI's form); one
    # without posts job/NAME/build.
    parameterized = "<hudson.model.ParametersDefinitionProperty>" in jk.jobs["mlci"]
    endpoint = "buildWithParameters" if parameterized else "build"
    requests.post(
        f"{jk.url}/job/mlci/{endpoint}", auth=("admin", jk.api_token), timeout=10
    ).raise_for_status()
    build = wired.run_next()
    assert_green(build, release=False)
    assert build.revision == git(wired.source, "rev-parse", "main")
    assert_no_secret_in_the_log(wired, build)
