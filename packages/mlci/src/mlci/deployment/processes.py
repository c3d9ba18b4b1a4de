"""The process runtime: a slot, or `invoke serve`, as a Python process of this environment."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from mlci.deployment.slot import Slot, slot_command
from mlci.errors import StageFailed
from mlci.process_control import LOOPBACK, alive, free_port, log_tail
from mlci.servers import spawn
from mlci.settings import Settings


def start_process_slot(
    settings: Settings, model_dir: Path, name: str, version: str, slot: str
) -> Slot:
    """A slot as a local process (its own session: it outlives this process)."""
    port = free_port()
    log_path = settings.state_path / "logs" / f"serving-{name}-{slot}.log"
    argv = [sys.executable, *slot_command(model_dir, name, version, slot, LOOPBACK, port)]
    proc = spawn(f"serving slot {slot}", argv, log_path, {"PYTHONUNBUFFERED": "1"})
    url = f"http://{LOOPBACK}:{port}"
    return Slot(slot, str(version), url, url, pid=proc.pid, log=str(log_path))


def process_failure(slot: Slot) -> str | None:
    """Why the slot's process is gone (with its log's last lines), or None while it runs."""
    if slot.pid is not None and not alive(slot.pid):
        return f"the slot process exited; last lines of {slot.log}:\n{log_tail(Path(slot.log))}"
    return None


def serve_in_process(args: list[str], name: str, version: str) -> None:
    """`invoke serve` in this environment, in the foreground, until Ctrl-C (or SIGTERM)."""
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
