"""Result plots for the benchmark notebook (matplotlib / seaborn, headless-safe).

Every function takes ``axes=None`` (a new figure is made when absent), returns the axes it drew
on, never calls ``plt.show()`` and saves only when given ``output_file``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from sklearn.metrics import roc_curve

from bmlib._io import atomic_path

__all__ = ["plot_few_shot", "plot_results", "plot_roc_curves", "plot_zero_shot"]

_CHANCE = {"roc_auc": 0.5, "balanced_accuracy": 0.5}
_LABELS = {
    "roc_auc": "ROC AUC",
    "balanced_accuracy": "balanced accuracy",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "f1": "F1",
    "ppv": "PPV",
}


def _axes(axes: Axes | None, size: tuple[float, float]) -> Axes:
    if axes is None:
        _, axes = plt.subplots(figsize=size)
    return axes


def _save(axes: Axes, output_file: str | os.PathLike[str] | None) -> None:
    if output_file is not None:
        with atomic_path(output_file) as tmp:
            axes.figure.savefig(tmp, dpi=150, bbox_inches="tight")


def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a {what} DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"expected a {what} table with columns {list(columns)}; missing {missing}")


def _pick(df: pd.DataFrame, column: str, value: str | None, what: str) -> tuple[pd.DataFrame, str]:
    values = list(dict.fromkeys(df[column].astype(str).tolist()))
    if value is None:
        if len(values) != 1:
            raise ValueError(f"the {what} holds several {column}s {values}; pass {column}=")
        value = values[0]
    if value not in values:
        raise ValueError(f"{column} {value!r} not in the {what}; expected one of {values}")
    return df[df[column].astype(str).to_numpy() == value], value


def plot_results(
    summary: pd.DataFrame,
    *,
    metric: str = "roc_auc",
    protocol: str | None = None,
    models: Sequence[str] | None = None,
    axes: Axes | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Axes:
    """Grouped bars of a metric's mean per task (and protocol) and model, with 95% CI error bars.

    Parameters
    ----------
    summary : DataFrame
        ``BenchmarkResult.summary`` (task, model, protocol, metric, mean, ci_low, ci_high).
    metric : str, default="roc_auc"
    protocol : str, optional
        Only this protocol (default: all, one group per task x protocol).
    models : sequence of str, optional
        Models and their order (default: all, in table order).
    axes : matplotlib Axes, optional
    output_file : path, optional
        Save the figure (format from the extension).

    Returns
    -------
    matplotlib Axes
    """
    _need(summary, ("task", "model", "protocol", "metric", "mean", "ci_low", "ci_high"), "summary")
    s = summary[summary["metric"].to_numpy() == metric]
    if protocol is not None:
        s = s[s["protocol"].astype(str).to_numpy() == protocol]
    if models is not None:
        s = s[s["model"].isin(list(models))]
    if s.empty:
        raise ValueError(f"no rows for metric {metric!r} (protocol {protocol!r}) in the summary")
    s = s.assign(group=s["task"].astype(str) + (" / " + s["protocol"].astype(str)
                                                 if s["protocol"].nunique() > 1 else ""))
    groups = list(dict.fromkeys(s["group"]))
    names = list(models) if models is not None else list(dict.fromkeys(s["model"]))
    names = [m for m in names if m in set(s["model"])]
    ax = _axes(axes, (max(6.0, 1.2 * len(groups) * max(1, len(names)) / 3), 4.0))
    colors = sns.color_palette("tab10", len(names))
    width = 0.8 / len(names)
    x = np.arange(len(groups))
    for i, (model, color) in enumerate(zip(names, colors, strict=True)):
        rows = s[s["model"].to_numpy() == model].set_index("group").reindex(groups)
        mean = rows["mean"].to_numpy(float)
        err = np.vstack([mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean])
        err = np.where(np.isfinite(err), err, 0.0)
        ax.bar(x + (i - (len(names) - 1) / 2) * width, mean, width, yerr=err, capsize=2, color=color, label=model)
    if metric in _CHANCE:
        ax.axhline(_CHANCE[metric], color="0.4", ls="--", lw=1, label="chance")
    ax.set_xticks(x, groups, rotation=0 if len(groups) < 4 else 30, ha="center" if len(groups) < 4 else "right")
    ax.set_ylabel(f"{_LABELS.get(metric, metric)} (mean, 95% CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=2, loc="lower right", frameon=False)
    _save(ax, output_file)
    return ax


def plot_roc_curves(
    predictions: pd.DataFrame,
    *,
    task: str | None = None,
    protocol: str | None = None,
    models: Sequence[str] | None = None,
    axes: Axes | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Axes:
    """Mean ROC curve per model over folds (vertical averaging at fixed FPR), +- 1 std band.

    Parameters
    ----------
    predictions : DataFrame
        ``BenchmarkResult.predictions`` (task, model, protocol, repeat, fold, y_true, score).
    task, protocol : str, optional
        Required when the table holds several.
    models : sequence of str, optional
    axes : matplotlib Axes, optional
    output_file : path, optional

    Returns
    -------
    matplotlib Axes
        The legend gives each model's mean per-fold AUC. Folds with a single class are skipped.
    """
    _need(predictions, ("task", "model", "protocol", "repeat", "fold", "y_true", "score"), "predictions")
    p, task = _pick(predictions, "task", task, "predictions")
    p, protocol = _pick(p, "protocol", protocol, "predictions")
    names = list(models) if models is not None else list(dict.fromkeys(p["model"]))
    ax = _axes(axes, (5.0, 5.0))
    grid = np.linspace(0, 1, 101)
    for model, color in zip(names, sns.color_palette("tab10", len(names)), strict=True):
        m = p[p["model"].to_numpy() == model]
        if m.empty:
            raise ValueError(f"model {model!r} has no predictions for task {task!r} / {protocol!r}")
        tprs, aucs = [], []
        for _, f in m.groupby(["repeat", "fold"]):
            y, sc = f["y_true"].to_numpy(), f["score"].to_numpy(float)
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, sc)
            tprs.append(np.interp(grid, fpr, tpr))
            tprs[-1][0] = 0.0
            aucs.append(float(np.trapezoid(tpr, fpr)))
        if not tprs:
            continue
        mean, std = np.mean(tprs, axis=0), np.std(tprs, axis=0)
        mean[-1] = 1.0
        ax.plot(grid, mean, color=color, lw=1.5, label=f"{model} (AUC {np.mean(aucs):.2f})")
        ax.fill_between(grid, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color=color, alpha=0.12)
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title(f"{task} ({protocol})")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    _save(ax, output_file)
    return ax


def plot_few_shot(
    summary: pd.DataFrame,
    *,
    task: str | None = None,
    metric: str = "roc_auc",
    models: Sequence[str] | None = None,
    axes: Axes | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Axes:
    """Few-shot learning curves: metric mean (95% CI band over draws) vs k per class (log2 axis).

    Parameters
    ----------
    summary : DataFrame
        ``run_few_shot(...).summary`` (task, model, k, metric, mean, ci_low, ci_high).
    task : str, optional
        Required when the summary holds several tasks.
    metric : str, default="roc_auc"
    models : sequence of str, optional
    axes : matplotlib Axes, optional
    output_file : path, optional

    Returns
    -------
    matplotlib Axes
    """
    _need(summary, ("task", "model", "k", "metric", "mean", "ci_low", "ci_high"), "few-shot summary")
    s, task = _pick(summary, "task", task, "few-shot summary")
    s = s[s["metric"].to_numpy() == metric]
    if s.empty:
        raise ValueError(f"no rows for metric {metric!r} in the few-shot summary")
    names = list(models) if models is not None else list(dict.fromkeys(s["model"]))
    ax = _axes(axes, (6.0, 4.0))
    for model, color in zip(names, sns.color_palette("tab10", len(names)), strict=True):
        m = s[s["model"].to_numpy() == model].sort_values("k")
        k = m["k"].to_numpy(float)
        ax.plot(k, m["mean"].to_numpy(float), marker="o", ms=3, color=color, label=model)
        ax.fill_between(k, m["ci_low"].to_numpy(float), m["ci_high"].to_numpy(float), color=color, alpha=0.12)
    if metric in _CHANCE:
        ax.axhline(_CHANCE[metric], color="0.4", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ks = np.sort(s["k"].unique())
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.set_xlabel("labelled participants per class (k)")
    ax.set_ylabel(f"{_LABELS.get(metric, metric)} on the held-out set")
    ax.set_title(task)
    ax.legend(fontsize=7, ncol=2, frameon=False)
    _save(ax, output_file)
    return ax


def plot_zero_shot(
    summary: pd.DataFrame,
    *,
    metric: str = "roc_auc",
    axes: Axes | None = None,
    output_file: str | os.PathLike[str] | None = None,
) -> Axes:
    """Bars of the zero-shot metric per task and ``<method>:<representation>``, with 95% CI.

    Parameters
    ----------
    summary : DataFrame
        ``run_zero_shot(...).summary``.
    metric : str, default="roc_auc"
    axes : matplotlib Axes, optional
    output_file : path, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = plot_results(summary, metric=metric, protocol="zeroshot", axes=axes)
    ax.set_title("zero-shot: normative model of controls")
    _save(ax, output_file)
    return ax
