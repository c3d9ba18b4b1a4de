"""The Docker runtime: a slot, or `invoke serve`, as a container of the model's own image.

The model folder is reached at the same path inside (a bind mount, or the agent's volumes:
:func:`mlci.image_run.placement`), and the container runs as this user.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci.deployment.slot import Slot, slot_command
from mlci.image_run import placement, print_logs, remove_container
from mlci.process_control import LOOPBACK, free_port
from mlci.settings import Settings

SLOT_PORT = 8000  # a slot container's port on a Docker network
ENVIRONMENT = {"HOME": "/tmp", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def container_name(settings: Settings, name: str, slot: str) -> str:
    # On the platform's network the name is what Prometheus scrapes (mlci-serving-blue).
    if settings.serving.network:
        return f"mlci-serving-{slot}"
    return f"mlci-serving-{name}-{slot}"


def create_serving_container(
    client: Any,
    settings: Settings,
    image: str,
    cname: str,
    args: list[str],
    network: str,
    labels: dict[str, str],
    restart: bool = False,
) -> str:
    """A container named ``cname`` (replacing one of that name) running ``python *args``."""
    remove_container(client, cname)
    where = placement(client, settings)
    host_config = client.create_host_config(
        binds=where.binds or None,
        volumes_from=where.volumes_from or None,
        network_mode=network,
        restart_policy={"Name": "unless-stopped"} if restart else None,
    )
    container = client.create_container(
        image,
        name=cname,
        entrypoint=["python"],
        command=args,
        environment=ENVIRONMENT,
        user=f"{os.getuid()}:{os.getgid()}",
        host_config=host_config,
        labels=labels,
    )
    return str(container["Id"])


def start_container_slot(
    client: Any,
    settings: Settings,
    image: str,
    model_dir: Path,
    name: str,
    version: str,
    slot: str,
) -> Slot:
    """A slot as a container of the model's image: on ``serving.network`` by name, else on
    the host's network with a free loopback port."""
    cname = container_name(settings, name, slot)
    if settings.serving.network:
        host, port, network = "0.0.0.0", SLOT_PORT, settings.serving.network
        url = f"http://{cname}:{port}"
    else:
        host, port, network = LOOPBACK, free_port(), "host"
        url = f"http://{LOOPBACK}:{port}"
    labels = {
        "org.mlci.role": "serving-slot",
        "org.mlci.model": name,
        "org.mlci.version": str(version),
        "org.mlci.slot": slot,
    }
    args = slot_command(model_dir, name, version, slot, host, port)
    cid = create_serving_container(
        client, settings, image, cname, args, network, labels, restart=True
    )
    client.start(cid)
    return Slot(slot, str(version), url, url, container=cname)


def container_failure(client: Any, container: str) -> str | None:
    """Why the slot's container is gone (with its last output), or None while it runs."""
    from docker.errors import APIError, NotFound

    try:
        state = client.inspect_container(container)["State"]
    except NotFound:
        return "the slot container is gone"
    except APIError:
        return None
    if state.get("Running"):
        return None
    tail = client.logs(container, tail=15).decode("utf-8", "replace")
    return f"the slot container exited (code {state.get('ExitCode')}):\n{tail}"


def stop_container(client: Any, container: str, grace: float) -> None:
    """Stop gracefully (the slot finishes what it serves within ``grace`` s), then remove."""
    from docker.errors import APIError

    with contextlib.suppress(APIError):
        client.stop(container, timeout=int(grace))
    remove_container(client, container)


def serve_in_container(
    client: Any,
    settings: Settings,
    image: str,
    name: str,
    version: str,
    args: list[str],
    log: Callable[[str], None],
) -> None:
    """`invoke serve` in the model's image on the host's network, its output shown here;
    the container is stopped and removed however the wait ends."""
    cname = f"mlci-serve-{name}"
    labels = {"org.mlci.role": "serve", "org.mlci.model": name, "org.mlci.version": version}
    cid = create_serving_container(client, settings, image, cname, args, "host", labels)
    try:
        client.start(cid)
        print_logs(client, cid, log)
    finally:
        with contextlib.suppress(Exception):
            client.stop(cname, timeout=10)
        remove_container(client, cname)
