"""BrainMass pretraining objectives: Mask-ROI Modeling (MRM) and Latent Representation Alignment (LRA).

Mask convention (used everywhere in bmlib): a boolean ROI mask of shape ``(B, R)`` where
``True`` means **masked**, i.e. hidden from the encoder.

The pieces are small and free-standing (masking, heads, losses, EMA update, momentum
schedule); :class:`BrainMassPretrainer` wires them together.

Encoder passes per training step (2 online forward+backward, 2 target forward)
------------------------------------------------------------------------------
The original code ran its 16-layer encoder about six times per step (two BYOL views
online, two on the target, one masked pass for the MSE term and one for the masked
contrastive term). Here every online pass serves every objective:

1. the two pFC views are stacked into one batch ``(2B, R, R)`` and each sample gets its
   own random ROI mask;
2. **online** encoder, one pass over the masked views (with gradients): its tokens feed the
   MRM head (masked FC rows, MSE) and the masked-contrastive head, its pooled embeddings
   feed projector + predictor for LRA;
3. **target** (EMA) encoder + projector, one pass over the *unmasked* views, no gradients.
   LRA aligns the online prediction of each masked view with the target projection of the
   other, unmasked view (symmetric BYOL loss).

So the online branch sees a harder view (pFC resampling *and* hidden ROIs) than the
target, as in masked-input BYOL variants, and the step costs about 2 online + 2 target
encoder passes instead of ~6.

The target encoder always runs in eval mode (no dropout: a deterministic teacher); the
target projector follows the pretrainer's train/eval mode like BYOL's (batch statistics
in training).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bmlib.model import BrainEncoder, EncoderConfig

__all__ = [
    "random_roi_mask",
    "resolve_mask_count",
    "MRMHead",
    "mrm_loss",
    "masked_contrastive_loss",
    "BYOLProjectionHead",
    "BYOLPredictionHead",
    "BYOLProjector",
    "BYOLPredictor",
    "byol_loss",
    "ema_update",
    "cosine_momentum",
    "momentum_schedule",
    "embedding_std",
    "ObjectiveConfig",
    "objective_config",
    "BrainMassPretrainer",
]


# ---------------------------------------------------------------------------------------
# Masking (True = masked)
# ---------------------------------------------------------------------------------------
def resolve_mask_count(n_rois: int, *, ratio: float | None = None, count: int | None = None) -> int:
    """Number ``k`` of ROIs to mask per sample from a ratio or a count (exactly one).

    ``k = round(ratio * n_rois)``; ``k`` must leave at least one ROI on each side:
    ``1 <= k <= n_rois - 1``.

    Examples
    --------
    >>> resolve_mask_count(100, ratio=0.1)
    10
    >>> resolve_mask_count(100, count=5)
    5
    """
    if (ratio is None) == (count is None):
        raise ValueError(f"give exactly one of ratio or count, got ratio={ratio!r}, count={count!r}")
    if count is None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
            raise ValueError(f"mask ratio must be a float in (0, 1), got {ratio!r}")
        k = int(round(float(ratio) * n_rois))
        if not 1 <= k <= n_rois - 1:
            raise ValueError(
                f"mask ratio {ratio} of {n_rois} ROIs masks {k} ROIs; expected between 1 and {n_rois - 1}"
            )
        return k
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= n_rois - 1:
        raise ValueError(f"mask count must be an int between 1 and {n_rois - 1} (n_rois - 1), got {count!r}")
    return count


def random_roi_mask(
    batch: int,
    n_rois: int,
    *,
    ratio: float | None = None,
    count: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Pick ``k`` masked ROIs per sample, independently across samples.

    The ROIs are ranked by uniform noise (``argsort``) and the first ``k`` are masked,
    so every sample has exactly ``k`` masked ROIs.

    Parameters
    ----------
    batch : int
        Number of samples ``B``.
    n_rois : int
        Number of ROIs ``R``.
    ratio : float, optional
        Fraction of ROIs to mask (``k = round(ratio * R)``). Exactly one of ratio / count.
    count : int, optional
        Number of ROIs to mask per sample.
    generator : torch.Generator, optional
        Source of randomness (seeded masks); defaults to torch's global RNG.
    device : torch.device or str, optional
        Device of the mask; defaults to the generator's device, else CPU.

    Returns
    -------
    Tensor of bool, shape (B, R)
        ``True`` = masked.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> random_roi_mask(4, 10, count=3, generator=g).sum(1).tolist()
    [3, 3, 3, 3]
    """
    for name, value in (("batch", batch), ("n_rois", n_rois)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    k = resolve_mask_count(n_rois, ratio=ratio, count=count)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator lives on {generator.device} but the mask was asked on {device}")
    noise = torch.rand(batch, n_rois, generator=generator, device=device)  # (B, R)
    masked_idx = noise.argsort(dim=1)[:, :k]  # (B, k)
    mask = torch.zeros(batch, n_rois, dtype=torch.bool, device=device)
    return mask.scatter_(1, masked_idx, True)  # (B, R)


def _check_mask(mask: Tensor, shape: tuple[int, int]) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"expected mask as a bool tensor {shape} with True = masked, got {got}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"expected mask of shape {shape}, got {tuple(mask.shape)}")


def _masked_indices(mask: Tensor, count: int | None) -> Tensor:
    """Indices ``(B, k)`` of the masked ROIs when every sample has exactly ``k`` of them."""
    if count is None:
        per_sample = mask.sum(dim=1)
        if per_sample.numel() == 0 or bool((per_sample != per_sample[0]).any()):
            raise ValueError(
                f"expected the same number of masked ROIs in every sample, got {per_sample.tolist()}"
            )
        count = int(per_sample[0])
    # stable sort puts the True entries first, in ROI order
    return torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)[:, :count]


