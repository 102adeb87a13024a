"""Tests of bmlib.interpret: probes, importance methods, recovery, network tests, MRM errors.

Recovery thresholds (documented, chosen from 8 seeds of the toy task below, R=20, 4 planted
ROIs, 60 subjects; ROI AUC chance = 0.5):
- univariate t-test baseline and the probe on vectorised FC: min ROI AUC over seeds 0.98,
  asserted > 0.9;
- tiny random-init encoder + linear probe: gradient x input min 0.70 / median 1.0, occlusion
  min 0.66 / median 0.95; asserted > 0.75 on the seeded task (an untrained encoder is a weak
  feature extractor, so these are looser).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from bmlib import interpret as I
from bmlib.model import BrainEncoder, encoder_config, input_norm_statistics

R = 20
PLANTED = [2, 5, 11, 17]
PLANTED_EDGES = [(i, j) for i in PLANTED for j in PLANTED if i < j]
NETS = ["A"] * 4 + ["B"] * 4 + ["C"] * 4 + ["D"] * 8  # ROIs 0-3 form network A


def toy_task(
    n: int = 60, r: int = R, t: int = 120, planted=PLANTED, strength: float = 0.45, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """FC (n, r, r) of Gaussian series; positives (second half) share a signal on ``planted``."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.standard_normal((n, t, r)) + 0.3 * rng.standard_normal((n, t, 1))
    x[:, :, list(planted)] += strength * y[:, None, None] * rng.standard_normal((n, t, 1))
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return (np.einsum("nti,ntj->nij", x, x) / t).astype(np.float32), y


@pytest.fixture(scope="module")
def task() -> tuple[np.ndarray, np.ndarray]:
    return toy_task()


@pytest.fixture(scope="module")
def encoder_probe(task) -> I.EncoderProbe:
    torch.manual_seed(0)
    enc = BrainEncoder(encoder_config("tiny", R))
    fc, y = task
    enc.set_input_norm(*input_norm_statistics(torch.as_tensor(fc)))  # as fit() does on its corpus
    return I.fit_encoder_probe(enc, fc, y)


@pytest.fixture(scope="module")
def encoder_maps(encoder_probe, task) -> dict[str, I.ImportanceMap]:
    return I.compute_importance(encoder_probe, task[0])


# ----------------------------------------------------------------------------- probes
def test_linear_probe_matches_sklearn_decision_function():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(50, 6))
    y = (X[:, 0] + 0.5 * rng.standard_normal(50) > 3).astype(int)
    pipe = I.fit_probe(X, y, C=0.5)
    probe = I.LinearProbe.from_sklearn(pipe)
    got = probe(torch.as_tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, pipe.decision_function(X), rtol=1e-4, atol=1e-4)
    # a bare estimator (no scaler) works too
    bare = I.LinearProbe.from_sklearn(pipe[-1])
    np.testing.assert_allclose(
        bare(torch.as_tensor(pipe[0].transform(X), dtype=torch.float32)).numpy(),
        pipe.decision_function(X),
        rtol=1e-4,
        atol=1e-4,
    )


def test_linear_probe_rejects_bad_inputs():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random.default_rng(0)
    X, y3 = rng.normal(size=(30, 4)), np.arange(30) % 3
    with pytest.raises(ValueError, match="binary linear model"):
        I.LinearProbe.from_sklearn(LogisticRegression().fit(X, y3))
    with pytest.raises(TypeError, match="only StandardScaler"):
        I.LinearProbe.from_sklearn(make_pipeline(MinMaxScaler(), LogisticRegression()).fit(X, y3 % 2))
    with pytest.raises(TypeError, match="coef_ and intercept_"):
        I.LinearProbe.from_sklearn(MinMaxScaler().fit(X))
    with pytest.raises(ValueError, match=r"features of shape \(batch, 4\)"):
        I.LinearProbe(torch.zeros(4), 0.0)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="both classes"):
        I.fit_probe(X, np.zeros(30))
    with pytest.raises(ValueError, match="binary labels"):
        I.fit_probe(X, y3)


def test_encoder_probe_decision_matches_pipeline(encoder_probe, task):
    fc, y = task
    d = I.decision_function(encoder_probe, fc)
    np.testing.assert_allclose(d, encoder_probe.pipeline.decision_function(encoder_probe.train_features), atol=1e-3)
    assert ((d > 0) == y).mean() > 0.8  # the probe separates the toy groups


def test_vectorized_probe_occlusion_uses_training_mean(task):
    fc, y = task
    model = I.VectorizedFCProbe.fit(fc, y)
    occ = I.occlusion_importance(model, fc[:5])
    # by linearity: occlusion of ROI r = sum over r's edges of w_e * (x_e - mean_e)
    e = model.edges(torch.as_tensor(fc[:5])).numpy()
    w, mu = model.probe.weight.numpy(), model.center.numpy()
    iu = np.triu_indices(R, 1)
    contrib = np.zeros((5, R, R))
    contrib[:, iu[0], iu[1]] = w * (e - mu)
    contrib = contrib + contrib.transpose(0, 2, 1)
    np.testing.assert_allclose(occ, contrib.sum(-1), atol=1e-3)


