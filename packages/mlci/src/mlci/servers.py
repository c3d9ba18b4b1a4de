"""Real servers that mlci starts itself: the embedded default of the pipeline.

One helper, :func:`local_server`, for all of them: a free port on 127.0.0.1, readiness
through the server's own health endpoint with a deadline, logs to a file under the state
folder, its own process group, and a stop on success, failure, Ctrl-C, SIGTERM and SIGHUP
alike (the tasks turn those two signals into the same exception path as Ctrl-C, see
:mod:`mlci.tasks._signals`). The lasting server, the local serving proxy and process slots
use the same pieces but outlive the command that started them.

Start and stop stay hand-written, not mirakuru: its executors kill what they started when
mlci exits, and their stop ends without a last SIGKILL to the whole group. Readiness is a
tenacity wait (:func:`mlci.polling.poll`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlci.errors import LocalServerError
from mlci.polling import poll
from mlci.process_control import (
    LOOPBACK,
    alive,
    free_port,
    healthy,
    log_tail,
    port_is_free,
    stop_detached_group,
    stop_process_group,
)

# The process pieces stay part of this module's API (``servers.free_port`` and the like).
__all__ = [
    "LASTING_NAME",
    "LOOPBACK",
    "MLFLOW_SERVER_ENV",
    "TELEMETRY_OFF",
    "RunningServer",
    "alive",
    "disable_mlflow_telemetry",
    "free_port",
    "healthy",
    "lasting_record",
    "local_server",
    "log_tail",
    "mlflow_server_command",
    "port_is_free",
    "pypi_server_command",
    "running_lasting_server",
    "spawn",
    "start_lasting_server",
    "stop_detached_group",
    "stop_lasting_server",
    "stop_process_group",
    "wait_ready",
]

#: MLflow's telemetry off, in every process mlci runs in or starts. Offline, its thread fails
#: to fetch its config and removes ``_MLFLOW_TELEMETRY_SESSION_ID`` from ``os.environ`` while
#: request handlers read the environment (a KeyError: INTERNAL_ERROR). MLflow creates that
#: thread when it is imported (``mlflow/__init__.py`` calls ``set_telemetry_client()``, which
#: reads ``MLFLOW_DISABLE_TELEMETRY`` through ``is_telemetry_disabled()``), so the variable must
#: be set before the first ``import mlflow``: the ``mlci`` command and ``mlci.tasks`` set it
#: first thing, and every local server gets it in its environment (its workers inherit it).
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def disable_mlflow_telemetry() -> None:
    """Turn MLflow's telemetry off in this process (and in what it starts from now on)."""
    os.environ.update(TELEMETRY_OFF)


@dataclass(frozen=True)
class RunningServer:
    name: str
    url: str
    pid: int
    log: Path


def spawn(
    name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group (session), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {}), **TELEMETRY_OFF},
            )
        except OSError as exc:
            raise LocalServerError(
                f"could not start the local {name}",
                str(exc),
                f"check that {argv[0]} is installed in this environment",
            ) from None


def wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    health_url: str,
    log_path: Path,
    start_timeout: float,
) -> float:
    """Seconds until ``health_url`` answers; a clear error when the server exits or is late."""
    started = time.monotonic()

    def ready() -> bool:
        if healthy(health_url):
            return True
        if proc.poll() is not None:
            raise LocalServerError(
                f"the local {name} exited during start-up (exit code {proc.returncode})",
                f"last lines of {log_path}:\n{log_tail(log_path)}",
                "fix the cause shown in the log, or point mlci at a running server",
            )
        return False

    if not poll(ready, bool, start_timeout, 0.25):
        raise LocalServerError(
            f"the local {name} was not ready after {start_timeout:.0f} s",
            f"{health_url} did not answer; last lines of {log_path}:\n{log_tail(log_path)}",
            "raise MLCI_SERVER_START_TIMEOUT on a slow machine, or use a running server",
        )
    return time.monotonic() - started


