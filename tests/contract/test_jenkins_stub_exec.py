"""The DSL stub's --exec mode runs a Jenkinsfile's steps for real, the way Jenkins would.

jenkins_dsl_stub.groovy --exec CONFIG.json runs each stage's sh steps as processes in the
workspace of the agent its `agent` directive selects, with the environment Jenkins gives them,
and fails where Jenkins fails. These tests write small Jenkinsfiles of their own and a config
with two fake agents (directories under tmp_path): `docker-agent` (labels docker, linux) and
`gpu-agent` (labels gpu, linux; EXCLUSIVE, so `agent any` never lands there). The declarative
checkout clones a local bare git repository and checks out one commit, as the git plugin would.

Each stub run starts a JVM, so each build below runs once (module fixtures) and several tests
read it: a build that passes through every feature, then one whose parallel branches each fail
the way Jenkins fails.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .stub_runner import git, require, run_stub

pytestmark = pytest.mark.contract

JOB = "mlci-test"
# sleep 30 under a 3 s stage timeout; a background job of that sh would touch late.txt at 4 s.
TIMEOUT_S = 3
LATE_S = 4

Build = dict[str, Any]


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def stage(build: Build, name: str) -> Build:
    found = [s for s in build["stages"] if s["name"] == name]
    assert found, f"no stage {name!r} in {[s['name'] for s in build['stages']]}"
    return found[0]


@dataclass
class World:
    """Two agents, a git repository to check out, secrets, and where the build keeps things."""

    root: Path
    commit: str
    docker_root: Path
    gpu_root: Path
    tool_dir: Path
    home: Path
    secrets: dict[str, str]

    @property
    def docker_ws(self) -> Path:
        return self.docker_root / "workspace" / JOB

    @property
    def gpu_ws(self) -> Path:
        return self.gpu_root / "workspace" / JOB

    def config(self, build_dir: Path) -> dict[str, Any]:
        # P<n> is set by layers 1..n of the environment, so its value names the layer that wins.
        layers = ["process", "global", "node", "build", "pipeline", "stage", "withEnv"]

        def upto(layer: str) -> dict[str, str]:
            at = layers.index(layer)
            return {f"P{n}": layer for n in range(at + 1, len(layers) + 1)}

        return {
            "job_name": JOB,
            "build_env": {
                "BUILD_NUMBER": "42",
                "BUILD_URL": f"http://jenkins.test/job/{JOB}/42/",
                "JOB_NAME": JOB,
                "JENKINS_URL": "http://jenkins.test/",
                "ref": "refs/heads/main",
                **upto("build"),
            },
            "params": {"commit": self.commit},
            "global_env": {"TRAIN_AGENT_LABEL": "gpu", **upto("global")},
            "nodes": [
                {
                    "name": "docker-agent",
                    "labels": ["docker", "linux"],
                    "mode": "NORMAL",
                    "executors": 2,
                    "root": str(self.docker_root),
                    "process_env": {
                        "PATH": f"{self.tool_dir}:/usr/bin:/bin",
                        "HOME": str(self.home),
                        **upto("process"),
                    },
                    "env": upto("node"),
                },
                {
                    "name": "gpu-agent",
                    "labels": ["gpu", "linux"],
                    "mode": "EXCLUSIVE",
                    "executors": 1,
                    "root": str(self.gpu_root),
                    "process_env": {"PATH": "/usr/bin:/bin", "HOME": str(self.home)},
                    "env": {"PATH+CUDA": "/opt/cuda/bin"},
                },
            ],
            "checkout": {
                "command": [
                    str(self.root / "checkout.sh"),
                    str(self.root / "repo.git"),
                    self.commit,
                ]
            },
            "credentials": {
                "api-token": {"type": "string", "secret": self.secrets["api"]},
                "registry": {
                    "type": "usernamePassword",
                    "username": "ci-user",
                    "password": self.secrets["registry"],
                },
                "sonar-token": {"type": "string", "secret": self.secrets["sonar"]},
            },
            "sonar_installations": {
                "sonarqube": {"url": "http://sonar.test:9000", "credentials_id": "sonar-token"}
            },
            "build_dir": str(build_dir),
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    require("groovy")
    require("git")
    root = tmp_path_factory.mktemp("exec")
    source = root / "source"
    source.mkdir()
    (source / "README.md").write_text("checked out\n")
    git("init", "-q", ".", cwd=source)
    git("add", ".", cwd=source)
    git("commit", "-q", "-m", "one", cwd=source)
    commit = git("rev-parse", "HEAD", cwd=source)
    git("clone", "-q", "--bare", str(source), str(root / "repo.git"), cwd=root)
    checkout = root / "checkout.sh"
    checkout.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            # The declarative checkout: fetch the job's repository, check out the build's commit.
            set -e
            [ -d .git ] || { git init -q . && git remote add origin "$1"; }
            git fetch -q origin
            git checkout -q -f "$2"
            echo "checked out $2 into $WORKSPACE on $NODE_NAME"
            """
        )
    )
    checkout.chmod(0o755)
    tool_dir = root / "docker-bin"
    tool_dir.mkdir()
    (tool_dir / "mlci-tool").write_text("#!/bin/sh\necho docker-tool\n")
    (tool_dir / "mlci-tool").chmod(0o755)
    home = root / "home"
    home.mkdir()
    secrets = {name: f"{name}-{uuid.uuid4().hex}" for name in ("api", "registry", "sonar")}
    return World(root, commit, root / "docker", root / "gpu", tool_dir, home, secrets)


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    build: Build
    build_dir: Path
    ended: float


