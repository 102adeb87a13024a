"""Tests for bmlib.data.synthetic: the embedded synthetic cohorts and their planted truth."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from bmlib.data.atlases import load_atlas, load_reference_fc
from bmlib.data.synthetic import (
    CohortModel,
    DatasetSpec,
    PlantedEffect,
    SiteSpec,
    SyntheticData,
    TaskConfig,
    TaskSpec,
    ar1_coefficient,
    combine,
    default_pretraining_datasets,
    default_task_configs,
    make_default_synthetic,
    make_diagnosis_task,
    make_diagnosis_tasks,
    make_positive_definite,
    make_pretraining_corpus,
    max_effect_size,
    simulate_bold,
    simulate_dataset,
)

IU = np.triu_indices(100, 1)
PHENO_COLUMNS = ["sample_id", "participant", "dataset", "site", "session", "diagnosis", "age",
                 "sex", "tr", "n_timepoints"]  # fmt: skip


def _fc(series: list[np.ndarray]) -> np.ndarray:
    """Plain Pearson FC per scan, (N, R, R) (one BLAS thread: small products, busy cores)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return np.stack([np.corrcoef(x.T.astype(np.float64)) for x in series])


def _task(
    name: str, effect: PlantedEffect, n: int = 60, n_timepoints: int = 200, **site_kw: float
) -> TaskConfig:
    """A one-site, one-session task with n participants, half of them patients."""
    site = SiteSpec(f"{name}-1", tr=1.0, n_timepoints=n_timepoints, **site_kw)
    dataset = DatasetSpec(name, (site,), (n,), (1.0,), patient_fraction=(0.5,))
    return TaskConfig(name, dataset, effect)


@pytest.fixture(scope="module")
def smoke() -> SyntheticData:
    return make_default_synthetic(seed=0, smoke=True)


# ---------------------------------------------------------------------------------- contract


def test_smoke_follows_the_contract(smoke: SyntheticData) -> None:
    ph = smoke.phenotypes
    assert 200 <= len(smoke) <= 500 and len(smoke.series) == len(ph)
    assert list(ph.columns) == PHENO_COLUMNS and smoke.atlas_name == "schaefer100_7"
    assert all(x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 100 for x in smoke.series)
    np.testing.assert_array_equal([len(x) for x in smoke.series], ph["n_timepoints"].to_numpy())
    assert ph["sample_id"].is_unique
    assert ph.groupby("participant")["dataset"].nunique().max() == 1  # unique across datasets
    assert set(ph["diagnosis"].to_numpy()) == {"control", "patient", "unlabeled"}
    assert set(ph["sex"].to_numpy()) == {"F", "M"}
    assert ph["session"].dtype == np.int64 and ph["session"].max() >= 2
    assert ph["tr"].between(0.72, 2.5).all() and ph["n_timepoints"].between(120, 400).all()
    assert ph.groupby("site")["tr"].nunique().max() == 1 and ph["tr"].nunique() >= 5
    assert set(smoke.sites["site"]) == set(ph["site"])


def test_tasks_internal_and_external(smoke: SyntheticData) -> None:
    ph = smoke.phenotypes
    pre = set(smoke.pretraining_datasets)
    assert len(smoke.tasks) >= 5
    kinds = {name: t.kind for name, t in smoke.tasks.items()}
    assert sum(k == "external" for k in kinds.values()) >= 2
    assert sum(k == "internal" for k in kinds.values()) >= 3
    corpus_sites = set(ph["site"].to_numpy()[smoke.pretraining_indices()])
    for name, task in smoke.tasks.items():
        assert task.kind == ("internal" if set(task.datasets) <= pre else "external")
        idx = smoke.task_indices(name)
        task_sites = set(ph["site"].to_numpy()[idx])
        assert 2 <= len(task_sites) <= 4
        if task.kind == "external":
            assert not set(task.datasets) & pre and not task_sites & corpus_sites
        dx = ph["diagnosis"].to_numpy()[idx]
        assert set(dx) == {"control", "patient"}
        first = ph.iloc[idx].drop_duplicates("participant")
        assert 0.4 <= (first["diagnosis"].to_numpy() == "patient").mean() <= 0.6, name
    # the pretraining corpus holds no external scans and every unlabelled scan
    unl = np.flatnonzero(ph["diagnosis"].to_numpy() == "unlabeled")
    assert set(unl) <= set(smoke.pretraining_indices())


