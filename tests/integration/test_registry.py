"""Race-safe promotion, alias history, rollback and lineage against real mlflow servers."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from mlci import orphans, registry, servers
from mlci.errors import StageFailed, TrackingServerError
from mlci.stages import promote, train

from .conftest import REPO_ROOT, invoke_model_task, make_context
from .workloads import ENABLED, check_history, promotion_race
from .workloads import candidate as _candidate
from .workloads import champion as _champion
from .workloads import client as _client

pytestmark = pytest.mark.integration


def test_concurrent_promotions_leave_exactly_one_best_champion(postgres_mlflow_server):
    # 20 rounds x 8 concurrent promote_version calls; after each round exactly one champion,
    # the best so far, and no lease left (checked in promotion_race); then the history.
    race = promotion_race(postgres_mlflow_server, rounds=20, per_round=8)
    moves = check_history(postgres_mlflow_server, race)
    print(f"\n20 rounds x 8 concurrent promotions: {len(moves)} moves, {race.seconds:.1f} s")


def test_rollback_restores_the_replaced_champion_and_is_no_toggle(mlflow_server):
    client = _client(mlflow_server)
    model = f"rollback-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    experiment_id = client.create_experiment(model)
    with pytest.raises(StageFailed, match="no previous version"):
        registry.rollback(client, model, "champion", owner="t")
    v1 = _candidate(client, model, experiment_id, 0.80)
    v2 = _candidate(client, model, experiment_id, 0.90)
    registry.promote_version(client, model, v1, ENABLED, owner="t")
    registry.promote_version(client, model, v2, ENABLED, owner="t")
    assert (_champion(client, model), _champion(client, model, "previous")) == (v2, v1)

    assert registry.rollback(client, model, "champion", owner="t") == (v2, v1)
    assert (_champion(client, model), _champion(client, model, "previous")) == (v1, v2)
    last = registry.history(client, model)[-1]
    assert (last["from"], last["to"], last["reason"]) == (v2, v1, "rollback")
    assert last["kind"] == "rollback"
    # a second rollback goes further back, never back to v2: here there is nothing left
    with pytest.raises(StageFailed, match="no previous version"):
        registry.rollback(client, model, "champion", owner="t")
    assert _champion(client, model) == v1


def test_lineage_and_applied_thresholds_on_run_and_version(tmp_path, mlflow_server, monkeypatch):
    monkeypatch.setenv("BUILD_URL", "http://jenkins.example/job/mlci/42/")
    model = f"lineage-{uuid.uuid4().hex[:8]}"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "image.json").write_text(
        json.dumps({"image_id": "sha256:feedbeef", "repo_digests": []})
    )
    ctx, _ = make_context(
        tmp_path,
        **{
            "mlflow.tracking_uri": mlflow_server,
            "mlflow.registered_model": model,
            "mlflow.experiment": model,
            "model.params": {"n_estimators": 20, "seed": 1},
            "promotion.min": {"f1_macro": 0.5},
            "promotion.max_regression": {"accuracy": 0.05},
        },
    )
    with ctx:
        result = train.run(ctx)
        promote.run(ctx)
    client = _client(mlflow_server)
    version = client.get_model_version(model, result.details["version"])
    run = client.get_run(version.run_id)
    branch = subprocess.run(
        ["git", "rev-parse", "--abbrev-ref", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for tags in (run.data.tags, version.tags):
        assert tags["mlci.build_url"] == "http://jenkins.example/job/mlci/42/"
        # built but not pushed: training ran here, not in that image, so no image is claimed
        assert tags["mlci.image_digest"] == "none"
        assert tags["mlci.git_branch"] == branch
        assert tags["mlci.git_dirty"] in ("true", "false")
        assert tags["mlci.data_hash"].startswith("sha256:")
        assert tags["mlci.device"] == "cpu"
    applied = json.loads(version.tags["mlci.thresholds"])
    assert applied["min"] == {"f1_macro": 0.5}
    assert applied["max_regression"] == {"accuracy": 0.05}
    assert applied["decision"] == "promoted"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/model_card.md" in artifacts
    card = tmp_path / "reports" / "models" / "wine" / "model_card.md"
    assert "lineage" in card.read_text().lower()


def test_model_info_and_rollback_commands(tmp_path, mlflow_server):
    client = _client(mlflow_server)
    model = f"info-{uuid.uuid4().hex[:8]}"

    missing = invoke_model_task(["model.info"], mlflow_server, model, tmp_path)
    assert missing.returncode == 1
    assert f"the registered model '{model}' does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr

    client.create_registered_model(model)
    experiment_id = client.create_experiment(model)
    no_alias = invoke_model_task(["model.info"], mlflow_server, model, tmp_path)
    assert f"{model} has no alias 'champion'" in no_alias.stderr

    v1 = _candidate(client, model, experiment_id, 0.7)
    v2 = _candidate(client, model, experiment_id, 0.8)
    registry.promote_version(client, model, v1, ENABLED, owner="t")
    registry.promote_version(client, model, v2, ENABLED, owner="t")
    info = invoke_model_task(["model.info", "--as-json"], mlflow_server, model, tmp_path)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["version"] == v2
    assert json.loads(data["lineage"]["mlci.thresholds"])["decision"] == "promoted"
    assert [(e["from"], e["to"]) for e in data["history"]] == [(None, v1), (v1, v2)]

    back = invoke_model_task(["model.rollback"], mlflow_server, model, tmp_path)
    assert back.returncode == 0, back.stderr
    assert f"champion v{v2} -> v{v1}" in back.stdout
    assert f"no --expect given: this replaced v{v2}" in back.stdout
    assert _champion(client, model) == v1


def test_server_killed_mid_training_fails_clearly_and_the_run_is_closed_later(
    tmp_path, monkeypatch
):
    import wine_classifier

    state = tmp_path / "server"
    port = servers.free_port()
    command = servers.mlflow_server_command(state)
    model = f"fault-{uuid.uuid4().hex[:8]}"
    real = wine_classifier.train_and_evaluate
    holder = {}

    def dying_training(params, *, on_step=None, **kwargs):
        calls = []

        def step(number, metrics):
            calls.append(number)
            if len(calls) == 3:  # the server dies in the middle of training
                os.killpg(holder["pid"], signal.SIGKILL)
                time.sleep(0.5)
            on_step(number, metrics)

        return real(params, on_step=step, **kwargs)

    uri = f"http://127.0.0.1:{port}"
    overrides = {
        "mlflow.tracking_uri": uri,
        "mlflow.registered_model": model,
        "mlflow.experiment": model,
        "mlflow.retries": 0,
        "mlflow.timeout": 5,
        "model.params": {"n_estimators": 40, "seed": 3},
    }
    with servers.local_server("mlflow", command, "/health", state / "1.log", port=port) as s:
        holder["pid"] = s.pid
        monkeypatch.setattr(wine_classifier, "train_and_evaluate", dying_training)
        ctx, _ = make_context(tmp_path, **overrides)
        with ctx, pytest.raises(TrackingServerError) as err:
            train.run(ctx)
    assert "stopped answering" in str(err.value) or "failed on the MLflow server" in str(err.value)
    monkeypatch.setattr(wine_classifier, "train_and_evaluate", real)

    with servers.local_server("mlflow", command, "/health", state / "2.log", port=port):
        client = _client(uri)
        experiment = client.get_experiment_by_name(model)
        runs = client.search_runs([experiment.experiment_id])
        assert [r.info.status for r in runs] == ["RUNNING"]  # what the dead server left
        # Its heartbeat stopped with the server; once it is older than the limit, the next
        # run closes the orphan first, from any state folder (the evidence is on the server).
        # (mlflow.orphan_after is at least 120 s; the limit is shortened where train uses it)
        monkeypatch.setattr(
            orphans, "close_orphans", functools.partial(orphans.close_orphans, older_than=1.0)
        )
        time.sleep(1.5)
        ctx, lines = make_context(tmp_path / "another-workspace", **overrides)
        with ctx:
            result = train.run(ctx)
        statuses = {
            r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])
        }
        assert statuses[runs[0].info.run_id] == "FAILED"
        assert statuses[result.details["run_id"]] == "FINISHED"
        assert any(
            f"run {runs[0].info.run_id}" in line and line.endswith("marked FAILED")
            for line in lines
        )
        assert registry.alias_version(client, model, "champion") is None  # nothing promoted


def test_connecting_leaves_the_users_mlflow_tracking_uri_alone(mlflow_server, monkeypatch):
    """MLflow exports the URI it is given; mlci reads that variable as the user's setting,
    so a server mlci started must not become "the user's" for a later stage or a child."""
    from mlci.clients import mlflow as mlflow_client
    from mlci.settings import MlflowSettings

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_client.connect(mlflow_server, MlflowSettings())
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://users-own.example:5000")
    mlflow_client.connect(mlflow_server.replace("127.0.0.1", "localhost"), MlflowSettings())
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://users-own.example:5000"