def exec_build(world: World, name: str, jenkinsfile: str) -> Run:
    path = world.root / f"{name}.Jenkinsfile"
    path.write_text(textwrap.dedent(jenkinsfile))
    build_dir = world.root / f"{name}-build"
    config = world.root / f"{name}.json"
    config.write_text(json.dumps(world.config(build_dir)))
    proc = run_stub("--exec", str(config), str(path))
    ended = time.monotonic()
    assert proc.returncode == 0, f"the stub failed (exit {proc.returncode}):\n{proc.stderr}"
    return Run(proc, json.loads(proc.stdout), build_dir, ended)


# ---- a build through every feature ------------------------------------------------------------

FEATURES = """\
    pipeline {
        agent none
        environment {
            P5 = 'pipeline'
            P6 = 'pipeline'
            P7 = 'pipeline'
            API = credentials('api-token')
        }
        stages {
            stage('Env') {
                agent { label 'docker' }
                environment {
                    P6 = 'stage'
                    P7 = 'stage'
                }
                steps {
                    withEnv(['P7=withEnv']) {
                        sh 'env | sort > env-Env.txt'
                    }
                    sh 'mlci-tool > tool.txt'
                    sh "echo '${params.commit} ${env.P6} ${env.NODE_NAME}' > groovy.txt"
                    sh 'git rev-parse HEAD > head.txt'
                    sh 'mkdir -p out && echo from-docker > out/a.txt'
                    sh 'echo e > extra.txt && echo s > skip.txt'
                }
            }
            stage('Stash') {
                agent { label 'docker' }
                steps {
                    stash name: 'bundle', includes: 'out/**, extra.txt'
                }
            }
            stage('Gpu') {
                agent { label 'gpu && linux' }
                steps {
                    unstash 'bundle'
                    sh 'env | sort > env-Gpu.txt; git rev-parse HEAD > head.txt'
                    sh 'command -v mlci-tool > tool.txt || echo none > tool.txt'
                }
            }
            stage('Train') {
                agent { label "${env.TRAIN_AGENT_LABEL ?: 'docker'}" }
                steps {
                    sh 'echo "$NODE_NAME" > train-node.txt'
                }
            }
            stage('Secrets') {
                agent { label 'docker' }
                environment {
                    LOGIN = credentials('registry')
                }
                steps {
                    sh 'echo "api=$API login=$LOGIN"'
                    sh 'printf %s "$API $LOGIN $LOGIN_USR $LOGIN_PSW" > env-creds.txt'
                    withCredentials([
                        string(credentialsId: 'api-token', variable: 'T2'),
                        usernamePassword(
                            credentialsId: 'registry',
                            usernameVariable: 'RU',
                            passwordVariable: 'RP'
                        ),
                    ]) {
                        sh 'echo "t2=$T2 rp=$RP"; printf %s "$T2 $RU $RP" > bound.txt'
                    }
                    sh 'printf %s "${T2:-unset} ${RP:-unset}" > unbound.txt'
                }
            }
            stage('Sonar') {
                agent { label 'docker' }
                steps {
                    withSonarQubeEnv('sonarqube') {
                        sh 'env | grep ^SONAR | sort > sonar.txt'
                    }
                    sh '(env | grep -c ^SONAR || true) > sonar-after.txt'
                }
            }
            stage('Reports') {
                agent { label 'docker' }
                steps {
                    sh '''
                        mkdir -p reports
                        printf '%s\n' '<testsuite name="s">' '<testcase name="ok"/>' \
                            '<testcase name="bad"><failure message="x"/></testcase>' \
                            '<testcase name="later"><skipped/></testcase>' '</testsuite>' \
                            > reports/junit.xml
                        echo '<coverage/>' > reports/coverage.xml
                    '''
                    junit 'reports/junit.xml'
                    recordCoverage tools: [[parser: 'COBERTURA', pattern: 'reports/coverage.xml']]
                    archiveArtifacts artifacts: 'reports/**'
                }
            }
            stage('Timeout') {
                agent { label 'docker' }
                options { timeout(time: @TIMEOUT@, unit: 'SECONDS') }
                steps {
                    sh '(sleep @LATE@; touch late.txt) & sleep 30'
                }
                post {
                    always {
                        sh 'echo post-ran > post.txt'
                    }
                }
            }
            stage('After') {
                agent { label 'docker' }
                steps {
                    sh 'touch after.txt'
                }
            }
        }
        post {
            always {
                archiveArtifacts artifacts: 'reports/**'
            }
        }
    }
    """.replace("@TIMEOUT@", str(TIMEOUT_S)).replace("@LATE@", str(LATE_S))


