"""jenkins/score.Jenkinsfile, the nightly scoring job: what it declares, and a build of it.

The Groovy stub (jenkins_dsl_stub.groovy) records the Jenkinsfile: its timer, its parameter,
the one Invoke task it runs. The job `invoke platform.wire` creates from
jenkins/job-score.xml.template must declare the same timer and parameter, or every build
would change the job and every wiring change it back. Then the stub's exec mode builds it
for real on a fake `docker` agent, as test_jenkins_stub_exec.py builds its Jenkinsfiles: the
checkout holds a stand-in `.ci/bootstrap` that installs a stand-in `.venv/bin/invoke`, which
records what the step sees and fails like a drifted batch when told to.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .stub_runner import git, require, run_stub

pytestmark = pytest.mark.contract

REPO_ROOT = Path(__file__).resolve().parents[2]
JENKINSFILE = REPO_ROOT / "jenkins" / "score.Jenkinsfile"
TEMPLATE = REPO_ROOT / "jenkins" / "job-score.xml.template"
JOB = "mlci-score"

Recorded = dict[str, Any]


def stage(build: Recorded, name: str) -> Recorded:
    found = [s for s in build["stages"] if s["name"] == name]
    assert found, f"no stage {name!r} in {[s['name'] for s in build['stages']]}"
    return found[0]


# ---- what it declares -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    proc = run_stub(str(JENKINSFILE))
    assert proc.returncode == 0, f"the DSL stub rejected {JENKINSFILE}:\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_it_runs_nightly_on_the_docker_agent_with_one_optional_parameter(recorded: Recorded):
    assert (recorded["agent"], recorded["agent_label"]) == ("label", "docker")
    assert recorded["triggers"] == [{"cron": "H 2 * * *"}]
    (parameter,) = recorded["parameters"]
    assert (parameter["type"], parameter["name"], parameter["defaultValue"]) == (
        "string", "SCORE_INPUT", ""
    )  # fmt: skip
    assert "timeout" in recorded["options"]
    assert all("timeout" in s["options"] for s in recorded["stages"])


def test_it_prepares_then_runs_invoke_score_and_nothing_else(recorded: Recorded):
    assert [s["name"] for s in recorded["stages"]] == ["Prepare", "Score"]
    assert stage(recorded, "Prepare")["sh"] == ["bash .ci/bootstrap"]
    score = stage(recorded, "Score")
    assert score["sh"] == [".venv/bin/invoke score"]
    # MLflow's credentials bound around the step, the batch only when given, the evidence kept
    assert score["steps"] == ["withCredentials", "withEnv", "archiveArtifacts"]
    assert score["post"] == {"always": ["archiveArtifacts"]}
    text = JENKINSFILE.read_text()
    assert (
        "usernamePassword(credentialsId: 'mlflow-ci', usernameVariable: "
        "'MLFLOW_TRACKING_USERNAME', passwordVariable: 'MLFLOW_TRACKING_PASSWORD')"
    ) in text


def test_score_is_a_task_invoke_knows() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--list", "--list-format", "json"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "score" in {task["name"] for task in json.loads(proc.stdout)["tasks"]}


def test_the_job_template_declares_what_the_jenkinsfile_declares(recorded: Recorded):
    # Equal, a build finds nothing to change in the job (see the Jenkins double's declarative
    # re-save); the timer is in the job from its creation, before any build read the file.
    job = ET.fromstring(TEMPLATE.read_text().encode())
    specs = [t.findtext("spec") for t in job.iter("hudson.triggers.TimerTrigger")]
    assert [{"cron": spec} for spec in specs] == recorded["triggers"]
    parameters = [
        {
            "type": "string",
            "name": p.findtext("name"),
            "defaultValue": p.findtext("defaultValue") or "",
            "description": p.findtext("description"),
            "trim": p.findtext("trim") == "true",
        }
        for p in job.iter("hudson.model.StringParameterDefinition")
    ]
    assert parameters == recorded["parameters"]
    assert job.findtext("definition/scriptPath") == "jenkins/score.Jenkinsfile"


# ---- what the stub refuses, as Jenkins does ------------------------------------------------------


@pytest.mark.parametrize(
    ("directives", "message"),
    [
        ("triggers { cron('H 2 * *') }", "has 4 fields, not 5"),
        ("triggers { cron('61 2 * * *') }", "minute '61': out of range: 0-59"),
        ("triggers { cron('H(5-1) * * * *') }", "the start of the range is after its end"),
        ("triggers { cron('5/2 * * * *') }", "a single value takes no /STEP"),
        ("triggers { cron('@nightly') }", "unknown alias @nightly"),
        ("triggers { pollSCM('H * * * *') }", "trigger `pollSCM` is not modelled"),
        ("parameters { string(defaultValue: '') }", 'Missing required parameter: "name"'),
        ("parameters { string(name: 'A', default: '') }", 'Invalid parameter "default"'),
        ("parameters { string(name: 'A', trim: 'yes') }", "string parameter trim: yes is not"),
        ("parameters { booleanParam(name: 'A') }", "parameter type `booleanParam` is not"),
    ],
)
def test_the_stub_refuses_what_jenkins_refuses(tmp_path: Path, directives: str, message: str):
    path = tmp_path / "bad.Jenkinsfile"
    path.write_text(
        "pipeline {\n agent any\n " + directives
        + "\n stages { stage('A') { steps { sh 'true' } } }\n}\n"
    )  # fmt: skip
    proc = run_stub(str(path))
    assert proc.returncode == 3, proc.stderr
    assert message in proc.stderr


def test_the_stub_takes_the_schedules_jenkins_takes(tmp_path: Path):
    path = tmp_path / "good.Jenkinsfile"
    path.write_text(
        "pipeline {\n agent any\n triggers { cron('''TZ=Europe/Berlin\n# nightly\n"
        "H H(0-5) * * 1-5\n@daily\n*/15 9-17/2 1,15 * 7''') }\n"
        " stages { stage('A') { steps { sh 'true' } } }\n}\n"
    )
    proc = run_stub(str(path))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["triggers"]) == 1


# ---- a build of it ------------------------------------------------------------------------------

BOOTSTRAP = """\
#!/bin/bash
# Stand-in for .ci/bootstrap: installs a stand-in invoke into .venv.
set -e
mkdir -p .venv/bin
cat > .venv/bin/invoke <<'STANDIN'
#!/bin/sh
# What `invoke score` would see, outside reports/ (which is archived).
{ echo "args=$*"; echo "input=${MLCI_SCORE_INPUT-unset}";
  echo "user=${MLFLOW_TRACKING_USERNAME-unset}"; echo "password=${MLFLOW_TRACKING_PASSWORD-unset}";
  echo "reports=${MLCI_REPORTS_DIR-unset}"; echo "node=$NODE_NAME"; } > "$SEEN"