# ---------------------------------------------------------------------------------------
# Mask-ROI Modeling
# ---------------------------------------------------------------------------------------
class MRMHead(nn.Module):
    """Predict an ROI's FC row from its final token: ``Linear(D, R)``.

    With ``hidden`` set, ``Linear(D, hidden) -> GELU -> Linear(hidden, R)`` instead.
    """

    def __init__(self, dim: int, n_rois: int, hidden: int | None = None) -> None:
        super().__init__()
        if hidden is None:
            self.net: nn.Module = nn.Linear(dim, n_rois)
        else:
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_rois))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)  # (B, R, D) -> (B, R, R)


def mrm_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error of predicted FC rows, averaged over masked ROIs only.

    Parameters
    ----------
    pred : Tensor, shape (B, R, C)
        Predicted rows for every ROI (rows of unmasked ROIs are ignored).
    target : Tensor, shape (B, R, C)
        True FC rows (``C = R`` for full rows).
    mask : Tensor of bool, shape (B, R)
        ``True`` = masked.

    Returns
    -------
    Tensor, scalar
        ``mean over masked (b, i) of mean_j (pred[b, i, j] - target[b, i, j])**2``; 0 when
        nothing is masked.
    """
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(
            f"expected pred and target of the same shape (B, R, C), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    _check_mask(mask, tuple(pred.shape[:2]))
    per_roi = (pred - target.to(pred.dtype)).pow(2).mean(dim=-1)  # (B, R)
    per_roi = torch.where(mask, per_roi, torch.zeros((), dtype=per_roi.dtype, device=per_roi.device))
    return per_roi.sum() / mask.sum().clamp_min(1)


def masked_contrastive_loss(
    pred: Tensor, target: Tensor, mask: Tensor, *, temperature: float = 0.1, count: int | None = None
) -> Tensor:
    """Within-sample InfoNCE between predicted and true rows of the masked ROIs.

    For each sample, the ``k`` predicted rows of its masked ROIs are scored against the
    ``k`` true rows (cosine similarity / temperature, ``(B, k, k)`` logits) and each
    prediction must pick out its own ROI's row (cross-entropy). This is the original
    code's masked-contrastive term, with cosine similarities instead of raw dot products
    (bounded logits).

    Parameters
    ----------
    pred, target : Tensor, shape (B, R, C)
        Predicted rows for every ROI and true FC rows.
    mask : Tensor of bool, shape (B, R)
        ``True`` = masked; every sample must have the same number ``k >= 2`` of masked ROIs.
    temperature : float, default=0.1
        Softmax temperature.
    count : int, optional
        ``k`` if already known (skips the per-sample count check).

    Returns
    -------
    Tensor, scalar
        Mean cross-entropy; ``log(k)`` for uninformative predictions.
    """
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(
            f"expected pred and target of the same shape (B, R, C), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    _check_mask(mask, tuple(pred.shape[:2]))
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    idx = _masked_indices(mask, count)  # (B, k)
    k = idx.shape[1]
    if k < 2:
        raise ValueError(f"the masked-contrastive loss needs at least 2 masked ROIs per sample, got {k}")
    gather = idx[..., None].expand(-1, -1, pred.shape[-1])  # (B, k, C)
    p = F.normalize(pred.gather(1, gather), dim=-1)  # (B, k, C)
    t = F.normalize(target.to(pred.dtype).gather(1, gather), dim=-1)  # (B, k, C)
    logits = (p @ t.transpose(1, 2)) / temperature  # (B, k, k)
    labels = torch.arange(k, device=pred.device).expand(pred.shape[0], k)  # (B, k)
    return F.cross_entropy(logits.reshape(-1, k).float(), labels.reshape(-1))


# ---------------------------------------------------------------------------------------
# Latent Representation Alignment (BYOL)
# ---------------------------------------------------------------------------------------
def _norm_layer(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ValueError(f"head norm must be 'batch' or 'layer', got {kind!r}")


class BYOLProjectionHead(nn.Module):
    """BYOL projector: ``Linear -> BatchNorm1d (or LayerNorm) -> ReLU -> Linear``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, norm: str = "batch") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            _norm_layer(norm, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, in_dim) -> (B, out_dim)


