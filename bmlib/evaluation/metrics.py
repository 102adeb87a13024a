"""Binary classification metrics per fold and their summaries across folds.

Conventions (written once, used everywhere in :mod:`bmlib.evaluation`):

- ``y_true`` is 1 for the **positive class (patients)** and 0 for controls.
- ``y_score`` is a continuous score that grows with the belief in "patient". The predicted label
  is ``y_score > threshold`` (strictly greater, as in scikit-learn's ``predict``). Probabilities
  use ``threshold=0.5``; decision functions and logits (what every model in
  :mod:`bmlib.evaluation.models` returns) use ``threshold=0.0``.
- sensitivity = TP / (TP + FN) (recall of patients), specificity = TN / (TN + FP) (recall of
  controls), PPV = TP / (TP + FP). The original BrainMass code swapped the confusion-matrix
  arguments and reported PPV as sensitivity; the tests here pin the orientation against
  ``sklearn.metrics.recall_score(pos_label=1)`` and ``recall_score(pos_label=0)``.
- A metric that is undefined on a fold (ROC AUC, sensitivity or specificity when the fold holds a
  single class, F1 with no positives at all) is ``NaN``, never a silent 0; :func:`summarize`
  ignores NaN and reports how many folds were used in ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["METRICS", "compute_metrics", "summarize", "format_ci"]

#: Metrics reported for every fold, in display order.
METRICS: tuple[str, ...] = (
    "roc_auc",
    "balanced_accuracy",
    "accuracy",
    "sensitivity",
    "specificity",
    "f1",
    "ppv",
)

#: Columns that identify a result row, in the order used by :func:`summarize` (those present).
_ID_COLUMNS: tuple[str, ...] = (
    "task",
    "kind",
    "model",
    "representation",
    "method",
    "protocol",
    "k",
    "metric",
)


def _as_binary_labels(y_true: np.ndarray | Sequence[int]) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"expected 1D y_true (n_samples,), got shape {y.shape}")
    if y.size == 0:
        raise ValueError("expected at least one sample, got an empty y_true")
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(
            f"expected y_true in {{0, 1}} (1 = patient / positive class), got values {values.tolist()}"
        )
    return y.astype(np.int64)


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney estimate of the ROC AUC (ties count 1/2), NaN when one class is absent."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)  # average ranks handle ties exactly like roc_auc_score
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def compute_metrics(
    y_true: np.ndarray | Sequence[int],
    y_score: np.ndarray | Sequence[float],
    *,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Binary metrics of one fold, with patients as the positive class.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples,)
        1 = patient (positive class), 0 = control.
    y_score : array-like of float, shape (n_samples,)
        Higher means "more likely patient". Predicted label = ``y_score > threshold``.
    threshold : float, default=0.5
        0.5 for probabilities; pass 0.0 for decision functions / logits.

    Returns
    -------
    dict of str to float
        ``roc_auc, balanced_accuracy, accuracy, sensitivity, specificity, f1, ppv`` and the
        counts ``tp, fn, tn, fp`` (as floats). Undefined metrics are NaN (see module notes).

    Examples
    --------
    >>> m = compute_metrics([1, 1, 0, 0], [0.9, 0.2, 0.1, 0.6])
    >>> m["sensitivity"], m["specificity"], m["roc_auc"]
    (0.5, 0.5, 0.75)
    """
    y = _as_binary_labels(y_true)
    score = np.asarray(y_score, dtype=np.float64)
    if score.shape != y.shape:
        raise ValueError(f"expected y_score of shape {y.shape} like y_true, got shape {score.shape}")
    if not np.isfinite(score).all():
        raise ValueError(f"expected finite y_score, got {int((~np.isfinite(score)).sum())} non-finite values")
    pred = score > threshold
    pos = y == 1
    tp = float(np.sum(pred & pos))
    fn = float(np.sum(~pred & pos))
    tn = float(np.sum(~pred & ~pos))
    fp = float(np.sum(pred & ~pos))
    sensitivity = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    balanced = float("nan") if np.isnan(sensitivity) or np.isnan(specificity) else (sensitivity + specificity) / 2
    return {
        "roc_auc": _roc_auc(y, score),
        "balanced_accuracy": balanced,
        "accuracy": (tp + tn) / y.size,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "ppv": _ratio(tp, tp + fp),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


def summarize(
    per_fold: pd.DataFrame,
    *,
    by: Sequence[str] | None = None,
    confidence: float = 0.95,
    method: str = "t",
) -> pd.DataFrame:
    """Mean, standard deviation and confidence interval of a metric across folds.

    Parameters
    ----------
    per_fold : DataFrame
        Tidy results with a ``value`` column and one row per (fold, metric, ...).
    by : sequence of str, optional
        Grouping columns. Default: those of ``task, kind, model, representation, method,
        protocol, k, metric`` that are present.
    confidence : float, default=0.95
        Coverage of the interval.
    method : {"t", "corrected"}, default="t"
        ``"t"``: mean +- t_{n-1} * std / sqrt(n) over the n folds (all repeats pooled). Folds of
        a cross-validation share training data, so they are **not independent** and this
        interval is optimistic; read it as a description of fold-to-fold spread.
        ``"corrected"``: the corrected resampled t interval of Nadeau & Bengio (2003),
        variance factor ``1/n + n_test/n_train`` (needs ``n_train`` and ``n_test`` columns).

    Returns
    -------
    DataFrame
        One row per group: ``n`` (folds with a defined value), ``mean``, ``std`` (ddof=1),
        ``sem``, ``ci_low``, ``ci_high``. With n == 1 the spread columns are NaN.
    """
    if not isinstance(per_fold, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(per_fold).__name__}")
    if "value" not in per_fold.columns:
        raise ValueError(f"expected a 'value' column, got columns {list(per_fold.columns)}")
    if not 0 < confidence < 1:
        raise ValueError(f"expected 0 < confidence < 1, got {confidence}")
    if method not in ("t", "corrected"):
        raise ValueError(f"expected method 't' or 'corrected', got {method!r}")
    if method == "corrected" and not {"n_train", "n_test"} <= set(per_fold.columns):
        raise ValueError("method='corrected' needs 'n_train' and 'n_test' columns")
    keys = list(by) if by is not None else [c for c in _ID_COLUMNS if c in per_fold.columns]
    missing = [c for c in keys if c not in per_fold.columns]
    if missing:
        raise ValueError(f"grouping columns {missing} not in per_fold columns {list(per_fold.columns)}")
    rows = []
    data = per_fold.dropna(subset=["value"])
    grouped = data.groupby(keys, sort=False, dropna=False) if keys else [((), data)]
    for key, grp in grouped:
        values = grp["value"].to_numpy(dtype=np.float64)
        n = values.size
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if n > 1 else float("nan")
        if method == "corrected" and n > 1:
            ratio = float(np.mean(grp["n_test"].to_numpy(float) / grp["n_train"].to_numpy(float)))
            sem = float(np.sqrt((1.0 / n + ratio) * std**2))
        else:
            sem = std / np.sqrt(n) if n > 1 else float("nan")
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sem) if n > 1 else float("nan")
        key = key if isinstance(key, tuple) else (key,)
        # every metric here lives in [0, 1]: a t interval past the bounds is clipped to them
        rows.append({**dict(zip(keys, key, strict=True)), "n": n, "mean": mean, "std": std, "sem": sem,
                     "ci_low": max(mean - half, 0.0), "ci_high": min(mean + half, 1.0)})
    columns = [*keys, "n", "mean", "std", "sem", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def format_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """Format ``mean [low, high]`` for tables; NaN bounds give just the mean.

    >>> format_ci(0.81234, 0.75, 0.875)
    '0.812 [0.750, 0.875]'
    """
    if np.isnan(mean):
        return "n/a"
    if np.isnan(low) or np.isnan(high):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
