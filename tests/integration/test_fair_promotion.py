"""Promotion judged on the same rows, with the models themselves, against a real server.

A lower-is-better model (the diabetes regressor, rmse) is kept and then replaced; the
champion, trained on other data, is re-scored on each candidate's held-out split; and a
candidate that does not load from the registry is refused with nothing changed.
"""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest

from mlci.errors import ModelRejected
from mlci.reports import read_json
from mlci.stages import promote, train

from .conftest import make_context, train_and_promote

pytestmark = pytest.mark.integration

REGRESSION = {
    "model.module": "diabetes_regressor",
    "model.package": "packages/diabetes-regressor",
    "promotion.primary_metric": "rmse",
    "promotion.directions": {"rmse": "lower", "mae": "lower"},
    "promotion.min": {"r2": 0.3},
    "promotion.max": {"rmse": 70.0},
    "promotion.max_regression": {"mae": 3.0},
}


def _round(tmp_path, uri, model, params):
    _, result, lines = train_and_promote(tmp_path, uri, model, params, of="diabetes", **REGRESSION)
    return result, read_json(REPORTS(tmp_path) / "promote.json", "promote"), lines


def REPORTS(tmp_path):
    return tmp_path / "reports" / "models" / "diabetes"


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def test_a_lower_is_better_model_is_kept_then_replaced_on_the_same_rows(tmp_path, mlflow_server):
    model = f"diabetes-{uuid.uuid4().hex[:8]}"
    # v1, trained on 30 % of another split (seed 7: older data), becomes champion.
    first, _, _ = _round(
        tmp_path / "1",
        mlflow_server,
        model,
        {"estimator": "ridge", "train_fraction": 0.3, "seed": 7},
    )
    assert first.summary == "champion -> v1"

    # v2, a small forest on all of seed 42's training rows. Against v1's logged rmse (from
    # v1's own split) it would win; scored on the same held-out rows, v1 is better: kept.
    kept, report, lines = _round(
        tmp_path / "2",
        mlflow_server,
        model,
        {"estimator": "random_forest", "n_estimators": 10, "max_depth": 2},
    )
    assert kept.summary == "champion stays v1", "\n".join(lines)
    assert report["compared"] == "candidate and champion scored on the candidate's held-out data"
    assert any("the champion was trained on other data" in line for line in lines)
    header, _, *rows = report["table"]
    assert header.split()[:5] == ["metric", "candidate", "champion", "champion", "(logged)"]
    rmse = next(r.split() for r in rows if r.startswith("rmse") and "< champion" in r)
    candidate, rescored, logged, verdict = float(rmse[1]), float(rmse[2]), float(rmse[3]), rmse[-1]
    assert verdict == "FAIL"
    assert rescored < candidate < logged  # the logged figure would have let v2 through
    assert "differs" in next(r for r in rows if r.startswith("data "))

    # The champion's figure is v1 scored with the package's own score() on v2's rows.
    import mlflow.pyfunc
    import pandas as pd

    from diabetes_regressor import load_split, score

    split = load_split(seed=42)
    v1 = mlflow.pyfunc.load_model(f"models:/{model}/1")
    on_v2_rows = pd.DataFrame(split.X_test, columns=list(split.feature_names))
    assert rescored == pytest.approx(score(split.y_test, v1.predict(on_v2_rows))["rmse"], abs=1e-4)

    # v3: ridge on all rows beats v1 on the same rows: replaced.
    replaced, report, lines = _round(
        tmp_path / "3", mlflow_server, model, {"estimator": "ridge", "alpha": 0.5}
    )
    assert replaced.summary == "champion -> v3", "\n".join(lines)
    assert _client(mlflow_server).get_model_version_by_alias(model, "champion").version == "3"
    print("\n".join(["kept:", *kept.details["table"], "replaced:", *report["table"]]))


VANISHING = textwrap.dedent(
    """
    import numpy as np
    from diabetes_regressor import train_and_evaluate as _train


    class Shifted:
        def __init__(self, inner):
            self.inner = inner

        def predict(self, x):
            return self.inner.predict(np.asarray(x)) + 0.0


    def train_and_evaluate(params):
        result = _train({"estimator": "ridge", "alpha": 0.1})
        result.model = Shifted(result.model)
        result.flavor = "pyfunc"
        return result
    """
)


def test_a_candidate_that_does_not_load_never_becomes_champion(
    tmp_path, mlflow_server, monkeypatch
):
    model = f"unloadable-{uuid.uuid4().hex[:8]}"
    first, _, _ = _round(tmp_path / "1", mlflow_server, model, {"estimator": "ridge"})
    assert first.summary == "champion -> v1"

    # A model whose class lives in code that is gone when it is loaded: it pickles by
    # reference, so the registered version cannot be loaded by serving either.
    code = tmp_path / "code"
    code.mkdir()
    (code / "vanishing_model.py").write_text(VANISHING)
    monkeypatch.syspath_prepend(str(code))
    ctx, _ = make_context(
        tmp_path / "2",
        model="diabetes",
        **{
            "mlflow.tracking_uri": mlflow_server,
            "mlflow.registered_model": model,
            "mlflow.experiment": model,
            **REGRESSION,
            "model.module": "vanishing_model",
        },
    )
    client = _client(mlflow_server)
    with ctx:
        trained = train.run(ctx)
        version = trained.details["version"]
        (code / "vanishing_model.py").unlink()
        sys.modules.pop("vanishing_model", None)
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(code)])
        before = dict(client.get_model_version(model, version).tags)
        with pytest.raises(ModelRejected) as info:
            promote.run(ctx)
    assert info.value.what == f"{model} v{version} does not load from the registry"
    assert "ModuleNotFoundError" in info.value.why and "vanishing_model" in info.value.why
    # Nothing changed: the champion, the candidate's tags, no lease left behind.
    assert client.get_model_version_by_alias(model, "champion").version == "1"
    assert dict(client.get_model_version(model, version).tags) == before
    assert (REPORTS(tmp_path / "2") / "train.json").is_file()  # the right folder, and
    assert not (REPORTS(tmp_path / "2") / "promote.json").exists()  # no decision written
    print(info.value.render())
