"""The pieces of the Jenkins path that need no server: tool lookup, the trigger's filter,
what the job owns, the training container's environment and placement, the train stage's
choice of where to train."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlci import image_run, tools
from mlci.context import StageContext
from mlci.errors import ConfigError, StageFailed
from mlci.platform.secrets import ensure_env_file
from mlci.platform.wire import canonical_xml, filter_expression, owned_part
from mlci.reports import write_json
from mlci.stages import image, scan, train

# ---- programs are found beside the interpreter first -----------------------------------------


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_program_beside_the_interpreter_wins_over_path(tmp_path, monkeypatch):
    venv_bin, elsewhere = tmp_path / "venv" / "bin", tmp_path / "usr" / "bin"
    venv_bin.mkdir(parents=True)
    elsewhere.mkdir(parents=True)
    _executable(venv_bin / "scanner")
    _executable(elsewhere / "scanner")
    _executable(elsewhere / "only-on-path")
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(elsewhere))
    assert tools.find_program("scanner") == str(venv_bin / "scanner")
    assert tools.find_program("only-on-path") == str(elsewhere / "only-on-path")
    assert tools.find_program("nowhere") is None
    # A path is taken as it is, when it is an executable file.
    assert tools.find_program(str(elsewhere / "scanner")) == str(elsewhere / "scanner")
    (elsewhere / "plain").write_text("")
    assert tools.find_program(str(elsewhere / "plain")) is None


def test_the_scanner_gets_every_property_as_a_d_option():
    argv = scan.scanner_argv(
        ["pysonar"], {"sonar.projectKey": "k", "sonar.qualitygate.wait": "false"}
    )
    assert argv == ["pysonar", "-Dsonar.projectKey=k", "-Dsonar.qualitygate.wait=false"]


def test_an_empty_scanner_setting_is_a_config_error():
    with pytest.raises(ConfigError, match=r"sonar\.scanner is empty"):
        scan.resolve_scanner([])


# ---- the trigger's filter: accepted refs, never a deletion -----------------------------------


@pytest.mark.parametrize(
    ("text", "builds"),
    [
        (f"refs/heads/main {'a' * 40}", True),
        (f"refs/tags/v2.0.0 {'b' * 40}", True),
        (f"refs/tags/v2.0.0 {'0' * 40}", False),
        (f"refs/heads/main {'0' * 40}", False),
        (f"refs/heads/feature {'a' * 40}", False),
        (f"refs/tags/x1 {'a' * 40}", False),
        ("refs/heads/main $commit", False),  # the variable did not resolve
    ],
)
def test_the_filter_takes_pushes_of_accepted_refs_only(text, builds):
    expression = filter_expression("^refs/(heads/main|tags/v.+)$")
    assert bool(re.search(expression, text)) is builds


@pytest.mark.parametrize("ref_filter", ["refs/heads/main", "^refs/heads/main", "refs/.*$", "^a\\$"])
def test_an_unanchored_ref_filter_is_refused(ref_filter):
    with pytest.raises(ConfigError, match="not anchored"):
        filter_expression(ref_filter)


# ---- what the job owns: a build's re-save is not drift ---------------------------------------

WANTED = """<flow-definition plugin="workflow-job">
  <description>d</description>
  <properties>
    <hudson.model.ParametersDefinitionProperty><parameterDefinitions/></hudson.model.ParametersDefinitionProperty>
  </properties>
  <definition class="x"><scriptPath>Jenkinsfile</scriptPath></definition>
  <disabled>false</disabled>
</flow-definition>"""

RESAVED = """<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job@1400.v1">
  <actions>
    <org.jenkinsci.plugins.pipeline.modeldefinition.actions.DeclarativeJobAction
        plugin="pipeline-model-definition@2.2"/>
  </actions>
  <description>d</description>
  <properties>
    <jenkins.model.BuildDiscarderProperty>
      <strategy class="hudson.tasks.LogRotator"><numToKeep>30</numToKeep></strategy>
    </jenkins.model.BuildDiscarderProperty>
    <hudson.model.ParametersDefinitionProperty><parameterDefinitions/></hudson.model.ParametersDefinitionProperty>
  </properties>
  <definition class="x"><scriptPath>Jenkinsfile</scriptPath></definition>
  <disabled>false</disabled>