def test_ground_truth_is_complete_and_json_serialisable(smoke: SyntheticData) -> None:
    atlas = load_atlas("schaefer100_7")
    for name, task in smoke.tasks.items():
        d = json.loads(json.dumps(task.to_dict()))
        assert TaskSpec.from_dict(d) == task
        assert d["label_column"] == "diagnosis"
        assert (d["positive"], d["negative"]) == ("patient", "control")
        assert d["description"].startswith("Patients show")
        assert f"{task.ground_truth['effect_size']:+.2f}" in d["description"]
        gt = task.ground_truth
        delta = task.delta_fc()
        assert delta.shape == (100, 100) and np.allclose(delta, delta.T)
        assert not np.diag(delta).any()
        edges = np.array(gt["edges"])
        assert (edges[:, 0] < edges[:, 1]).all()
        np.testing.assert_allclose(delta[edges[:, 0], edges[:, 1]], gt["edge_effect"])
        # with uniform planted patterns, the edges are exactly the non-zero upper entries
        assert len(edges) == np.count_nonzero(np.triu(delta, 1))
        np.testing.assert_allclose(gt["edge_effect"], gt["effect_size"])
        rois = np.array(gt["affected_rois"])
        assert gt["roi_labels"] == [atlas.labels[i] for i in rois]
        assert set(np.unique(edges)) >= set(rois)
        assert set(gt["affected_networks"]) == {atlas.networks[i] for i in np.unique(edges)}
        roi_effect = np.array(gt["roi_effect"])
        np.testing.assert_allclose(roi_effect, np.abs(delta).sum(axis=1), atol=1e-5)
        others = np.setdiff1d(np.arange(100), rois)
        assert roi_effect[rois].min() > roi_effect[others].max(initial=0.0)
        conf = gt["site_confounding"]
        first = smoke.phenotypes.iloc[smoke.task_indices(name)].drop_duplicates("participant")
        patient = first["diagnosis"].to_numpy() == "patient"
        by_site = pd.Series(patient).groupby(first["site"].to_numpy()).mean()
        for site, frac in conf["patient_fraction_by_site"].items():
            assert frac == pytest.approx(by_site[site], abs=1e-3)
    assert smoke.ground_truth["visual_confounded"]["site_confounding"]["level"] == "heavy"
    assert smoke.ground_truth["dmn_hyperconnectivity"]["site_confounding"]["level"] == "none"
    hubs = smoke.ground_truth["limbic_default_hubs"]
    assert hubs["affected_rois"] == sorted(hubs["hub_rois"])
    assert set(hubs["affected_networks"]) == {"Limbic", "Default"}


def test_default_configs_cover_the_planned_variety() -> None:
    cfg = default_task_configs()
    assert len({c.effect.kind for c in cfg}) == 3
    assert len({c.effect.networks for c in cfg}) == 5
    assert {np.sign(c.effect.delta) for c in cfg} == {-1.0, 1.0}
    sizes = [sum(c.dataset.n_participants) for c in cfg]
    assert min(sizes) >= 40 and max(sizes) <= 120
    assert sum(p.labelled for p in default_pretraining_datasets()) == 0


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_data_other_seed_other_data(smoke: SyntheticData) -> None:
    again = make_default_synthetic(seed=0, smoke=True)
    pd.testing.assert_frame_equal(smoke.phenotypes, again.phenotypes)
    assert all(np.array_equal(a, b) for a, b in zip(smoke.series, again.series, strict=True))
    assert [t.to_dict() for t in smoke.tasks.values()] == [
        t.to_dict() for t in again.tasks.values()
    ]
    other = make_default_synthetic(seed=1, smoke=True)
    assert not np.array_equal(other.series[0], smoke.series[0])


