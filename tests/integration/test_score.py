"""`invoke score` against a real `mlflow server`: predictions, the drift report, the run.

One wine classifier is trained and promoted once for the module (as the pipeline does);
each test scores a batch of its own with it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlci import training
from mlci.errors import ConfigError, DataDrifted, StageFailed
from mlci.stages import score, train

from .conftest import invoke_model_task, make_context, train_and_promote

pytestmark = pytest.mark.integration

FAST = {"estimator": "random_forest", "n_estimators": 20, "seed": 42}


@dataclass(frozen=True)
class Trained:
    uri: str
    model: str
    version: str


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def _names(model: str) -> dict[str, str]:
    return {"mlflow.registered_model": model, "mlflow.experiment": model}


@pytest.fixture(scope="module")
def champion(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    model = f"score-{uuid.uuid4().hex[:8]}"
    trained, promoted, _ = train_and_promote(
        tmp_path_factory.mktemp("train"), mlflow_server, model, FAST
    )
    assert promoted.summary == f"champion -> v{trained.details['version']}"
    return Trained(mlflow_server, model, str(trained.details["version"]))


@pytest.fixture(scope="module")
def heldout() -> pd.DataFrame:
    """The wine classifier's held-out inputs: data like the training data, never trained on."""
    from wine_classifier import load_split

    split = load_split()
    return pd.DataFrame(split.X_test, columns=list(split.feature_names))


def _score(tmp_path: Path, trained: Trained, batch: Path, version=None, **overrides):
    ctx, lines = make_context(
        tmp_path, **{"mlflow.tracking_uri": trained.uri, **_names(trained.model), **overrides}
    )
    with ctx:
        result = score.run(ctx, str(batch), version=version)
    return result, lines


def _scoring_runs(trained: Trained) -> list:
    client = _client(trained.uri)
    experiment = client.get_experiment_by_name(f"{trained.model}-scoring")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_the_champions_training_inputs_were_logged_as_the_reference(champion: Trained) -> None:
    from wine_classifier import load_split

    client = _client(champion.uri)
    mv = client.get_model_version(champion.model, champion.version)
    import mlflow.artifacts

    path = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id, artifact_path="reference/train_inputs.parquet",
        tracking_uri=champion.uri,
    )  # fmt: skip
    reference = pd.read_parquet(path)
    split = load_split()
    assert list(reference.columns) == list(split.feature_names)
    assert reference.to_numpy().tolist() == split.X_train.tolist()


def test_held_out_data_scores_with_no_drift_and_one_prediction_per_row(
    tmp_path: Path, champion: Trained, heldout: pd.DataFrame
) -> None:
    batch = tmp_path / "nightly.csv"
    heldout.to_csv(batch, index=False)
    result, lines = _score(tmp_path, champion, batch)

    folder = tmp_path / "reports" / "models" / "wine" / "score"
    predictions = pd.read_csv(folder / "nightly.predictions.csv")
    assert len(predictions) == len(heldout)
    assert list(predictions.columns) == [*heldout.columns, "prediction"]
    assert set(predictions["prediction"]) <= {0, 1, 2}
    pd.testing.assert_frame_equal(predictions[list(heldout.columns)], heldout)

    report = json.loads((folder / "nightly.drift.json").read_text())
    print(f"\nmeasured drift score, held-out (unshifted) batch: {report['drift_score']:.4f}")
    assert report["drift_score"] < 0.5  # score.drift_threshold's default
    assert report["reference"].startswith("training inputs")
    assert report["version"] == champion.version and report["rows"] == len(heldout)
    assert set(report["features"]) == set(heldout.columns)
    assert (folder / "nightly.drift.png").read_bytes().startswith(b"\x89PNG")
    assert result.status == "passed"
    assert result.details["drift_score"] == report["drift_score"]

    (run,) = [r for r in _scoring_runs(champion) if r.info.run_id == result.details["run_id"]]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlci.outcome"] == "passed"
    assert run.data.params["registered_model"] == champion.model
    assert run.data.params["version"] == champion.version
    assert run.data.params["input"] == "nightly.csv"
    assert run.data.params["input_sha256"] == report["input_sha256"]
    assert run.data.params["rows"] == str(len(heldout))
    assert run.data.metrics["drift_score"] == pytest.approx(report["drift_score"])
    assert run.data.metrics["rows"] == len(heldout)
    artifacts = {a.path for a in _client(champion.uri).list_artifacts(run.info.run_id, "drift")}
    assert artifacts == {"drift/nightly.drift.json", "drift/nightly.drift.png"}
    assert any(f"with {champion.model} v{champion.version} (the champion)" in line
               for line in lines)  # fmt: skip


