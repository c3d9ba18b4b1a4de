"""`server` (also `ui`): the local MLflow server, kept running between commands."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from mlci.tasks._signals import stops_cleanly


@task(
    aliases=["ui"],
    help={
        "stop": "stop the server a previous `mlci server` started",
        "port": "port on 127.0.0.1 (overrides mlflow.server_port, default 5055)",
    },
)
@stops_cleanly
def server(c: Context, stop: bool = False, port: str | None = None) -> None:
    """Keep a local MLflow server on the project's store running, for its UI and links."""
    from mlci import servers
    from mlci.context import print_progress, writable_folder
    from mlci.settings import load_settings

    settings = load_settings({"mlflow.server_port": port})
    if settings.mlflow.tracking_uri:
        print(
            f"the tracking server is {settings.mlflow.tracking_uri} (mlflow.tracking_uri): "
            "open it there; a local server serves only the local store"
        )
        return
    state = writable_folder(settings.state_path, "state_dir")
    if stop:
        stopped = servers.stop_lasting_server(state)
        print("local mlflow server stopped" if stopped else "no local mlflow server was running")
        return
    url = servers.start_lasting_server(
        state,
        settings.mlflow.server_port,
        start_timeout=settings.server_start_timeout,
        progress=print_progress,
    )
    print(f"MLflow: {url}  (the pipeline uses it while it runs; `mlci server --stop` ends it)")
