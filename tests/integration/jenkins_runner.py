"""The controller's side of a Jenkins build, for running the real Jenkinsfile here.

No Jenkins can run on this machine. What a controller decides before and around the steps is
taken from the files mlci ships, never restated here:

* nodes, their labels, modes and node environment, the global environment, the credentials
  and the SonarQube installation come from jenkins/casc.yaml, with JCasC's ``${NAME}`` and
  ``${NAME:-default}`` resolved from the platform's env file (as the controller's entrypoint
  provides them);
* the job's SCM (clone URL, credential, branch spec) and parameters come from the job as the
  Jenkins double stores it after ``invoke platform.wire`` created it; the build's variables
  and parameters come from the double's build record (the Generic Webhook Trigger or a
  manual build);
* the Jenkinsfile is read from the commit the branch spec resolves to, as a Pipeline job
  from SCM reads it.

The declarative pipeline itself then runs in the Groovy stub's exec mode
(tests/contract/jenkins_dsl_stub.groovy ``--exec``): every ``sh`` step runs for real, in the
workspace of the agent its stage's label selects, with the environment Jenkins would give it.
Service names inside the platform (``http://mlflow:5000`` ...) are rewritten to where this
test's servers listen; that mapping is the only thing the test adds to the configuration.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CASC = REPO_ROOT / "jenkins" / "casc.yaml"
STUB = REPO_ROOT / "tests" / "contract" / "jenkins_dsl_stub.groovy"
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
JCASC_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Jenkins' EnvVars.expand: ${NAME} or $NAME; an unknown name stays as it is.
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
# What a Jenkins agent process has: the machine's PATH (never a project's virtualenv).
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def resolve_casc(text: str, env: Mapping[str, str]) -> Any:
    """casc.yaml with ``${NAME}`` / ``${NAME:-default}`` resolved in its values (as JCasC does;
    comments are not values); a variable without a value or default is an error."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        raise KeyError(f"casc.yaml needs ${{{name}}}, which the env file does not set")

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str):
            return JCASC_VARIABLE.sub(value, node)
        return node

    return walk(yaml.safe_load(text))