def test_a_dataset_does_not_depend_on_what_else_is_generated(smoke: SyntheticData) -> None:
    ds = default_pretraining_datasets(smoke=True)[2]
    series, ph = simulate_dataset(ds, seed=0)
    rows = np.flatnonzero(smoke.phenotypes["dataset"].to_numpy() == ds.name)
    pd.testing.assert_frame_equal(ph, smoke.phenotypes.iloc[rows].reset_index(drop=True))
    assert all(np.array_equal(series[k], smoke.series[i]) for k, i in enumerate(rows))


# ------------------------------------------------------------------------------- realism


def test_group_fc_resembles_hcp_reference(smoke: SyntheticData) -> None:
    fc = _fc(smoke.series).mean(axis=0)
    ref = load_reference_fc("schaefer100_hcp")
    r = np.corrcoef(fc[IU], ref[IU])[0, 1]
    assert r >= 0.9, r
    assert 0.1 < fc[IU].mean() < 0.35


def test_temporal_autocorrelation_follows_tr() -> None:
    long_tr, short_tr = SiteSpec("slow-1", 2.5, 300, noise=0.0, global_signal=0.0), SiteSpec(
        "fast-1", 0.72, 300, noise=0.0, global_signal=0.0
    )
    model = CohortModel(timescale_range=(2.0, 2.0))
    lag1 = {}
    for site in (long_tr, short_tr):
        dataset = DatasetSpec(site.name[:-2], (site,), (8,), (1.0,))
        series, _ = simulate_dataset(dataset, model=model, seed=3)
        lag1[site.tr] = np.mean([np.corrcoef(x[:-1].ravel(), x[1:].ravel())[0, 1] for x in series])
    assert lag1[0.72] == pytest.approx(np.exp(-0.72 / 2.0), abs=0.04)
    assert lag1[2.5] == pytest.approx(np.exp(-2.5 / 2.0), abs=0.04)


def test_sites_differ_in_fc_and_offset() -> None:
    quiet = SiteSpec("a-1", 1.0, 200, noise=0.3, global_signal=0.1)
    loud = SiteSpec(
        "a-2", 1.0, 200, noise=0.3, global_signal=0.6, gradient=0.5, baseline=2000, scale=20
    )
    series, ph = simulate_dataset(DatasetSpec("a", (quiet, loud), (30, 30), (1.0,)), seed=1)
    mean_fc = _fc(series)[:, IU[0], IU[1]].mean(axis=1)
    site = ph["site"].to_numpy()
    assert mean_fc[site == "a-2"].mean() > mean_fc[site == "a-1"].mean() + 0.1
    assert stats.ttest_ind(mean_fc[site == "a-2"], mean_fc[site == "a-1"]).pvalue < 1e-10
    means = np.array([x.mean() for x in series])
    assert np.all(np.abs(means[site == "a-1"]) < 1)
    assert np.all(np.abs(means[site == "a-2"] / 2000 - 1) < 0.05)  # raw-scale offset


def test_participants_are_identifiable_across_sessions() -> None:
    site = SiteSpec("id-1", 0.8, 300, noise=0.35, global_signal=0.25)
    series, ph = simulate_dataset(DatasetSpec("id", (site,), (40,), (0.0, 1.0)), seed=2)
    fc = _fc(series)[:, IU[0], IU[1]]
    s1, s2 = ph["session"].to_numpy() == 1, ph["session"].to_numpy() == 2
    assert (ph["participant"].to_numpy()[s1] == ph["participant"].to_numpy()[s2]).all()
    sim = np.corrcoef(fc[s1], fc[s2])[:40, 40:]
    accuracy = (sim.argmax(axis=1) == np.arange(40)).mean()
    assert accuracy >= 0.45, accuracy  # chance is 1/40; 0.58-0.93 over seeds 0-7
    assert np.diag(sim).mean() > sim[~np.eye(40, dtype=bool)].mean() + 0.02


# -------------------------------------------------------------------------- planted effects


