"""The local deployment: a proxy on ``serving.host:serving.port`` that ``invoke deploy``
starts and that outlives it, and its facts (proxy, slots) in ``<state>/serving/<model>/``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci.deployment.client import answers
from mlci.deployment.lifecycle import stop_slot
from mlci.deployment.proxy import TOKEN_ENV, Proxy
from mlci.errors import LocalServerError
from mlci.process_control import alive, port_is_free, stop_process_group
from mlci.servers import spawn, wait_ready
from mlci.settings import Settings


def local_folder(settings: Settings, name: str) -> Path:
    return settings.state_path / "serving" / name


def read_local(settings: Settings, name: str) -> dict[str, Any]:
    try:
        facts: dict[str, Any] = json.loads(
            (local_folder(settings, name) / "deployment.json").read_text()
        )
    except (OSError, ValueError):
        return {}
    return facts


def write_local(settings: Settings, name: str, facts: dict[str, Any]) -> None:
    path = local_folder(settings, name) / "deployment.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts, indent=2, sort_keys=True))
    tmp.replace(path)


def _token(settings: Settings, name: str) -> str:
    """The local proxy's token: made once, kept in a 0600 file beside its facts."""
    path = local_folder(settings, name) / "proxy.token"
    with contextlib.suppress(OSError):
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def running_local_proxy(settings: Settings, name: str) -> Proxy | None:
    facts = read_local(settings, name).get("proxy") or {}
    pid, url = facts.get("pid"), facts.get("url")
    if pid and url and alive(int(pid)) and answers(url + "/-/ping"):
        return Proxy(url, _token(settings, name), settings.serving.timeout)
    return None


def proxy_script(settings: Settings) -> Path:
    from mlci.resources import platform_file

    return platform_file(settings, "services/serving/proxy.py")


def start_local_proxy(settings: Settings, name: str, log: Callable[[str], None]) -> Proxy:
    """The local proxy on serving.host:serving.port (detached: it outlives this process)."""
    serving = settings.serving
    url = f"http://{serving.host}:{serving.port}"
    if not port_is_free(serving.port):
        raise LocalServerError(
            f"port {serving.port} is taken by another program",
            "the local deployment's proxy listens on serving.port",
            f"stop that program, or choose another port: MLCI_SERVING_PORT={serving.port + 1}",
        )
    folder = local_folder(settings, name)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = settings.state_path / "logs" / f"serving-{name}-proxy.log"
    state_file = folder / "proxy-state.json"
    argv = [sys.executable, str(proxy_script(settings)), "--state-file", str(state_file)]
    argv += ["--host", serving.host, "--port", str(serving.port)]
    token = _token(settings, name)
    log(f"deploy: starting the serving proxy on {url} (log: {log_path})")
    proc = spawn("serving proxy", argv, log_path, {TOKEN_ENV: token})
    try:
        wait_ready("serving proxy", proc, url + "/-/ping", log_path, settings.server_start_timeout)
    except BaseException:
        stop_process_group(proc)
        raise
    facts = read_local(settings, name)
    facts["proxy"] = {"pid": proc.pid, "url": url, "log": str(log_path)}
    write_local(settings, name, facts)
    return Proxy(url, token, serving.timeout)


def stop_local(
    settings: Settings, name: str, client_factory: Callable[[], Any | None]
) -> list[str]:
    """Stop the local deployment of ``name`` (proxy and slots); what was stopped."""
    facts = read_local(settings, name)
    stopped = []
    slots = facts.get("slots") or {}
    client = client_factory() if any(s.get("container") for s in slots.values()) else None
    for slot, record in slots.items():
        stop_slot(record, client)
        stopped.append(f"slot {slot} (v{record.get('version')})")
    proxy = facts.get("proxy") or {}
    if proxy.get("pid"):
        stop_slot({"pid": proxy["pid"]}, None, grace=10.0)
        stopped.append(f"proxy {proxy.get('url')}")
    with contextlib.suppress(OSError):
        (local_folder(settings, name) / "deployment.json").unlink()
    return stopped
