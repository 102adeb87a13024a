"""Pretrained models against baselines: the tables a results section reports.

Both functions read the tidy ``summary`` of :func:`bmlib.evaluation.run_benchmark` (one row
per task x protocol x model x metric with ``mean``, ``std``, ``ci_low``, ``ci_high``, ``n``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bmlib.evaluation.models import MODEL_NAMES

__all__ = ["PRETRAINED_MODELS", "model_matrix", "pretraining_vs_baselines"]

#: Models that use the pretrained encoder's weights; every other model is a baseline.
PRETRAINED_MODELS: tuple[str, ...] = ("probe_logreg", "probe_svm", "finetune", "finetune_last")

_REQUIRED = ("task", "model", "protocol", "metric", "mean", "std")


def _select(summary: pd.DataFrame, metric: str, protocol: str) -> pd.DataFrame:
    if not isinstance(summary, pd.DataFrame):
        raise TypeError(f"expected the benchmark summary DataFrame, got {type(summary).__name__}")
    missing = [c for c in _REQUIRED if c not in summary.columns]
    if missing:
        raise ValueError(f"expected a benchmark summary with columns {list(_REQUIRED)}; missing {missing}")
    rows = summary[(summary["metric"] == metric) & (summary["protocol"] == protocol)]
    if rows.empty:
        raise ValueError(
            f"no rows for metric={metric!r} and protocol={protocol!r}; the summary has metrics "
            f"{sorted(summary['metric'].unique())} and protocols {sorted(summary['protocol'].unique())}"
        )
    return rows


def _kind(rows: pd.DataFrame) -> pd.Series:
    if "kind" in rows.columns:
        return rows.groupby("task", sort=False)["kind"].first()
    return pd.Series("", index=rows["task"].unique())


def model_matrix(
    summary: pd.DataFrame,
    *,
    metric: str = "roc_auc",
    protocol: str = "kfold",
    models: Sequence[str] | None = None,
    digits: int = 3,
) -> pd.DataFrame:
    """Every model on every task: ``mean ± std`` over folds, tasks grouped by kind.

    Parameters
    ----------
    summary : pandas.DataFrame
        ``BenchmarkResult.summary``.
    metric : str, default="roc_auc"
    protocol : str, default="kfold"
        ``"kfold"`` (participant-grouped, repeated) or ``"loso"``.
    models : sequence of str, optional
        Column order (default: pretrained models first, then baselines, as in
        :data:`bmlib.evaluation.models.MODEL_NAMES`).
    digits : int, default=3

    Returns
    -------
    pandas.DataFrame
        Index ``(kind, task)`` (internal tasks first), one column per model, cells
        ``"0.812 ± 0.041"``; a model not run on a task is empty.
    """
    rows = _select(summary, metric, protocol)
    present = list(dict.fromkeys(rows["model"]))
    order = [m for m in (models or [*PRETRAINED_MODELS, *MODEL_NAMES]) if m in present]
    order = list(dict.fromkeys(order + ([] if models else [m for m in present if m not in order])))
    cells = rows.assign(cell=[f"{m:.{digits}f} ± {s:.{digits}f}" if np.isfinite(m) else "n/a"
                              for m, s in zip(rows["mean"], rows["std"].fillna(0.0), strict=True)])  # fmt: skip
    wide = cells.pivot_table(index="task", columns="model", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=order).fillna("")
    kinds = _kind(rows)
    wide.index = pd.MultiIndex.from_arrays([kinds.reindex(wide.index).to_numpy(), wide.index], names=["kind", "task"])
    rank = {"internal": 0, "external": 1}
    return wide.iloc[sorted(range(len(wide)), key=lambda i: rank.get(wide.index[i][0], 2))]


def pretraining_vs_baselines(
    summary: pd.DataFrame,
    *,
    metric: str = "roc_auc",
    protocol: str = "kfold",
    pretrained: Sequence[str] = PRETRAINED_MODELS,
) -> pd.DataFrame:
    """Per task: the best pretrained model against the strongest baseline.

    A baseline is every model that does not use the pretrained weights (FC + logistic
    regression / SVM, tangent space, BrainNetCNN, the encoder from scratch, the frozen random
    encoder). The verdict compares means and says when the gap is smaller than the fold-to-fold
    spread (the larger of the two stds), in which case neither is clearly better.

    Parameters
    ----------
    summary : pandas.DataFrame
        ``BenchmarkResult.summary``.
    metric : str, default="roc_auc"
    protocol : str, default="kfold"
    pretrained : sequence of str
        Which models count as pretrained.

    Returns
    -------
    pandas.DataFrame
        One row per task: ``kind``, ``best_pretrained``, ``pretrained_mean``,
        ``pretrained_std``, ``best_baseline``, ``baseline_mean``, ``baseline_std``,
        ``difference`` (pretrained - baseline) and ``verdict``.
    """
    rows = _select(summary, metric, protocol)
    kinds = _kind(rows)
    out = []
    for task, group in rows.groupby("task", sort=False):
        pre = group[group["model"].isin(list(pretrained))].dropna(subset=["mean"])
        base = group[~group["model"].isin(list(pretrained))].dropna(subset=["mean"])
        if pre.empty or base.empty:
            continue
        p = pre.loc[pre["mean"].idxmax()]
        b = base.loc[base["mean"].idxmax()]
        diff = float(p["mean"] - b["mean"])
        spread = float(np.nanmax([p["std"], b["std"], 0.0]))
        if abs(diff) < spread:
            verdict = "within fold spread"
        else:
            verdict = "pretraining better" if diff > 0 else "baseline better"
        out.append({"task": task, "kind": kinds.get(task, ""), "best_pretrained": p["model"],
                    "pretrained_mean": float(p["mean"]), "pretrained_std": float(p["std"]),
                    "best_baseline": b["model"], "baseline_mean": float(b["mean"]),
                    "baseline_std": float(b["std"]), "difference": diff, "verdict": verdict})  # fmt: skip
    if not out:
        raise ValueError(f"the summary needs both pretrained models {list(pretrained)} and baselines for {metric!r}")
    return pd.DataFrame(out)