@pytest.fixture(scope="module")
def features(world: World) -> Run:
    return exec_build(world, "features", FEATURES)


def test_env_layers_reach_sh_in_jenkins_order(world: World, features: Run) -> None:
    env = env_file(world.docker_ws / "env-Env.txt")
    # process < global node properties < the node's properties < the build's variables
    # < the pipeline's environment < the stage's < withEnv.
    layers = ["process", "global", "node", "build", "pipeline", "stage", "withEnv"]
    assert {f"P{n}": env[f"P{n}"] for n in range(1, 8)} == {
        f"P{n}": layer for n, layer in enumerate(layers, 1)
    }
    assert env["PATH"] == f"{world.tool_dir}:/usr/bin:/bin"
    assert env["HOME"] == str(world.home)
    assert env["WORKSPACE"] == str(world.docker_ws)
    assert (env["NODE_NAME"], env["STAGE_NAME"]) == ("docker-agent", "Env")
    assert set(env["NODE_LABELS"].split()) == {"docker", "linux", "docker-agent"}
    assert (env["BUILD_NUMBER"], env["JOB_NAME"], env["ref"]) == ("42", JOB, "refs/heads/main")
    assert env["commit"] == world.commit  # a job parameter is an environment variable too
    # The agent's PATH finds the agent's tools; Groovy sees params and the effective env.
    assert (world.docker_ws / "tool.txt").read_text() == "docker-tool\n"
    groovy = (world.docker_ws / "groovy.txt").read_text().split()
    assert groovy == [world.commit, "stage", "docker-agent"]
    # The other agent: its own process env, with its node property PATH+CUDA prepended.
    gpu_env = env_file(world.gpu_ws / "env-Gpu.txt")
    assert gpu_env["PATH"] == "/opt/cuda/bin:/usr/bin:/bin"
    assert (world.gpu_ws / "tool.txt").read_text() == "none\n"
    assert features.build["not_simulated"] == [
        "junit in stage 'Reports': 1 failed test(s) mark the build UNSTABLE in Jenkins "
        "(not simulated: UNSTABLE)",
        "a timeout in stage 'Timeout': Jenkins ends the build ABORTED (post runs aborted, not "
        "failure); recorded as FAILURE",
    ]


