"""Models: inner CV on training data only, preprocessing inside folds, torch models, registry."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from evaluation_toys import toy_fc, toy_series
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score

from bmlib.evaluation.models import (
    MODEL_NAMES,
    BrainNetCNN,
    BrainNetCNNModel,
    E2EBlock,
    FineTuneModel,
    ModelInputs,
    SklearnModel,
    build_model,
    inner_cv,
)
from bmlib.model import BrainEncoder, encoder_config

SEEN_FIT: list[np.ndarray] = []
SEEN_SCORE: list[np.ndarray] = []


class SpyClassifier(ClassifierMixin, BaseEstimator):
    """Records the sample ids (column 0 of X, before scaling) that every fit and score saw."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> SpyClassifier:
        SEEN_FIT.append(np.asarray(X)[:, 0].copy())
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        SEEN_SCORE.append(np.asarray(X)[:, 0].copy())
        return np.asarray(X)[:, 1] * self.C


@pytest.fixture(scope="module")
def toy() -> tuple[ModelInputs, np.ndarray, np.ndarray]:
    manifest, series = toy_series(30, n_sites=3, sessions=2, n_rois=10, n_timepoints=80, effect=1.0, seed=3)
    ids = manifest["sample_id"].to_numpy()
    sl = [series[s] for s in ids]
    inputs = ModelInputs(sample_ids=ids, fc=toy_fc(sl), series=tuple(sl),
                         features={"index": np.c_[np.arange(len(ids)), np.random.default_rng(0).normal(size=len(ids))]})
    y = (manifest["diagnosis"].to_numpy() == "patient").astype(int)
    return inputs, y, manifest["participant"].to_numpy()


