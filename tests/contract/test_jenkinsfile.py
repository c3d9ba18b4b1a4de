"""The Jenkinsfile calls exactly the pipeline's Invoke tasks, in the order `invoke pipeline` runs.

The Jenkinsfile is evaluated by jenkins_dsl_stub.groovy, a recording stub of the declarative
DSL, which prints the stages it saw (sh scripts, other steps, agent, when, post) as JSON. The
checks below are plain functions of that JSON, so the tests at the end can show that they
reject a wrong Jenkinsfile.

The stub also simulates a build: with `--fail REGEX` the sh steps whose script matches fail,
with `--tag NAME` the build is for a tag (a multibranch job's TAG_NAME), and `--env KEY=VALUE`
sets a variable of the build, which `when { expression { ... } }` sees as env.KEY. The job mlci
creates is a plain Pipeline job started by the Generic Webhook Trigger, which sets env.ref to the
pushed ref, so the builds below carry `--env ref=...` as that job's builds would. Each stage then
has a status (passed, failed, skipped) and the scripts and post conditions that ran, so the tests
can show where the flow stops when a stage fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlci.stages import PIPELINE_STAGES

pytestmark = pytest.mark.contract

REPO_ROOT = Path(__file__).resolve().parents[2]
JENKINSFILE = REPO_ROOT / "Jenkinsfile"
STUB = Path(__file__).resolve().parent / "jenkins_dsl_stub.groovy"
# Debian's groovy (2.4) needs JAVA_HOME; this is the JDK it runs on.
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")

INVOKE_CALL = re.compile(r"(?:^|[\s/])invoke\s+([\w.-]+)", re.MULTILINE)
# The two shell commands a stage may run: one Invoke task (plain arguments only) or bootstrap.
INVOKE_COMMAND = re.compile(r"(?:\S*/)?invoke\s+[\w.-]+(?:\s+[^\s;&|<>`$()]+)*")
BOOTSTRAP = "bash .ci/bootstrap"
BOOKKEEPING_STEPS = frozenset(
    {
        "stash",
        "unstash",
        "lock",
        "junit",
        "recordCoverage",
        "archiveArtifacts",
        "withSonarQubeEnv",
        "withCredentials",
        "timeout",
    }
)

Recorded = dict[str, Any]


# ---- running the stub -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def groovy() -> str:
    path = shutil.which("groovy")
    if path is None:
        pytest.skip(
            "groovy is not on PATH: the Jenkinsfile contract evaluates the Jenkinsfile with "
            "Groovy (apt-get install groovy; CI installs it)"
        )
    return path


def run_stub(groovy: str, jenkinsfile: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if JAVA_HOME.is_dir():
        env["JAVA_HOME"] = str(JAVA_HOME)
    # Each run is a short-lived JVM: C1 only and the serial GC start it about a third faster.
    env.setdefault("JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return subprocess.run(
        [groovy, str(STUB), *options, str(jenkinsfile)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def record(groovy: str, jenkinsfile: Path, *options: str) -> Recorded:
    proc = run_stub(groovy, jenkinsfile, *options)
    assert proc.returncode == 0, (
        f"the DSL stub rejected {jenkinsfile} (exit {proc.returncode}):\n{proc.stderr}"
    )
    return json.loads(proc.stdout)


# What the Generic Webhook Trigger sets for a push to main.
MAIN_PUSH = ("--env", "ref=refs/heads/main")
# A tag build, as either kind of job sees it: a multibranch job builds the tag (TAG_NAME,
# buildingTag()); the webhook-triggered job mlci creates only has the pushed ref.
TAG_BUILDS = {
    "multibranch": ("--tag", "v1.2.0"),
    "webhook": ("--env", "ref=refs/tags/v1.2.0"),
}


@pytest.fixture(scope="module")
def jenkinsfile(groovy: str) -> Recorded:
    """The Jenkinsfile, and a build of a push to main (not a tag) in which every step succeeds."""
    return record(groovy, JENKINSFILE, *MAIN_PUSH)


@pytest.fixture(scope="module")
def gate_failing_build(groovy: str) -> Recorded:
    return record(groovy, JENKINSFILE, *MAIN_PUSH, "--fail", r"\binvoke\s+gate\b")


@pytest.fixture(scope="module")
def tests_failing_build(groovy: str) -> Recorded:
    return record(groovy, JENKINSFILE, *MAIN_PUSH, "--fail", r"\binvoke\s+test\b")


@pytest.fixture(scope="module", params=list(TAG_BUILDS), ids=list(TAG_BUILDS))
def tag_build(groovy: str, request: pytest.FixtureRequest) -> Recorded:
    return record(groovy, JENKINSFILE, *TAG_BUILDS[request.param])


@pytest.fixture(scope="module")
def known_tasks() -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--list", "--list-format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"invoke --list failed:\n{proc.stderr}"
    return task_names(json.loads(proc.stdout))


# ---- the checks ------------------------------------------------------------------------------


def task_names(collection: dict[str, Any], prefix: str = "") -> set[str]:
    """Every name `invoke X` accepts: tasks, their aliases, and (sub)collections with a default."""
    names: set[str] = set()
    for task in collection.get("tasks", []):
        names.update(prefix + name for name in [task["name"], *task.get("aliases", [])])
    for sub in collection.get("collections", []):
        if sub.get("default"):
            names.add(prefix + sub["name"])
        names |= task_names(sub, f"{prefix}{sub['name']}.")
    return names


def invoke_calls(script: str) -> list[str]:
    return INVOKE_CALL.findall(script)


def all_sh_scripts(recorded: Recorded) -> list[str]:
    return recorded["sh"] + [script for stage in recorded["stages"] for script in stage["sh"]]


def unknown_tasks(recorded: Recorded, known: set[str]) -> list[str]:
    return [
        task
        for script in all_sh_scripts(recorded)
        for task in invoke_calls(script)
        if task not in known
    ]


def stage_tasks(recorded: Recorded) -> list[str]:
    """The Invoke tasks the stages call, in stage order."""
    return [
        task
        for stage in recorded["stages"]
        for script in stage["sh"]
        for task in invoke_calls(script)
    ]


def substance_problems(recorded: Recorded) -> list[str]:
    """What runs besides one Invoke task, bootstrap and the bookkeeping steps."""
    problems = []
    owners = [
        ("the pipeline", recorded),
        *((f"stage {s['name']!r}", s) for s in recorded["stages"]),
    ]
    for where, owner in owners:
        for script in owner["sh"]:
            command = script.strip()
            if command != BOOTSTRAP and not INVOKE_COMMAND.fullmatch(command):
                problems.append(f"{where} runs sh {script!r}")
        for step in owner["steps"]:
            if step not in BOOKKEEPING_STEPS:
                problems.append(f"{where} uses step {step!r}")
    return problems


def stage(recorded: Recorded, name: str) -> Recorded:
    found = [s for s in recorded["stages"] if s["name"] == name]
    assert found, f"no stage {name!r}; stages: {[s['name'] for s in recorded['stages']]}"
    return found[0]


def statuses(recorded: Recorded) -> dict[str, str]:
    return {s["name"]: s["status"] for s in recorded["stages"]}


def ran_tasks(recorded: Recorded) -> list[str]:
    """The Invoke tasks the stages ran in the simulated build, in order."""
    return [
        task for s in recorded["stages"] for script in s["ran_sh"] for task in invoke_calls(script)
    ]


def around(recorded: Recorded, name: str) -> tuple[list[Recorded], Recorded, list[Recorded]]:
    """The stages before the named one, that stage, and the stages after it."""
    stage(recorded, name)
    at = [s["name"] for s in recorded["stages"]].index(name)
    return recorded["stages"][:at], recorded["stages"][at], recorded["stages"][at + 1 :]


def tasks_through(task: str) -> list[str]:
    """The pipeline's tasks up to and including `task`."""
    return list(PIPELINE_STAGES[: PIPELINE_STAGES.index(task) + 1])


