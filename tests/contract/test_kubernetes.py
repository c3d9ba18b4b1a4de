"""mlci on Kubernetes: the kustomize overlays and the Jenkins chart's values keep their promises.

Each overlay of services/kubernetes/ is rendered by the real `kubectl kustomize` (its embedded
kustomize must be v4 or newer: the files use v5 syntax), every rendered object is validated
against the Kubernetes API schemas of the versions in KUBERNETES_VERSIONS (kubernetes_validate,
strict: no unknown fields), and checkov must find nothing to report. The rest are plain checks
over the parsed objects: MLflow's replica model, the Service and the single periodic-jobs
server, secrets only through secretKeyRef, probes, the autoscaler, retaggable images.

services/kubernetes/jenkins/values.yaml is checked against the Jenkins chart's keys
(jenkins_chart_keys.txt, taken from the chart's values.yaml at the version it names) and
against jenkins/casc.yaml: the same credential ids and global variables, secrets only from the
mounted Secret, pod templates that are valid Pods and offer every label the Jenkinsfile asks for.
The agent pods, as the kubernetes plugin builds them from those templates, go through checkov
too: every check they do not pass is skipped by an annotation in the template, with its reason.

kubectl and checkov are external tools: without them these tests skip on a developer's machine
and fail when CI is set. checkov is $MLCI_CHECKOV, else .venv-tools/bin/checkov, else on PATH.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.contract

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = REPO_ROOT / "services" / "kubernetes"
OVERLAYS = {
    "single-node": KUBERNETES / "overlays" / "single-node",
    "production": KUBERNETES / "overlays" / "production",
}
JENKINS_VALUES = KUBERNETES / "jenkins" / "values.yaml"
CHART_KEYS = Path(__file__).with_name("jenkins_chart_keys.txt")
CASC = REPO_ROOT / "jenkins" / "casc.yaml"
PLUGINS = REPO_ROOT / "jenkins" / "plugins.txt"
JENKINSFILE = REPO_ROOT / "Jenkinsfile"

# The Kubernetes API versions every rendered object must be valid for: the oldest release
# still supported upstream when this was written and the newest kubernetes_validate knows.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
MIN_KUSTOMIZE = (4, 0, 0)

MLFLOW_REPLICAS = {"single-node": 1, "production": 3}
SERVING_BOUNDS = {"single-node": (1, 2), "production": (2, 10)}
PERIODIC_TASKS = "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
# Images built from this repository (or pushed by the pipeline): the base names them without
# a tag, and every overlay retags them with `images:`.
MLCI_IMAGES = ("mlci/mlflow", "mlci/pypi", "mlci/models")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
KUSTOMIZE_VERSION = re.compile(r"^Kustomize Version:\s*v?(\d+)\.(\d+)\.(\d+)", re.MULTILINE)
JCASC_REFERENCE = re.compile(r"\$\{([^}]+)\}")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tool(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message}, but CI is set")
    pytest.skip(message)


# --- kubectl and kustomize -------------------------------------------------------------------


def kustomize_problem(version_output: str) -> str | None:
    """Why `kubectl version --client` names a kustomize too old for these files, or None."""
    match = KUSTOMIZE_VERSION.search(version_output)
    if match is None:
        client = version_output.strip().splitlines()[0] if version_output.strip() else "?"
        return (
            f"kubectl ({client}) names no Kustomize Version: kubectl before 1.24 embeds "
            "kustomize v2 or v3, which cannot read services/kubernetes/ (v5 syntax); "
            f"install a kubectl with kustomize v{'.'.join(map(str, MIN_KUSTOMIZE))} or newer"
        )
    found = tuple(int(part) for part in match.groups())
    if found < MIN_KUSTOMIZE:
        return (
            f"kubectl embeds kustomize v{'.'.join(map(str, found))}, which cannot read "
            f"services/kubernetes/ (v5 syntax); install a kubectl with kustomize "
            f"v{'.'.join(map(str, MIN_KUSTOMIZE))} or newer"
        )
    return None


def test_the_kustomize_check_reads_kubectls_output() -> None:
    assert kustomize_problem("Client Version: v1.32.4\nKustomize Version: v5.5.0\n") is None
    assert kustomize_problem("Kustomize Version: v4.5.7") is None
    too_old = kustomize_problem("Client Version: v1.21.0\nKustomize Version: v2.0.3\n")
    assert too_old is not None and "v2.0.3" in too_old
    silent = 'Client Version: version.Info{Major:"1", Minor:"20"}'
    assert "names no Kustomize Version" in (kustomize_problem(silent) or "")


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        missing_tool("kubectl is not installed (it renders the kustomize overlays)")
    assert path is not None
    out = subprocess.run(
        [path, "version", "--client"], capture_output=True, text=True, timeout=60, check=False
    )
    problem = kustomize_problem(out.stdout + out.stderr)
    if problem:
        pytest.fail(problem)
    return path


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    """Every overlay's objects, as `kubectl kustomize` renders them (once per module)."""
    objects = {}
    for name, folder in OVERLAYS.items():
        out = subprocess.run(
            [kubectl, "kustomize", str(folder)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, f"kubectl kustomize {folder} failed:\n{out.stderr}"
        objects[name] = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def looks_secret(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS)


# --- The rendered overlays -------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_object_is_valid_for_the_kubernetes_api(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, version: str
) -> None:
    problems = []
    for obj in rendered[overlay]:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {error}")
    assert problems == []
    assert len(rendered[overlay]) >= 20


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_object_is_mlcis_and_named_in_the_namespace(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for obj in rendered[overlay]:
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels.get("app.kubernetes.io/part-of") == "mlci", where
        assert labels.get("app.kubernetes.io/name"), where
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "mlci", where
    for obj, _ in workloads(rendered[overlay]):
        template_labels = obj["spec"]["template"]["metadata"]["labels"]
        assert template_labels.get("app.kubernetes.io/part-of") == "mlci"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_mlflow_has_its_web_replicas_and_exactly_one_periodic_jobs_server(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    assert find(objects, "Deployment", "mlflow")["spec"]["replicas"] == MLFLOW_REPLICAS[overlay]

    periodic = {}
    for obj, spec in workloads(objects):
        for container in spec["containers"]:
            setting = env_of(container).get(PERIODIC_TASKS)
            if setting is not None:
                periodic[obj["metadata"]["name"]] = setting["value"]
    assert periodic == {"mlflow": "false", "mlflow-jobs": "true"}
    jobs = find(objects, "Deployment", "mlflow-jobs")
    assert jobs["spec"]["replicas"] == 1
    assert jobs["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_mlflow_service_selects_the_pods_of_both_deployments(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    service = find(objects, "Service", "mlflow")
    assert [p["port"] for p in service["spec"]["ports"]] == [5000]
    selector = service["spec"]["selector"].items()
    components = set()
    for name in ("mlflow", "mlflow-jobs"):
        labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert selector <= labels.items(), f"Service mlflow does not select {name}'s pods"
        components.add(labels["app.kubernetes.io/component"])
    assert components == {"tracking", "tracking-jobs"}
    # Both servers get the same settings and secrets; only the periodic-jobs switch differs.
    web, jobs = (
        find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        for name in ("mlflow", "mlflow-jobs")
    )
    assert {k: v for k, v in env_of(web).items() if k != PERIODIC_TASKS} == {
        k: v for k, v in env_of(jobs).items() if k != PERIODIC_TASKS
    }
    assert web["envFrom"] == jobs["envFrom"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_mlflows_disruption_budget_covers_the_web_tier(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    budget = find(rendered[overlay], "PodDisruptionBudget", "mlflow")
    assert budget["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "mlflow",
        "app.kubernetes.io/component": "tracking",
    }
    if overlay == "production":
        assert budget["spec"] == {**budget["spec"], "minAvailable": 2}
        assert "maxUnavailable" not in budget["spec"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_secrets_reach_containers_only_through_secret_key_refs(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    assert not [o for o in objects if o["kind"] == "Secret"], "no Secret belongs in the overlays"
    problems = []
    for obj, spec in workloads(objects):
        for container in all_containers(spec):
            for name, entry in env_of(container).items():
                if name.endswith("_FILE"):
                    continue  # a path to a mounted Secret file (the postgres image)
                if looks_secret(name) and "secretKeyRef" not in entry.get("valueFrom", {}):
                    problems.append(f"{obj['metadata']['name']}/{container['name']}: {name}")
            for source in container.get("envFrom", []):
                assert "configMapRef" in source, "envFrom only for settings, never a Secret"
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        for key in config_map.get("data", {}):
            if key.endswith(".sh"):
                continue
            if looks_secret(key):
                problems.append(f"ConfigMap {config_map['metadata']['name']}: {key}")
    assert problems == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_pods_run_unprivileged_without_api_tokens_or_service_links(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for obj, spec in workloads(rendered[overlay]):
        where = obj["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False, where
        assert spec.get("enableServiceLinks") is False, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        for container in all_containers(spec):
            context = container.get("securityContext", {})
            assert not context.get("privileged"), f"{where}/{container['name']} is privileged"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in context.get("capabilities", {}).get("drop", []), where


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_serving_container_has_probes(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for obj, spec in workloads(rendered[overlay]):
        for container in spec["containers"]:
            if not container.get("ports"):
                continue  # the init Job: nothing to probe
            where = f"{obj['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container, where
            assert "livenessProbe" in container, where
            named = {p.get("name") for p in container["ports"]}
            if "http" in named:
                for kind in ("readinessProbe", "livenessProbe"):
                    probe = container[kind]
                    assert "httpGet" in probe or "exec" in probe, f"{where} {kind}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_autoscaler_drives_model_serving(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    hpa = find(objects, "HorizontalPodAutoscaler", "model-serving")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1", "Deployment", "model-serving",
    )  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == SERVING_BOUNDS[overlay]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    serving = find(objects, "Deployment", "model-serving")
    assert "replicas" not in serving["spec"], "the autoscaler owns the replica count"
    assert serving["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = serving["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "--model-uri" in container["command"]
    assert env_of(container)["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
    assert find(objects, "PodDisruptionBudget", "model-serving")


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_images_are_pinned_pulled_always_and_retaggable(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    retag = {entry["name"]: entry for entry in kustomization(OVERLAYS[overlay])["images"]}
    assert set(retag) == set(MLCI_IMAGES)
    base_images = set()
    for path in (KUBERNETES / "base").glob("*.yaml"):
        base_images |= set(re.findall(r"image:\s*(\S+)", path.read_text()))
    assert set(MLCI_IMAGES) <= base_images, "the base names mlci's images without a tag"

    seen = set()
    for obj, spec in workloads(rendered[overlay]):
        for container in all_containers(spec):
            image = container["image"]
            where = f"{obj['metadata']['name']}/{container['name']}: {image}"
            name = image.split("@")[0].rsplit(":", 1)[0] if ":" in image else image
            tagged = "@sha256:" in image or re.search(r":[^/]+$", image)
            assert tagged and not image.endswith(":latest"), where
            assert container.get("imagePullPolicy") == "Always" or "@sha256:" in image, where
            for mlci_image in MLCI_IMAGES:
                entry = retag[mlci_image]
                if name == entry.get("newName", mlci_image):
                    seen.add(mlci_image)
    assert seen == set(MLCI_IMAGES)


def mlflow_settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the generated ConfigMap mlci-mlflow-<hash>."""
    generated = re.compile(r"mlci-mlflow-[a-z0-9]+")
    config_maps = [o for o in objects if o["kind"] == "ConfigMap"]
    (config_map,) = [o for o in config_maps if generated.fullmatch(o["metadata"]["name"])]
    return config_map["data"]


def test_the_single_node_store_is_prepared_for_mlflows_bucket(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["single-node"]
    settings = mlflow_settings(objects)
    assert settings["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    job = find(objects, "Job", "minio-init")
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["MLFLOW_ARTIFACTS_BUCKET"]["value"] == settings["MLFLOW_ARTIFACTS_BUCKET"]
    script = find(objects, "ConfigMap", "minio-init")["data"]["minio-init.sh"]
    for step in ("mb --ignore-existing", "admin policy create", "admin user add", "policy attach"):
        assert step in script
    # The secret key reaches mc on stdin, never among its arguments.
    assert not re.search(r"user add [^\n|]*MLFLOW_S3_SECRET_KEY", script)
    for name in ("mlflow-db", "minio"):
        assert find(objects, "StatefulSet", name)
        assert find(objects, "NetworkPolicy", name)
    # In-cluster PostgreSQL reads its password from the mounted Secret file.
    postgres = find(objects, "StatefulSet", "mlflow-db")["spec"]["template"]["spec"]
    assert "POSTGRES_PASSWORD_FILE" in env_of(postgres["containers"][0])


def test_production_uses_no_in_cluster_store_and_talks_to_s3(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["production"]
    assert not [o for o in objects if o["kind"] in ("StatefulSet", "Job")]
    assert "MLFLOW_S3_ENDPOINT_URL" not in mlflow_settings(objects)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_ingress_is_denied_by_default_and_opened_per_service(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    policies = {
        o["metadata"]["name"]: o["spec"] for o in rendered[overlay] if o["kind"] == "NetworkPolicy"
    }
    deny = policies.pop("default-deny-ingress")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for service in (o for o in rendered[overlay] if o["kind"] == "Service"):
        name = service["metadata"]["name"]
        assert name in policies, f"no policy lets anything reach Service {name}"
        ports = {p["port"] for rule in policies[name]["ingress"] for p in rule["ports"]}
        targets = {p["port"] for p in service["spec"]["ports"]}
        assert targets <= ports, name


# --- checkov ---------------------------------------------------------------------------------


def checkov_path() -> str | None:
    configured = os.environ.get("MLCI_CHECKOV")
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(f"MLCI_CHECKOV={configured} is not an executable checkov")
        return configured
    local = REPO_ROOT / ".venv-tools" / "bin" / "checkov"
    if local.exists():
        return str(local)
    return shutil.which("checkov")


# What checkov scans: each rendered overlay, and the Jenkins agent pods as the kubernetes
# plugin builds them from the chart's values.
CHECKOV_INPUTS = (*sorted(OVERLAYS), "jenkins-agents")


@pytest.fixture(scope="module")
def checkov_reports(
    rendered: dict[str, list[dict[str, Any]]],
    values: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, Any]]:
    """checkov's JSON report for each input (one run each, all at once: a few seconds)."""
    checkov = checkov_path()
    if checkov is None:
        missing_tool("checkov is not installed ($MLCI_CHECKOV, .venv-tools/bin/checkov or PATH)")
    assert checkov is not None
    agents = [agent_pod(values, name) for name in pod_templates(values)]
    inputs = {**rendered, "jenkins-agents": [*agents, chart_agent_network_policy(values)]}
    runs = {}
    for name, objects in inputs.items():
        folder = tmp_path_factory.mktemp(f"checkov-{name}")
        (folder / "rendered.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        # All at once: each run spends most of its time starting up.
        runs[name] = subprocess.Popen(
            [checkov, "-d", str(folder), "--framework", "kubernetes", "--compact",
             "--skip-download", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    reports = {}
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode in (0, 1), f"checkov failed to run:\n{stderr[-2000:]}"
        report = json.loads(stdout)
        if isinstance(report, list):
            report = next(r for r in report if r.get("check_type") == "kubernetes")
        reports[name] = report
    return reports


@pytest.mark.parametrize("scanned", CHECKOV_INPUTS)
def test_checkov_finds_nothing_and_every_skip_says_why(
    checkov_reports: dict[str, dict[str, Any]], scanned: str
) -> None:
    report = checkov_reports[scanned]
    results = report["results"]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]
    ]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{skipped['check_id']} {skipped['resource']}: {reason!r}"


# --- The Jenkins chart's values --------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(JENKINS_VALUES.read_text())


def chart_keys() -> set[str]:
    lines = CHART_KEYS.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def unknown_keys(node: dict[str, Any], path: str, chart_path: str, keys: set[str]) -> list[str]:
    """Key paths of `node` the chart does not define; descends where the list has children."""
    unknown = []
    for key, value in node.items():
        here, there = f"{path}.{key}" if path else key, f"{chart_path}.{key}" if chart_path else key
        if there not in keys:
            unknown.append(here)
        elif isinstance(value, dict) and any(k.startswith(there + ".") for k in keys):
            unknown += unknown_keys(value, here, there, keys)
    return unknown


def test_every_value_is_a_key_of_the_chart(values: dict[str, Any]) -> None:
    keys = chart_keys()
    assert "# Key paths of the Jenkins Helm chart jenkins/jenkins 5.9.53" in CHART_KEYS.read_text()
    for parent in keys:
        if "." in parent:
            assert parent.rsplit(".", 1)[0] in keys, f"{parent}: its parent is not listed"
    top = {k: v for k, v in values.items() if k != "additionalAgents"}
    problems = unknown_keys(top, "", "", keys)
    assert "additionalAgents" in keys
    for name, agent in values["additionalAgents"].items():
        problems += unknown_keys(agent, f"additionalAgents.{name}", "agent", keys)
    assert problems == []


def jcasc_scripts(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    scripts = values["controller"]["JCasC"]["configScripts"]
    assert scripts, "mlci's configuration is a JCasC script"
    for name, text in scripts.items():
        assert "{{" not in text, f"{name}: the chart renders the script as a template"
    return {name: yaml.safe_load(text) for name, text in scripts.items()}


def credential_ids(casc: dict[str, Any]) -> set[str]:
    ids = set()
    for domain in casc["credentials"]["system"]["domainCredentials"]:
        for credential in domain["credentials"]:
            (body,) = credential.values()
            ids.add(body["id"])
    return ids


def global_env_keys(casc: dict[str, Any]) -> dict[str, str]:
    (properties,) = casc["jenkins"]["globalNodeProperties"]
    return {e["key"]: e["value"] for e in properties["envVars"]["env"]}


def test_jcasc_keeps_mlcis_credentials_and_global_variables(values: dict[str, Any]) -> None:
    compose_casc = yaml.safe_load(CASC.read_text())
    (script,) = jcasc_scripts(values).values()
    assert credential_ids(script) == credential_ids(compose_casc)
    env = global_env_keys(script)
    assert set(env) == set(global_env_keys(compose_casc))
    assert env["MLCI_MLFLOW_TRACKING_URI"] == "http://mlflow.mlci.svc:5000"
    assert env["MLCI_RELEASE_REPOSITORY_URL"] == "http://pypi.mlci.svc:8080/"
    assert env["TRAIN_AGENT_LABEL"] == "docker"
    assert env["MLCI_SERVING_PROXY_URL"] == "" and env["MLCI_SERVING_NETWORK"] == ""
    jenkins = script["jenkins"]
    for key in ("securityRealm", "authorizationStrategy"):
        assert key in jenkins
    # Jenkins >= 2.543 refuses to start on the crumb issuer's old option; it needs none.
    assert "crumbIssuer" not in jenkins
    unclassified = script["unclassified"]
    for key in ("sonarGlobalConfiguration", "whitelist", "prometheusConfiguration"):
        assert key in unclassified
    # The chart's own default configuration sets these; a second value would conflict.
    for key in ("numExecutors", "mode", "slaveAgentPort", "clouds"):
        assert key not in jenkins
    assert "location" not in unclassified
    assert values["controller"]["numExecutors"] == 0


def test_jcasc_secrets_come_only_from_the_mounted_secret(values: dict[str, Any]) -> None:
    controller = values["controller"]
    admin = controller["admin"]
    assert (admin["existingSecret"], admin["userKey"], admin["passwordKey"]) == (
        "mlci-jenkins", "admin-user", "admin-password",
    )  # fmt: skip
    mounted = set()
    for entry in controller["additionalExistingSecrets"]:
        assert entry["name"] == "mlci-jenkins"
        mounted.add(f"{entry['name']}-{entry['keyName']}")
    text = "\n".join(controller["JCasC"]["configScripts"].values())
    references = set(JCASC_REFERENCE.findall(text))
    allowed = mounted | {"chart-admin-username", "chart-admin-password"}
    assert references <= allowed, references - allowed
    assert mounted <= references, f"mounted but unused: {mounted - references}"
    (script,) = jcasc_scripts(values).values()
    for domain in script["credentials"]["system"]["domainCredentials"]:
        for credential in domain["credentials"]:
            (body,) = credential.values()
            for field in ("secret", "password", "username"):
                if field in body:
                    assert JCASC_REFERENCE.fullmatch(body[field]), f"{body['id']}.{field}"


def test_the_controller_installs_mlcis_plugins_and_the_kubernetes_plugin(
    values: dict[str, Any],
) -> None:
    wanted = {
        line.strip()
        for line in PLUGINS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    installed = {plugin.split(":")[0] for plugin in values["controller"]["installPlugins"]}
    assert wanted | {"kubernetes"} == installed


def pod_templates(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert values["agent"]["disableDefaultAgent"] is True
    return values["additionalAgents"]


def template_pod(template: dict[str, Any]) -> dict[str, Any]:
    pod = yaml.safe_load(template["yamlTemplate"])
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    return pod


def jnlp(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "jnlp"]
    return container


def agent_pod(values: dict[str, Any], name: str) -> dict[str, Any]:
    """The Pod the kubernetes plugin makes of template `name`: its raw YAML, plus what the
    chart renders into the template (image, pull policy, resources, environment, node
    selector, service account) and the workspace volume the plugin mounts in every container
    at its working directory. The chart fills a template's missing keys from `agent`."""
    template = {**values["agent"], **values["additionalAgents"][name]}
    pod = copy.deepcopy(template_pod(template))
    pod["metadata"] = {
        **pod.get("metadata", {}),
        "name": f"{template['podName']}-0",
        "namespace": "jenkins",
        "labels": {"jenkins/jenkins-jenkins-agent": "true"},
    }
    spec = pod["spec"]
    container = jnlp(pod)
    image = template["image"]
    registry = f"{image['registry']}/" if image["registry"] else ""
    container["image"] = f"{registry}{image['repository']}:{image['tag']}"
    container["imagePullPolicy"] = "Always" if template["alwaysPullImage"] else "IfNotPresent"
    container["workingDir"] = template["workingDir"]
    resources = container.setdefault("resources", {})
    for kind in ("requests", "limits"):
        resources[kind] = {**template["resources"][kind], **resources.get(kind, {})}
    container["env"] = [
        *({"name": e["name"], "value": e["value"]} for e in template.get("envVars", [])),
        {"name": "JENKINS_URL", "value": "http://jenkins.jenkins.svc.cluster.local:8080/"},
        {"name": "JENKINS_WEB_SOCKET", "value": "true"},
    ]
    spec["nodeSelector"] = template.get("nodeSelector") or {"kubernetes.io/os": "linux"}
    spec["serviceAccountName"] = "jenkins-agent"
    spec["restartPolicy"] = "Never"
    workspace = template["workspaceVolume"]
    spec.setdefault("volumes", []).append(
        {"name": "workspace-volume", "persistentVolumeClaim": {"claimName": workspace["claimName"]}}
    )
    for each in spec["containers"]:
        each.setdefault("workingDir", template["workingDir"])
        mounts = each.setdefault("volumeMounts", [])
        if all(m["mountPath"] != each["workingDir"] for m in mounts):
            mounts.append({"name": "workspace-volume", "mountPath": each["workingDir"]})
    return pod


def chart_agent_network_policy(values: dict[str, Any]) -> dict[str, Any]:
    """The policy the chart adds for agent pods with networkPolicy.enabled (release `jenkins`):
    it selects them by the label the cloud gives every agent pod and allows no ingress."""
    assert values["networkPolicy"]["enabled"] is True
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "jenkins-jenkins-agent", "namespace": "jenkins"},
        "spec": {"podSelector": {"matchLabels": {"jenkins/jenkins-jenkins-agent": "true"}}},
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_pod_templates_are_valid_pods(values: dict[str, Any], version: str) -> None:
    for name, template in pod_templates(values).items():
        kubernetes_validate.validate(template_pod(template), version, strict=True)
        pod = agent_pod(values, name)
        kubernetes_validate.validate(pod, version, strict=True)
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        assert jnlp(pod)["securityContext"]["runAsNonRoot"] is True, name
        # The mounted workspace is at the same path in every container of the pod.
        paths = {
            m["mountPath"]
            for c in spec["containers"]
            for m in c["volumeMounts"]
            if m["name"] == "workspace-volume"
        }
        assert paths == {values["agent"]["workingDir"]}, name
    workspace = values["extraObjects"]["agent-workspace"]
    kubernetes_validate.validate(workspace, version, strict=True)
    assert workspace["metadata"]["name"] == values["agent"]["workspaceVolume"]["claimName"]


def test_every_label_the_jenkinsfile_asks_for_is_offered(values: dict[str, Any]) -> None:
    jenkinsfile = JENKINSFILE.read_text()
    asked = set(re.findall(r"label\s+'([^']+)'", jenkinsfile))
    asked |= set(re.findall(r"TRAIN_AGENT_LABEL\s*\?:\s*'([^']+)'", jenkinsfile))
    assert "docker" in asked
    asked.add("gpu")  # what TRAIN_AGENT_LABEL is set to for GPU training
    offered = {label for t in pod_templates(values).values() for label in t["customJenkinsLabels"]}
    assert asked <= offered, asked - offered


def test_the_docker_template_builds_on_a_dind_sidecar(values: dict[str, Any]) -> None:
    template = pod_templates(values)["docker"]
    pod = template_pod(template)
    (dind,) = [c for c in pod["spec"]["containers"] if c["name"] == "dind"]
    assert dind["image"] == "docker:28-dind"
    assert dind["securityContext"]["privileged"] is True
    assert not any(arg.startswith("--host=tcp") for arg in dind["args"])
    socket = next(a.split("=", 1)[1] for a in dind["args"] if a.startswith("--host="))
    env = {e["name"]: e["value"] for e in template["envVars"]}
    assert env["DOCKER_HOST"] == socket
    mounts = {m["name"]: m["mountPath"] for m in dind["volumeMounts"]}
    assert socket.removeprefix("unix://").startswith(mounts["dind-socket"] + "/")
    assert {m["name"]: m["mountPath"] for m in jnlp(pod)["volumeMounts"]}["dind-socket"] == (
        mounts["dind-socket"]
    )
    # Neither container sets a working directory of its own, so the plugin mounts the
    # workspace at the same path in both.
    assert "workingDir" not in dind and "workingDir" not in jnlp(pod)
    (script,) = jcasc_scripts(values).values()
    registry = global_env_keys(script)["MLCI_IMAGE_REGISTRY"]
    assert f"--insecure-registry={registry}" in dind["args"]
    assert "privileged" in template["yamlTemplate"]


def test_the_gpu_template_asks_for_a_gpu_and_trains_in_its_own_environment(
    values: dict[str, Any],
) -> None:
    template = pod_templates(values)["gpu"]
    pod = template_pod(template)
    assert jnlp(pod)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert template["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in pod["spec"]["tolerations"]
    env = {e["name"]: e["value"] for e in template["envVars"]}
    assert env["MLCI_TRAIN_IN_IMAGE"] == "never"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["jnlp"]


# -- the Secrets invoke platform.kube-secrets writes ----------------------------------------


def referenced_secret_keys(node: Any) -> set[tuple[str, str]]:
    """Every (Secret, key) a manifest reads: secretKeyRef entries and secret volumes' items."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict):
            found.add((ref["name"], ref["key"]))
        secret = node.get("secret")
        if isinstance(secret, dict) and "secretName" in secret:
            for item in secret.get("items", []):
                found.add((secret["secretName"], item["key"]))
        for value in node.values():
            found |= referenced_secret_keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= referenced_secret_keys(value)
    return found


def kube_secrets_written() -> dict[str, dict[str, str]]:
    """What `invoke platform.kube-secrets` writes, from a freshly generated env file."""
    import tempfile

    from mlci.platform.kubernetes import Database, secret_data
    from mlci.platform.secrets import ensure_for_compose

    with tempfile.TemporaryDirectory() as tmp:
        env = ensure_for_compose(
            Path(tmp) / "platform.env", REPO_ROOT / "services" / "compose.yaml"
        )
        return secret_data(env, Database())


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_secret_the_overlays_read_is_one_kube_secrets_writes(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    written = {(name, key) for name, data in kube_secrets_written().items() for key in data}
    read = referenced_secret_keys(rendered[overlay])
    assert read, "the overlays read their secrets from Secrets"
    assert read - written == set()


def test_every_secret_the_jenkins_release_reads_is_one_kube_secrets_writes(
    values: dict[str, Any],
) -> None:
    from mlci.platform.kubernetes import JENKINS_SECRET

    written = kube_secrets_written()[JENKINS_SECRET]
    admin = values["controller"]["admin"]
    assert admin["existingSecret"] == JENKINS_SECRET
    read = {admin["userKey"], admin["passwordKey"]}
    for entry in values["controller"]["additionalExistingSecrets"]:
        assert entry["name"] == JENKINS_SECRET
        read.add(entry["keyName"])
    assert read - set(written) == set()
