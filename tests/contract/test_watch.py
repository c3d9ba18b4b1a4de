"""Watching the deployment: Prometheus' configuration, Grafana's provisioning and dashboard.

The real promtool checks the Prometheus file and every query of the dashboard (written as
recording rules, since promtool parses PromQL only there). .ci/provision installs promtool
(Debian's prometheus package); without it these tests skip on a developer's machine and fail
in CI. The rest are plain checks over the parsed files: the dashboard names only the metrics
the serving proxy and the slots export, and the data source Grafana is given; the Compose
services exist with health checks and no default password; Jenkins gets what Deploy needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.contract

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = REPO_ROOT / "services"
COMPOSE = SERVICES / "compose.yaml"
PROMETHEUS_CONFIG = SERVICES / "prometheus" / "prometheus.yml"
GRAFANA = SERVICES / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "mlci.yaml"
DASHBOARDS = GRAFANA / "dashboards"
CASC = REPO_ROOT / "jenkins" / "casc.yaml"
PLUGINS = REPO_ROOT / "jenkins" / "plugins.txt"

# The metric names the serving slot and the proxy export (the fixed list): a dashboard
# query may name no other mlci_* series. Histograms add their _bucket, _count and _sum series.
COUNTERS_AND_GAUGES = frozenset(
    {
        "mlci_serving_requests_total",
        "mlci_serving_errors_total",
        "mlci_serving_predictions_total",
        "mlci_serving_model_info",
        "mlci_proxy_requests_total",
        "mlci_proxy_upstream_info",
        "mlci_proxy_switches_total",
        "mlci_proxy_last_switch_timestamp_seconds",
    }
)
HISTOGRAMS = frozenset(
    {
        "mlci_serving_request_seconds",
        "mlci_serving_prediction_value",
        "mlci_proxy_request_seconds",
    }
)
KNOWN_MLCI_METRICS = COUNTERS_AND_GAUGES | {
    f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")
}
# Series of Jenkins' prometheus plugin the dashboard may use: names as its collectors build
# them (namespace `default`, subsystem `jenkins`, `builds`, the `last` build's prefix).
KNOWN_JENKINS_METRICS = frozenset({"default_jenkins_builds_last_build_result_ordinal"})
METRIC_NAME = re.compile(r"\b(?:mlci|default_jenkins)_[A-Za-z0-9_]*")
# Grafana's macros are not PromQL; promtool reads them as a duration of the same kind.
GRAFANA_MACROS = re.compile(r"\$__(?:rate_interval|interval|range)\b")

# Where each scrape job must look (the names and paths the proxy, the slots and Jenkins use).
EXPECTED_SCRAPES = {
    "mlci-proxy": ("/-/metrics", {"model-serving:8000"}),
    "mlci-serving": ("/metrics", {"mlci-serving-blue:8000", "mlci-serving-green:8000"}),
    "jenkins": ("/prometheus/", {"jenkins:8080"}),
}
REQUIRED_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}")
PINNED_IMAGE = re.compile(r"^[a-z0-9./-]+:v?\d+(\.\d+)+$")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if in_ci():
            pytest.fail("promtool is not installed, but CI is set: .ci/provision installs it")
        pytest.skip("promtool is not installed (bash .ci/provision, or apt-get install prometheus)")
    return path


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, including those folded into rows."""
    for panel in node.get("panels") or []:
        yield panel
        yield from panels(panel)


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [
        (panel.get("title", "?"), target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets") or []
        if target.get("expr")
    ]


def datasource_uids(node: Any) -> Iterator[str]:
    """Every data source uid a dashboard names (panels, targets, variables, annotations)."""
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            yield str(source["uid"])
        elif isinstance(source, str):
            yield source  # the pre-uid form: a data source *name*, which must not appear
        for value in node.values():
            yield from datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_uids(item)


def as_rules(exprs: list[str]) -> dict[str, Any]:
    """The queries as recording rules: the one place promtool parses bare PromQL."""
    return {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"dashboard:query_{n}:check", "expr": GRAFANA_MACROS.sub("5m", e)}
                    for n, e in enumerate(exprs)
                ],
            }
        ]
    }


def unknown_metrics(expr: str) -> set[str]:
    return {
        name
        for name in METRIC_NAME.findall(expr)
        if name not in KNOWN_MLCI_METRICS and name not in KNOWN_JENKINS_METRICS
    }


def provisioned_uid() -> str:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    return str(source["uid"])


