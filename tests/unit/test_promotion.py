"""promotion.decide: thresholds and the champion comparison, as a pure function."""

from __future__ import annotations

import math

import pytest

from mlci.promotion import FAIL, PASS, Row, decide
from mlci.settings import PromotionSettings

POLICY = PromotionSettings(primary_metric="f1_macro", min={"f1_macro": 0.85, "accuracy": 0.85})
GOOD = {"f1_macro": 0.91, "accuracy": 0.92}


def _row(decision, metric, threshold_startswith=""):
    rows = [r for r in decision.rows if r.metric == metric]
    if threshold_startswith:
        rows = [r for r in rows if r.threshold.startswith(threshold_startswith)]
    assert len(rows) == 1, decision.rows
    return rows[0]


def test_no_champion_and_thresholds_met_promotes():
    d = decide(GOOD, None, POLICY, candidate_version="1")
    assert d.promote is True
    assert d.meets_thresholds is True
    assert d.reason == "no champion yet and thresholds met"
    assert d.rows == (
        Row("accuracy", 0.92, None, ">= 0.85", PASS),
        Row("f1_macro", 0.91, None, ">= 0.85", PASS),
        Row("f1_macro", 0.91, None, "no champion yet", PASS),
    )


def test_no_champion_and_below_minimum_does_not_promote():
    d = decide({"f1_macro": 0.90, "accuracy": 0.80}, None, POLICY, candidate_version="1")
    assert d.promote is False
    assert d.meets_thresholds is False
    assert d.reason == "accuracy 0.8000 < 0.85"
    assert _row(d, "accuracy") == Row("accuracy", 0.80, None, ">= 0.85", FAIL)
    assert _row(d, "f1_macro", ">=").verdict == PASS


def test_a_value_equal_to_the_minimum_meets_it():
    d = decide({"f1_macro": 0.85, "accuracy": 0.85}, None, POLICY)
    assert d.meets_thresholds is True
    assert d.promote is True


def test_minimum_metric_not_logged():
    d = decide({"f1_macro": 0.9}, None, POLICY)
    assert d.promote is False
    assert d.meets_thresholds is False
    assert d.reason == "accuracy was not logged"
    assert _row(d, "accuracy") == Row("accuracy", None, None, ">= 0.85", FAIL)


def test_every_failure_is_in_the_reason():
    d = decide({"f1_macro": 0.5}, None, POLICY)
    assert d.reason == "accuracy was not logged; f1_macro 0.5000 < 0.85"


def test_better_candidate_promotes_and_rows_carry_both_values():
    champion = {"f1_macro": 0.90, "accuracy": 0.95}
    d = decide(GOOD, champion, POLICY, candidate_version="4", champion_version="3")
    assert d.promote is True
    assert d.meets_thresholds is True
    assert d.reason == "f1_macro beats the champion (v3)"
    assert _row(d, "f1_macro", "> champion") == Row("f1_macro", 0.91, 0.90, "> champion", PASS)
    # threshold rows show the champion's value beside the candidate's
    assert _row(d, "accuracy") == Row("accuracy", 0.92, 0.95, ">= 0.85", PASS)


@pytest.mark.parametrize("champion_f1", [0.91, 0.95])
def test_equal_or_worse_candidate_does_not_promote(champion_f1):
    champion = {"f1_macro": champion_f1, "accuracy": 0.9}
    d = decide(GOOD, champion, POLICY, candidate_version="4", champion_version="3")
    assert d.promote is False
    assert d.meets_thresholds is True
    assert "f1_macro" in d.reason
    assert "v3" in d.reason
    assert d.reason == (f"f1_macro 0.9100 does not beat the champion (v3) {champion_f1:.4f}")
    assert _row(d, "f1_macro", "> champion").verdict == FAIL