def test_a_shifted_batch_trips_the_threshold_and_keeps_the_evidence(
    tmp_path: Path, champion: Trained, heldout: pd.DataFrame
) -> None:
    shifted = heldout + 3 * heldout.std()
    batch = tmp_path / "shifted.parquet"
    shifted.to_parquet(batch, index=False)

    proc = invoke_model_task(["score", "--input", str(batch)], champion.uri, champion.model,
                             tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "DataDrifted: shifted.parquet: drift score" in proc.stderr
    assert "above score.drift_threshold 0.5" in proc.stderr
    assert "Traceback" not in proc.stderr

    folder = tmp_path / "reports" / "models" / "wine" / "score"
    report = json.loads((folder / "shifted.drift.json").read_text())
    print(f"\nmeasured drift score, batch shifted by 3 std: {report['drift_score']:.4f}")
    assert report["drift_score"] > 0.5
    assert report["outcome"] == "drifted"
    assert len(pd.read_csv(folder / "shifted.predictions.csv")) == len(shifted)
    # The task ran with the model's own experiment name: its runs go to <experiment>-scoring.
    assert report["experiment"] == "wine-classifier-scoring"
    run = _client(champion.uri).get_run(report["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlci.outcome"] == "drifted"
    assert run.data.params["input"] == "shifted.parquet"
    assert run.data.metrics["drift_score"] == pytest.approx(report["drift_score"])
    assert run.data.metrics["drifted_features"] == len(report["drifted_features"])


def test_the_threshold_decides_on_the_share_of_drifted_features(
    tmp_path: Path, champion: Trained, heldout: pd.DataFrame
) -> None:
    # 13 features, score.drift_threshold 0.5: 6 moved (0.46) pass, 7 moved (0.54) fail.
    def moved(count: int) -> Path:
        batch = heldout.copy()
        columns = list(batch.columns[:count])
        batch[columns] = batch[columns] + 3 * batch[columns].std()
        path = tmp_path / f"moved{count}.csv"
        batch.to_csv(path, index=False)
        return path

    passed, _ = _score(tmp_path, champion, moved(6))
    assert passed.details["drift_score"] == pytest.approx(6 / 13)
    assert passed.details["outcome"] == "passed"
    with pytest.raises(DataDrifted) as info:
        _score(tmp_path, champion, moved(7))
    assert info.value.what == (
        f"moved7.csv: drift score {7 / 13:.3f} is above score.drift_threshold 0.5"
    )
    assert info.value.why.startswith("7 of 13 features drifted from the training inputs")
    assert "moved7.drift.png" in info.value.fix
    # a looser threshold lets the same batch pass
    loose, _ = _score(tmp_path, champion, moved(7), **{"score.drift_threshold": 0.6})
    assert loose.status == "passed"


def test_a_pinned_version_is_scored_and_unknown_ones_are_refused(
    tmp_path: Path, champion: Trained, heldout: pd.DataFrame
) -> None:
    batch = tmp_path / "pinned.csv"
    heldout.head(10).to_csv(batch, index=False)
    result, lines = _score(tmp_path, champion, batch, version=f"v{champion.version}")
    assert result.details["version"] == champion.version
    assert result.details["version_chosen"] == "pinned"
    assert any("pinned by --version" in line for line in lines)
    before = len(_scoring_runs(champion))
    with pytest.raises(StageFailed) as info:
        _score(tmp_path, champion, batch, version="99")
    assert info.value.what == f"{champion.model} has no version 99"
    assert f"v{champion.version}" in info.value.why
    assert "score with the champion" in info.value.fix
    assert len(_scoring_runs(champion)) == before


def test_no_champion_is_a_clear_error(tmp_path: Path, mlflow_server: str, heldout) -> None:
    model = f"unpromoted-{uuid.uuid4().hex[:8]}"
    ctx, _ = make_context(
        tmp_path / "train", **{"mlflow.tracking_uri": mlflow_server, **_names(model),
                               "model.params": FAST},
    )  # fmt: skip
    with ctx:
        train.run(ctx)
    batch = tmp_path / "b.csv"
    heldout.to_csv(batch, index=False)
    with pytest.raises(StageFailed) as info:
        _score(tmp_path, Trained(mlflow_server, model, "1"), batch)
    assert info.value.what == f"{model} has no alias 'champion'"
    assert "invoke promote" in info.value.fix


def test_a_version_without_training_inputs_falls_back_to_its_held_out_data(
    tmp_path: Path, mlflow_server: str, heldout: pd.DataFrame, monkeypatch
) -> None:
    # As a version trained before mlci logged the reference.
    monkeypatch.setattr(training, "log_train_inputs", lambda result: None)
    model = f"older-{uuid.uuid4().hex[:8]}"
    _, promoted, _ = train_and_promote(tmp_path / "train", mlflow_server, model, FAST)
    monkeypatch.undo()
    assert promoted.summary == "champion -> v1"
    batch = tmp_path / "older.csv"
    heldout.to_csv(batch, index=False)
    result, lines = _score(tmp_path, Trained(mlflow_server, model, "1"), batch)
    assert result.details["reference"].startswith("held-out inputs (heldout/heldout.csv; fallback")
    assert any("comparing with its held-out inputs" in line for line in lines)
    # the batch is the held-out data itself: nothing moved
    assert result.details["drift_score"] == 0.0


@pytest.mark.parametrize(
    ("name", "write", "what"),
    [
        ("missing.csv", None, "the batch {path} cannot be read"),
        ("batch.txt", lambda p, f: f.to_csv(p, index=False), "the batch {path} is neither CSV"),
        ("empty.csv", lambda p, f: p.write_bytes(b""), "the batch {path} is empty"),
        ("header.csv", lambda p, f: f.head(0).to_csv(p, index=False), "the batch {path} has no"),
        ("broken.parquet", lambda p, f: p.write_text("a,b\n1,2\n"), "not a readable Parquet"),
        (
            "columns.csv",
            lambda p, f: f.drop(columns=["hue"]).assign(colour=1.0).to_csv(p, index=False),
            "the batch columns.csv does not have the model's input columns: missing hue; "
            "unexpected colour",
        ),
        (
            "types.csv",
            lambda p, f: f.assign(hue="high").to_csv(p, index=False),
            "the batch's values do not fit the model's signature",
        ),
    ],
)
def test_bad_batches_are_clear_errors_and_log_no_run(
    tmp_path: Path, champion: Trained, heldout: pd.DataFrame, name, write, what
) -> None:
    path = tmp_path / name
    if write is not None:
        write(path, heldout)
    before = len(_scoring_runs(champion))
    with pytest.raises(ConfigError) as info:
        _score(tmp_path, champion, path)
    assert what.format(path=path) in info.value.what
    assert "--input" in info.value.fix
    assert len(_scoring_runs(champion)) == before
    folder = tmp_path / "reports" / "models" / "wine" / "score"
    assert not folder.exists() or not any(folder.iterdir())


def test_the_task_scores_score_input_without_a_flag(tmp_path: Path, champion: Trained) -> None:
    """This repository's score.input: the example batch of the wine data set (a project
    without one gets the "no batch to score" error: see the bad-input corpus)."""
    proc = invoke_model_task(["score"], champion.uri, champion.model, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "score: batch.csv (45 rows)" in proc.stderr + proc.stdout
    written = tmp_path / "reports" / "models" / "wine" / "score" / "batch.predictions.csv"
    assert len(written.read_text().splitlines()) == 46  # the header and one line per row