def assert_skipped_without_running(stages: list[Recorded]) -> None:
    for s in stages:
        assert s["status"] == "skipped", s
        assert s["skip_reason"] == "failure", s
        assert (s["ran_sh"], s["ran_steps"], s["ran_post"]) == ([], [], {}), s
        # What the stage declares is still recorded: the structural checks see it.
        assert s["sh"], f"stage {s['name']!r} lost its declared sh steps"


# ---- the Jenkinsfile --------------------------------------------------------------------------


def test_every_invoke_call_names_an_existing_task(
    jenkinsfile: Recorded, known_tasks: set[str]
) -> None:
    assert set(PIPELINE_STAGES) <= known_tasks, "invoke --list misses pipeline stages"
    assert stage_tasks(jenkinsfile), "no sh step calls invoke"
    assert unknown_tasks(jenkinsfile, known_tasks) == []


def test_stages_call_the_pipeline_tasks_in_pipeline_order(jenkinsfile: Recorded) -> None:
    assert stage_tasks(jenkinsfile) == list(PIPELINE_STAGES)
    for s in jenkinsfile["stages"]:
        calls = [task for script in s["sh"] for task in invoke_calls(script)]
        if s["name"] == "Prepare":
            assert calls == [], f"Prepare calls {calls}"
            assert s["sh"] == [BOOTSTRAP]
        else:
            assert len(calls) == 1, f"stage {s['name']!r} calls {calls or 'no task'}"
            assert calls[0] in PIPELINE_STAGES


