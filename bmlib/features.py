"""Frozen-encoder features: pooled and per-ROI embeddings of full-length FC.

Evaluation never augments: features come from the FC of the **whole** scan (no pseudo-FC), with
the encoder in ``eval()`` mode under :func:`torch.no_grad`, in batches, on any device. Results can
be cached in the run folder (``<run>/features/``) under a key made of

- the sha256 of the encoder's weights (:func:`weights_sha256`, the checkpoint's identity),
- the sha256 of the exact FC array that was encoded (so a re-curated dataset never hits a stale
  cache), and the sample ids in order,
- whether per-ROI embeddings were kept.

The frozen features are computed once for all samples: the encoder never sees labels, so this
cannot leak test information into training folds (the probes themselves are fitted per fold).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from bmlib._io import atomic_path, atomic_write_json

__all__ = [
    "Features",
    "cached_features",
    "dataset_fc",
    "extract_features",
    "random_init_like",
    "resolve_device",
    "weights_sha256",
]

_CACHE_VERSION = 1


class _DatasetLike(Protocol):
    manifest: Any

    def load(self, sample_id: str) -> np.ndarray: ...


@dataclass(frozen=True)
class Features:
    """Frozen-encoder embeddings of N samples.

    Attributes
    ----------
    pooled : ndarray of float32, shape (N, P)
        Subject-level embedding (``EncoderOutput.pooled``).
    rois : ndarray of float32, shape (N, R, D), or None
        Per-ROI embeddings (``EncoderOutput.tokens``); None when not kept.
    sample_ids : ndarray of str, shape (N,), or None
    key : str or None
        Cache key (hex sha256) when the features came from :func:`cached_features`.
    """

    pooled: np.ndarray
    rois: np.ndarray | None = None
    sample_ids: np.ndarray | None = None
    key: str | None = None

    def __len__(self) -> int:
        return int(self.pooled.shape[0])


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else -> ``torch.device(device)``."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def weights_sha256(encoder: nn.Module) -> str:
    """sha256 of an encoder's weights (state-dict names, dtypes, shapes and bytes, sorted by name).

    The same definition as :func:`bmlib.engine.weights_sha256` (tested), applied to the encoder
    alone; the model card's ``weights_sha256`` hashes the whole pretrainer (encoder + heads).
    Equal weights give equal hashes wherever they live (CPU or GPU).
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"expected a torch nn.Module encoder, got {type(encoder).__name__}")
    state = encoder.state_dict()
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _as_fc_tensor(fc: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(fc)
    if t.ndim != 3 or t.shape[1] != t.shape[2]:
        raise ValueError(f"expected FC of shape (N, R, R), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"expected floating-point FC, got dtype {t.dtype}")
    return t


def _pooled_and_tokens(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(out, Mapping):
        return out["pooled"], out.get("tokens")
    if hasattr(out, "pooled"):
        return out.pooled, getattr(out, "tokens", None)
    raise TypeError(f"expected the encoder to return an EncoderOutput with .pooled, got {type(out).__name__}")


def dataset_fc(
    dataset: _DatasetLike,
    sample_ids: Sequence[str] | None = None,
    **fc_kwargs: Any,
) -> np.ndarray:
    """Full-length FC of a dataset's scans (no augmentation).

    Parameters
    ----------
    dataset : CuratedDataset-like
        Anything with ``.manifest`` (a ``sample_id`` column) and ``.load(sample_id) -> (T, R)``.
    sample_ids : sequence of str, optional
        Which scans, in this order (default: the manifest's order).
    **fc_kwargs
        Passed to :func:`bmlib.connectivity.fc_list` (``estimator``, ``fisher_z``, ``diagonal``...).

    Returns
    -------
    ndarray of float32, shape (N, R, R)
    """
    from bmlib.connectivity import fc_list

    if sample_ids is None:
        sample_ids = dataset.manifest["sample_id"].astype(str).to_numpy()
    series = [np.asarray(dataset.load(str(s)), dtype=np.float32) for s in sample_ids]
    return fc_list(series, **fc_kwargs).cpu().numpy().astype(np.float32, copy=False)


def extract_features(
    encoder: nn.Module,
    fc: np.ndarray | torch.Tensor | _DatasetLike,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = "cpu",
    keep_rois: bool = True,
    fc_kwargs: Mapping[str, Any] | None = None,
) -> Features:
    """Embed full-length FC with a frozen encoder.

    Parameters
    ----------
    encoder : nn.Module
        ``encoder(fc (B, R, R)) -> EncoderOutput(tokens (B, R, D), pooled (B, P), ...)``.
        Put in ``eval()`` mode for the call (its previous mode and device are restored).
    fc : ndarray or Tensor, shape (N, R, R), or a dataset
        FC matrices, or a CuratedDataset-like object whose scans are turned into FC with
        :func:`dataset_fc` (``fc_kwargs``).
    batch_size : int, default=256
    device : str or torch.device, default="cpu"
        Where the encoder runs (``"auto"`` picks CUDA when available).
    keep_rois : bool, default=True
        Keep per-ROI embeddings (N x R x D floats; switch off for large cohorts).
    fc_kwargs : mapping, optional
        FC options when ``fc`` is a dataset.

    Returns
    -------
    Features
        ``pooled (N, P)`` and ``rois (N, R, D)`` (or None) as float32 numpy arrays.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"expected a torch nn.Module encoder, got {type(encoder).__name__}")
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    sample_ids = None
    if not isinstance(fc, (np.ndarray, torch.Tensor)):
        if not (hasattr(fc, "manifest") and hasattr(fc, "load")):
            raise TypeError(f"expected FC (N, R, R) or a dataset with .manifest and .load, got {type(fc).__name__}")
        sample_ids = fc.manifest["sample_id"].astype(str).to_numpy()
        fc = dataset_fc(fc, sample_ids, **dict(fc_kwargs or {}))
    fc_t = _as_fc_tensor(fc)
    dev = resolve_device(device)
    params = list(encoder.parameters())
    home = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params else torch.float32
    was_training = encoder.training
    encoder.eval().to(dev)
    pooled_parts: list[np.ndarray] = []
    roi_parts: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, fc_t.shape[0], batch_size):
                batch = fc_t[start : start + batch_size].to(dev, dtype=dtype, non_blocking=True)  # (B, R, R)
                pooled, tokens = _pooled_and_tokens(encoder(batch))
                pooled_parts.append(pooled.float().cpu().numpy())  # (B, P)
                if keep_rois:
                    if tokens is None:
                        raise TypeError("the encoder output has no .tokens; pass keep_rois=False")
                    roi_parts.append(tokens.float().cpu().numpy())  # (B, R, D)
    finally:
        encoder.to(home).train(was_training)
    if not pooled_parts:
        raise ValueError("expected at least one FC matrix, got N=0")
    return Features(
        pooled=np.concatenate(pooled_parts),
        rois=np.concatenate(roi_parts) if keep_rois else None,
        sample_ids=sample_ids,
    )


def _resolve_encoder(checkpoint: str | os.PathLike[str] | nn.Module) -> tuple[nn.Module, str]:
    if isinstance(checkpoint, nn.Module):
        return checkpoint, "<in-memory encoder>"
    from bmlib.model import load_encoder

    encoder, _card = load_encoder(checkpoint)
    return encoder, str(checkpoint)


def cached_features(
    checkpoint: str | os.PathLike[str] | nn.Module,
    data: np.ndarray | torch.Tensor | _DatasetLike,
    sample_ids: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = "cpu",
    keep_rois: bool = True,
    fc_kwargs: Mapping[str, Any] | None = None,
) -> Features:
    """:func:`extract_features`, cached on disk by checkpoint identity and input.

    Parameters
    ----------
    checkpoint : path or nn.Module
        A checkpoint readable by :func:`bmlib.model.load_encoder`, or an encoder.
    data : ndarray or Tensor, shape (N, R, R), or a dataset
        FC matrices (then ``sample_ids`` is required), or a CuratedDataset-like object (FC of
        ``sample_ids``, default all of its manifest, computed with ``fc_kwargs``).
    sample_ids : sequence of str, shape (N,), optional
    cache_dir : path, optional
        Folder of the cache (``<run>/features``). None: no caching.
    batch_size, device, keep_rois, fc_kwargs
        As in :func:`extract_features`.

    Returns
    -------
    Features
        With ``sample_ids`` and ``key`` set. Files: ``<cache_dir>/features_<key16>.npz`` and a
        ``.json`` sidecar (checkpoint, weights sha256, shapes).
    """
    encoder, source = _resolve_encoder(checkpoint)
    if isinstance(data, (np.ndarray, torch.Tensor)):
        if sample_ids is None:
            raise ValueError("sample_ids are required when data is an FC array")
        fc = _as_fc_tensor(data).cpu().numpy().astype(np.float32, copy=False)
    else:
        if sample_ids is None:
            sample_ids = data.manifest["sample_id"].astype(str).to_numpy()
        fc = dataset_fc(data, sample_ids, **dict(fc_kwargs or {}))
    ids = np.asarray(sample_ids).astype(str)
    if ids.shape != (fc.shape[0],):
        raise ValueError(f"expected {fc.shape[0]} sample_ids (one per FC matrix), got shape {ids.shape}")
    w_sha = weights_sha256(encoder)
    h = hashlib.sha256()
    h.update(f"v{_CACHE_VERSION}|{w_sha}|rois={keep_rois}|{fc.shape}|".encode())
    h.update("\n".join(ids.tolist()).encode())
    h.update(np.ascontiguousarray(fc).tobytes())
    key = h.hexdigest()
    path = None if cache_dir is None else Path(cache_dir) / f"features_{key[:16]}.npz"
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                rois = z["rois"] if keep_rois else None
                return Features(pooled=z["pooled"], rois=rois, sample_ids=z["sample_ids"].astype(str), key=key)
    feats = extract_features(encoder, fc, batch_size=batch_size, device=device, keep_rois=keep_rois)
    feats = Features(pooled=feats.pooled, rois=feats.rois, sample_ids=ids, key=key)
    if path is not None:
        arrays = {"pooled": feats.pooled, "sample_ids": ids, "key": np.array(key)}
        if keep_rois:
            arrays["rois"] = feats.rois
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        atomic_write_json(
            path.with_suffix(".json"),
            {"key": key, "checkpoint": source, "weights_sha256": w_sha, "n_samples": int(len(ids)),
             "pooled_shape": list(feats.pooled.shape),
             "rois_shape": None if feats.rois is None else list(feats.rois.shape),
             "fc_kwargs": json.loads(json.dumps(dict(fc_kwargs or {}), default=str))},
        )
    return feats


def random_init_like(encoder: nn.Module, seed: int | None = 0) -> nn.Module:
    """A freshly initialised encoder of the same architecture (a seeded random-init baseline).

    Rebuilt as ``type(encoder)(encoder.cfg)`` (or ``.config``) under ``torch.manual_seed(seed)``
    in a forked RNG, so the global torch RNG is untouched. Buffers (statistics fitted from data,
    such as the input normalisation of ``input_norm="edge"``) are copied from ``encoder``, so
    the baseline differs only in its learned weights. Encoders without a config attribute
    are deep-copied and every submodule with ``reset_parameters`` is reset; that fallback
    raises if any parameter outside such submodules would keep its trained value.

    Parameters
    ----------
    encoder : nn.Module
    seed : int or None, default=0

    Returns
    -------
    nn.Module
        On CPU, in eval mode.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"expected a torch nn.Module encoder, got {type(encoder).__name__}")
    cfg = getattr(encoder, "cfg", None) or getattr(encoder, "config", None)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if cfg is not None:
            fresh = type(encoder)(cfg)
        else:
            fresh = copy.deepcopy(encoder).cpu()
            reset = set()
            for mod in fresh.modules():
                if hasattr(mod, "reset_parameters") and mod is not fresh:
                    mod.reset_parameters()
                    reset.update(id(p) for p in mod.parameters(recurse=False))
            left = [n for n, p in fresh.named_parameters() if id(p) not in reset]
            if left:
                raise TypeError(
                    f"cannot re-initialise {type(encoder).__name__} without a .cfg/.config attribute: "
                    f"parameters {left[:3]} have no reset_parameters()"
                )
    # buffers hold statistics fitted from data (e.g. the encoder's input normalisation), not
    # learned weights: the baseline keeps them so that only the training differs
    own = dict(encoder.named_buffers())
    with torch.no_grad():
        for name, buf in fresh.named_buffers():
            if name in own and own[name].shape == buf.shape:
                buf.copy_(own[name].detach().to(buf.device, buf.dtype))
    return fresh.eval()
