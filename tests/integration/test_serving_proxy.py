"""The deployment's proxy (services/serving/proxy.py) as a real process on 127.0.0.1.

Its upstreams are two tiny HTTP servers in this process that answer with their own name (and
one address where nothing listens). Switches happen under a constant stream of requests: not
one may fail, and every request sent after a switch was answered must reach the new upstream.
A request held open by its upstream shows how a switch and SIGTERM treat requests in flight.
No fixed sleeps: every wait polls for a state, with a deadline generous enough for a loaded
two-core machine.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from mlci.servers import free_port

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration

PROXY = REPO_ROOT / "services" / "serving" / "proxy.py"
TOKEN = "test-token-" + "x" * 20
DEADLINE = 60.0  # seconds for any state to be reached
TIMEOUT = 30  # seconds for one HTTP request


def wait_for(condition: Callable[[], object], what: str, deadline: float = DEADLINE) -> object:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {deadline} s: {what}")


# -- the upstreams ------------------------------------------------------------------------


class Upstream(http.server.ThreadingHTTPServer):
    """An HTTP/1.1 server (keep-alive, like a slot) that names itself in every answer.

    ``/hold`` answers only once ``release`` is set; ``/status/<code>`` answers with that code.
    """

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.name = name
        self.release = threading.Event()
        self.held = 0  # requests waiting in /hold
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status = 200
        if self.path.startswith("/hold"):
            self.server.held += 1
            self.server.release.wait(timeout=120)
            self.server.held -= 1
        elif match := re.fullmatch(r"/status/(\d+)", self.path):
            status = int(match.group(1))
        answer = json.dumps(
            {
                "name": self.server.name,
                "method": self.command,
                "path": self.path,
                "body": body.decode(),
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("X-Upstream-Name", self.server.name)
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@dataclass
class Upstreams:
    blue: Upstream
    green: Upstream
    dead_url: str  # nothing listens there


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    servers = [Upstream("blue"), Upstream("green")]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield Upstreams(*servers, dead_url=f"http://127.0.0.1:{free_port()}")
    finally:
        for server in servers:
            server.release.set()
            server.shutdown()
            server.server_close()


@pytest.fixture(autouse=True)
def _hold_until_released(upstreams: Upstreams) -> Iterator[None]:
    for server in (upstreams.blue, upstreams.green):
        server.release.clear()
    yield
    for server in (upstreams.blue, upstreams.green):
        server.release.set()


# -- the proxy ----------------------------------------------------------------------------


@dataclass
class Proxy:
    process: subprocess.Popen
    url: str
    log: Path
    state_file: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> dict:
        return requests.get(f"{self.url}/-/status", timeout=TIMEOUT).json()

    def switch(self, upstream: Upstream | str, version: str, slot: str = "blue", **kw):
        url = upstream if isinstance(upstream, str) else upstream.url
        body = {"url": url, "model": "wine", "version": version, "slot": slot}
        return requests.put(
            f"{self.url}/-/upstream",
            json=body,
            timeout=TIMEOUT,
            headers=kw.get("headers", {"Authorization": f"Bearer {TOKEN}"}),
        )

    def metrics(self) -> str:
        return requests.get(f"{self.url}/-/metrics", timeout=TIMEOUT).text


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    started: list[subprocess.Popen] = []

    def start(state_file: Path | None = None, upstream_timeout: float = 60) -> Proxy:
        state_file = state_file or tmp_path / "state" / "proxy.json"
        port = free_port()
        log = tmp_path / f"proxy-{port}.log"
        env = {**os.environ, "MLCI_SERVING_PROXY_TOKEN": TOKEN}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(PROXY),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--state-file",
                    str(state_file),
                    "--upstream-timeout",
                    str(upstream_timeout),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        proxy = Proxy(process, f"http://127.0.0.1:{port}", log, state_file)

        def up() -> bool:
            assert process.poll() is None, f"the proxy exited:\n{proxy.output()}"
            try:
                return requests.get(f"{proxy.url}/-/ping", timeout=5).text == "ok"
            except requests.ConnectionError:
                return False

        wait_for(up, "the proxy answers /-/ping")
        return proxy

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=30)


def sample(page: str, name: str, **labels: str) -> float | None:
    for line in page.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        if dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")) == labels:
            return float(match.group(3))
    return None


# -- the tests ----------------------------------------------------------------------------


def test_no_upstream_is_503_and_switches_need_the_token(start_proxy, upstreams) -> None:
    proxy = start_proxy()
    assert proxy.status() == {
        "upstream": None,
        "model": None,
        "version": None,
        "slot": None,
        "switched_at": None,
        "in_flight": {},
    }
    before = requests.post(f"{proxy.url}/invocations", json={"x": 1}, timeout=TIMEOUT)
    assert before.status_code == 503
    assert "error" in before.json()

    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        refused = proxy.switch(upstreams.blue, "1", headers=headers)
        assert refused.status_code == 401, headers
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for body in (
        b"not json",
        b"[]",
        b'{"url": "http://x"}',
        b'{"url": "ftp://x", "model": "m", "version": "1", "slot": "b"}',
        b'{"url": "http://x", "model": "", "version": "1", "slot": "b"}',
    ):
        bad = requests.put(f"{proxy.url}/-/upstream", data=body, headers=auth, timeout=TIMEOUT)
        assert bad.status_code == 400, body
        assert "error" in bad.json()
    assert proxy.status()["upstream"] is None
    assert requests.get(f"{proxy.url}/-/upstream", timeout=TIMEOUT).status_code == 405
    assert requests.get(f"{proxy.url}/-/nothing", timeout=TIMEOUT).status_code == 404

    page = proxy.metrics()
    assert sample(page, "mlci_proxy_requests_total", version="", status="503") == 1
    assert sample(page, "mlci_proxy_switches_total") == 0
    assert "mlci_proxy_upstream_info{" not in page
    assert TOKEN not in proxy.output()


def test_requests_are_forwarded_whole(start_proxy, upstreams) -> None:
    proxy = start_proxy()
    switched = proxy.switch(upstreams.blue, "4", slot="blue")
    assert switched.status_code == 200, switched.text
    assert switched.json()["previous"]["upstream"] is None
    assert switched.json()["current"]["upstream"] == upstreams.blue.url

    answer = requests.put(
        f"{proxy.url}/some/path?a=1&b=%2F",
        data=b"payload",
        timeout=TIMEOUT,
        headers={
            "X-Custom": "yes",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "1",
            "Proxy-Authorization": "Basic secret",
            "Keep-Alive": "timeout=5",
        },
    )
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["name"] == "blue"
    assert (seen["method"], seen["path"], seen["body"]) == (
        "PUT",
        "/some/path?a=1&b=%2F",
        "payload",
    )
    assert seen["headers"]["x-custom"] == "yes"
    for hop in ("x-hop", "proxy-authorization", "keep-alive"):
        assert hop not in seen["headers"]
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert answer.headers["X-Upstream-Name"] == "blue"
    assert answer.headers["X-Mlci-Served-Version"] == "4"

    teapot = requests.delete(f"{proxy.url}/status/418", timeout=TIMEOUT)
    assert teapot.status_code == 418
    assert teapot.json()["method"] == "DELETE"
    assert teapot.headers["X-Mlci-Served-Version"] == "4"

    page = proxy.metrics()
    assert sample(page, "mlci_proxy_requests_total", version="4", status="200") == 1
    assert sample(page, "mlci_proxy_requests_total", version="4", status="418") == 1
    assert sample(page, "mlci_proxy_request_seconds_count", version="4") == 2
    assert sample(page, "mlci_proxy_upstream_info", model="wine", version="4", slot="blue") == 1


def test_an_unreachable_upstream_is_502(start_proxy, upstreams) -> None:
    proxy = start_proxy()
    assert proxy.switch(upstreams.dead_url, "9").status_code == 200
    answer = requests.post(f"{proxy.url}/invocations", json={"x": 1}, timeout=TIMEOUT)
    assert answer.status_code == 502
    assert "error" in answer.json()
    assert answer.headers["X-Mlci-Served-Version"] == "9"
    assert proxy.status()["in_flight"] == {upstreams.dead_url: 0}
    assert sample(proxy.metrics(), "mlci_proxy_requests_total", version="9", status="502") == 1


@dataclass
class Stream:
    """Client threads sending POST /invocations in a loop until stopped."""

    url: str
    clients: int = 4
    results: list[tuple[float, float, str, str]] = field(default_factory=list)  # sent, ended,
    # name, version
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    answer = session.post(
                        f"{self.url}/invocations",
                        timeout=TIMEOUT,
                        json={"dataframe_split": {"columns": ["a"], "data": [[1.0]]}},
                    )
                except requests.RequestException as exc:
                    with self.lock:
                        self.failures.append(repr(exc))
                    continue
                with self.lock:
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                    else:
                        name = answer.json()["name"]
                        version = answer.headers.get("X-Mlci-Served-Version", "")
                        self.results.append((started, time.monotonic(), name, version))

    def count(self) -> int:
        with self.lock:
            return len(self.results) + len(self.failures)


def test_no_request_fails_across_switches(start_proxy, upstreams) -> None:
    proxy = start_proxy()
    targets = {"blue": (upstreams.blue, "1"), "green": (upstreams.green, "2")}
    assert proxy.switch(upstreams.blue, "1", slot="blue").status_code == 200

    stream = Stream(proxy.url)
    threads = [threading.Thread(target=stream.run, daemon=True) for _ in range(stream.clients)]
    for thread in threads:
        thread.start()
    switches: list[tuple[float, float, str]] = []  # (PUT sent, PUT answered, new slot)
    try:
        wait_for(lambda: stream.count() >= 20, "the stream is running")
        for slot in ["green", "blue"] * 4:
            upstream, version = targets[slot]
            sent = time.monotonic()
            answer = proxy.switch(upstream, version, slot=slot)
            assert answer.status_code == 200, answer.text
            switches.append((sent, time.monotonic(), slot))
            seen = stream.count()
            wait_for(lambda seen=seen: stream.count() >= seen + 40, "requests after the switch")
    finally:
        stream.stop.set()
        for thread in threads:
            thread.join(timeout=DEADLINE)

    assert stream.failures == [], stream.failures[:5]
    # A request sent after a switch was answered, and answered before the next switch was
    # sent, reached that switch's upstream, with its version in the header. One that overlaps
    # a switch may have gone either way.
    after_switch = 0
    for sent, ended, name, version in stream.results:
        before = [slot for _, answered, slot in switches if answered < sent]
        during = [slot for put, answered, slot in switches if put < ended and answered >= sent]
        if during:
            continue
        expected = before[-1] if before else "blue"
        assert (name, version) == (expected, targets[expected][1])
        after_switch += bool(before)
    by_name = {n: sum(r[2] == n for r in stream.results) for n in ("blue", "green")}
    print(
        f"\nstream: {len(stream.results)} requests, {len(stream.failures)} failed, "
        f"{len(switches)} switches, {after_switch} checked between switches, by upstream "
        f"{by_name}"
    )
    assert after_switch >= (40 - 2 * stream.clients) * len(switches)

    page = proxy.metrics()
    assert sample(page, "mlci_proxy_switches_total") == len(switches) + 1
    info = [line for line in page.splitlines() if line.startswith("mlci_proxy_upstream_info{")]
    assert info == ['mlci_proxy_upstream_info{model="wine",slot="blue",version="1"} 1.0']
    status = proxy.status()
    assert sample(page, "mlci_proxy_last_switch_timestamp_seconds") == status["switched_at"]
    forwarded = sum(
        sample(page, "mlci_proxy_requests_total", version=v, status="200") or 0 for v in "12"
    )
    assert forwarded == len(stream.results)
    assert status["in_flight"] == {upstreams.blue.url: 0}


def test_a_request_in_flight_finishes_on_the_old_upstream(start_proxy, upstreams) -> None:
    proxy = start_proxy()
    assert proxy.switch(upstreams.blue, "1", slot="blue").status_code == 200
    held: dict = {}
    slow = threading.Thread(
        target=lambda: held.update(
            answer=requests.post(f"{proxy.url}/hold", data=b"slow", timeout=DEADLINE * 2)
        ),
        daemon=True,
    )
    slow.start()
    try:
        wait_for(
            lambda: proxy.status()["in_flight"].get(upstreams.blue.url) == 1,
            "the slow request in flight",
        )
        switched = proxy.switch(upstreams.green, "2", slot="green")
        assert switched.status_code == 200
        assert switched.json()["previous"]["in_flight"] == {upstreams.blue.url: 1}

        fresh = requests.get(f"{proxy.url}/fresh", timeout=TIMEOUT)
        assert (fresh.json()["name"], fresh.headers["X-Mlci-Served-Version"]) == ("green", "2")
        status = proxy.status()
        assert status["upstream"] == upstreams.green.url
        assert status["in_flight"] == {upstreams.blue.url: 1, upstreams.green.url: 0}
        assert slow.is_alive() and upstreams.blue.held == 1
    finally:
        upstreams.blue.release.set()
        slow.join(timeout=DEADLINE)

    answer = held["answer"]
    assert answer.status_code == 200
    assert (answer.json()["name"], answer.headers["X-Mlci-Served-Version"]) == ("blue", "1")
    assert proxy.status()["in_flight"] == {upstreams.green.url: 0}


def test_a_restarted_proxy_keeps_its_upstream(start_proxy, upstreams, tmp_path: Path) -> None:
    state = tmp_path / "kept" / "state.json"
    first = start_proxy(state)
    assert first.switch(upstreams.green, "5", slot="green").status_code == 200
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=DEADLINE) == 0, first.output()
    assert json.loads(state.read_text())["url"] == upstreams.green.url
    assert [p.name for p in state.parent.iterdir()] == ["state.json"]  # no temporary left

    second = start_proxy(state)
    status = second.status()
    assert (status["upstream"], status["version"], status["slot"]) == (
        upstreams.green.url,
        "5",
        "green",
    )
    answer = requests.get(f"{second.url}/again", timeout=TIMEOUT)
    assert (answer.json()["name"], answer.headers["X-Mlci-Served-Version"]) == ("green", "5")
    page = second.metrics()
    assert sample(page, "mlci_proxy_upstream_info", model="wine", version="5", slot="green") == 1
    assert sample(page, "mlci_proxy_last_switch_timestamp_seconds") == status["switched_at"]


def test_sigterm_finishes_requests_in_flight_then_exits_0(start_proxy, upstreams) -> None:
    proxy = start_proxy()
    assert proxy.switch(upstreams.blue, "1").status_code == 200
    held: dict = {}
    slow = threading.Thread(
        target=lambda: held.update(
            answer=requests.post(f"{proxy.url}/hold", data=b"slow", timeout=DEADLINE * 2)
        ),
        daemon=True,
    )
    slow.start()
    port = int(proxy.url.rsplit(":", 1)[1])
    try:
        wait_for(lambda: upstreams.blue.held == 1, "the slow request at the upstream")
        proxy.process.send_signal(signal.SIGTERM)

        def refuses() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_for(refuses, "the proxy stops accepting connections")
        assert proxy.process.poll() is None, "the proxy left before its request in flight"
    finally:
        upstreams.blue.release.set()
        slow.join(timeout=DEADLINE)
    assert held["answer"].status_code == 200
    assert held["answer"].json()["name"] == "blue"
    assert proxy.process.wait(timeout=DEADLINE) == 0, proxy.output()


def test_without_a_token_or_with_a_broken_state_file_it_does_not_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLCI_SERVING_PROXY_TOKEN"}
    command = [sys.executable, str(PROXY), "--port", str(free_port())]
    state = tmp_path / "state.json"
    no_token = subprocess.run(
        [*command, "--state-file", str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert no_token.returncode == 2
    assert no_token.stderr.strip().splitlines() == [no_token.stderr.strip()]
    assert "MLCI_SERVING_PROXY_TOKEN" in no_token.stderr

    state.write_text("{broken")
    broken = subprocess.run(
        [*command, "--state-file", str(state)],
        capture_output=True,
        text=True,
        env={**env, "MLCI_SERVING_PROXY_TOKEN": TOKEN},
        timeout=DEADLINE,
    )
    assert broken.returncode == 2
    assert len(broken.stderr.strip().splitlines()) == 1
    assert str(state) in broken.stderr and "Traceback" not in broken.stderr