def test_stages_do_nothing_else_of_substance(jenkinsfile: Recorded) -> None:
    assert substance_problems(jenkinsfile) == []


def test_no_stage_runs_on_the_controller_and_train_asks_for_its_own_label(
    jenkinsfile: Recorded,
) -> None:
    # `agent none`: each stage names its agent; the controller has no executors at all.
    assert jenkinsfile["agent"] == "none"
    labels = {s["name"]: (s["agent"], s["agent_label"]) for s in jenkinsfile["stages"]}
    assert set(labels.values()) == {("label", "docker")}, labels
    # Train's label comes from the build's environment (casc.yaml: TRAIN_AGENT_LABEL, `gpu`
    # once a GPU agent is connected); recorded without it, it falls back to `docker`.
    assert re.search(
        r"stage\('Train'\) \{\s+agent \{ label \"\$\{env\.TRAIN_AGENT_LABEL \?: 'docker'\}\" \}",
        JENKINSFILE.read_text(),
    )


def test_every_stage_has_a_timeout_of_its_own(jenkinsfile: Recorded) -> None:
    assert "timeout" in jenkinsfile["options"]
    assert all("timeout" in s["options"] for s in jenkinsfile["stages"]), [
        s["name"] for s in jenkinsfile["stages"] if "timeout" not in s["options"]
    ]


def test_release_runs_only_for_tags(jenkinsfile: Recorded) -> None:
    release = stage(jenkinsfile, "Release")
    assert release["when"]
    assert "buildingTag" in release["when_conditions"]


def test_test_stage_always_publishes_its_reports(jenkinsfile: Recorded) -> None:
    published = stage(jenkinsfile, "Test")["post"].get("always", [])
    assert {"junit", "recordCoverage", "archiveArtifacts"} <= set(published)


def test_reports_are_archived_where_they_are_written(jenkinsfile: Recorded) -> None:
    # With agents per stage there is no workspace after the last stage: each stage that
    # writes reports archives them itself, also when it fails.
    for name in ("Lint", "Test", "Gate", "Image", "Train", "Promote", "Deploy", "Release"):
        assert "archiveArtifacts" in stage(jenkinsfile, name)["post"].get("always", []), name
    assert jenkinsfile["post"] == {}


# ---- the Jenkinsfile's flow, in simulated builds ----------------------------------------------