mkdir -p reports/score
echo '{"drift_score": 0.1}' > reports/score/batch.drift.json
case "${MLCI_SCORE_INPUT-}" in
  *drifted*) echo "DataDrifted: batch.csv: drift score 1.000 is above 0.5" >&2; exit 1 ;;
esac
echo "score: passed: 45 rows scored"
STANDIN
chmod +x .venv/bin/invoke
"""


@dataclass
class Agent:
    root: Path
    commit: str
    password: str

    def config(self, name: str, score_input: str) -> dict[str, Any]:
        return {
            "job_name": JOB,
            "build_env": {"BUILD_NUMBER": "7", "JOB_NAME": JOB,
                          "BUILD_URL": f"http://jenkins.test/job/{JOB}/7/"},
            "params": {"SCORE_INPUT": score_input},
            "nodes": [{
                "name": "docker-agent", "labels": ["docker", "linux"], "executors": 2,
                "root": str(self.root / "agent"),
                "process_env": {"PATH": "/usr/bin:/bin", "HOME": str(self.root),
                                "SEEN": str(self.root / f"{name}-seen.txt")},
            }],
            "checkout": {"command": [str(self.root / "checkout.sh"), str(self.root / "repo.git"),
                                     self.commit]},
            "credentials": {"mlflow-ci": {"type": "usernamePassword", "username": "mlci-ci",
                                          "password": self.password}},
            "build_dir": str(self.root / f"{name}-build"),
        }  # fmt: skip


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    require("groovy")
    require("git")
    root = tmp_path_factory.mktemp("score-exec")
    source = root / "source"
    (source / ".ci").mkdir(parents=True)
    (source / ".ci" / "bootstrap").write_text(BOOTSTRAP)
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
            set -e
            [ -d .git ] || { git init -q . && git remote add origin "$1"; }
            git fetch -q origin
            git checkout -q -f "$2"
            """
        )
    )
    checkout.chmod(0o755)
    return Agent(root, commit, f"pw-{uuid.uuid4().hex}")


def build(agent: Agent, name: str, score_input: str) -> tuple[Recorded, dict[str, str]]:
    config = agent.root / f"{name}.json"
    config.write_text(json.dumps(agent.config(name, score_input)))
    proc = run_stub("--exec", str(config), str(JENKINSFILE))
    assert proc.returncode == 0, f"the stub failed (exit {proc.returncode}):\n{proc.stderr}"
    assert agent.password not in proc.stdout + proc.stderr
    seen = (agent.root / f"{name}-seen.txt").read_text().splitlines()
    return json.loads(proc.stdout), dict(line.split("=", 1) for line in seen)


def test_a_nightly_build_without_a_batch_leaves_score_input_to_pyproject(agent: Agent):
    recorded, seen = build(agent, "nightly", "")
    assert recorded["result"] == "SUCCESS"
    assert [(s["name"], s["status"]) for s in recorded["stages"]] == [
        ("Prepare", "passed"), ("Score", "passed"),
    ]  # fmt: skip
    # an empty parameter sets no MLCI_SCORE_INPUT, which would hide score.input
    assert seen["input"] == "unset"
    assert seen["args"] == "score"
    assert (seen["user"], seen["password"]) == ("mlci-ci", agent.password)
    assert (seen["reports"], seen["node"]) == ("reports", "docker-agent")
    assert "reports/score/batch.drift.json" in recorded["archived"]
    console = Path(recorded["console_log"]).read_text()
    assert agent.password not in console


def test_a_drifted_batch_fails_the_build_and_its_evidence_is_archived(agent: Agent):
    recorded, seen = build(agent, "drifted", "data/drifted.csv")
    assert seen["input"] == "data/drifted.csv"
    score = stage(recorded, "Score")
    assert score["status"] == "failed"
    assert "script returned exit code 1" in score["error"]
    assert score["ran_post"] == {"always": ["archiveArtifacts"]}
    assert "reports/score/batch.drift.json" in recorded["archived"]
    assert recorded["result"] == "FAILURE"
    assert "DataDrifted" in Path(recorded["console_log"]).read_text()
