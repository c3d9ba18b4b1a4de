"""Processes mlci starts, as groups: free ports, health probes, waits and stops.

A server runs in its own process group (session), so that it is stopped whole: helpers it
started (mlflow's workers) are in that group too, even once its leader has exited. Waits
use :func:`mlci.polling.poll`; the stops are hand-written, since they must end with a SIGKILL
to the group however they are interrupted (mirakuru's stop does not).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

from mlci.polling import poll

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 2xx now (one try: the callers poll)."""
    from mlci.http import session

    try:
        with session(timeout, retries=0) as http:
            return 200 <= http.get(url).status_code < 300
    except (OSError, ValueError):  # requests' errors are OSErrors; a malformed URL is not
        return False


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def alive(pid: int) -> bool:
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


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
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


def stop_detached_group(pid: int, grace: float) -> None:
    """Stop the group of a server an earlier command started (no Popen here): SIGTERM, up to
    ``grace`` seconds to finish what it serves, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    poll(lambda: alive(pid), lambda running: not running, grace, 0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
