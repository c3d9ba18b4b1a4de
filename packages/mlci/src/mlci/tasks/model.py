"""Registry tasks: where a model came from, and putting the previous champion back."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from mlci.tasks._signals import stops_cleanly

if TYPE_CHECKING:
    from mlci.context import StageContext


@contextlib.contextmanager
def _registry_client(model: str | None = None) -> Iterator[tuple[StageContext, Any, str]]:
    """The context, a client and the tracking URI; a local server started for it stops after."""
    from mlci.clients import mlflow as mlflow_client
    from mlci.context import StageContext
    from mlci.settings import load_settings

    settings = load_settings().one_model(model)
    with StageContext(settings) as ctx:
        uri = ctx.tracking_uri()
        yield ctx, mlflow_client.connect(uri, settings.mlflow), uri


@task(
    help={
        "alias": "alias to describe (default: promotion.alias, i.e. champion)",
        "version": "describe this version instead of an alias",
        "as_json": "print JSON instead of text",
        "model": "which of [tool.mlci.models] (needed when there are several)",
    }
)
@stops_cleanly
def info(
    c: Context,
    alias: str | None = None,
    version: str | None = None,
    as_json: bool = False,
    model: str | None = None,
) -> None:
    """Where did the champion come from? Version, run, metrics, lineage, alias history."""
    from mlci import registry
    from mlci.clients import mlflow as mlflow_client

    with _registry_client(model) as (ctx, client, uri):
        settings = ctx.settings
        name = settings.mlflow.registered_model
        with mlflow_client.server_errors(f"reading {name}", uri):
            data = registry.describe(client, name, alias or settings.promotion.alias, version)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    label = f"alias {data['alias']}" if data["alias"] else f"version {data['version']}"
    print(
        f"{data['model']} {label}: v{data['version']} "
        f"(aliases: {', '.join(data['aliases']) or 'none'})"
    )
    print(f"  run {data['run_id']}, registered {data['created']}")
    print("  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in data["metrics"].items()))
    print("  lineage:")
    for key, value in data["lineage"].items():
        print(f"    {key.removeprefix('mlci.'):<16} {value}")
    if data["history"]:
        print("  alias history (latest last):")
        for entry in data["history"][-10:]:
            print(
                f"    {entry.get('at')}  {entry.get('alias')}: v{entry.get('from')} -> "
                f"v{entry.get('to')}  ({entry.get('reason')})"
            )


@task(
    help={
        "expect": "the version you believe is the champion now (e.g. 7): refuse, changing "
        "nothing, when another version holds the alias (someone promoted meanwhile)",
        "model": "which of [tool.mlci.models] (needed when there are several)",
    }
)
@stops_cleanly
def rollback(c: Context, expect: str | None = None, model: str | None = None) -> None:
    """Walk the champion alias back one promotion (v7 -> v6 -> v5), recorded in its history."""
    from mlci import registry
    from mlci.clients import mlflow as mlflow_client

    with _registry_client(model) as (ctx, client, uri):
        settings = ctx.settings
        name, alias = settings.mlflow.registered_model, settings.promotion.alias
        if settings.promotion.mode != "enabled":
            raise Exit(f"promotion.mode is {settings.promotion.mode}: not moving aliases", code=1)
        with mlflow_client.server_errors(f"rolling back {name}", uri):
            old, new = registry.rollback(
                client,
                name,
                alias,
                owner=registry.new_owner(),
                build_url=os.environ.get("BUILD_URL", ""),
                expect=expect,
                log=ctx.log,
                lease_wait=settings.promotion.lease_wait,
                lease_ttl=settings.promotion.lease_ttl,
            )
    print(f"{name}: {alias} v{old} -> v{new} (rolled back; v{old} is now {registry.PREVIOUS})")
    if expect is None:
        print(
            f"  (no --expect given: this replaced v{old}, whichever promotion had put it there; "
            "pass --expect N to refuse a champion you have not seen)"
        )
