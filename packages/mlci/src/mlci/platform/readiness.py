"""Waiting for the platform's services to be really ready, with a deadline and backoff.

A container's health check says the process answers; wiring needs more. Each probe asks what
the next step depends on:

* Jenkins: an authenticated ``api/json`` answers 200 (Jenkins answers 503 while it starts, and
  the admin account exists only once JCasC has run), then ``crumbIssuer/api/json`` answers 200
  (CSRF on) or 404 (CSRF off). Wrong credentials stop the wait at once: waiting cannot fix them.
* SonarQube: ``api/system/status`` says UP (STARTING and DB_MIGRATION_* mean keep waiting).
* GitBucket: ``GET /signin`` answers 200 (the one page that stays open with anonymous access
  off, as the platform runs it; the API answers 401 to anyone not signed in).
* MLflow: ``/health`` answers 200.

Progress goes to ``log`` whenever a service's state changes. Each probe asks once (no
retries inside it): one :func:`mlci.polling.poll` around all of them is the backoff, up to
the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlci.errors import PlatformNotReady

if TYPE_CHECKING:
    import requests

Check = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class Probe:
    service: str
    url: str
    check: Check


def _get(url: str, timeout: float, auth: tuple[str, str] | None = None) -> requests.Response:
    from mlci.http import session

    with session(timeout, auth=auth, retries=0) as http:
        return http.get(url, allow_redirects=False)


def _unreachable(exc: Exception) -> tuple[bool, str]:
    import requests

    if isinstance(exc, requests.Timeout):
        return False, "no answer yet (timeout)"
    return False, "not answering yet (connection refused)"


def jenkins_check(url: str, user: str, password: str, timeout: float) -> Check:
    import requests

    base = url.rstrip("/")

    def check() -> tuple[bool, str]:
        try:
            resp = _get(f"{base}/api/json?tree=mode", timeout, (user, password))
            if resp.status_code == 401:
                from mlci.clients.jenkins import JenkinsError

                raise JenkinsError(
                    "Jenkins: waiting for readiness: the admin credentials are refused (HTTP 401)",
                    "JCasC creates user admin with JENKINS_ADMIN_PASSWORD from the env file",
                    "if the env file changed after Jenkins started, recreate it: "
                    "docker-compose ... up -d jenkins",
                )
            if resp.status_code != 200:
                return False, f"starting (HTTP {resp.status_code})"
            crumb = _get(f"{base}/crumbIssuer/api/json", timeout, (user, password))
        except requests.RequestException as exc:
            return _unreachable(exc)
        if crumb.status_code == 200:
            return True, "ready (CSRF crumbs on)"
        if crumb.status_code == 404:
            return True, "ready (CSRF protection off)"
        return False, f"crumb issuer answers HTTP {crumb.status_code}"

    return check


SONARQUBE_WAITING = {
    "STARTING": "starting",
    "DB_MIGRATION_NEEDED": "waiting: the database needs a migration (api/system/migrate_db)",
    "DB_MIGRATION_RUNNING": "migrating its database",
    "RESTARTING": "restarting",
    "DOWN": "DOWN (docker-compose logs sonarqube says why)",
}


def sonarqube_check(url: str, timeout: float) -> Check:
    import requests

    def check() -> tuple[bool, str]:
        try:
            resp = _get(f"{url.rstrip('/')}/api/system/status", timeout)
            if resp.status_code != 200:
                return False, f"starting (HTTP {resp.status_code})"
            status = resp.json().get("status", "?")
        except requests.RequestException as exc:
            return _unreachable(exc)
        except ValueError:
            return False, "answers something that is not JSON"
        if status == "UP":
            return True, "ready (UP)"
        return False, SONARQUBE_WAITING.get(status, f"status {status}")

    return check


def http_ok_check(url: str, timeout: float, *, json_body: bool = False) -> Check:
    import requests

    def check() -> tuple[bool, str]:
        try:
            resp = _get(url, timeout)
        except requests.RequestException as exc:
            return _unreachable(exc)
        if resp.status_code != 200:
            return False, f"starting (HTTP {resp.status_code})"
        if json_body:
            try:
                resp.json()
            except ValueError:
                return False, "answers something that is not JSON"
        return True, "ready"

    return check


def platform_probes(
    jenkins_url: str,
    gitbucket_url: str,
    sonarqube_url: str,
    mlflow_url: str,
    jenkins_password: str,
    timeout: float,
) -> list[Probe]:
    return [
        Probe(
            "Jenkins", jenkins_url, jenkins_check(jenkins_url, "admin", jenkins_password, timeout)
        ),
        Probe(
            "GitBucket",
            gitbucket_url,
            http_ok_check(f"{gitbucket_url.rstrip('/')}/signin", timeout),
        ),
        Probe("SonarQube", sonarqube_url, sonarqube_check(sonarqube_url, timeout)),
        Probe("MLflow", mlflow_url, http_ok_check(f"{mlflow_url.rstrip('/')}/health", timeout)),
    ]


def wait_until_ready(
    probes: Iterable[Probe],
    timeout: float,
    log: Callable[[str], None],
    *,
    first_interval: float = 1.0,
    max_interval: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll every probe until all are ready; PlatformNotReady at the deadline.

    The pause grows by half each round, from ``first_interval`` up to ``max_interval``, and
    never runs past the deadline. An exception from a probe (wrong credentials) ends the wait.
    """
    from mlci.polling import poll

    pending = list(probes)
    last: dict[str, str] = {}

    def one_round() -> list[Probe]:
        for probe in list(pending):
            ready, detail = probe.check()
            if last.get(probe.service) != detail:
                log(f"platform: {probe.service} ({probe.url}): {detail}")
                last[probe.service] = detail
            if ready:
                pending.remove(probe)
        return pending

    # the check below names who is late
    poll(
        one_round,
        lambda late: not late,
        timeout,
        first_interval,
        growth=1.5,
        most=max_interval,
        sleep=sleep,
        clock=clock,
    )
    if pending:
        names = ", ".join(f"{p.service} ({last.get(p.service, 'no answer')})" for p in pending)
        raise PlatformNotReady(
            f"platform: waiting for readiness: not ready after {timeout:g} s: {names}",
            "a first start takes minutes (SonarQube migrates its database and builds its "
            "search index; Jenkins installs its configuration)",
            "look at `docker-compose ps` and `docker-compose logs SERVICE`; for SonarQube "
            "check the kernel settings in sonarqube/README.md; raise "
            "MLCI_PLATFORM_READY_TIMEOUT if the machine is only slow",
        )
