import json
import subprocess
import sys

import pytest

import wine_classifier
from wine_classifier.__main__ import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"wine-classifier {wine_classifier.__version__}"


def test_train_prints_metrics_json(capsys):
    assert main(["train", "--params", '{"n_estimators": 20, "seed": 3}']) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"accuracy", "f1_macro", "precision_macro", "recall_macro"}
    assert metrics["accuracy"] > 0.8


def test_train_defaults(capsys):
    assert main(["train", "--params", '{"estimator": "logistic_regression"}']) == 0
    assert json.loads(capsys.readouterr().out)["f1_macro"] >= 0.9


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--params", "{not json"], "--params is not valid JSON"),
        (["train", "--params", "[1, 2]"], "--params must be a JSON object"),
        (["train", "--params", '{"n_estimator": 5}'], "unknown hyper-parameter 'n_estimator'"),
        (["train", "--params", '{"C": -1}'], "hyper-parameter 'C'"),
        (["train", "--test-size", "2"], "test_size"),
    ],
)
def test_train_errors(capsys, argv, fragment):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("wine-classifier: error: ")
    assert fragment in captured.err
    assert "Traceback" not in captured.err


def test_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(["bogus"]) == 2
    assert "wine-classifier: error:" in capsys.readouterr().err


def test_module_entry_point_bad_json_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "wine_classifier", "train", "--params", "{"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("wine-classifier: error: ")
    assert "Traceback" not in proc.stderr


def test_module_entry_point_info():
    proc = subprocess.run(
        [sys.executable, "-m", "wine_classifier", "info"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("wine-classifier ")