# ----------------------------------------------------------------------------- methods
def test_occlusion_is_batched_and_equals_single_masks(encoder_probe, task):
    fc = task[0][:3]
    occ = I.occlusion_importance(encoder_probe, fc, batch_size=7)  # chunks cut across subjects
    assert occ.shape == (3, R)
    base = I.decision_function(encoder_probe, fc)
    for r in (0, 9, R - 1):
        mask = np.zeros((3, R), dtype=bool)
        mask[:, r] = True
        np.testing.assert_allclose(occ[:, r], base - I.decision_function(encoder_probe, fc, mask=mask), atol=1e-5)
    only = I.occlusion_importance(encoder_probe, fc, rois=[4])
    np.testing.assert_allclose(only[:, 4], occ[:, 4], atol=1e-5)
    assert np.all(np.delete(only, 4, axis=1) == 0)
    with pytest.raises(ValueError, match=r"rois as indices in \[0, 20\)"):
        I.occlusion_importance(encoder_probe, fc, rois=[20])


def test_occlusion_deltas_are_linear_in_the_probe(encoder_probe, task):
    fc = task[0][:4]
    deltas = I.occlusion_feature_deltas(encoder_probe.encoder, fc, batch_size=13)
    assert deltas.shape == (4, R, encoder_probe.probe.n_features)
    np.testing.assert_allclose(
        deltas @ encoder_probe.probe.weight.numpy(), I.occlusion_importance(encoder_probe, fc), atol=1e-4
    )


def test_gradient_x_input_matches_linear_model_in_closed_form(task):
    fc, y = task
    model = I.VectorizedFCProbe.fit(fc, y, fisher_z=False)
    edge = I.gradient_x_input(model, fc[:4], batch_size=3)
    w = model.probe.weight.numpy()
    iu = np.triu_indices(R, 1)
    expected = np.zeros((4, R, R))
    expected[:, iu[0], iu[1]] = w * fc[:4][:, iu[0], iu[1]]
    expected = expected + expected.transpose(0, 2, 1)
    np.testing.assert_allclose(edge, expected, atol=1e-5)
    np.testing.assert_allclose(I.roi_from_edges(edge), np.abs(expected).sum(-1), atol=1e-4)


def test_gradient_x_input_restores_training_mode(encoder_probe, task):
    encoder_probe.train()
    edge = I.gradient_x_input(encoder_probe, task[0][:2])
    assert encoder_probe.training and encoder_probe.encoder.training
    encoder_probe.eval()
    np.testing.assert_allclose(edge, edge.transpose(0, 2, 1), atol=1e-6)
    assert np.all(edge[:, np.arange(R), np.arange(R)] == 0)


def test_attention_rollout_rows_sum_to_one_and_identity_case():
    g = torch.Generator().manual_seed(0)
    att = [torch.softmax(torch.randn(3, 4, 6, 6, generator=g), -1) for _ in range(3)]
    roll = I.attention_rollout(att)
    assert roll.shape == (3, 6, 6)
    torch.testing.assert_close(roll.sum(-1), torch.ones(3, 6))
    assert (roll >= 0).all()
    # uniform attention with no residual rolls out to uniform
    uni = [torch.full((1, 2, 5, 5), 0.2)] * 2
    torch.testing.assert_close(I.attention_rollout(uni, residual=False), torch.full((1, 5, 5), 0.2))
    # one layer with residual: 0.5 * A + 0.5 * I
    torch.testing.assert_close(I.attention_rollout(att[:1])[0], 0.5 * att[0][0].mean(0) + 0.5 * torch.eye(6))
    with pytest.raises(ValueError, match="at least one attention map"):
        I.attention_rollout([])
    with pytest.raises(ValueError, match=r"\(B, H, R, R\) at layer 0"):
        I.attention_rollout([torch.ones(2, 5, 5)])
    with pytest.raises(ValueError, match="head_fusion"):
        I.attention_rollout(att, head_fusion="median")


def test_rollout_importance_from_encoder(encoder_probe, task):
    ro = I.rollout_importance(encoder_probe, task[0][:5])
    assert ro.shape == (5, R)
    np.testing.assert_allclose(ro.sum(1), 1.0, atol=1e-5)
    with pytest.raises(TypeError, match="rollout needs a transformer encoder"):
        I.rollout_importance(I.VectorizedFCProbe.fit(*task), task[0][:2])


def test_compute_importance_shapes_and_errors(encoder_maps, task):
    n = task[0].shape[0]
    assert set(encoder_maps) == {"occlusion", "gradient", "rollout"}
    assert encoder_maps["occlusion"].roi.shape == (n, R)
    assert encoder_maps["gradient"].edge.shape == (n, R, R)
    assert encoder_maps["rollout"].edge is None
    with pytest.raises(ValueError, match="expected methods among"):
        I.compute_importance(None, task[0], methods=["saliency"])
    with pytest.raises(ValueError, match=r"expected fc of shape \(n_subjects, n_rois, n_rois\), got shape \(3, 4\)"):
        I.occlusion_importance(None, np.zeros((3, 4)))


def test_group_map_conventions():
    per = np.array([[1.0, -2.0], [3.0, -4.0], [10.0, 0.0]])
    y = np.array([0, 0, 1])
    np.testing.assert_allclose(I.group_map(per, y), [10 - 2, 0 - (-3)])
    np.testing.assert_allclose(I.group_map(per, y, mode="mean_abs"), [14 / 3, 2.0])
    np.testing.assert_allclose(I.group_map(per, y, mode="mean"), [14 / 3, -2.0])
    with pytest.raises(ValueError, match="mode 'difference'"):
        I.group_map(per, y, mode="median")
    with pytest.raises(ValueError, match="with 3 entries"):
        I.group_map(per, [0, 1])