def services() -> dict[str, Any]:
    return load_yaml(COMPOSE)["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


# ---- Prometheus -----------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_configuration(promtool: str) -> None:
    proc = run_promtool(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert proc.returncode == 0, f"promtool check config failed:\n{proc.stdout}{proc.stderr}"


def test_prometheus_scrapes_the_proxy_the_slots_and_jenkins() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    for name, (path, targets) in EXPECTED_SCRAPES.items():
        assert name in jobs, f"no scrape job {name}"
        job = jobs[name]
        assert job["metrics_path"] == path, name
        found = {t for group in job["static_configs"] for t in group["targets"]}
        assert found == targets, name
    # Each slot is labelled with its slot name (blue or green).
    slots = {
        tuple(group["targets"]): group.get("labels", {}).get("slot")
        for group in jobs["mlci-serving"]["static_configs"]
    }
    assert slots == {("mlci-serving-blue:8000",): "blue", ("mlci-serving-green:8000",): "green"}


def test_promtool_refuses_a_broken_configuration(promtool: str, tmp_path: Path) -> None:
    """The check above can fail: a wrong key is refused."""
    bad = tmp_path / "prometheus.yml"
    bad.write_text("scrape_configs:\n  - job_name: x\n    metric_path: /metrics\n")
    assert run_promtool(promtool, "check", "config", str(bad)).returncode != 0


# ---- Grafana: provisioning and dashboard ------------------------------------------------------


def test_the_datasource_is_the_platforms_prometheus_with_a_fixed_uid() -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] and source["uid"] == provisioned_uid()
    assert source["isDefault"] is True


def test_the_dashboard_provider_reads_where_compose_mounts_the_dashboards() -> None:
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"]
    mounts = services()["grafana"]["volumes"]
    for dashboard in dashboards():
        source = f"./{dashboard.relative_to(SERVICES)}"
        assert f"{source}:{folder}/{dashboard.name}:ro" in mounts, dashboard.name


def test_there_is_a_serving_dashboard() -> None:
    names = [path.name for path in dashboards()]
    assert "mlci-serving.json" in names
    dashboard = json.loads((DASHBOARDS / "mlci-serving.json").read_text())
    text = json.dumps(dashboard)
    for metric in (
        "mlci_serving_requests_total",
        "mlci_serving_errors_total",
        "mlci_serving_request_seconds_bucket",
        "mlci_serving_predictions_total",
        "mlci_serving_prediction_value_bucket",
        "mlci_proxy_upstream_info",
        "mlci_proxy_last_switch_timestamp_seconds",
    ):
        assert metric in text, f"the dashboard shows nothing from {metric}"
    assert "histogram_quantile(0.5," in text and "histogram_quantile(0.95," in text
    units = {p["title"]: p["fieldConfig"]["defaults"].get("unit") for p in panels(dashboard)}
    assert units["Last deploy"] == "dateTimeAsIso"  # a time, not a number of seconds


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_every_dashboard_query_is_valid_promql(promtool: str, path: Path, tmp_path: Path) -> None:
    exprs = [expr for _, expr in queries(json.loads(path.read_text()))]
    assert exprs, f"{path.name} has no query"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(as_rules(exprs)))
    proc = run_promtool(promtool, "check", "rules", str(rules))
    assert proc.returncode == 0, f"promtool check rules failed:\n{proc.stdout}{proc.stderr}"


def test_the_promql_check_can_fail(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(as_rules(["sum by (version (rate(x[$__rate_interval]))"])))
    assert run_promtool(promtool, "check", "rules", str(rules)).returncode != 0


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboards_name_only_exported_metrics(path: Path) -> None:
    problems = [
        f"{title}: {sorted(names)}"
        for title, expr in queries(json.loads(path.read_text()))
        if (names := unknown_metrics(expr))
    ]
    assert problems == []


def test_the_metric_check_catches_a_misspelled_name() -> None:
    assert unknown_metrics("rate(mlci_serving_request_total[5m])") == {"mlci_serving_request_total"}
    assert unknown_metrics("mlci_serving_request_seconds_bucket") == set()
    assert unknown_metrics("mlci_serving_requests_total_bucket") == {
        "mlci_serving_requests_total_bucket"
    }


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboards_use_the_provisioned_datasource(path: Path) -> None:
    uids = set(datasource_uids(json.loads(path.read_text())))
    assert uids == {provisioned_uid()}


# ---- Compose and Jenkins ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_compose_runs_the_service_pinned_and_health_checked(name: str) -> None:
    service = services()[name]
    assert PINNED_IMAGE.match(service["image"]), f"{name}: {service['image']} is not pinned"
    assert service["healthcheck"]["test"], name
    assert str(service.get("restart")) == "unless-stopped"
    assert service["networks"] == ["mlci"]


def test_prometheus_reads_the_repository_configuration() -> None:
    service = services()["prometheus"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in service["volumes"]
    assert "ports" not in service, "Prometheus is for Grafana only: not published"


def test_grafana_has_no_default_password_and_no_anonymous_access() -> None:
    env = environment(services()["grafana"])
    password = REQUIRED_REFERENCE.fullmatch(env["GF_SECURITY_ADMIN_PASSWORD"])
    assert password and password.group(1) == "GRAFANA_ADMIN_PASSWORD"
    assert REQUIRED_REFERENCE.fullmatch(env["GF_SECURITY_SECRET_KEY"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert services()["grafana"]["ports"] == ["${MLCI_BIND_ADDRESS:-127.0.0.1}:3000:3000"]


def test_jenkins_gets_the_proxy_token_and_the_deploy_settings() -> None:
    env = environment(services()["jenkins"])
    token = REQUIRED_REFERENCE.fullmatch(env["SERVING_PROXY_TOKEN"])
    assert token and token.group(1) == "SERVING_PROXY_TOKEN"
    casc = load_yaml(CASC)
    strings = {
        body["id"]: body
        for domain in casc["credentials"]["system"]["domainCredentials"]
        for credential in domain["credentials"]
        for kind, body in credential.items()
        if kind == "string"
    }
    assert strings["serving-proxy"]["secret"] == "${SERVING_PROXY_TOKEN}"
    (global_env,) = casc["jenkins"]["globalNodeProperties"]
    values = {item["key"]: item["value"] for item in global_env["envVars"]["env"]}
    assert values["MLCI_SERVING_PROXY_URL"] == "http://model-serving:8000"
    assert values["MLCI_SERVING_NETWORK"] == "mlci_mlci"
    assert casc["unclassified"]["prometheusConfiguration"]["useAuthenticatedEndpoint"] is False
    plugins = [line.split("#", 1)[0].strip() for line in PLUGINS.read_text().splitlines()]
    assert "prometheus" in {p.split(":", 1)[0] for p in plugins if p}
