"""Tests for bmlib.objectives: masking, MRM, BYOL pieces, EMA, and the pretrainer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bmlib.model import BrainEncoder, encoder_config
from bmlib.objectives import (
    BrainMassPretrainer,
    BYOLPredictionHead,
    BYOLProjectionHead,
    ObjectiveConfig,
    byol_loss,
    cosine_momentum,
    ema_update,
    embedding_std,
    masked_contrastive_loss,
    mrm_loss,
    objective_config,
    random_roi_mask,
    resolve_mask_count,
)


def toy_views(batch: int, n_rois: int, seed: int = 0, n_time: int = 80, n_factors: int = 3):
    """Two pseudo-FC views (timepoint subsets) of structured toy scans: (B, R, R) each."""
    g = torch.Generator().manual_seed(seed)
    loadings = torch.randn(batch, n_factors, n_rois, generator=g)  # subject-specific networks
    series = torch.randn(batch, n_time, n_factors, generator=g) @ loadings
    series = series + 0.7 * torch.randn(batch, n_time, n_rois, generator=g)  # (B, T, R)

    def fc(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(1, keepdim=True)
        x = x / x.norm(dim=1, keepdim=True)
        return x.transpose(1, 2) @ x

    keep = int(0.8 * n_time)
    views = []
    for _ in range(2):
        idx = torch.rand(batch, n_time, generator=g).argsort(1)[:, :keep].sort(1).values  # (B, keep)
        views.append(fc(series.gather(1, idx[..., None].expand(-1, -1, n_rois))))
    return views[0], views[1]


# ----------------------------------------------------------------------------- masking
def test_random_roi_mask_exact_count_and_ratio() -> None:
    g = torch.Generator().manual_seed(0)
    m = random_roi_mask(64, 100, count=7, generator=g)
    assert m.dtype == torch.bool and m.shape == (64, 100)
    assert (m.sum(1) == 7).all()
    m = random_roi_mask(5, 100, ratio=0.1, generator=g)
    assert (m.sum(1) == 10).all()
    assert resolve_mask_count(94, ratio=0.1) == 9


def test_random_roi_mask_is_seeded_and_independent_across_samples() -> None:
    a = random_roi_mask(32, 50, count=5, generator=torch.Generator().manual_seed(3))
    b = random_roi_mask(32, 50, count=5, generator=torch.Generator().manual_seed(3))
    c = random_roi_mask(32, 50, count=5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.nonzero().flatten().tolist()) for row in a}) == 32  # rows differ
    # every ROI is masked about equally often (k / R = 0.1)
    freq = random_roi_mask(20000, 50, count=5, generator=torch.Generator().manual_seed(0)).float().mean(0)
    assert torch.allclose(freq, torch.full((50,), 0.1), atol=0.015)


def test_random_roi_mask_validation_messages() -> None:
    with pytest.raises(ValueError, match="give exactly one of ratio or count"):
        random_roi_mask(2, 10)
    with pytest.raises(ValueError, match="give exactly one of ratio or count"):
        random_roi_mask(2, 10, ratio=0.1, count=1)
    with pytest.raises(ValueError, match=r"mask ratio must be a float in \(0, 1\), got 1.5"):
        random_roi_mask(2, 10, ratio=1.5)
    with pytest.raises(ValueError, match="mask ratio 0.01 of 10 ROIs masks 0 ROIs; expected between 1 and 9"):
        random_roi_mask(2, 10, ratio=0.01)
    with pytest.raises(ValueError, match=r"mask count must be an int between 1 and 9 \(n_rois - 1\), got 10"):
        random_roi_mask(2, 10, count=10)
    with pytest.raises(ValueError, match="batch must be a positive int, got 0"):
        random_roi_mask(0, 10, count=1)


# ----------------------------------------------------------------------------- MRM
def test_mrm_loss_uses_masked_rois_only() -> None:
    torch.manual_seed(0)
    target = torch.randn(3, 6, 6)
    pred = torch.randn(3, 6, 6)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 1] = mask[1, 4] = mask[2, 0] = mask[2, 5] = True
    loss = mrm_loss(pred, target, mask)
    expected = torch.stack([((pred[b, i] - target[b, i]) ** 2).mean() for b, i in mask.nonzero()]).mean()
    torch.testing.assert_close(loss, expected)
    changed = pred.clone()
    changed[~mask] = 1e6  # predictions at unmasked ROIs do not matter
    torch.testing.assert_close(mrm_loss(changed, target, mask), loss)
    changed[0, 1, 0] += 1.0  # ... but at masked ones they do
    assert mrm_loss(changed, target, mask) > loss


def test_mrm_loss_checks() -> None:
    with pytest.raises(ValueError, match=r"same shape \(B, R, C\), got \(2, 3, 3\) and \(2, 3, 4\)"):
        mrm_loss(torch.zeros(2, 3, 3), torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="expected mask as a bool tensor"):
        mrm_loss(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"expected mask of shape \(2, 3\), got \(2, 4\)"):
        mrm_loss(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3), torch.zeros(2, 4, dtype=torch.bool))


def test_masked_contrastive_loss() -> None:
    torch.manual_seed(0)
    target = torch.randn(4, 12, 12)
    mask = random_roi_mask(4, 12, count=4, generator=torch.Generator().manual_seed(0))
    perfect = masked_contrastive_loss(target, target, mask, temperature=0.05)
    assert perfect < 0.1  # each predicted row picks out its own ROI
    # identical predictions for all masked ROIs cannot beat chance: loss >= log(k)
    constant = masked_contrastive_loss(torch.randn(4, 1, 12).expand(4, 12, 12), target, mask)
    assert constant >= math.log(4) - 1e-6
    # predictions swapped between masked ROIs are penalised
    idx = mask.nonzero()[:, 1].view(4, 4)
    swapped = target.clone()
    swapped[torch.arange(4)[:, None], idx] = target[torch.arange(4)[:, None], idx.roll(1, dims=1)]
    assert masked_contrastive_loss(swapped, target, mask, temperature=0.05) > 5.0
    with pytest.raises(ValueError, match=r"same number of masked ROIs in every sample, got \[1, 2\]"):
        bad = torch.zeros(2, 12, dtype=torch.bool)
        bad[0, 0] = bad[1, :2] = True
        masked_contrastive_loss(target[:2], target[:2], bad)
    with pytest.raises(ValueError, match="needs at least 2 masked ROIs per sample, got 1"):
        masked_contrastive_loss(target, target, random_roi_mask(4, 12, count=1))


# ----------------------------------------------------------------------------- BYOL pieces
def test_byol_loss_values_and_target_detached() -> None:
    v = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    assert byol_loss(v, v).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(v, 3.0 * v).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert byol_loss(v, -v).item() == pytest.approx(4.0)
    assert byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])).item() == pytest.approx(2.0)
    p, z = v.clone().requires_grad_(True), torch.randn(2, 3, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None
    with pytest.raises(ValueError, match=r"same shape \(B, K\)"):
        byol_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_byol_heads_shapes() -> None:
    proj = BYOLProjectionHead(800, 1600, 1024)
    pred = BYOLPredictionHead(1024, 2048, 1024, norm="layer")
    assert pred(proj(torch.randn(4, 800))).shape == (4, 1024)
    assert isinstance(proj.net[1], nn.BatchNorm1d) and isinstance(pred.net[1], nn.LayerNorm)
    with pytest.raises(ValueError, match="head norm must be 'batch' or 'layer', got 'group'"):
        BYOLProjectionHead(4, 8, 4, norm="group")


def test_ema_update_math() -> None:
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    t0 = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for t, t_old, o in zip(target.parameters(), t0, online.parameters()):
        torch.testing.assert_close(t, 0.9 * t_old + 0.1 * o)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), before))
    ema_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\], got 1.5"):
        ema_update(target, online, 1.5)
    with pytest.raises(ValueError, match="different parameter layouts"):
        ema_update(nn.Linear(3, 3), online, 0.5)


def test_cosine_momentum_schedule() -> None:
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(50, 100) == pytest.approx(0.998)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(500, 100) == pytest.approx(1.0)
    values = [cosine_momentum(s, 20, base=0.9, final=0.99) for s in range(21)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match="total must be a positive number of steps, got 0"):
        cosine_momentum(0, 0)


def test_embedding_std_detects_collapse() -> None:
    torch.manual_seed(0)
    spread = embedding_std(torch.randn(512, 64))
    assert spread.item() == pytest.approx(1 / math.sqrt(64), rel=0.1)
    assert embedding_std(torch.ones(512, 64)).item() == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- configs
def test_objective_config_defaults_round_trip_and_checks() -> None:
    cfg = ObjectiveConfig()
    assert (cfg.mrm_weight, cfg.lra_weight, cfg.contrastive_weight, cfg.ema_base) == (2.0, 1.0, 0.1, 0.996)
    assert ObjectiveConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.n_masked(100) == 10 and ObjectiveConfig(mask_count=5).n_masked(100) == 5
    with pytest.raises(ValueError, match=r"unknown ObjectiveConfig field\(s\) \['mask'\]"):
        ObjectiveConfig.from_dict({"mask": 3})
    with pytest.raises(ValueError, match="mrm_weight must be a number >= 0, got -1"):
        ObjectiveConfig(mrm_weight=-1)
    with pytest.raises(ValueError, match="at least one of mrm_weight"):
        ObjectiveConfig(mrm_weight=0, lra_weight=0, contrastive_weight=0)
    with pytest.raises(ValueError, match="need mask_ratio or mask_count"):
        ObjectiveConfig(mask_ratio=None)
    with pytest.raises(ValueError, match="expected 0 <= ema_base <= ema_final <= 1"):
        ObjectiveConfig(ema_base=0.999, ema_final=0.99)
    with pytest.raises(ValueError, match="unknown objective preset 'xl'"):
        objective_config("xl")


def test_paper_pretrainer_heads_match_original() -> None:
    model = BrainMassPretrainer(encoder_config("paper", 100), objective_config("paper"))
    proj, pred = model.projector.net, model.predictor.net
    assert (proj[0].in_features, proj[0].out_features, proj[3].out_features) == (800, 1600, 1024)
    assert (pred[0].in_features, pred[0].out_features, pred[3].out_features) == (1024, 2048, 1024)
    assert model.n_masked == 10


# ----------------------------------------------------------------------------- pretrainer
def small_pretrainer(**objective: object) -> BrainMassPretrainer:
    torch.manual_seed(0)
    return BrainMassPretrainer(encoder_config("tiny", 20), objective_config("tiny", **objective))


def test_forward_returns_the_contract_keys() -> None:
    model = small_pretrainer()
    v1, v2 = toy_views(6, 20)
    out = model(v1, v2, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "mrm", "lra", "contrastive", "emb_std"}
    assert all(t.ndim == 0 and torch.isfinite(t) for t in out.values())
    assert not out["emb_std"].requires_grad and out["loss"].requires_grad
    cfg = model.objective_cfg
    expected = cfg.lra_weight * out["lra"] + cfg.mrm_weight * out["mrm"] + cfg.contrastive_weight * out["contrastive"]
    torch.testing.assert_close(out["loss"], expected)


def test_masks_come_from_the_generator() -> None:
    model = small_pretrainer()
    v1, v2 = toy_views(6, 20)
    a = model(v1, v2, generator=torch.Generator().manual_seed(5))
    b = model(v1, v2, generator=torch.Generator().manual_seed(5))
    c = model(v1, v2, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a["mrm"], b["mrm"]) and torch.equal(a["loss"], b["loss"])
    assert not torch.equal(a["mrm"], c["mrm"])


def test_every_trainable_parameter_gets_a_gradient_and_target_none() -> None:
    model = small_pretrainer()
    online = {n for n, p in model.named_parameters() if not n.startswith("target_")}
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for n, p in model.named_parameters() if n in online}
    for name in ("encoder.mask_token", "encoder.roi_embed", "mrm_head.net.weight", "predictor.net.0.weight"):
        assert name in online
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.startswith("target_"))
    v1, v2 = toy_views(6, 20)
    model(v1, v2, generator=torch.Generator().manual_seed(0))["loss"].backward()
    missing = [n for n, p in model.named_parameters() if n in online and p.grad is None]
    assert missing == []
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("target_"))


def test_target_starts_as_copy_and_follows_ema() -> None:
    model = small_pretrainer()
    for a, b in zip(model.encoder.parameters(), model.target_encoder.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    old = [p.clone() for p in model.target_encoder.parameters()]
    model.update_target(0.75)
    for t, t0, o in zip(model.target_encoder.parameters(), old, model.encoder.parameters()):
        torch.testing.assert_close(t, 0.75 * t0 + 0.25 * o)
    model.train()
    assert model.encoder.training and not model.target_encoder.training


def test_config_dict_round_trip_rebuilds_the_same_model() -> None:
    model = small_pretrainer(contrastive_weight=0.0, mask_count=3)
    clone = BrainMassPretrainer.from_config(model.config_dict())
    assert clone.config_dict() == model.config_dict()
    clone.load_state_dict(model.state_dict())  # same layout, strict
    assert clone.contrastive_head is None and clone.n_masked == 3
    with pytest.raises(ValueError, match="expected a dict with keys 'encoder' and 'objective'"):
        BrainMassPretrainer.from_config({"objective": {}})


def test_optional_terms_can_be_switched_off() -> None:
    v1, v2 = toy_views(4, 20)
    out = small_pretrainer(contrastive_weight=0.0)(v1, v2)
    assert "contrastive" not in out
    plain = small_pretrainer(mrm_weight=0.0, contrastive_weight=0.0)  # plain BYOL, no masks
    out = plain(v1, v2)
    assert out["mrm"].item() == 0.0 and out["lra"] > 0
    mrm_only = small_pretrainer(lra_weight=0.0)
    out = mrm_only(v1, v2)
    assert out["lra"].item() == 0.0
    torch.testing.assert_close(out["loss"], 2.0 * out["mrm"] + 0.1 * out["contrastive"])
    with pytest.raises(ValueError, match="masked-contrastive term needs >= 2 masked ROIs per view, got 1"):
        small_pretrainer(mask_count=1)


def test_view_checks() -> None:
    model = small_pretrainer()
    v1, v2 = toy_views(4, 20)
    with pytest.raises(ValueError, match=r"expected view1 of shape \(B, 20, 20\), got \(4, 20\)"):
        model(v1[:, 0], v2)
    with pytest.raises(ValueError, match="expected two views of the same scans"):
        model(v1, v2[:3])
    with pytest.raises(ValueError, match="batch of at least 2 scans"):
        model(v1[:1], v2[:1])


def test_tiny_model_learns_on_toy_fc() -> None:
    torch.manual_seed(0)
    model = BrainMassPretrainer(encoder_config("tiny", 20), objective_config("tiny")).train()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for step in range(30):
        v1, v2 = toy_views(16, 20, seed=step % 4)
        out = model(v1, v2, generator=g)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        model.update_target(cosine_momentum(step, 30))
        history.append({k: v.detach().item() for k, v in out.items()})
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < 0.8 * first
    assert sum(h["mrm"] for h in history[-5:]) < sum(h["mrm"] for h in history[:5])
    assert history[-1]["emb_std"] > 0.01  # not collapsed


def test_encoder_of_pretrainer_is_a_brain_encoder() -> None:
    model = small_pretrainer()
    assert isinstance(model.encoder, BrainEncoder)
    assert all(k.startswith(("encoder.", "target_", "projector.", "predictor.", "mrm_head.", "contrastive_head."))
               for k in model.state_dict())
