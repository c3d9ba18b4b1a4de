"""The deployment's reverse proxy: the one stable address of a served model.

mlci deploys a model blue/green. Clients always call this proxy; it forwards every request
to the current upstream, a serving slot (``python -m mlci.serving_app``) that serves one
model version. ``invoke deploy`` (and the pipeline's deploy stage) starts a slot with the new
version, smoke-tests it directly, then ``PUT /-/upstream`` here; from that moment new
requests go to the new slot, while the requests already in flight finish on the old one. The
deploy waits until ``GET /-/status`` shows none in flight to the old slot's URL, then stops
the old slot. No request fails across a switch.

    MLCI_SERVING_PROXY_TOKEN=... python proxy.py --host H --port P --state-file F

Endpoints under ``/-/`` belong to the proxy; everything else is forwarded:

- ``GET /-/ping``: 200 "ok", the proxy's own health.
- ``GET /-/status``: the upstream (url, model, version, slot, switched_at) and the requests
  in flight per upstream URL; no auth.
- ``PUT /-/upstream`` with ``Authorization: Bearer <token>`` and JSON
  ``{"url", "model", "version", "slot"}``: the switch; answers ``{"previous", "current"}``.
  The upstream is written to ``--state-file`` (atomically) and read back at start, so a
  restarted proxy serves the last deployed version at once.
- ``GET /-/metrics``: the ``mlci_proxy_*`` series in Prometheus' text format.

Forwarded answers carry ``X-Mlci-Served-Version``; with no upstream yet the proxy answers 503,
when the upstream cannot be reached 502, when it does not answer in time 504 (JSON bodies).
SIGTERM stops the listening socket, lets the requests in flight finish, and exits 0.

It is one file with three dependencies (the standard library, aiohttp, prometheus_client) so
that the stack builds its image (services/serving/Dockerfile) without mlci, and mlci runs the
same file as a local process when there is no stack.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientSession,
    ClientTimeout,
    ConnectionTimeoutError,
    DummyCookieJar,
    TCPConnector,
    web,
)
from multidict import CIMultiDict
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from yarl import URL

TOKEN_ENV = "MLCI_SERVING_PROXY_TOKEN"
VERSION_HEADER = "X-Mlci-Served-Version"

#: Scoring payloads are buffered whole; larger request bodies are refused with 413.
MAX_BODY_BYTES = 64 * 1024 * 1024

#: Seconds to open a connection to a slot: a slot on the same host or network answers in
#: milliseconds, so a longer wait only delays the 502.
CONNECT_TIMEOUT = 5.0

#: Seconds an idle connection to a slot stays in the pool: shorter than any slot keeps one
#: (mlci's slots 30 s, uvicorn's default 5 s), so a request never goes out on a connection
#: the slot is closing at the same moment (a POST is not retried, it would fail).
POOL_IDLE_SECONDS = 4.0

#: Headers that describe one connection, not the message (RFC 9110 7.6.1), and the ones that
#: aiohttp sets again for the body it sends (its length and encoding).
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "content-length", "content-encoding", "host",
    }
)  # fmt: skip

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

log = logging.getLogger("mlci.proxy")


class StartupError(Exception):
    """A setting or the state file the proxy cannot start with (one line, exit 2)."""


@dataclass(frozen=True)
class Upstream:
    url: str
    model: str
    version: str
    slot: str
    switched_at: float


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlci_proxy_requests_total", "forwarded requests by upstream version and status",
            ("version", "status"), registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "mlci_proxy_request_seconds", "forwarded requests' latency in seconds",
            ("version",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.upstream_info = Gauge(
            "mlci_proxy_upstream_info", "the active upstream (always 1, one series)",
            ("model", "version", "slot"), registry=self.registry,
        )  # fmt: skip
        self.switches = Counter(
            "mlci_proxy_switches_total", "upstream switches (deploys) since the proxy started",
            registry=self.registry,
        )  # fmt: skip
        self.last_switch = Gauge(
            "mlci_proxy_last_switch_timestamp_seconds",
            "unix time of the last switch (the last deploy)", registry=self.registry,
        )  # fmt: skip

    def show_upstream(self, upstream: Upstream | None) -> None:
        self.upstream_info.clear()
        if upstream is not None:
            self.upstream_info.labels(upstream.model, upstream.version, upstream.slot).set(1)
            self.last_switch.set(upstream.switched_at)


class Proxy:
    def __init__(self, token: str, state_file: Path, upstream_timeout: float) -> None:
        self._token = token.encode()
        self.state_file = state_file
        self.upstream_timeout = upstream_timeout
        self.metrics = ProxyMetrics()
        self.upstream = read_state(state_file)
        self.in_flight: dict[str, int] = {}
        self.session: ClientSession | None = None
        self.metrics.show_upstream(self.upstream)

    # -- lifecycle ----------------------------------------------------------------------

    async def open_session(self, _: web.Application) -> None:
        self.session = ClientSession(
            connector=TCPConnector(limit=256, keepalive_timeout=POOL_IDLE_SECONDS),
            timeout=ClientTimeout(total=self.upstream_timeout, sock_connect=CONNECT_TIMEOUT),
            auto_decompress=True,
            cookie_jar=DummyCookieJar(),  # clients' cookies pass through as headers only
        )

    async def close_session(self, _: web.Application) -> None:
        # on_cleanup: after the requests in flight have been answered.
        if self.session is not None:
            await self.session.close()

    # -- the proxy's own endpoints --------------------------------------------------------

    def status(self) -> dict[str, Any]:
        up = self.upstream
        in_flight = {url: n for url, n in self.in_flight.items() if n}
        if up is not None:
            in_flight.setdefault(up.url, 0)
        return {
            "upstream": up.url if up else None,
            "model": up.model if up else None,
            "version": up.version if up else None,
            "slot": up.slot if up else None,
            "switched_at": up.switched_at if up else None,
            "in_flight": in_flight,
        }

    async def ping(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def get_status(self, _: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def get_metrics(self, _: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def put_upstream(self, request: web.Request) -> web.Response:
        if not self._authorized(request.headers.get("Authorization", "")):
            return _error(401, "missing or wrong token (Authorization: Bearer <token>)")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        try:
            upstream = parse_upstream(body, switched_at=time.time())
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            write_state(self.state_file, upstream)
        except OSError as exc:
            log.error("cannot write the state file %s: %s", self.state_file, exc)
            return _error(500, f"the switch was not made: cannot write the state file ({exc})")
        # From here on no await: the switch is one assignment between two requests.
        previous = self.status()
        self.upstream = upstream
        self.metrics.show_upstream(upstream)
        self.metrics.switches.inc()
        log.info(
            "switched to %s (model %s, version %s, slot %s); was %s",
            upstream.url, upstream.model, upstream.version, upstream.slot,
            previous["upstream"],
        )  # fmt: skip
        return web.json_response({"previous": previous, "current": self.status()})

    async def reserved(self, request: web.Request) -> web.Response:
        """Any other request under /-/: the prefix is the proxy's, never forwarded."""
        own = {"/-/ping": "GET", "/-/status": "GET", "/-/metrics": "GET", "/-/upstream": "PUT"}
        if request.path in own:
            return _error(405, f"use {own[request.path]}", headers={"Allow": own[request.path]})
        return _error(404, f"no proxy endpoint {request.path}")

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        # Compared even when the scheme is wrong, so the answer takes the same time.
        same = hmac.compare_digest(token.strip().encode(), self._token)
        return same and scheme.lower() == "bearer"

    # -- forwarding ---------------------------------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        body = await request.read()
        # The upstream is chosen once, after the body arrived, and counted in flight at the
        # same step (no await between): a switch from now on does not affect this request.
        upstream = self.upstream
        if upstream is None:
            self._count("", 503, started)
            return _error(503, "no model is deployed behind this proxy yet (run invoke deploy)")
        url = upstream.url
        self.in_flight[url] = self.in_flight.get(url, 0) + 1
        try:
            response = await self._send(request, body, upstream)
        finally:
            self.in_flight[url] -= 1
            if not self.in_flight[url]:
                del self.in_flight[url]
        self._count(upstream.version, response.status, started)
        return response

    async def _send(self, request: web.Request, body: bytes, upstream: Upstream) -> web.Response:
        assert self.session is not None  # opened on startup
        target = URL(upstream.url + request.raw_path, encoded=True)
        headers = _end_to_end(request.headers)
        forwarded_for = request.headers.get("X-Forwarded-For")
        peer = request.remote or ""
        headers["X-Forwarded-For"] = f"{forwarded_for}, {peer}" if forwarded_for else peer
        try:
            async with self.session.request(
                request.method, target, headers=headers, data=body or None,
                allow_redirects=False,
            ) as answer:  # fmt: skip
                payload = await answer.read()
                status, reason, answer_headers = answer.status, answer.reason, answer.headers
        except (ClientConnectorError, ConnectionTimeoutError) as exc:
            failure = 502, f"the model server cannot be reached ({type(exc).__name__})"
        except TimeoutError:
            failure = 504, f"the model server did not answer within {self.upstream_timeout} s"
        except ClientError as exc:
            failure = 502, f"the model server failed while answering ({type(exc).__name__})"
        else:
            headers_back = _end_to_end(answer_headers)
            headers_back[VERSION_HEADER] = upstream.version
            return web.Response(status=status, reason=reason, headers=headers_back, body=payload)
        log.warning("%s %s via %s: %s", request.method, request.path, upstream.url, failure[1])
        return _error(*failure, version=upstream.version)

    def _count(self, version: str, status: int, started: float) -> None:
        self.metrics.requests.labels(version, str(status)).inc()
        self.metrics.latency.labels(version).observe(time.perf_counter() - started)