@pytest.mark.parametrize(
    ("effect", "n"),
    [
        (PlantedEffect.within("Default", 0.15), 60),
        (PlantedEffect.between("SalVentAttn", "Cont", -0.06), 100),
    ],
)
def test_planted_edges_are_recovered_in_the_expected_direction(
    effect: PlantedEffect, n: int
) -> None:
    out = make_diagnosis_task(_task("rec", effect, n=n, noise=0.3, global_signal=0.2), seed=4)
    y = out.phenotypes["diagnosis"].to_numpy() == "patient"
    z = np.arctanh(_fc(out.series)[:, IU[0], IU[1]])
    t = stats.ttest_ind(z[y], z[~y]).statistic
    gt = out.tasks["rec"].ground_truth
    planted = out.tasks["rec"].delta_fc()[IU] != 0
    assert roc_auc_score(planted, np.sign(gt["effect_size"]) * t) > 0.85
    assert np.sign(t[planted].mean()) == np.sign(gt["effect_size"])
    assert abs(t[~planted].mean()) < 1.0  # nothing systematic elsewhere


def test_observed_effect_matches_the_documented_attenuation() -> None:
    config = _task("att", PlantedEffect.within("Default", 0.12), n=160, n_timepoints=300)
    out = make_diagnosis_task(config, seed=5)
    gt = out.tasks["att"].ground_truth
    edges = np.array(gt["edges"])
    fc = _fc(out.series)[:, edges[:, 0], edges[:, 1]].mean(axis=1)
    y = out.phenotypes["diagnosis"].to_numpy() == "patient"
    observed = fc[y].mean() - fc[~y].mean()
    se = np.sqrt(fc[y].var() / y.sum() + fc[~y].var() / (~y).sum())
    expected = gt["effect_size"] * gt["observed_effect_scale"]["att-1"]
    assert abs(observed - expected) < 4 * se, (observed, expected, se)
    assert 0.5 < gt["observed_effect_scale"]["att-1"] < 1


def test_hub_effect_affects_the_hubs() -> None:
    atlas = load_atlas("schaefer100_7")
    labels = ["LH_Limbic_OFC_1", "RH_Default_pCunPCC_1", "LH_Default_PFC_1"]
    hubs = atlas.roi_indices(labels).tolist()
    out = make_diagnosis_task(_task("hub", PlantedEffect.hubs(hubs, 0.12, ["Limbic"]), n=20))
    gt = out.tasks["hub"].ground_truth
    assert gt["affected_rois"] == sorted(hubs) and gt["effect_kind"] == "rois"
    assert gt["affected_networks"] == ["Limbic", "Default"]
    roi_effect = np.array(gt["roi_effect"])
    assert set(np.argsort(roi_effect)[-3:]) == set(hubs)  # the hubs carry the most change
    # every hub is coupled with every Limbic ROI and with the other hubs
    limbic = set(np.flatnonzero(atlas.network_mask("Limbic")))
    expect = {tuple(sorted((h, j))) for h in hubs for j in limbic | set(hubs) if h != j}
    assert {tuple(e) for e in gt["edges"]} == expect


def test_infeasible_effect_is_refused_with_the_bound() -> None:
    effect = PlantedEffect.within("Default", -0.3)
    bound = max_effect_size(effect)
    assert 0 < bound < 0.3
    with pytest.raises(ValueError, match=r"indefinite.*largest feasible \|delta\| for this"):
        make_diagnosis_task(_task("bad", effect, n=4))
    ok = PlantedEffect.within("Default", -0.98 * bound)
    assert make_diagnosis_task(_task("ok", ok, n=4)).tasks["ok"].ground_truth["effect_size"] < 0
    assert max_effect_size(PlantedEffect.within("Default", 0.1)) > 0.15


# -------------------------------------------------------------------- building blocks


def test_simulate_bold_correlation_and_autocorrelation() -> None:
    cov = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.0]])
    x = simulate_bold(cov, 6000, tr=1.0, noise=0.0, rng=0, timescale=2.0)
    assert x.shape == (6000, 3) and x.dtype == np.float32
    np.testing.assert_allclose(np.corrcoef(x.T), cov, atol=0.06)
    assert np.corrcoef(x[:-1, 0], x[1:, 0])[0, 1] == pytest.approx(np.exp(-0.5), abs=0.04)
    noisy = simulate_bold(cov, 6000, tr=1.0, noise=1.0, rng=0)
    assert np.corrcoef(noisy.T)[0, 1] == pytest.approx(0.25, abs=0.05)  # attenuated by 1 / (1 + 1)
    assert np.array_equal(simulate_bold(cov, 50, 2.0, rng=7), simulate_bold(cov, 50, 2.0, rng=7))