</flow-definition>"""


def test_what_a_build_adds_to_the_job_is_not_drift():
    assert canonical_xml(RESAVED) != canonical_xml(WANTED)
    assert canonical_xml(owned_part(RESAVED, WANTED)) == canonical_xml(WANTED)


def test_a_change_to_what_mlci_owns_still_is_drift():
    edited = RESAVED.replace("<scriptPath>Jenkinsfile", "<scriptPath>Other")
    assert canonical_xml(owned_part(edited, WANTED)) != canonical_xml(WANTED)
    dropped = RESAVED.replace(
        "<hudson.model.ParametersDefinitionProperty><parameterDefinitions/>"
        "</hudson.model.ParametersDefinitionProperty>",
        "",
    )
    assert canonical_xml(owned_part(dropped, WANTED)) != canonical_xml(WANTED)


# ---- training in the image: where, with what environment -------------------------------------


def test_train_trains_here_unless_a_pushed_image_is_reported(write_project, load, tmp_path):
    write_project("")
    ctx = StageContext(load())
    assert train.training_image(ctx) is None  # no image report at all
    write_json(tmp_path / "reports" / "image.json", {"image_id": "sha256:local", "tags": ["x"]})
    assert train.training_image(ctx) is None  # built, not pushed: local
    pushed = "127.0.0.1:5001/m@sha256:" + "a" * 64
    write_json(tmp_path / "reports" / "image.json", {"pushed": pushed})
    assert train.training_image(ctx) == pushed
    assert train.training_image(StageContext(load({"train.in_image": "never"}))) is None


def test_always_training_in_the_image_refuses_without_one(write_project, load):
    write_project("")
    with pytest.raises(StageFailed, match="no pushed image to train in") as info:
        train.training_image(StageContext(load({"train.in_image": "always"})))
    assert "MLCI_IMAGE_REGISTRY" in info.value.fix


def test_the_container_gets_settings_and_mlflow_credentials_but_no_other_secret(
    write_project, load, monkeypatch
):
    write_project('[tool.mlci.model]\nmodule = "m"')
    settings = load(
        {"model.params": {"n": 3}},
        env={
            "MLCI_MLFLOW_EXPERIMENT": "exp",
            "MLCI_SONAR_TOKEN": "sonar-secret",
            "MLCI_IMAGE_REGISTRY_PASSWORD": "registry-secret",
        },
    )
    for name, value in {
        "MLFLOW_TRACKING_USERNAME": "ci",
        "MLFLOW_TRACKING_PASSWORD": "ci-secret",
        "BUILD_URL": "http://jenkins/job/mlci/3/",
        "TWINE_PASSWORD": "index-secret",
    }.items():
        monkeypatch.setenv(name, value)
    facts = {"git_sha": "f" * 40, "image_digest": "r/m@sha256:aa"}
    env = image_run.container_env(settings, "http://mlflow:5000", facts)
    assert env["MLCI_MLFLOW_EXPERIMENT"] == "exp"  # from the environment
    assert json.loads(env["MLCI_MODEL_PARAMS"]) == {"n": 3}  # from the command line
    assert "MLCI_MODEL_MODULE" not in env  # pyproject: the container reads the same file
    assert env["MLCI_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MLCI_TRAIN_IN_IMAGE"] == "never"
    assert env["MLCI_PROJECT_ROOT"] == str(settings.project_root)
    assert json.loads(env["MLCI_TRAINING_CONTEXT"]) == facts
    assert env["MLFLOW_TRACKING_PASSWORD"] == "ci-secret"
    assert env["BUILD_URL"] == "http://jenkins/job/mlci/3/"
    for secret in ("sonar-secret", "registry-secret", "index-secret"):
        assert secret not in env.values()


class FakeEngine:
    def __init__(self, runtimes=None, containers=()):
        self.runtimes = runtimes or {}
        self.containers = set(containers)

    def info(self):
        return {"Runtimes": self.runtimes}

    def inspect_container(self, name):
        from docker.errors import NotFound

        if name not in self.containers:
            raise NotFound("no such container")
        return {"Id": "c" * 64}


def test_gpus_are_requested_where_the_engine_has_the_nvidia_runtime():
    assert image_run.wants_gpus(FakeEngine({"runc": {}, "nvidia": {}}), "auto") is True
    assert image_run.wants_gpus(FakeEngine({"runc": {}}), "auto") is False
    assert image_run.wants_gpus(FakeEngine({"runc": {}}), "all") is True
    assert image_run.wants_gpus(FakeEngine({"nvidia": {}}), "none") is False


def test_on_a_machine_the_project_is_mounted_at_its_own_path(write_project, load, monkeypatch):
    monkeypatch.setattr(image_run, "own_container", lambda client: None)
    root = write_project("")
    outside = root.parent / f"{root.name}-reports"
    settings = load({"reports_dir": str(outside)})
    where = image_run.placement(FakeEngine(), settings)
    assert where.network_mode == "host"
    assert where.volumes_from == []
    assert set(where.binds) == {str(root.resolve()), str(outside.resolve())}
    assert all(b["bind"] == path for path, b in where.binds.items())


def test_in_an_agent_container_the_agents_volumes_and_network_are_shared(
    write_project, load, monkeypatch
):
    monkeypatch.setattr(image_run, "own_container", lambda client: "c" * 64)
    write_project("")
    where = image_run.placement(FakeEngine(), load())
    assert (where.binds, where.volumes_from, where.network_mode) == (
        {}, ["c" * 64], f"container:{'c' * 64}"
    )  # fmt: skip


def test_own_container_is_none_outside_a_container(monkeypatch):
    if os.path.exists("/.dockerenv"):
        pytest.skip("this test runs inside a container")
    assert image_run.own_container(FakeEngine(containers={"anything"})) is None


def test_a_digest_is_required_to_pull():
    with pytest.raises(ConfigError, match="not an image reference by digest"):
        image_run.pull(SimpleNamespace(), "127.0.0.1:5001/m:1.0", None, print)


def test_registry_credentials_come_in_pairs(write_project, load):
    write_project("")
    assert image.registry_auth(load().image) is None
    both = load({"image.registry_username": "u", "image.registry_password": "p"}).image
    assert image.registry_auth(both) == {"username": "u", "password": "p"}
    with pytest.raises(ConfigError, match="only one of"):
        image.registry_auth(load({"image.registry_username": "u"}).image)


def test_the_env_file_holds_the_docker_group_but_never_counts_it_as_a_secret(tmp_path):
    env = ensure_env_file(tmp_path / "p.env", ["DOCKER_GID", "JENKINS_AGENT_SECRET", "X_PASSWORD"])
    assert env.values["DOCKER_GID"].isdigit()
    assert env.is_placeholder("JENKINS_AGENT_SECRET")
    assert env.secrets() == [env.values["X_PASSWORD"]]
