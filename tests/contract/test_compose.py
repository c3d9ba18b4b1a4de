"""The platform definition keeps its promises: Compose file, Jenkins configuration, job template.

services/compose.yaml is validated by the real docker-compose (1.29 here, installed by
.ci/provision) with an env file that fills every variable it references, and must refuse to
start when a secret is missing. The rest are plain functions over the parsed files that
return the problems they find; the tests at the end show that each rejects a wrong file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import string
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlci.platform.wire import filter_expression
from mlci.settings import SPECS

pytestmark = pytest.mark.contract

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "services" / "compose.yaml"
CASC = REPO_ROOT / "jenkins" / "casc.yaml"
PLUGINS = REPO_ROOT / "jenkins" / "plugins.txt"
JOB_TEMPLATE = REPO_ROOT / "jenkins" / "job.xml.template"
JENKINSFILE = REPO_ROOT / "Jenkinsfile"

# `${NAME`, `${NAME:-default}`, `${NAME:?message}`; `$${NAME}` is Compose's escape for a
# literal dollar and no variable.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
REQUIRED_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}")
DEFAULTED_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):?-[^}]*\}")
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")
URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:([^@\s]+)@")
WEAK_PAIRS = re.compile(r"\b(admin|root):(admin|root)\b", re.IGNORECASE)
WEAK_PASSWORDS = frozenset({"admin", "root", "password", "changeme", "secret"})
BOUND_PORT = re.compile(r"\$\{MLCI_BIND_ADDRESS:-127\.0\.0\.1\}:\d+:\d+(/tcp|/udp)?")

REQUIRED_PLUGINS = frozenset(
    {
        "workflow-aggregator",
        "git",
        "configuration-as-code",
        "credentials-binding",
        "sonar",
        "generic-webhook-trigger",
        "junit",
        "coverage",
        "lockable-resources",
        "timestamper",
        "matrix-auth",
        "pipeline-stage-view",
    }
)
# Compose-only variables with mlci's prefix; mlci rejects them, so never export them into a
# shell or a build that runs mlci.
PLATFORM_ONLY = frozenset({"MLCI_BIND_ADDRESS"})
TEMPLATE_FIELDS = frozenset({"clone_url", "branch_spec", "filter_expression", "webhook_token"})
# The one bind mount that is not a read-only file: the build agent drives the host's Docker
# engine (services/README.md, "Build agent and Docker engine", says why and what it grants).
DOCKER_SOCKET = "/var/run/docker.sock"
SOCKET_USERS = frozenset({"agent"})
GWT = "org.jenkinsci.plugins.gwt"
TRIGGER_PATH = (
    "properties/org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty"
    f"/triggers/{GWT}.GenericTrigger"
)

Problems = list[str]


def is_secret_name(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS)


def strings_in(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a parsed YAML tree (keys and values), with where it was found."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, str(key)
            yield from strings_in(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from strings_in(item, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


# ---- the Compose checks ---------------------------------------------------------------------


def compose_variables(text: str) -> set[str]:
    return set(VARIABLE.findall(text))


def secret_reference_problems(text: str) -> Problems:
    """A variable that holds a secret is always required (`:?`), never defaulted."""
    problems = []
    required = set(REQUIRED_REFERENCE.findall(text))
    for name in sorted(compose_variables(text)):
        if is_secret_name(name) and name not in required:
            problems.append(f"secret variable {name} is not referenced as ${{{name}:?...}}")
    for name in sorted(set(DEFAULTED_REFERENCE.findall(text))):
        if is_secret_name(name):
            problems.append(f"secret variable {name} has a default value")
    return problems


def healthcheck_problems(services: dict[str, Any]) -> Problems:
    problems = []
    waited_for = {
        dependency
        for service in services.values()
        if isinstance(service.get("depends_on"), dict)
        for dependency, condition in service["depends_on"].items()
        if (condition or {}).get("condition") == "service_completed_successfully"
    }
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        if is_one_shot(service):
            if name not in waited_for:
                problems.append(f"one-shot service {name} is not waited for by any service")
            continue
        test = check.get("test")
        if not test or check.get("disable") or test in (["NONE"], "NONE"):
            problems.append(f"long-running service {name} has no health check")
    return problems


def port_problems(services: dict[str, Any]) -> Problems:
    problems = []
    for name, service in services.items():
        for port in service.get("ports") or []:
            if not isinstance(port, str) or not BOUND_PORT.fullmatch(port):
                problems.append(
                    f"{name}: port {port!r} is not published as "
                    '"${MLCI_BIND_ADDRESS:-127.0.0.1}:HOST:CONTAINER"'
                )
    return problems


def volume_problems(document: dict[str, Any], compose_dir: Path) -> Problems:
    """Named, declared volumes for state; bind mounts only for read-only files from the repo."""
    problems = []
    declared = set(document.get("volumes") or {})
    for name, service in (document.get("services") or {}).items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                source = str(volume.get("source", ""))
                kind = volume.get("type", "volume")
                read_only = bool(volume.get("read_only"))
            else:
                parts = str(volume).split(":")
                source = parts[0] if len(parts) > 1 else ""
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
                read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            if kind == "volume":
                if not source:
                    problems.append(f"{name}: anonymous volume {volume!r}")
                elif source not in declared:
                    problems.append(f"{name}: volume {source!r} is not declared at the top level")
                continue
            if source == DOCKER_SOCKET and name in SOCKET_USERS:
                continue
            host = (compose_dir / source).resolve()
            inside_repo = host.is_relative_to(REPO_ROOT)
            if not (read_only and inside_repo and host.is_file()):
                problems.append(
                    f"{name}: bind mount {volume!r} is not a read-only file from the repository"
                )
    return problems


def literal_secret_problems(document: dict[str, Any]) -> Problems:
    problems = []
    for name, service in (document.get("services") or {}).items():
        for key, value in environment(service).items():
            if is_secret_name(key) and not REQUIRED_REFERENCE.fullmatch(value):
                problems.append(f"{name}: {key} is not a required ${{VAR:?...}} reference")
            if is_secret_name(key) and value.strip().lower() in WEAK_PASSWORDS:
                problems.append(f"{name}: {key} is the well-known password {value!r}")
    for where, text in strings_in(document):
        for password in URL_CREDENTIALS.findall(text):
            if not REQUIRED_REFERENCE.fullmatch(password):
                problems.append(f"{where}: URL with a literal password: {text!r}")
        if WEAK_PAIRS.search(text):
            problems.append(f"{where}: well-known credentials in {text!r}")
    return problems


def mlci_variable_problems(env: dict[str, str], where: str) -> Problems:
    """mlci refuses unknown MLCI_* variables: builds must never see one."""
    known = {spec.env for spec in SPECS.values()}
    return [
        f"{where}: {name} is not an mlci setting (mlci rejects unknown MLCI_* variables)"
        for name in sorted(env)
        if name.startswith("MLCI_") and name not in known
    ]


# ---- the Jenkins checks ---------------------------------------------------------------------


def casc_credential_ids(casc: dict[str, Any]) -> set[str]:
    ids = set()
    for domain in casc.get("credentials", {}).get("system", {}).get("domainCredentials", []):
        for credential in domain.get("credentials") or []:
            for body in credential.values():
                ids.add(body["id"])
    return ids


def casc_labels(casc: dict[str, Any]) -> set[str]:
    labels = set()
    for node in casc.get("jenkins", {}).get("nodes") or []:
        for body in node.values():
            labels.update(str(body.get("labelString", "")).split())
    return labels


def casc_global_env(casc: dict[str, Any]) -> dict[str, str]:
    """The global environment, with JCasC's ${NAME:-default} read as its default."""
    env = {}
    for prop in casc.get("jenkins", {}).get("globalNodeProperties") or []:
        for item in prop["envVars"]["env"]:
            value = str(item["value"])
            default = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", value)
            env[item["key"]] = default.group(1) if default else value
    return env


