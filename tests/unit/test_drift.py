"""Drift of a batch from the reference: statistics, the KS test per feature, the score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlci import drift
from mlci.errors import ConfigError

COLUMNS = ["alcohol", "ash", "hue"]


@pytest.fixture
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(rng.normal([13.0, 2.4, 0.95], [0.8, 0.3, 0.2], (150, 3)), columns=COLUMNS)


def test_identical_samples_have_drift_score_zero(reference):
    report = drift.compare(reference, reference.copy(), p_value=0.01)
    assert report.score == 0.0
    assert report.drifted == []
    assert len(report.tested) == 3
    for feature in report.features:
        assert feature.statistic == 0.0 and feature.p_value == 1.0
        assert feature.reference == feature.batch
        assert feature.reference.count == 150 and feature.reference.missing_share == 0.0


def test_a_feature_shifted_by_three_standard_deviations_has_drifted(reference):
    batch = reference.sample(60, random_state=1).reset_index(drop=True)
    batch["ash"] = batch["ash"] + 3 * reference["ash"].std()
    report = drift.compare(reference, batch, p_value=0.01)
    assert report.drifted == ["ash"]
    assert report.score == pytest.approx(1 / 3)
    ash = {f.name: f for f in report.features}["ash"]
    assert ash.p_value < 1e-10 and ash.statistic > 0.9
    assert ash.batch.mean == pytest.approx(batch["ash"].mean())
    # every feature shifted: everything drifted
    shifted = reference + 3 * reference.std()
    assert drift.compare(reference, shifted, p_value=0.01).score == 1.0


def test_the_p_value_setting_decides(reference):
    batch = reference.copy()
    batch["hue"] = batch["hue"] + 0.35 * reference["hue"].std()
    p = {f.name: f.p_value for f in drift.compare(reference, batch, 0.01).features}["hue"]
    assert drift.compare(reference, batch, p_value=p * 0.5).drifted == []
    assert drift.compare(reference, batch, p_value=p * 2).drifted == ["hue"]


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        (["alcohol", "ash"], "missing hue"),
        (["alcohol", "ash", "hue", "colour"], "unexpected colour"),
        (["alcohol", "hue", "proline"], "missing ash; unexpected proline"),
    ],
)
def test_missing_or_extra_columns_are_a_clear_error(reference, columns, named):
    batch = pd.DataFrame(np.zeros((5, len(columns))), columns=columns)
    with pytest.raises(ConfigError) as info:
        drift.compare(reference, batch, p_value=0.01, source="the batch new.csv")
    assert info.value.what == (
        f"the batch new.csv does not have the model's input columns: {named}"
    )
    assert "alcohol, ash, hue" in info.value.why


def test_missing_values_are_counted_and_left_out_of_the_test(reference):
    batch = reference.copy()
    batch.loc[:29, "alcohol"] = np.nan
    batch["hue"] = np.nan
    report = drift.compare(reference, batch, p_value=0.01)
    features = {f.name: f for f in report.features}
    assert features["alcohol"].batch.missing_share == pytest.approx(30 / 150)
    assert features["alcohol"].batch.count == 150
    assert not features["alcohol"].drifted  # the remaining values are the reference's own
    # a column with no values at all where training had them has drifted
    assert features["hue"].drifted and features["hue"].note == "no values in the batch"
    assert features["hue"].batch.mean is None
    assert report.drifted == ["hue"]


def test_non_numeric_features_are_described_but_not_tested(reference):
    reference = reference.assign(region=["north", "south", "east"] * 50)
    batch = reference.assign(region="west")
    report = drift.compare(reference, batch, p_value=0.01)
    region = {f.name: f for f in report.features}["region"]
    assert (region.tested, region.drifted, region.note) == (False, False, "not numeric: not tested")
    assert len(report.tested) == 3 and report.score == 0.0


def test_the_report_is_plain_json(reference):
    batch = reference.copy()
    batch["ash"] = np.nan
    report = drift.compare(reference, batch, p_value=0.01)
    document = drift.report_dict(report)
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert document["drift_score"] == pytest.approx(1 / 3)
    assert document["drifted_features"] == ["ash"]
    assert document["features"]["ash"]["batch"]["mean"] is None
    assert document["features"]["hue"]["p_value"] == 1.0
    assert (document["reference_rows"], document["batch_rows"]) == (150, 150)


def test_the_png_is_drawn_without_a_display(reference):
    batch = reference + 3 * reference.std()
    report = drift.compare(reference, batch, p_value=0.01)
    png = drift.draw_png(report, reference, batch, "wine v3: new.csv")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # the same report draws the same bytes (no timestamp in the file)
    assert drift.draw_png(report, reference, batch, "wine v3: new.csv") == png
