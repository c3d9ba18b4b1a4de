"""A slot's record: which version it serves, where, and how to find it again to stop it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BLUE, GREEN = "blue", "green"


def other_slot(slot: str | None) -> str:
    return GREEN if slot == BLUE else BLUE


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


def slot_command(
    model_dir: Path, name: str, version: str, slot: str, host: str, port: int
) -> list[str]:
    """The arguments after ``python`` that serve one version (:mod:`mlci.serving_app`)."""
    options = {
        "--model-dir": str(model_dir),
        "--model-name": name,
        "--version": str(version),
        "--slot": slot,
        "--host": host,
        "--port": str(port),
    }
    return ["-m", "mlci.serving_app", *(part for option in options.items() for part in option)]
