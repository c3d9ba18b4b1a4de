"""Jenkins access through python-jenkins: one ``Jenkins`` object per process and server.

Crumbs are bound to the web session that fetched them, so the same object (and session) is
reused for every call; every call has a timeout. ``get_whoami`` proves the credentials
(``get_version`` works without them, and without them it fails on a secured controller).
python-jenkins turns 401/403/500 into ``JenkinsException``, 404 into ``NotFoundException``
and timeouts into ``TimeoutException``; :meth:`JenkinsClient.call` maps all of them to one
:class:`JenkinsError` that names the step.

Starting a build the way a push does (the Generic Webhook Trigger, signed) is a plain POST
through :func:`mlci.http.session`: python-jenkins has no call for a plugin's endpoint.
Following the queued build is one :func:`mlci.polling.poll`.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mlci.errors import JenkinsError

__all__ = ["JenkinsClient", "JenkinsError", "forget_clients", "jenkins_client", "trigger_build"]

T = TypeVar("T")
_CLIENTS: dict[tuple[str, str, str], JenkinsClient] = {}
_LOCK = threading.Lock()


def _python_jenkins() -> Any:
    """The python-jenkins module, untyped (the checkout's own jenkins/ folder would shadow it
    for mypy under a plain import)."""
    return importlib.import_module("jenkins")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


class JenkinsClient:
    """A python-jenkins ``Jenkins`` with mlci's error mapping."""

    def __init__(self, url: str, user: str, password: str, timeout: float) -> None:
        jenkins = _python_jenkins()

        self.url = url.rstrip("/")
        self.user = user
        self.timeout = timeout
        self.lib = jenkins.Jenkins(self.url, username=user, password=password, timeout=timeout)

    def call(self, step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one python-jenkins call; its exceptions become a JenkinsError naming ``step``."""
        import requests

        jenkins = _python_jenkins()
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
        return str(argument.text).strip()

    def version(self, step: str = "reading the version") -> str:
        """X-Jenkins of ``/``: call after :meth:`whoami` so the request carries credentials."""
        return str(self.call(step, self.lib.get_version))

    def follow_queue(
        self,
        queue_id: int,
        timeout: float,
        *,
        what: str = "the first build",
        sleep: Callable[[float], None] = time.sleep,
    ) -> tuple[int, str]:
        """Wait until queue item ``queue_id`` becomes a build: its number and URL.

        Polls with a growing pause (0.2 s, times 1.5, at most 5 s), the last one cut to end at
        ``timeout``.
        """
        from mlci.polling import poll

        def queue_item() -> dict[str, Any]:
            item: dict[str, Any] = self.call(
                "following the queued build", self.lib.get_queue_item, queue_id
            )
            if item.get("cancelled"):
                raise JenkinsError(
                    f"Jenkins: {what} (queue item {queue_id}) was cancelled",
                    "someone or something cancelled it in the queue",
                    "start it from Jenkins' UI, or run `invoke platform.wire --build`",
                )
            return item

        item = poll(queue_item, _started, timeout, 0.2, growth=1.5, most=5.0, sleep=sleep)
        if not _started(item):
            raise JenkinsError(
                f"Jenkins: {what} did not leave the queue in {timeout:g} s",
                str(item.get("why") or "no executor took it"),
                "check the executors under Manage Jenkins > Nodes",
            )
        executable = item["executable"]
        return int(executable["number"]), str(executable.get("url", ""))


def _started(item: dict[str, Any]) -> bool:
    return bool((item.get("executable") or {}).get("number"))


def trigger_build(
    jenkins_url: str,
    job: str,
    payload: dict[str, Any],
    *,
    secret: str,
    token: str,
    timeout: float,
    step: str = "starting the first build",
) -> int:
    """POST ``payload`` to the Generic Webhook Trigger, signed as GitBucket signs its
    deliveries (the trigger's whitelist checks the HMAC); the queue id of ``job``'s build."""
    import requests

    from mlci import http

    body = json.dumps(payload).encode("utf-8")
    signature = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={signature}",
        # The plugin reads the token from a `token` header too: kept out of the URL.
        "token": token,
    }
    with http.session(timeout) as web:
        try:
            resp = web.post(
                f"{jenkins_url.rstrip('/')}/generic-webhook-trigger/invoke",
                data=body,
                headers=headers,
            )
        except requests.Timeout:
            raise JenkinsError(
                f"Jenkins: {step}: no answer in {timeout:g} s",
                "POST generic-webhook-trigger/invoke timed out",
                "check Jenkins' health (invoke platform.status); raise MLCI_PLATFORM_TIMEOUT",
            ) from None
        except requests.RequestException as exc:
            raise JenkinsError(
                f"Jenkins: {step}: Jenkins cannot be reached",
                type(exc).__name__,
                "check MLCI_PLATFORM_JENKINS_URL",
            ) from None
    try:
        answer = resp.json()
        triggered = (answer.get("jobs") or {}).get(job) or {}
    except (ValueError, AttributeError):
        triggered = {}
    if resp.status_code != 200 or not triggered.get("triggered"):
        raise JenkinsError(
            f"Jenkins: {step}: the trigger answered HTTP {resp.status_code}",
            "no build was queued (unknown token, or the ref does not match the job's filter)",
            "check that the Generic Webhook Trigger plugin is installed and "
            "MLCI_PLATFORM_REF_FILTER matches refs/heads/main",
        )
    tail = str(triggered.get("url", "")).rstrip("/").rsplit("/", 1)[-1]
    return int(tail or str(triggered.get("id")))


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
