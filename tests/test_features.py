"""Frozen features: eval mode, no grad, batching, device handling, cache keyed by weights + input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from evaluation_toys import toy_cohort, toy_fc

from bmlib.features import (
    Features,
    cached_features,
    dataset_fc,
    extract_features,
    random_init_like,
    weights_sha256,
)
from bmlib.model import BrainEncoder, encoder_config

R = 10


@pytest.fixture()
def encoder() -> BrainEncoder:
    torch.manual_seed(0)
    return BrainEncoder(encoder_config("tiny", R, dim=16, heads=2, ffn_dim=32, dropout=0.3))


@pytest.fixture(scope="module")
def fc() -> np.ndarray:
    rng = np.random.default_rng(0)
    return toy_fc([rng.standard_normal((40, R)) for _ in range(7)])


def test_shapes_eval_mode_and_batching(encoder: BrainEncoder, fc: np.ndarray) -> None:
    encoder.train()
    a = extract_features(encoder, fc, batch_size=3)
    b = extract_features(encoder, torch.as_tensor(fc), batch_size=256)
    assert isinstance(a, Features) and len(a) == 7
    assert a.pooled.shape == (7, R * 8) and a.rois.shape == (7, R, 16)
    assert a.pooled.dtype == np.float32
    # dropout 0.3 is off (eval mode), so batch size and repetition do not matter
    np.testing.assert_allclose(a.pooled, b.pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.rois, b.rois, rtol=1e-5, atol=1e-6)
    assert encoder.training  # the caller's mode is restored
    with torch.no_grad():
        encoder.eval()
        direct = encoder(torch.as_tensor(fc)).pooled.numpy()
    np.testing.assert_allclose(a.pooled, direct, rtol=1e-5, atol=1e-6)
    assert extract_features(encoder, fc, keep_rois=False).rois is None


def test_no_gradients_tracked(encoder: BrainEncoder, fc: np.ndarray) -> None:
    seen = []
    encoder.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), m.training)))
    extract_features(encoder, fc, batch_size=4)
    assert seen == [(False, False), (False, False)]


def test_input_errors(encoder: BrainEncoder) -> None:
    with pytest.raises(ValueError, match=r"expected FC of shape \(N, R, R\), got shape \(3, 4\)"):
        extract_features(encoder, np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="expected a torch nn.Module encoder"):
        extract_features("encoder", np.zeros((1, R, R), np.float32))
    with pytest.raises(TypeError, match="expected floating-point FC"):
        extract_features(encoder, np.zeros((1, R, R), np.int64))
    with pytest.raises(TypeError, match="dataset with .manifest and .load"):
        extract_features(encoder, [1, 2, 3])


def test_dataset_input_matches_fc_input(encoder: BrainEncoder) -> None:
    cohort = toy_cohort(n_participants=4, n_rois=R, n_timepoints=40)
    ids = cohort.manifest["sample_id"].to_numpy()
    fc = dataset_fc(cohort, ids)
    np.testing.assert_allclose(fc, toy_fc([cohort.load(s) for s in ids]), atol=1e-5)
    from_ds = extract_features(encoder, cohort)
    np.testing.assert_allclose(from_ds.pooled, extract_features(encoder, fc).pooled, atol=1e-5)
    assert list(from_ds.sample_ids) == list(ids)


def test_cache_keyed_by_weights_and_input(tmp_path, encoder: BrainEncoder, fc: np.ndarray) -> None:
    ids = [f"s{i}" for i in range(7)]
    calls = []
    encoder.register_forward_hook(lambda *a: calls.append(1))
    first = cached_features(encoder, fc, ids, tmp_path)
    n = len(calls)
    again = cached_features(encoder, fc, ids, tmp_path)
    assert len(calls) == n  # read from the cache, the encoder did not run
    assert again.key == first.key and list(again.sample_ids) == ids
    np.testing.assert_array_equal(again.pooled, first.pooled)
    assert len(list(tmp_path.glob("features_*.npz"))) == 1
    assert len(list(tmp_path.glob("features_*.json"))) == 1
    changed = copy.deepcopy(encoder)
    with torch.no_grad():
        changed.embed.weight.add_(0.01)
    assert cached_features(changed, fc, ids, tmp_path).key != first.key
    assert cached_features(encoder, fc * 0.5, ids, tmp_path).key != first.key
    assert cached_features(encoder, fc, ids[::-1], tmp_path).key != first.key
    with pytest.raises(ValueError, match="expected 7 sample_ids"):
        cached_features(encoder, fc, ids[:3], tmp_path)
    with pytest.raises(ValueError, match="sample_ids are required"):
        cached_features(encoder, fc)


def test_weights_sha256(encoder: BrainEncoder) -> None:
    twin = copy.deepcopy(encoder)
    assert weights_sha256(twin) == weights_sha256(encoder)
    with torch.no_grad():
        twin.mask_token.add_(1e-3)
    assert weights_sha256(twin) != weights_sha256(encoder)
    engine = pytest.importorskip("bmlib.engine", exc_type=ImportError)
    assert weights_sha256(encoder) == engine.weights_sha256(encoder.state_dict())


def test_random_init_like(encoder: BrainEncoder) -> None:
    state = torch.get_rng_state()
    a = random_init_like(encoder, seed=1)
    b = random_init_like(encoder, seed=1)
    c = random_init_like(encoder, seed=2)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert weights_sha256(a) == weights_sha256(b) != weights_sha256(c)
    assert weights_sha256(a) != weights_sha256(encoder)
    assert type(a) is type(encoder) and a.cfg == encoder.cfg and not a.training
    plain = torch.nn.Sequential(torch.nn.Linear(3, 3))
    assert not torch.equal(random_init_like(plain, 0)[0].weight, plain[0].weight)


def test_random_init_like_keeps_fitted_input_normalisation(encoder: BrainEncoder, fc: np.ndarray) -> None:
    from bmlib.model import input_norm_statistics

    encoder.set_input_norm(*input_norm_statistics(torch.as_tensor(fc)))
    fresh = random_init_like(encoder, seed=3)
    assert torch.equal(fresh.input_mean, encoder.input_mean) and torch.equal(fresh.input_scale, encoder.input_scale)
    assert not torch.equal(fresh.embed.weight, encoder.embed.weight)  # learned weights are new


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(encoder: BrainEncoder, fc: np.ndarray) -> None:
    cpu = extract_features(encoder, fc)
    gpu = extract_features(encoder, fc, device="cuda", batch_size=2)
    np.testing.assert_allclose(gpu.pooled, cpu.pooled, rtol=1e-3, atol=1e-4)
    assert next(encoder.parameters()).device.type == "cpu"  # moved back