def test_labels_pick_nodes_and_workspaces(world: World, features: Run) -> None:
    nodes = {s["name"]: (s["node"], s["workspace"]) for s in features.build["stages"]}
    docker = ("docker-agent", str(world.docker_ws))
    gpu = ("gpu-agent", str(world.gpu_ws))
    # Same label, same workspace; another label, another node's workspace.
    assert nodes == {
        "Env": docker,
        "Stash": docker,
        "Gpu": gpu,
        "Train": gpu,
        "Secrets": docker,
        "Sonar": docker,
        "Reports": docker,
        "Timeout": docker,
        "After": (None, None),
    }
    # Each stage's agent checked the build's commit out into its workspace.
    for ws in (world.docker_ws, world.gpu_ws):
        assert (ws / "head.txt").read_text().strip() == world.commit
        assert (ws / "README.md").read_text() == "checked out\n"
    assert {s["checkout"]["exit_code"] for s in features.build["stages"] if s["checkout"]} == {0}
    # The label GString is evaluated when the stage starts, with the global environment:
    # recording sees env.TRAIN_AGENT_LABEL unset ('docker'), the build runs it on the gpu agent.
    train = stage(features.build, "Train")
    assert (train["agent_label"], train["node_label"]) == ("docker", "gpu")
    assert train["node"] == "gpu-agent"
    assert (world.gpu_ws / "train-node.txt").read_text() == "gpu-agent\n"


def test_stash_on_one_agent_unstash_on_another(world: World, features: Run) -> None:
    assert features.build["stashes"] == {"bundle": ["extra.txt", "out/a.txt"]}
    assert (world.gpu_ws / "out" / "a.txt").read_text() == "from-docker\n"
    assert (world.gpu_ws / "extra.txt").is_file()
    assert not (world.gpu_ws / "skip.txt").exists()


def test_credentials_are_bound_and_masked(world: World, features: Run) -> None:
    api, password = world.secrets["api"], world.secrets["registry"]
    ws = world.docker_ws
    # environment { X = credentials(...) }: secret text as X; user:pass, X_USR, X_PSW.
    assert (ws / "env-creds.txt").read_text() == (f"{api} ci-user:{password} ci-user {password}")
    # withCredentials binds for its block only.
    assert (ws / "bound.txt").read_text() == f"{api} ci-user {password}"
    assert (ws / "unbound.txt").read_text() == "unset unset"
    console = Path(features.build["console_log"]).read_text()
    raw = Path(features.build["console_raw_log"]).read_text()
    for secret in world.secrets.values():
        assert secret not in console
        assert secret not in features.proc.stdout
        assert secret not in features.proc.stderr
    assert f"api={api} login=ci-user:{password}" in raw
    assert "api=**** login=****" in console
    assert "t2=**** rp=****" in console


def test_with_sonarqube_env_sets_the_plugins_variables(world: World, features: Run) -> None:
    sonar = env_file(world.docker_ws / "sonar.txt")
    token = world.secrets["sonar"]
    assert sonar == {
        "SONAR_AUTH_TOKEN": token,
        "SONAR_CONFIG_NAME": "sonarqube",
        "SONAR_HOST_URL": "http://sonar.test:9000",
        "SONAR_MAVEN_GOAL": "sonar:sonar",
        # commons-lang3 escapeJson escapes '/'; the server's version is unknown: sonar.login.
        "SONARQUBE_SCANNER_PARAMS": (
            '{ "sonar.host.url" : "http:\\/\\/sonar.test:9000", "sonar.login" : "' + token + '"}'
        ),
    }
    # Only for the block.
    assert (world.docker_ws / "sonar-after.txt").read_text().strip() == "0"