def casc_secret_problems(casc: dict[str, Any], provided: set[str]) -> Problems:
    """Secrets in casc.yaml are `${VAR}` that Compose passes to the jenkins service."""
    problems = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and any(
                    word in str(key).lower() for word in ("password", "secret", "token")
                ):
                    match = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value)
                    if match is None:
                        problems.append(f"{path}.{key} is not a ${{VAR}} reference")
                    elif match.group(1) not in provided:
                        problems.append(f"{path}.{key}: {match.group(1)} is not passed to Jenkins")
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}[{index}]")

    walk(casc, "casc")
    return problems


def jenkinsfile_problems(jenkinsfile: str, casc: dict[str, Any]) -> Problems:
    """Every credential, label and SonarQube server the Jenkinsfile names is configured."""
    problems = []
    ids = casc_credential_ids(casc)
    named = re.findall(r"credentials\(\s*'([^']+)'\s*\)", jenkinsfile)
    named += re.findall(r"credentialsId:\s*'([^']+)'", jenkinsfile)
    for credential in named:
        if credential not in ids:
            problems.append(f"credential {credential!r} is not defined in casc.yaml")
    labels = casc_labels(casc)
    wanted = re.findall(r"\blabel\s+'([^']+)'", jenkinsfile)
    # A label from the environment: what casc.yaml's global environment gives it.
    globals_ = casc_global_env(casc)
    for variable, default in re.findall(
        r"\blabel\s+\"\$\{env\.([A-Za-z_]+)\s*\?:\s*'([^']+)'\}\"", jenkinsfile
    ):
        wanted += [default, str(globals_.get(variable, default))]
    for label in wanted:
        if label not in labels:
            problems.append(f"no node in casc.yaml has the label {label!r}")
    sonar = casc.get("unclassified", {}).get("sonarGlobalConfiguration", {})
    installations = {item["name"]: item for item in sonar.get("installations") or []}
    for server in re.findall(r"withSonarQubeEnv\(\s*'([^']+)'\s*\)", jenkinsfile):
        if server not in installations:
            problems.append(f"SonarQube installation {server!r} is not defined in casc.yaml")
        elif installations[server].get("credentialsId") not in ids:
            problems.append(f"SonarQube installation {server!r} names an undefined credential")
    return problems


