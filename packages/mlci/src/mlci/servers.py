"""Real servers that mlci starts itself: the embedded default of the pipeline.

One helper, :func:`local_server`, for all of them: a free port on 127.0.0.1, readiness
through the server's own health endpoint with a deadline, logs to a file under the state
folder, its own process group, and a stop on success, failure, Ctrl-C, SIGTERM and SIGHUP
alike (the tasks turn those two signals into the same exception path as Ctrl-C, see
:mod:`mlci.tasks._signals`).
"""

from __future__ import annotations

import contextlib
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
    """Start ``command(port)`` and yield once ``http://127.0.0.1:port{health_path}`` answers."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = list(command(port))
    if progress:
        progress(f"starting local {name} on {url} (log: {log_path})")
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv,
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
    try:
        started = time.monotonic()
        deadline = started + start_timeout
        while not _healthy(url + health_path):
            if proc.poll() is not None:
                raise LocalServerError(
                    f"the local {name} exited during start-up (exit code {proc.returncode})",
                    f"last lines of {log_path}:\n{_log_tail(log_path)}",
                    "fix the cause shown in the log, or point mlci at a running server",
                )
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"the local {name} was not ready after {start_timeout:.0f} s",
                    f"{url}{health_path} did not answer; last lines of {log_path}:\n"
                    f"{_log_tail(log_path)}",
                    "raise MLCI_SERVER_START_TIMEOUT on a slow machine, or use a running server",
                )
            time.sleep(0.25)
        if progress:
            progress(f"local {name} ready in {time.monotonic() - started:.1f} s")
        yield RunningServer(name=name, url=url, pid=proc.pid, log=log_path)
    finally:
        stop_process_group(proc)


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
