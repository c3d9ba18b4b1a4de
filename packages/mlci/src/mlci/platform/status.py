"""What the platform runs and how it is wired, read without changing anything.

One row per service: URL, version (Jenkins: ``X-Jenkins`` of ``/`` after ``get_whoami``;
SonarQube: ``api/system/status``; MLflow: ``/version``; GitBucket's API does not report its
version), health, and the wiring that ``invoke platform.wire`` sets up (job, hook, gate,
webhook, default passwords gone). A service that does not answer is reported, not raised:
each request is sent once (no retries), so a service that is restarting shows as down now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlci.errors import MlciError
from mlci.platform.secrets import EnvFile
from mlci.resources import gate_file
from mlci.settings import Settings

if TYPE_CHECKING:
    import requests


@dataclass
class ServiceStatus:
    service: str
    url: str
    version: str = "?"
    health: str = "?"
    wiring: list[str] = field(default_factory=list)


def _http(
    method: str, url: str, timeout: float, auth: tuple[str, str] | None = None
) -> requests.Response:
    from mlci.http import session

    with session(timeout, auth=auth, retries=0) as http:
        return http.request(method, url, allow_redirects=False)


def _down(exc: Exception) -> str:
    import requests

    if isinstance(exc, MlciError):
        return f"error: {exc.what}"
    if isinstance(exc, requests.Timeout):
        return "down (timeout)"
    return "down (not answering)"


def _guard(row: ServiceStatus, fn: Callable[[], None]) -> None:
    import requests

    try:
        fn()
    except (MlciError, requests.RequestException, ValueError) as exc:
        if row.health in ("?", "up"):
            row.health = _down(exc) if row.health == "?" else f"up; {_down(exc)}"


def _secret(env: EnvFile | None, name: str) -> str | None:
    if env is None or env.is_placeholder(name):
        return None
    return env.values.get(name) or None


def jenkins_status(settings: Settings, env: EnvFile | None) -> ServiceStatus:
    from mlci.clients.jenkins import jenkins_client

    platform = settings.platform
    row = ServiceStatus("Jenkins", platform.jenkins_url)
    password = _secret(env, "JENKINS_ADMIN_PASSWORD")

    def check() -> None:
        if password is None:
            resp = _http("GET", f"{platform.jenkins_url.rstrip('/')}/", platform.timeout)
            row.version = resp.headers.get("X-Jenkins", "?")
            row.health = "up (no credentials: run invoke platform.up)"
            return
        client = jenkins_client(platform.jenkins_url, "admin", password, platform.timeout)
        client.whoami()
        row.version = client.version()
        row.health = "up"
        from mlci.platform.wire import AGENT_NODE, SCORE_JOB_SUFFIX

        for job in (platform.job, f"{platform.job}{SCORE_JOB_SUFFIX}"):
            exists = client.call(f"looking up the job {job}", client.lib.job_exists, job)
            row.wiring.append(f"job {job}: {'present' if exists else 'missing'}")

        if client.call("looking up the agent", client.lib.node_exists, AGENT_NODE):
            info = client.call("reading the agent", client.lib.get_node_info, AGENT_NODE)
            state = "offline (not connected)" if info.get("offline") else "online"
        else:
            state = "missing (casc.yaml defines it)"
        row.wiring.append(f"agent {AGENT_NODE}: {state}")

    _guard(row, check)
    return row


def gitbucket_status(settings: Settings, env: EnvFile | None) -> ServiceStatus:
    from mlci.clients.gitbucket import GitBucket
    from mlci.platform.wire import without_query

    platform = settings.platform
    row = ServiceStatus("GitBucket", platform.gitbucket_url, version="(not reported)")
    password = _secret(env, "GITBUCKET_ROOT_PASSWORD")

    def check() -> None:
        # /signin stays open when anonymous access is off (the API then answers 401).
        resp = _http("GET", f"{platform.gitbucket_url.rstrip('/')}/signin", platform.timeout)
        row.health = "up" if resp.status_code == 200 else f"HTTP {resp.status_code}"
        client = GitBucket(platform.gitbucket_url, "root", password or "", platform.timeout)
        default = client.credentials_work("root", "root", "trying root/root")
        row.wiring.append("root/root: STILL WORKS" if default else "root/root: refused")
        if password is None or not client.credentials_work("root", password, "logging in"):
            row.wiring.append("GITBUCKET_ROOT_PASSWORD: refused")
            return
        org, repo = platform.organisation, platform.repository
        if client.get_repo(org, repo, "reading the repository") is None:
            row.wiring.append(f"repository {org}/{repo}: missing")
            return
        hook = _secret(env, "JENKINS_WEBHOOK_TOKEN") or ""
        from mlci.platform.wire import webhook_url

        wanted = without_query(webhook_url(platform.jenkins_internal_url, hook))
        hooks = client.list_hooks(org, repo, "listing the hooks")
        found = [h for h in hooks if without_query(h.get("config", {}).get("url", "")) == wanted]
        row.wiring.append(f"push hook: {'present' if found else 'missing'}")
        client.close()

    _guard(row, check)
    return row


def sonarqube_status(settings: Settings, env: EnvFile | None) -> ServiceStatus:
    from requests.auth import HTTPBasicAuth

    from mlci.clients.sonarqube import SonarQube, SonarServer
    from mlci.qualitygate import load_definition

    platform = settings.platform
    base = platform.sonarqube_url.rstrip("/")
    row = ServiceStatus("SonarQube", platform.sonarqube_url)
    password = _secret(env, "SONARQUBE_ADMIN_PASSWORD")

    def check() -> None:
        body = _http("GET", f"{base}/api/system/status", platform.timeout).json()
        row.version = str(body.get("version", "?"))
        row.health = "up" if body.get("status") == "UP" else str(body.get("status"))
        default = _http(
            "GET", f"{base}/api/authentication/validate", platform.timeout, auth=("admin", "admin")
        ).json()
        row.wiring.append(
            "admin/admin: STILL WORKS" if default.get("valid") else "admin/admin: refused"
        )
        if password is None:
            return
        client = SonarQube(SonarServer(base, ""), platform.timeout)
        client.session.auth = HTTPBasicAuth("admin", password)
        key = settings.sonar.project_key or settings.project_root.name
        gate = load_definition(gate_file(settings)).name
        try:
            got = client.get("api/qualitygates/get_by_project", "reading the gate", project=key)
            selected = (got or {}).get("qualityGate", {}).get("name")
        except MlciError:
            selected = None
        row.wiring.append(
            f"gate {gate} for {key}: {'selected' if selected == gate else 'not selected'}"
        )
        hooks = client.get("api/webhooks/list", "listing the webhooks") or {}
        url = f"{platform.jenkins_internal_url.rstrip('/')}/sonarqube-webhook/"
        present = any(h.get("url") == url for h in hooks.get("webhooks", []))
        # invoke gate polls the API: a webhook to Jenkins is unused (wiring removes it).
        shown = "present (unused: invoke platform.wire removes it)" if present else "none"
        row.wiring.append(f"webhook to Jenkins: {shown}")
        token = _secret(env, "SONARQUBE_TOKEN")
        valid = False
        if token:
            resp = _http(
                "GET", f"{base}/api/authentication/validate", platform.timeout, auth=(token, "")
            ).json()
            valid = bool(resp.get("valid"))
        row.wiring.append(f"SONARQUBE_TOKEN: {'valid' if valid else 'missing or invalid'}")

    _guard(row, check)
    return row


def mlflow_status(settings: Settings, env: EnvFile | None) -> ServiceStatus:
    platform = settings.platform
    base = platform.mlflow_url.rstrip("/")
    row = ServiceStatus("MLflow", platform.mlflow_url)

    def check() -> None:
        health = _http("GET", f"{base}/health", platform.timeout)
        row.health = "up" if health.status_code == 200 else f"HTTP {health.status_code}"
        version = _http("GET", f"{base}/version", platform.timeout)
        if version.status_code == 200:
            row.version = version.text.strip()[:40]

    _guard(row, check)
    return row


def platform_status(settings: Settings, env: EnvFile | None) -> list[ServiceStatus]:
    return [
        check(settings, env)
        for check in (jenkins_status, gitbucket_status, sonarqube_status, mlflow_status)
    ]


def status_table(rows: list[ServiceStatus]) -> list[str]:
    from mlci.table import format_table

    return format_table(
        ("service", "url", "version", "health", "wiring"),
        [(r.service, r.url, r.version, r.health, "; ".join(r.wiring) or "-") for r in rows],
    )