def test_a_failing_quality_gate_stops_the_flow(gate_failing_build: Recorded) -> None:
    build = gate_failing_build
    before, gate, after = around(build, "Gate")
    for s in before:
        assert s["status"] == "passed", s
        assert s["ran_sh"] == s["sh"], f"stage {s['name']!r} did not run all its scripts"
    assert ran_tasks(build) == tasks_through("gate")
    assert gate["status"] == "failed"
    assert [task for script in gate["ran_sh"] for task in invoke_calls(script)] == ["gate"]
    assert "invoke gate" in gate["error"]
    assert [s["name"] for s in after] == ["Image", "Train", "Promote", "Deploy", "Release"]
    assert_skipped_without_running(after)
    assert build["result"] == "FAILURE"
    assert gate["ran_post"] == {"always": ["archiveArtifacts"]}
    # Nothing in the way (catchError, warnError, ...) that the stub cannot simulate.
    assert build["not_simulated"] == []
    # The failure changes what runs, not what the Jenkinsfile declares.
    assert stage_tasks(build) == list(PIPELINE_STAGES)


def test_a_green_branch_build_runs_every_stage_but_release(jenkinsfile: Recorded) -> None:
    assert jenkinsfile["simulation"] == {
        "fail": None,
        "tag": None,
        "env": {"ref": "refs/heads/main"},
    }
    assert jenkinsfile["result"] == "SUCCESS"
    assert statuses(jenkinsfile) == {
        s["name"]: "skipped" if s["name"] == "Release" else "passed" for s in jenkinsfile["stages"]
    }
    release = stage(jenkinsfile, "Release")
    assert (release["skip_reason"], release["when_result"]) == ("when", False)
    assert release["ran_sh"] == []
    assert ran_tasks(jenkinsfile) == [task for task in PIPELINE_STAGES if task != "release"]
    assert jenkinsfile["ran_post"] == {}


def test_a_tag_build_releases(tag_build: Recorded) -> None:
    assert tag_build["result"] == "SUCCESS"
    assert set(statuses(tag_build).values()) == {"passed"}
    release = stage(tag_build, "Release")
    assert release["when_result"] is True
    assert [task for script in release["ran_sh"] for task in invoke_calls(script)] == ["release"]
    assert ran_tasks(tag_build) == list(PIPELINE_STAGES)
    assert tag_build["not_simulated"] == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(("--env", "ref=refs/heads/v1-feature"), id="branch-named-like-a-tag"),
        # Started by hand, not by the webhook: no ref at all (env.ref is null).
        pytest.param((), id="no-ref"),
    ],
)
def test_a_build_that_is_not_for_a_tag_does_not_release(
    groovy: str, options: tuple[str, ...]
) -> None:
    build = record(groovy, JENKINSFILE, *options)
    assert build["result"] == "SUCCESS"
    release = stage(build, "Release")
    assert (release["status"], release["skip_reason"]) == ("skipped", "when")
    assert release["when_result"] is False
    # Nor does it deploy: only main and tags reach users.
    deploy = stage(build, "Deploy")
    assert (deploy["status"], deploy["when_result"]) == ("skipped", False)
    assert ran_tasks(build) == [t for t in PIPELINE_STAGES if t not in ("deploy", "release")]


def test_main_and_tags_deploy_after_promote(jenkinsfile: Recorded, tag_build: Recorded) -> None:
    for build in (jenkinsfile, tag_build):
        deploy = stage(build, "Deploy")
        assert (deploy["status"], deploy["when_result"]) == ("passed", True)
        assert [task for script in deploy["ran_sh"] for task in invoke_calls(script)] == ["deploy"]
    order = [s["name"] for s in jenkinsfile["stages"]]
    assert order.index("Promote") + 1 == order.index("Deploy")


def test_a_failing_training_run_still_archives_its_reports(groovy: str) -> None:
    build = record(groovy, JENKINSFILE, *MAIN_PUSH, "--fail", r"\binvoke\s+train\b")
    before, train, after = around(build, "Train")
    assert {s["status"] for s in before} == {"passed"}
    assert ran_tasks(build) == tasks_through("train")
    assert train["status"] == "failed"
    assert "invoke train" in train["error"]
    # The reports stay on the gpu agent unless Train's own post archives them.
    assert train["ran_post"] == {"always": ["archiveArtifacts"]}
    assert "stash" not in train["ran_steps"]
    assert [s["name"] for s in after] == ["Promote", "Deploy", "Release"]
    assert_skipped_without_running(after)
    assert build["result"] == "FAILURE"
    assert build["ran_post"] == {}
    assert build["not_simulated"] == []


