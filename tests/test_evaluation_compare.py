"""Pretrained-vs-baseline tables from a hand-made benchmark summary."""

from __future__ import annotations

import pandas as pd
import pytest

from bmlib.evaluation.compare import model_matrix, pretraining_vs_baselines


def _summary() -> pd.DataFrame:
    rows = []
    values = {  # task -> model -> (mean, std)
        "ext_task": {"probe_logreg": (0.70, 0.05), "fc_logreg": (0.90, 0.02), "brainnetcnn": (0.60, 0.10)},
        "int_task": {"probe_logreg": (0.80, 0.03), "probe_svm": (0.85, 0.02), "fc_logreg": (0.70, 0.04)},
        "close_task": {"probe_svm": (0.71, 0.05), "tangent_logreg": (0.69, 0.04)},
    }
    kinds = {"ext_task": "external", "int_task": "internal", "close_task": "internal"}
    for task, models in values.items():
        for model, (mean, std) in models.items():
            for protocol, shift in (("kfold", 0.0), ("loso", -0.1)):
                rows.append({"task": task, "kind": kinds[task], "model": model, "protocol": protocol,
                             "metric": "roc_auc", "mean": mean + shift, "std": std, "n": 10})
            rows.append({"task": task, "kind": kinds[task], "model": model, "protocol": "kfold",
                         "metric": "accuracy", "mean": 0.5, "std": 0.1, "n": 10})
    return pd.DataFrame(rows)


def test_pretraining_vs_baselines_picks_the_best_of_each_side() -> None:
    table = pretraining_vs_baselines(_summary()).set_index("task")
    assert table.loc["int_task", "best_pretrained"] == "probe_svm" and table.loc["int_task", "best_baseline"] == "fc_logreg"
    assert table.loc["int_task", "difference"] == pytest.approx(0.15)
    assert table.loc["int_task", "verdict"] == "pretraining better"
    assert table.loc["ext_task", "best_baseline"] == "fc_logreg" and table.loc["ext_task", "verdict"] == "baseline better"
    assert table.loc["close_task", "verdict"] == "within fold spread"  # 0.02 apart, stds 0.05 / 0.04
    loso = pretraining_vs_baselines(_summary(), protocol="loso").set_index("task")
    assert loso.loc["int_task", "pretrained_mean"] == pytest.approx(0.75)


def test_model_matrix_groups_tasks_by_kind_and_formats_cells() -> None:
    wide = model_matrix(_summary())
    assert [k for k, _ in wide.index] == ["internal", "internal", "external"]
    assert list(wide.columns[:2]) == ["probe_logreg", "probe_svm"]  # pretrained models first
    assert wide.loc[("internal", "int_task"), "probe_svm"] == "0.850 ± 0.020"
    assert wide.loc[("internal", "close_task"), "probe_logreg"] == ""  # not run there


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="protocols"):
        pretraining_vs_baselines(_summary(), protocol="holdout")
    with pytest.raises(ValueError, match="missing"):
        model_matrix(_summary().drop(columns=["std"]))
    only_baselines = _summary()[~_summary()["model"].str.startswith("probe")]
    with pytest.raises(ValueError, match="both pretrained models"):
        pretraining_vs_baselines(only_baselines)
    with pytest.raises(TypeError, match="DataFrame"):
        model_matrix([1, 2])
