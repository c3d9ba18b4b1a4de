"""Runs that a dead tracking server left RUNNING, closed once the server is back.

The train stage remembers its run under the state folder before training and forgets it
once the run is FINISHED. When a failure leaves it open (the server died mid-run, so MLflow
could not be told), the next stage that reaches the tracking server marks it FAILED.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from mlci.context import StageContext

FILE = "unfinished-runs.json"


def _load(ctx: StageContext) -> dict[str, str]:
    path = ctx.settings.state_path / FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _save(ctx: StageContext, runs: dict[str, str]) -> None:
    path = ctx.settings.state_path / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=2, sort_keys=True))


def _server_key(ctx: StageContext, uri: str) -> str:
    return "local" if ctx.tracking_is_local else uri


def remember(ctx: StageContext, run_id: str, uri: str) -> None:
    runs = _load(ctx)
    runs[run_id] = _server_key(ctx, uri)
    _save(ctx, runs)


def forget(ctx: StageContext, run_id: str) -> None:
    runs = _load(ctx)
    if runs.pop(run_id, None) is not None:
        _save(ctx, runs)


def try_to_end(ctx: StageContext, client: Any, run_id: str) -> None:
    """Mark the run FAILED now if the server answers; otherwise it stays remembered."""
    with contextlib.suppress(Exception):
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FAILED")
        forget(ctx, run_id)


def finish(ctx: StageContext, client: Any, uri: str) -> list[str]:
    """Close the remembered runs of this server; returns the ids that were marked FAILED."""
    runs = _load(ctx)
    key = _server_key(ctx, uri)
    closed = []
    for run_id, server in list(runs.items()):
        if server != key:
            continue
        with contextlib.suppress(Exception):
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, "FAILED")
                closed.append(run_id)
                ctx.log(f"train: run {run_id} was left RUNNING by a failure; marked FAILED")
            runs.pop(run_id)
    if closed or len(runs) != len(_load(ctx)):
        _save(ctx, runs)
    return closed