def test_simulate_bold_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"expected cov of shape \(R, R\), got shape \(2, 3\)"):
        simulate_bold(np.ones((2, 3)), 10, 1.0)
    with pytest.raises(ValueError, match="expected a positive-definite cov"):
        simulate_bold(np.array([[1.0, 2.0], [2.0, 1.0]]), 10, 1.0)
    with pytest.raises(ValueError, match="expected a symmetric cov"):
        simulate_bold(np.array([[1.0, 0.2], [0.1, 1.0]]), 10, 1.0)
    with pytest.raises(ValueError, match="expected n_timepoints >= 2, got 1"):
        simulate_bold(np.eye(2), 1, 1.0)
    with pytest.raises(TypeError, match="expected n_timepoints to be an int, got float"):
        simulate_bold(np.eye(2), 10.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected noise >= 0, got -1"):
        simulate_bold(np.eye(2), 10, 1.0, noise=-1)
    with pytest.raises(ValueError, match="expected tr > 0 and timescale > 0"):
        simulate_bold(np.eye(2), 10, 0.0)
    with pytest.raises(TypeError, match="expected a numpy Generator, an int seed or None, got str"):
        simulate_bold(np.eye(2), 10, 1.0, rng="x")  # type: ignore[arg-type]


def test_make_positive_definite() -> None:
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    fixed = make_positive_definite(bad, 0.05)
    assert np.linalg.eigvalsh(fixed).min() > 0
    assert np.allclose(np.diag(fixed), 1) and np.allclose(fixed, fixed.T)
    good = load_reference_fc()
    np.testing.assert_allclose(make_positive_definite(good, 0.05), good, atol=1e-6)  # already PD
    with pytest.raises(ValueError, match=r"expected a square 2D matrix \(R, R\), got shape \(3,\)"):
        make_positive_definite(np.ones(3))
    with pytest.raises(ValueError, match="expected a symmetric matrix"):
        make_positive_definite(np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="expected min_eigenvalue > 0, got 0"):
        make_positive_definite(np.eye(3), 0)
    with pytest.raises(ValueError, match="expected a finite matrix"):
        make_positive_definite(np.full((2, 2), np.nan))


def test_ar1_coefficient() -> None:
    assert float(ar1_coefficient(2.0, 2.0)) == pytest.approx(np.exp(-1))
    trs = np.array([0.72, 2.5])
    np.testing.assert_allclose(ar1_coefficient(trs, 2.0), np.exp(-trs / 2))
    with pytest.raises(ValueError, match="expected tr > 0 and timescale > 0 seconds, got -1"):
        ar1_coefficient(-1, 2.0)


# ------------------------------------------------------------- composition and validation


def test_lower_level_generators_compose() -> None:
    corpus = make_pretraining_corpus(
        [DatasetSpec("pre", (SiteSpec("pre-1", 2.0, 120),), (5,), (0.0, 1.0))], seed=1
    )
    assert len(corpus) == 10 and corpus.pretraining_datasets == ["pre"] and not corpus.tasks
    assert set(corpus.phenotypes["diagnosis"]) == {"unlabeled"}
    tasks = make_diagnosis_tasks(
        [
            _task("t_in", PlantedEffect.within("Vis", -0.04), n=6),
            _task("t_out", PlantedEffect.within("Cont", 0.1), n=6),
        ],
        seed=1,
    )
    assert {t.kind for t in tasks.tasks.values()} == {"external"}
    both = combine([corpus, tasks], ["pre", "t_in"])
    assert both.tasks["t_in"].kind == "internal" and both.tasks["t_out"].kind == "external"
    assert len(both.pretraining_indices()) == 16 and len(both.task_indices("t_out")) == 6
    summary = both.summary()
    assert summary["scans"].sum() == len(both)
    assert summary.set_index("dataset")["pretraining"].to_dict() == {
        "pre": True, "t_in": True, "t_out": False,
    }  # fmt: skip
    with pytest.raises(ValueError, match="parts share sample ids"):
        combine([corpus, corpus], ["pre"])
    with pytest.raises(ValueError, match=r"pretraining datasets \['nope'\] are not among"):
        combine([corpus], ["nope"])
    with pytest.raises(TypeError, match="got a single string"):
        combine([corpus], "pre")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no task 'x'"):
        both.task_indices("x")


def test_specs_validate_their_input() -> None:
    site = SiteSpec("s-1", 1.0, 100)
    with pytest.raises(ValueError, match="expected tr > 0 seconds, got 0"):
        SiteSpec("s", 0, 100)
    with pytest.raises(ValueError, match="expected an integer n_timepoints >= 10, got 5"):
        SiteSpec("s", 1.0, 5)
    with pytest.raises(ValueError, match="expected gradient in"):
        SiteSpec("s", 1.0, 100, gradient=2)
    with pytest.raises(ValueError, match=r"count >= 1 per site \(1 sites\), got \(3, 4\)"):
        DatasetSpec("d", (site,), (3, 4))
    with pytest.raises(ValueError, match="expected session_probs >= 0 summing to 1"):
        DatasetSpec("d", (site,), (3,), (0.5, 0.2))
    with pytest.raises(ValueError, match="expected one patient fraction in"):
        DatasetSpec("d", (site,), (3,), patient_fraction=(1.5,))
    with pytest.raises(ValueError, match="expected effect kind in"):
        PlantedEffect("global", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected 0 < \|delta\| < 1"):
        PlantedEffect.within("Vis", 0.0)
    with pytest.raises(ValueError, match="needs exactly two networks"):
        PlantedEffect("between", 0.1, ("Vis",))
    with pytest.raises(ValueError, match="has no network 'Visual'"):
        PlantedEffect.within("Visual", 0.1).pattern(load_atlas())
    with pytest.raises(ValueError, match=r"expected hub ROI indices in \[0, 100\), got \[100\]"):
        PlantedEffect.hubs([100], 0.1).pattern(load_atlas())
    with pytest.raises(ValueError, match="expected a labelled dataset"):
        TaskConfig("t", DatasetSpec("d", (site,), (3,)), PlantedEffect.within("Vis", 0.1))
    with pytest.raises(ValueError, match="is labelled; make it a task"):
        make_pretraining_corpus([DatasetSpec("d", (site,), (3,), patient_fraction=(0.5,))])
    with pytest.raises(ValueError, match="cannot carry a planted effect"):
        simulate_dataset(DatasetSpec("d", (site,), (3,)), effect=PlantedEffect.within("Vis", 0.1))
    with pytest.raises(ValueError, match="expected 0 <= severity_sd <= 0.5, got 0.9"):
        simulate_dataset(DatasetSpec("d", (site,), (3,)), severity_sd=0.9)
    with pytest.raises(ValueError, match="expected seed to be a non-negative int or None, got -1"):
        make_default_synthetic(seed=-1, smoke=True)
    with pytest.raises(TypeError, match="expected smoke to be a bool, got str"):
        make_default_synthetic(smoke="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected signature_rank >= 1"):
        CohortModel(signature_rank=0)
    with pytest.raises(ValueError, match="one phenotype row per series"):
        SyntheticData([np.zeros((3, 2), np.float32)], pd.DataFrame({"a": [1, 2]}), {}, [])


# ---------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_default_size_and_speed() -> None:
    start = time.perf_counter()
    data = make_default_synthetic(seed=0)
    seconds = time.perf_counter() - start
    assert seconds < 60, seconds
    ph = data.phenotypes
    corpus = data.pretraining_indices()
    assert 2500 <= len(corpus) <= 4000
    assert ph.iloc[corpus]["dataset"].nunique() >= 4 and ph.iloc[corpus]["site"].nunique() >= 6
    multi = ph.iloc[corpus].groupby("participant").size()
    assert (multi >= 2).sum() >= 500
    for name in data.tasks:
        n = ph.iloc[data.task_indices(name)]["participant"].nunique()
        assert 40 <= n <= 120, (name, n)