# ----------------------------------------------------------------------------- baseline + recovery
def test_univariate_baseline_is_welch_t(task):
    from scipy import stats

    fc, y = task
    t, p = I.univariate_edge_tests(fc, y)
    z = np.arctanh(fc[:, 2, 5].astype(np.float64))
    ref = stats.ttest_ind(z[y == 1], z[y == 0], equal_var=False)
    assert t[2, 5] == pytest.approx(ref.statistic, rel=1e-5) and t[5, 2] == t[2, 5]
    assert p[2, 5] == pytest.approx(ref.pvalue, rel=1e-4)
    assert np.all(np.diag(t) == 0) and np.all(np.diag(p) == 1)
    g = I.univariate_baseline(fc, y)
    np.testing.assert_allclose(g.roi, np.abs(t).sum(1))
    with pytest.raises(ValueError, match="at least 2 subjects per class"):
        I.univariate_edge_tests(fc[:31], y[:31])


def test_recovery_scores_exact_values():
    imp = np.array([5.0, -4.0, 0.1, 3.0, 0.2, 0.3])  # planted 0, 1 and 5
    s = I.recovery_scores(imp, [0, 1, 5])
    # |imp|: planted {5, 4, 0.3}, others {0.1, 3, 0.2}: 8 of 9 pairs ordered correctly
    assert s["roi_auc"] == pytest.approx(8 / 9)
    assert s["roi_top_k_precision"] == pytest.approx(2 / 3)
    assert s["roi_chance"] == pytest.approx(0.5)
    assert np.isnan(s["edge_auc"])
    assert I.recovery_scores(imp, [0, 1, 5], absolute=False)["roi_auc"] == pytest.approx(5 / 9)
    edge = np.zeros((6, 6))
    edge[0, 1] = edge[1, 0] = 2.0
    edge[3, 4] = edge[4, 3] = -1.0
    s = I.recovery_scores(imp, [0, 1], edge, [(1, 0)], k=1)
    assert s["edge_auc"] == pytest.approx(1.0) and s["edge_top_k_precision"] == 1.0
    assert s["edge_chance"] == pytest.approx(1 / 15)
    with pytest.raises(ValueError, match=r"planted ROI indices in \[0, 6\)"):
        I.recovery_scores(imp, [6])
    with pytest.raises(ValueError, match="at least one planted ROI"):
        I.recovery_scores(imp, [])
    with pytest.raises(ValueError, match=r"importance_edge of shape \(6, 6\)"):
        I.recovery_scores(imp, [0], np.zeros((5, 5)), [(0, 1)])
    with pytest.raises(ValueError, match="planted edges as pairs"):
        I.recovery_scores(imp, [0], edge, [(0, 0)])


def test_planted_from_ground_truth_keys():
    assert I.planted_from_ground_truth({"affected_rois": [3, 1], "edges": [[1, 3]]}) == ([3, 1], [(1, 3)])
    assert I.planted_from_ground_truth({"edges": [[4, 2], [2, 7]]}) == ([2, 4, 7], [(4, 2), (2, 7)])
    with pytest.raises(ValueError, match="affected_rois"):
        I.planted_from_ground_truth({"effect_size": 0.5})


def test_recovery_well_above_chance_on_seeded_task(task, encoder_probe, encoder_maps):
    fc, y = task
    maps = I.group_maps(encoder_maps, y)
    maps["univariate"] = I.univariate_baseline(fc, y)
    linear = I.VectorizedFCProbe.fit(fc, y)
    for name, m in I.group_maps(I.compute_importance(linear, fc, methods=("occlusion", "gradient")), y).items():
        maps[f"fc_probe_{name}"] = m
    table = I.recovery_table(maps, {"affected_rois": PLANTED, "edges": [list(e) for e in PLANTED_EDGES]})
    expected = ["occlusion", "gradient", "rollout", "univariate", "fc_probe_occlusion", "fc_probe_gradient"]
    assert list(table["method"]) == expected
    auc = table.set_index("method")["roi_auc"]
    assert auc["univariate"] > 0.9 and auc["fc_probe_gradient"] > 0.9 and auc["fc_probe_occlusion"] > 0.9
    assert auc["gradient"] > 0.75 and auc["occlusion"] > 0.75
    edge_auc = table.set_index("method")["edge_auc"]
    assert edge_auc["univariate"] > 0.9 and edge_auc["fc_probe_gradient"] > 0.9 and edge_auc["gradient"] > 0.75
    assert (table["roi_chance"] == len(PLANTED) / R).all()
    prec = table.set_index("method")["roi_top_k_precision"]
    assert prec["univariate"] >= 0.75 > table["roi_chance"].iloc[0]


def test_recovery_is_at_chance_for_shuffled_labels():
    fc, y = toy_task(n=60, seed=3, strength=0.0)
    aucs = [I.recovery_scores(I.univariate_baseline(fc, np.roll(y, s)).roi, PLANTED)["roi_auc"] for s in range(5)]
    assert 0.2 < np.mean(aucs) < 0.8  # nothing planted: no systematic recovery


