"""The deployment's proxy (``services/serving/proxy.py``) as its callers see it: its status,
the switch to a new slot, the drain of the old one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlci.deployment.client import http
from mlci.deployment.slot import Slot
from mlci.errors import ConfigError, ServingError
from mlci.polling import poll

TOKEN_ENV = "MLCI_SERVING_PROXY_TOKEN"
VERSION_HEADER = "X-Mlci-Served-Version"


def _document(raw: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(raw)
    return document


@dataclass
class Proxy:
    url: str
    token: str
    timeout: float = 10.0

    def status(self) -> dict[str, Any]:
        try:
            code, _, raw = http("GET", self.url + "/-/status", timeout=self.timeout)
            if code == 200:
                return _document(raw)
            problem = f"HTTP {code}"
        except (OSError, ValueError) as exc:
            problem = str(exc)
        raise ServingError(
            f"the serving proxy at {self.url} does not answer",
            f"GET /-/status: {problem}",
            "start it (Compose: the model-serving service; locally: invoke deploy), or fix "
            "MLCI_SERVING_PROXY_URL",
        )

    def switch(self, slot: Slot, model: str) -> dict[str, Any]:
        body = {"url": slot.url, "model": model, "version": slot.version, "slot": slot.slot}
        try:
            code, _, raw = http(
                "PUT", self.url + "/-/upstream", body=body, token=self.token, timeout=self.timeout
            )
        except OSError as exc:
            code, raw = 0, str(exc).encode()
        if code == 401:
            raise ConfigError(
                f"the serving proxy at {self.url} refused the switch (401)",
                "serving.proxy_token is not the proxy's token",
                "bind the serving-proxy credential as MLCI_SERVING_PROXY_TOKEN (Jenkins), or "
                "use the token of services/.env's SERVING_PROXY_TOKEN",
            )
        if code != 200:
            raise ServingError(
                f"the serving proxy at {self.url} did not switch to v{slot.version}",
                f"PUT /-/upstream: {code or ''} {raw[:200].decode(errors='replace')}".strip(),
                "traffic stays on the old version; look at the proxy's log and deploy again",
            )
        return _document(raw)

    def drain(self, upstream: str, timeout: float) -> int:
        """Wait until no request to ``upstream`` is in flight; how many still were at the end."""

        def in_flight() -> int:
            return int(self.status().get("in_flight", {}).get(upstream, 0))

        return poll(in_flight, lambda left: left == 0, timeout, 0.1)

    def served_version(self) -> str | None:
        """The version a request through the proxy reaches now (its answer's header)."""
        try:
            code, headers, _ = http("GET", self.url + "/ping", timeout=self.timeout)
        except OSError:
            return None
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get(VERSION_HEADER.lower()) if code == 200 else None
