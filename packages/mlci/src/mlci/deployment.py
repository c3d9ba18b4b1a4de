"""The pieces of serving and blue/green deployment: model files, slots, smoke test, proxy.

A *slot* (``blue`` or ``green``) serves one registered version with :mod:`mlci.serving_app`,
as a local process or as a container of the model's own image. A deployment is one proxy
(``services/serving/proxy.py``) in front of at most two slots: ``invoke deploy`` starts the
new version in the free slot, smoke-tests it there, switches the proxy, waits until the old
slot has no request in flight, and stops it. The proxy is either the platform's
(``serving.proxy_url``: the Compose service ``model-serving``) or a local one that
``invoke deploy`` starts on ``serving.host:serving.port`` and that outlives it; the local
deployment's facts (proxy, slots) live in ``<state>/serving/<model>/``.

Slots see their model as files: the version is downloaded once into the state folder, so a
slot needs neither the tracking server nor its credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlci.errors import (
    ConfigError,
    DockerEngineError,
    LocalServerError,
    ServingError,
    StageFailed,
)
from mlci.settings import Settings

BLUE, GREEN = "blue", "green"
SLOT_PORT = 8000  # a slot container's port on a Docker network
TOKEN_ENV = "MLCI_SERVING_PROXY_TOKEN"
VERSION_HEADER = "X-Mlci-Served-Version"


def other_slot(slot: str | None) -> str:
    return GREEN if slot == BLUE else BLUE


# -- model files -----------------------------------------------------------------------------


def model_folder(settings: Settings, name: str, version: str) -> Path:
    return settings.state_path / "serving" / name / "models" / f"v{version}"


def download_model(uri: str, name: str, version: str, dest: Path, log: Callable) -> Path:
    """The version's MLflow model folder, downloaded once (a complete copy or none)."""
    if (dest / "MLmodel").is_file():
        return dest
    log(f"deploy: downloading {name} v{version} into {dest}")
    return download_model_uri(f"models:/{name}/{version}", dest, uri, f"{name} v{version}")


def download_model_uri(model_uri: str, dest: Path, tracking_uri: str | None, what: str) -> Path:
    """The MLflow model ``model_uri`` names, downloaded into ``dest`` (complete or not at all)."""
    if (dest / "MLmodel").is_file():
        return dest
    import shutil

    import mlflow.artifacts

    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(partial), tracking_uri=tracking_uri
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    found = next(partial.rglob("MLmodel"), None)
    if found is None:
        shutil.rmtree(partial, ignore_errors=True)
        raise StageFailed(
            f"{what} has no MLflow model (no MLmodel file in its artifacts)",
            "a slot serves what mlflow.pyfunc can load",
            "serve a version that train registered",
        )
    shutil.rmtree(dest, ignore_errors=True)
    found.parent.rename(dest)
    shutil.rmtree(partial, ignore_errors=True)
    return dest


def input_example(model_dir: Path) -> Any | None:
    """The version's saved input example as a DataFrame, or None when it has none."""
    import pandas as pd
    from mlflow.models import Model

    example = Model.load(str(model_dir)).load_input_example(str(model_dir))
    if example is None:
        return None
    return example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)


# -- HTTP ------------------------------------------------------------------------------------