def test_failing_tests_still_publish_their_reports(tests_failing_build: Recorded) -> None:
    build = tests_failing_build
    before, test, after = around(build, "Test")
    assert {s["status"] for s in before} == {"passed"}
    assert ran_tasks(build) == tasks_through("test")
    assert test["status"] == "failed"
    assert test["ran_post"] == {"always": ["junit", "recordCoverage", "archiveArtifacts"]}
    assert test["ran_steps"] == ["junit", "recordCoverage", "archiveArtifacts"]
    assert after[0]["name"] == "Scan"
    assert_skipped_without_running(after)
    assert build["result"] == "FAILURE"
    assert build["ran_post"] == {}
    # Nothing in the way (catchError, warnError, ...) that the stub cannot simulate.
    assert build["not_simulated"] == []


# ---- the checks catch mistakes ----------------------------------------------------------------


def write_jenkinsfile(tmp_path: Path, stage_body: str) -> Path:
    path = tmp_path / "Jenkinsfile"
    body = textwrap.indent(textwrap.dedent(stage_body).strip(), " " * 16)
    path.write_text(
        "pipeline {\n"
        "    agent any\n"
        "    stages {\n"
        "        stage('Lint') {\n"
        f"{body}\n"
        "        }\n"
        "    }\n"
        "}\n"
    )
    return path


def test_stub_rejects_sections_chained_on_one_line(groovy: str, tmp_path: Path) -> None:
    # On separate lines the stage is fine ...
    apart = record(
        groovy,
        write_jenkinsfile(
            tmp_path,
            """
            steps { sh 'invoke lint' }
            post { always { echo 'x' } }
            """,
        ),
    )
    assert stage(apart, "Lint")["post"] == {"always": ["echo"]}
    assert substance_problems(apart) == ["stage 'Lint' uses step 'echo'"]
    # ... on one line Groovy reads steps({...}).post({...}): the stub must fail, or record the
    # echo where the same checks see it (not drop the post section silently).
    proc = run_stub(
        groovy,
        write_jenkinsfile(tmp_path, "steps { sh 'invoke lint' } post { always { echo 'x' } }"),
    )
    if proc.returncode == 0:
        assert substance_problems(json.loads(proc.stdout)), "the chained post section vanished"
    else:
        assert "`post`" in proc.stderr, proc.stderr


def test_stub_rejects_invalid_jenkinsfiles(groovy: str, tmp_path: Path) -> None:
    syntax_error = write_jenkinsfile(tmp_path, "steps { sh 'invoke lint'")
    assert run_stub(groovy, syntax_error).returncode != 0
    unknown_section = write_jenkinsfile(tmp_path, "stepz { sh 'invoke lint' }")
    proc = run_stub(groovy, unknown_section)
    assert proc.returncode != 0
    assert "stepz" in proc.stderr


def test_unknown_task_is_reported(groovy: str, tmp_path: Path, known_tasks: set[str]) -> None:
    recorded = record(
        groovy, write_jenkinsfile(tmp_path, "steps { sh '.venv/bin/invoke rollout' }")
    )
    assert unknown_tasks(recorded, known_tasks) == ["rollout"]


def test_extra_substance_is_reported(groovy: str, tmp_path: Path) -> None:
    recorded = record(
        groovy,
        write_jenkinsfile(
            tmp_path,
            """
            steps {
                lock('x') {
                    sh '.venv/bin/invoke lint && curl example.org'
                }
                echo 'done'
            }
            """,
        ),
    )
    assert substance_problems(recorded) == [
        "stage 'Lint' runs sh '.venv/bin/invoke lint && curl example.org'",
        "stage 'Lint' uses step 'echo'",
    ]


