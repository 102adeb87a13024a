"""Tests for bmlib.model: presets, masking without leakage, attention, checkpoints."""

from __future__ import annotations

import pytest
import torch

from bmlib.model import (
    CHECKPOINT_FORMAT,
    PRESETS,
    BrainEncoder,
    EncoderConfig,
    INPUT_NORM_MIN_STD,
    FeedForward,
    count_parameters,
    encoder_config,
    input_norm_statistics,
    load_encoder,
)


def toy_fc(batch: int, n_rois: int, seed: int = 0, n_time: int = 60) -> torch.Tensor:
    """Random but valid correlation matrices (B, R, R)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_time, n_rois, generator=g) + torch.randn(batch, n_time, 1, generator=g)
    x = x - x.mean(1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True)
    return x.transpose(1, 2) @ x


def random_mask(batch: int, n_rois: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(batch, n_rois, generator=g).argsort(1)[:, :k]
    return torch.zeros(batch, n_rois, dtype=torch.bool).scatter_(1, idx, True)


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_preset_shapes(preset: str) -> None:
    torch.manual_seed(0)
    cfg = encoder_config(preset, 20)
    enc = BrainEncoder(cfg).eval()
    out = enc(toy_fc(3, 20))
    assert out.tokens.shape == (3, 20, cfg.dim)
    assert out.pooled.shape == (3, cfg.pooled_dim) == (3, 20 * cfg.readout_features)
    assert (cfg.readout, cfg.input_norm) == ("concat", "edge")
    assert out.attention is None
    assert torch.isfinite(out.tokens).all()


def test_mean_readout_pools_tokens() -> None:
    enc = BrainEncoder(encoder_config("tiny", 20, readout="mean")).eval()
    out = enc(toy_fc(3, 20))
    assert enc.cfg.pooled_dim == enc.cfg.dim
    torch.testing.assert_close(out.pooled, out.tokens.mean(1))


# ----------------------------------------------------------------------------- input normalisation
def test_input_norm_statistics_match_numpy() -> None:
    import numpy as np

    fc = toy_fc(9, 12, seed=3)
    mean, std = input_norm_statistics(fc, chunk=4)  # several chunks
    ref = fc.double().numpy()
    np.testing.assert_allclose(mean.numpy(), ref.mean(0), atol=1e-6)
    np.testing.assert_allclose(std.numpy(), ref.std(0, ddof=1), atol=1e-6)
    with pytest.raises(ValueError, match=r"at least 2 scans"):
        input_norm_statistics(fc[:1])
    with pytest.raises(ValueError, match=r"shape \(N, R, R\), got \(9, 144\)"):
        input_norm_statistics(fc.flatten(1))


def test_edge_input_norm_standardises_tokens_input_and_is_saved() -> None:
    torch.manual_seed(0)
    cfg = encoder_config("tiny", 12)
    enc = BrainEncoder(cfg).eval()
    fc = toy_fc(6, 12, seed=1)
    before = enc.embed_tokens(fc)
    mean, std = input_norm_statistics(fc)
    enc.set_input_norm(mean, std)
    # what the embedding sees: (fc - mean) / max(std, floor)
    z = (fc - mean) / std.clamp_min(INPUT_NORM_MIN_STD)
    expected = enc.embed(z) + enc.roi_embed
    torch.testing.assert_close(enc.embed_tokens(fc), expected)
    assert not torch.allclose(before, expected)
    # the diagonal (std 0) is mapped to 0, not divided by zero
    assert torch.isfinite(enc(fc).pooled).all()
    # statistics travel with the weights and a fresh encoder starts at the identity
    fresh = BrainEncoder(cfg)
    assert torch.equal(fresh.input_mean, torch.zeros(12, 12)) and torch.equal(fresh.input_scale, torch.ones(12, 12))
    fresh.load_state_dict(enc.state_dict())
    torch.testing.assert_close(fresh.eval()(fc).pooled, enc(fc).pooled)
    with pytest.raises(ValueError, match=r"shape \(12, 12\), got \(11, 11\)"):
        enc.set_input_norm(mean[:11, :11], std[:11, :11])
    with pytest.raises(ValueError, match="finite"):
        enc.set_input_norm(mean * float("nan"), std)
    raw = BrainEncoder(encoder_config("tiny", 12, input_norm="none"))
    assert "input_mean" not in dict(raw.named_buffers())
    with pytest.raises(ValueError, match="input_norm='none'"):
        raw.set_input_norm(mean, std)
    with pytest.raises(ValueError, match="input_norm must be one of"):
        encoder_config("tiny", 12, input_norm="zscore")


def test_masked_columns_stay_hidden_with_edge_input_norm() -> None:
    torch.manual_seed(0)
    enc = BrainEncoder(encoder_config("tiny", 12)).eval()
    fc = toy_fc(4, 12, seed=2)
    enc.set_input_norm(*input_norm_statistics(fc))
    mask = random_mask(4, 12, 3, seed=5)
    other = fc.clone()
    changed = mask[:, :, None] | mask[:, None, :]  # masked rows and columns get other values
    other[changed] = toy_fc(4, 12, seed=9)[changed]
    torch.testing.assert_close(enc.embed_tokens(fc, mask), enc.embed_tokens(other, mask), rtol=0, atol=0)


def test_paper_preset_matches_original_configuration_and_parameter_formula() -> None:
    cfg = encoder_config("paper", 100)
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.ffn_dim) == (100, 16, 10, 2048)
    assert (cfg.readout, cfg.readout_features, cfg.pooled_dim) == ("concat", 8, 800)
    enc = BrainEncoder(cfg)
    R, D, F, L, f = 100, 100, 2048, 16, 8
    per_block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (D * F + F) + (F * D + D)
    expected = (R * D + D) + R * D + D + L * per_block + 2 * D + (D * f + f)
    assert count_parameters(enc) == expected
    # run a tiny batch only
    out = enc.eval()(toy_fc(2, 100))
    assert out.tokens.shape == (2, 100, 100) and out.pooled.shape == (2, 800)


def test_paper_preset_needs_width_divisible_by_heads() -> None:
    with pytest.raises(ValueError, match=r"dim \(94\) must be divisible by heads \(10\)"):
        encoder_config("paper", 94)
    cfg = encoder_config("paper", 94, heads=2)
    assert cfg.dim == 94 and cfg.pooled_dim == 94 * 8


def test_encoder_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown encoder preset 'huge'"):
        encoder_config("huge", 10)
    with pytest.raises(ValueError, match=r"unknown EncoderConfig field\(s\) \['width'\]"):
        encoder_config("tiny", 10, width=3)
    with pytest.raises(ValueError, match="activation must be one of"):
        EncoderConfig(n_rois=10, activation="tanh")
    with pytest.raises(ValueError, match="readout must be one of"):
        EncoderConfig(n_rois=10, readout="max")
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        EncoderConfig(n_rois=10, depth=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        EncoderConfig(n_rois=10, dropout=1.0)
    with pytest.raises(TypeError, match="expected an EncoderConfig"):
        BrainEncoder({"n_rois": 10})  # type: ignore[arg-type]
    assert set(PRESETS) == {"tiny", "small", "base", "paper"}


def test_config_round_trip() -> None:
    cfg = encoder_config("paper", 100, checkpoint_activations=True)
    d = cfg.to_dict()
    assert EncoderConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match=r"unknown EncoderConfig field\(s\) \['bogus'\]"):
        EncoderConfig.from_dict({**d, "bogus": 1})


def test_forward_input_checks() -> None:
    enc = BrainEncoder(encoder_config("tiny", 10))
    with pytest.raises(ValueError, match=r"expected fc of shape \(B, 10, 10\), got \(2, 10, 9\)"):
        enc(torch.zeros(2, 10, 9))
    with pytest.raises(TypeError, match="expected a floating-point fc tensor"):
        enc(torch.zeros(2, 10, 10, dtype=torch.long))
    with pytest.raises(TypeError, match="expected mask as a bool tensor"):
        enc(toy_fc(2, 10), torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r"expected mask of shape \(2, 10\) to match fc, got \(3, 10\)"):
        enc(toy_fc(2, 10), torch.zeros(3, 10, dtype=torch.bool))


# ----------------------------------------------------------------------------- masking
@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_masked_rois_do_not_reach_the_encoder(preset: str) -> None:
    torch.manual_seed(0)
    R = 20
    overrides = {"heads": 4, "depth": 4} if preset == "paper" else {}  # paper: concat read-out, fused FFN
    enc = BrainEncoder(encoder_config(preset, R, **overrides)).eval()
    fc = toy_fc(4, R)
    mask = random_mask(4, R, k=5)
    # overwrite every masked row and column with other values (keep it symmetric)
    noise = 10 * toy_fc(4, R, seed=1)
    hidden = mask[:, :, None] | mask[:, None, :]  # (B, R, R)
    fc2 = torch.where(hidden, noise, fc)
    assert not torch.equal(fc, fc2)
    with torch.no_grad():
        a, b = enc(fc, mask), enc(fc2, mask)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    # ... but without the mask the same change is visible
    with torch.no_grad():
        assert not torch.equal(enc(fc).tokens, enc(fc2).tokens)

    # gradient of the output w.r.t. masked entries is exactly zero; others are not
    x = fc.clone().requires_grad_(True)
    out = enc(x, mask)
    (out.tokens.square().sum() + out.pooled.sum()).backward()
    assert torch.count_nonzero(x.grad[hidden]) == 0
    assert torch.count_nonzero(x.grad[~hidden]) == (~hidden).sum()


def test_masked_tokens_are_mask_token_plus_roi_identity() -> None:
    torch.manual_seed(0)
    enc = BrainEncoder(encoder_config("tiny", 12))
    mask = random_mask(3, 12, k=4)
    tokens = enc.embed_tokens(toy_fc(3, 12), mask)  # (B, R, D)
    b, i = mask.nonzero(as_tuple=True)
    expected = enc.mask_token + enc.roi_embed[i]
    torch.testing.assert_close(tokens[b, i], expected, rtol=0, atol=0)
    # visible tokens see only visible columns: zeroing masked columns by hand gives the same
    fc = toy_fc(3, 12)
    manual = enc.embed(fc * (~mask)[:, None, :].float()) + enc.roi_embed
    vis = ~mask
    torch.testing.assert_close(enc.embed_tokens(fc, mask)[vis], manual[vis])


# ----------------------------------------------------------------------------- attention
def test_return_attention_matches_fast_path() -> None:
    torch.manual_seed(0)
    cfg = encoder_config("tiny", 16, depth=3)
    enc = BrainEncoder(cfg).eval()
    fc, mask = toy_fc(2, 16), random_mask(2, 16, k=3)
    with torch.no_grad():
        fast = enc(fc, mask)
        slow = enc(fc, mask, return_attention=True)
    assert slow.attention is not None and len(slow.attention) == 3
    for w in slow.attention:
        assert w.shape == (2, cfg.heads, 16, 16)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, cfg.heads, 16))
    torch.testing.assert_close(fast.tokens, slow.tokens, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- fast paths
def test_fused_relu_ffn_matches_reference_modules() -> None:
    torch.manual_seed(0)
    ffn = FeedForward(16, 64, activation="relu").double()
    x = torch.randn(3, 7, 16, dtype=torch.double, requires_grad=True)
    params = list(ffn.parameters())
    ref = ffn.fc2(torch.relu(ffn.fc1(x)))  # the stock modules
    y = ffn(x)
    torch.testing.assert_close(y, ref)
    g_fused = torch.autograd.grad(y.square().sum(), [x, *params])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *params])
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda inp: ffn(inp), (x,))
    # chunked inference path (chunks of 5 rows)
    ffn.chunk_elements = 64 * 5
    with torch.no_grad():
        torch.testing.assert_close(ffn(x), ref)


def test_fused_ffn_under_bf16_autocast_returns_fp32_grads() -> None:
    torch.manual_seed(0)
    ffn = FeedForward(8, 32, activation="relu")
    x = torch.randn(2, 5, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ffn(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ffn.parameters())
    torch.testing.assert_close(y.float(), ffn.fc2(torch.relu(ffn.fc1(x))), rtol=0.05, atol=0.05)


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    cfg = encoder_config("tiny", 10, activation="relu")
    a = BrainEncoder(cfg)
    b = BrainEncoder(EncoderConfig.from_dict({**cfg.to_dict(), "checkpoint_activations": True}))
    b.load_state_dict(a.state_dict())
    fc, mask = toy_fc(3, 10), random_mask(3, 10, k=2)
    for enc in (a, b):
        enc(fc, mask).pooled.square().sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_dropout_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    enc = BrainEncoder(encoder_config("tiny", 10, dropout=0.5, activation="relu"))
    fc = toy_fc(2, 10)
    enc.train()
    assert not torch.equal(enc(fc).tokens, enc(fc).tokens)
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc(fc).tokens, enc(fc).tokens)


# ----------------------------------------------------------------------------- checkpoints
def _save_checkpoint(path, card=None, fmt=CHECKPOINT_FORMAT):  # type: ignore[no-untyped-def]
    from bmlib.objectives import BrainMassPretrainer, objective_config

    torch.manual_seed(0)
    enc_cfg = encoder_config("tiny", 20)
    obj_cfg = objective_config("tiny")
    model = BrainMassPretrainer(enc_cfg, obj_cfg)
    ckpt = {
        "format": fmt,
        "encoder_config": enc_cfg.to_dict(),
        "objective_config": obj_cfg.to_dict(),
        "model": model.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "rng": {"torch": torch.get_rng_state()},
        "generator_state": torch.Generator().manual_seed(1).get_state(),
        "step": 3,
        "epoch": 1,
        "train_config": {"lr": 3e-4},
        "card": card if card is not None else {"name": "toy"},
    }
    torch.save(ckpt, path)
    return model


def test_load_encoder_rebuilds_from_the_checkpoint_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "checkpoint.pt"
    model = _save_checkpoint(path)
    enc, card = load_encoder(path)
    assert card == {"name": "toy"}
    assert not enc.training and enc.cfg == model.encoder.cfg
    fc, mask = toy_fc(2, 20), random_mask(2, 20, k=2)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(fc, mask).pooled, model.encoder(fc, mask).pooled, rtol=0, atol=0)
        # the target encoder's weights are not what was loaded
        model.target_encoder.embed.weight.add_(1.0)
        torch.testing.assert_close(enc(fc).tokens, model.encoder(fc).tokens, rtol=0, atol=0)


def test_load_encoder_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_encoder(tmp_path / "missing.pt")
    path = tmp_path / "old.pt"
    _save_checkpoint(path, fmt="something-else")
    with pytest.raises(ValueError, match="expected checkpoint format 'bmlib-checkpoint-v1'"):
        load_encoder(path)
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}}, path)
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['encoder_config'\]"):
        load_encoder(path)
