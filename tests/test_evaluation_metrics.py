"""Metrics against scikit-learn on hand-made cases, including the sensitivity/specificity orientation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from bmlib.evaluation.metrics import METRICS, compute_metrics, format_ci, summarize

# 6 patients, 4 controls; TP=5, FN=1, TN=1, FP=3: sensitivity 5/6, specificity 1/4, PPV 5/8.
Y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.2, 0.3, 0.65, 0.75, 0.52])


def test_orientation_by_hand() -> None:
    m = compute_metrics(Y, S)
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (5, 1, 1, 3)
    assert m["sensitivity"] == pytest.approx(5 / 6)
    assert m["specificity"] == pytest.approx(1 / 4)
    assert m["ppv"] == pytest.approx(5 / 8)  # the value the original code reported as "sensitivity"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40)
    y[:2] = [0, 1]
    score = rng.normal(size=40) + y * 0.8
    score[5] = score[6]  # a tie
    pred = (score > 0.0).astype(int)
    m = compute_metrics(y, score, threshold=0.0)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, pos_label=1))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert set(METRICS) <= set(m)


def test_threshold_is_strict_and_movable() -> None:
    y = np.array([1, 0, 1, 0])
    score = np.array([0.5, 0.5, 0.9, 0.1])
    assert compute_metrics(y, score, threshold=0.5)["sensitivity"] == 0.5  # 0.5 is not > 0.5
    assert compute_metrics(y, score, threshold=0.4)["specificity"] == 0.5


def test_undefined_metrics_are_nan_not_zero() -> None:
    m = compute_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert np.isnan(m["roc_auc"]) and np.isnan(m["sensitivity"]) and np.isnan(m["balanced_accuracy"])
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_input_errors() -> None:
    with pytest.raises(ValueError, match=r"expected y_true in \{0, 1\}"):
        compute_metrics([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"expected y_score of shape \(3,\)"):
        compute_metrics([1, 0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="expected finite y_score"):
        compute_metrics([1, 0], [np.nan, 0.2])
    with pytest.raises(ValueError, match="expected 1D y_true"):
        compute_metrics([[1, 0]], [[0.1, 0.2]])


def test_summarize_t_interval_and_nan() -> None:
    df = pd.DataFrame(
        {
            "model": ["a"] * 4 + ["b"] * 2,
            "metric": "roc_auc",
            "value": [0.6, 0.7, 0.8, np.nan, 0.5, 0.9],
        }
    )
    s = summarize(df).set_index("model")
    lo, hi = stats.t.interval(0.95, 2, loc=0.7, scale=0.1 / np.sqrt(3))
    assert s.loc["a", "n"] == 3  # the NaN fold is not counted
    assert s.loc["a", "mean"] == pytest.approx(0.7)
    assert s.loc["a", "std"] == pytest.approx(0.1)
    assert (s.loc["a", "ci_low"], s.loc["a", "ci_high"]) == pytest.approx((lo, hi))
    assert s.loc["b", "mean"] == pytest.approx(0.7)


def test_summarize_corrected_is_wider() -> None:
    df = pd.DataFrame({"metric": "acc", "value": [0.6, 0.7, 0.8, 0.75, 0.65], "n_train": 80, "n_test": 20})
    t = summarize(df).iloc[0]
    c = summarize(df, method="corrected").iloc[0]
    assert c["sem"] == pytest.approx(np.sqrt((1 / 5 + 20 / 80)) * t["std"])
    assert c["ci_high"] - c["ci_low"] > t["ci_high"] - t["ci_low"]


def test_summarize_errors() -> None:
    with pytest.raises(ValueError, match="expected a 'value' column"):
        summarize(pd.DataFrame({"metric": ["a"]}))
    with pytest.raises(ValueError, match="needs 'n_train' and 'n_test'"):
        summarize(pd.DataFrame({"metric": ["a"], "value": [1.0]}), method="corrected")
    with pytest.raises(ValueError, match="expected method"):
        summarize(pd.DataFrame({"metric": ["a"], "value": [1.0]}), method="bootstrap")


def test_format_ci() -> None:
    assert format_ci(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"
    assert format_ci(0.5, np.nan, np.nan) == "0.500"
    assert format_ci(np.nan, np.nan, np.nan) == "n/a"