def plugin_ids(text: str) -> list[str]:
    ids = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    return ids


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def casc() -> dict[str, Any]:
    return yaml.safe_load(CASC.read_text())


@pytest.fixture(scope="module")
def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("docker-compose is not installed, but CI is set: .ci/provision installs it")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return path


def run_config(
    docker_compose: str, variables: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "platform.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    env_file.chmod(0o600)
    # The calling shell must not fill in what the env file leaves out.
    names = compose_variables(COMPOSE.read_text())
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in names and not key.startswith("COMPOSE_")
    }
    return subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean,
        timeout=120,
        check=False,
    )


def random_values(names: set[str]) -> dict[str, str]:
    return {name: secrets.token_hex(16) for name in sorted(names)}


# ---- (a) docker-compose accepts the file, and refuses a missing secret ---------------------


def test_docker_compose_accepts_the_file_with_every_variable_set(
    docker_compose: str, compose_text: str, tmp_path: Path
) -> None:
    variables = random_values(compose_variables(compose_text))
    proc = run_config(docker_compose, variables, tmp_path)
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"


def test_docker_compose_needs_nothing_but_the_secrets(
    docker_compose: str, compose_text: str, tmp_path: Path
) -> None:
    """Every variable that is not a required secret has a working default."""
    variables = random_values(set(REQUIRED_REFERENCE.findall(compose_text)))
    proc = run_config(docker_compose, variables, tmp_path)
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"


def test_docker_compose_refuses_to_start_without_a_secret(
    docker_compose: str, compose_text: str, tmp_path: Path
) -> None:
    required = sorted(set(REQUIRED_REFERENCE.findall(compose_text)))
    assert required, "the compose file requires no secret at all"
    missing = required[0]
    variables = random_values(compose_variables(compose_text) - {missing})
    proc = run_config(docker_compose, variables, tmp_path)
    assert proc.returncode != 0, f"docker-compose config passed without {missing}"
    assert missing in proc.stdout + proc.stderr


