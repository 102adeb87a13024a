"""Interpretation: which ROIs and connections drive a diagnosis, and can we trust the maps.

Every attribution method here explains one **decision function**: the signed score a
binary linear probe gives to a subject (positive = towards the positive class, e.g. patient).
Two differentiable decision models are provided and share the ``model(fc, mask=None) -> (B,)``
calling convention:

- :class:`EncoderProbe`: FC -> frozen :class:`bmlib.model.BrainEncoder` -> pooled features ->
  linear probe (an sklearn ``Pipeline(StandardScaler, LogisticRegression)`` folded into one
  torch linear map by :meth:`LinearProbe.from_sklearn`).
- :class:`VectorizedFCProbe`: the classical model, a linear probe on the vectorised
  (optionally Fisher-z) upper triangle of FC.

Methods (each returns per-subject maps, an :class:`ImportanceMap`):

- ``"occlusion"``: ROI r is hidden through the encoder's MRM mask token; importance =
  ``decision(unmasked) - decision(ROI r masked)``, signed per subject (positive: the ROI
  pushed the subject towards the positive class).
- ``"gradient"``: gradient x input on the FC matrix. Because FC is symmetric, entries (i, j)
  and (j, i) are one variable, so edge importance is ``G * FC + (G * FC).T`` (diagonal 0);
  ROI importance is the row sum of ``|edge importance|``.
- ``"rollout"``: attention rollout (Abnar & Zuidema 2020); ROI importance = attention the
  ROI receives in the rolled-out attention, averaged over query ROIs. It explains the
  encoder, not the probe (it does not depend on the labels).
- :func:`univariate_baseline`: mass-univariate Welch t-test on Fisher-z FC edges; ROI score =
  sum of ``|t|`` over the ROI's edges.

Group maps (:meth:`ImportanceMap.group`) default to the **difference convention**: mean over
positive subjects (``y == 1``) minus mean over negative subjects (``y == 0``). For methods with
edge maps the group ROI map is derived from the group edge map (row sum of ``|.|``).

Validation against planted truth: :func:`recovery_scores` / :func:`recovery_table` (AUC of
``|importance|`` for planted versus other ROIs / edges and top-k precision). Network summaries:
:func:`network_importance`, :func:`network_pair_importance` and
:func:`network_permutation_test` (labels shuffled, within site if given, probe refitted).
Per-subject atypicality: :func:`reconstruction_error_map` and :func:`atypicality`.
What the MRM head reconstructs: :func:`reconstruct_masked` (masked rows vs truth).

One task end to end: :func:`interpret_task`; every labelled task of a dataset, with one recovery
and one network table across tasks: :func:`interpret_tasks`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from bmlib._io import atomic_path

__all__ = [
    "LinearProbe",
    "EncoderProbe",
    "VectorizedFCProbe",
    "ImportanceMap",
    "GroupMap",
    "fit_probe",
    "fit_encoder_probe",
    "pooled_features",
    "decision_function",
    "occlusion_importance",
    "occlusion_feature_deltas",
    "gradient_x_input",
    "roi_from_edges",
    "attention_rollout",
    "rollout_importance",
    "compute_importance",
    "group_map",
    "group_maps",
    "univariate_edge_tests",
    "univariate_baseline",
    "recovery_scores",
    "recovery_table",
    "planted_from_ground_truth",
    "network_labels",
    "network_importance",
    "network_pair_importance",
    "probe_refit_fn",
    "occlusion_refit_fn",
    "univariate_refit_fn",
    "network_permutation_test",
    "load_pretrainer",
    "reconstruction_error_map",
    "MaskedReconstruction",
    "reconstruct_masked",
    "atypicality",
    "importance_frame",
    "save_importance",
    "top_rois",
    "truth_map",
    "load_task",
    "TaskInterpretation",
    "interpret_task",
    "TaskSetInterpretation",
    "interpret_tasks",
]

METHODS = ("occlusion", "gradient", "rollout")
GroupMode = Literal["difference", "mean", "mean_abs"]


# ----------------------------------------------------------------------------- helpers
def _as_fc(fc: Any, name: str = "fc") -> Tensor:
    """Return ``fc`` as a float tensor of shape (N, R, R), checking the shape."""
    t = torch.as_tensor(fc)
    if t.ndim != 3 or t.shape[-1] != t.shape[-2]:
        raise ValueError(f"expected {name} of shape (n_subjects, n_rois, n_rois), got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    return t


def _as_labels(y: Any, n: int | None = None, name: str = "y") -> np.ndarray:
    """Return binary labels as an int array (N,) with values in {0, 1}."""
    arr = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if arr.ndim != 1:
        raise ValueError(f"expected {name} of shape (n_subjects,), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"expected {name} with {n} entries (one per subject), got {arr.shape[0]}")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1, False, True}:
        raise ValueError(f"expected binary labels {name} in {{0, 1}}, got values {sorted(values)[:5]}")
    if len(values) < 2:
        raise ValueError(f"expected both classes in {name}, got only {sorted(values)}")
    return arr.astype(np.int64)


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def _dtype_of(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.float32


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block and restore its training flag afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"expected batch_size a positive int, got {batch_size!r}")


# ----------------------------------------------------------------------------- probes
class LinearProbe(nn.Module):
    """A binary linear decision function ``features @ weight + bias`` as a torch module.

    Parameters
    ----------
    weight : Tensor of shape (P,)
        Weights on the raw (unstandardised) features.
    bias : float
        Intercept.
    """

    def __init__(self, weight: Tensor, bias: float | Tensor) -> None:
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float32)
        if weight.ndim != 1:
            raise ValueError(f"expected weight of shape (n_features,), got shape {tuple(weight.shape)}")
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.bias = nn.Parameter(torch.as_tensor(float(bias), dtype=torch.float32), requires_grad=False)

    @property
    def n_features(self) -> int:
        """Number of input features P."""
        return int(self.weight.shape[0])

    @classmethod
    def from_sklearn(cls, estimator: Any) -> LinearProbe:
        """Fold a fitted sklearn binary linear model (and any StandardScaler before it) into torch.

        Parameters
        ----------
        estimator : sklearn estimator or Pipeline
            A fitted binary linear model with ``coef_`` (1, P) and ``intercept_`` (e.g.
            ``LogisticRegression``, ``LinearSVC``, ``RidgeClassifier``), optionally the last step
            of a ``Pipeline`` whose earlier steps are ``StandardScaler`` (or ``"passthrough"``).

        Returns
        -------
        LinearProbe
            ``probe(x)`` equals ``estimator.decision_function(x)`` up to float32 rounding.
        """
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
        *pre, final = steps
        if not hasattr(final, "coef_") or not hasattr(final, "intercept_"):
            raise TypeError(
                f"expected a fitted linear model with coef_ and intercept_, got {type(final).__name__}"
            )
        coef = np.asarray(final.coef_, dtype=np.float64)
        if coef.ndim == 2 and coef.shape[0] != 1:
            raise ValueError(f"expected a binary linear model (coef_ of shape (1, P)), got coef_ shape {coef.shape}")
        w = coef.reshape(-1)
        b = float(np.asarray(final.intercept_, dtype=np.float64).reshape(-1)[0])
        # Fold preprocessing from the last step backwards: w.(x - m)/s + b = (w/s).x + (b - w.m/s)
        for step in reversed(pre):
            if step is None or step == "passthrough":
                continue
            if not isinstance(step, StandardScaler):
                raise TypeError(f"expected only StandardScaler before the linear model, got {type(step).__name__}")
            scale = np.ones_like(w) if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
            mean = np.zeros_like(w) if step.mean_ is None else np.asarray(step.mean_, dtype=np.float64)
            w = w / scale
            b = b - float(w @ mean)
        return cls(torch.as_tensor(w, dtype=torch.float32), b)

    def forward(self, features: Tensor) -> Tensor:
        """Decision values (B,) of features (B, P)."""
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(
                f"expected features of shape (batch, {self.n_features}), got shape {tuple(features.shape)}"
            )
        return features @ self.weight.to(features.dtype) + self.bias.to(features.dtype)  # (B,)


def fit_probe(features: np.ndarray, y: Any, *, C: float = 1.0, seed: int | None = 0, max_iter: int = 2000) -> Any:
    """Fit ``Pipeline(StandardScaler, LogisticRegression)`` on features (N, P) and binary y (N,).

    Parameters
    ----------
    features : ndarray of shape (N, P)
    y : array-like of shape (N,)
        Binary labels, 1 = positive class.
    C : float, default=1.0
        Inverse L2 regularisation strength.
    seed : int or None, default=0
        ``random_state`` of the logistic regression.
    max_iter : int, default=2000

    Returns
    -------
    sklearn.pipeline.Pipeline
        The fitted pipeline; :meth:`LinearProbe.from_sklearn` turns it into torch.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected features of shape (n_subjects, n_features), got shape {X.shape}")
    labels = _as_labels(y, X.shape[0])
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    return pipe.fit(X, labels)


class EncoderProbe(nn.Module):
    """FC -> encoder -> pooled features -> :class:`LinearProbe`: one differentiable decision.

    Parameters
    ----------
    encoder : nn.Module
        A :class:`bmlib.model.BrainEncoder` (``encoder(fc, mask) -> EncoderOutput`` with ``.pooled``).
    probe : LinearProbe
        Decision function on the pooled features.

    Notes
    -----
    ``forward(fc (B, R, R), mask (B, R) bool | None) -> (B,)``. ``True`` in the mask means the
    ROI is hidden from the encoder (replaced by its MRM mask token).
    """

    def __init__(self, encoder: nn.Module, probe: LinearProbe) -> None:
        super().__init__()
        self.encoder = encoder
        self.probe = probe

    def forward(self, fc: Tensor, mask: Tensor | None = None) -> Tensor:
        out = self.encoder(fc, mask)
        return self.probe(out.pooled)  # (B,)


def pooled_features(encoder: nn.Module, fc: Any, *, batch_size: int = 64) -> np.ndarray:
    """Frozen pooled features (N, P) of FC matrices (N, R, R), computed in eval mode, batched."""
    _check_batch_size(batch_size)
    x = _as_fc(fc)
    device, dtype = _device_of(encoder), _dtype_of(encoder)
    outs = []
    with _eval_mode(encoder), torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            outs.append(encoder(x[s : s + batch_size].to(device, dtype)).pooled.float().cpu())
    return torch.cat(outs).numpy()


