"""train + register + promote against a real `mlflow server` process."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from mlci.errors import ModelRejected
from mlci.reports import read_json
from mlci.stages import train

from .conftest import REPO_ROOT, make_context, train_and_promote

pytestmark = pytest.mark.integration

WEAK = {"estimator": "random_forest", "n_estimators": 1, "max_depth": 1, "seed": 3}
STRONG = {"estimator": "random_forest", "n_estimators": 200, "seed": 42}


def _version(folder):
    from mlci.lineage import package_metadata

    return package_metadata(REPO_ROOT / folder)[1]


def _champion(uri, model):
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(model, "champion")


def test_train_logs_run_model_and_lineage(tmp_path, mlflow_server):
    from mlflow import MlflowClient

    model = f"lineage-{uuid.uuid4().hex[:8]}"
    ctx, _ = make_context(
        tmp_path,
        **{
            "mlflow.tracking_uri": mlflow_server,
            "mlflow.registered_model": model,
            "mlflow.experiment": model,
            "model.params": STRONG,
        },
    )
    with ctx:
        result = train.run(ctx)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    report = read_json(tmp_path / "reports" / "models" / "wine" / "train.json", "train")
    run = client.get_run(report["run_id"])
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()

    assert run.info.status == "FINISHED"
    assert run.data.tags["mlci.git_sha"] == head
    assert run.data.tags["mlci.data_hash"].startswith("sha256:")
    assert run.data.tags["mlci.package"] == "wine-classifier"
    assert run.data.tags["mlci.package_version"] == _version("packages/wine-classifier")
    assert run.data.params["n_estimators"] == "200"
    assert run.data.metrics["f1_macro"] >= 0.9
    version = client.get_model_version(model, result.details["version"])
    assert version.run_id == run.info.run_id
    assert version.tags["mlci.git_sha"] == head
    assert version.tags["mlci.data_hash"] == run.data.tags["mlci.data_hash"]

    # The registered model loads back with its signature and predicts one class per row.
    import mlflow.pyfunc
    import pandas as pd
    from sklearn.datasets import load_wine

    loaded = mlflow.pyfunc.load_model(f"models:/{model}/{version.version}")
    assert loaded.metadata.signature is not None
    data = load_wine()
    rows = pd.DataFrame(data.data[:4], columns=data.feature_names)
    assert len(loaded.predict(rows)) == 4


def test_worse_model_never_takes_champion_and_better_one_does(tmp_path, mlflow_server):
    model = f"race-{uuid.uuid4().hex[:8]}"
    no_minimum = {"promotion.min": {}}

    _, first, _ = train_and_promote(tmp_path / "1", mlflow_server, model, WEAK, **no_minimum)
    assert first.summary == "champion -> v1"  # no champion yet: the first version takes it

    _, second, _ = train_and_promote(tmp_path / "2", mlflow_server, model, STRONG, **no_minimum)
    assert second.summary == "champion -> v2"
    assert _champion(mlflow_server, model).version == "2"

    _, third, lines = train_and_promote(tmp_path / "3", mlflow_server, model, WEAK, **no_minimum)
    assert third.summary == "champion stays v2"
    assert any("does not beat the champion (v2)" in line for line in lines)
    assert _champion(mlflow_server, model).version == "2"


def test_candidate_below_minimum_is_rejected_and_alias_stays(tmp_path, mlflow_server):
    model = f"min-{uuid.uuid4().hex[:8]}"
    train_and_promote(tmp_path / "1", mlflow_server, model, STRONG)
    with pytest.raises(ModelRejected, match="does not meet the promotion thresholds"):
        train_and_promote(
            tmp_path / "2", mlflow_server, model, WEAK, **{"promotion.min": {"f1_macro": 0.99}}
        )
    assert _champion(mlflow_server, model).version == "1"


def test_dry_run_decides_but_moves_nothing(tmp_path, mlflow_server):
    model = f"dry-{uuid.uuid4().hex[:8]}"
    no_minimum = {"promotion.min": {}}
    train_and_promote(tmp_path / "1", mlflow_server, model, WEAK, **no_minimum)
    _, result, _ = train_and_promote(
        tmp_path / "2",
        mlflow_server,
        model,
        STRONG,
        **no_minimum,
        **{"promotion.mode": "dry-run"},
    )
    assert result.summary == "dry-run: would move champion -> v2"
    assert _champion(mlflow_server, model).version == "1"


def test_pytorch_variant_logs_a_loadable_model_with_its_device(tmp_path, mlflow_server):
    pytest.importorskip("torch", reason="no CPU build of torch installed (see .ci/provision)")
    from mlflow import MlflowClient

    model = f"mlp-{uuid.uuid4().hex[:8]}"
    ctx, _ = make_context(
        tmp_path,
        **{
            "mlflow.tracking_uri": mlflow_server,
            "mlflow.registered_model": model,
            "mlflow.experiment": model,
            "model.params": {"estimator": "mlp_torch", "epochs": 60, "seed": 7},
        },
    )
    with ctx:
        result = train.run(ctx)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    run = client.get_run(result.details["run_id"])
    assert run.data.tags["mlci.device"] == "cpu"
    # per-epoch metrics arrived as a history, sent in few requests
    history = client.get_metric_history(run.info.run_id, "loss")
    assert len(history) == 60
    assert result.details["logging"]["requests"] < 5
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/confusion_matrix.png", "report/feature_importance.png"} <= artifacts

    import mlflow.pyfunc
    import pandas as pd
    from sklearn.datasets import load_wine

    loaded = mlflow.pyfunc.load_model(f"models:/{model}/{result.details['version']}")
    data = load_wine()
    predictions = loaded.predict(pd.DataFrame(data.data[:6], columns=data.feature_names))
    assert len(predictions) == 6
