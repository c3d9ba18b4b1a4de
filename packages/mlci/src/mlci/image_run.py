"""Training inside the model image, pulled by digest, through the Docker SDK.

The train stage uses this when the image stage pushed an image (``train.in_image``): the
container runs ``mlci train`` itself, in the same project folder, so settings, reports and
the state folder are the ones the rest of the build sees. How the container sees that folder
and the network depends on where mlci runs:

* on a machine (a GPU agent started with ``java -jar agent.jar``): the project folder is
  bind-mounted at the same path, and the container shares the host's network, so a tracking
  server on ``localhost`` (an SSH tunnel, the embedded server) is reachable from inside;
* inside a container that drives the host's engine through its socket (the platform's
  Docker agent): a bind mount would name a path of the agent's file system, not the host's,
  so the training container takes the agent's volumes (``--volumes-from``) and joins its
  network namespace (``--network container:``): same paths, same names (``mlflow:5000``).

Secrets reach the container only as environment variables (the MLflow credentials Jenkins
bound); nothing secret is on a command line. GPUs are requested with a device request when
the engine has the NVIDIA runtime (``train.gpus``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.errors import (
    ConfigError,
    DockerEngineError,
    MlciError,
    StageFailed,
    ToolMissing,
    TrackingServerError,
)
from mlci.settings import MODEL_ENV, SPECS, TRAINING_CONTEXT_ENV, Settings

# Variables the container gets from this process when they are set: MLflow's own client
# settings (credentials included) and the CI facts lineage records.
PASSED_THROUGH = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "BUILD_URL",
    "BUILD_NUMBER",
    "JOB_NAME",
    "BRANCH_NAME",
    "GIT_BRANCH",
    "TZ",
)
EXIT_CODES: dict[int, type[MlciError]] = {
    2: ConfigError,
    3: TrackingServerError,
    4: ToolMissing,
}


@dataclass(frozen=True)
class Placement:
    """How the training container reaches the project folder and the network."""

    binds: dict[str, dict[str, str]]
    volumes_from: list[str]
    network_mode: str


def own_container(client: Any) -> str | None:
    """The id of the container this process runs in, when the engine knows it."""
    from docker.errors import APIError

    if not Path("/.dockerenv").exists():
        return None
    try:
        return str(client.inspect_container(socket.gethostname())["Id"])
    except APIError:
        return None


def placement(client: Any, settings: Settings) -> Placement:
    me = own_container(client)
    if me is not None:
        return Placement({}, [me], f"container:{me}")
    folders = {settings.project_root.resolve()}
    for extra in (settings.reports_path, settings.state_path):
        path = extra.resolve()
        if not path.is_relative_to(settings.project_root.resolve()):
            folders.add(path)
    binds = {str(p): {"bind": str(p), "mode": "rw"} for p in sorted(folders)}
    return Placement(binds, [], "host")


def wants_gpus(client: Any, mode: str) -> bool:
    if mode == "all":
        return True
    if mode == "none":
        return False
    runtimes = (client.info() or {}).get("Runtimes") or {}
    return "nvidia" in runtimes


def container_env(settings: Settings, tracking_uri: str, context: dict[str, Any]) -> dict[str, str]:
    """The training container's environment: this run's settings, MLflow's, lineage facts.

    Settings that came from the command line or the environment travel as their ``MLCI_*``
    variables (pyproject values the container reads itself from the mounted project); secret
    settings stay behind: training needs none of them.
    """
    env: dict[str, str] = {}
    for key, spec in SPECS.items():
        source = settings.sources.get(key, "")
        if spec.secret or not (source.startswith("env ") or source == "command line"):
            continue
        value = settings.get(key)
        env[spec.env] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    env.update({name: os.environ[name] for name in PASSED_THROUGH if name in os.environ})
    env.update(
        {
            "MLCI_PROJECT_ROOT": str(settings.project_root),
            "MLCI_MLFLOW_TRACKING_URI": tracking_uri,
            "MLCI_TRAIN_IN_IMAGE": "never",
            **({MODEL_ENV: settings.model_name} if settings.model_name else {}),
            TRAINING_CONTEXT_ENV: json.dumps(context, sort_keys=True),
            "HOME": "/tmp",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1",
            # The image has no git (lineage's git facts come in above): keep GitPython quiet.
            "GIT_PYTHON_REFRESH": "quiet",
        }
    )
    return env


def pull(
    client: Any,
    ref: str,
    auth: dict[str, str] | None,
    log: Callable[[str], None],
    stage: str = "train",
) -> str:
    """Pull ``name@sha256:...``; returns the repo digest the engine now holds for it."""
    from docker.errors import APIError

    repository, _, digest = ref.partition("@")
    if not digest.startswith("sha256:"):
        raise ConfigError(
            f"{ref!r} is not an image reference by digest (name@sha256:...)",
            "training runs exactly the image the image stage pushed",
            "run `invoke image` with MLCI_IMAGE_REGISTRY set; it records the digest",
        )
    log(f"{stage}: pulling {ref}")
    errors: list[str] = []
    try:
        chunks = client.pull(repository, tag=digest, stream=True, decode=True, auth_config=auth)
        for chunk in chunks:
            if "error" in chunk:
                errors.append(str(chunk["error"]).strip())
    except APIError as exc:
        errors.append(str(exc.explanation or exc))
    if errors:
        raise DockerEngineError(
            f"the image {ref} cannot be pulled",
            errors[-1][:500],
            "check that the registry is reachable from this agent's Docker engine and that "
            "MLCI_IMAGE_REGISTRY_USERNAME / _PASSWORD are bound (Jenkins: image-registry)",
        )
    pulled = client.inspect_image(ref).get("RepoDigests") or []
    if ref not in pulled:
        raise DockerEngineError(
            f"the engine holds {pulled or 'no digest'} for {ref}",
            "the pulled image is not the one that was pushed",
            "check the registry; push the image again",
        )
    return ref


def run_training(
    client: Any,
    settings: Settings,
    ref: str,
    env: dict[str, str],
    log: Callable[[str], None],
) -> None:
    """Run ``mlci train`` in ``ref`` and wait for it; raise the matching error on failure."""
    from docker.types import DeviceRequest
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout

    where = placement(client, settings)
    gpus = wants_gpus(client, settings.train.gpus)
    host_config = client.create_host_config(
        binds=where.binds or None,
        volumes_from=where.volumes_from or None,
        network_mode=where.network_mode,
        device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else None,
    )
    container = client.create_container(
        ref,
        entrypoint=["mlci"],
        command=["train"],
        environment=env,
        working_dir=str(settings.project_root),
        user=f"{os.getuid()}:{os.getgid()}",
        host_config=host_config,
        labels={"org.mlci.stage": "train", "org.mlci.build": env.get("BUILD_URL", "")},
    )
    cid = container["Id"]
    log(
        f"train: running `mlci train` in {ref} ({'GPUs: all' if gpus else 'no GPU'}, "
        f"network {where.network_mode.split(':')[0]})"
    )
    try:
        client.start(cid)
        printer = threading.Thread(target=print_logs, args=(client, cid, log), daemon=True)
        printer.start()
        try:
            status = client.wait(cid, timeout=settings.train.timeout)
        except (ReadTimeout, RequestsConnectionError):
            raise StageFailed(
                f"training in {ref} did not finish within {settings.train.timeout} s",
                "the container was stopped",
                "raise MLCI_TRAIN_TIMEOUT, or train a smaller model",
            ) from None
        printer.join(timeout=10)
    finally:
        remove_container(client, cid)
    code = int(status.get("StatusCode", 1))
    if code != 0:
        error = EXIT_CODES.get(code, StageFailed)
        raise error(
            f"training inside {ref} failed (exit code {code})",
            "the container's output is above (mlci's own message comes last)",
            "fix what it names; the same `invoke train` runs outside the image with "
            "MLCI_TRAIN_IN_IMAGE=never",
        )


def print_logs(client: Any, cid: str, log: Callable[[str], None]) -> None:
    """Show a container's output line by line, as it comes, until it ends."""
    buffer = b""
    for chunk in client.logs(cid, stream=True, follow=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            log("  | " + line.decode("utf-8", "replace").rstrip())
    if buffer:
        log("  | " + buffer.decode("utf-8", "replace").rstrip())


def remove_container(client: Any, name: str) -> None:
    """Remove the container (by id or name), running or not; one that is gone is fine."""
    from docker.errors import APIError

    with contextlib.suppress(APIError):
        client.remove_container(name, force=True)
