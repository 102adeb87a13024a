"""The BrainMass encoder: a transformer over ROI tokens of a functional-connectivity matrix.

Each row of an FC matrix ``(B, R, R)`` is one token: ROI ``i`` is described by its
connectivity to all ``R`` ROIs. Tokens are embedded linearly to width ``D``, given a
learnable ROI identity embedding, and passed through pre-norm transformer blocks
(fused QKV projection, :func:`torch.nn.functional.scaled_dot_product_attention`). The
encoder returns per-ROI embeddings ``(B, R, D)`` and a pooled subject embedding ``(B, P)``.

Masking (used by Mask-ROI Modeling and by occlusion maps) follows the convention of
:mod:`bmlib.objectives`: ``True`` means masked. For a masked ROI set ``M`` of a sample,

* every token's input vector has its entries at the columns in ``M`` set to zero, so the
  masked rows cannot be read off the symmetric matrix through the visible rows, and
* the tokens of the ROIs in ``M`` are replaced by a learned mask token (plus their ROI
  identity embedding, so the model knows *which* ROI it has to reconstruct).

No value of a masked ROI's row or column reaches the transformer (tested bit for bit).
A zeroed column is told apart from a true zero correlation through the mask tokens
themselves, so no extra "column visible" indicator is added.

Presets (:data:`PRESETS`, :func:`encoder_config`):

======  =====  =====  =====  =====  ======================================  ==========  ==========
preset  dim    depth  heads  ffn    readout                                 activation  input_norm
======  =====  =====  =====  =====  ======================================  ==========  ==========
tiny    64     2      4      128    concat: Linear(D->8) per ROI (8R)       gelu        edge
small   128    4      4      256    concat: Linear(D->8) per ROI (8R)       gelu        edge
base    256    8      8      1024   concat: Linear(D->8) per ROI (8R)       gelu        edge
paper   R      16     10     2048   concat: Linear(D->8) per ROI (8R)       relu        none
======  =====  =====  =====  =====  ======================================  ==========  ==========

Why ``tiny``/``small``/``base`` use the concatenated read-out and edge-standardised input
(measured on the default corpus, 810 participants with two sessions, session-to-session
identification from the pooled embedding, ``tiny``, 8 epochs): with the mean of tokens the
pooled embedding of a random or a pretrained encoder identifies 0.6% of participants
(chance 0.1%), since averaging over ROIs cancels what is individual; a read-out that keeps
ROI identity (concat) keeps it. FC rows are dominated by the group FC that every scan
shares; standardising each edge across the pretraining scans (``input_norm="edge"``) lets
the tokens carry the individual deviations (random-init tokens: 0.04 -> 0.28). With both,
pretraining raises identification above the random-init encoder of the same architecture.
``paper`` keeps the original's raw-FC input; pass ``input_norm="edge"`` to change it.

``paper`` follows the original BrainMass code (width = number of ROIs, 16 layers, 10
heads, FFN 2048, ReLU, an 8-feature-per-ROI read-out with LeakyReLU, flattened to
``8 * R`` = 800 features for Schaefer-100) with three changes: pre-norm blocks with a final
LayerNorm (the original used post-norm ``nn.TransformerEncoderLayer``), learnable ROI
identity embeddings, and no dropout (the original's 0.1). Dropout is rarely used for
self-supervised pretraining and, on CPU, drawing its random masks cost about 40% of a
training step at this size; it stays available as ``dropout=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "PRESETS",
    "EncoderConfig",
    "EncoderOutput",
    "Attention",
    "FeedForward",
    "Block",
    "BrainEncoder",
    "encoder_config",
    "count_parameters",
    "input_norm_statistics",
    "INPUT_NORM_MIN_STD",
    "load_encoder",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "bmlib-checkpoint-v1"

_ACTIVATIONS = ("gelu", "relu")
_READOUTS = ("mean", "concat")
_INPUT_NORMS = ("none", "edge")
#: Smallest between-scan standard deviation an edge is divided by (``input_norm="edge"``).
INPUT_NORM_MIN_STD = 0.05


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    """Construction arguments of :class:`BrainEncoder` (stored in every checkpoint).

    Parameters
    ----------
    n_rois : int
        Number of ROIs ``R``: tokens per sample and length of each token's input row.
    dim : int, default=64
        Token width ``D``.
    depth : int, default=2
        Number of transformer blocks.
    heads : int, default=4
        Attention heads; must divide ``dim``.
    ffn_dim : int, default=128
        Hidden width of each block's feed-forward network.
    dropout : float, default=0.0
        Dropout on attention weights, after the attention projection, after the FFN
        activation and after the FFN output (training mode only).
    activation : {"gelu", "relu"}, default="gelu"
        FFN non-linearity. ReLU keeps one FFN tensor per block for backward instead of
        two (less activation memory), which matters at the ``paper`` size.
    readout : {"mean", "concat"}, default="mean"
        Pooled subject embedding: ``"mean"`` averages the ``R`` final tokens (``P = D``);
        ``"concat"`` maps every token to ``readout_features`` with a shared
        ``Linear(D, readout_features)`` + LeakyReLU and flattens (``P = R * readout_features``).
    readout_features : int, default=8
        Features per ROI of the ``"concat"`` read-out (ignored by ``"mean"``).
    qkv_bias : bool, default=True
        Bias in the fused query/key/value projection.
    norm_eps : float, default=1e-5
        LayerNorm epsilon.
    checkpoint_activations : bool, default=False
        Recompute each block in backward instead of storing its activations
        (:func:`torch.utils.checkpoint.checkpoint`): about one extra forward pass of
        compute for a large cut in activation memory.
    input_norm : {"none", "edge"}, default="none"
        ``"edge"`` standardises every FC edge with the mean and standard deviation across
        the pretraining scans before the token embedding, ``(fc - mean) / max(std, 0.05)``,
        so tokens describe how a scan *deviates* from the group rather than the group FC
        that all scans share. The statistics are buffers set once from data
        (:meth:`BrainEncoder.set_input_norm`, done by :func:`bmlib.engine.fit`) and saved in
        every checkpoint; they are not trained. Until set they are the identity.
    """

    n_rois: int
    dim: int = 64
    depth: int = 2
    heads: int = 4
    ffn_dim: int = 128
    dropout: float = 0.0
    activation: str = "gelu"
    readout: str = "mean"
    readout_features: int = 8
    qkv_bias: bool = True
    norm_eps: float = 1e-5
    checkpoint_activations: bool = False
    input_norm: str = "none"

    def __post_init__(self) -> None:
        for name in ("n_rois", "dim", "depth", "heads", "ffn_dim", "readout_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EncoderConfig.{name} must be a positive int, got {value!r}")
        if self.n_rois < 2:
            raise ValueError(f"EncoderConfig.n_rois must be >= 2, got {self.n_rois}")
        if self.dim % self.heads:
            raise ValueError(
                f"EncoderConfig.dim ({self.dim}) must be divisible by heads ({self.heads}); "
                "pass heads= (or dim=) so that dim % heads == 0"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"EncoderConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"EncoderConfig.activation must be one of {_ACTIVATIONS}, got {self.activation!r}"
            )
        if self.readout not in _READOUTS:
            raise ValueError(f"EncoderConfig.readout must be one of {_READOUTS}, got {self.readout!r}")
        if self.input_norm not in _INPUT_NORMS:
            raise ValueError(f"EncoderConfig.input_norm must be one of {_INPUT_NORMS}, got {self.input_norm!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"EncoderConfig.norm_eps must be > 0, got {self.norm_eps!r}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``dim // heads``."""
        return self.dim // self.heads

    @property
    def pooled_dim(self) -> int:
        """Width ``P`` of the pooled subject embedding."""
        return self.dim if self.readout == "mean" else self.n_rois * self.readout_features

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields (JSON- and ``weights_only``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are refused."""
        if not isinstance(d, Mapping):
            raise TypeError(f"expected a mapping of EncoderConfig fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**dict(d))


#: Preset name -> fields (``dim=None`` means "width = number of ROIs").
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(dim=64, depth=2, heads=4, ffn_dim=128, dropout=0.0, activation="gelu", readout="concat", input_norm="edge"),
    "small": dict(dim=128, depth=4, heads=4, ffn_dim=256, dropout=0.0, activation="gelu", readout="concat", input_norm="edge"),
    "base": dict(dim=256, depth=8, heads=8, ffn_dim=1024, dropout=0.0, activation="gelu", readout="concat", input_norm="edge"),
    "paper": dict(
        dim=None,
        depth=16,
        heads=10,
        ffn_dim=2048,
        dropout=0.0,
        activation="relu",
        readout="concat",
        readout_features=8,
    ),
}


def encoder_config(preset: str, n_rois: int, **overrides: Any) -> EncoderConfig:
    """Encoder configuration of a named preset.

    Parameters
    ----------
    preset : {"tiny", "small", "base", "paper"}
        Size preset (see the module docstring). ``"paper"`` sets ``dim = n_rois``.
    n_rois : int
        Number of ROIs ``R`` of the FC matrices the encoder will see.
    **overrides
        Any :class:`EncoderConfig` field, e.g. ``checkpoint_activations=True``.

    Returns
    -------
    EncoderConfig

    Examples
    --------
    >>> encoder_config("paper", 100).pooled_dim
    800
    >>> encoder_config("tiny", 100, depth=1).depth
    1
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown encoder preset {preset!r}; expected one of {sorted(PRESETS)}")
    if isinstance(n_rois, bool) or not isinstance(n_rois, int):
        raise TypeError(f"n_rois must be an int, got {type(n_rois).__name__}")
    known = {f.name for f in fields(EncoderConfig)} - {"n_rois"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown EncoderConfig field(s) {unknown}; known fields: {sorted(known)}")
    values = dict(PRESETS[preset])
    if values.get("dim") is None:
        values["dim"] = n_rois
    values.update(overrides)
    return EncoderConfig(n_rois=n_rois, **values)


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------
class EncoderOutput(NamedTuple):
    """What :meth:`BrainEncoder.forward` returns.

    Attributes
    ----------
    tokens : Tensor, shape (B, R, D)
        Final per-ROI embeddings (after the final LayerNorm).
    pooled : Tensor, shape (B, P)
        Subject embedding (``P = cfg.pooled_dim``).
    attention : list of Tensor, shape (B, H, R, R), or None
        Attention weights of every block (rows sum to one), only when asked for.
    """

    tokens: Tensor
    pooled: Tensor
    attention: list[Tensor] | None


class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection.

    The fast path is :func:`~torch.nn.functional.scaled_dot_product_attention`, which
    returns no weights; with ``return_attention=True`` the weights
    ``softmax(Q K^T / sqrt(d))`` are computed explicitly and returned.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        B, R, D = x.shape
        # split + transpose views (no copies; their backward is one cat)
        q, k, v = (
            t.view(B, R, self.heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).split(D, dim=-1)
        )  # each (B, H, R, hd)
        p = self.dropout if self.training else 0.0
        weights: Tensor | None = None
        if return_attention:
            weights = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim**-0.5, dim=-1)  # (B, H, R, R)
            out = F.dropout(weights, p=p, training=self.training) @ v  # (B, H, R, hd)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, H, R, hd)
        out = out.transpose(1, 2).reshape(B, R, D)  # (B, R, D)
        return self.proj_drop(self.proj(out)), weights


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast compute dtype active for ``device_type``, or None."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (TypeError, RuntimeError, AttributeError):  # older torch or unknown device type
        return None
    return None


class _ReLUFFN(torch.autograd.Function):
    """``relu(x W1^T + b1) W2^T + b2`` on ``x (N, D)`` with one ``(N, F)`` tensor per pass.

    The stock modules allocate two ``(N, F)`` tensors in forward (pre- and
    post-activation) and two in backward; here the ReLU runs in place on the hidden
    tensor and the mask is applied in place to its gradient. At the ``paper`` size that
    halves the large allocations of the encoder, whose page faults cost as much as the
    arithmetic on small CPUs. Under autocast the matmuls run in the autocast dtype.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        dtype = _autocast_dtype(x.device.type) or x.dtype
        ctx.dtypes = (x.dtype, w1.dtype, b1.dtype, w2.dtype, b2.dtype)
        with torch.autocast(x.device.type, enabled=False):
            x, w1, b1, w2, b2 = (t.to(dtype) for t in (x, w1, b1, w2, b2))
            h = torch.addmm(b1, x, w1.t()).relu_()  # (N, F)
            y = torch.addmm(b2, h, w2.t())  # (N, D)
        ctx.save_for_backward(x, w1, w2, h)
        return y

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
        x, w1, w2, h = ctx.saved_tensors
        need = ctx.needs_input_grad
        gy = gy.to(h.dtype)  # (N, D)
        gx = gw1 = gb1 = gw2 = gb2 = None
        if need[3]:
            gw2 = gy.t() @ h  # (D, F)
        if need[4]:
            gb2 = gy.sum(0)  # (D,)
        if need[0] or need[1] or need[2]:
            gh = gy @ w2  # (N, F)
            # relu'(a) = 1[h > 0], applied in place: the kernel nn.ReLU's backward uses
            # (threshold_backward), 15x faster than masked_fill_ with a computed mask
            torch.ops.aten.threshold_backward.grad_input(gh, h, 0, grad_input=gh)
            # operand layouts chosen for MKL: ~15% faster than gh @ w1 and gh^T @ x here
            if need[0]:
                gx = gh @ w1.t().contiguous().t()  # (N, D)
            if need[1]:
                gw1 = (x.t() @ gh).t().contiguous()  # (F, D)
            if need[2]:
                gb1 = gh.sum(0)  # (F,)
        grads = (gx, gw1, gb1, gw2, gb2)
        return tuple(None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes))


def _relu_ffn_no_grad(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, rows: int) -> Tensor:
    """Inference FFN on ``x (N, D)`` in row chunks reusing one ``(rows, F)`` buffer."""
    dtype = _autocast_dtype(x.device.type) or x.dtype
    with torch.autocast(x.device.type, enabled=False):
        x, w1, b1, w2, b2 = (t.to(dtype) for t in (x, w1, b1, w2, b2))
        n = x.shape[0]
        y = x.new_empty(n, w2.shape[0])  # (N, D)
        h = x.new_empty(min(rows, n), w1.shape[0])  # (rows, F)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            hc = h[: stop - start]
            torch.addmm(b1, x[start:stop], w1.t(), out=hc).relu_()
            torch.addmm(b2, hc, w2.t(), out=y[start:stop])
    return y


class FeedForward(nn.Module):
    """Position-wise ``Linear(D, F) -> activation -> dropout -> Linear(F, D) -> dropout``.

    With ReLU and no active dropout (the ``paper`` preset) a fused path
    (:class:`_ReLUFFN`; chunked without autograd) computes the same function with half
    the large temporaries.
    """

    #: Target size (elements) of the hidden chunk of the no-grad path (16 MB in float32).
    chunk_elements: int = 1 << 22

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        fused = isinstance(self.act, nn.ReLU) and not (self.training and self.drop.p > 0)
        if not fused:
            return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))  # (B, R, D)
        params = (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        flat = x.reshape(-1, x.shape[-1])  # (B*R, D)
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
            y = _ReLUFFN.apply(flat, *params)
        else:
            rows = max(1, self.chunk_elements // self.fc1.out_features)
            y = _relu_ffn_no_grad(flat, *params, rows=rows)
        return y.view(*x.shape[:-1], y.shape[-1])  # (B, R, D)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + ffn(norm(x))``."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dropout, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.ffn = FeedForward(cfg.dim, cfg.ffn_dim, cfg.dropout, cfg.activation)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        a, weights = self.attn(self.norm1(x), return_attention)
        x = x + a  # (B, R, D)
        x = x + self.ffn(self.norm2(x))  # (B, R, D)
        return x, weights

    def _forward_tokens(self, x: Tensor) -> Tensor:
        return self.forward(x)[0]


# ---------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------
class BrainEncoder(nn.Module):
    """Transformer encoder over the ROI rows of FC matrices.

    Parameters
    ----------
    cfg : EncoderConfig
        Construction arguments (kept as ``self.cfg``; checkpoints store ``cfg.to_dict()``).

    Examples
    --------
    >>> enc = BrainEncoder(encoder_config("tiny", 10))
    >>> out = enc(torch.eye(10).expand(3, 10, 10))
    >>> tuple(out.tokens.shape), tuple(out.pooled.shape)
    ((3, 10, 64), (3, 64))
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if not isinstance(cfg, EncoderConfig):
            raise TypeError(f"expected an EncoderConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        R, D = cfg.n_rois, cfg.dim
        self.embed = nn.Linear(R, D)  # FC row (R,) -> token (D,)
        self.roi_embed = nn.Parameter(torch.zeros(R, D))  # ROI identity, added to every token
        self.mask_token = nn.Parameter(torch.zeros(D))  # replaces the tokens of masked ROIs
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.readout = nn.Linear(D, cfg.readout_features) if cfg.readout == "concat" else None
        if cfg.input_norm == "edge":  # data statistics, saved with the weights, never trained
            self.register_buffer("input_mean", torch.zeros(R, R))
            self.register_buffer("input_scale", torch.ones(R, R))  # 1 / max(std, INPUT_NORM_MIN_STD)
        self.reset_parameters()

    @torch.no_grad()
    def set_input_norm(self, mean: Tensor, std: Tensor) -> None:
        """Set the edge statistics of ``input_norm="edge"`` (mean and std across scans).

        Parameters
        ----------
        mean, std : Tensor, shape (R, R)
            Mean and standard deviation of every FC edge across the pretraining scans
            (see :func:`input_norm_statistics`). ``std`` is floored at
            :data:`INPUT_NORM_MIN_STD`.
        """
        if self.cfg.input_norm != "edge":
            raise ValueError(f"this encoder has input_norm={self.cfg.input_norm!r}; set_input_norm needs 'edge'")
        R = self.cfg.n_rois
        for name, value in (("mean", mean), ("std", std)):
            if not isinstance(value, Tensor) or value.shape != (R, R):
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"expected {name} as a tensor of shape ({R}, {R}), got {got}")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"expected finite values in {name}, got NaN or infinite entries")
        self.input_mean.copy_(mean)
        self.input_scale.copy_(std.clamp_min(INPUT_NORM_MIN_STD).reciprocal())

    def reset_parameters(self) -> None:
        """Xavier-uniform linear weights, zero biases, N(0, 0.02) embeddings (as MAE)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.roi_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def check_input(self, fc: Tensor, mask: Tensor | None = None) -> None:
        """Raise a clear error unless ``fc`` is ``(B, R, R)`` and ``mask`` is bool ``(B, R)``."""
        R = self.cfg.n_rois
        if not isinstance(fc, Tensor):
            raise TypeError(f"expected fc as a torch.Tensor (B, {R}, {R}), got {type(fc).__name__}")
        if fc.ndim != 3 or fc.shape[1:] != (R, R):
            raise ValueError(f"expected fc of shape (B, {R}, {R}), got {tuple(fc.shape)}")
        if not fc.is_floating_point():
            raise TypeError(f"expected a floating-point fc tensor, got dtype {fc.dtype}")
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
                raise TypeError(f"expected mask as a bool tensor (B, {R}) with True = masked, got {got}")
            if mask.shape != fc.shape[:2]:
                raise ValueError(
                    f"expected mask of shape {tuple(fc.shape[:2])} to match fc, got {tuple(mask.shape)}"
                )

    def embed_tokens(self, fc: Tensor, mask: Tensor | None = None) -> Tensor:
        """Input tokens ``(B, R, D)``; masked columns zeroed, masked rows -> mask token."""
        if self.cfg.input_norm == "edge":  # deviation from the group, in group-SD units
            fc = (fc - self.input_mean.to(fc.dtype)) * self.input_scale.to(fc.dtype)
        if mask is not None:
            fc = fc.masked_fill(mask[:, None, :], 0.0)  # (B, R, R): masked columns removed
        x = self.embed(fc)  # (B, R, D)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)  # (B, R, D)
        return x + self.roi_embed.to(x.dtype)  # (B, R, D)

    def forward(
        self, fc: Tensor, mask: Tensor | None = None, *, return_attention: bool = False
    ) -> EncoderOutput:
        """Encode a batch of FC matrices.

        Parameters
        ----------
        fc : Tensor, shape (B, R, R)
            FC matrices (rows are tokens).
        mask : Tensor of bool, shape (B, R), optional
            ``True`` = masked ROI (its row and column are hidden from the encoder).
        return_attention : bool, default=False
            Also return each block's attention weights (slower explicit path).

        Returns
        -------
        EncoderOutput
            ``tokens (B, R, D)``, ``pooled (B, P)``, ``attention`` list of ``(B, H, R, R)``
            or None.
        """
        self.check_input(fc, mask)
        x = self.embed_tokens(fc, mask)  # (B, R, D)
        attention: list[Tensor] | None = [] if return_attention else None
        use_ckpt = self.cfg.checkpoint_activations and torch.is_grad_enabled() and not return_attention
        for block in self.blocks:
            if use_ckpt:
                x = checkpoint(block._forward_tokens, x, use_reentrant=False)
            else:
                x, weights = block(x, return_attention)
                if attention is not None:
                    attention.append(weights)
        tokens = self.norm(x)  # (B, R, D)
        return EncoderOutput(tokens, self.pool(tokens), attention)

    def pool(self, tokens: Tensor) -> Tensor:
        """Subject embedding ``(B, P)`` from final tokens ``(B, R, D)``."""
        if self.readout is None:
            return tokens.mean(dim=1)  # (B, D)
        return F.leaky_relu(self.readout(tokens)).flatten(1)  # (B, R * readout_features)


@torch.no_grad()
def input_norm_statistics(fc: Tensor, chunk: int = 512) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of every edge across scans, for ``input_norm="edge"``.

    Parameters
    ----------
    fc : Tensor, shape (N, R, R)
        FC matrices of the pretraining scans (N >= 2).
    chunk : int, default=512
        Scans summed at a time (float64 accumulation).

    Returns
    -------
    mean, std : Tensor, shape (R, R), float32
        ``std`` is the sample standard deviation (``N - 1``).
    """
    if not isinstance(fc, Tensor) or fc.ndim != 3 or fc.shape[1] != fc.shape[2]:
        got = tuple(fc.shape) if isinstance(fc, Tensor) else type(fc).__name__
        raise ValueError(f"expected fc as a tensor of shape (N, R, R), got {got}")
    if fc.shape[0] < 2:
        raise ValueError(f"expected at least 2 scans to estimate edge statistics, got {fc.shape[0]}")
    total = torch.zeros(fc.shape[1:], dtype=torch.float64, device=fc.device)
    for part in fc.split(chunk):
        total += part.double().sum(0)
    mean = total / fc.shape[0]
    sq = torch.zeros_like(total)
    for part in fc.split(chunk):
        sq += ((part.double() - mean) ** 2).sum(0)
    std = (sq / (fc.shape[0] - 1)).sqrt()
    return mean.float(), std.float()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------
