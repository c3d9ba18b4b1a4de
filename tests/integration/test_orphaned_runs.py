"""Runs orphaned by a dead pipeline are found on the server and closed by the next stage.

Against a real `mlflow server`: the RUNNING runs a dead trainer left behind exist only on the
server (the next stage runs from another state folder, as a fresh Jenkins workspace does).
The next train or promote marks FAILED those that mlci made and whose heartbeat is older
than the limit; a run still beating (being trained elsewhere right now) and a run without
mlci's tag (someone else's) stay RUNNING.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from mlci import orphans
from mlci.stages import promote, train

from .conftest import make_context

pytestmark = pytest.mark.integration

WEAK = {"estimator": "random_forest", "n_estimators": 1, "max_depth": 1, "seed": 3}
HOUR = 3600


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def _left_behind(client, experiment_id: str) -> dict[str, str]:
    """Three RUNNING runs, as pipelines that are dead (or alive elsewhere) leave them."""
    now = time.time()
    hour_ago = int((now - 2 * HOUR) * 1000)

    def run(name, start_ms, tags):
        return client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=name)

    stale = run("dead-pipeline", hour_ago, orphans.created_by_tags(now - 2 * HOUR))
    fresh = run("training-elsewhere", hour_ago, orphans.created_by_tags(now))  # still beating
    foreign = run("someone-elses", hour_ago, {"owner": "a notebook"})
    return {"stale": stale.info.run_id, "fresh": fresh.info.run_id, "foreign": foreign.info.run_id}


def _statuses(client, ids: dict[str, str]) -> dict[str, str]:
    return {key: client.get_run(run_id).info.status for key, run_id in ids.items()}


def _overrides(uri: str, model: str, **extra) -> dict:
    return {
        "mlflow.tracking_uri": uri,
        "mlflow.registered_model": model,
        "mlflow.experiment": model,
        "model.params": WEAK,
        "promotion.min": {},
        **extra,
    }


def test_the_next_train_from_another_state_folder_fails_only_stale_runs_of_mlci(
    tmp_path, mlflow_server
):
    client = _client(mlflow_server)
    model = f"orphans-{uuid.uuid4().hex[:8]}"
    ids = _left_behind(client, client.create_experiment(model))

    ctx, lines = make_context(tmp_path / "fresh-workspace", **_overrides(mlflow_server, model))
    with ctx:
        result = train.run(ctx)

    assert _statuses(client, ids) == {"stale": "FAILED", "fresh": "RUNNING", "foreign": "RUNNING"}
    closed = client.get_run(ids["stale"]).data.tags[orphans.CLOSED_TAG]
    assert closed.startswith("no heartbeat for ")
    assert [line for line in lines if "was left RUNNING" in line] == [
        f"train: run {ids['stale']} (dead-pipeline) was left RUNNING: no heartbeat for 2.0 h "
        "(limit 10 min); marked FAILED"
    ]
    # The stage's own run carries what makes it findable, and ended FINISHED.
    own = client.get_run(result.details["run_id"])
    assert own.info.status == "FINISHED"
    assert own.data.tags[orphans.CREATED_BY_TAG] == "mlci"
    assert abs(int(own.data.tags[orphans.HEARTBEAT_TAG]) - time.time()) < 600
    # No bookkeeping of runs in the state folder any more: the server is the record.
    state = Path(ctx.settings.state_path)
    assert not list(state.rglob("*unfinished*"))


def test_promote_closes_them_too(tmp_path, mlflow_server):
    client = _client(mlflow_server)
    model = f"orphans-p-{uuid.uuid4().hex[:8]}"
    overrides = _overrides(mlflow_server, model)
    ctx, _ = make_context(tmp_path, **overrides)
    with ctx:
        train.run(ctx)
    experiment = client.get_experiment_by_name(model)
    ids = _left_behind(client, experiment.experiment_id)

    # Another workspace: only the reports travel (as Jenkins' stash does), not the state.
    ctx, lines = make_context(
        tmp_path, **overrides, state_dir=str(tmp_path / "other-agent" / "state")
    )
    with ctx:
        promote.run(ctx)
    assert _statuses(client, ids) == {"stale": "FAILED", "fresh": "RUNNING", "foreign": "RUNNING"}
    assert any(line.startswith(f"promote: run {ids['stale']} ") for line in lines)


def test_postgres_backend_finds_them_with_the_same_filter(tmp_path, postgres_mlflow_server):
    client = _client(postgres_mlflow_server)
    model = f"orphans-pg-{uuid.uuid4().hex[:8]}"
    ids = _left_behind(client, client.create_experiment(model))
    ctx, _ = make_context(tmp_path, **_overrides(postgres_mlflow_server, model))
    with ctx:
        import mlci.clients.mlflow as mlflow_client

        connected = mlflow_client.connect(ctx.tracking_uri(), ctx.settings.mlflow)
        assert orphans.close_orphans(ctx, connected, "promote") == [ids["stale"]]
    assert _statuses(client, ids) == {"stale": "FAILED", "fresh": "RUNNING", "foreign": "RUNNING"}
