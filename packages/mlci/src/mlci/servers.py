"""Real servers that mlci starts itself: the embedded default of the pipeline.

One helper, :func:`local_server`, for all of them: a free port on 127.0.0.1, readiness
through the server's own health endpoint with a deadline, logs to a file under the state
folder, its own process group, and a stop on success, failure, Ctrl-C, SIGTERM and SIGHUP
alike (the tasks turn those two signals into the same exception path as Ctrl-C, see
:mod:`mlci.tasks._signals`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlci.errors import LocalServerError

LOOPBACK = "127.0.0.1"

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop the whole group: some servers (mlflow) leave helper processes behind otherwise.

    SIGTERM first, SIGKILL after ``grace`` seconds. The final SIGKILL to the group runs even
    when the leader had already exited, and even when a signal (Ctrl-C, SIGTERM) interrupts
    the graceful part: helpers that outlive the leader still belong to the group.
    """
    reaped = proc.poll() is not None
    try:
        if not reaped:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=wait)
                    reaped = True
                    break
                except subprocess.TimeoutExpired:
                    continue
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if not reaped:  # interrupted before the leader was reaped: no zombie left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)


def _spawn(
    name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None
) -> subprocess.Popen:
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


def _wait_ready(
    name: str, proc: subprocess.Popen, health_url: str, log_path: Path, start_timeout: float
) -> float:
    """Seconds until ``health_url`` answers; a clear error when the server exits or is late."""
    started = time.monotonic()
    deadline = started + start_timeout
    while not _healthy(health_url):
        if proc.poll() is not None:
            raise LocalServerError(
                f"the local {name} exited during start-up (exit code {proc.returncode})",
                f"last lines of {log_path}:\n{_log_tail(log_path)}",
                "fix the cause shown in the log, or point mlci at a running server",
            )
        if time.monotonic() > deadline:
            raise LocalServerError(
                f"the local {name} was not ready after {start_timeout:.0f} s",
                f"{health_url} did not answer; last lines of {log_path}:\n{_log_tail(log_path)}",
                "raise MLCI_SERVER_START_TIMEOUT on a slow machine, or use a running server",
            )
        time.sleep(0.25)
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
    proc = _spawn(name, command(port), log_path, env)
    try:
        seconds = _wait_ready(name, proc, url + health_path, log_path, start_timeout)
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


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # our own child: reap it if it has exited
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_lasting_server(state: Path) -> str | None:
    """The URL of the lasting server of this state folder, when it runs and answers."""
    try:
        facts = json.loads(lasting_record(state).read_text())
        pid, url = int(facts["pid"]), str(facts["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(pid) and _healthy(url + "/health"):
        return url
    return None


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


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
    proc = _spawn(LASTING_NAME, mlflow_server_command(state)(port), log_path, MLFLOW_SERVER_ENV)
    try:
        seconds = _wait_ready(LASTING_NAME, proc, url + "/health", log_path, start_timeout)
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
    if not ours or not _alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
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
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{db}",
            "--artifacts-destination", str(artifacts),
            "--serve-artifacts",
            "--host", LOOPBACK,
            "--port", str(port),
            "--workers", "1",
        ]  # fmt: skip

    return command


def pypi_server_command(packages_dir: Path) -> Callable[[int], list[str]]:
    """pypiserver accepting uploads without authentication, on loopback only."""
    packages_dir.mkdir(parents=True, exist_ok=True)

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "pypiserver", "run",
            "--host", LOOPBACK,
            "--port", str(port),
            "--authenticate", ".",
            "--passwords", ".",
            "--disable-fallback",  # an unknown project is a 404 here, never a pypi.org redirect
            str(packages_dir),
        ]  # fmt: skip

    return command