def test_alias_name_is_used_in_reasons():
    policy = PromotionSettings(primary_metric="f1_macro", alias="production")
    d = decide({"f1_macro": 0.5}, None, policy)
    assert d.reason == "no production yet and thresholds met"
    d = decide(
        {"f1_macro": 0.5}, {"f1_macro": 0.6}, policy, candidate_version="2", champion_version="1"
    )
    assert "does not beat the production (v1)" in d.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "verdict"),
    [(0.20, 0.30, True, PASS), (0.40, 0.30, False, FAIL), (0.30, 0.30, False, FAIL)],
)
def test_greater_is_better_false_flips_the_comparison(candidate, champion, promote, verdict):
    policy = PromotionSettings(primary_metric="log_loss", greater_is_better=False)
    d = decide(
        {"log_loss": candidate},
        {"log_loss": champion},
        policy,
        candidate_version="2",
        champion_version="1",
    )
    assert d.promote is promote
    assert d.meets_thresholds is True
    assert _row(d, "log_loss") == Row("log_loss", candidate, champion, "< champion", verdict)


def test_greater_is_better_true_does_not_promote_a_lower_loss():
    policy = PromotionSettings(primary_metric="log_loss", greater_is_better=True)
    d = decide(
        {"log_loss": 0.2}, {"log_loss": 0.3}, policy, candidate_version="2", champion_version="1"
    )
    assert d.promote is False


@pytest.mark.parametrize("champion", [None, {"f1_macro": 0.5}])
def test_missing_primary_metric_does_not_promote(champion):
    policy = PromotionSettings(primary_metric="f1_macro")
    d = decide({"accuracy": 0.99}, champion, policy, candidate_version="2", champion_version="1")
    assert d.promote is False
    assert d.meets_thresholds is False
    assert d.reason == "the primary metric f1_macro was not logged"
    assert d.rows[-1].metric == "f1_macro"
    assert d.rows[-1].candidate is None
    assert d.rows[-1].threshold == "logged"
    assert d.rows[-1].verdict == FAIL


def test_nan_primary_metric_is_not_met():
    d = decide({"f1_macro": math.nan, "accuracy": 0.9}, None, POLICY)
    assert d.promote is False
    assert d.meets_thresholds is False
    assert _row(d, "f1_macro", ">=").verdict == FAIL
    assert "f1_macro" in d.reason


def test_nan_threshold_metric_is_not_met_even_against_a_weak_champion():
    d = decide(
        {"f1_macro": 0.95, "accuracy": math.nan},
        {"f1_macro": 0.10, "accuracy": 0.10},
        POLICY,
        candidate_version="2",
        champion_version="1",
    )
    assert d.promote is False
    assert d.meets_thresholds is False
    assert _row(d, "accuracy").verdict == FAIL
    assert d.reason.startswith("accuracy nan < 0.85")
    # the comparison itself was won, and the rows say so
    assert _row(d, "f1_macro", "> champion").verdict == PASS


def test_same_version_as_champion_does_not_promote():
    d = decide(GOOD, GOOD, POLICY, candidate_version="3", champion_version="3")
    assert d.promote is False
    assert d.meets_thresholds is True
    assert d.reason == "v3 already is champion"
    assert _row(d, "f1_macro", "same") == Row("f1_macro", 0.91, 0.91, "same version", "-")


def test_champion_without_the_primary_metric_is_beaten():
    d = decide(GOOD, {"accuracy": 0.99}, POLICY, candidate_version="2", champion_version="1")
    assert d.promote is True
    assert _row(d, "f1_macro", "champion") == Row(
        "f1_macro", 0.91, None, "champion has no value", PASS
    )


def test_champion_with_nan_primary_metric_is_beaten():
    d = decide(GOOD, {"f1_macro": math.nan}, POLICY, candidate_version="2", champion_version="1")
    assert d.promote is True


def test_below_minimum_but_better_than_champion_does_not_promote():
    d = decide(
        {"f1_macro": 0.80, "accuracy": 0.9},
        {"f1_macro": 0.70},
        POLICY,
        candidate_version="2",
        champion_version="1",
    )
    assert d.promote is False
    assert d.meets_thresholds is False
    assert d.reason == "f1_macro 0.8000 < 0.85"


def test_no_thresholds_and_no_champion_promotes():
    d = decide({"f1_macro": 0.1}, None, PromotionSettings(primary_metric="f1_macro"))
    assert d.promote is True
    assert d.rows == (Row("f1_macro", 0.1, None, "no champion yet", PASS),)