def _end_to_end(headers: Any) -> CIMultiDict[str]:
    """``headers`` without the hop-by-hop ones, including those the Connection header names."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    return CIMultiDict(
        (key, value)
        for key, value in headers.items()
        if key.lower() not in HOP_BY_HOP and key.lower() not in named
    )


def _error(
    status: int, message: str, version: str | None = None, headers: dict | None = None
) -> web.Response:
    response = web.json_response({"error": message}, status=status, headers=headers)
    if version is not None:
        response.headers[VERSION_HEADER] = version
    return response


def parse_upstream(body: Any, switched_at: float) -> Upstream:
    """The upstream a ``PUT /-/upstream`` body names; ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object {"url", "model", "version", "slot"}')
    missing = [key for key in ("url", "model", "version", "slot") if key not in body]
    if missing:
        raise ValueError(f"missing keys: {', '.join(missing)}")
    values = {}
    for key in ("url", "model", "version", "slot"):
        value = body[key]
        if isinstance(value, int) and not isinstance(value, bool) and key == "version":
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key} must be a non-empty string")
        values[key] = value.strip()
    url = values["url"].rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"url must be http(s)://host[:port][/prefix], got {values['url']!r}")
    return Upstream(url, values["model"], values["version"], values["slot"], switched_at)


def read_state(path: Path) -> Upstream | None:
    """The upstream saved by the last switch, or None when there was none."""
    try:
        saved = json.loads(path.read_text())
        return parse_upstream(saved, switched_at=float(saved["switched_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StartupError(
            f"the state file {path} cannot be read ({exc}); fix it, or delete it to start "
            "with no upstream until the next deploy"
        ) from exc


def write_state(path: Path, upstream: Upstream) -> None:
    """Save ``upstream`` to ``path`` atomically: a complete file or the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(upstream), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_app(proxy: Proxy) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.on_startup.append(proxy.open_session)
    app.on_cleanup.append(proxy.close_session)
    app.router.add_get("/-/ping", proxy.ping, allow_head=False)
    app.router.add_get("/-/status", proxy.get_status, allow_head=False)
    app.router.add_get("/-/metrics", proxy.get_metrics, allow_head=False)
    app.router.add_put("/-/upstream", proxy.put_upstream)
    app.router.add_route("*", "/-/{rest:.*}", proxy.reserved)
    app.router.add_route("*", "/{path:.*}", proxy.forward)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(
        description="mlci's deployment proxy: forwards to the current model slot; switched "
        f"with PUT /-/upstream (token from ${TOKEN_ENV})."
    )
    cli.add_argument("--host", default="127.0.0.1", help="address to listen on")
    cli.add_argument("--port", type=int, default=8000, help="port to listen on")
    cli.add_argument(
        "--state-file", type=Path, required=True,
        help="JSON file that keeps the current upstream across restarts",
    )  # fmt: skip
    cli.add_argument(
        "--upstream-timeout", type=float, default=60.0,
        help="seconds one forwarded request may take (default 60)",
    )  # fmt: skip
    cli.add_argument(
        "--shutdown-timeout", type=float, default=60.0,
        help="seconds the requests in flight may take after SIGTERM (default 60)",
    )  # fmt: skip
    return cli.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = os.environ.get(TOKEN_ENV, "").strip()
    try:
        if not token:
            raise StartupError(
                f"{TOKEN_ENV} is not set: the proxy needs the token that authorizes switches "
                "(set it in the environment, never on the command line)"
            )
        proxy = Proxy(token, args.state_file, args.upstream_timeout)
    except StartupError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    up = proxy.upstream
    log.info(
        "listening on %s:%s, upstream %s", args.host, args.port,
        f"{up.url} (version {up.version})" if up else "none yet",
    )  # fmt: skip
    web.run_app(
        build_app(proxy),
        host=args.host,
        port=args.port,
        shutdown_timeout=args.shutdown_timeout,
        access_log=None,
        print=None,
        handle_signals=True,
    )
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