def test_reports_are_parsed_and_archived(features: Run) -> None:
    assert features.build["junit"] == [
        {
            "stage": "Reports",
            "pattern": "reports/junit.xml",
            "files": ["reports/junit.xml"],
            "tests": 3,
            "failures": 1,
            "errors": 0,
            "skipped": 1,
        }
    ]
    assert features.build["coverage"] == [
        {
            "stage": "Reports",
            "parser": "COBERTURA",
            "pattern": "reports/coverage.xml",
            "files": ["reports/coverage.xml"],
        }
    ]
    assert features.build["archived"] == ["reports/coverage.xml", "reports/junit.xml"]
    assert (features.build_dir / "archive" / "reports" / "junit.xml").is_file()


def test_a_timeout_kills_the_running_sh(world: World, features: Run) -> None:
    timed = stage(features.build, "Timeout")
    assert (timed["status"], timed["error"]) == ("failed", "Timeout has been exceeded")
    (result,) = timed["sh_results"][:1]
    assert result["timed_out"] is True
    assert TIMEOUT_S - 1 < result["seconds"] < TIMEOUT_S + 5
    # The stage's post still runs; the stages after it do not.
    assert (world.docker_ws / "post.txt").read_text() == "post-ran\n"
    after = stage(features.build, "After")
    assert (after["status"], after["skip_reason"]) == ("skipped", "failure")
    assert not (world.docker_ws / "after.txt").exists()
    # Its whole process group went: the background job never touches late.txt.
    time.sleep(max(0.0, features.ended + LATE_S + 0.5 - result["seconds"] - time.monotonic()))
    assert not (world.docker_ws / "late.txt").exists()


def test_agent_none_leaves_the_pipelines_post_without_a_workspace(features: Run) -> None:
    build = features.build
    assert (build["agent"], build["node"]) == ("none", None)
    assert build["ran_post"] == {"always": ["archiveArtifacts"]}
    assert "Required context class hudson.FilePath is missing" in build["error"]
    assert "such as: node" in build["error"]
    assert "\u2018agent none\u2019 was specified" in build["error"]
    assert build["result"] == "FAILURE"


def test_recording_keeps_credential_bindings_out_of_the_steps(world: World) -> None:
    path = world.root / "features.Jenkinsfile"
    path.write_text(textwrap.dedent(FEATURES))
    proc = run_stub(str(path))
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads(proc.stdout)
    assert stage(recorded, "Secrets")["steps"] == ["withCredentials"]
    steps = recorded["steps"] + [step for s in recorded["stages"] for step in s["steps"]]
    assert not {"string", "usernamePassword"} & set(steps)
    # Without --exec nothing runs and the JSON has none of --exec's keys.
    assert "console_log" not in recorded
    assert "node" not in stage(recorded, "Env")


# ---- where Jenkins fails ----------------------------------------------------------------------

FAILURES = """\
    pipeline {
        agent none
        stages {
            stage('Failures') {
                parallel {
                    stage('archive-nothing') {
                        agent { label 'docker' }
                        steps { archiveArtifacts artifacts: 'nothing/**' }
                    }
                    stage('env-credential') {
                        agent { label 'docker' }
                        environment { X = credentials('nope') }
                        steps { sh 'touch never.txt' }
                    }
                    stage('bound-credential') {
                        agent { label 'docker' }
                        steps {
                            withCredentials([string(credentialsId: 'nope', variable: 'X')]) {
                                sh 'touch never.txt'
                            }
                        }
                    }
                    stage('credential-type') {
                        agent { label 'docker' }
                        steps {
                            withCredentials([string(credentialsId: 'registry', variable: 'X')]) {
                                sh 'touch never.txt'
                            }
                        }
                    }
                    stage('no-such-label') {
                        agent { label 'arm64' }
                        steps { sh 'touch never.txt' }
                    }
                    stage('no-such-sonar') {
                        agent { label 'docker' }
                        steps {
                            withSonarQubeEnv('nope') {
                                sh 'touch never.txt'
                            }
                        }
                    }
                    stage('empty-stash') {
                        agent { label 'docker' }
                        steps { stash name: 'empty', includes: 'nothing/**' }
                    }
                    stage('missing-stash') {
                        agent { label 'docker' }
                        steps { unstash 'ghost' }
                    }
                    stage('junit-nothing') {
                        agent { label 'docker' }
                        steps { junit 'nothing.xml' }
                    }
                    stage('exit-code') {
                        agent { label 'docker' }
                        steps {
                            script {
                                def rc = sh(script: 'exit 4', returnStatus: true)
                                def out = sh(script: 'echo hello', returnStdout: true).trim()
                                writeFile file: 'returned.txt', text: "${rc} ${out}"
                            }
                            sh 'exit 3'
                            sh 'touch never.txt'
                        }
                    }
                    stage('no-agent') {
                        steps { sh 'touch never.txt' }
                    }
                    stage('agent-any') {
                        agent any
                        steps { sh 'echo "$NODE_NAME" > any.txt' }
                    }
                }
            }
        }
    }
    """


