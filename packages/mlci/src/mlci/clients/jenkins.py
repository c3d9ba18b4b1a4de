"""Jenkins access through python-jenkins: one ``Jenkins`` object per process and server.

Crumbs are bound to the web session that fetched them, so the same object (and session) is
reused for every call; every call has a timeout. ``get_whoami`` proves the credentials
(``get_version`` works without them, and without them it fails on a secured controller).
python-jenkins turns 401/403/500 into ``JenkinsException``, 404 into ``NotFoundException``
and timeouts into ``TimeoutException``; :meth:`JenkinsClient.call` maps all of them to one
:class:`JenkinsError` that names the step.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from mlci.errors import JenkinsError

__all__ = ["JenkinsClient", "JenkinsError", "forget_clients", "jenkins_client"]

T = TypeVar("T")
_CLIENTS: dict[tuple[str, str, str], JenkinsClient] = {}
_LOCK = threading.Lock()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


class JenkinsClient:
    """A python-jenkins ``Jenkins`` with mlci's error mapping."""

    def __init__(self, url: str, user: str, password: str, timeout: float) -> None:
        import jenkins

        self.url = url.rstrip("/")
        self.user = user
        self.timeout = timeout
        self.lib = jenkins.Jenkins(self.url, username=user, password=password, timeout=timeout)

    def call(self, step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one python-jenkins call; its exceptions become a JenkinsError naming ``step``."""
        import requests

        import jenkins

        try:
            return fn(*args, **kwargs)
        except jenkins.TimeoutException:
            raise JenkinsError(
                f"Jenkins: {step}: no answer from {self.url} within {self.timeout:g} s",
                "the request timed out",
                "check that the jenkins container is healthy (docker-compose ps); raise "
                "MLCI_PLATFORM_TIMEOUT if it is only slow",
            ) from None
        except jenkins.NotFoundException:
            raise JenkinsError(
                f"Jenkins: {step}: not found (HTTP 404)",
                "Jenkins has no such item",
                "run `invoke platform.wire` to create the job",
            ) from None
        except jenkins.JenkinsException as exc:
            text = str(exc)
            if "[401]" in text:
                why, fix = (
                    f"Jenkins refused the credentials of {self.user!r}",
                    "the admin password comes from JENKINS_ADMIN_PASSWORD in the env file, "
                    "through JCasC; recreate Jenkins after changing it "
                    "(docker-compose ... up -d jenkins)",
                )
            elif "[403]" in text:
                why, fix = (
                    f"{self.user!r} may not do this, or the CSRF crumb was refused",
                    "use the admin account; crumbs are bound to one web session",
                )
            else:
                code = re.search(r"\[(\d{3})\]", text)
                why = f"Jenkins answered HTTP {code.group(1)}" if code else _first_line(exc)
                fix = "Jenkins' log (docker-compose logs jenkins) has the details"
            raise JenkinsError(f"Jenkins: {step} failed", why, fix) from None
        except requests.RequestException as exc:
            raise JenkinsError(
                f"Jenkins: {step}: {self.url} cannot be reached",
                type(exc).__name__,
                "check MLCI_PLATFORM_JENKINS_URL and that the jenkins container runs",
            ) from None

    def whoami(self, step: str = "checking the credentials") -> dict[str, Any]:
        return self.call(step, self.lib.get_whoami)

    def agent_secret(self, node: str, step: str = "reading the agent's secret") -> str:
        """The secret an inbound agent connects with: the first argument of its JNLP file.

        Jenkins derives it from the node name and its own key, so it cannot be known outside
        the controller; reading it needs Computer/Connect (the admin has it).
        """
        import xml.etree.ElementTree as ET
        from urllib.parse import quote

        import requests

        if not self.call(step, self.lib.node_exists, node):
            raise JenkinsError(
                f"Jenkins: {step}: there is no node {node!r}",
                "jenkins/casc.yaml defines it; the controller has not loaded that configuration",
                "rebuild and recreate Jenkins (invoke platform.up), then wire again",
            )
        url = f"{self.url}/computer/{quote(node)}/jenkins-agent.jnlp"
        text = self.call(step, self.lib.jenkins_open, requests.Request("GET", url))
        try:
            argument = ET.fromstring(text.encode("utf-8")).find(".//application-desc/argument")
        except ET.ParseError:
            argument = None
        if argument is None or not (argument.text or "").strip():
            raise JenkinsError(
                f"Jenkins: {step}: the JNLP file of node {node!r} names no secret",
                "GET computer/NODE/jenkins-agent.jnlp answered without an <argument>",
                f"check that {node!r} is an inbound (WebSocket) agent in jenkins/casc.yaml",
            )
        return argument.text.strip()

    def version(self, step: str = "reading the version") -> str:
        """X-Jenkins of ``/``: call after :meth:`whoami` so the request carries credentials."""
        return self.call(step, self.lib.get_version)


def jenkins_client(url: str, user: str, password: str, timeout: float) -> JenkinsClient:
    """The process's one client for this server and account (crumbs stay valid)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    key = (url.rstrip("/"), user, digest)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None or client.timeout != timeout:
            client = _CLIENTS[key] = JenkinsClient(url, user, password, timeout)
        return client


def forget_clients() -> None:
    """Drop the cached clients: after Jenkins restarts, their crumbs' web session is gone."""
    with _LOCK:
        _CLIENTS.clear()