@contextlib.contextmanager
def local_server(
    name: str,
    command: Callable[[int], Sequence[str]],
    health_path: str,
    log_path: Path,
    *,
    start_timeout: float = 60.0,
    env: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Start ``command(port)`` and yield once ``http://127.0.0.1:port{health_path}`` answers;
    stopped (its whole process group) when the block ends, however it ends."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    if progress:
        progress(f"starting local {name} on {url} (log: {log_path})")
    proc = spawn(name, command(port), log_path, env)
    try:
        seconds = wait_ready(name, proc, url + health_path, log_path, start_timeout)
        if progress:
            progress(f"local {name} ready in {seconds:.1f} s")
        yield RunningServer(name=name, url=url, pid=proc.pid, log=log_path)
    finally:
        stop_process_group(proc)


# --- The lasting local tracking server (`mlci server`) ----------------------------------------
# It serves the same store as the pipeline's own server, on a stable port, until stopped: the
# links in a summary open after the run, and a pipeline that finds it running uses it
# instead of starting one. Its facts live next to the store, in server.json.

LASTING_NAME = "mlflow server (lasting)"


def lasting_record(state: Path) -> Path:
    return state / "mlflow" / "server.json"


def running_lasting_server(state: Path) -> str | None:
    """The URL of the lasting server of this state folder, when it runs and answers."""
    try:
        facts = json.loads(lasting_record(state).read_text())
        pid, url = int(facts["pid"]), str(facts["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if alive(pid) and healthy(url + "/health"):
        return url
    return None


def start_lasting_server(
    state: Path, port: int, *, start_timeout: float = 90.0, progress: Callable[[str], None]
) -> str:
    """Start the lasting server (detached: it outlives this process); its URL once ready."""
    running = running_lasting_server(state)
    if running is not None:
        progress(f"the local mlflow server already runs at {running}")
        return running
    if not port_is_free(port):
        raise LocalServerError(
            f"port {port} on {LOOPBACK} is taken by another program",
            "the lasting local server listens on mlflow.server_port",
            f"stop that program, or choose another port: MLCI_MLFLOW_SERVER_PORT={port + 1}",
        )
    url = f"http://{LOOPBACK}:{port}"
    log_path = state / "logs" / "mlflow-server.log"
    progress(f"starting the local mlflow server on {url} (log: {log_path})")
    proc = spawn(LASTING_NAME, mlflow_server_command(state)(port), log_path, MLFLOW_SERVER_ENV)
    try:
        seconds = wait_ready(LASTING_NAME, proc, url + "/health", log_path, start_timeout)
    except BaseException:
        stop_process_group(proc)
        raise
    lasting_record(state).write_text(json.dumps({"pid": proc.pid, "url": url, "port": port}))
    progress(f"local mlflow server ready in {seconds:.1f} s")
    return url


def stop_lasting_server(state: Path, grace: float = 10.0) -> bool:
    """Stop the lasting server of this state folder; False when none was running."""
    record = lasting_record(state)
    try:
        pid = int(json.loads(record.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    record.unlink(missing_ok=True)
    try:  # a stale record may name a pid the system has given to another program since
        ours = b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        ours = False
    if not ours or not alive(pid):
        return False
    stop_detached_group(pid, grace)
    return True


#: The local tracking server without MLflow 3's job runner (a huey consumer pool for server
#: jobs mlci never submits): it starts faster and holds fewer processes.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_server_command(state: Path) -> Callable[[int], list[str]]:
    """``mlflow server`` on SQLite with artifacts served from a project-local folder."""
    db = state / "mlflow" / "mlflow.db"
    artifacts = state / "mlflow" / "artifacts"
    db.parent.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)

    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "mlflow", "server", "--serve-artifacts"),
            *("--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts)),
            *("--host", LOOPBACK, "--port", str(port), "--workers", "1"),
        ]

    return command


def pypi_server_command(packages_dir: Path) -> Callable[[int], list[str]]:
    """pypiserver accepting uploads without authentication, on loopback only."""
    packages_dir.mkdir(parents=True, exist_ok=True)

    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "pypiserver", "run", "--host", LOOPBACK, "--port", str(port)),
            *("--authenticate", ".", "--passwords", "."),
            "--disable-fallback",  # an unknown project is a 404 here, never a pypi.org redirect
            str(packages_dir),
        ]

    return command
