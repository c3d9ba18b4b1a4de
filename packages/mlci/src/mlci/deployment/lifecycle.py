"""Where slots run (``serving.runtime``), and a slot's life: ready, gone, stopped."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlci.deployment.client import answers
from mlci.deployment.containers import container_failure, stop_container
from mlci.deployment.processes import process_failure
from mlci.deployment.slot import Slot
from mlci.errors import ConfigError, DockerEngineError, StageFailed
from mlci.polling import poll
from mlci.process_control import stop_detached_group
from mlci.settings import Settings


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
    why = process_failure(slot)
    if why is None and slot.container and client is not None:
        why = container_failure(client, slot.container)
    return why


def wait_ready(slot: Slot, timeout: float, client: Any | None = None) -> float:
    """Seconds until the slot answers /ping; StageFailed when it exits or is late."""
    started = time.monotonic()

    def ready() -> bool:
        if answers(slot.check_url + "/ping"):
            return True
        why = slot_failure(slot, client)
        if why is not None:
            raise StageFailed(
                f"the {slot.slot} slot (v{slot.version}) stopped while loading its model",
                why,
                "the version does not load where it is served; see the output above",
            )
        return False

    if not poll(ready, bool, timeout, 0.25):
        raise StageFailed(
            f"the {slot.slot} slot (v{slot.version}) did not answer /ping within {timeout:.0f} s",
            f"{slot.check_url}/ping never answered 200",
            "raise MLCI_SERVING_READY_TIMEOUT for a large model, or look at the slot's log",
        )
    return time.monotonic() - started


def stop_slot(record: dict[str, Any], client: Any | None, grace: float = 20.0) -> None:
    """Stop a slot gracefully (SIGTERM: it finishes what it serves), then for good."""
    pid = record.get("pid")
    if pid:
        stop_detached_group(int(pid), grace)
    if record.get("container") and client is not None:
        stop_container(client, record["container"], grace)