def fit_encoder_probe(
    encoder: nn.Module, fc: Any, y: Any, *, C: float = 1.0, seed: int | None = 0, batch_size: int = 64
) -> EncoderProbe:
    """Fit a logistic-regression probe on frozen pooled features and wrap it with the encoder.

    Parameters
    ----------
    encoder : nn.Module
        Frozen encoder (not modified).
    fc : array-like of shape (N, R, R)
    y : array-like of shape (N,)
        Binary labels.
    C, seed : see :func:`fit_probe`.
    batch_size : int, default=64

    Returns
    -------
    EncoderProbe
        With attributes ``pipeline`` (the sklearn pipeline) and ``train_features`` (N, P).
    """
    feats = pooled_features(encoder, fc, batch_size=batch_size)
    pipe = fit_probe(feats, y, C=C, seed=seed)
    model = EncoderProbe(encoder, LinearProbe.from_sklearn(pipe).to(_device_of(encoder)))
    model.pipeline = pipe
    model.train_features = feats
    return model


class VectorizedFCProbe(nn.Module):
    """Linear probe on the vectorised upper triangle of FC (optionally Fisher z), in torch.

    Parameters
    ----------
    n_rois : int
    probe : LinearProbe
        On the ``n_rois * (n_rois - 1) / 2`` upper-triangle edges (row-major, i < j).
    center : Tensor of shape (E,), optional
        Value an occluded edge takes (default: zeros). :meth:`fit` uses the training mean, so
        an occluded edge contributes what an average subject's edge would.
    fisher_z : bool, default=True
        Apply ``arctanh`` (clipped at |r| <= 1 - 1e-6) to the edges before the probe.

    Notes
    -----
    ``forward(fc (B, R, R), mask (B, R) bool | None) -> (B,)``: edges that touch a masked ROI
    are replaced by ``center`` (occlusion for a model without a mask token).
    """

    def __init__(self, n_rois: int, probe: LinearProbe, center: Tensor | None = None, *, fisher_z: bool = True) -> None:
        super().__init__()
        n_edges = n_rois * (n_rois - 1) // 2
        if probe.n_features != n_edges:
            raise ValueError(f"expected a probe on {n_edges} edges for {n_rois} ROIs, got {probe.n_features} features")
        self.n_rois = n_rois
        self.fisher_z = fisher_z
        self.probe = probe
        iu = torch.triu_indices(n_rois, n_rois, offset=1)
        self.register_buffer("iu", iu, persistent=False)
        c = torch.zeros(n_edges) if center is None else torch.as_tensor(center, dtype=torch.float32)
        self.register_buffer("center", c)

    def edges(self, fc: Tensor) -> Tensor:
        """Upper-triangle edges (B, E) of fc (B, R, R), Fisher-z transformed if configured."""
        e = fc[:, self.iu[0], self.iu[1]]  # (B, E)
        if self.fisher_z:
            e = torch.atanh(e.clamp(-1 + 1e-6, 1 - 1e-6))
        return e

    def forward(self, fc: Tensor, mask: Tensor | None = None) -> Tensor:
        if fc.ndim != 3 or fc.shape[1:] != (self.n_rois, self.n_rois):
            raise ValueError(f"expected fc of shape (batch, {self.n_rois}, {self.n_rois}), got shape {tuple(fc.shape)}")
        e = self.edges(fc)
        if mask is not None:
            hidden = mask[:, self.iu[0]] | mask[:, self.iu[1]]  # (B, E)
            e = torch.where(hidden, self.center.to(e.dtype), e)
        return self.probe(e)

    @classmethod
    def fit(
        cls, fc: Any, y: Any, *, C: float = 1.0, fisher_z: bool = True, seed: int | None = 0
    ) -> VectorizedFCProbe:
        """Fit a standardised logistic regression on vectorised FC edges (N, E) and wrap it.

        The fitted sklearn pipeline is kept as ``.pipeline``.
        """
        x = _as_fc(fc).float()
        model = cls(x.shape[-1], LinearProbe(torch.zeros(x.shape[-1] * (x.shape[-1] - 1) // 2), 0.0), fisher_z=fisher_z)
        edges = model.edges(x).numpy()
        pipe = fit_probe(edges, y, C=C, seed=seed)
        model.probe = LinearProbe.from_sklearn(pipe)
        model.center = torch.as_tensor(pipe[0].mean_, dtype=torch.float32)
        model.pipeline = pipe
        return model


def decision_function(model: nn.Module, fc: Any, *, mask: Any = None, batch_size: int = 256) -> np.ndarray:
    """Decision values (N,) of a decision model on FC (N, R, R), optional mask (N, R) bool."""
    _check_batch_size(batch_size)
    x = _as_fc(fc)
    m = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    if m is not None and m.shape != x.shape[:2]:
        raise ValueError(f"expected mask of shape {tuple(x.shape[:2])}, got shape {tuple(m.shape)}")
    device, dtype = _device_of(model), _dtype_of(model)
    outs = []
    with _eval_mode(model), torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            mb = None if m is None else m[s : s + batch_size].to(device)
            outs.append(model(x[s : s + batch_size].to(device, dtype), mb).float().cpu())
    return torch.cat(outs).numpy()


# ----------------------------------------------------------------------------- maps
@dataclass
class GroupMap:
    """A group-level importance map.

    Attributes
    ----------
    method : str
    roi : ndarray of shape (R,)
    edge : ndarray of shape (R, R) or None
        Symmetric, zero diagonal.
    """

    method: str
    roi: np.ndarray
    edge: np.ndarray | None = None


@dataclass
class ImportanceMap:
    """Per-subject importance maps from one method.

    Attributes
    ----------
    method : str
        ``"occlusion"``, ``"gradient"`` or ``"rollout"``.
    roi : ndarray of shape (N, R)
        Per-subject ROI importance (signed for occlusion, >= 0 for gradient and rollout).
    edge : ndarray of shape (N, R, R) or None
        Per-subject signed edge importance (gradient only).
    """

    method: str
    roi: np.ndarray
    edge: np.ndarray | None = None

    def group(self, y: Any, mode: GroupMode = "difference") -> GroupMap:
        """Group map by diagnosis; see :func:`group_map` for ``mode``.

        With edge maps, the group edge map is computed first and the ROI map is its row sum of
        absolute values (:func:`roi_from_edges`).
        """
        if self.edge is not None:
            edge = group_map(self.edge, y, mode=mode)
            return GroupMap(self.method, roi_from_edges(edge), edge)
        return GroupMap(self.method, group_map(self.roi, y, mode=mode))


def group_map(per_subject: np.ndarray, y: Any, *, mode: GroupMode = "difference") -> np.ndarray:
    """Reduce per-subject maps (N, ...) to one group map (...).

    Parameters
    ----------
    per_subject : ndarray of shape (N, ...)
    y : array-like of shape (N,)
        Binary labels (1 = positive class, e.g. patient).
    mode : {"difference", "mean", "mean_abs"}, default="difference"
        ``"difference"``: mean over ``y == 1`` minus mean over ``y == 0`` (the importance that
        distinguishes the groups; a shared offset cancels). ``"mean"``: mean over all subjects.
        ``"mean_abs"``: mean of absolute values over all subjects.

    Returns
    -------
    ndarray of shape (...)
    """
    arr = np.asarray(per_subject, dtype=np.float64)
    labels = _as_labels(y, arr.shape[0]) if mode == "difference" else None
    if mode == "difference":
        return arr[labels == 1].mean(0) - arr[labels == 0].mean(0)
    if mode == "mean":
        return arr.mean(0)
    if mode == "mean_abs":
        return np.abs(arr).mean(0)
    raise ValueError(f"expected mode 'difference', 'mean' or 'mean_abs', got {mode!r}")


def group_maps(maps: Mapping[str, ImportanceMap], y: Any, *, mode: GroupMode = "difference") -> dict[str, GroupMap]:
    """Apply :meth:`ImportanceMap.group` to every method; returns ``{method: GroupMap}``."""
    return {name: m.group(y, mode=mode) for name, m in maps.items()}


def roi_from_edges(edge: np.ndarray | Tensor, *, absolute: bool = True) -> np.ndarray:
    """ROI importance (..., R) as the row sum of (absolute) edge importance (..., R, R).

    The diagonal is ignored.
    """
    e = np.asarray(edge.detach().cpu() if isinstance(edge, Tensor) else edge, dtype=np.float64)
    if e.ndim < 2 or e.shape[-1] != e.shape[-2]:
        raise ValueError(f"expected edge importance of shape (..., n_rois, n_rois), got shape {e.shape}")
    e = np.abs(e) if absolute else e.copy()
    idx = np.arange(e.shape[-1])
    e[..., idx, idx] = 0.0
    return e.sum(-1)


def _subject_roi_pairs(n: int, rois: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of flattened (subject, ROI) pairs, at most ``batch_size`` per chunk."""
    k = len(rois)
    for s in range(0, n * k, batch_size):
        flat = np.arange(s, min(s + batch_size, n * k))
        yield flat // k, flat % k


def occlusion_importance(
    model: nn.Module, fc: Any, *, rois: Sequence[int] | None = None, batch_size: int = 256
) -> np.ndarray:
    """ROI occlusion importance: ``decision(fc) - decision(fc with ROI r masked)``.

    The (subject, ROI) pairs are flattened and evaluated in batches of ``batch_size`` masked
    inputs (a single forward per batch, no loop over subjects).

    Parameters
    ----------
    model : nn.Module
        ``model(fc (B, R, R), mask (B, R) bool) -> (B,)``, e.g. :class:`EncoderProbe`
        (masking uses the encoder's MRM mask token) or :class:`VectorizedFCProbe`.
    fc : array-like of shape (N, R, R)
    rois : sequence of int, optional
        ROIs to occlude (default: all). Other columns of the result are 0.
    batch_size : int, default=256
        Masked inputs per forward pass.

    Returns
    -------
    ndarray of shape (N, R)
        Signed: positive means the ROI pushed the subject's decision towards the positive class.
    """
    _check_batch_size(batch_size)
    x = _as_fc(fc)
    n, r = x.shape[0], x.shape[-1]
    roi_idx = np.arange(r) if rois is None else np.asarray(rois, dtype=np.int64)
    if roi_idx.ndim != 1 or (roi_idx.size and (roi_idx.min() < 0 or roi_idx.max() >= r)):
        raise ValueError(f"expected rois as indices in [0, {r}), got {list(np.atleast_1d(roi_idx))[:10]}")
    base = torch.as_tensor(decision_function(model, x, batch_size=batch_size))  # (N,)
    device, dtype = _device_of(model), _dtype_of(model)
    out = torch.zeros(n, r)
    eye = torch.eye(r, dtype=torch.bool)
    with _eval_mode(model), torch.no_grad():
        for subj, k in _subject_roi_pairs(n, roi_idx, batch_size):
            subj_t, roi_t = torch.as_tensor(subj), torch.as_tensor(roi_idx[k])
            d = model(x[subj_t].to(device, dtype), eye[roi_t].to(device)).float().cpu()  # (b,)
            out[subj_t, roi_t] = base[subj_t] - d
    return out.numpy()


def occlusion_feature_deltas(encoder: nn.Module, fc: Any, *, batch_size: int = 256) -> np.ndarray:
    """Pooled-feature change when each ROI is masked: ``pooled(fc) - pooled(fc, ROI r masked)``.

    Occlusion importance is linear in the probe: for a probe with raw-feature weights ``w``,
    ``occlusion_importance = deltas @ w``. Computing the deltas once makes refitting the
    probe (e.g. in :func:`network_permutation_test`) cheap.

    Parameters
    ----------
    encoder : nn.Module
        ``encoder(fc, mask) -> EncoderOutput`` with ``.pooled (B, P)``.
    fc : array-like of shape (N, R, R)
    batch_size : int, default=256

    Returns
    -------
    ndarray of shape (N, R, P)
    """
    _check_batch_size(batch_size)
    x = _as_fc(fc)
    n, r = x.shape[0], x.shape[-1]
    base = torch.as_tensor(pooled_features(encoder, x, batch_size=batch_size))  # (N, P)
    device, dtype = _device_of(encoder), _dtype_of(encoder)
    out = torch.zeros(n, r, base.shape[1])
    eye = torch.eye(r, dtype=torch.bool)
    with _eval_mode(encoder), torch.no_grad():
        for subj, k in _subject_roi_pairs(n, np.arange(r), batch_size):
            subj_t, roi_t = torch.as_tensor(subj), torch.as_tensor(k)
            pooled = encoder(x[subj_t].to(device, dtype), eye[roi_t].to(device)).pooled.float().cpu()
            out[subj_t, roi_t] = base[subj_t] - pooled
    return out.numpy()


def gradient_x_input(model: nn.Module, fc: Any, *, batch_size: int = 64) -> np.ndarray:
    """Gradient x input edge importance of the decision with respect to FC.

    Parameters
    ----------
    model : nn.Module
        ``model(fc (B, R, R)) -> (B,)``, differentiable in ``fc``.
    fc : array-like of shape (N, R, R)
    batch_size : int, default=64

    Returns
    -------
    ndarray of shape (N, R, R)
        ``E = G * FC + (G * FC).T`` with ``G = d decision / d FC``: entries (i, j) and (j, i)
        are one connection, so their contributions are summed. Diagonal set to 0. Signed.
    """
    _check_batch_size(batch_size)
    x = _as_fc(fc)
    device, dtype = _device_of(model), _dtype_of(model)
    outs = []
    with _eval_mode(model):
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(device, dtype).clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(model(xb).sum(), xb)  # samples are independent in eval mode
            e = (grad * xb).detach()
            e = e + e.transpose(-1, -2)  # (b, R, R)
            e.diagonal(dim1=-2, dim2=-1).zero_()
            outs.append(e.float().cpu())
    return torch.cat(outs).numpy()


def attention_rollout(
    attentions: Sequence[Tensor], *, head_fusion: Literal["mean", "max", "min"] = "mean", residual: bool = True
) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) through the layers of a transformer.

    Parameters
    ----------
    attentions : sequence of Tensor of shape (B, H, R, R)
        Per-layer attention probabilities, first layer first (rows = queries).
    head_fusion : {"mean", "max", "min"}, default="mean"
        How heads are combined.
    residual : bool, default=True
        Add the identity (the residual connection) and renormalise rows: ``0.5 A + 0.5 I``.

    Returns
    -------
    Tensor of shape (B, R, R)
        ``A_L @ ... @ A_1``; every row sums to 1.
    """
    if len(attentions) == 0:
        raise ValueError("expected at least one attention map (B, H, R, R), got an empty sequence")
    rollout: Tensor | None = None
    for i, att in enumerate(attentions):
        if att.ndim != 4 or att.shape[-1] != att.shape[-2]:
            raise ValueError(f"expected attention of shape (B, H, R, R) at layer {i}, got shape {tuple(att.shape)}")
        a = att.float()
        if head_fusion == "mean":
            a = a.mean(1)
        elif head_fusion == "max":
            a = a.amax(1)
        elif head_fusion == "min":
            a = a.amin(1)
        else:
            raise ValueError(f"expected head_fusion 'mean', 'max' or 'min', got {head_fusion!r}")
        if residual:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, R, R)
        rollout = a if rollout is None else a @ rollout
    assert rollout is not None
    return rollout


def _encoder_of(model: nn.Module) -> nn.Module:
    enc = getattr(model, "encoder", model)
    if isinstance(model, VectorizedFCProbe):
        raise TypeError("attention rollout needs a transformer encoder; got a VectorizedFCProbe (no attention)")
    return enc


def rollout_importance(
    model: nn.Module, fc: Any, *, batch_size: int = 64, head_fusion: Literal["mean", "max", "min"] = "mean"
) -> np.ndarray:
    """ROI importance from attention rollout: attention each ROI receives, averaged over queries.

    Parameters
    ----------
    model : nn.Module
        A :class:`bmlib.model.BrainEncoder` or an :class:`EncoderProbe` (its encoder is used).
    fc : array-like of shape (N, R, R)
    batch_size : int, default=64
    head_fusion : see :func:`attention_rollout`.

    Returns
    -------
    ndarray of shape (N, R)
        Non-negative; each row sums to 1.
    """
    _check_batch_size(batch_size)
    enc = _encoder_of(model)
    x = _as_fc(fc)
    device, dtype = _device_of(enc), _dtype_of(enc)
    outs = []
    with _eval_mode(enc), torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            att = enc(x[s : s + batch_size].to(device, dtype), None, return_attention=True).attention
            if not att:
                raise ValueError("the encoder returned no attention maps (return_attention=True gave None)")
            outs.append(attention_rollout(att, head_fusion=head_fusion).mean(1).cpu())  # (b, R)
    return torch.cat(outs).numpy()


def compute_importance(
    model: nn.Module,
    fc: Any,
    *,
    methods: Sequence[str] = METHODS,
    batch_size: int = 64,
) -> dict[str, ImportanceMap]:
    """Per-subject importance maps for several methods.

    Parameters
    ----------
    model : EncoderProbe or VectorizedFCProbe
        The decision model (``"rollout"`` needs an encoder).
    fc : array-like of shape (N, R, R)
    methods : sequence of {"occlusion", "gradient", "rollout"}
    batch_size : int, default=64
        Inputs per forward pass (occlusion uses ``4 * batch_size`` masked inputs).

    Returns
    -------
    dict of str to ImportanceMap
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"expected methods among {METHODS}, got {unknown}")
    out: dict[str, ImportanceMap] = {}
    for m in methods:
        if m == "occlusion":
            out[m] = ImportanceMap(m, occlusion_importance(model, fc, batch_size=4 * batch_size))
        elif m == "gradient":
            edge = gradient_x_input(model, fc, batch_size=batch_size)
            out[m] = ImportanceMap(m, roi_from_edges(edge), edge)
        else:
            out[m] = ImportanceMap(m, rollout_importance(model, fc, batch_size=batch_size))
    return out


# ----------------------------------------------------------------------------- baseline
def _fisher_z_np(fc: np.ndarray) -> np.ndarray:
    return np.arctanh(np.clip(fc, -1 + 1e-6, 1 - 1e-6))


def univariate_edge_tests(fc: Any, y: Any, *, fisher_z: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mass-univariate Welch t-test on every FC edge, positive minus negative group.

    Parameters
    ----------
    fc : array-like of shape (N, R, R)
    y : array-like of shape (N,)
        Binary labels.
    fisher_z : bool, default=True
        Test Fisher-z transformed correlations.

    Returns
    -------
    t, p : ndarray of shape (R, R)
        Symmetric; diagonal t = 0, p = 1 (edges with zero variance also get t = 0, p = 1).
    """
    from scipy import stats

    x = _as_fc(fc).double().numpy()
    labels = _as_labels(y, x.shape[0])
    if min(np.bincount(labels)) < 2:
        counts = np.bincount(labels).tolist()
        raise ValueError(f"expected at least 2 subjects per class for a t-test, got counts {counts}")
    r = x.shape[-1]
    iu = np.triu_indices(r, 1)
    e = x[:, iu[0], iu[1]]
    if fisher_z:
        e = _fisher_z_np(e)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = stats.ttest_ind(e[labels == 1], e[labels == 0], axis=0, equal_var=False)
    t_vec = np.nan_to_num(res.statistic, nan=0.0)
    p_vec = np.nan_to_num(res.pvalue, nan=1.0)
    t, p = np.zeros((r, r)), np.ones((r, r))
    t[iu], p[iu] = t_vec, p_vec
    t[iu[1], iu[0]], p[iu[1], iu[0]] = t_vec, p_vec
    return t, p


def univariate_baseline(fc: Any, y: Any, *, fisher_z: bool = True) -> GroupMap:
    """The univariate baseline as a :class:`GroupMap`: edge = Welch t, ROI = sum of ``|t|``."""
    t, _ = univariate_edge_tests(fc, y, fisher_z=fisher_z)
    return GroupMap("univariate", roi_from_edges(t), t)


# ----------------------------------------------------------------------------- recovery
def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive.astype(int), scores))


def _top_k_precision(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    order = np.argsort(-scores, kind="stable")[:k]
    return float(positive[order].mean()) if k > 0 else float("nan")


def recovery_scores(
    importance_roi: Any,
    planted_rois: Sequence[int],
    importance_edge: Any = None,
    planted_edges: Sequence[Sequence[int]] | None = None,
    *,
    k: int | None = None,
    k_edges: int | None = None,
    absolute: bool = True,
) -> dict[str, float]:
    """How well an importance map recovers planted ROIs / edges.

    Parameters
    ----------
    importance_roi : array-like of shape (R,)
    planted_rois : sequence of int
        Indices of the planted (truly affected) ROIs.
    importance_edge : array-like of shape (R, R), optional
        Symmetric edge importance; only the upper triangle is scored.
    planted_edges : sequence of (i, j), optional
        Planted connections (order within a pair does not matter).
    k, k_edges : int, optional
        Top-k sizes; default: the number of planted ROIs / edges.
    absolute : bool, default=True
        Score ``|importance|`` (planted effects may raise or lower FC).

    Returns
    -------
    dict
        ``roi_auc``, ``roi_top_k_precision``, ``roi_chance`` (the precision of a random ranking),
        ``edge_auc``, ``edge_top_k_precision``, ``edge_chance`` (NaN without edges). AUC is
        ``sklearn.metrics.roc_auc_score`` of planted (1) versus other (0); chance is 0.5.
    """
    roi = np.asarray(importance_roi, dtype=np.float64)
    if roi.ndim != 1:
        raise ValueError(f"expected importance_roi of shape (n_rois,), got shape {roi.shape}")
    r = roi.shape[0]
    planted = np.asarray(list(planted_rois), dtype=np.int64)
    if planted.size == 0:
        raise ValueError("expected at least one planted ROI, got none")
    if planted.min() < 0 or planted.max() >= r:
        raise ValueError(f"expected planted ROI indices in [0, {r}), got {planted.tolist()[:10]}")
    pos = np.zeros(r, dtype=bool)
    pos[planted] = True
    s = np.abs(roi) if absolute else roi
    kk = int(pos.sum()) if k is None else int(k)
    out = {
        "roi_auc": _auc(s, pos),
        "roi_top_k_precision": _top_k_precision(s, pos, kk),
        "roi_chance": float(pos.mean()),
        "edge_auc": float("nan"),
        "edge_top_k_precision": float("nan"),
        "edge_chance": float("nan"),
    }
    if importance_edge is None or planted_edges is None or len(planted_edges) == 0:
        return out
    edge = np.asarray(importance_edge, dtype=np.float64)
    if edge.shape != (r, r):
        raise ValueError(f"expected importance_edge of shape ({r}, {r}), got shape {edge.shape}")
    pe = np.asarray([list(p) for p in planted_edges], dtype=np.int64)
    if pe.ndim != 2 or pe.shape[1] != 2 or pe.min() < 0 or pe.max() >= r or (pe[:, 0] == pe[:, 1]).any():
        raise ValueError(f"expected planted edges as pairs (i, j), i != j, indices in [0, {r}), got {pe.tolist()[:5]}")
    pmat = np.zeros((r, r), dtype=bool)
    pmat[pe[:, 0], pe[:, 1]] = True
    pmat[pe[:, 1], pe[:, 0]] = True
    iu = np.triu_indices(r, 1)
    epos = pmat[iu]
    es = np.abs(edge[iu]) if absolute else edge[iu]
    ke = int(epos.sum()) if k_edges is None else int(k_edges)
    out.update(
        edge_auc=_auc(es, epos),
        edge_top_k_precision=_top_k_precision(es, epos, ke),
        edge_chance=float(epos.mean()),
    )
    return out


def planted_from_ground_truth(ground_truth: Mapping[str, Any]) -> tuple[list[int], list[tuple[int, int]]]:
    """Planted ROI indices and edges from one task's ground-truth record.

    Accepts the keys written by :mod:`bmlib.data` (``affected_rois``, ``edges``) and, as
    fallbacks, ``planted_rois`` / ``rois`` and ``planted_edges``. Without an explicit ROI
    list the ROIs are the endpoints of the planted edges.
    """
    if not isinstance(ground_truth, Mapping):
        raise TypeError(f"expected a ground-truth mapping, got {type(ground_truth).__name__}")
    edges_raw = next((ground_truth[k] for k in ("edges", "planted_edges") if k in ground_truth), None) or []
    edges = [(int(i), int(j)) for i, j in edges_raw]
    rois_raw = next((ground_truth[k] for k in ("affected_rois", "planted_rois", "rois") if k in ground_truth), None)
    rois = [int(i) for i in rois_raw] if rois_raw is not None else sorted({i for e in edges for i in e})
    if not rois:
        raise ValueError(
            "expected planted ROIs ('affected_rois') or edges ('edges') in the ground truth, "
            f"got keys {sorted(ground_truth)}"
        )
    return rois, edges


def recovery_table(
    maps: Mapping[str, GroupMap | tuple[Any, Any]],
    ground_truth: Mapping[str, Any],
    *,
    k: int | None = None,
    absolute: bool = True,
) -> pd.DataFrame:
    """Recovery of the planted truth by several methods, one row per method.

    Parameters
    ----------
    maps : mapping of str to GroupMap or (roi (R,), edge (R, R) | None)
        Group maps, e.g. ``group_maps(...) | {"univariate": univariate_baseline(fc, y)}``.
    ground_truth : mapping
        One task's ground truth (see :func:`planted_from_ground_truth`).
    k : int, optional
        Top-k size for ROIs (default: number of planted ROIs; edges use their own count).
    absolute : bool, default=True

    Returns
    -------
    DataFrame
        Columns: method, roi_auc, roi_top_k_precision, roi_chance, edge_auc,
        edge_top_k_precision, edge_chance, n_planted_rois, n_planted_edges.
    """
    rois, edges = planted_from_ground_truth(ground_truth)
    rows = []
    for name, m in maps.items():
        roi, edge = (m.roi, m.edge) if isinstance(m, GroupMap) else m
        scores = recovery_scores(roi, rois, edge, edges, k=k, absolute=absolute)
        rows.append({"method": name, **scores, "n_planted_rois": len(rois), "n_planted_edges": len(edges)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- networks
def network_labels(atlas: Any, n_rois: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Per-ROI network names (R,) and the ordered network names of an atlas.

    ``atlas`` is a :class:`bmlib.data.Atlas` (``networks``, optional ``network_names``) or a
    sequence of per-ROI network names (order of first appearance is kept).
    """
    nets = getattr(atlas, "networks", atlas)
    arr = np.asarray(nets.to_numpy() if hasattr(nets, "to_numpy") else list(nets), dtype=object).astype(str)
    if arr.ndim != 1:
        raise ValueError(f"expected one network name per ROI, got shape {arr.shape}")
    if n_rois is not None and arr.shape[0] != n_rois:
        raise ValueError(f"expected one importance value per atlas ROI ({arr.shape[0]} ROIs), got {n_rois}")
    names = list(getattr(atlas, "network_names", None) or list(dict.fromkeys(arr.tolist())))
    return arr, [str(n) for n in names]


def network_importance(roi_importance: Any, atlas: Any, *, absolute: bool = False) -> pd.Series | pd.DataFrame:
    """Mean ROI importance per network.

    Parameters
    ----------
    roi_importance : array-like of shape (R,) or (N, R)
    atlas : Atlas or sequence of str
    absolute : bool, default=False
        Average ``|importance|``.

    Returns
    -------
    Series indexed by network (for (R,)) or DataFrame (N, n_networks) (for (N, R)).
    """
    v = np.asarray(roi_importance, dtype=np.float64)
    if v.ndim not in (1, 2):
        raise ValueError(f"expected roi_importance of shape (n_rois,) or (n_subjects, n_rois), got shape {v.shape}")
    nets, names = network_labels(atlas, v.shape[-1])
    v = np.abs(v) if absolute else v
    cols = {n: v[..., nets == n].mean(-1) for n in names}
    if v.ndim == 1:
        return pd.Series(cols, name="importance").rename_axis("network")
    return pd.DataFrame(cols)


def network_pair_importance(edge_importance: Any, atlas: Any, *, absolute: bool = False) -> pd.DataFrame:
    """Mean edge importance per network pair (K, K).

    Within a network only distinct ROI pairs count (no diagonal); between networks all pairs.

    Parameters
    ----------
    edge_importance : array-like of shape (R, R)
    atlas : Atlas or sequence of str
    absolute : bool, default=False

    Returns
    -------
    DataFrame of shape (K, K), index and columns the network names; symmetric if the input is.
    """
    e = np.asarray(edge_importance, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] != e.shape[1]:
        raise ValueError(f"expected edge_importance of shape (n_rois, n_rois), got shape {e.shape}")
    nets, names = network_labels(atlas, e.shape[0])
    e = np.abs(e) if absolute else e
    onehot = np.stack([nets == n for n in names]).astype(np.float64)  # (K, R)
    offdiag = 1.0 - np.eye(e.shape[0])
    sums = onehot @ (e * offdiag) @ onehot.T
    counts = onehot @ offdiag @ onehot.T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
    return pd.DataFrame(mean, index=pd.Index(names, name="network"), columns=names)


RefitFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray | None]"]


def univariate_refit_fn(fc: Any, *, fisher_z: bool = True) -> RefitFn:
    """Importance function for :func:`network_permutation_test`: the univariate baseline.

    Returns ``f(y) -> (roi (R,), edge (R, R))`` (sum of ``|t|``, Welch t).
    """
    x = _as_fc(fc).double().numpy()

    def fn(y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        g = univariate_baseline(x, y, fisher_z=fisher_z)
        return g.roi, g.edge

    return fn


def probe_refit_fn(fc: Any, *, C: float = 1.0, fisher_z: bool = True, seed: int | None = 0) -> RefitFn:
    """Importance function for :func:`network_permutation_test`: a probe on vectorised FC.

    Each call refits a standardised logistic regression on the Fisher-z edges with the given
    labels and returns the gradient x input group map (difference convention):
    edge ``(i, j) = w_ij * (mean_pos - mean_neg)_ij`` (w on raw features), ROI = row sum of ``|.|``.
    """
    x = _as_fc(fc).float()
    r = x.shape[-1]
    iu = np.triu_indices(r, 1)
    e = x.numpy()[:, iu[0], iu[1]].astype(np.float64)
    e = _fisher_z_np(e) if fisher_z else e

    def fn(y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        labels = _as_labels(y, e.shape[0])
        w = LinearProbe.from_sklearn(fit_probe(e, labels, C=C, seed=seed)).weight.double().numpy()
        diff = e[labels == 1].mean(0) - e[labels == 0].mean(0)
        edge = np.zeros((r, r))
        edge[iu] = w * diff
        edge = edge + edge.T
        return roi_from_edges(edge), edge

    return fn


def occlusion_refit_fn(features: Any, deltas: Any, *, C: float = 1.0, seed: int | None = 0) -> RefitFn:
    """Importance function for :func:`network_permutation_test`: encoder + probe occlusion.

    Parameters
    ----------
    features : array-like of shape (N, P)
        Frozen pooled features (:func:`pooled_features`).
    deltas : array-like of shape (N, R, P)
        :func:`occlusion_feature_deltas` of the same subjects.

    Returns
    -------
    callable
        ``f(y) -> (roi (R,), None)``: refits the probe on ``(features, y)`` and returns the
        occlusion group map (difference convention), computed exactly as ``deltas @ w``.
    """
    F = np.asarray(features, dtype=np.float64)
    D = np.asarray(deltas, dtype=np.float64)
    if F.ndim != 2 or D.ndim != 3 or D.shape[0] != F.shape[0] or D.shape[2] != F.shape[1]:
        raise ValueError(
            f"expected features (N, P) and deltas (N, R, P) with matching N and P, got {F.shape} and {D.shape}"
        )

    def fn(y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        labels = _as_labels(y, F.shape[0])
        w = LinearProbe.from_sklearn(fit_probe(F, labels, C=C, seed=seed)).weight.double().numpy()
        return group_map(D @ w, labels), None

    return fn


def _permute_within(y: np.ndarray, groups: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if groups is None:
        return y[rng.permutation(y.shape[0])]
    out = y.copy()
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = y[rng.permutation(idx)]
    return out


def network_permutation_test(
    importance: Any,
    y: Any,
    atlas: Any,
    *,
    method: Literal["univariate", "probe"] = "univariate",
    level: Literal["network", "pair"] = "network",
    groups: Any = None,
    n_permutations: int = 100,
    seed: int | None = 0,
    relative: bool = True,
) -> pd.DataFrame:
    """Permutation test of network (or network-pair) importance.

    The statistic of a network is the mean ``|ROI importance|`` over its ROIs (of a pair: the
    mean ``|edge importance|`` over its ROI pairs, as in :func:`network_pair_importance`),
    by default divided by the mean over all ROIs (pairs): the network's **share** of the map.
    The null distribution comes from refitting with shuffled labels (within each ``groups``
    value, e.g. site, when given). ``p = (1 + #{null >= observed}) / (1 + n_permutations)``,
    one-sided, uncorrected per network; ``p_bonferroni`` multiplies by the number of tests.

    Why relative: the overall scale of a map follows how separable the groups are (a probe that
    separates them well has large decision differences everywhere), so an absolute statistic
    can flag every network at once. The share asks where the importance is, which is the
    network-level claim a map supports.

    Parameters
    ----------
    importance : array-like of shape (N, R, R) or callable
        FC matrices (then ``method`` picks :func:`univariate_refit_fn` or
        :func:`probe_refit_fn`), or a function ``f(y) -> (roi (R,), edge (R, R) | None)``
        that refits with labels ``y`` (e.g. :func:`occlusion_refit_fn`).
    y : array-like of shape (N,)
        Binary labels.
    atlas : Atlas or sequence of str
    method : {"univariate", "probe"}, default="univariate"
        Used only when ``importance`` is an FC array.
    level : {"network", "pair"}, default="network"
        ``"pair"`` needs edge importance.
    groups : array-like of shape (N,), optional
        Exchangeability blocks (e.g. site): labels are permuted only within a block.
    n_permutations : int, default=100
    seed : int or None, default=0
    relative : bool, default=True
        Test the share of the map (1 = average) rather than the raw mean.

    Returns
    -------
    DataFrame
        ``network`` (or ``network_a``, ``network_b``), ``n_rois`` (or ``n_pairs``),
        ``importance`` (the statistic: share if ``relative``), ``null_mean``, ``p_value``,
        ``p_bonferroni``.
    """
    if callable(importance):
        fn = importance
    elif method == "univariate":
        fn = univariate_refit_fn(importance)
    elif method == "probe":
        fn = probe_refit_fn(importance, seed=seed)
    else:
        raise ValueError(f"expected method 'univariate' or 'probe', got {method!r}")
    if level not in ("network", "pair"):
        raise ValueError(f"expected level 'network' or 'pair', got {level!r}")
    if not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"expected n_permutations a positive int, got {n_permutations!r}")
    y_arr = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    labels = _as_labels(y_arr)
    grp = None
    if groups is not None:
        grp = np.asarray(groups.to_numpy() if hasattr(groups, "to_numpy") else groups)
        if grp.shape != labels.shape:
            raise ValueError(f"expected groups of shape {labels.shape}, got shape {grp.shape}")

    def stat(y_: np.ndarray) -> np.ndarray:
        roi, edge = fn(y_)
        if level == "network":
            roi = np.abs(np.asarray(roi, dtype=np.float64))
            out = network_importance(roi, atlas).to_numpy()
            total = roi.mean()
        else:
            if edge is None:
                raise ValueError("level='pair' needs edge importance, but the importance function returned none")
            e = np.abs(np.asarray(edge, dtype=np.float64))
            out = _upper_pairs(network_pair_importance(e, atlas).to_numpy())
            total = e[np.triu_indices(e.shape[0], 1)].mean()
        return out / max(total, 1e-300) if relative else out

    observed = stat(labels)
    rng = np.random.default_rng(seed)
    null = np.stack([stat(_permute_within(labels, grp, rng)) for _ in range(n_permutations)])  # (P, K)
    p = (1.0 + (null >= observed[None] - 1e-12).sum(0)) / (1.0 + n_permutations)
    nets, names = network_labels(atlas)
    if level == "network":
        counts = [int((nets == n).sum()) for n in names]
        df = pd.DataFrame({"network": names, "n_rois": counts})
    else:
        ia, ib = np.triu_indices(len(names))
        sizes = np.array([(nets == n).sum() for n in names])
        n_pairs = np.where(ia == ib, sizes[ia] * (sizes[ia] - 1) // 2, sizes[ia] * sizes[ib])
        df = pd.DataFrame(
            {"network_a": [names[i] for i in ia], "network_b": [names[j] for j in ib], "n_pairs": n_pairs}
        )
    df["importance"] = observed
    df["null_mean"] = null.mean(0)
    df["p_value"] = p
    df["p_bonferroni"] = np.minimum(1.0, p * len(df))
    return df


def _upper_pairs(mat: np.ndarray) -> np.ndarray:
    return mat[np.triu_indices(mat.shape[0])]


# ----------------------------------------------------------------------------- MRM errors
def load_pretrainer(checkpoint: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the whole :class:`bmlib.objectives.BrainMassPretrainer` (encoder + MRM head) from a checkpoint.

    :func:`bmlib.model.load_encoder` keeps only the encoder; reconstruction error maps also need
    the MRM head, which the engine's checkpoint stores with the rest of the pretrainer.

    Parameters
    ----------
    checkpoint : path
        ``checkpoint.pt`` written by :mod:`bmlib.engine` (or its folder).
    map_location : str or torch.device, default="cpu"

    Returns
    -------
    BrainMassPretrainer
        In eval mode.
    """
    from pathlib import Path

    from bmlib.model import CHECKPOINT_FORMAT
    from bmlib.objectives import BrainMassPretrainer

    path = Path(checkpoint)
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"expected a {CHECKPOINT_FORMAT!r} checkpoint at {path}, got {found!r}")
    missing = [k for k in ("encoder_config", "model") if k not in ckpt]
    if missing:
        raise ValueError(f"expected a pretraining checkpoint with keys 'encoder_config' and 'model', missing {missing}")
    pretrainer = BrainMassPretrainer.from_config(
        {"encoder": ckpt["encoder_config"], "objective": ckpt.get("objective_config", {})}
    )
    pretrainer.load_state_dict(ckpt["model"])
    return pretrainer.to(map_location).eval()


def _mrm_parts(model: Any) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    if isinstance(model, tuple) and len(model) == 2:
        return model[0], model[1]
    enc, head = getattr(model, "encoder", None), getattr(model, "mrm_head", None)
    if enc is None or head is None:
        raise TypeError(
            "expected a pretrainer with .encoder and .mrm_head or a tuple (encoder, mrm_head), "
            f"got {type(model).__name__}"
        )
    return enc, head


def reconstruction_error_map(
    model: Any,
    fc: Any,
    *,
    group_size: int = 1,
    batch_size: int = 128,
    seed: int | None = 0,
    exclude_diagonal: bool = True,
) -> np.ndarray:
    """Per-subject MRM reconstruction error of every ROI's FC row when that ROI is masked.

    The ROIs are split into groups of ``group_size`` (a seeded random partition); each group is
    masked once and the MRM head predicts the masked rows from the visible ROIs. Every ROI is
    masked exactly once, so the map costs ``ceil(R / group_size)`` forwards per subject, batched
    over (subject, group) pairs.

    Parameters
    ----------
    model : pretrainer or (encoder, mrm_head)
        A :class:`bmlib.objectives.BrainMassPretrainer` (uses ``.encoder`` and ``.mrm_head``) or
        a pair. ``mrm_head(tokens (B, R, D)) -> (B, R, R)`` predicted FC rows.
    fc : array-like of shape (N, R, R)
    group_size : int, default=1
        ROIs masked together (1 = each ROI alone, the most sensitive; larger is faster).
    batch_size : int, default=128
        Masked inputs per forward.
    seed : int or None, default=0
        Seed of the ROI partition (irrelevant for ``group_size=1``).
    exclude_diagonal : bool, default=True
        Leave the row's own diagonal entry out of the error.

    Returns
    -------
    ndarray of shape (N, R)
        Mean squared error between the predicted and true FC row of each ROI.
    """
    _check_batch_size(batch_size)
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"expected group_size a positive int, got {group_size!r}")
    encoder, head = _mrm_parts(model)
    x = _as_fc(fc)
    n, r = x.shape[0], x.shape[-1]
    perm = np.random.default_rng(seed).permutation(r) if group_size > 1 else np.arange(r)
    n_groups = -(-r // group_size)
    group_masks = torch.zeros(n_groups, r, dtype=torch.bool)
    for g in range(n_groups):
        group_masks[g, torch.as_tensor(perm[g * group_size : (g + 1) * group_size])] = True
    weight = (1.0 - torch.eye(r)) if exclude_diagonal else torch.ones(r, r)
    denom = weight.sum(-1)  # (R,)
    modules = [m for m in (encoder, head) if isinstance(m, nn.Module)]
    device, dtype = _device_of(encoder), _dtype_of(encoder)
    out = torch.zeros(n, r)
    with contextlib.ExitStack() as stack:
        for m in modules:
            stack.enter_context(_eval_mode(m))
        stack.enter_context(torch.no_grad())
        for subj, g in _subject_roi_pairs(n, np.arange(n_groups), batch_size):
            subj_t, g_t = torch.as_tensor(subj), torch.as_tensor(g)
            xb, mb = x[subj_t].float(), group_masks[g_t]  # (b, R, R), (b, R)
            pred = head(encoder(xb.to(device, dtype), mb.to(device)).tokens).float().cpu()  # (b, R, R)
            if pred.shape != xb.shape:
                raise ValueError(
                    f"expected the MRM head to predict rows of shape {tuple(xb.shape)}, got {tuple(pred.shape)}"
                )
            err = (((pred - xb) ** 2) * weight).sum(-1) / denom  # (b, R)
            rows, cols = mb.nonzero(as_tuple=True)
            out[subj_t[rows], cols] = err[rows, cols]
    return out.numpy()


@dataclass(frozen=True)
class MaskedReconstruction:
    """True and MRM-predicted FC rows of the masked ROIs of N scans (one seeded mask per scan).

    Attributes
    ----------
    mask : ndarray of bool, shape (N, R)
        ``True`` = masked (row and column hidden from the encoder).
    indices : ndarray of int64, shape (N, k)
        The masked ROIs of each scan, in ascending order.
    truth : ndarray of float32, shape (N, k, R)
        True FC rows of the masked ROIs (full rows, own diagonal entry included).
    predicted : ndarray of float32, shape (N, k, R)
        Rows predicted by the MRM head from the visible ROIs.
    roi_r : ndarray of float64, shape (N, k)
        Pearson r between each true and predicted row (NaN when either row is constant).
    roi_mse : ndarray of float64, shape (N, k)
        Mean squared error of each predicted row.
    reference : ndarray of float32, shape (N, k, R), or None
        Rows of a reference FC (e.g. the group-mean FC): the trivial "predict the average"
        answer the MRM head should beat.
    reference_r, reference_mse : ndarray of float64, shape (N, k), or None
        The same scores for ``reference``.
    exclude_diagonal : bool
        Whether each row's own diagonal entry (always 1 in FC) was left out of the scores.
    """

    mask: np.ndarray
    indices: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    roi_r: np.ndarray
    roi_mse: np.ndarray
    reference: np.ndarray | None = None
    reference_r: np.ndarray | None = None
    reference_mse: np.ndarray | None = None
    exclude_diagonal: bool = True

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def scored(self) -> np.ndarray:
        """Bool (N, k, R): entries that enter the scores (all but the own diagonal if excluded)."""
        return _scored_entries(self.indices, self.truth.shape[-1], self.exclude_diagonal)

    def pairs(self, scan: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Scored (true, predicted) entries of one scan's masked rows, flattened: two arrays (m,)."""
        if not isinstance(scan, (int, np.integer)) or not -len(self) <= scan < len(self):
            raise IndexError(f"expected a scan index in [0, {len(self)}), got {scan!r}")
        keep = self.scored()[scan]
        return self.truth[scan][keep], self.predicted[scan][keep]

    def summary(self) -> dict[str, float]:
        """Mean per-ROI r and MSE over all scans and masked ROIs (and the reference's, if any)."""
        out = {"mrm_r": float(np.nanmean(self.roi_r)), "mrm_mse": float(np.mean(self.roi_mse))}
        if self.reference_r is not None and self.reference_mse is not None:
            out |= {"reference_r": float(np.nanmean(self.reference_r)),
                    "reference_mse": float(np.mean(self.reference_mse))}  # fmt: skip
        return out


def _scored_entries(indices: np.ndarray, n_rois: int, exclude_diagonal: bool) -> np.ndarray:
    """Bool (N, k, R) of the scored entries of the masked rows ``indices`` (N, k)."""
    n, k = indices.shape
    keep = np.ones((n, k, n_rois), dtype=bool)
    if exclude_diagonal:
        keep[np.arange(n)[:, None], np.arange(k)[None, :], indices] = False
    return keep


def _row_scores(truth: np.ndarray, pred: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and MSE over the last axis, counting only ``keep`` entries: two arrays (N, k)."""
    w = keep.astype(np.float64)
    t, p = truth.astype(np.float64), pred.astype(np.float64)
    n = w.sum(-1)  # (N, k)
    tc = (t - (w * t).sum(-1, keepdims=True) / n[..., None]) * w  # (N, k, R)
    pc = (p - (w * p).sum(-1, keepdims=True) / n[..., None]) * w
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (tc * pc).sum(-1) / np.sqrt((tc**2).sum(-1) * (pc**2).sum(-1))
    mse = (w * (p - t) ** 2).sum(-1) / n
    return r, mse


def _resolve_recon_mask(
    model: Any, n: int, r: int, mask: Any, mask_ratio: float | None, mask_count: int | None, seed: int | None
) -> Tensor:
    """The (N, R) bool mask of :func:`reconstruct_masked` (given, or drawn as in pretraining)."""
    from bmlib.objectives import random_roi_mask, resolve_mask_count

    if mask is not None:
        if mask_ratio is not None or mask_count is not None:
            raise ValueError("give either mask or mask_ratio / mask_count, not both")
        m = torch.as_tensor(np.asarray(mask))
        if m.dtype != torch.bool:
            raise TypeError(f"expected mask as a bool array (N, R) or (R,) with True = masked, got dtype {m.dtype}")
        m = m.expand(n, r) if m.shape == (r,) else m
        if tuple(m.shape) != (n, r):
            raise ValueError(f"expected mask of shape ({n}, {r}) or ({r},), got {tuple(m.shape)}")
        counts = m.sum(1)
        if bool((counts != counts[0]).any()) or not 1 <= int(counts[0]) <= r - 1:
            raise ValueError(
                f"expected the same number (1 to {r - 1}) of masked ROIs in every scan, got {counts.tolist()[:10]}"
            )
        return m.clone()
    if mask_ratio is not None and mask_count is not None:
        raise ValueError(f"give mask_ratio or mask_count, not both (got {mask_ratio!r} and {mask_count!r})")
    if mask_ratio is not None or mask_count is not None:
        k = resolve_mask_count(r, ratio=mask_ratio, count=mask_count)
    elif getattr(model, "n_masked", 0):
        k = int(model.n_masked)  # the pretrainer's own count (ObjectiveConfig.mask_ratio / mask_count)
    elif getattr(model, "objective_cfg", None) is not None and (
        model.objective_cfg.mask_ratio is not None or model.objective_cfg.mask_count is not None
    ):
        k = model.objective_cfg.n_masked(r)
    else:
        raise ValueError(
            "cannot tell how many ROIs to mask: pass mask_ratio or mask_count (needed for an "
            "(encoder, mrm_head) pair or a pretrainer trained without masking)"
        )
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    return random_roi_mask(n, r, count=k, generator=generator)


def reconstruct_masked(
    model: Any,
    fc: Any,
    *,
    mask_ratio: float | None = None,
    mask_count: int | None = None,
    mask: Any = None,
    seed: int | None = 0,
    reference: Any = None,
    exclude_diagonal: bool = True,
    batch_size: int = 128,
) -> MaskedReconstruction:
    """Mask ROIs of full FC matrices as in pretraining and let the MRM head reconstruct their rows.

    Each scan gets its own random set of ``k`` masked ROIs, drawn with
    :func:`bmlib.objectives.random_roi_mask` from a generator seeded with ``seed``; the masked
    rows *and* columns are hidden from the encoder (as in training) and the MRM head predicts
    the masked ROIs' FC rows from the visible ones.

    Parameters
    ----------
    model : pretrainer or (encoder, mrm_head)
        A :class:`bmlib.objectives.BrainMassPretrainer` (e.g. from :func:`load_pretrainer`) or a
        pair; ``mrm_head(tokens (B, R, D)) -> (B, R, R)``. Run in eval mode, without gradients.
    fc : array-like of shape (R, R) or (N, R, R)
        Full-length FC (no pseudo-FC), e.g. of held-out scans.
    mask_ratio : float, optional
        Fraction of ROIs to mask. Default: the pretrainer's own ``k``
        (``BrainMassPretrainer.n_masked``, from ``ObjectiveConfig``); required (or
        ``mask_count``) for an (encoder, mrm_head) pair.
    mask_count : int, optional
        Number of ROIs to mask instead of a ratio.
    mask : array-like of bool, shape (N, R) or (R,), optional
        Explicit mask (``True`` = masked, same count in every scan) instead of a random one.
    seed : int or None, default=0
        Seed of the masks (None: torch's global RNG).
    reference : array-like of shape (R, R) or (N, R, R), optional
        A reference FC (e.g. the mean FC of the training scans) scored like a prediction.
    exclude_diagonal : bool, default=True
        Leave each row's own diagonal entry (always 1) out of r and MSE.
    batch_size : int, default=128
        Scans per forward.

    Returns
    -------
    MaskedReconstruction
        Masks, true and predicted rows ``(N, k, R)`` and per-ROI r / MSE ``(N, k)``.

    Examples
    --------
    >>> from bmlib.model import encoder_config
    >>> from bmlib.objectives import BrainMassPretrainer
    >>> pt = BrainMassPretrainer(encoder_config("tiny", 20))
    >>> rec = reconstruct_masked(pt, np.eye(20, dtype=np.float32), mask_count=3)
    >>> rec.indices.shape, rec.truth.shape
    ((1, 3), (1, 3, 20))
    """
    _check_batch_size(batch_size)
    encoder, head = _mrm_parts(model)
    shape = tuple(np.shape(fc))
    if len(shape) not in (2, 3) or shape[-1] != shape[-2]:
        raise ValueError(f"expected fc of shape (n_rois, n_rois) or (n_scans, n_rois, n_rois), got shape {shape}")
    x = _as_fc(fc[None] if len(shape) == 2 else fc)  # (N, R, R)
    n, r = x.shape[0], x.shape[-1]
    if n == 0:
        raise ValueError("expected at least one FC matrix, got N=0")
    ref = None
    if reference is not None:
        ref = torch.as_tensor(np.asarray(reference, dtype=np.float32))
        ref = ref.expand(n, r, r) if tuple(ref.shape) == (r, r) else ref
        if tuple(ref.shape) != (n, r, r):
            raise ValueError(f"expected reference of shape ({r}, {r}) or ({n}, {r}, {r}), got {tuple(ref.shape)}")
    m = _resolve_recon_mask(model, n, r, mask, mask_ratio, mask_count, seed)  # (N, R)
    k = int(m[0].sum())
    idx = torch.argsort(m.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]  # (N, k), ascending ROIs
    gather = idx[..., None].expand(-1, -1, r)  # (N, k, R)
    device, dtype = _device_of(encoder), _dtype_of(encoder)
    preds = []
    with contextlib.ExitStack() as stack:
        for mod in (encoder, head):
            if isinstance(mod, nn.Module):
                stack.enter_context(_eval_mode(mod))
        stack.enter_context(torch.no_grad())
        for s in range(0, n, batch_size):
            xb, mb = x[s : s + batch_size], m[s : s + batch_size]
            pred = head(encoder(xb.to(device, dtype), mb.to(device)).tokens).float().cpu()  # (b, R, R)
            if pred.shape != xb.shape:
                raise ValueError(
                    f"expected the MRM head to predict rows of shape {tuple(xb.shape)}, got {tuple(pred.shape)}"
                )
            preds.append(pred.gather(1, gather[s : s + batch_size]))  # (b, k, R)
    truth = x.float().gather(1, gather).numpy()  # (N, k, R)
    predicted = torch.cat(preds).numpy()  # (N, k, R)
    indices = idx.numpy().astype(np.int64)
    keep = _scored_entries(indices, r, bool(exclude_diagonal))  # (N, k, R)
    roi_r, roi_mse = _row_scores(truth, predicted, keep)
    ref_rows = ref_r = ref_mse = None
    if ref is not None:
        ref_rows = ref.gather(1, gather).numpy()  # (N, k, R)
        ref_r, ref_mse = _row_scores(truth, ref_rows, keep)
    return MaskedReconstruction(
        mask=m.numpy(), indices=indices, truth=truth, predicted=predicted, roi_r=roi_r, roi_mse=roi_mse,
        reference=ref_rows, reference_r=ref_r, reference_mse=ref_mse, exclude_diagonal=bool(exclude_diagonal),
    )  # fmt: skip


def atypicality(errors: Any, reference_errors: Any, *, min_std: float = 1e-8) -> np.ndarray:
    """Z-scores of per-ROI reconstruction errors against a reference group (e.g. controls).

    Parameters
    ----------
    errors : array-like of shape (N, R)
    reference_errors : array-like of shape (M, R), M >= 2
    min_std : float, default=1e-8
        Floor on the reference standard deviation.

    Returns
    -------
    ndarray of shape (N, R)
        ``(errors - mean_ref) / std_ref`` (ddof=1); positive = worse reconstructed than usual.
    """
    e = np.asarray(errors, dtype=np.float64)
    ref = np.asarray(reference_errors, dtype=np.float64)
    if e.ndim != 2 or ref.ndim != 2 or e.shape[1] != ref.shape[1]:
        raise ValueError(
            f"expected errors (N, R) and reference_errors (M, R) with the same R, got {e.shape} and {ref.shape}"
        )
    if ref.shape[0] < 2:
        raise ValueError(f"expected at least 2 reference subjects, got {ref.shape[0]}")
    return (e - ref.mean(0)) / np.maximum(ref.std(0, ddof=1), min_std)


# ----------------------------------------------------------------------------- tables / IO
def importance_frame(maps: Mapping[str, GroupMap | ImportanceMap], atlas: Any) -> pd.DataFrame:
    """Tidy ROI-level table of group maps: roi, label, network, one column per method.

    Per-subject :class:`ImportanceMap` entries are summarised by their mean over subjects.
    """
    nets, _ = network_labels(atlas)
    labels = getattr(atlas, "labels", None)
    labels = np.asarray(labels if labels is not None else [f"roi_{i}" for i in range(len(nets))], dtype=object)
    df = pd.DataFrame({"roi": np.arange(len(nets)), "label": labels.astype(str), "network": nets})
    for name, m in maps.items():
        v = np.asarray(m.roi, dtype=np.float64)
        v = v.mean(0) if v.ndim == 2 else v
        if v.shape != (len(nets),):
            raise ValueError(f"expected the {name!r} ROI map to have {len(nets)} entries, got shape {v.shape}")
        df[name] = v
    return df


def save_importance(
    maps: Mapping[str, GroupMap | ImportanceMap], atlas: Any, out_dir: str | os.PathLike[str], *, prefix: str = ""
) -> dict[str, str]:
    """Write the ROI table (CSV) and each edge map (``.npy``) atomically into ``out_dir``.

    Returns ``{name: path}`` of the written files.
    """
    from pathlib import Path

    out = Path(out_dir)
    written: dict[str, str] = {}
    path = out / f"{prefix}roi_importance.csv"
    with atomic_path(path) as tmp:
        importance_frame(maps, atlas).to_csv(tmp, index=False)
    written["roi_importance"] = str(path)
    for name, m in maps.items():
        if m.edge is not None:
            p = out / f"{prefix}edge_importance_{name}.npy"
            with atomic_path(p) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(m.edge, dtype=np.float32))
            written[f"edge_{name}"] = str(p)
    return written


def top_rois(values: Any, atlas: Any, k: int = 10, *, absolute: bool = True) -> pd.DataFrame:
    """The ``k`` ROIs with the largest (absolute) value: rank, roi, label, network, value."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"expected values of shape (n_rois,), got shape {v.shape}")
    nets, _ = network_labels(atlas, v.shape[0])
    labels = np.asarray(getattr(atlas, "labels", [f"roi_{i}" for i in range(v.shape[0])]), dtype=object)
    order = np.argsort(-(np.abs(v) if absolute else v), kind="stable")[:k]
    return pd.DataFrame(
        {"rank": np.arange(1, len(order) + 1), "roi": order, "label": labels[order].astype(str),
         "network": nets[order], "value": v[order]}
    )  # fmt: skip


def truth_map(ground_truth: Mapping[str, Any], n_rois: int | None = None) -> GroupMap:
    """The planted truth as a :class:`GroupMap` (``method="truth"``), to plot beside the maps.

    ROI values: ``roi_effect`` (summed ``|delta FC|`` per ROI) when present, else 1 on the
    planted ROIs. Edge values: ``delta_fc`` when present, else ``edge_effect`` (or 1) on the
    planted edges.
    """
    rois, edges = planted_from_ground_truth(ground_truth)
    r = int(n_rois or ground_truth.get("n_rois") or len(ground_truth.get("delta_fc", [])))
    if r <= max([*rois, *(i for e in edges for i in e)]):
        raise ValueError(f"expected n_rois larger than every planted index, got n_rois={r}")
    if "roi_effect" in ground_truth:
        roi = np.asarray(ground_truth["roi_effect"], dtype=np.float64)
    else:
        roi = np.zeros(r)
        roi[rois] = 1.0
    if "delta_fc" in ground_truth:
        edge = np.asarray(ground_truth["delta_fc"], dtype=np.float64)
    else:
        edge = np.zeros((r, r))
        eff = ground_truth.get("edge_effect") or [1.0] * len(edges)
        for (i, j), v in zip(edges, eff, strict=True):
            edge[i, j] = edge[j, i] = float(v)
    if roi.shape != (r,) or edge.shape != (r, r):
        raise ValueError(f"expected roi_effect ({r},) and delta_fc ({r}, {r}), got {roi.shape} and {edge.shape}")
    return GroupMap("truth", roi, edge)


def load_task(dataset: Any, task: str, **fc_kwargs: Any) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """FC, labels and sample table of one labelled task of a curated dataset.

    Parameters
    ----------
    dataset : CuratedDataset or path
        With ``.manifest``, ``.load`` and ``.tasks`` (see :mod:`bmlib.data`).
    task : str
        A task name of ``dataset.tasks``.
    **fc_kwargs
        FC options for :func:`bmlib.connectivity.fc_list` (default: empirical Pearson).

    Returns
    -------
    fc : ndarray of shape (N, R, R)
    y : ndarray of shape (N,)
        1 = positive class (patient).
    samples : DataFrame
        ``sample_id, participant, site, label`` (see :func:`bmlib.evaluation.benchmark.task_samples`).
    """
    from bmlib.evaluation.benchmark import task_samples
    from bmlib.features import dataset_fc

    if isinstance(dataset, (str, os.PathLike)):
        from bmlib.data import CuratedDataset

        dataset = CuratedDataset(dataset)
    tasks = dict(dataset.tasks)
    if task not in tasks:
        raise ValueError(f"unknown task {task!r}; the dataset has {sorted(tasks)}")
    samples = task_samples(dataset.manifest, tasks[task], name=task)
    fc = dataset_fc(dataset, samples["sample_id"].to_numpy(), **fc_kwargs)
    return fc, samples["label"].to_numpy(dtype=np.int64), samples


@dataclass
class TaskInterpretation:
    """Everything :func:`interpret_task` computes for one task.

    Attributes
    ----------
    model : EncoderProbe
        The encoder with the probe fitted on all the task's subjects.
    maps : dict of str to ImportanceMap
        Per-subject maps of each method.
    groups : dict of str to GroupMap
        Group maps (difference convention) of each method plus ``"univariate"``.
    recovery : DataFrame or None
        :func:`recovery_table` against the ground truth (None without one).
    networks : DataFrame or None
        :func:`network_permutation_test` results of ``"occlusion"`` and ``"univariate"``
        (column ``method``), None without an atlas.
    decision : ndarray of shape (N,)
        Probe decision values (in-sample).
    """

    model: EncoderProbe
    maps: dict[str, ImportanceMap]
    groups: dict[str, GroupMap]
    recovery: pd.DataFrame | None
    networks: pd.DataFrame | None
    decision: np.ndarray

    def save(self, out_dir: str | os.PathLike[str], atlas: Any, *, prefix: str = "") -> dict[str, str]:
        """Write ROI/edge maps, ``recovery.csv`` and ``networks.csv`` (prefixed) atomically."""
        from pathlib import Path

        written = save_importance(self.groups, atlas, out_dir, prefix=prefix)
        for name, df in (("recovery", self.recovery), ("networks", self.networks)):
            if df is not None:
                path = Path(out_dir) / f"{prefix}{name}.csv"
                with atomic_path(path) as tmp:
                    df.to_csv(tmp, index=False)
                written[name] = str(path)
        return written


def interpret_task(
    encoder: nn.Module,
    fc: Any,
    y: Any,
    *,
    methods: Sequence[str] = METHODS,
    ground_truth: Mapping[str, Any] | None = None,
    atlas: Any = None,
    groups: Any = None,
    n_permutations: int = 100,
    C: float = 1.0,
    seed: int | None = 0,
    batch_size: int = 64,
) -> TaskInterpretation:
    """Fit a probe on frozen features and compute maps, recovery and network tests for a task.

    The probe is fitted on **all** the task's subjects: the maps explain the decision function
    the frozen features support; its held-out accuracy is the evaluation notebook's business.
    Occlusion is computed through :func:`occlusion_feature_deltas` (exact, and reused by the
    permutation test, which refits the probe on shuffled labels).

    Parameters
    ----------
    encoder : nn.Module
        Frozen :class:`bmlib.model.BrainEncoder`.
    fc : array-like of shape (N, R, R)
    y : array-like of shape (N,)
        Binary labels (1 = patient).
    methods : sequence of {"occlusion", "gradient", "rollout"}, default all
    ground_truth : mapping, optional
        The task's planted truth (``dataset.ground_truth[task]``) for :func:`recovery_table`.
    atlas : Atlas, optional
        For network permutation tests (skipped when None or ``n_permutations == 0``).
    groups : array-like of shape (N,), optional
        Sites: labels are permuted within site in the permutation tests.
    n_permutations : int, default=100
    C : float, default=1.0
        Inverse regularisation of the probe.
    seed : int or None, default=0
    batch_size : int, default=64

    Returns
    -------
    TaskInterpretation
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"expected methods among {METHODS}, got {unknown}")
    x = _as_fc(fc)
    labels = _as_labels(y, x.shape[0])
    model = fit_encoder_probe(encoder, x, labels, C=C, seed=seed, batch_size=batch_size)
    deltas = occlusion_feature_deltas(encoder, x, batch_size=4 * batch_size) if "occlusion" in methods else None
    maps: dict[str, ImportanceMap] = {}
    for m in methods:
        if m == "occlusion":
            assert deltas is not None
            maps[m] = ImportanceMap(m, (deltas @ model.probe.weight.double().cpu().numpy()).astype(np.float32))
        else:
            maps.update(compute_importance(model, x, methods=[m], batch_size=batch_size))
    gm = group_maps(maps, labels)
    gm["univariate"] = univariate_baseline(x, labels)
    recovery = recovery_table(gm, ground_truth) if ground_truth is not None else None
    networks = None
    if atlas is not None and n_permutations > 0:
        sources: dict[str, Any] = {}
        if deltas is not None:
            sources["occlusion"] = occlusion_refit_fn(model.train_features, deltas, C=C, seed=seed)
        sources["univariate"] = univariate_refit_fn(x)
        tables = [
            network_permutation_test(fn, labels, atlas, groups=groups, n_permutations=n_permutations, seed=seed)
            .assign(method=name)
            for name, fn in sources.items()
        ]
        networks = pd.concat(tables, ignore_index=True)
        networks = networks[["method", *[c for c in networks.columns if c != "method"]]]
    decision = decision_function(model, x, batch_size=batch_size)
    return TaskInterpretation(model, maps, gm, recovery, networks, decision)


@dataclass
class TaskSetInterpretation:
    """Everything :func:`interpret_tasks` computes for several tasks, with tidy tables across them.

    Attributes
    ----------
    results : dict of str to TaskInterpretation
        One entry per task, in the order the tasks were interpreted.
    samples : dict of str to DataFrame
        Each task's sample table (``sample_id, participant, site, label``, see :func:`load_task`).
    truth : dict of str to GroupMap
        The planted truth (:func:`truth_map`) of the tasks that have a ground truth.
    planted : dict of str to list of int
        Their planted ROI indices (:func:`planted_from_ground_truth`), e.g. for the ``truth``
        argument of :func:`bmlib.plotting.interpretation_explorer`.
    summary : DataFrame
        One row per task: ``task, kind, n_scans, n_positive, n_sites, description`` (``kind``:
        ``"internal"`` when the task's datasets were in the pretraining corpus, ``"external"``
        when not, empty when the task record does not say).
    recovery : DataFrame or None
        The tasks' :func:`recovery_table` rows stacked: ``task, kind, method, roi_auc,
        roi_top_k_precision, roi_chance, edge_auc, ...`` (None when no task has a ground truth).
    networks : DataFrame or None
        The tasks' network permutation tests stacked: ``task, kind, method, network, n_rois,
        importance, null_mean, p_value, p_bonferroni`` (None without an atlas or permutations).
        ``p_bonferroni`` corrects within one task and method (over its networks), not across tasks.
    """

    results: dict[str, TaskInterpretation]
    samples: dict[str, pd.DataFrame]
    truth: dict[str, GroupMap]
    planted: dict[str, list[int]]
    summary: pd.DataFrame
    recovery: pd.DataFrame | None
    networks: pd.DataFrame | None

    def __getitem__(self, task: str) -> TaskInterpretation:
        if task not in self.results:
            raise KeyError(f"unknown task {task!r}; interpreted tasks: {list(self.results)}")
        return self.results[task]

    def __len__(self) -> int:
        return len(self.results)

    @property
    def tasks(self) -> list[str]:
        """Task names, in order."""
        return list(self.results)

    @property
    def labels(self) -> dict[str, np.ndarray]:
        """Binary labels (N,) per task, aligned with each task's per-subject maps."""
        return {t: s["label"].to_numpy(dtype=np.int64) for t, s in self.samples.items()}

    def maps(self, kind: Literal["subject", "group"] = "subject") -> dict[str, dict[str, Any]]:
        """``{task: {method: map}}``: per-subject :class:`ImportanceMap` or :class:`GroupMap` entries.

        The per-subject form feeds :func:`bmlib.plotting.interpretation_explorer`; the group form
        (which also holds ``"univariate"``) :func:`bmlib.plotting.plot_maps_vs_truth_grid`.
        """
        if kind not in ("subject", "group"):
            raise ValueError(f"expected kind 'subject' or 'group', got {kind!r}")
        return {t: dict(r.maps if kind == "subject" else r.groups) for t, r in self.results.items()}

    def recovery_matrix(self, metric: str = "roi_auc") -> pd.DataFrame:
        """One recovery score as a (task, method) table, rows and columns in the input order."""
        if self.recovery is None:
            raise ValueError("no recovery table: none of the interpreted tasks has a ground truth")
        if metric not in self.recovery.columns:
            raise ValueError(f"expected a recovery column, got {metric!r} (columns: {list(self.recovery.columns)})")
        wide = self.recovery.pivot(index="task", columns="method", values=metric)
        rows = [t for t in self.results if t in wide.index]
        return wide.loc[rows, list(dict.fromkeys(self.recovery["method"]))].rename_axis(columns=metric)

    def save(self, out_dir: str | os.PathLike[str], atlas: Any) -> dict[str, str]:
        """Write every task's outputs (prefix ``"<task>_"``) and the across-task tables.

        Across tasks: ``tasks.csv`` (:attr:`summary`), ``recovery.csv`` and ``networks.csv``.
        Returns ``{key: path}``; per-task keys are ``"<task>/<name>"``.
        """
        from pathlib import Path

        written: dict[str, str] = {}
        for task, res in self.results.items():
            for key, path in res.save(out_dir, atlas, prefix=f"{task}_").items():
                written[f"{task}/{key}"] = path
        for name, df in (("tasks", self.summary), ("recovery", self.recovery), ("networks", self.networks)):
            if df is not None:
                path = Path(out_dir) / f"{name}.csv"
                with atomic_path(path) as tmp:
                    df.to_csv(tmp, index=False)
                written[name] = str(path)
        return written


def _stack(frames: Mapping[str, pd.DataFrame | None], kinds: Mapping[str, str]) -> pd.DataFrame | None:
    parts = [df.assign(task=t, kind=kinds[t]) for t, df in frames.items() if df is not None]
    if not parts:
        return None
    out = pd.concat(parts, ignore_index=True)
    return out[["task", "kind", *[c for c in out.columns if c not in ("task", "kind")]]]


def interpret_tasks(
    encoder: nn.Module,
    dataset: Any,
    tasks: str | Sequence[str] | None = None,
    *,
    methods: Sequence[str] = METHODS,
    atlas: Any = None,
    ground_truth: Mapping[str, Mapping[str, Any]] | None = None,
    within_site: bool = True,
    n_permutations: int = 100,
    C: float = 1.0,
    seed: int | None = 0,
    batch_size: int = 64,
    out_dir: str | os.PathLike[str] | None = None,
    verbose: bool = False,
) -> TaskSetInterpretation:
    """Run :func:`interpret_task` on every (or the chosen) labelled task of a dataset.

    Each task is loaded with :func:`load_task`, interpreted with the same encoder, methods and
    seed, scored against its planted truth when the dataset has one, and (with ``out_dir``)
    saved; the results are also stacked into one recovery and one network table.

    Parameters
    ----------
    encoder : nn.Module
        Frozen :class:`bmlib.model.BrainEncoder`.
    dataset : CuratedDataset, Cohort or path
        With ``.manifest``, ``.load`` and ``.tasks``; ``.ground_truth`` and ``.atlas`` are used
        when present.
    tasks : str or sequence of str, optional
        Task names of ``dataset.tasks`` (default: all of them, in the dataset's order).
    methods : sequence of {"occlusion", "gradient", "rollout"}, default all
    atlas : Atlas, optional
        For the network permutation tests (default: ``dataset.atlas`` when it has one).
    ground_truth : mapping task -> mapping, optional
        Planted truth per task (default: ``dataset.ground_truth`` when it has one). Tasks
        without one get no recovery rows.
    within_site : bool, default=True
        Permute labels within site (the ``site`` column) in the permutation tests.
    n_permutations : int, default=100
        Per task and tested map (0 skips the network tests).
    C : float, default=1.0
        Inverse regularisation of each task's probe.
    seed : int or None, default=0
    batch_size : int, default=64
    out_dir : path, optional
        Save everything there (:meth:`TaskSetInterpretation.save`).
    verbose : bool, default=False
        Print one line per task (size and seconds).

    Returns
    -------
    TaskSetInterpretation
    """
    import time

    unknown_methods = [m for m in methods if m not in METHODS]
    if unknown_methods:
        raise ValueError(f"expected methods among {METHODS}, got {unknown_methods}")
    if isinstance(dataset, (str, os.PathLike)):
        from bmlib.data import CuratedDataset

        dataset = CuratedDataset(dataset)
    specs = dict(getattr(dataset, "tasks", {}) or {})
    if not specs:
        raise ValueError(f"expected a dataset with labelled tasks (.tasks), got none in {dataset!r}")
    names = list(specs) if tasks is None else [tasks] if isinstance(tasks, str) else list(tasks)
    if not names:
        raise ValueError(f"expected at least one task, got none; the dataset has {list(specs)}")
    unknown = [t for t in names if t not in specs]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; the dataset has {list(specs)}")
    if len(set(names)) != len(names):
        raise ValueError(f"expected distinct task names, got {names}")
    if not isinstance(n_permutations, int) or n_permutations < 0:
        raise ValueError(f"expected n_permutations a non-negative int, got {n_permutations!r}")
    if atlas is None:
        atlas = getattr(dataset, "atlas", None)
    truths = dict(getattr(dataset, "ground_truth", {}) or {}) if ground_truth is None else dict(ground_truth)
    if out_dir is not None and atlas is None:
        raise ValueError("saving to out_dir needs an atlas (ROI labels and networks); pass atlas=")
    kinds = {t: str(specs[t].get("kind", "") or "") for t in names}

    results: dict[str, TaskInterpretation] = {}
    samples: dict[str, pd.DataFrame] = {}
    rows = []
    for task in names:
        start = time.perf_counter()
        fc, y, smp = load_task(dataset, task)
        res = interpret_task(
            encoder, fc, y, methods=methods, ground_truth=truths.get(task), atlas=atlas,
            groups=smp["site"].to_numpy() if within_site and "site" in smp else None,
            n_permutations=n_permutations, C=C, seed=seed, batch_size=batch_size,
        )  # fmt: skip
        results[task], samples[task] = res, smp
        rows.append({"task": task, "kind": kinds[task], "n_scans": len(y), "n_positive": int(y.sum()),
                     "n_sites": int(smp["site"].nunique()) if "site" in smp else 1,
                     "description": str(specs[task].get("description", ""))})  # fmt: skip
        if verbose:
            print(f"{task}: {len(y)} scans, {int(y.sum())} positive, {time.perf_counter() - start:.1f} s")
    n_rois = next(iter(results.values())).groups["univariate"].roi.shape[0]
    out = TaskSetInterpretation(
        results=results,
        samples=samples,
        truth={t: truth_map(truths[t], n_rois) for t in names if truths.get(t) is not None},
        planted={t: planted_from_ground_truth(truths[t])[0] for t in names if truths.get(t) is not None},
        summary=pd.DataFrame(rows),
        recovery=_stack({t: r.recovery for t, r in results.items()}, kinds),
        networks=_stack({t: r.networks for t, r in results.items()}, kinds),
    )
    if out_dir is not None:
        out.save(out_dir, atlas)
    return out
