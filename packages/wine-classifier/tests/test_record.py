import json
from importlib import resources

import wine_classifier
from wine_classifier.__main__ import main


def _record_path():
    return resources.files("wine_classifier").joinpath("model_record.json")


def test_no_record_in_a_source_checkout(monkeypatch, tmp_path):
    path = _record_path()
    if path.is_file():  # a release wrote one into this checkout: hide it for this test
        monkeypatch.setattr("wine_classifier.record.resources.files", lambda _pkg: tmp_path)
    assert wine_classifier.model_record() is None


def test_record_is_read_and_shown_by_info(monkeypatch, tmp_path, capsys):
    record = {"registered_model": "wine-classifier", "version": "7", "run_id": "abc123"}
    (tmp_path / "model_record.json").write_text(json.dumps(record))
    monkeypatch.setattr("wine_classifier.record.resources.files", lambda _pkg: tmp_path)

    assert wine_classifier.model_record() == record
    assert main(["info"]) == 0
    assert "model: wine-classifier v7 (run abc123)" in capsys.readouterr().out