@pytest.fixture(scope="module")
def failures(world: World, features: Run) -> Run:
    # After `features` (which checks the workspaces it leaves): this build uses them too.
    return exec_build(world, "failures", FAILURES)


def test_each_failure_is_jenkins_own(world: World, failures: Run) -> None:
    expected = {
        "archive-nothing": 'No artifacts found that match the file pattern "nothing/**". '
        "Configuration error?",
        "env-credential": "CredentialNotFoundException: nope",
        "bound-credential": "Could not find credentials entry with ID 'nope'",
        "credential-type": "Credentials 'registry' is of type 'Username with password' where "
        "'Secret text' was expected",
        "no-such-label": "no node has label 'arm64': Jenkins would wait in the queue forever",
        "no-such-sonar": "SonarQube installation defined in this job (nope) does not match any "
        "configured installation",
        "empty-stash": "No files included in stash \u2018empty\u2019",
        "missing-stash": "No such saved stash \u2018ghost\u2019",
        "junit-nothing": "No test report files were found. Configuration error?",
        "exit-code": "script returned exit code 3",
        "no-agent": "Required context class hudson.FilePath is missing",
    }
    branches = {s["name"]: s for s in failures.build["stages"] if s["parent"] == "Failures"}
    assert set(branches) == {*expected, "agent-any"}
    for name, message in expected.items():
        branch = branches[name]
        assert branch["status"] == "failed", branch
        assert message in branch["error"], (name, branch["error"])
    assert branches["no-such-label"]["node"] is None
    assert branches["no-agent"]["node"] is None
    # Nothing ran after a failure, and the failing steps ran nothing either.
    assert not (world.docker_ws / "never.txt").exists()
    codes = [r["exit_code"] for r in branches["exit-code"]["sh_results"]]
    assert codes == [4, 0, 3]
    assert (world.docker_ws / "returned.txt").read_text() == "4 hello"
    # agent any: any NORMAL node with executors, never the EXCLUSIVE gpu agent.
    assert branches["agent-any"]["status"] == "passed"
    assert branches["agent-any"]["node"] == "docker-agent"
    assert (world.docker_ws / "any.txt").read_text() == "docker-agent\n"
    assert stage(failures.build, "Failures")["status"] == "failed"
    assert failures.build["result"] == "FAILURE"


# ---- what the stub refuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"nodes": [{"name": "a", "root": "relative"}]}, "absolute path", id="root"),
        pytest.param({"nodez": []}, "unknown key(s) nodez", id="unknown-key"),
        pytest.param({"fail": r"\binvoke\b"}, "not both", id="fail-and-exec"),
    ],
)
def test_a_bad_exec_invocation_exits_64(world: World, change: dict[str, Any], message: str) -> None:
    config = world.config(world.root / "unused-build")
    options: list[str] = []
    if "fail" in change:
        options = ["--fail", change.pop("fail")]
    config.update(change)
    path = world.root / "bad.json"
    path.write_text(json.dumps(config))
    jenkinsfile = world.root / "bad.Jenkinsfile"
    jenkinsfile.write_text(
        "pipeline {\n agent any\n stages { stage('A') { steps { sh 'true' } } }\n}\n"
    )
    proc = run_stub(*options, "--exec", str(path), str(jenkinsfile))
    assert proc.returncode == 64, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""
