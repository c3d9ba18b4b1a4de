"""Readiness and status against the doubles (and a minimal MLflow stand-in for /health)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlci.clients.jenkins import JenkinsError
from mlci.platform import readiness
from mlci.platform.secrets import read_env_file
from mlci.platform.status import platform_status, status_table
from tests.integration.test_platform_wire import Platform, platform  # noqa: F401

pytestmark = pytest.mark.integration


class _MlflowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = {"/health": b"OK", "/version": b"3.1.0"}.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mlflow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MlflowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def no_sleep(_: float) -> None:
    pass


def test_readiness_waits_through_sonarqube_start_and_migration(
    platform: Platform,  # noqa: F811
    mlflow_url: str,
) -> None:
    platform.sonarqube.set_status_sequence(["STARTING", "DB_MIGRATION_NEEDED", "UP"])
    env = read_env_file(platform.env_path)
    probes = readiness.platform_probes(
        platform.jenkins.url, platform.gitbucket.url, platform.sonarqube.url, mlflow_url,
        env["JENKINS_ADMIN_PASSWORD"], 5,
    )  # fmt: skip
    lines: list[str] = []
    readiness.wait_until_ready(probes, 30, lines.append, sleep=no_sleep)
    sonar = [line for line in lines if "SonarQube" in line]
    assert [line.split("): ", 1)[1] for line in sonar] == [
        "starting",
        "waiting: the database needs a migration (api/system/migrate_db)",
        "ready (UP)",
    ]
    assert any("Jenkins" in line and "CSRF crumbs on" in line for line in lines)
    assert any("GitBucket" in line and line.endswith("ready") for line in lines)
    assert any("MLflow" in line and line.endswith("ready") for line in lines)


def test_readiness_stops_at_once_on_wrong_jenkins_credentials(platform: Platform) -> None:  # noqa: F811
    check = readiness.jenkins_check(platform.jenkins.url, "admin", "wrong", 5)
    with pytest.raises(JenkinsError, match="credentials are refused"):
        readiness.wait_until_ready(
            [readiness.Probe("Jenkins", platform.jenkins.url, check)], 30, print, sleep=no_sleep
        )


def test_readiness_gives_up_naming_the_service_that_is_not_ready() -> None:
    probe = readiness.Probe(
        "MLflow", "http://127.0.0.1:9", readiness.http_ok_check("http://127.0.0.1:9/health", 1)
    )
    with pytest.raises(readiness.PlatformNotReady, match=r"MLflow \(not answering yet"):
        readiness.wait_until_ready([probe], 0.5, print, first_interval=0.1)


def test_status_shows_versions_health_and_wiring(
    platform: Platform,  # noqa: F811
    mlflow_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = platform.settings(**{"platform.mlflow_url": mlflow_url})
    before = {r.service: r for r in platform_status(settings, read_env_file(platform.env_path))}
    assert "root/root: STILL WORKS" in before["GitBucket"].wiring
    assert "admin/admin: STILL WORKS" in before["SonarQube"].wiring
    assert "job mlci: missing" in before["Jenkins"].wiring
    assert "job mlci-score: missing" in before["Jenkins"].wiring

    platform.wire()
    platform.reset_counters()
    rows = platform_status(settings, read_env_file(platform.env_path))
    by = {r.service: r for r in rows}
    assert by["Jenkins"].version == platform.jenkins.version
    assert by["SonarQube"].version == platform.sonarqube.version
    assert by["MLflow"].version == "3.1.0"
    assert all(r.health == "up" for r in rows), rows
    assert by["Jenkins"].wiring == [
        "job mlci: present",
        "job mlci-score: present",
        "agent docker-agent: offline (not connected)",
    ]
    assert by["GitBucket"].wiring == ["root/root: refused", "push hook: present"]
    assert by["SonarQube"].wiring == [
        "admin/admin: refused",
        "gate mlci for mlci: selected",
        "webhook to Jenkins: none",
        "SONARQUBE_TOKEN: valid",
    ]
    assert platform.mutations() == {"jenkins": 0, "sonarqube": 0, "gitbucket": 0}
    table = "\n".join(status_table(rows))
    for value in read_env_file(platform.env_path).secrets():
        assert value not in table

    platform.sonarqube.stop()
    down = {r.service: r for r in platform_status(settings, read_env_file(platform.env_path))}
    assert down["SonarQube"].health == "down (not answering)"
