"""`invoke serve`: one version in the foreground, on serving.host:serving.port, until Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable

from mlci.deployment.containers import serve_in_container
from mlci.deployment.lifecycle import runtime
from mlci.deployment.model_files import download_model, model_folder
from mlci.deployment.processes import serve_in_process
from mlci.deployment.slot import slot_command
from mlci.errors import LocalServerError
from mlci.process_control import port_is_free
from mlci.settings import Settings


def serve_forever(
    settings: Settings, uri: str, name: str, version: str, log: Callable[[str], None]
) -> None:
    """Serve ``version`` on serving.host:serving.port until Ctrl-C (or SIGTERM)."""
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
    shown = f"{kind}, {image}" if image else kind
    log(
        f"serve: {name} v{version} at {url} ({shown}); "
        "POST /invocations, GET /ping, GET /metrics; Ctrl-C stops"
    )
    if kind == "process" or image is None:
        serve_in_process(args, name, version)
    else:
        serve_in_container(client, settings, image, name, version, args, log)
