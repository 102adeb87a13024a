"""Result plots: return their axes, draw what the tables hold, save only when asked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from evaluation_toys import toy_cohort  # noqa: E402

from bmlib.evaluation import (  # noqa: E402
    plot_few_shot,
    plot_results,
    plot_roc_curves,
    plot_zero_shot,
    prepare_benchmark_data,
    run_benchmark,
    run_few_shot,
    run_zero_shot,
)


@pytest.fixture(scope="module")
def results():
    data = prepare_benchmark_data(toy_cohort(n_participants=12, n_rois=6, n_timepoints=40))
    bench = run_benchmark(data, models=["fc_logreg", "fc_svm"], n_splits=3, smoke=True)
    fs = run_few_shot(data, models=["fc_logreg"], ks=(1, 2), n_draws=2, test_fraction=0.34, smoke=True,
                      tasks=["planted"])
    zs = run_zero_shot(data, n_repeats=2)
    return bench, fs, zs


def test_plot_results(results, tmp_path) -> None:
    bench, _, _ = results
    ax = plot_results(bench.summary, metric="roc_auc", protocol="kfold")
    bars = [p for p in ax.patches]
    assert len(bars) == 2 * 2  # 2 tasks x 2 models
    want = bench.summary.query("metric == 'roc_auc' and protocol == 'kfold'")["mean"].to_numpy()
    assert sorted(round(b.get_height(), 6) for b in bars) == sorted(np.round(want, 6))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["planted", "null"]
    plt.close(ax.figure)
    fig, axes = plt.subplots(1, 2)
    out = plot_results(bench.summary, metric="balanced_accuracy", axes=axes[1], output_file=tmp_path / "bars.png")
    assert out is axes[1] and (tmp_path / "bars.png").stat().st_size > 0
    assert len({t.get_text() for t in out.get_xticklabels()}) == 4  # task x protocol groups
    plt.close(fig)
    with pytest.raises(ValueError, match="no rows for metric 'auc'"):
        plot_results(bench.summary, metric="auc")
    with pytest.raises(ValueError, match="missing"):
        plot_results(bench.summary.drop(columns="ci_low"))


def test_plot_roc_curves(results, tmp_path) -> None:
    bench, _, _ = results
    ax = plot_roc_curves(bench.predictions, task="planted", protocol="kfold", output_file=tmp_path / "roc.svg")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("fc_logreg (AUC ") and len(labels) == 2
    x, y = ax.get_lines()[0].get_data()
    assert y[0] == 0.0 and y[-1] == 1.0 and np.all(np.diff(y) >= -1e-12)
    assert (tmp_path / "roc.svg").is_file()
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="several tasks"):
        plot_roc_curves(bench.predictions)


def test_plot_few_and_zero_shot(results) -> None:
    _, fs, zs = results
    ax = plot_few_shot(fs.summary, metric="roc_auc")
    assert ax.get_xscale() == "log" and len(ax.get_lines()) >= 1
    x, _ = ax.get_lines()[0].get_data()
    assert list(x) == [1.0, 2.0]
    plt.close(ax.figure)
    ax = plot_zero_shot(zs.summary)
    assert len(ax.patches) == 2 * 2  # 2 tasks x (mahalanobis, knn) on raw FC
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="missing"):
        plot_few_shot(pd.DataFrame({"task": ["a"]}))