def http(
    method: str,
    url: str,
    *,
    body: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request: (status, headers, body); a connection failure raises OSError."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read()


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return http("GET", url, timeout=timeout)[0] == 200
    except (OSError, ValueError):
        return False


# -- slots -----------------------------------------------------------------------------------


@dataclass
class Slot:
    slot: str
    version: str
    #: How the proxy reaches the slot (a name on the Docker network, or loopback).
    url: str
    #: How this process reaches it (the same, except on no network of its own).
    check_url: str
    pid: int | None = None
    container: str | None = None
    log: str = ""

    def record(self) -> dict[str, Any]:
        return asdict(self)


def slot_command(model_dir: Path, name: str, version: str, slot: str, host: str, port: int):
    return [
        "-m", "mlci.serving_app",
        "--model-dir", str(model_dir),
        "--model-name", name,
        "--version", str(version),
        "--slot", slot,
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip


def start_process_slot(
    settings: Settings, model_dir: Path, name: str, version: str, slot: str
) -> Slot:
    """A slot as a local process (its own session: it outlives this process)."""
    from mlci.servers import LOOPBACK, _spawn, free_port

    port = free_port()
    log_path = settings.state_path / "logs" / f"serving-{name}-{slot}.log"
    argv = [sys.executable, *slot_command(model_dir, name, version, slot, LOOPBACK, port)]
    proc = _spawn(f"serving slot {slot}", argv, log_path, {"PYTHONUNBUFFERED": "1"})
    url = f"http://{LOOPBACK}:{port}"
    return Slot(slot, str(version), url, url, pid=proc.pid, log=str(log_path))


def container_name(settings: Settings, name: str, slot: str) -> str:
    # On the platform's network the name is what Prometheus scrapes (mlci-serving-blue).
    if settings.serving.network:
        return f"mlci-serving-{slot}"
    return f"mlci-serving-{name}-{slot}"


def start_container_slot(
    client: Any, settings: Settings, image: str, model_dir: Path, name: str, version: str,
    slot: str,
) -> Slot:  # fmt: skip
    """A slot as a container of the model's image: on ``serving.network`` by name, else on
    the host's network with a free loopback port. The model folder is reached at the same
    path (a bind mount, or the agent's volumes)."""
    from mlci.image_run import placement
    from mlci.servers import LOOPBACK, free_port

    cname = container_name(settings, name, slot)
    remove_container(client, cname)
    where = placement(client, settings)
    if settings.serving.network:
        host, port, network = "0.0.0.0", SLOT_PORT, settings.serving.network
        url = f"http://{cname}:{port}"
    else:
        host, port, network = LOOPBACK, free_port(), "host"
        url = f"http://{LOOPBACK}:{port}"
    host_config = client.create_host_config(
        binds=where.binds or None,
        volumes_from=where.volumes_from or None,
        network_mode=network,
        restart_policy={"Name": "unless-stopped"},
    )
    container = client.create_container(
        image,
        name=cname,
        entrypoint=["python"],
        command=slot_command(model_dir, name, version, slot, host, port),
        environment={"HOME": "/tmp", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"},
        user=f"{os.getuid()}:{os.getgid()}",
        host_config=host_config,
        labels={
            "org.mlci.role": "serving-slot",
            "org.mlci.model": name,
            "org.mlci.version": str(version),
            "org.mlci.slot": slot,
        },
    )
    client.start(container["Id"])
    return Slot(slot, str(version), url, url, container=cname)


def runtime(settings: Settings, log: Callable[[str], None]) -> tuple[str, Any, str | None]:
    """("docker", client, image) or ("process", None, None), per serving.runtime."""
    from mlci.image_run import pull
    from mlci.reports import read_json
    from mlci.stages.image import docker_client, registry_auth

    mode = settings.serving.runtime
    if mode == "process":
        if settings.serving.network:
            raise ConfigError(
                "serving.runtime is process, but serving.network names a Docker network",
                "a slot on the platform's network is a container of the model's image",
                "set MLCI_SERVING_RUNTIME=docker (or auto), or unset MLCI_SERVING_NETWORK",
            )
        return "process", None, None
    report = settings.reports_path / "image.json"
    built = read_json(report, "image") if report.is_file() else {}
    image = built.get("pushed") or next(iter(built.get("tags") or []), None)
    client = docker_client(settings.image.timeout)
    if client is not None and image:
        if built.get("pushed"):
            pull(client, str(image), registry_auth(settings.image), log, stage="serving")
        return "docker", client, str(image)
    if mode == "docker" or settings.serving.network:
        raise DockerEngineError(
            "slots must run in the model's image, and "
            + ("no Docker engine answers" if client is None else f"{report} names no image"),
            "serving.runtime is docker (or serving.network is set)",
            "run `invoke image` on a machine with a Docker engine first, or set "
            "MLCI_SERVING_RUNTIME=process to serve from this environment",
        )
    return "process", None, None


def slot_failure(slot: Slot, client: Any | None) -> str | None:
    """Why the slot is gone (exited, with its last output), or None while it runs."""
    from mlci.servers import _alive, _log_tail

    if slot.pid is not None and not _alive(slot.pid):
        return f"the slot process exited; last lines of {slot.log}:\n{_log_tail(Path(slot.log))}"
    if slot.container and client is not None:
        from docker.errors import APIError, NotFound

        try:
            state = client.inspect_container(slot.container)["State"]
        except NotFound:
            return "the slot container is gone"
        except APIError:
            return None
        if not state.get("Running"):
            tail = client.logs(slot.container, tail=15).decode("utf-8", "replace")
            return f"the slot container exited (code {state.get('ExitCode')}):\n{tail}"
    return None


def wait_ready(slot: Slot, timeout: float, client: Any | None = None) -> float:
    """Seconds until the slot answers /ping; StageFailed when it exits or is late."""
    started = time.monotonic()
    while not answers(slot.check_url + "/ping"):
        why = slot_failure(slot, client)
        if why is not None:
            raise StageFailed(
                f"the {slot.slot} slot (v{slot.version}) stopped while loading its model",
                why,
                "the version does not load where it is served; see the output above",
            )
        if time.monotonic() - started > timeout:
            raise StageFailed(
                f"the {slot.slot} slot (v{slot.version}) did not answer /ping within "
                f"{timeout:.0f} s",
                f"{slot.check_url}/ping never answered 200",
                "raise MLCI_SERVING_READY_TIMEOUT for a large model, or look at the slot's log",
            )
        time.sleep(0.25)
    return time.monotonic() - started


def stop_slot(record: dict[str, Any], client: Any | None, grace: float = 20.0) -> None:
    """Stop a slot gracefully (SIGTERM: it finishes what it serves), then for good."""
    from mlci.servers import _alive

    pid = record.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(int(pid)):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)
    if record.get("container") and client is not None:
        from docker.errors import APIError

        with contextlib.suppress(APIError):
            client.stop(record["container"], timeout=int(grace))
        remove_container(client, record["container"])


def remove_container(client: Any, name: str) -> None:
    from docker.errors import APIError

    with contextlib.suppress(APIError):
        client.remove_container(name, force=True)


# -- smoke test ------------------------------------------------------------------------------


@dataclass
class Smoke:
    requests: int
    failures: int
    rows: int
    p50_ms: float
    p95_ms: float
    limit_ms: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        return (
            f"{self.requests - self.failures}/{self.requests} answered, {self.rows} rows each, "
            f"p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms (limit {self.limit_ms:.0f} ms)"
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _expected_outputs(model_dir: Path) -> int | None:
    """How many output columns the signature declares (None: no output schema)."""
    from mlflow.models import Model

    signature = Model.load(str(model_dir)).signature
    outputs = getattr(signature, "outputs", None) if signature is not None else None
    return len(outputs.inputs) if outputs is not None else None


def smoke_test(url: str, model_dir: Path, requests: int, limit_ms: float, timeout: float) -> Smoke:
    """The input example through the slot ``requests`` times: every answer 200, one
    prediction per row of the declared output shape, the p95 latency within the limit."""
    example = input_example(model_dir)
    if example is None:
        return Smoke(0, 0, 0, 0.0, 0.0, limit_ms, ["the version has no input example to send"])
    body = {"dataframe_split": json.loads(example.to_json(orient="split", index=False))}
    columns = _expected_outputs(model_dir)
    times: list[float] = []
    failures, problems = 0, []
    for _ in range(requests):
        started = time.perf_counter()
        try:
            status, _, raw = http("POST", url + "/invocations", body=body, timeout=timeout)
        except OSError as exc:
            status, raw = 0, str(exc).encode()
        times.append((time.perf_counter() - started) * 1000)
        shape_problem = None if status != 200 else _shape_problem(raw, len(example), columns)
        if status != 200 or shape_problem:
            failures += 1
            if len(problems) < 3:
                problems.append(
                    shape_problem or f"HTTP {status}: {raw[:200].decode(errors='replace')}"
                )
    smoke = Smoke(requests, failures, len(example), _percentile(times, 0.5),
                  _percentile(times, 0.95), limit_ms, problems)  # fmt: skip
    if smoke.p95_ms > limit_ms:
        smoke.problems.append(
            f"p95 latency {smoke.p95_ms:.1f} ms is above serving.smoke_p95_ms ({limit_ms:.0f} ms)"
        )
    return smoke


def _shape_problem(raw: bytes, rows: int, columns: int | None) -> str | None:
    try:
        predictions = json.loads(raw)["predictions"]
    except (ValueError, KeyError, TypeError):
        return f"the answer is not MLflow's {{'predictions': ...}}: {raw[:120]!r}"
    if len(predictions) != rows:
        return f"{len(predictions)} predictions for {rows} rows"
    first = predictions[0] if predictions else None
    width = len(first) if isinstance(first, list | dict) else 1
    if columns is not None and width != columns:
        return f"predictions have {width} columns; the signature declares {columns}"
    return None


# -- the proxy -------------------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    token: str
    timeout: float = 10.0

    def status(self) -> dict[str, Any]:
        try:
            code, _, raw = http("GET", self.url + "/-/status", timeout=self.timeout)
            if code == 200:
                return json.loads(raw)
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
        return json.loads(raw)

    def drain(self, upstream: str, timeout: float) -> int:
        """Wait until no request to ``upstream`` is in flight; how many still were at the end."""
        deadline = time.monotonic() + timeout
        while True:
            left = int(self.status().get("in_flight", {}).get(upstream, 0))
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def served_version(self) -> str | None:
        """The version a request through the proxy reaches now (its answer's header)."""
        try:
            code, headers, _ = http("GET", self.url + "/ping", timeout=self.timeout)
        except OSError:
            return None
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get(VERSION_HEADER.lower()) if code == 200 else None


# -- the local deployment --------------------------------------------------------------------


def local_folder(settings: Settings, name: str) -> Path:
    return settings.state_path / "serving" / name


def read_local(settings: Settings, name: str) -> dict[str, Any]:
    try:
        return json.loads((local_folder(settings, name) / "deployment.json").read_text())
    except (OSError, ValueError):
        return {}


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
    from mlci.servers import _alive

    facts = read_local(settings, name).get("proxy") or {}
    pid, url = facts.get("pid"), facts.get("url")
    if pid and url and _alive(int(pid)) and answers(url + "/-/ping"):
        return Proxy(url, _token(settings, name), settings.serving.timeout)
    return None


def proxy_script(settings: Settings) -> Path:
    from mlci.resources import platform_file

    return platform_file(settings, "services/serving/proxy.py")


def start_local_proxy(settings: Settings, name: str, log: Callable[[str], None]) -> Proxy:
    """The local proxy on serving.host:serving.port (detached: it outlives this process)."""
    from mlci.servers import _spawn, _wait_ready, port_is_free, stop_process_group

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
    argv = [sys.executable, str(proxy_script(settings)), "--host", serving.host,
            "--port", str(serving.port), "--state-file", str(state_file)]  # fmt: skip
    token = _token(settings, name)
    log(f"deploy: starting the serving proxy on {url} (log: {log_path})")
    proc = _spawn("serving proxy", argv, log_path, {TOKEN_ENV: token})
    try:
        _wait_ready("serving proxy", proc, url + "/-/ping", log_path, settings.server_start_timeout)
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


# -- `invoke serve`: one version in the foreground -------------------------------------------


def serve_forever(
    settings: Settings, uri: str, name: str, version: str, log: Callable[[str], None]
) -> None:
    """Serve ``version`` on serving.host:serving.port until Ctrl-C (or SIGTERM)."""
    import subprocess

    from mlci.servers import port_is_free

    serving = settings.serving
    if not port_is_free(serving.port):
        raise LocalServerError(
            f"port {serving.port} is taken by another program",
            "invoke serve listens on serving.port",
            f"stop that program, or choose another port: --port {serving.port + 1}",
        )
    kind, client, image = runtime(settings, log)
    model_dir = download_model(uri, name, version, model_folder(settings, name, version), log)
    url = f"http://{serving.host}:{serving.port}"
    args = slot_command(model_dir, name, version, "serve", serving.host, serving.port)
    log(f"serve: {name} v{version} at {url} ({kind}{', ' + image if image else ''}); "
        "POST /invocations, GET /ping, GET /metrics; Ctrl-C stops")  # fmt: skip
    if kind == "process":
        # Same process group: Ctrl-C reaches the server too; it stops gracefully (a SIGTERM
        # to mlci is passed on), and is killed only when it does not within 30 s.
        proc = subprocess.Popen([sys.executable, *args])
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        if code not in (0, -signal.SIGINT, 130):
            raise StageFailed(
                f"the server of {name} v{version} exited with code {code}",
                "its output is above",
                "fix what it names and run invoke serve again",
            )
        return
    cname = f"mlci-serve-{name}"
    remove_container(client, cname)
    from mlci.image_run import _print_logs, placement

    where = placement(client, settings)
    container = client.create_container(
        image, name=cname, entrypoint=["python"], command=args,
        environment={"HOME": "/tmp", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"},
        user=f"{os.getuid()}:{os.getgid()}",
        host_config=client.create_host_config(
            binds=where.binds or None, volumes_from=where.volumes_from or None,
            network_mode="host",
        ),
        labels={"org.mlci.role": "serve", "org.mlci.model": name, "org.mlci.version": version},
    )  # fmt: skip
    try:
        client.start(container["Id"])
        _print_logs(client, container["Id"], log)
    finally:
        with contextlib.suppress(Exception):
            client.stop(cname, timeout=10)
        remove_container(client, cname)
