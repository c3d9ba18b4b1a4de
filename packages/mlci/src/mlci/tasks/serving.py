"""Serving tasks: one version in the foreground (`serve`); deploy is a pipeline stage."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from mlci.tasks._signals import stops_cleanly


@task(
    help={
        "version": "serve this registered version (default: the champion, resolved once)",
        "model": "which of [tool.mlci.models] (default: serving.model, or the only one)",
        "port": "port to listen on (overrides serving.port)",
        "runtime": "auto | docker | process (overrides serving.runtime)",
    }
)
@stops_cleanly
def serve(
    c: Context,
    version: str | None = None,
    model: str | None = None,
    port: str | None = None,
    runtime: str | None = None,
) -> None:
    """Serve a registered version over HTTP here: /invocations, /ping, /metrics; Ctrl-C stops."""
    from mlci import deployment
    from mlci.clients import mlflow as mlflow_client
    from mlci.errors import StageFailed
    from mlci.stages.deploy import target_version
    from mlci.tasks.stages import _stage_context

    overrides = {"serving.port": port, "serving.runtime": runtime}
    with _stage_context(overrides, model) as ctx:
        settings = ctx.settings.served()
        name = settings.mlflow.registered_model
        uri = ctx.tracking_uri()
        client = mlflow_client.connect(uri, settings.mlflow)
        with mlflow_client.server_errors(f"reading {name}", uri):
            number = target_version(client, name, settings.promotion.alias, version)
        if number is None:
            raise StageFailed(
                f"{name} has no alias {settings.promotion.alias} to serve",
                "serve serves the champion unless told a version",
                "promote a version first (invoke promote), or pass --version N",
            )
        deployment.serve_forever(settings, uri, name, number, ctx.log)