def _split(y: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    parts = np.unique(groups)
    test_parts = np.random.default_rng(seed).choice(parts, size=len(parts) // 3, replace=False)
    test = np.isin(groups, test_parts)
    return np.flatnonzero(~test), np.flatnonzero(test)


def test_inner_cv_sees_training_part_only(toy) -> None:
    inputs, y, groups = toy
    train, test = _split(y, groups)
    SEEN_FIT.clear()
    SEEN_SCORE.clear()
    model = SklearnModel("features:index", SpyClassifier(), {"clf__C": [0.5, 1.0]}, scale=False, inner_splits=3)
    model.fit(inputs.take(train), y[train], groups[train])
    # 2 candidates x 3 inner folds + the refit on the whole training part
    assert len(SEEN_FIT) == 7
    seen = np.concatenate(SEEN_FIT + SEEN_SCORE).astype(int)
    assert set(seen) <= set(train)
    assert set(SEEN_FIT[-1].astype(int)) == set(train)
    # inner folds are grouped by participant: the ids scored never overlap the ids fitted on
    for fitted, scored in zip(SEEN_FIT[:-1], SEEN_SCORE[: len(SEEN_FIT) - 1], strict=True):
        assert not set(groups[fitted.astype(int)]) & set(groups[scored.astype(int)])
        assert len(fitted) < len(train)
    SEEN_SCORE.clear()
    model.decision_function(inputs.take(test))
    assert set(SEEN_SCORE[0].astype(int)) == set(test)


def test_scaler_and_pca_fitted_inside_the_fold(toy) -> None:
    inputs, y, groups = toy
    train, _ = _split(y, groups, seed=1)
    model = SklearnModel("fc_vector", build_model("fc_logreg").estimator, {"clf__C": [0.1, 1.0]}, pca=5)
    model.fit(inputs.take(train), y[train], groups[train])
    X_train = inputs.take(train).get("fc_vector")
    scaler = model.pipeline_.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, X_train.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(scaler.mean_, inputs.get("fc_vector").mean(axis=0), atol=1e-4)
    assert model.pipeline_.named_steps["pca"].n_components_ == 5
    assert model.best_params_["clf__C"] in (0.1, 1.0)


def test_inner_cv_rules() -> None:
    y = np.array([0, 0, 1, 1])
    assert inner_cv(y, np.array(["a", "b", "c", "d"]), 5, 0).n_splits == 2
    assert inner_cv(y, np.array(["a", "a", "c", "d"]), 5, 0) is None


@pytest.mark.parametrize("name", ["fc_logreg", "fc_svm", "tangent_logreg"])
def test_baselines_find_planted_effect(toy, name: str) -> None:
    inputs, y, groups = toy
    train, test = _split(y, groups, seed=2)
    model = build_model(name, seed=0, smoke=True).fit(inputs.take(train), y[train], groups[train])
    score = model.decision_function(inputs.take(test))
    assert score.shape == (len(test),)
    assert roc_auc_score(y[test], score) > 0.8


def test_few_shot_k1_fits_without_inner_cv(toy) -> None:
    inputs, y, groups = toy
    idx = np.concatenate([np.flatnonzero(groups == groups[y == c][0]) for c in (0, 1)])
    model = build_model("fc_logreg", smoke=True).fit(inputs.take(idx), y[idx], groups[idx])
    assert model.search_ is None
    assert model.decision_function(inputs).shape == (len(y),)


def test_brainnetcnn_layers_and_training(toy) -> None:
    x = torch.randn(3, 2, 7, 7)
    block = E2EBlock(2, 4, 7)
    out = block(x)
    assert out.shape == (3, 4, 7, 7)
    # E2E output at (i, j) depends on row i and column j only
    x2 = x.clone()
    x2[:, :, 5, 6] += 1.0
    diff = (block(x2) - out).abs().sum(dim=(0, 1))
    changed = set(zip(*np.nonzero(diff.detach().numpy() > 1e-6), strict=True))
    assert changed <= {(i, j) for i in range(7) for j in range(7) if i == 5 or j == 6}
    assert BrainNetCNN(7)(torch.randn(4, 7, 7)).shape == (4,)
    with pytest.raises(ValueError, match=r"expected FC of shape \(B, R, R\)"):
        BrainNetCNN(7)(torch.randn(7, 7))
    inputs, y, groups = toy
    train, test = _split(y, groups, seed=4)
    model = BrainNetCNNModel({"e2e": (8,), "e2n": 16, "n2g": 16, "hidden": 16}, epochs=40, patience=6, seed=0)
    model.fit(inputs.take(train), y[train], groups[train])
    assert len(model.history_) <= 40 and np.isfinite(model.history_[0]["val_loss"])
    assert roc_auc_score(y[test], model.decision_function(inputs.take(test))) > 0.7
    again = BrainNetCNNModel({"e2e": (8,), "e2n": 16, "n2g": 16, "hidden": 16}, epochs=3, seed=0)
    first = again.fit(inputs.take(train), y[train], groups[train]).decision_function(inputs.take(test))
    second = again.fit(inputs.take(train), y[train], groups[train]).decision_function(inputs.take(test))
    np.testing.assert_allclose(first, second)  # seeded


def test_validation_split_is_grouped(toy) -> None:
    _, y, groups = toy
    model = BrainNetCNNModel(val_fraction=0.25, seed=1)
    train, val = model._validation_split(y, groups)
    assert val is not None and not set(groups[train]) & set(groups[val])
    assert len(np.unique(y[val])) == 2


def test_finetune_copies_and_freezes(toy) -> None:
    inputs, y, groups = toy
    torch.manual_seed(0)
    enc = BrainEncoder(encoder_config("tiny", 10, depth=2, dim=16, heads=2, ffn_dim=32))
    before = copy.deepcopy(enc.state_dict())
    train, test = _split(y, groups, seed=5)
    model = FineTuneModel(enc, train_blocks=1, epochs=3, seed=0).fit(inputs.take(train), y[train], groups[train])
    for k, v in enc.state_dict().items():  # the pretrained encoder is untouched
        torch.testing.assert_close(v, before[k])
    assert all(n.startswith(("blocks.1.", "norm.", "readout.")) for n in model.trainable_)
    assert any(n.startswith("blocks.1.") for n in model.trainable_)
    tuned = model.module_.encoder.state_dict()
    torch.testing.assert_close(tuned["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"])
    assert model.decision_function(inputs.take(test)).shape == (len(test),)
    scratch = FineTuneModel(enc, pretrained=False, epochs=1, seed=0)
    scratch.fit(inputs.take(train), y[train], groups[train])
    assert not torch.equal(scratch.module_.encoder.state_dict()["embed.weight"], before["embed.weight"])
    with pytest.raises(ValueError, match="train_blocks=5 but the encoder has 2 blocks"):
        FineTuneModel(enc, train_blocks=5, epochs=1).fit(inputs.take(train), y[train], groups[train])


def test_registry_and_input_errors(toy) -> None:
    inputs, y, groups = toy
    assert {"probe_logreg", "probe_svm", "finetune", "scratch", "random_probe", "fc_logreg", "fc_svm",
            "tangent_logreg", "brainnetcnn"} <= set(MODEL_NAMES)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope")
    with pytest.raises(ValueError, match="needs a pretrained encoder"):
        build_model("finetune")
    with pytest.raises(ValueError, match="needs features 'pretrained'"):
        build_model("probe_logreg", encoder=torch.nn.Linear(2, 2)).fit(inputs, y, groups)
    with pytest.raises(ValueError, match="expected both classes"):
        build_model("fc_logreg").fit(inputs, np.zeros_like(y), groups)
    with pytest.raises(ValueError, match=r"expected fc of shape \(3, R, R\)"):
        ModelInputs(sample_ids=np.array(["a", "b", "c"]), fc=np.zeros((2, 4, 4)))
    with pytest.raises(RuntimeError, match="call fit"):
        build_model("fc_logreg").decision_function(inputs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_models_on_cuda(toy) -> None:
    inputs, y, groups = toy
    enc = BrainEncoder(encoder_config("tiny", 10, depth=1, dim=16, heads=2, ffn_dim=32))
    for model in (FineTuneModel(enc, epochs=2, device="cuda"), BrainNetCNNModel(epochs=2, device="cuda")):
        score = model.fit(inputs, y, groups).decision_function(inputs)
        assert score.shape == (len(y),) and np.isfinite(score).all()
    assert next(enc.parameters()).device.type == "cpu"