# ----------------------------------------------------------------------------- networks
def test_network_importance_and_pairs():
    roi = np.arange(R, dtype=float)
    s = I.network_importance(roi, NETS)
    assert list(s.index) == ["A", "B", "C", "D"]
    assert s["A"] == pytest.approx(1.5) and s["D"] == pytest.approx(15.5)
    per_subject = I.network_importance(np.stack([roi, -roi]), NETS, absolute=True)
    assert per_subject.shape == (2, 4) and per_subject.loc[1, "B"] == pytest.approx(5.5)
    edge = np.zeros((R, R))
    edge[0, 1] = edge[1, 0] = 6.0  # within A: 6 distinct pairs
    edge[0, 4] = edge[4, 0] = 16.0  # A-B: 16 pairs
    pairs = I.network_pair_importance(edge, NETS)
    assert pairs.loc["A", "A"] == pytest.approx(1.0) and pairs.loc["A", "B"] == pytest.approx(1.0)
    assert pairs.loc["B", "A"] == pairs.loc["A", "B"] and pairs.loc["C", "D"] == 0
    with pytest.raises(ValueError, match=r"per atlas ROI \(20 ROIs\), got 21"):
        I.network_importance(np.zeros(21), NETS)
    with pytest.raises(ValueError, match=r"edge_importance of shape \(n_rois, n_rois\)"):
        I.network_pair_importance(np.zeros((R, 3)), NETS)


def test_network_importance_with_real_atlas():
    from bmlib.data.atlases import load_atlas

    atlas = load_atlas("schaefer100_7")
    s = I.network_importance(np.asarray(atlas.network_index(), dtype=float), atlas)
    assert list(s.index) == list(atlas.network_names)
    np.testing.assert_allclose(s.to_numpy(), np.arange(7))


def test_permutation_test_finds_planted_network_not_null():
    planted = [0, 1, 2, 3]  # network A
    fc, y = toy_task(n=40, planted=planted, strength=0.5, seed=1)
    res = I.network_permutation_test(fc, y, NETS, n_permutations=20, seed=0)
    assert list(res.columns) == ["network", "n_rois", "importance", "null_mean", "p_value", "p_bonferroni"]
    p = res.set_index("network")["p_value"]
    assert p["A"] == pytest.approx(1 / 21)  # observed beats every permutation
    assert (p.drop("A") > 0.1).all()
    null_fc, null_y = toy_task(n=40, planted=planted, strength=0.0, seed=2)
    null = I.network_permutation_test(null_fc, null_y, NETS, n_permutations=20, seed=0)
    assert null["p_value"].min() > 1 / 21 and null["p_value"].mean() > 0.25
    probe = I.network_permutation_test(fc, y, NETS, method="probe", level="pair", n_permutations=20, seed=0)
    assert len(probe) == 10  # 4 networks: 4 within + 6 between
    pp = probe.set_index(["network_a", "network_b"])["p_value"]
    assert pp[("A", "A")] == pytest.approx(1 / 21)


def test_permutation_test_permutes_within_groups_and_is_seeded():
    fc, y = toy_task(n=40, seed=4)
    site = np.tile([0, 1, 2, 3], 10)
    seen: list[np.ndarray] = []
    fn = I.univariate_refit_fn(fc)

    def recording(y_: np.ndarray):
        seen.append(y_.copy())
        return fn(y_)

    a = I.network_permutation_test(recording, y, NETS, groups=site, n_permutations=5, seed=7)
    assert len(seen) == 6
    for y_ in seen:
        np.testing.assert_array_equal(np.bincount(site, weights=y_), np.bincount(site, weights=y))
    assert not all(np.array_equal(s, y) for s in seen[1:])
    b = I.network_permutation_test(fc, y, NETS, groups=site, n_permutations=5, seed=7)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="groups of shape"):
        I.network_permutation_test(fc, y, NETS, groups=site[:5])
    with pytest.raises(ValueError, match="n_permutations a positive int"):
        I.network_permutation_test(fc, y, NETS, n_permutations=0)
    with pytest.raises(ValueError, match="method 'univariate' or 'probe'"):
        I.network_permutation_test(fc, y, NETS, method="svm")
    with pytest.raises(ValueError, match="needs edge importance"):
        I.network_permutation_test(lambda y_: (np.ones(R), None), y, NETS, level="pair", n_permutations=1)


def test_occlusion_refit_matches_direct_occlusion(encoder_probe, task):
    fc, y = task[0][::3], task[1][::3]  # 20 subjects, both classes
    enc = encoder_probe.encoder
    fn = I.occlusion_refit_fn(I.pooled_features(enc, fc), I.occlusion_feature_deltas(enc, fc))
    roi, edge = fn(y)
    assert edge is None
    direct = I.group_map(I.occlusion_importance(I.fit_encoder_probe(enc, fc, y), fc), y)
    np.testing.assert_allclose(roi, direct, atol=1e-3)
    with pytest.raises(ValueError, match="matching N and P"):
        I.occlusion_refit_fn(np.zeros((3, 4)), np.zeros((3, R, 5)))


# ----------------------------------------------------------------------------- MRM errors
@pytest.fixture(scope="module")
def pretrainer():
    from bmlib.objectives import BrainMassPretrainer, objective_config

    torch.manual_seed(0)
    return BrainMassPretrainer(encoder_config("tiny", R), objective_config("tiny")).eval()


def test_reconstruction_error_matches_mrm_loss(pretrainer, task):
    from bmlib.objectives import mrm_loss

    fc = task[0][:3]
    err = I.reconstruction_error_map(pretrainer, fc, exclude_diagonal=False, batch_size=11)
    assert err.shape == (3, R) and (err > 0).all()
    x = torch.as_tensor(fc)
    mask = torch.zeros(3, R, dtype=torch.bool)
    mask[:, 6] = True
    with torch.no_grad():
        loss = mrm_loss(pretrainer.mrm_head(pretrainer.encoder(x, mask).tokens), x, mask)
    assert err[:, 6].mean() == pytest.approx(loss.item(), rel=1e-4)
    # the (encoder, head) pair and grouped masking give the same shape; every ROI is covered
    grouped = I.reconstruction_error_map((pretrainer.encoder, pretrainer.mrm_head), fc, group_size=3, seed=1)
    assert grouped.shape == (3, R) and (grouped > 0).all()
    with pytest.raises(TypeError, match="mrm_head"):
        I.reconstruction_error_map(pretrainer.encoder, fc)
    with pytest.raises(ValueError, match="group_size a positive int"):
        I.reconstruction_error_map(pretrainer, fc, group_size=0)


