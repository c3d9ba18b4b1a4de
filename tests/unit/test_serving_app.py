"""The serving slot's app (mlci.serving_app) on real tiny MLflow models, without a server.

Each model is a scikit-learn estimator saved with ``mlflow.sklearn.save_model``; the app is
called in-process through Starlette's test client, so no port is opened.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlci import serving_app


@pytest.fixture(autouse=True)
def _serving_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's scoring app marks the process as a serving environment in os.environ; give
    # the variable back as it was after each test.
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", raising=False)


@pytest.fixture(scope="module")
def frames():
    from sklearn.datasets import load_diabetes, load_iris

    iris = load_iris(as_frame=True)
    diabetes = load_diabetes(as_frame=True)
    return iris, diabetes


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory, frames) -> Path:
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    iris, _ = frames
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    path = tmp_path_factory.mktemp("classifier") / "model"
    mlflow.sklearn.save_model(model, path, input_example=iris.data.head(3))
    return path


@pytest.fixture(scope="module")
def regressor_dir(tmp_path_factory: pytest.TempPathFactory, frames) -> Path:
    import mlflow.sklearn
    from sklearn.linear_model import Ridge

    _, diabetes = frames
    model = Ridge().fit(diabetes.data, diabetes.target)
    path = tmp_path_factory.mktemp("regressor") / "model"
    mlflow.sklearn.save_model(model, path, input_example=diabetes.data.head(3))
    return path


def client_for(model_dir: Path, name: str, version: str, slot: str = "blue"):
    from fastapi.testclient import TestClient

    model = serving_app.load_model(str(model_dir))
    return TestClient(serving_app.build_app(model, name, version, slot))


def split(frame) -> dict:
    return {"dataframe_split": frame.to_dict(orient="split")}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` in a Prometheus text page, None if absent."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


def test_predictions_match_the_model_and_are_counted(classifier_dir: Path, frames) -> None:
    import mlflow.pyfunc

    iris, _ = frames
    rows = iris.data.iloc[::10]  # 15 rows, all three classes
    expected = mlflow.pyfunc.load_model(str(classifier_dir)).predict(rows).tolist()
    assert len(set(expected)) == 3

    with client_for(classifier_dir, "iris", "7") as client:
        answer = client.post("/invocations", json=split(rows))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}
        assert client.get("/ping").status_code == 200
        metrics = client.get("/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    page = metrics.text
    labels = {"model": "iris", "version": "7"}
    assert sample(page, "mlci_serving_requests_total", **labels, status="200") == 1
    assert sample(page, "mlci_serving_errors_total", **labels) == 0
    assert sample(page, "mlci_serving_request_seconds_count", **labels) == 1
    assert sample(page, "mlci_serving_request_seconds_sum", **labels) > 0
    for cls in {0, 1, 2}:
        assert sample(page, "mlci_serving_predictions_total", **labels, **{"class": str(cls)}) == (
            expected.count(cls)
        )
    assert sample(page, "mlci_serving_model_info", **labels, slot="blue") == 1
    # /ping and /metrics are not scoring requests.
    assert "/ping" not in page
    assert sample(page, "mlci_serving_prediction_value_count", **labels) in (None, 0)


def test_a_bad_payload_is_a_4xx_counted_as_an_error(classifier_dir: Path) -> None:
    with client_for(classifier_dir, "iris", "7", slot="green") as client:
        wrong_key = client.post("/invocations", json={"rows": [[1, 2, 3, 4]]})
        not_json = client.post(
            "/invocations", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        page = client.get("/metrics").text

    assert 400 <= wrong_key.status_code < 500, wrong_key.text
    assert 400 <= not_json.status_code < 500, not_json.text
    labels = {"model": "iris", "version": "7"}
    statuses = {str(wrong_key.status_code), str(not_json.status_code)}
    counted = sum(
        sample(page, "mlci_serving_requests_total", **labels, status=s) or 0 for s in statuses
    )
    assert counted == 2
    assert sample(page, "mlci_serving_requests_total", **labels, status="200") is None
    assert sample(page, "mlci_serving_errors_total", **labels) == 2
    assert sample(page, "mlci_serving_request_seconds_count", **labels) == 2
    assert "mlci_serving_predictions_total{" not in page
    assert sample(page, "mlci_serving_model_info", **labels, slot="green") == 1


def test_a_regressors_values_land_in_the_value_histogram(regressor_dir: Path, frames) -> None:
    import mlflow.pyfunc

    _, diabetes = frames
    rows = diabetes.data.head(12)
    expected = mlflow.pyfunc.load_model(str(regressor_dir)).predict(rows).tolist()

    with client_for(regressor_dir, "diabetes", "3") as client:
        answer = client.post("/invocations", json=split(rows))
        page = client.get("/metrics").text

    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == pytest.approx(expected)
    labels = {"model": "diabetes", "version": "3"}
    assert sample(page, "mlci_serving_prediction_value_count", **labels) == len(expected)
    assert sample(page, "mlci_serving_prediction_value_sum", **labels) == pytest.approx(
        sum(expected)
    )
    below = sum(value <= 100 for value in expected)
    assert sample(page, "mlci_serving_prediction_value_bucket", **labels, le="100.0") == below
    assert "mlci_serving_predictions_total{" not in page


def test_each_app_has_its_own_registry(classifier_dir: Path, frames) -> None:
    iris, _ = frames
    with (
        client_for(classifier_dir, "iris", "1") as first,
        client_for(classifier_dir, "iris", "2", slot="green") as second,
    ):
        first.post("/invocations", json=split(iris.data.head(2)))
        page = second.get("/metrics").text
    assert 'version="1"' not in page
    assert sample(page, "mlci_serving_model_info", model="iris", version="2", slot="green") == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"predictions": [1, 0, "setosa", true]}', [1, 0, "setosa", True]),
        (b'{"predictions": [[2], {"y": -1.5}]}', [2, -1.5]),
        (b'{"predictions": [[1, 2], {"a": 1, "b": 2}, null]}', []),
        (b'{"choices": []}', []),
        (b"not json", []),
        (b"", []),
    ],
)
def test_predictions_of_a_response(body: bytes, expected: list) -> None:
    assert serving_app.predictions_of(body) == expected


def test_a_folder_without_a_model_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = serving_app.main(
        ["--model-dir", str(tmp_path), "--model-name", "m", "--version", "1", "--slot", "blue"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("ConfigError: the model in ") and "MLmodel" in err
    assert "Traceback" not in err


def test_negative_values_count_in_the_lowest_bucket_and_the_sum() -> None:
    from prometheus_client import generate_latest

    metrics = serving_app.SlotMetrics("m", "1", "blue")
    metrics.observe(200, 0.01, b'{"predictions": [-2.5, 0.5, 120.0]}')
    page = generate_latest(metrics.registry).decode()
    labels = {"model": "m", "version": "1"}
    assert sample(page, "mlci_serving_prediction_value_bucket", **labels, le="0.0") == 1
    assert sample(page, "mlci_serving_prediction_value_bucket", **labels, le="250.0") == 3
    assert sample(page, "mlci_serving_prediction_value_sum", **labels) == 118.0