class BYOLPredictionHead(BYOLProjectionHead):
    """BYOL predictor (same layout as the projector, on the online branch only)."""


#: Aliases used in ``docs/architecture.md``.
BYOLProjector = BYOLProjectionHead
BYOLPredictor = BYOLPredictionHead


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL regression loss ``2 - 2 cos(p, z)``, averaged over the batch.

    ``z`` (the target projection) is detached. Call it in both directions and add the two
    for the symmetric loss: ``byol_loss(p1, z2) + byol_loss(p2, z1)``.

    Parameters
    ----------
    p : Tensor, shape (B, K)
        Online predictions.
    z : Tensor, shape (B, K)
        Target projections.

    Returns
    -------
    Tensor, scalar in [0, 4]
        0 for aligned vectors, 4 for opposite ones.

    Examples
    --------
    >>> v = torch.tensor([[1.0, 2.0]])
    >>> round(float(byol_loss(v, v)), 6), round(float(byol_loss(v, -v)), 6)
    (0.0, 4.0)
    """
    if p.ndim != 2 or p.shape != z.shape:
        raise ValueError(f"expected p and z of the same shape (B, K), got {tuple(p.shape)} and {tuple(z.shape)}")
    cos = F.cosine_similarity(p.float(), z.detach().float(), dim=-1)  # (B,)
    return (2.0 - 2.0 * cos).mean()


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """Move ``target`` towards ``online``: ``t <- m * t + (1 - m) * o`` for every parameter.

    Buffers (e.g. BatchNorm running statistics) are copied from ``online``.

    Parameters
    ----------
    target, online : nn.Module
        Modules with identical parameter layouts.
    momentum : float
        ``m`` in [0, 1]; 1 leaves the target unchanged, 0 copies the online weights.
    """
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    t_params, o_params = list(target.parameters()), list(online.parameters())
    if len(t_params) != len(o_params) or any(a.shape != b.shape for a, b in zip(t_params, o_params)):
        raise ValueError("target and online modules have different parameter layouts")
    for t, o in zip(t_params, o_params):
        t.lerp_(o.detach(), 1.0 - float(momentum))
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)


def cosine_momentum(step: int, total: int, base: float = 0.996, final: float = 1.0) -> float:
    """EMA momentum rising from ``base`` to ``final`` on a half cosine over ``total`` steps.

    ``m(step) = final - (final - base) * (cos(pi * step / total) + 1) / 2``; steps past
    ``total`` give ``final``.

    Examples
    --------
    >>> cosine_momentum(0, 100), cosine_momentum(100, 100)
    (0.996, 1.0)
    """
    if total < 1:
        raise ValueError(f"total must be a positive number of steps, got {total!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step!r}")
    frac = min(step, total) / total
    return float(final - (final - base) * (math.cos(math.pi * frac) + 1.0) / 2.0)


#: Alias used in ``docs/architecture.md``.
momentum_schedule = cosine_momentum


def embedding_std(z: Tensor) -> Tensor:
    """Collapse monitor: std over the batch of L2-normalised embeddings, averaged over features.

    About ``1 / sqrt(K)`` for well-spread embeddings ``(B, K)``; 0 when collapsed.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"expected embeddings (B, K) with B >= 2, got {tuple(z.shape)}")
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveConfig:
    """Construction arguments of the pretraining heads and losses.

    Parameters
    ----------
    mask_ratio : float or None, default=0.1
        Fraction of ROIs masked per view (``round(ratio * R)``; 10 of Schaefer-100).
    mask_count : int or None, default=None
        Number of ROIs masked per view; overrides ``mask_ratio`` when set.
    mrm_weight : float, default=2.0
        Weight of the MRM (masked-row MSE) term (original code: 2).
    lra_weight : float, default=1.0
        Weight of the LRA (symmetric BYOL) term.
    contrastive_weight : float, default=0.1
        Weight of the masked-contrastive term (original code: 0.1). It shares the masked
        online pass, so it costs only its head; 0 removes the term and its head.
    contrastive_temperature : float, default=0.1
        Temperature of the masked-contrastive softmax.
    mrm_hidden : int or None, default=None
        Hidden width of the MRM / contrastive heads; None = a single ``Linear(D, R)``.
    proj_hidden : int or None, default=None
        Projector hidden width; None = ``2 * P`` (P = pooled width; 1600 for ``paper``).
    proj_dim : int, default=256
        Projector output width (``paper``: 1024).
    pred_hidden : int or None, default=None
        Predictor hidden width; None = ``2 * proj_dim`` (2048 for ``paper``).
    head_norm : {"batch", "layer"}, default="batch"
        Normalisation inside projector / predictor (BYOL uses BatchNorm).
    ema_base : float, default=0.996
        Initial EMA momentum of the target (cosine schedule to ``ema_final``).
    ema_final : float, default=1.0
        Final EMA momentum.
    """

    mask_ratio: float | None = 0.1
    mask_count: int | None = None
    mrm_weight: float = 2.0
    lra_weight: float = 1.0
    contrastive_weight: float = 0.1
    contrastive_temperature: float = 0.1
    mrm_hidden: int | None = None
    proj_hidden: int | None = None
    proj_dim: int = 256
    pred_hidden: int | None = None
    head_norm: str = "batch"
    ema_base: float = 0.996
    ema_final: float = 1.0

    def __post_init__(self) -> None:
        for name in ("mrm_weight", "lra_weight", "contrastive_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"ObjectiveConfig.{name} must be a number >= 0, got {value!r}")
        if self.mrm_weight + self.lra_weight + self.contrastive_weight <= 0:
            raise ValueError("ObjectiveConfig: at least one of mrm_weight, lra_weight, contrastive_weight must be > 0")
        if self.uses_mask and self.mask_ratio is None and self.mask_count is None:
            raise ValueError("ObjectiveConfig: MRM / contrastive terms need mask_ratio or mask_count")
        if self.mask_ratio is not None and not 0.0 < float(self.mask_ratio) < 1.0:
            raise ValueError(f"ObjectiveConfig.mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        if self.mask_count is not None and (
            isinstance(self.mask_count, bool) or not isinstance(self.mask_count, int) or self.mask_count < 1
        ):
            raise ValueError(f"ObjectiveConfig.mask_count must be a positive int, got {self.mask_count!r}")
        for name in ("mrm_hidden", "proj_hidden", "proj_dim", "pred_hidden"):
            value = getattr(self, name)
            if value is None and name != "proj_dim":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ObjectiveConfig.{name} must be a positive int, got {value!r}")
        if self.head_norm not in ("batch", "layer"):
            raise ValueError(f"ObjectiveConfig.head_norm must be 'batch' or 'layer', got {self.head_norm!r}")
        if not 0.0 <= self.ema_base <= self.ema_final <= 1.0:
            raise ValueError(
                f"expected 0 <= ema_base <= ema_final <= 1, got ema_base={self.ema_base}, ema_final={self.ema_final}"
            )
        if not self.contrastive_temperature > 0:
            raise ValueError(
                f"ObjectiveConfig.contrastive_temperature must be > 0, got {self.contrastive_temperature!r}"
            )

    @property
    def uses_mask(self) -> bool:
        """Whether masks are drawn (an MRM or contrastive term is on)."""
        return self.mrm_weight > 0 or self.contrastive_weight > 0

    def n_masked(self, n_rois: int) -> int:
        """ROIs masked per view for ``n_rois`` ROIs (``mask_count`` wins over ``mask_ratio``)."""
        if self.mask_count is not None:
            return resolve_mask_count(n_rois, count=self.mask_count)
        return resolve_mask_count(n_rois, ratio=self.mask_ratio)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields (JSON- and ``weights_only``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObjectiveConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are refused."""
        if not isinstance(d, Mapping):
            raise TypeError(f"expected a mapping of ObjectiveConfig fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ObjectiveConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**dict(d))


_OBJECTIVE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(proj_dim=128),
    "small": dict(proj_dim=256),
    "base": dict(proj_dim=512),
    # original: projector 800 -> 1600 -> 1024, predictor 1024 -> 2048 -> 1024
    "paper": dict(proj_dim=1024),
}


def objective_config(preset: str = "tiny", **overrides: Any) -> ObjectiveConfig:
    """Objective configuration matching an encoder preset (head widths), with overrides.

    Examples
    --------
    >>> objective_config("paper").proj_dim
    1024
    """
    if preset not in _OBJECTIVE_PRESETS:
        raise ValueError(f"unknown objective preset {preset!r}; expected one of {sorted(_OBJECTIVE_PRESETS)}")
    return ObjectiveConfig.from_dict({**_OBJECTIVE_PRESETS[preset], **overrides})


# ---------------------------------------------------------------------------------------
# The pretrainer
# ---------------------------------------------------------------------------------------
class BrainMassPretrainer(nn.Module):
    """Online encoder + heads and an EMA target, trained with MRM + LRA (+ masked contrastive).

    Parameters
    ----------
    encoder_cfg : EncoderConfig
        Encoder construction arguments.
    objective_cfg : ObjectiveConfig, optional
        Heads and loss weights (defaults: ``ObjectiveConfig()``).

    Attributes
    ----------
    encoder : BrainEncoder
        Online encoder (the one kept for downstream use; state-dict prefix ``"encoder."``).
    projector, predictor : BYOLProjectionHead, BYOLPredictionHead
        Online LRA heads.
    mrm_head : MRMHead
        Predicts the FC rows of masked ROIs.
    contrastive_head : MRMHead or None
        Head of the masked-contrastive term (None when its weight is 0).
    target_encoder, target_projector : BrainEncoder, BYOLProjectionHead
        EMA copies, ``requires_grad=False``, updated by :meth:`update_target`.
    """

    def __init__(self, encoder_cfg: EncoderConfig, objective_cfg: ObjectiveConfig | None = None) -> None:
        super().__init__()
        objective_cfg = ObjectiveConfig() if objective_cfg is None else objective_cfg
        if not isinstance(encoder_cfg, EncoderConfig):
            raise TypeError(f"expected an EncoderConfig, got {type(encoder_cfg).__name__}")
        if not isinstance(objective_cfg, ObjectiveConfig):
            raise TypeError(f"expected an ObjectiveConfig, got {type(objective_cfg).__name__}")
        self.encoder_cfg, self.objective_cfg = encoder_cfg, objective_cfg
        R, D, P = encoder_cfg.n_rois, encoder_cfg.dim, encoder_cfg.pooled_dim
        oc = objective_cfg
        self.n_masked = oc.n_masked(R) if oc.uses_mask else 0
        if oc.contrastive_weight > 0 and self.n_masked < 2:
            raise ValueError(
                f"the masked-contrastive term needs >= 2 masked ROIs per view, got {self.n_masked}; "
                "raise mask_ratio / mask_count or set contrastive_weight=0"
            )
        proj_hidden = oc.proj_hidden or 2 * P
        pred_hidden = oc.pred_hidden or 2 * oc.proj_dim

        self.encoder = BrainEncoder(encoder_cfg)
        self.projector = BYOLProjectionHead(P, proj_hidden, oc.proj_dim, oc.head_norm)
        self.predictor = BYOLPredictionHead(oc.proj_dim, pred_hidden, oc.proj_dim, oc.head_norm)
        self.mrm_head = MRMHead(D, R, oc.mrm_hidden)
        self.contrastive_head = MRMHead(D, R, oc.mrm_hidden) if oc.contrastive_weight > 0 else None

        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False).eval()
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    # -- bookkeeping -----------------------------------------------------------------------
    def train(self, mode: bool = True) -> BrainMassPretrainer:
        """Set train/eval mode; the target encoder always stays in eval mode (no dropout)."""
        super().train(mode)
        self.target_encoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every online parameter: encoder (embeddings, mask token, blocks), heads."""
        return [p for name, p in self.named_parameters() if not name.startswith("target_")]

    def _target_pairs(self) -> Iterable[tuple[nn.Module, nn.Module]]:
        return ((self.target_encoder, self.encoder), (self.target_projector, self.projector))

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA update of the target encoder and projector (see :func:`ema_update`)."""
        for target, online in self._target_pairs():
            ema_update(target, online, momentum)

    def config_dict(self) -> dict[str, dict[str, Any]]:
        """``{"encoder": EncoderConfig dict, "objective": ObjectiveConfig dict}``."""
        return {"encoder": self.encoder_cfg.to_dict(), "objective": self.objective_cfg.to_dict()}

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> BrainMassPretrainer:
        """Build a pretrainer from :meth:`config_dict` output."""
        if not isinstance(d, Mapping) or "encoder" not in d:
            raise ValueError("expected a dict with keys 'encoder' and 'objective' (from config_dict())")
        return cls(EncoderConfig.from_dict(d["encoder"]), ObjectiveConfig.from_dict(d.get("objective", {})))

    # -- training step ---------------------------------------------------------------------
    def _check_views(self, view1: Tensor, view2: Tensor) -> None:
        R = self.encoder_cfg.n_rois
        for name, v in (("view1", view1), ("view2", view2)):
            if not isinstance(v, Tensor):
                raise TypeError(f"expected {name} as a torch.Tensor (B, {R}, {R}), got {type(v).__name__}")
            if v.ndim != 3 or v.shape[1:] != (R, R):
                raise ValueError(f"expected {name} of shape (B, {R}, {R}), got {tuple(v.shape)}")
        if view1.shape != view2.shape:
            raise ValueError(
                f"expected two views of the same scans, got shapes {tuple(view1.shape)} and {tuple(view2.shape)}"
            )
        if view1.shape[0] < 2:
            raise ValueError(f"expected a batch of at least 2 scans (BatchNorm heads), got {view1.shape[0]}")

    def forward(
        self, view1: Tensor, view2: Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """One pretraining step's losses for two pFC views of the same scans.

        Parameters
        ----------
        view1, view2 : Tensor, shape (B, R, R)
            Two pseudo-FC views of the same B scans (row b of each is the same scan).
        generator : torch.Generator, optional
            Draws the ROI masks (on view1's device); the global RNG when None.

        Returns
        -------
        dict of str to Tensor
            ``"loss"`` (scalar to backpropagate), ``"mrm"``, ``"lra"``, ``"contrastive"``
            (when its weight is > 0), all scalars, and ``"emb_std"`` (detached collapse
            monitor, :func:`embedding_std` of the online pooled embeddings).
        """
        self._check_views(view1, view2)
        oc = self.objective_cfg
        B, R = view1.shape[0], view1.shape[1]
        views = torch.cat([view1, view2])  # (2B, R, R)
        mask = (
            random_roi_mask(2 * B, R, count=self.n_masked, generator=generator, device=views.device)
            if oc.uses_mask
            else None
        )  # (2B, R), True = masked

        online = self.encoder(views, mask)  # tokens (2B, R, D), pooled (2B, P)
        zero = online.pooled.new_zeros(()).float()
        out: dict[str, Tensor] = {}

        if mask is not None and oc.mrm_weight > 0:
            out["mrm"] = mrm_loss(self.mrm_head(online.tokens), views, mask)
        else:
            out["mrm"] = zero
        if self.contrastive_head is not None and mask is not None:
            out["contrastive"] = masked_contrastive_loss(
                self.contrastive_head(online.tokens),
                views,
                mask,
                temperature=oc.contrastive_temperature,
                count=self.n_masked,
            )

        if oc.lra_weight > 0:
            h1, h2 = online.pooled[:B], online.pooled[B:]  # (B, P) each
            p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))  # (B, K)
            with torch.no_grad():
                target_pooled = self.target_encoder(views).pooled  # (2B, P), unmasked views
                z1 = self.target_projector(target_pooled[:B])  # (B, K)
                z2 = self.target_projector(target_pooled[B:])  # (B, K)
            out["lra"] = byol_loss(p1, z2) + byol_loss(p2, z1)
        else:
            out["lra"] = zero

        loss = oc.lra_weight * out["lra"] + oc.mrm_weight * out["mrm"]
        if "contrastive" in out:
            loss = loss + oc.contrastive_weight * out["contrastive"]
        out["loss"] = loss
        out["emb_std"] = embedding_std(online.pooled)
        return out