def expand(text: str, variables: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return ENV_REFERENCE.sub(value, text)


def _env_list(properties: list[Any] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for prop in properties or []:
        for entry in (prop.get("envVars") or {}).get("env", []):
            found[str(entry["key"])] = str(entry["value"])
    return found


@dataclass
class Node:
    name: str
    labels: list[str]
    mode: str
    executors: int
    env: dict[str, str]


@dataclass
class Controller:
    """What casc.yaml makes of the controller: executors, nodes, environment, credentials."""

    executors: int
    nodes: list[Node]
    global_env: dict[str, str]
    credentials: dict[str, dict[str, str]]
    sonar: dict[str, dict[str, str]]
    gwt_whitelist: dict[str, Any]

    @classmethod
    def from_casc(cls, env: Mapping[str, str]) -> Controller:
        casc = resolve_casc(CASC.read_text(), env)
        jenkins = casc["jenkins"]
        nodes = [
            Node(
                name=n["permanent"]["name"],
                labels=str(n["permanent"].get("labelString", "")).split(),
                mode=n["permanent"].get("mode", "NORMAL"),
                executors=int(n["permanent"].get("numExecutors", 1)),
                env=_env_list(n["permanent"].get("nodeProperties")),
            )
            for n in jenkins.get("nodes", [])
        ]
        credentials: dict[str, dict[str, str]] = {}
        for domain in casc["credentials"]["system"]["domainCredentials"]:
            for entry in domain["credentials"]:
                ((kind, body),) = entry.items()
                if kind == "string":
                    credentials[body["id"]] = {"type": "string", "secret": str(body["secret"])}
                elif kind == "usernamePassword":
                    credentials[body["id"]] = {
                        "type": "usernamePassword",
                        "username": str(body["username"]),
                        "password": str(body["password"]),
                    }
        sonar = {
            i["name"]: {"url": i["serverUrl"], "credentials_id": i["credentialsId"]}
            for i in casc["unclassified"]["sonarGlobalConfiguration"]["installations"]
        }
        return cls(
            executors=int(jenkins.get("numExecutors", 2)),
            nodes=nodes,
            global_env=_env_list(jenkins.get("globalNodeProperties")),
            credentials=credentials,
            sonar=sonar,
            gwt_whitelist=casc["unclassified"].get("whitelist", {}),
        )


@dataclass(frozen=True)
class JobScm:
    clone_url: str
    credentials_id: str
    branch_spec: str
    script_path: str


def job_scm(config_xml: str) -> JobScm:
    root = ET.fromstring(config_xml.encode("utf-8"))
    definition = root.find("definition")
    assert definition is not None and "CpsScmFlowDefinition" in definition.get("class", "")
    remote = definition.find("scm/userRemoteConfigs/hudson.plugins.git.UserRemoteConfig")
    assert remote is not None
    return JobScm(
        clone_url=remote.findtext("url", ""),
        credentials_id=remote.findtext("credentialsId", ""),
        branch_spec=definition.findtext("scm/branches/hudson.plugins.git.BranchSpec/name", ""),
        script_path=definition.findtext("scriptPath", "Jenkinsfile"),
    )


def rewrite(value: str, services: Mapping[str, str]) -> str:
    """A URL inside the platform, as this test's servers are reached."""
    for inside, here in services.items():
        value = value.replace(inside, here)
    return value


# The git plugin hands the job's credential to git through an askpass helper; here it reads a
# 0600 file next to it, so the password is in no agent's environment and on no command line.
ASKPASS = """#!/bin/sh
dir=$(dirname "$0")
case "$1" in
    Username*) cat "$dir/scm-username" ;;
    *) cat "$dir/scm-password" ;;
esac
"""

CHECKOUT = """#!/bin/sh
# The declarative checkout of one stage: clone once per workspace, then fetch and check out
# the build's revision (as the git plugin does: refs/remotes/origin/*, tags, detached HEAD).
set -eu
export GIT_ASKPASS={askpass} GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_GLOBAL=/dev/null
if [ ! -d .git ]; then
    git init -q .
    git remote add origin {url}
fi
git fetch -q --tags origin '+refs/heads/*:refs/remotes/origin/*'
git checkout -q -f {revision}
"""


def git_env(askpass: Path) -> dict[str, str]:
    return {
        "PATH": AGENT_PATH,
        "HOME": str(askpass.parent),
        "GIT_ASKPASS": str(askpass),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }


@dataclass
class Build:
    """One build's outcome: the stub's JSON, or a checkout that found nothing to build."""

    number: int
    result: str
    revision: str | None
    stages: list[dict[str, Any]] = field(default_factory=list)
    json: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    console: str = ""
    console_raw: str = ""

    def stage(self, name: str) -> dict[str, Any]:
        found = [s for s in self.stages if s["name"] == name]
        assert found, f"no stage {name!r} in {[s['name'] for s in self.stages]}"
        return found[0]


@dataclass
class Runner:
    """Runs the builds the Jenkins double started, as its controller and agents would."""

    work: Path
    controller: Controller
    services: dict[str, str]
    node_process_env: dict[str, dict[str, str]]
    jenkins_url: str
    groovy: str

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        scm = self.work / "scm"
        scm.mkdir(mode=0o700, exist_ok=True)
        self.askpass = scm / "askpass.sh"
        self.askpass.write_text(ASKPASS)
        self.askpass.chmod(0o700)
        self.cache = self.work / "scm-cache"

    def _credentials(self, credentials_id: str) -> None:
        credential = self.controller.credentials[credentials_id]
        for name in ("username", "password"):
            path = self.askpass.parent / f"scm-{name}"
            path.write_text(credential[name])
            path.chmod(0o600)

    # -- SCM -----------------------------------------------------------------------------------

    def resolve_revision(self, scm: JobScm, variables: Mapping[str, str]) -> tuple[str | None, str]:
        """The commit the branch spec names for this build, or None and git's complaint."""
        spec = expand(scm.branch_spec, variables)
        url = rewrite(scm.clone_url, self.services)
        self._credentials(scm.credentials_id)
        env = git_env(self.askpass)
        if not (self.cache / ".git").is_dir():
            self.cache.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "."], cwd=self.cache, env=env, check=True)
            subprocess.run(["git", "remote", "add", "origin", url], cwd=self.cache, env=env,
                           check=True)  # fmt: skip
        fetched = subprocess.run(
            ["git", "fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"],
            cwd=self.cache, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if fetched.returncode != 0:
            return None, f"git fetch failed: {fetched.stderr.strip()}"
        candidate = (
            "refs/remotes/origin/" + spec.removeprefix("refs/heads/")
            if spec.startswith("refs/heads/")
            else spec
        )
        parsed = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"{candidate}^{{commit}}"],
            cwd=self.cache, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if parsed.returncode != 0:
            return None, f"Couldn't find any revision to build (branch spec {spec!r})"
        return parsed.stdout.strip(), ""

    # -- one build -----------------------------------------------------------------------------

    def run(self, job: str, config_xml: str, record: Any, *, timeout: float = 2400) -> Build:
        variables = {**record.parameters, **record.variables}
        scm = job_scm(config_xml)
        revision, problem = self.resolve_revision(scm, variables)
        if revision is None:
            return Build(record.number, "FAILURE", None, error=problem)
        build_dir = self.work / f"{job}-{record.number}"
        build_dir.mkdir(parents=True, exist_ok=True)
        jenkinsfile = build_dir / "Jenkinsfile"
        jenkinsfile.write_text(
            subprocess.run(
                ["git", "show", f"{revision}:{scm.script_path}"],
                cwd=self.cache,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        build_url = f"{self.jenkins_url}/job/{job}/{record.number}/"
        checkout = build_dir / "checkout.sh"
        checkout.write_text(
            CHECKOUT.format(
                askpass=shlex.quote(str(self.askpass)),
                url=shlex.quote(rewrite(scm.clone_url, self.services)),
                revision=shlex.quote(revision),
            )
        )
        checkout.chmod(0o755)
        config = {
            "job_name": job,
            "build_env": {
                "BUILD_NUMBER": str(record.number),
                "BUILD_ID": str(record.number),
                "BUILD_URL": build_url,
                "BUILD_TAG": f"jenkins-{job}-{record.number}",
                "JOB_NAME": job,
                "JOB_BASE_NAME": job,
                "JOB_URL": f"{self.jenkins_url}/job/{job}/",
                "JENKINS_URL": f"{self.jenkins_url}/",
                **variables,
            },
            "params": dict(record.parameters),
            "global_env": {
                k: rewrite(v, self.services) for k, v in self.controller.global_env.items()
            },
            "nodes": [
                {
                    "name": node.name,
                    "labels": node.labels,
                    "mode": node.mode,
                    "executors": node.executors,
                    "root": str(self.work / "nodes" / node.name),
                    "process_env": {
                        "PATH": AGENT_PATH,
                        "HOME": str(self.work / "nodes" / node.name),
                        "LANG": "C.UTF-8",
                        **self.node_process_env.get(node.name, {}),
                    },
                    "env": {k: rewrite(v, self.services) for k, v in node.env.items()},
                }
                for node in self.controller.nodes
            ],
            "checkout": {"command": [str(checkout)]},
            "credentials": self.controller.credentials,
            "sonar_installations": {
                name: {**inst, "url": rewrite(inst["url"], self.services)}
                for name, inst in self.controller.sonar.items()
            },
            "build_dir": str(build_dir),
        }
        for node in config["nodes"]:
            Path(node["root"]).mkdir(parents=True, exist_ok=True)
        config_path = build_dir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        config_path.chmod(0o600)
        env = dict(os.environ)
        if JAVA_HOME.is_dir():
            env["JAVA_HOME"] = str(JAVA_HOME)
        env.setdefault("JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        done = subprocess.run(
            [self.groovy, str(STUB), "--exec", str(config_path), str(jenkinsfile)],
            capture_output=True, text=True, env=env, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"the stub failed (exit {done.returncode}):\n{done.stderr}"
        result = json.loads(done.stdout)
        (build_dir / "result.json").write_text(json.dumps(result, indent=2))
        console = Path(result.get("console_log") or build_dir / "console.log")
        raw = Path(result.get("console_raw_log") or console.with_name("console-raw.log"))
        return Build(
            record.number,
            result["result"],
            revision,
            stages=result["stages"],
            json=result,
            console=console.read_text() if console.is_file() else "",
            console_raw=raw.read_text() if raw.is_file() else "",
        )


def groovy_or_none() -> str | None:
    return shutil.which("groovy")


def configure_jenkins_double(double: Any, controller: Controller) -> None:
    """Give the Jenkins double what casc.yaml gives the controller: nodes, secret texts, and
    the trigger's whitelist (JCasC's camelCase keys as the double names them)."""
    for node in controller.nodes:
        double.add_node(
            node.name, " ".join(node.labels), executors=node.executors, mode=node.mode,
            web_socket=True,
        )  # fmt: skip
    for credential_id, credential in controller.credentials.items():
        if credential["type"] == "string":
            double.add_secret_text(credential_id, credential["secret"])
    whitelist = controller.gwt_whitelist
    double.set_gwt_whitelist(
        bool(whitelist.get("enabled")),
        [
            {
                "host": item.get("host", ""),
                "hmac_enabled": bool(item.get("hmacEnabled")),
                "hmac_header": item.get("hmacHeader"),
                "hmac_algorithm": item.get("hmacAlgorithm"),
                "hmac_credential_id": item.get("hmacCredentialId"),
            }
            for item in whitelist.get("whitelistItems", [])
        ],
    )