def test_atypicality_flags_a_corrupted_roi(pretrainer):
    fc, _ = toy_task(n=30, strength=0.0, seed=5)
    corrupted = fc[:1].copy()
    rng = np.random.default_rng(0)
    noise = rng.uniform(-0.9, 0.9, R).astype(np.float32)
    corrupted[0, 7, :] = noise
    corrupted[0, :, 7] = noise
    corrupted[0, 7, 7] = 1.0
    ref = I.reconstruction_error_map(pretrainer, fc)
    z = I.atypicality(I.reconstruction_error_map(pretrainer, corrupted), ref)
    assert z.shape == (1, R)
    assert int(np.argmax(z[0])) == 7 and z[0, 7] > 3
    with pytest.raises(ValueError, match="at least 2 reference subjects"):
        I.atypicality(ref, ref[:1])
    with pytest.raises(ValueError, match="the same R"):
        I.atypicality(ref, ref[:, :5])


def test_reconstruct_masked_uses_the_pretrainers_seeded_masking(pretrainer, task):
    from bmlib.objectives import random_roi_mask

    fc = task[0][:5]
    rec = I.reconstruct_masked(pretrainer, fc, seed=3, batch_size=2)
    k = pretrainer.n_masked
    expected = random_roi_mask(5, R, count=k, generator=torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_array_equal(rec.mask, expected)
    assert rec.indices.shape == (5, k) and (np.diff(rec.indices, axis=1) > 0).all()
    np.testing.assert_array_equal(rec.mask.nonzero()[1].reshape(5, k), rec.indices)
    assert rec.truth.shape == rec.predicted.shape == (5, k, R) and rec.roi_r.shape == rec.roi_mse.shape == (5, k)
    np.testing.assert_array_equal(rec.truth, np.take_along_axis(fc, rec.indices[..., None], axis=1))
    # the predicted rows are the MRM head's output on the masked input, rows of the masked ROIs
    x = torch.as_tensor(fc)
    with torch.no_grad():
        full = pretrainer.mrm_head(pretrainer.encoder(x, torch.as_tensor(rec.mask)).tokens).numpy()
    np.testing.assert_allclose(rec.predicted, np.take_along_axis(full, rec.indices[..., None], axis=1), atol=1e-5)
    again = I.reconstruct_masked(pretrainer, fc, seed=3)
    np.testing.assert_array_equal(again.mask, rec.mask)
    np.testing.assert_allclose(again.predicted, rec.predicted, atol=1e-5)
    assert not np.array_equal(I.reconstruct_masked(pretrainer, fc, seed=4).mask, rec.mask)
    single = I.reconstruct_masked(pretrainer, fc[0], mask_ratio=0.25)
    assert len(single) == 1 and single.indices.shape == (1, 5)


def test_reconstruct_masked_scores_match_mrm_loss_and_numpy(pretrainer, task):
    from bmlib.objectives import mrm_loss

    fc = task[0][:3]
    mask = np.zeros((3, R), dtype=bool)
    mask[:, [1, 6, 9]] = True
    rec = I.reconstruct_masked(pretrainer, fc, mask=mask, exclude_diagonal=False)
    x = torch.as_tensor(fc)
    with torch.no_grad():
        loss = mrm_loss(pretrainer.mrm_head(pretrainer.encoder(x, torch.as_tensor(mask)).tokens), x,
                        torch.as_tensor(mask))  # fmt: skip
    assert rec.roi_mse.mean() == pytest.approx(loss.item(), rel=1e-4)
    rec_off = I.reconstruct_masked(pretrainer, fc, mask=mask[0])  # one (R,) mask for every scan
    off = np.arange(R) != 6
    r_np = np.corrcoef(rec_off.truth[2, 1, off], rec_off.predicted[2, 1, off])[0, 1]
    assert rec_off.roi_r[2, 1] == pytest.approx(r_np, abs=1e-6)
    t, p = rec_off.pairs(2)
    assert t.shape == p.shape == (3 * (R - 1),)
    summary = rec_off.summary()
    assert set(summary) == {"mrm_r", "mrm_mse"} and summary["mrm_mse"] == pytest.approx(rec_off.roi_mse.mean())


class _Oracle(torch.nn.Module):
    """An "encoder" that ignores the mask and returns the true FC rows as tokens (a perfect MRM)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        from types import SimpleNamespace

        return SimpleNamespace(tokens=x)


def test_reconstruct_masked_perfect_and_reference_predictions(task):
    fc = task[0][:4]
    oracle = (_Oracle(), torch.nn.Identity())
    rec = I.reconstruct_masked(oracle, fc, mask_count=4, reference=fc.mean(0))
    np.testing.assert_allclose(rec.roi_r, 1.0, atol=1e-6)
    np.testing.assert_allclose(rec.roi_mse, 0.0, atol=1e-12)
    assert rec.reference.shape == rec.truth.shape
    assert (rec.reference_mse > 0).all() and (rec.reference_r < 1).all()
    assert set(rec.summary()) == {"mrm_r", "mrm_mse", "reference_r", "reference_mse"}
    same = I.reconstruct_masked(oracle, fc, mask_count=4, reference=fc)  # the scan itself as reference
    np.testing.assert_allclose(same.reference_r, 1.0, atol=1e-6)


def test_reconstruct_masked_input_errors(pretrainer, task):
    fc = task[0][:2]
    with pytest.raises(ValueError, match="pass mask_ratio or mask_count"):
        I.reconstruct_masked((pretrainer.encoder, pretrainer.mrm_head), fc)
    with pytest.raises(TypeError, match="mrm_head"):
        I.reconstruct_masked(pretrainer.encoder, fc, mask_count=2)
    with pytest.raises(ValueError, match="not both"):
        I.reconstruct_masked(pretrainer, fc, mask_ratio=0.2, mask_count=2)
    with pytest.raises(ValueError, match="mask ratio must be a float in"):
        I.reconstruct_masked(pretrainer, fc, mask_ratio=1.5)
    with pytest.raises(ValueError, match=r"expected mask of shape \(2, 20\) or \(20,\), got \(3,\)"):
        I.reconstruct_masked(pretrainer, fc, mask=np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match="bool array"):
        I.reconstruct_masked(pretrainer, fc, mask=np.ones(R))
    uneven = np.zeros((2, R), dtype=bool)
    uneven[0, :2], uneven[1, :3] = True, True
    with pytest.raises(ValueError, match="same number"):
        I.reconstruct_masked(pretrainer, fc, mask=uneven)
    with pytest.raises(ValueError, match=r"reference of shape \(20, 20\)"):
        I.reconstruct_masked(pretrainer, fc, reference=np.zeros((5, 5)))
    with pytest.raises(ValueError, match=r"\(n_scans, n_rois, n_rois\), got shape \(2, 3\)"):
        I.reconstruct_masked(pretrainer, np.zeros((2, 3)))
    with pytest.raises(IndexError, match="scan index"):
        I.reconstruct_masked(pretrainer, fc).pairs(5)
    pretrainer.train()
    I.reconstruct_masked(pretrainer, fc)
    assert pretrainer.training  # the caller's mode is restored
    pretrainer.eval()


# ----------------------------------------------------------------------------- tables
def test_importance_frame_and_save(tmp_path, encoder_maps, task):
    from bmlib.data.atlases import Atlas

    atlas = Atlas("toy", [f"r{i}" for i in range(R)], NETS, ["L"] * R, np.zeros((R, 3)))
    groups = I.group_maps(encoder_maps, task[1]) | {"univariate": I.univariate_baseline(*task)}
    df = I.importance_frame(groups, atlas)
    assert list(df.columns) == ["roi", "label", "network", "occlusion", "gradient", "rollout", "univariate"]
    assert df["label"].to_numpy()[3] == "r3"
    written = I.save_importance(groups, atlas, tmp_path / "interp", prefix="t1_")
    assert set(written) == {"roi_importance", "edge_gradient", "edge_univariate"}
    back = pd.read_csv(written["roi_importance"])
    np.testing.assert_allclose(back["univariate"].to_numpy(), groups["univariate"].roi)
    np.testing.assert_allclose(np.load(written["edge_gradient"]), groups["gradient"].edge, rtol=1e-5, atol=1e-6)
    assert not [p for p in (tmp_path / "interp").iterdir() if p.name.startswith(".")]  # no temp files left


def test_relative_statistic_ignores_a_label_dependent_scale():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    base = rng.uniform(0.5, 1.5, R)

    def scaled(y_: np.ndarray):  # the true labels give a 3x larger map, same shape
        noise = 1 + 0.05 * np.random.default_rng(int(y_ @ np.arange(40))).standard_normal(R)
        return (3.0 if np.array_equal(y_, y) else 1.0) * base * noise, None

    absolute = I.network_permutation_test(scaled, y, NETS, n_permutations=20, relative=False)
    assert (absolute["p_value"] < 0.05).all()  # the raw scale flags every network
    rel = I.network_permutation_test(scaled, y, NETS, n_permutations=20)
    assert (rel["p_value"] > 0.05).sum() >= 3
    np.testing.assert_allclose((rel["importance"] * rel["n_rois"]).sum() / R, 1.0)  # shares average to 1


# ----------------------------------------------------------------------------- task pipeline
def test_truth_map_and_top_rois():
    gt = {"affected_rois": [1, 2], "edges": [[1, 2]], "edge_effect": [-0.3], "n_rois": 4}
    t = I.truth_map(gt)
    np.testing.assert_array_equal(t.roi, [0, 1, 1, 0])
    assert t.edge[1, 2] == t.edge[2, 1] == -0.3 and t.method == "truth"
    delta = np.zeros((4, 4))
    delta[0, 3] = delta[3, 0] = 0.2
    gt2 = {"affected_rois": [0, 3], "edges": [[0, 3]], "delta_fc": delta.tolist(), "roi_effect": [0.2, 0, 0, 0.2]}
    t2 = I.truth_map(gt2)
    np.testing.assert_array_equal(t2.edge, delta)
    with pytest.raises(ValueError, match="n_rois larger than every planted index"):
        I.truth_map({"affected_rois": [5]}, n_rois=4)
    top = I.top_rois(np.array([0.1, -3.0, 2.0, 0.5]), ["A", "A", "B", "B"], k=2)
    assert top["roi"].tolist() == [1, 2] and top["network"].tolist() == ["A", "B"]
    assert top["label"].tolist() == ["roi_1", "roi_2"]


def test_interpret_task_end_to_end(tmp_path, encoder_probe, task):
    from bmlib.data.atlases import Atlas

    fc, y = task[0][::2], task[1][::2]  # 30 subjects
    atlas = Atlas("toy", [f"r{i}" for i in range(R)], NETS, ["L"] * R, np.zeros((R, 3)))
    res = I.interpret_task(
        encoder_probe.encoder, fc, y, ground_truth={"affected_rois": PLANTED, "edges": PLANTED_EDGES},
        atlas=atlas, groups=np.arange(30) % 2, n_permutations=5,
    )  # fmt: skip
    assert set(res.groups) == {"occlusion", "gradient", "rollout", "univariate"}
    # occlusion through the feature deltas equals direct occlusion of the fitted model
    np.testing.assert_allclose(res.maps["occlusion"].roi, I.occlusion_importance(res.model, fc), atol=1e-3)
    assert list(res.recovery["method"]) == ["occlusion", "gradient", "rollout", "univariate"]
    assert set(res.networks["method"]) == {"occlusion", "univariate"} and len(res.networks) == 8
    assert res.decision.shape == (30,)
    written = res.save(tmp_path, atlas, prefix="toy_")
    assert {"recovery", "networks", "roi_importance"} <= set(written)
    assert pd.read_csv(written["networks"]).shape == (8, 7)
    with pytest.raises(ValueError, match="expected methods among"):
        I.interpret_task(encoder_probe.encoder, fc, y, methods=["lime"])


def test_load_task_from_a_cohort():
    from bmlib.evaluation.benchmark import Cohort

    rng = np.random.default_rng(0)
    series = {f"s{i}": rng.standard_normal((50, 6)).astype(np.float32) for i in range(6)}
    manifest = pd.DataFrame({
        "sample_id": list(series), "participant": [f"p{i}" for i in range(6)], "site": ["a", "b"] * 3,
        "diagnosis": ["patient", "control", "control", "patient", "unlabeled", "control"],
    })  # fmt: skip
    spec = {"label_column": "diagnosis", "positive": "patient", "negative": "control"}
    cohort = Cohort(manifest, series, {"t": spec})
    fc, y, samples = I.load_task(cohort, "t")
    assert fc.shape == (5, 6, 6) and y.tolist() == [1, 0, 0, 1, 0]
    np.testing.assert_allclose(fc[0], np.corrcoef(series["s0"].T), atol=1e-5)
    assert samples["sample_id"].tolist() == ["s0", "s1", "s2", "s3", "s5"]
    with pytest.raises(ValueError, match="unknown task 'u'"):
        I.load_task(cohort, "u")


def test_load_pretrainer_round_trip(tmp_path, pretrainer, task):
    from bmlib.model import CHECKPOINT_FORMAT

    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "encoder_config": pretrainer.encoder_cfg.to_dict(),
        "objective_config": pretrainer.objective_cfg.to_dict(),
        "model": pretrainer.state_dict(),
    }
    path = tmp_path / "checkpoint.pt"
    torch.save(ckpt, path)
    loaded = I.load_pretrainer(path)
    assert not loaded.training
    fc = task[0][:2]
    np.testing.assert_allclose(
        I.reconstruction_error_map(loaded, fc), I.reconstruction_error_map(pretrainer, fc), rtol=1e-6
    )
    (tmp_path / "bad").mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}}, tmp_path / "bad" / "checkpoint.pt")
    with pytest.raises(ValueError, match="missing \\['encoder_config'\\]"):
        I.load_pretrainer(tmp_path / "bad")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="got 'other'"):
        I.load_pretrainer(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        I.load_pretrainer(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- several tasks
TASK_ROIS = {"task_a": PLANTED, "task_b": [0, 1, 2, 3]}  # task_b: all of network A


@pytest.fixture(scope="module")
def cohort():
    """Two labelled toy tasks (two datasets, two sites each) in a Cohort, with their planted truth."""
    from bmlib.evaluation.benchmark import Cohort

    rng = np.random.default_rng(1)
    series, rows = {}, []
    for d, (task, rois) in enumerate(TASK_ROIS.items()):
        for i in range(40):
            patient = i % 2
            x = rng.standard_normal((120, R)) + 0.3 * rng.standard_normal((120, 1))
            x[:, rois] += 0.45 * patient * rng.standard_normal((120, 1))
            series[f"{task}-{i}"] = x.astype(np.float32)
            rows.append({"sample_id": f"{task}-{i}", "participant": f"{task}-p{i}", "site": f"d{d}-{i // 20}",
                         "dataset": f"d{d}", "diagnosis": "patient" if patient else "control"})  # fmt: skip
    specs = {t: {"datasets": [f"d{d}"], "kind": ["internal", "external"][d], "description": f"toy {t}"}
             for d, t in enumerate(TASK_ROIS)}  # fmt: skip
    truth = {t: {"affected_rois": rois, "edges": [(i, j) for i in rois for j in rois if i < j], "n_rois": R}
             for t, rois in TASK_ROIS.items()}  # fmt: skip
    return Cohort(pd.DataFrame(rows), series, specs), truth


@pytest.fixture(scope="module")
def toy_atlas():
    from bmlib.data.atlases import Atlas

    return Atlas("toy", [f"r{i}" for i in range(R)], NETS, ["L"] * R, np.zeros((R, 3)))


@pytest.fixture(scope="module")
def task_set(cohort, toy_atlas, encoder_probe, tmp_path_factory):
    from bmlib.connectivity import fc_list

    data, truth = cohort
    out = tmp_path_factory.mktemp("interpret_tasks")
    encoder = copy.deepcopy(encoder_probe.encoder)  # input statistics of this cohort, as after pretraining on it
    encoder.set_input_norm(*input_norm_statistics(fc_list(list(data.series.values()))))
    res = I.interpret_tasks(encoder, data, atlas=toy_atlas, ground_truth=truth, n_permutations=19,
                            out_dir=out)  # fmt: skip
    return res, out


def test_interpret_tasks_recovers_every_planted_task(task_set):
    res, _ = task_set
    assert res.tasks == ["task_a", "task_b"] and len(res) == 2
    assert res.summary[["task", "kind", "n_scans", "n_positive", "n_sites"]].values.tolist() == [
        ["task_a", "internal", 40, 20, 2], ["task_b", "external", 40, 20, 2]]  # fmt: skip
    rec = res.recovery
    assert list(rec.columns[:4]) == ["task", "kind", "method", "roi_auc"] and len(rec) == 8
    auc = res.recovery_matrix("roi_auc")
    assert list(auc.index) == ["task_a", "task_b"]
    assert list(auc.columns) == ["occlusion", "gradient", "rollout", "univariate"]
    # chance is 0.5; thresholds as documented at the top of this file
    assert (auc["univariate"] > 0.9).all() and (auc["gradient"] > 0.75).all()
    pd.testing.assert_frame_equal(  # the stacked table holds each task's own recovery table
        rec[rec["task"] == "task_b"].drop(columns=["task", "kind"]).reset_index(drop=True), res["task_b"].recovery
    )
    # network A carries task_b's planted effect: the largest share of the univariate map, p at its minimum
    net = res.networks.query("task == 'task_b' and method == 'univariate'").set_index("network")
    assert net["importance"].idxmax() == "A" and net.loc["A", "p_value"] == pytest.approx(1 / 20)
    assert len(res.networks) == 2 * 2 * 4 and list(res.networks.columns[:3]) == ["task", "kind", "method"]
    assert set(res.truth) == {"task_a", "task_b"} and np.flatnonzero(res.truth["task_b"].roi).tolist() == [0, 1, 2, 3]
    assert res.planted == TASK_ROIS
    assert list(res.maps()["task_a"]) == ["occlusion", "gradient", "rollout"]
    assert "univariate" in res.maps("group")["task_a"] and res.labels["task_a"].tolist() == [0, 1] * 20
    assert res["task_a"].maps["occlusion"].roi.shape == (40, R)


def test_interpret_tasks_saves_each_task_and_the_tables(task_set):
    res, out = task_set
    names = {p.name for p in out.iterdir()}
    assert {"tasks.csv", "recovery.csv", "networks.csv"} <= names
    assert {f"{t}_{f}" for t in TASK_ROIS for f in ("roi_importance.csv", "recovery.csv", "networks.csv")} <= names
    back = pd.read_csv(out / "recovery.csv")
    np.testing.assert_allclose(back["roi_auc"], res.recovery["roi_auc"])
    assert pd.read_csv(out / "networks.csv").shape == res.networks.shape
    assert not [n for n in names if n.startswith(".")]  # no temporary files left


def test_interpret_tasks_subsets_and_missing_truth(cohort, encoder_probe):
    data, truth = cohort
    one = I.interpret_tasks(encoder_probe.encoder, data, "task_b", ground_truth={}, methods=["gradient"],
                            n_permutations=0)  # fmt: skip
    assert one.tasks == ["task_b"] and one.recovery is None and one.networks is None
    assert one.truth == {} and one.planted == {}
    assert list(one["task_b"].groups) == ["gradient", "univariate"]
    with pytest.raises(ValueError, match="no recovery table"):
        one.recovery_matrix()
    with pytest.raises(KeyError, match=r"unknown task 'task_a'; interpreted tasks: \['task_b'\]"):
        one["task_a"]
    partial = I.interpret_tasks(encoder_probe.encoder, data, ["task_b", "task_a"], methods=["gradient"],
                                ground_truth={"task_a": truth["task_a"]}, n_permutations=0)  # fmt: skip
    assert partial.tasks == ["task_b", "task_a"] and partial.recovery["task"].unique().tolist() == ["task_a"]


def test_interpret_tasks_input_errors(cohort, encoder_probe, tmp_path):
    data, _ = cohort
    enc = encoder_probe.encoder
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['nope'\]; the dataset has \['task_a', 'task_b'\]"):
        I.interpret_tasks(enc, data, ["task_a", "nope"])
    with pytest.raises(ValueError, match="at least one task"):
        I.interpret_tasks(enc, data, [])
    with pytest.raises(ValueError, match="distinct task names"):
        I.interpret_tasks(enc, data, ["task_a", "task_a"])
    with pytest.raises(ValueError, match="expected methods among"):
        I.interpret_tasks(enc, data, methods=["lime"])
    with pytest.raises(ValueError, match="n_permutations a non-negative int"):
        I.interpret_tasks(enc, data, n_permutations=-1)
    with pytest.raises(ValueError, match="needs an atlas"):
        I.interpret_tasks(enc, data, out_dir=tmp_path)
    with pytest.raises(ValueError, match="labelled tasks"):
        I.interpret_tasks(enc, type(data)(data.manifest, data.series, {}))
    assert list(tmp_path.iterdir()) == []  # refused before any work or file