def load_encoder(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[BrainEncoder, dict[str, Any]]:
    """Rebuild the pretrained encoder from a bmlib checkpoint alone.

    Parameters
    ----------
    path : str or Path
        Checkpoint written by :func:`bmlib.engine.save_checkpoint` (format
        ``"bmlib-checkpoint-v1"``: ``encoder_config`` dict and ``model`` state dict of the
        pretrainer, encoder weights under the prefix ``"encoder."``).
    map_location : str or torch.device, default="cpu"
        Passed to :func:`torch.load` (loaded with ``weights_only=True``).

    Returns
    -------
    encoder : BrainEncoder
        In eval mode, on ``map_location``.
    card : dict
        ``ckpt["card"]`` (the model card), ``{}`` if absent.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"expected a checkpoint dict in {str(path)!r}, got {type(ckpt).__name__}")
    fmt = ckpt.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise ValueError(f"expected checkpoint format {CHECKPOINT_FORMAT!r} in {str(path)!r}, got {fmt!r}")
    missing = [k for k in ("encoder_config", "model") if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} lacks key(s) {missing}")
    encoder = BrainEncoder(EncoderConfig.from_dict(ckpt["encoder_config"]))
    prefix = "encoder."
    state = {k[len(prefix) :]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"checkpoint {str(path)!r} holds no weights under the prefix {prefix!r}")
    encoder.load_state_dict(state, strict=True)
    encoder.to(map_location).eval()
    return encoder, dict(ckpt.get("card", {}) or {})
