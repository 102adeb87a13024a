"""run_benchmark / run_few_shot / run_zero_shot end to end on tiny toy tasks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from evaluation_toys import toy_cohort

from bmlib.evaluation import (
    METRICS,
    NormativeModel,
    prepare_benchmark_data,
    run_benchmark,
    run_few_shot,
    run_zero_shot,
    task_samples,
    write_metrics,
)
from bmlib.model import BrainEncoder, encoder_config

R = 8


@pytest.fixture(scope="module")
def cohort():
    return toy_cohort(n_participants=12, n_sites=3, sessions=2, n_rois=R, n_timepoints=50, effect=1.0)


@pytest.fixture(scope="module")
def data(cohort, tmp_path_factory):
    torch.manual_seed(0)
    enc = BrainEncoder(encoder_config("tiny", R, dim=16, depth=1, heads=2, ffn_dim=32))
    return prepare_benchmark_data(cohort, checkpoint=enc, cache_dir=tmp_path_factory.mktemp("features"))


def test_prepare(data, cohort) -> None:
    assert set(data.tasks) == {"planted", "null"}
    n = len(cohort.manifest)
    assert data.inputs.fc.shape == (n, R, R)
    assert data.inputs.features["pretrained"].shape == (n, R * 8)  # concat read-out, 8 features per ROI
    assert not np.allclose(data.inputs.features["pretrained"], data.inputs.features["random"])
    assert len(data.identity["encoder_weights_sha256"]) == 64
    samples, inputs = data.task_inputs("null")
    assert samples["sample_id"].str.startswith("n").all() and len(inputs) == len(samples) == n // 2


def test_run_benchmark_smoke(data, tmp_path) -> None:
    models = ["fc_logreg", "probe_logreg", "random_probe", "brainnetcnn", "finetune"]
    res = run_benchmark(data, models=models, n_splits=3, seed=0, out_dir=tmp_path, smoke=True)
    pf = res.per_fold
    assert {"task", "kind", "model", "protocol", "repeat", "fold", "metric", "value", "n_train", "n_test"} <= set(pf)
    n_folds = {"kfold": 3, "loso": 3}
    assert len(pf) == 2 * sum(n_folds.values()) * len(models) * len(METRICS)
    assert pf["value"].dropna().between(0, 1).all()
    assert set(pf.loc[pf["task"] == "null", "kind"]) == {"external"}
    # every model was tested on exactly the same samples in every fold
    test_sets = res.predictions.groupby(["task", "protocol", "repeat", "fold", "model"])["sample_id"].apply(frozenset)
    assert test_sets.groupby(level=[0, 1, 2, 3]).nunique().eq(1).all()
    # the planted effect is found by the FC baseline and the summary holds CIs
    s = res.summary.set_index(["task", "protocol", "model", "metric"])
    assert s.loc[("planted", "kfold", "fc_logreg", "roc_auc"), "mean"] > 0.7
    assert s.loc[("planted", "kfold", "fc_logreg", "roc_auc"), "n"] == 3
    table = res.table()
    assert table.loc[("planted", "kfold", "fc_logreg"), "roc_auc"].count("[") == 1
    for stem in ("benchmark_per_fold", "benchmark_summary", "benchmark_predictions", "results"):
        assert (tmp_path / f"{stem}.csv").is_file() and (tmp_path / f"{stem}.parquet").is_file()
    back = pd.read_parquet(tmp_path / "benchmark_per_fold.parquet")
    assert len(back) == len(pf)
    assert json.loads((tmp_path / "benchmark_config.json").read_text())["models"] == models
    assert sorted(p.name for p in (tmp_path / "splits").glob("*.csv")) == [
        "null_kfold.csv", "null_loso.csv", "planted_kfold.csv", "planted_loso.csv"]


def test_splits_are_reused_and_guarded(data, tmp_path) -> None:
    kw = dict(models=["fc_logreg"], protocols=("kfold",), n_splits=3, n_repeats=2, out_dir=tmp_path,
              tasks=["planted"], smoke=True)
    first = run_benchmark(data, seed=1, **kw)
    path = tmp_path / "splits" / "planted_kfold.csv"
    stamp = path.stat().st_mtime_ns
    second = run_benchmark(data, seed=1, **kw)
    assert path.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first.splits["planted/kfold"], second.splits["planted/kfold"], check_dtype=False)
    timeless = [c for c in first.per_fold.columns if c != "fit_seconds"]
    pd.testing.assert_frame_equal(first.per_fold[timeless], second.per_fold[timeless])
    with pytest.raises(ValueError, match="was made with other settings or samples"):
        run_benchmark(data, seed=2, **kw)
    third = run_benchmark(data, seed=2, reuse_splits=False, **kw)
    assert not third.splits["planted/kfold"].equals(first.splits["planted/kfold"])


def test_few_shot(data, tmp_path) -> None:
    with pytest.warns(UserWarning, match="k=50 skipped"):
        res = run_few_shot(data, models=["fc_logreg", "probe_logreg"], ks=(1, 2, 50), n_draws=3,
                           test_fraction=0.34, out_dir=tmp_path, smoke=True, tasks=["planted"])
    assert any("k=50" in s for s in res.skipped)
    assert sorted(res.per_fold["k"].unique()) == [1, 2]
    assert res.per_fold.groupby(["k", "model"])["repeat"].nunique().eq(3).all()
    splits = res.splits["planted/fewshot"]
    test = splits[splits["role"] == "test"]
    train = splits[splits["role"] == "train"]
    assert not set(test["participant"]) & set(train["participant"])
    counts = train.groupby(["fold", "repeat", "label"])["participant"].nunique()
    assert (counts == counts.index.get_level_values("fold")).all()
    assert {"k", "model", "mean", "ci_low"} <= set(res.summary)
    assert (tmp_path / "few_shot_summary.csv").is_file()


def test_normative_model_planted_and_null() -> None:
    rng = np.random.default_rng(0)
    controls = rng.normal(size=(200, 30))
    held = rng.normal(size=(200, 30))
    shifted = rng.normal(size=(200, 30)) + np.r_[np.full(5, 2.5), np.zeros(25)]
    same = rng.normal(size=(200, 30))
    y = np.r_[np.zeros(200), np.ones(200)]
    from sklearn.metrics import roc_auc_score

    for method in ("mahalanobis", "knn"):
        nm = NormativeModel(method, n_components=30).fit(controls)
        assert roc_auc_score(y, nm.score(np.r_[held, shifted])) > 0.85
        assert abs(roc_auc_score(y, nm.score(np.r_[held, same])) - 0.5) < 0.08
        assert 0.85 < np.mean(nm.score(held) <= nm.threshold_) < 1.0  # ~95% of new controls pass
    with pytest.raises(ValueError, match="at least 3 controls"):
        NormativeModel().fit(controls[:2])
    with pytest.raises(ValueError, match="expected 30 features as in fit"):
        nm.score(controls[:, :3])
    with pytest.raises(ValueError, match="expected method in"):
        NormativeModel("svm")


def test_run_zero_shot(data, tmp_path) -> None:
    res = run_zero_shot(data, n_repeats=2, out_dir=tmp_path, tasks=["planted"])
    assert set(res.per_fold["representation"]) == {"pretrained", "random", "fc"}
    assert set(res.per_fold["method"]) == {"mahalanobis", "knn"}
    splits = res.splits["planted/zeroshot"]
    assert (splits.loc[splits["role"] == "train", "label"] == 0).all()
    assert (tmp_path / "zero_shot_per_fold.csv").is_file()


def test_zero_shot_finds_planted_effect_only() -> None:
    big = toy_cohort(seed=5, n_participants=60, n_sites=2, sessions=1, n_rois=6, n_timepoints=150, effect=1.5,
                     n_effect=3)
    prepared = prepare_benchmark_data(big)  # no encoder: raw FC only
    res = run_zero_shot(prepared, n_repeats=3, n_components=10)
    auc = res.summary.set_index(["task", "model", "metric"])["mean"]
    assert auc[("planted", "mahalanobis:fc", "roc_auc")] > 0.8
    assert auc[("planted", "knn:fc", "roc_auc")] > 0.8
    assert abs(auc[("null", "mahalanobis:fc", "roc_auc")] - 0.5) < 0.15


def test_write_metrics(data, tmp_path) -> None:
    bench = run_benchmark(data, models=["fc_logreg"], protocols=("kfold",), n_splits=3, tasks=["planted"], smoke=True)
    zs = run_zero_shot(data, n_repeats=2, representations=["fc"], methods=["knn"], tasks=["planted"])
    out = write_metrics(tmp_path / "m" / "metrics.json", benchmark=bench, zero_shot=zs, smoke=True)
    back = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert back == json.loads(json.dumps(out))
    cell = back["benchmark"]["planted"]["kfold"]["fc_logreg"]["roc_auc"]
    assert set(cell) == {"mean", "ci_low", "ci_high", "n"} and cell["n"] == 3
    assert "knn:fc" in back["zero_shot"]["planted"] and back["smoke"] is True


def test_errors(cohort, data) -> None:
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['nope'\]"):
        run_benchmark(data, tasks=["nope"])
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        run_benchmark(data, models=["nope"])
    with pytest.raises(ValueError, match="expected protocols among"):
        run_benchmark(data, protocols=("holdout",))
    with pytest.raises(ValueError, match="needs a pretrained encoder"):
        run_benchmark(cohort, models=["probe_logreg"], tasks=["planted"])
    with pytest.raises(TypeError, match="expected a curated-dataset folder"):
        run_benchmark(42)
    m = cohort.manifest
    with pytest.raises(ValueError, match="label column 'dx' not in the manifest"):
        task_samples(m, {"label_column": "dx"})
    with pytest.raises(ValueError, match="expected scans of both classes"):
        task_samples(m, {"positive": "patient", "negative": "nobody"})
    spec = {"datasets": ["toy"], "positive": ["patient"], "negative": ["control"]}
    assert task_samples(m, spec)["label"].sum() == 12