def test_stub_follows_jenkins_failure_semantics(groovy: str, tmp_path: Path) -> None:
    path = tmp_path / "Jenkinsfile"
    path.write_text(
        textwrap.dedent(
            """
            pipeline {
                agent any
                stages {
                    stage('Lint') {
                        steps {
                            timeout(time: 1, unit: 'MINUTES') {
                                lock('x') {
                                    sh 'invoke lint'
                                    sh 'invoke lint --again'
                                }
                            }
                            sh 'invoke after'
                        }
                        post {
                            cleanup { echo 'cleanup' }
                            success { echo 'success' }
                            unsuccessful { echo 'unsuccessful' }
                            failure { echo 'failure' }
                            always { junit 'reports/junit.xml' }
                        }
                    }
                    stage('Next') {
                        steps {
                            sh 'invoke next'
                        }
                        post {
                            always { echo 'next' }
                        }
                    }
                }
                post {
                    success { echo 'success' }
                    always { archiveArtifacts 'reports/**' }
                    failure { echo 'failure' }
                }
            }
            """
        )
    )
    build = record(groovy, path, "--fail", r"invoke lint$")
    lint, nxt = build["stages"]
    # The failing sh leaves timeout and lock; the steps after it, inside and outside, don't run.
    assert lint["status"] == "failed"
    assert lint["ran_sh"] == ["invoke lint"]
    assert lint["sh"] == ["invoke lint", "invoke lint --again", "invoke after"]
    # Post conditions run in Jenkins' order, whatever the order they are written in.
    assert list(lint["ran_post"]) == ["always", "failure", "unsuccessful", "cleanup"]
    assert lint["ran_post"]["always"] == ["junit"]
    # A stage skipped after a failure runs neither its steps nor its post.
    assert (nxt["status"], nxt["ran_sh"], nxt["ran_post"]) == ("skipped", [], {})
    assert build["result"] == "FAILURE"
    assert build["ran_post"] == {"always": ["archiveArtifacts"], "failure": ["echo"]}
    assert build["not_simulated"] == []


def test_stub_evaluates_when_expressions_against_the_build_env(groovy: str, tmp_path: Path) -> None:
    path = tmp_path / "Jenkinsfile"
    path.write_text(
        textwrap.dedent(
            """
            pipeline {
                agent any
                environment {
                    KIND = 'tags'
                }
                stages {
                    stage('Tagged') {
                        environment {
                            OWN = 'own'
                        }
                        when {
                            // Jenkins evaluates when before the stage's own environment.
                            expression { env.ref.startsWith("refs/${KIND}/") && env.OWN == null }
                        }
                        steps {
                            sh "invoke tagged ${env.OWN}"
                        }
                        post {
                            always { junit 'reports/junit.xml' }
                        }
                    }
                    stage('After') {
                        steps {
                            sh 'invoke after'
                        }
                    }
                }
                post {
                    always { archiveArtifacts 'reports/**' }
                }
            }
            """
        )
    )
    tagged, after = record(groovy, path, "--env", "ref=refs/tags/v1")["stages"]
    assert (tagged["status"], tagged["when_result"]) == ("passed", True)
    assert tagged["ran_sh"] == ["invoke tagged own"]
    assert after["status"] == "passed"
    branch = record(groovy, path, "--env", "ref=refs/heads/main")
    assert [s["status"] for s in branch["stages"]] == ["skipped", "passed"]
    # Without ref, env.ref is null as in Jenkins: the expression throws, which fails the stage
    # (without its post) and the build; later stages are skipped, the pipeline's post runs.
    build = record(groovy, path)
    tagged, after = build["stages"]
    assert (tagged["status"], tagged["when_result"]) == ("failed", "error")
    assert "NullPointerException" in tagged["error"]
    assert (tagged["ran_sh"], tagged["ran_post"]) == ([], {})
    assert (after["status"], after["skip_reason"]) == ("skipped", "failure")
    assert build["result"] == "FAILURE"
    assert build["ran_post"] == {"always": ["archiveArtifacts"]}
    # --env takes KEY=VALUE.
    proc = run_stub(groovy, path, "--env", "ref")
    assert proc.returncode == 64, proc.stderr