def test_an_empty_champion_mapping_still_counts_as_a_champion():
    # A champion whose run has no metrics is a champion all the same (not "no champion yet").
    d = decide(GOOD, {}, POLICY, candidate_version="2", champion_version="1")
    assert d.promote is True
    assert d.reason == "f1_macro beats the champion (v1)"


# ---------------------------------------------------------------------------------------------
# per-metric direction: a loss beside an accuracy
# ---------------------------------------------------------------------------------------------

REGRESSION = PromotionSettings(
    primary_metric="rmse",
    directions={"rmse": "lower", "mae": "lower"},
    max={"rmse": 60.0},
    min={"r2": 0.3},
    max_regression={"mae": 2.0, "r2": 0.05},
)


def test_a_lower_is_better_primary_metric_is_beaten_by_a_lower_value():
    champion = {"rmse": 55.0, "mae": 44.0, "r2": 0.45}
    better = decide(
        {"rmse": 54.0, "mae": 44.5, "r2": 0.46},
        champion,
        REGRESSION,
        candidate_version="2",
        champion_version="1",
    )
    assert better.promote is True, better.reason
    assert _row(better, "rmse", "< c").verdict == PASS
    worse = decide(
        {"rmse": 56.0, "mae": 44.0, "r2": 0.45},
        champion,
        REGRESSION,
        candidate_version="2",
        champion_version="1",
    )
    assert worse.promote is False
    assert worse.meets_thresholds is True
    assert worse.reason == "rmse 56.0000 does not beat the champion (v1) 55.0000"


def test_max_bounds_a_lower_is_better_metric_from_above():
    d = decide({"rmse": 61.0, "r2": 0.5}, None, REGRESSION, candidate_version="1")
    assert d.promote is False
    assert _row(d, "rmse", "<=") == Row("rmse", 61.0, None, "<= 60", FAIL)
    assert d.reason == "rmse 61.0000 > 60"


def test_max_regression_measures_worsening_in_each_metrics_own_direction():
    champion = {"rmse": 55.0, "mae": 40.0, "r2": 0.50}
    # mae (lower is better) rises 3 > 2 allowed; r2 (higher is better) rises: no regression.
    d = decide(
        {"rmse": 50.0, "mae": 43.0, "r2": 0.60},
        champion,
        REGRESSION,
        candidate_version="2",
        champion_version="1",
    )
    assert _row(d, "mae") == Row("mae", 43.0, 40.0, "rise <= 2", FAIL)
    assert _row(d, "r2", "drop") == Row("r2", 0.60, 0.50, "drop <= 0.05", PASS)
    assert d.reason == "mae rises 3.0000 against the champion (allowed 2)"
    # the same mae falling by 3 is an improvement, not a regression
    d = decide(
        {"rmse": 50.0, "mae": 37.0, "r2": 0.50},
        champion,
        REGRESSION,
        candidate_version="2",
        champion_version="1",
    )
    assert d.promote is True, d.reason


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            PromotionSettings(
                primary_metric="rmse", directions={"rmse": "lower"}, min={"rmse": 50.0}
            ),
            "promotion.min sets a bound on rmse, a lower-is-better metric",
        ),
        (
            PromotionSettings(primary_metric="f1", max={"f1": 0.9}),
            "promotion.max sets a bound on f1, a higher-is-better metric",
        ),
    ],
)
def test_contradictory_thresholds_are_a_setting_to_fix(policy, message):
    from mlci.errors import ConfigError
    from mlci.promotion import check_policy

    with pytest.raises(ConfigError) as info:
        check_policy(policy)
    assert info.value.what.startswith(message)
    assert info.value.fix


def test_greater_is_better_false_alone_makes_the_primary_metric_lower_is_better():
    from mlci.promotion import LOWER, check_policy, direction

    policy = PromotionSettings(
        primary_metric="log_loss", greater_is_better=False, max={"log_loss": 0.5}
    )
    check_policy(policy)
    assert direction(policy, "log_loss") == LOWER
    assert direction(policy, "accuracy") == "higher"