# ---- (b) the Compose file's rules -----------------------------------------------------------


def test_every_secret_variable_is_required(compose_text: str) -> None:
    assert secret_reference_problems(compose_text) == []


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    assert healthcheck_problems(compose["services"]) == []


def test_ports_are_published_on_the_bind_address_only(compose: dict[str, Any]) -> None:
    assert port_problems(compose["services"]) == []


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    assert volume_problems(compose, COMPOSE.parent) == []


def test_no_literal_or_well_known_secrets(compose: dict[str, Any]) -> None:
    assert literal_secret_problems(compose) == []


def test_the_file_is_compose_spec_on_one_network(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert len(compose["networks"]) == 1
    network = next(iter(compose["networks"]))
    for name, service in compose["services"].items():
        assert list(service.get("networks") or []) == [network], name


def test_compose_uses_mlci_names_only_for_mlci_settings(compose_text: str) -> None:
    """MLCI_BIND_ADDRESS is the one platform-only MLCI_ name; the rest are mlci settings."""
    names = {name: "" for name in compose_variables(compose_text) - PLATFORM_ONLY}
    assert mlci_variable_problems(names, "compose.yaml") == []


def test_jenkins_passes_builds_no_unknown_mlci_variable(
    compose: dict[str, Any], casc: dict[str, Any]
) -> None:
    problems = mlci_variable_problems(environment(compose["services"]["jenkins"]), "compose")
    for scope in [casc["jenkins"], *(node["permanent"] for node in casc["jenkins"]["nodes"])]:
        for prop in scope.get("globalNodeProperties", []) + scope.get("nodeProperties", []):
            env = {item["key"]: item["value"] for item in prop["envVars"]["env"]}
            problems += mlci_variable_problems(env, "casc.yaml")
    assert problems == []


# ---- (c) Jenkins: configuration as code and plugins -----------------------------------------


def test_casc_holds_no_literal_secret(compose: dict[str, Any], casc: dict[str, Any]) -> None:
    provided = set(environment(compose["services"]["jenkins"]))
    assert casc_secret_problems(casc, provided) == []


def test_casc_configures_what_the_jenkinsfile_uses(casc: dict[str, Any]) -> None:
    jenkinsfile = JENKINSFILE.read_text()
    assert jenkinsfile_problems(jenkinsfile, casc) == []
    assert {"package-index", "mlflow-ci", "image-registry", "sonarqube-token"} <= (
        casc_credential_ids(casc)
    )
    assert {"docker", "gpu"} <= casc_labels(casc)
    # Train asks for TRAIN_AGENT_LABEL; by default an agent that exists without a GPU.
    assert casc_global_env(casc)["TRAIN_AGENT_LABEL"] == "docker"
    installations = casc["unclassified"]["sonarGlobalConfiguration"]["installations"]
    servers = {item["name"]: item["serverUrl"] for item in installations}
    assert servers["sonarqube"] == "http://sonarqube:9000"


def test_casc_secures_the_controller(casc: dict[str, Any]) -> None:
    jenkins = casc["jenkins"]
    assert jenkins["securityRealm"]["local"]["allowsSignup"] is False
    entries = jenkins["authorizationStrategy"]["globalMatrix"]["entries"]
    grants = {
        (kind, body["name"]): set(body["permissions"])
        for entry in entries
        for kind, body in entry.items()
    }
    assert "Overall/Administer" in grants[("user", "admin")]
    assert grants[("group", "authenticated")] == {"Overall/Read", "Job/Read"}
    # Jenkins always runs its default crumb issuer; JCasC on Jenkins >= 2.543 (the LTS the
    # image follows) refuses to start on its removed option, excludeClientIPFromCrumb.
    assert "crumbIssuer" not in jenkins
    # The controller runs no build: its executors could read JENKINS_HOME and the secrets.
    assert jenkins["numExecutors"] == 0
    modes = {n["permanent"]["name"]: n["permanent"]["mode"] for n in jenkins["nodes"]}
    assert modes == {"docker-agent": "NORMAL", "gpu-agent": "EXCLUSIVE"}
    # Webhook calls must carry GitBucket's signature.
    (item,) = casc["unclassified"]["whitelist"]["whitelistItems"]
    assert casc["unclassified"]["whitelist"]["enabled"] is True
    assert (item["hmacEnabled"], item["hmacHeader"], item["hmacAlgorithm"]) == (
        True, "X-Hub-Signature-256", "HmacSHA256"
    )  # fmt: skip
    assert item["hmacCredentialId"] in casc_credential_ids(casc)


def test_plugins_list_holds_every_required_plugin() -> None:
    ids = plugin_ids(PLUGINS.read_text())
    assert {plugin.split(":", 1)[0] for plugin in ids} >= REQUIRED_PLUGINS
    assert not [plugin for plugin in ids if plugin.endswith(":latest")]


# ---- (d) the job template -------------------------------------------------------------------


def render_job(**overrides: str) -> tuple[dict[str, str], ET.Element]:
    values = {
        "clone_url": "http://gitbucket:8080/git/root/mlci.git",
        "branch_spec": "${commit}",
        "filter_expression": filter_expression("^refs/(heads/main|tags/v.+)$"),
        "webhook_token": secrets.token_hex(16),
        **overrides,
    }
    rendered = string.Template(JOB_TEMPLATE.read_text()).substitute(values)
    return values, ET.fromstring(rendered)


def test_job_template_has_exactly_the_documented_placeholders() -> None:
    template = string.Template(JOB_TEMPLATE.read_text())
    assert template.is_valid()
    assert set(template.get_identifiers()) == TEMPLATE_FIELDS


def test_job_template_renders_a_pipeline_from_scm() -> None:
    values, job = render_job()
    assert job.tag == "flow-definition"
    definition = job.find("definition")
    assert definition is not None
    assert definition.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
    scm = definition.find("scm")
    assert scm is not None and scm.get("class") == "hudson.plugins.git.GitSCM"
    assert scm.findtext("configVersion") == "2"
    remote = scm.find("userRemoteConfigs/hudson.plugins.git.UserRemoteConfig")
    assert remote is not None
    assert remote.findtext("url") == values["clone_url"]
    assert remote.findtext("credentialsId") == "gitbucket"
    assert scm.findtext("branches/hudson.plugins.git.BranchSpec/name") == values["branch_spec"]
    assert definition.findtext("scriptPath") == "Jenkinsfile"
    assert definition.findtext("lightweight") == "false"
    # Without a push (Build Now, Replay) the parameters name main's head.
    parameters = {
        p.findtext("name"): p.findtext("defaultValue")
        for p in job.findall(
            "properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions/"
            "hudson.model.StringParameterDefinition"
        )
    }
    assert parameters == {"ref": "refs/heads/main", "commit": "refs/heads/main"}


def test_job_template_triggers_on_matching_pushes(casc: dict[str, Any]) -> None:
    values, job = render_job()
    trigger = job.find(TRIGGER_PATH)
    assert trigger is not None, "no GenericTrigger under properties/PipelineTriggersJobProperty"
    variables = {
        var.findtext("key"): (var.findtext("value"), var.findtext("expressionType"))
        for var in trigger.findall(f"genericVariables/{GWT}.GenericVariable")
    }
    assert variables == {
        "ref": ("$.ref", "JSONPath"),
        "commit": ("$.after", "JSONPath"),
        "clone_url": ("$.repository.clone_url", "JSONPath"),
    }
    assert trigger.findtext("regexpFilterText") == "$ref $commit"
    expression = trigger.findtext("regexpFilterExpression")
    assert expression == values["filter_expression"]
    # The plugin matches with find(); Python's re.search is the same here.
    sha = "a" * 40
    assert re.search(expression, f"refs/heads/main {sha}")
    assert re.search(expression, f"refs/tags/v1.2.0 {sha}")
    assert not re.search(expression, f"refs/tags/v1.2.0 {'0' * 40}")  # a deleted tag
    assert not re.search(expression, f"refs/heads/main {'0' * 40}")  # a deleted branch
    assert not re.search(expression, f"refs/heads/feature {sha}")
    assert not re.search(expression, f"refs/heads/main-old {sha}")
    assert not re.search(expression, "refs/heads/main ")  # no commit at all
    assert trigger.findtext("token") == values["webhook_token"]
    assert trigger.findtext("causeString") == "Push to $ref"
    assert trigger.findtext("printPostContent") == "false"
    assert trigger.findtext("shouldNotFlattern") == "false"
    assert "gitbucket" in casc_credential_ids(casc)


# ---- the checks reject wrong files ----------------------------------------------------------


def test_checks_reject_defaulted_or_literal_secrets() -> None:
    text = "x: ${DB_PASSWORD:-hunter2}\ny: ${API_TOKEN}\n"
    assert len(secret_reference_problems(text)) == 3
    document = {
        "services": {
            "db": {"environment": {"POSTGRES_PASSWORD": "admin"}},
            "app": {"environment": ["DATABASE_URL=postgresql://app:hunter2@db/app"]},
            "ui": {"command": "login root:root"},
        }
    }
    problems = literal_secret_problems(document)
    assert any("POSTGRES_PASSWORD is not a required" in p for p in problems)
    assert any("well-known password" in p for p in problems)
    assert any("literal password" in p for p in problems)
    assert any("well-known credentials" in p for p in problems)


def test_checks_reject_missing_health_checks_and_open_ports() -> None:
    services = {
        "web": {"image": "x", "restart": "always", "ports": ["8080:8080", "0.0.0.0:1:1"]},
        "init": {"image": "y", "restart": "no"},
    }
    assert len(healthcheck_problems(services)) == 2
    assert len(port_problems(services)) == 2


def test_checks_reject_host_state_and_undeclared_volumes() -> None:
    document = {
        "services": {
            "db": {"volumes": ["/srv/db:/var/lib/db", "data:/data", "./compose.yaml:/c.yaml"]},
            "cache": {"volumes": ["/cache"]},
        },
        "volumes": {},
    }
    assert len(volume_problems(document, COMPOSE.parent)) == 4


def test_checks_reject_a_casc_without_what_the_jenkinsfile_uses() -> None:
    casc = {
        "jenkins": {"nodes": []},
        "credentials": {"system": {"domainCredentials": [{"credentials": []}]}},
        "unclassified": {"sonarGlobalConfiguration": {"installations": []}},
    }
    problems = jenkinsfile_problems(JENKINSFILE.read_text(), casc)
    assert any("'package-index'" in p for p in problems)
    assert any("'mlflow-ci'" in p for p in problems)
    assert any("'docker'" in p for p in problems)
    assert any("'sonarqube'" in p for p in problems)
    literal = {"credentials": [{"string": {"id": "t", "secret": "s3cret"}}]}
    assert casc_secret_problems(literal, set()) == [
        "casc.credentials[0].string.secret is not a ${VAR} reference"
    ]
    assert mlci_variable_problems({"MLCI_BIND_ADDRESS": "0.0.0.0"}, "x") != []


def test_the_agent_keeps_venvs_and_pip_cache_in_its_workspace_volume(
    compose: dict[str, Any],
) -> None:
    """Prepare reinstalls nothing on a second build: .venv lies in the workspace and pip's
    cache beside it, both in the named volume that outlives builds and the container."""
    agent = compose["services"]["agent"]
    env = environment(agent)
    mounts = {
        target: source
        for source, _, target in (v.partition(":") for v in agent["volumes"])
        if source in compose.get("volumes", {})
    }
    workdir = env["JENKINS_AGENT_WORKDIR"]
    assert mounts.get(workdir) == "agent-workspace"
    assert Path(env["PIP_CACHE_DIR"]).is_relative_to(workdir)
    for name, service in compose["services"].items():
        assert "PIP_NO_CACHE_DIR" not in environment(service), name
