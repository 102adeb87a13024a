"""Pretraining engine: one epoch, the fit loop, schedules, AMP, checkpoints, resume, model card.

Three layers, as in MAE: the network and objectives live in :mod:`bmlib.model` /
:mod:`bmlib.objectives`; :func:`train_one_epoch` runs one epoch; :func:`fit` turns explicit
values into objects (data loader, optimizer, schedules, process group) and loops over epochs.
The same :func:`fit` runs in a notebook, from ``python -m bmlib pretrain`` and under
``torchrun`` (DDP, one process per GPU, or several CPU processes with gloo).

Pseudo-FC views are made on the training device, a batch at a time: the data loader only pads
raw time series (:class:`bmlib.pfc.PFCCollate`); :func:`bmlib.pfc.make_views` then draws the
timepoint subsets and computes both views' FC on the device.

Randomness and resume
---------------------
Every micro-batch reseeds the view/mask generator and torch's global RNG (dropout) from
``(seed, epoch, batch index, rank)``, and the sampler order depends only on ``(seed, epoch)``.
So a run resumed from a checkpoint (written at the end of every ``checkpoint_every`` epochs,
when ``max_steps`` stops a run, and at the end) reproduces the losses of an uninterrupted run
with the same seed, whatever happened in between. Checkpoints also carry the RNG states
(restored on resume) for anything a callback draws.

Checkpoint format (``"bmlib-checkpoint-v1"``), loadable with ``torch.load(weights_only=True)``:
``format, encoder_config, objective_config, model`` (unwrapped
``BrainMassPretrainer.state_dict()``, encoder weights under ``"encoder."``), ``optimizer,
scheduler, scaler, rng`` (torch CPU/CUDA, numpy and Python RNG states as tensors and lists),
``generator_state, generator_device, step, epoch, batch_in_epoch, total_steps, train_config,
history`` (list of row dicts), ``wall_time_s, card``. Beside it: ``model_card.json``,
``model_card.md`` and ``history.csv``, every file written atomically.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import math
import os
import platform
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from bmlib import __version__
from bmlib import distributed as bdist
from bmlib._heap import cpu_heap_cache
from bmlib._io import atomic_path, atomic_write_json, atomic_write_text
from bmlib.connectivity import fc_list
from bmlib.model import CHECKPOINT_FORMAT, EncoderConfig, encoder_config, input_norm_statistics
from bmlib.objectives import BrainMassPretrainer, ObjectiveConfig, cosine_momentum, objective_config
from bmlib.pfc import PFCCollate, make_views

__all__ = [
    "CHECKPOINT_FORMAT",
    "FitResult",
    "PFCViews",
    "WarmupCosine",
    "autocast_context",
    "build_optimizer",
    "fit",
    "fit_argument_names",
    "load_checkpoint",
    "make_grad_scaler",
    "resolve_amp",
    "resolve_device",
    "save_checkpoint",
    "train_one_epoch",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
_AMP_CHOICES = ("auto", "bf16", "fp16", "off")
_VIEW_MODES = ("drop", "crop")


# --------------------------------------------------------------------------------------------
# Device and mixed precision (one place, nanoGPT style)
# --------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:1" | "mps"`` into an available :class:`torch.device`.

    ``"auto"`` picks CUDA (``cuda:<LOCAL_RANK>`` under torchrun), then Apple MPS, then CPU.

    Parameters
    ----------
    device : str or torch.device, default "auto"

    Returns
    -------
    torch.device
        With an explicit index for CUDA.

    Raises
    ------
    ValueError
        When the name is not a device or the device is not available here.
    """
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise TypeError(f"expected device as a str or torch.device, got {type(device).__name__}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", bdist.get_local_rank() % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"expected device 'auto', 'cpu', 'cuda', 'cuda:<i>' or 'mps', got {device!r}") from err
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine")
        index = bdist.get_local_rank() % torch.cuda.device_count() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {device!r} was requested but MPS is not available on this machine")
        return dev
    raise ValueError(f"expected device 'auto', 'cpu', 'cuda', 'cuda:<i>' or 'mps', got {device!r}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_amp(device: torch.device, amp: str | bool | None = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for full precision.

    Parameters
    ----------
    device : torch.device
    amp : {"auto", "bf16", "fp16", "off"} or bool or None, default "auto"
        ``"auto"``: bf16 on CUDA GPUs that support it, fp16 on older CUDA GPUs, off elsewhere
        (CPU autocast only when ``"bf16"`` is asked explicitly). ``True`` means ``"auto"``;
        ``False`` / None mean ``"off"``.

    Returns
    -------
    torch.dtype or None
    """
    if amp is True:
        amp = "auto"
    if amp is False or amp is None:
        amp = "off"
    if not isinstance(amp, str) or amp.lower() not in _AMP_CHOICES:
        raise ValueError(f"expected amp in {_AMP_CHOICES} (or a bool), got {amp!r}")
    amp = amp.lower()
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"amp='bf16' was requested but {device} does not support bfloat16; use 'fp16' or 'auto'")
        return torch.bfloat16
    if device.type == "cpu":
        raise ValueError("amp='fp16' is only supported on CUDA or MPS devices; use 'bf16' or 'off' on CPU")
    return torch.float16


def autocast_context(device: torch.device, amp: str | bool | None = "auto") -> contextlib.AbstractContextManager:
    """Autocast for the forward pass on ``device`` (a no-op when :func:`resolve_amp` says off)."""
    dtype = resolve_amp(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, amp: str | bool | None = "auto") -> torch.amp.GradScaler | None:
    """A GradScaler when training in fp16 on CUDA (bf16 and full precision need none)."""
    if resolve_amp(device, amp) == torch.float16 and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


# --------------------------------------------------------------------------------------------
# Schedules and optimizer
# --------------------------------------------------------------------------------------------
class WarmupCosine:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_ratio``.

    A callable object (not a closure), so ``LambdaLR.state_dict()`` stores its numbers and the
    scheduler state round-trips through a ``weights_only`` checkpoint.

    Parameters
    ----------
    warmup_steps : int
        Steps of linear warm-up; step ``s < warmup_steps`` gets ``(s + 1) / warmup_steps``.
    total_steps : int
        Length of the whole schedule (the multiplier reaches ``min_ratio`` at the last step).
    min_ratio : float
        ``min_lr / lr``.

    Examples
    --------
    >>> f = WarmupCosine(warmup_steps=2, total_steps=6, min_ratio=0.0)
    >>> [round(f(s), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"expected total_steps >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"expected 0 <= warmup_steps <= total_steps ({total_steps}), got {warmup_steps}")
        if not 0.0 <= min_ratio <= 1.0:
            raise ValueError(f"expected 0 <= min_lr / lr <= 1, got {min_ratio}")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(pretrainer: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``pretrainer.trainable_parameters()``; no weight decay on 0-/1-D tensors.

    Every online parameter (encoder, mask token, embeddings, projector, predictor, MRM head) is
    optimized; the EMA target is not (the original code left the heads out: not repeated here).

    Parameters
    ----------
    pretrainer : nn.Module
        Has ``trainable_parameters()``.
    lr, weight_decay : float

    Returns
    -------
    torch.optim.AdamW
        Two parameter groups: ``"decay"`` (matrices) and ``"no_decay"`` (biases, norms, tokens).
    """
    trainable = list(pretrainer.trainable_parameters())
    if not trainable:
        raise ValueError("the pretrainer has no trainable parameters")
    frozen = [p for p in trainable if not p.requires_grad]
    if frozen:
        raise ValueError(f"trainable_parameters() returned {len(frozen)} parameter(s) with requires_grad=False")
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.999))


# --------------------------------------------------------------------------------------------
# Views and data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PFCViews:
    """Two pseudo-FC views of a padded batch, made on the batch's device.

    Called as ``view_fn(batch, generator)`` by :func:`train_one_epoch`, where ``batch`` is the
    collated dict ``{"x": (B, T, R), "lengths": (B,), ...}`` already on the training device.

    Parameters
    ----------
    mode : {"drop", "crop"}
        Drop a random ``drop_fraction`` of timepoints (order kept) or take a contiguous crop.
    drop_fraction : float
    crop_length : int or float, optional
        Crop window: timepoints, or a fraction in ``(0, 1]`` of each scan (``mode="crop"``).
    """

    mode: str = "drop"
    drop_fraction: float = 0.2
    crop_length: int | float | None = None

    def __call__(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
        """Return the views, shape ``(2, B, R, R)``."""
        kwargs: dict[str, Any] = {"n_views": 2, "mode": self.mode, "generator": generator}
        if self.mode == "drop":
            kwargs["drop_fraction"] = self.drop_fraction
        else:
            kwargs["crop_length"] = self.crop_length
        return make_views(batch["x"], batch.get("lengths"), **kwargs)


class _SeriesDataset(Dataset):
    """A list of ``(T_i, R)`` arrays/tensors as a dataset of ``{"x", "index"}`` dicts."""

    def __init__(self, series: Sequence[Any]) -> None:
        self.series = [torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in series]

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.series[i], "index": i}


class _DictItems(Dataset):
    """Wrap a dataset whose items are bare ``(T, R)`` arrays/tensors."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": torch.as_tensor(np.asarray(self.base[i]), dtype=torch.float32), "index": i}


#: Scans whose full-length FC sets the edge statistics of ``input_norm="edge"``.
INPUT_NORM_SCANS = 2048


@torch.no_grad()
def fit_input_norm(
    pretrainer: BrainMassPretrainer,
    dataset: Dataset,
    *,
    max_scans: int = INPUT_NORM_SCANS,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> int:
    """Set the encoder's ``input_norm="edge"`` statistics from the training scans.

    The full-length FC of up to ``max_scans`` scans (a seeded random subset when there are
    more) gives every edge's mean and standard deviation across scans; online and target
    encoders get the same values. Every process of a distributed run draws the same subset.

    Parameters
    ----------
    pretrainer : BrainMassPretrainer
    dataset : Dataset of ``{"x": (T, R)}`` items
    max_scans : int, default=INPUT_NORM_SCANS
    seed : int, default=0
    device : str or torch.device, default="cpu"

    Returns
    -------
    int
        Number of scans used.
    """
    n = len(dataset)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)[:max_scans] if n > max_scans else torch.arange(n)
    series = [dataset[int(i)]["x"] for i in order.sort().values]
    fc = fc_list(series, device=device)
    mean, std = input_norm_statistics(fc)
    for encoder in (pretrainer.encoder, pretrainer.target_encoder):
        encoder.set_input_norm(mean, std)
    return len(series)


def _as_torch_dataset(dataset: Any) -> tuple[Dataset, dict[str, Any]]:
    """Return a dataset of ``{"x": (T, R), "index"}`` items and a data description."""
    description: dict[str, Any] = {}
    if hasattr(dataset, "torch_dataset") and callable(dataset.torch_dataset):
        manifest = getattr(dataset, "manifest", None)
        if isinstance(manifest, pd.DataFrame) and len(manifest):
            if "dataset" in manifest.columns:
                counts = manifest["dataset"].astype(str).value_counts().sort_index()
                description["datasets"] = {str(k): int(v) for k, v in counts.items()}
            if "participant" in manifest.columns:
                description["n_participants"] = int(manifest["participant"].nunique())
            if "site" in manifest.columns:
                description["n_sites"] = int(manifest["site"].nunique())
        root = getattr(dataset, "root", None)
        if root is not None:
            description["root"] = str(root)
        dataset = dataset.torch_dataset()
    elif isinstance(dataset, (list, tuple)):
        dataset = _SeriesDataset(dataset)
    elif isinstance(dataset, np.ndarray) or isinstance(dataset, torch.Tensor):
        if dataset.ndim != 3:
            raise ValueError(f"expected a 3D array (n_scans, n_timepoints, n_rois), got shape {tuple(dataset.shape)}")
        dataset = _SeriesDataset(list(dataset))
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(
            "expected a torch Dataset of {'x': (T, R)} items, a CuratedDataset or a list of (T, R) arrays, "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError("expected a non-empty dataset, got 0 scans")
    first = dataset[0]
    if not isinstance(first, Mapping):
        dataset = _DictItems(dataset)
        first = dataset[0]
    if "x" not in first:
        raise ValueError(f"expected dataset items with key 'x' (n_timepoints, n_rois), got keys {sorted(first)}")
    x = first["x"]
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"expected item 'x' as a 2D array (n_timepoints, n_rois), got shape {tuple(np.shape(x))}")
    description.setdefault("n_scans", len(dataset))
    description.setdefault("n_rois", int(x.shape[1]))
    return dataset, description


class _ResumableSampler(Sampler[int]):
    """A :class:`DistributedSampler` that can skip the first ``skip`` indices of one epoch.

    The order depends only on ``(seed, epoch)``, and resuming mid-epoch skips what was seen.
    """

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        indices = list(iter(self.base))
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return max(len(self.base) - self.skip, 0)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {
        k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }


def _micro_seed(seed: int, epoch: int, batch_index: int, rank: int) -> int:
    """A 63-bit seed that depends only on (seed, epoch, batch index, rank)."""
    state = np.random.SeedSequence([seed, epoch, batch_index, rank, 0x626D6C6962]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


# --------------------------------------------------------------------------------------------
# One epoch
# --------------------------------------------------------------------------------------------
def train_one_epoch(
    pretrainer: nn.Module,
    loader: DataLoader | Sequence[Mapping[str, Any]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    generator: torch.Generator,
    view_fn: Callable[[Mapping[str, torch.Tensor], torch.Generator], torch.Tensor] = PFCViews(),
    momentum: Callable[[int], float] | float = 0.996,
    amp: str | bool | None = "off",
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = 1.0,
    accum_steps: int = 1,
    epoch: int = 0,
    start_step: int = 0,
    first_batch: int = 0,
    batches_in_epoch: int | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    forward_module: nn.Module | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    heap_cache: bool = True,
) -> list[dict[str, Any]]:
    """Train for one epoch (or until ``max_steps``) and return one history row per optimizer step.

    For every micro-batch: move the padded series to ``device``, reseed ``generator`` (and
    torch's global RNG) from ``(seed, epoch, batch index, rank)``, make two pFC views with
    ``view_fn`` (full precision), run the pretrainer under autocast, backpropagate
    ``loss / group size``. Every ``accum_steps`` micro-batches: clip, step the optimizer and the
    scheduler, update the EMA target with ``momentum(step)``.

    Parameters
    ----------
    pretrainer : nn.Module
        The unwrapped :class:`bmlib.objectives.BrainMassPretrainer` (or any module with the same
        ``forward(view1, view2, *, generator) -> dict``, ``update_target(m)`` and
        ``trainable_parameters()``).
    loader : DataLoader or sequence of dict
        Yields ``{"x": (B, T, R), "lengths": (B,), ...}``.
    optimizer, scheduler
        Stepped once per optimizer step (the scheduler's unit is the optimizer step).
    device : torch.device
    generator : torch.Generator
        On ``device``; draws views and masks.
    view_fn : callable, default PFCViews()
        ``view_fn(batch_on_device, generator) -> Tensor (2, B, R, R)``.
    momentum : callable or float, default 0.996
        EMA momentum, or ``momentum(step) -> float`` with ``step`` counted from 0.
    amp : see :func:`resolve_amp`, default "off"
    scaler : GradScaler, optional
        For fp16 on CUDA (:func:`make_grad_scaler`).
    grad_clip : float or None, default 1.0
        Max global L2 norm of the gradients (None or 0: no clipping; the norm is still logged).
    accum_steps : int, default 1
        Micro-batches per optimizer step. The last group of an epoch may be shorter; its loss is
        divided by its own size.
    epoch : int
        Epoch index (history and seeding).
    start_step : int
        Global optimizer steps done before this epoch.
    first_batch : int
        Index in the epoch of the loader's first batch (non-zero when resuming mid-epoch).
    batches_in_epoch : int, optional
        Micro-batches in the whole epoch (defaults to ``first_batch + len(loader)``).
    seed : int
        Base seed of the per-micro-batch seeds.
    max_steps : int, optional
        Stop once the global step reaches it.
    forward_module : nn.Module, optional
        The module to call forward on (a DDP and/or compiled wrapper of ``pretrainer``).
    on_step : callable, optional
        Called with each history row, on every rank.
    heap_cache : bool, default=True
        On CPU, keep freed activation memory in the heap during the epoch instead of
        returning it to the system and page-faulting it back every step
        (:func:`bmlib._heap.cpu_heap_cache`; Linux/glibc only). About 25% faster at the
        ``paper`` preset on 2 cores, for a higher peak RSS (3.7 -> 4.8 GB there); the memory
        is given back at the end of the epoch.

    Returns
    -------
    list of dict
        Rows with ``step`` (1-based global), ``epoch``, ``lr`` (used by this step),
        ``momentum`` (EMA), the pretrainer's scalar outputs (``loss``, ``mrm``, ``lra``,
        ``contrastive``, ``emb_std``, ...) averaged over the step's micro-batches and over
        processes, ``grad_norm`` (global norm before clipping), ``samples`` (scans in this step,
        all processes) and ``step_s`` (seconds).
    """
    if accum_steps < 1:
        raise ValueError(f"expected accum_steps >= 1, got {accum_steps}")
    model = pretrainer if forward_module is None else forward_module
    model.train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    n_total = first_batch + len(loader) if batches_in_epoch is None else batches_in_epoch
    rank = bdist.get_rank()
    momentum_fn = momentum if callable(momentum) else (lambda _s, _m=float(momentum): _m)
    no_sync = getattr(model, "no_sync", None)
    step = start_step
    rows: list[dict[str, Any]] = []
    sums: dict[str, torch.Tensor] = {}
    t_step = time.perf_counter()
    n_samples = 0
    optimizer.zero_grad(set_to_none=True)
    with cpu_heap_cache(heap_cache and torch.device(device).type == "cpu"):  # no page faults per step
        for i, batch in enumerate(loader):
            b = first_batch + i
            group_start = (b // accum_steps) * accum_steps
            group_size = min(accum_steps, n_total - group_start)
            last_in_group = b + 1 == group_start + group_size
            batch = _to_device(batch, device)
            micro_seed = _micro_seed(seed, epoch, b, rank)
            generator.manual_seed(micro_seed)
            torch.manual_seed(micro_seed ^ 0x5DEECE66D)
            views = view_fn(batch, generator)  # (2, B, R, R)
            n_samples += int(views.shape[1])
            sync = contextlib.nullcontext() if (last_in_group or no_sync is None) else no_sync()
            with sync:
                with autocast_context(device, amp):
                    out = model(views[0], views[1], generator=generator)
                loss = out["loss"] / group_size
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for key, value in out.items():
                if isinstance(value, torch.Tensor) and value.ndim == 0:
                    value = value.detach().float() / group_size
                    sums[key] = sums[key] + value if key in sums else value
            if not last_in_group:
                continue
            if scaler is not None:
                scaler.unscale_(optimizer)
            max_norm = float(grad_clip) if grad_clip else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # norm before clipping
            # one reduction per step: the logged values are means over processes (same on every rank)
            keys = sorted(sums)
            values = bdist.all_reduce_mean(torch.stack([sums[k] for k in keys] + [grad_norm.detach().float()])).tolist()
            metrics = dict(zip(keys, values[:-1], strict=True))
            if not math.isfinite(metrics["loss"]):
                raise FloatingPointError(
                    f"non-finite loss {metrics['loss']} at step {step + 1} (epoch {epoch}), before the optimizer "
                    "step; lower lr, clip gradients harder or turn amp off"
                )
            lr = float(optimizer.param_groups[0]["lr"])
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            m = float(momentum_fn(step))
            pretrainer.update_target(m)
            step += 1
            row: dict[str, Any] = {"step": step, "epoch": epoch, "lr": lr, "momentum": m, **metrics}
            row["grad_norm"] = float(values[-1])
            row["samples"] = n_samples * bdist.get_world_size()
            row["step_s"] = time.perf_counter() - t_step
            rows.append(row)
            sums, n_samples = {}, 0
            if on_step is not None:
                on_step(row)
            if max_steps is not None and step >= max_steps:
                break
            t_step = time.perf_counter()
    return rows


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes and bytes, in sorted key order).

    The identity of a checkpoint's weights: the model card records it and the features module
    keys its caches by it. Independent of the device the tensors are on.

    Parameters
    ----------
    state_dict : mapping of str to Tensor

    Returns
    -------
    str
        64 hexadecimal characters.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"expected tensors in the state dict, got {type(t).__name__} at {key!r}")
        t = t.detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> Path:
    """Write ``checkpoint`` with :func:`torch.save` atomically (nothing partial is left on failure).

    Parameters
    ----------
    path : str or PathLike
        Destination (``.../checkpoint.pt``); its folder is created.
    checkpoint : mapping
        Must hold only tensors, numbers, strings, None, lists, tuples and dicts (so that
        ``torch.load(weights_only=True)`` reads it) and ``"format": CHECKPOINT_FORMAT``.

    Returns
    -------
    Path
    """
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"expected checkpoint['format'] == {CHECKPOINT_FORMAT!r}, got {checkpoint.get('format')!r}")
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(checkpoint), tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an engine checkpoint safely (``torch.load(weights_only=True)``).

    Parameters
    ----------
    path : str or PathLike
        The ``checkpoint.pt`` file, or the folder holding it.
    map_location : str or torch.device, default "cpu"

    Returns
    -------
    dict
        See the module docstring for the keys.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"expected a {CHECKPOINT_FORMAT!r} checkpoint at {path}, got {found!r}")
    return ckpt


def _rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain lists (``weights_only``-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        cuda_states = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["bit_generator"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    """``obj`` with only built-in JSON types (str subclasses such as TorchVersion, numpy scalars
    and paths become str/int/float), so it is both JSON- and ``weights_only``-safe."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    return str(obj)


def _count_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _card_markdown(card: Mapping[str, Any]) -> str:
    enc = card.get("encoder_config", {})
    lines = [
        f"# bmlib model card: {card.get('preset', '?')} encoder",
        "",
        "BrainMass-style pretraining (pseudo-FC views, Mask-ROI Modeling, Latent Representation Alignment).",
        "",
        "| field | value |",
        "|---|---|",
        f"| preset | {card.get('preset')} |",
        f"| encoder | {', '.join(f'{k}={v}' for k, v in enc.items())} |",
        f"| parameters | encoder {card['n_parameters']['encoder']:,}; trainable {card['n_parameters']['trainable']:,};"
        f" total {card['n_parameters']['total']:,} |",
        f"| data | {card.get('data')} |",
        f"| steps | {card['steps']} / {card['total_steps']} (epochs {card['epochs_completed']:g} / {card['epochs']}) |",
        f"| batch | {card['batch_size']} per process x {card['world_size']} process(es) x {card['accum_steps']} "
        f"accumulation = {card['effective_batch_size']} |",
        f"| final losses | {', '.join(f'{k}={v:.4g}' for k, v in card.get('final_losses', {}).items())} |",
        f"| wall time | {card['wall_time_s']:.1f} s |",
        f"| device | {card['device']} (amp {card['amp']}) |",
        f"| versions | bmlib {card['bmlib_version']}, torch {card['torch_version']}, python {card['python_version']} |",
        f"| seed | {card['seed']} |",
        f"| weights sha256 | `{card['weights_sha256']}` |",
        f"| created | {card['created']} |",
        "",
        "Objective: " + ", ".join(f"{k}={v}" for k, v in card.get("objective_config", {}).items()),
        "",
        "Load the encoder with `bmlib.model.load_encoder(path)`.",
        "",
    ]
    return "\n".join(lines)


def _final_losses(history: Sequence[Mapping[str, Any]], window: int) -> dict[str, float]:
    if not history:
        return {}
    tail = history[-max(window, 1) :]
    skip = {"step", "epoch", "lr", "momentum", "grad_norm", "samples", "step_s", "wall_s"}
    keys = [k for k in tail[-1] if k not in skip]
    return {k: float(np.mean([r[k] for r in tail])) for k in keys}


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history : pandas.DataFrame
        One row per optimizer step (columns of :func:`train_one_epoch` plus ``wall_s``,
        seconds since the start of training, resumes included), including resumed steps.
    checkpoint_path : Path or None
        ``<out_dir>/checkpoint.pt`` (None without ``out_dir``).
    card : dict
        The model card (also ``model_card.json`` / ``.md`` beside the checkpoint).
    pretrainer : nn.Module
        The trained, unwrapped pretrainer (on the training device, eval mode).
    """

    history: pd.DataFrame
    checkpoint_path: Path | None
    card: dict[str, Any]
    pretrainer: nn.Module = field(repr=False)


# fit() arguments that do not change the training trajectory (ignored when comparing on resume).
_NON_TRAJECTORY_KEYS = frozenset(
    {"out_dir", "resume", "checkpoint_every", "max_steps", "progress", "log_every", "num_workers", "device",
     "data_description", "compile"}
)


def _objective_config(preset: str, objective: ObjectiveConfig | Mapping[str, Any] | None) -> ObjectiveConfig:
    """The objective for ``preset``: its head widths, with a dict's fields overriding them."""
    if isinstance(objective, ObjectiveConfig):
        return objective
    if objective is None or isinstance(objective, Mapping):
        return objective_config(preset, **dict(objective or {}))
    raise TypeError(f"expected objective as an ObjectiveConfig, a dict or None, got {type(objective).__name__}")


def _check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise TypeError(f"expected {name} as {'an int' if integer else 'a number'}, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or (not integer and not math.isfinite(value)):
        raise ValueError(f"expected {name} {'>= 0' if allow_zero else '> 0'}, got {value}")


def _unused_parameters(pretrainer: nn.Module, n_rois: int, device: torch.device) -> list[str]:
    """Names of trainable parameters that get no gradient in one forward/backward (for DDP)."""
    buffers = {k: v.detach().clone() for k, v in pretrainer.named_buffers()}
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(2, 2, 3 * n_rois, n_rois, device=device, generator=g)
    x = x - x.mean(2, keepdim=True)
    cov = x.transpose(-1, -2) @ x
    d = cov.diagonal(dim1=-2, dim2=-1).sqrt()
    fc = cov / (d[..., :, None] * d[..., None, :])  # (2, 2, R, R)
    pretrainer.train()
    out = pretrainer(fc[0], fc[1], generator=g)
    out["loss"].backward()
    trainable = {id(p) for p in pretrainer.trainable_parameters()}
    unused = [n for n, p in pretrainer.named_parameters() if id(p) in trainable and p.grad is None]
    pretrainer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, v in pretrainer.named_buffers():
            v.copy_(buffers[k])
    return unused


def _check_fit_arguments(a: Mapping[str, Any]) -> None:
    """Validate :func:`fit`'s arguments (types and ranges) before any work is done."""
    for name in ("epochs", "batch_size", "accum_steps", "checkpoint_every", "log_every"):
        _check_positive(name, a[name], integer=True)
    for name in ("num_workers", "seed"):
        _check_positive(name, a[name], integer=True, allow_zero=True)
    _check_positive("lr", a["lr"])
    for name in ("weight_decay", "min_lr"):
        _check_positive(name, a[name], allow_zero=True)
    if a["grad_clip"] is not None:
        _check_positive("grad_clip", a["grad_clip"], allow_zero=True)
    if a["max_steps"] is not None:
        _check_positive("max_steps", a["max_steps"], integer=True)
    if a["min_lr"] > a["lr"]:
        raise ValueError(f"expected min_lr <= lr ({a['lr']}), got {a['min_lr']}")
    if a["warmup_epochs"] is not None and a["warmup_steps"] is not None:
        raise ValueError("give warmup_epochs or warmup_steps, not both")
    if a["warmup_epochs"] is not None:
        _check_positive("warmup_epochs", a["warmup_epochs"], allow_zero=True)
    if a["warmup_steps"] is not None:
        _check_positive("warmup_steps", a["warmup_steps"], integer=True, allow_zero=True)
    if a["view_mode"] not in _VIEW_MODES:
        raise ValueError(f"expected view_mode in {_VIEW_MODES}, got {a['view_mode']!r}")
    if not 0.0 <= a["drop_fraction"] < 1.0:
        raise ValueError(f"expected 0 <= drop_fraction < 1, got {a['drop_fraction']}")
    if a["view_mode"] == "crop" and a["crop_length"] is None:
        raise ValueError("view_mode='crop' needs crop_length (timepoints per crop), got None")
    resume = a["resume"]
    if resume is not None and not isinstance(resume, (str, os.PathLike)):
        raise TypeError(f"expected resume as a path, 'auto' or None, got {type(resume).__name__}")
    if resume == "auto" and a["out_dir"] is None:
        raise ValueError("resume='auto' looks for <out_dir>/checkpoint.pt but out_dir is None")


def _train_config(a: Mapping[str, Any]) -> dict[str, Any]:
    """The fit arguments as plain JSON values (stored in checkpoints and model cards)."""
    config = dict(a)
    config["encoder_overrides"] = dict(a["encoder_overrides"] or {})
    config["objective"] = a["objective"].to_dict() if isinstance(a["objective"], ObjectiveConfig) else a["objective"]
    for name in ("out_dir", "resume", "device"):
        config[name] = None if a[name] is None else str(a[name])
    return _plain(config)


def _resume_checkpoint(
    resume: str | os.PathLike[str] | None,
    ckpt_file: Path | None,
    enc_cfg: EncoderConfig,
    obj_cfg: ObjectiveConfig,
    train_config: Mapping[str, Any],
    *,
    warn: bool,
) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a fresh start), checked against this run."""
    if resume is None:
        return None
    source = ckpt_file if resume == "auto" else Path(resume)
    if resume == "auto" and (source is None or not source.is_file()):
        return None
    ckpt = load_checkpoint(source, map_location="cpu")
    if ckpt["encoder_config"] != enc_cfg.to_dict():
        raise ValueError(
            f"cannot resume: the checkpoint's encoder config {ckpt['encoder_config']} differs from the "
            f"requested {enc_cfg.to_dict()} (same preset, overrides and data?); to train a new model, "
            "write to another out_dir, or pass resume=None to start over in this one"
        )
    if ckpt["objective_config"] != obj_cfg.to_dict():
        raise ValueError(
            f"cannot resume: the checkpoint's objective config {ckpt['objective_config']} differs from "
            f"the requested {obj_cfg.to_dict()}"
        )
    old = ckpt.get("train_config", {})
    changed = sorted(
        k for k in train_config if k not in _NON_TRAJECTORY_KEYS and k in old and old[k] != train_config[k]
    )
    if changed and warn:
        warnings.warn(
            f"resuming with changed arguments {changed}: the run will not reproduce an uninterrupted one",
            stacklevel=3,
        )
    return ckpt


@dataclass(frozen=True)
class _RunInfo:
    """What a run's model card and checkpoints record besides the changing state."""

    preset: str
    enc_cfg: EncoderConfig
    obj_cfg: ObjectiveConfig
    train_config: dict[str, Any]
    description: dict[str, Any]
    device: torch.device
    amp_dtype: torch.dtype | None
    world_size: int
    steps_per_epoch: int
    total_steps: int


def _model_card(run: _RunInfo, pretrainer: nn.Module, history: Sequence[Mapping[str, Any]], wall_s: float) -> dict:
    """The model card (JSON-able dict) of ``pretrainer`` after ``len(history)`` steps."""
    step = len(history)
    tc = run.train_config
    device = str(run.device)
    if run.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(run.device)})"
    return _plain(
        {
            "format": "bmlib-model-card-v1",
            "preset": run.preset,
            "encoder_config": run.enc_cfg.to_dict(),
            "objective_config": run.obj_cfg.to_dict(),
            "n_parameters": {
                "encoder": _count_parameters(pretrainer.encoder),
                "trainable": int(sum(p.numel() for p in pretrainer.trainable_parameters())),
                "total": _count_parameters(pretrainer),
            },
            "data": run.description,
            "steps": step,
            "total_steps": run.total_steps,
            "complete": step >= run.total_steps,
            "epochs": tc["epochs"],
            "epochs_completed": round(step / run.steps_per_epoch, 4),
            "batch_size": tc["batch_size"],
            "world_size": run.world_size,
            "accum_steps": tc["accum_steps"],
            "effective_batch_size": tc["batch_size"] * run.world_size * tc["accum_steps"],
            "train_config": tc,
            "final_losses": _final_losses(history, run.steps_per_epoch),
            "wall_time_s": round(wall_s, 3),
            "device": device,
            "amp": "off" if run.amp_dtype is None else str(run.amp_dtype).replace("torch.", ""),
            "torch_version": torch.__version__,
            "bmlib_version": __version__,
            "python_version": platform.python_version(),
            "seed": tc["seed"],
            "weights_sha256": weights_sha256(pretrainer.state_dict()),
            "checkpoint": CHECKPOINT_NAME,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )


def _checkpoint(
    run: _RunInfo,
    pretrainer: nn.Module,
    state: Mapping[str, Any],
    history: list[dict[str, Any]],
    epoch: int,
    batch_in_epoch: int,
    wall_s: float,
    card: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint dict (format ``bmlib-checkpoint-v1``; see the module docstring)."""
    generator: torch.Generator = state["generator"]
    return {
        "format": CHECKPOINT_FORMAT,
        "encoder_config": run.enc_cfg.to_dict(),
        "objective_config": run.obj_cfg.to_dict(),
        "model": pretrainer.state_dict(),
        "optimizer": state["optimizer"],
        "scheduler": state["scheduler"],
        "scaler": state["scaler"],
        "rng": _rng_state(),
        "generator_state": generator.get_state(),
        "generator_device": run.device.type,
        "step": len(history),
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "total_steps": run.total_steps,
        "train_config": run.train_config,
        "history": history,
        "wall_time_s": wall_s,
        "card": card,
    }


def _write_run_files(out_path: Path, checkpoint: Mapping[str, Any], card: Mapping[str, Any], history: list) -> None:
    """checkpoint.pt, model_card.json, model_card.md and history.csv, each written atomically."""
    save_checkpoint(out_path / CHECKPOINT_NAME, checkpoint)
    atomic_write_json(out_path / "model_card.json", card)
    atomic_write_text(out_path / "model_card.md", _card_markdown(card))
    with atomic_path(out_path / "history.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


class _Reporter:
    """Per-step bookkeeping of :func:`fit`: history, progress bar, log lines, user callback."""

    def __init__(
        self,
        total: int,
        initial: int,
        desc: str,
        *,
        progress: bool,
        log_every: int,
        callback: Callable[[dict[str, Any]], None] | None,
        t0: float,
        history: list[dict[str, Any]],
    ) -> None:
        self.total, self.log_every, self.callback, self.t0, self.history = total, log_every, callback, t0, history
        self.bar = None
        if progress and initial < total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def __call__(self, row: dict[str, Any]) -> None:
        row["wall_s"] = time.perf_counter() - self.t0
        self.history.append(row)
        if self.bar is not None:
            self.bar.update(1)
        if row["step"] % self.log_every == 0 or row["step"] == self.total:
            msg = {k: f"{row[k]:.4g}" for k in ("loss", "mrm", "lra", "emb_std") if k in row}
            if self.bar is not None:
                self.bar.set_postfix(msg, refresh=False)
            if bdist.is_main_process():
                logger.info("step %d/%d %s", row["step"], self.total, msg)
        if self.callback is not None:
            self.callback(row)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _restore(
    ckpt: Mapping[str, Any],
    pretrainer: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    generator: torch.Generator,
) -> tuple[list[dict[str, Any]], int, int, float]:
    """Load a checkpoint's states in place; return (history, epoch, batch in epoch, wall time)."""
    pretrainer.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state(ckpt["rng"])
    if ckpt.get("generator_device") == generator.device.type:
        generator.set_state(ckpt["generator_state"])
    step = int(ckpt["step"])
    history = [dict(r) for r in ckpt.get("history", [])][:step]
    if len(history) != step:
        raise ValueError(f"corrupt checkpoint: step {step} but {len(history)} history rows")
    return history, int(ckpt["epoch"]), int(ckpt.get("batch_in_epoch", 0)), float(ckpt.get("wall_time_s", 0.0))


def _training_module(
    pretrainer: nn.Module, info: bdist.DistInfo, device: torch.device, n_rois: int, *, compile_model: bool
) -> nn.Module:
    """The module to call forward on: DDP-wrapped under a process group, optionally compiled."""
    module: nn.Module = pretrainer
    if info.is_distributed:
        from torch.nn.parallel import DistributedDataParallel

        unused = _unused_parameters(pretrainer, n_rois, device)
        module = DistributedDataParallel(
            pretrainer,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(unused),
        )
    if compile_model:
        module = torch.compile(module)
    return module


def fit(
    dataset: Any,
    *,
    preset: str = "tiny",
    encoder_overrides: Mapping[str, Any] | None = None,
    objective: ObjectiveConfig | Mapping[str, Any] | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-4,
    weight_decay: float = 5e-5,
    warmup_epochs: float | None = None,
    warmup_steps: int | None = None,
    min_lr: float = 1e-6,
    grad_clip: float | None = 1.0,
    accum_steps: int = 1,
    drop_fraction: float = 0.2,
    view_mode: str = "drop",
    crop_length: int | float | None = None,
    amp: str | bool | None = "auto",
    compile: bool = False,  # noqa: A002 - the issue's name for the option
    device: str | torch.device = "auto",
    seed: int = 0,
    num_workers: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    max_steps: int | None = None,
    progress: bool = True,
    log_every: int = 10,
    callback: Callable[[dict[str, Any]], None] | None = None,
    data_description: Mapping[str, Any] | None = None,
) -> FitResult:
    """Pretrain a BrainMass encoder on FC views of ``dataset`` (notebook, CLI and torchrun).

    Parameters
    ----------
    dataset : Dataset, CuratedDataset, list of arrays or array (N, T, R)
        A torch Dataset of ``{"x": (T, R), "index": int}`` items (as
        ``CuratedDataset.torch_dataset()`` gives), a ``CuratedDataset`` (its manifest goes into
        the model card), or raw ``(n_timepoints, n_rois)`` series. ``n_rois`` is read from the
        first item.
    preset : {"tiny", "small", "base", "paper"}, default "tiny"
        Encoder preset (:func:`bmlib.model.encoder_config`).
    encoder_overrides : dict, optional
        Fields of :class:`bmlib.model.EncoderConfig` to override.
    objective : ObjectiveConfig or dict, optional
        Objective weights, mask ratio, heads, EMA schedule. None or a dict: the fields of
        ``bmlib.objectives.objective_config(preset)`` (head widths matched to the preset),
        with the dict's values overriding them.
    epochs : int, default 10
    batch_size : int, default 64
        Per process. Each epoch uses ``n_scans // (world_size * batch_size)`` full batches per
        process (the sampler reshuffles every epoch, so dropped scans change).
    lr : float, default 3e-4
        Peak AdamW learning rate.
    weight_decay : float, default 5e-5
        On matrices only (not biases, norms or tokens).
    warmup_epochs : float, optional
        Linear warm-up length in epochs. Default (with ``warmup_steps`` also None):
        ``min(10, epochs / 10)``, i.e. the paper's 10 epochs, at most a tenth of the run.
    warmup_steps : int, optional
        Warm-up length in optimizer steps (instead of ``warmup_epochs``).
    min_lr : float, default 1e-6
        Learning rate at the end of the cosine decay.
    grad_clip : float or None, default 1.0
        Max global gradient norm (None: no clipping).
    accum_steps : int, default 1
        Gradient accumulation: micro-batches of ``batch_size`` per optimizer step.
    drop_fraction : float, default 0.2
        Fraction of timepoints dropped per pFC view (``view_mode="drop"``).
    view_mode : {"drop", "crop"}, default "drop"
    crop_length : int or float, optional
        Timepoints per contiguous crop, or a fraction in ``(0, 1]`` of each scan
        (``view_mode="crop"``).
    amp : {"auto", "bf16", "fp16", "off"}, default "auto"
        See :func:`resolve_amp` (bf16 on capable GPUs, off on CPU unless asked).
    compile : bool, default False
        Wrap the model with :func:`torch.compile`.
    device : str or torch.device, default "auto"
        See :func:`resolve_device`; under torchrun each process uses ``cuda:<LOCAL_RANK>``.
    seed : int, default 0
        Seeds the weights, the sampler order, the views, the masks and dropout.
    num_workers : int, default 0
        DataLoader workers (they only read and pad series; views are made on ``device``).
    out_dir : str or PathLike, optional
        Where ``checkpoint.pt``, ``model_card.json``, ``model_card.md`` and ``history.csv`` go
        (rank 0 only). Without it nothing is written.
    resume : str, PathLike, "auto" or None, default None
        A checkpoint (file or folder) to continue from; ``"auto"``: ``<out_dir>/checkpoint.pt``
        when it exists, else a fresh start. The model/objective configuration must match.
    checkpoint_every : int, default 1
        Write a checkpoint every this many epochs (and always at the end).
    max_steps : int, optional
        Stop after this many optimizer steps in total (smoke runs, tests); the schedules still
        span ``epochs``, so a resumed run continues the same curve. A checkpoint is written
        where it stops.
    progress : bool, default True
        A tqdm progress bar (rank 0; renders in JupyterLab).
    log_every : int, default 10
        Steps between log lines / progress-bar updates.
    callback : callable, optional
        ``callback(row)`` after every step on rank 0 (live plots in a notebook).
    data_description : dict, optional
        Recorded in the model card (datasets, number of scans, ...); by default derived from the
        dataset.

    Returns
    -------
    FitResult
    """
    args = {k: v for k, v in locals().items() if k not in ("dataset", "callback", "data_description")}
    _check_fit_arguments(args)
    if callback is not None and not callable(callback):
        raise TypeError(f"expected callback to be callable, got {type(callback).__name__}")
    train_config = _train_config(args)

    # ---- processes, device, data -----------------------------------------------------------
    dev = resolve_device(device)
    info = bdist.init_distributed(backend=None if dev.type == "cuda" else "gloo")  # no-op without torchrun
    if info.is_distributed and dev.type == "cuda":
        dev = info.device  # one GPU per process: cuda:<LOCAL_RANK>
    main = info.is_main
    resolve_amp(dev, amp)  # validate early
    torch_ds, description = _as_torch_dataset(dataset)
    if data_description is not None:
        description = {**description, **dict(data_description)}
    n_rois = int(description["n_rois"])
    per_rank = math.ceil(len(torch_ds) / info.world_size)
    batches_per_epoch = per_rank // batch_size
    if batches_per_epoch == 0:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {per_rank} scans per process "
            f"({len(torch_ds)} scans / {info.world_size} process(es)); lower batch_size"
        )
    steps_per_epoch = math.ceil(batches_per_epoch / accum_steps)
    total_steps = epochs * steps_per_epoch
    if warmup_steps is None:
        w_epochs = min(10.0, epochs / 10.0) if warmup_epochs is None else float(warmup_epochs)
        warmup_steps = round(w_epochs * steps_per_epoch)
    if warmup_steps > total_steps:
        raise ValueError(f"expected a warm-up no longer than the run ({total_steps} steps), got {warmup_steps} steps")

    enc_cfg = encoder_config(preset, n_rois, **dict(encoder_overrides or {}))
    obj_cfg = _objective_config(preset, objective)
    train_config["objective"] = obj_cfg.to_dict()
    train_config = _plain(train_config)

    out_path = None if out_dir is None else Path(out_dir)
    ckpt_file = None if out_path is None else out_path / CHECKPOINT_NAME

    ckpt = _resume_checkpoint(resume, ckpt_file, enc_cfg, obj_cfg, train_config, warn=main)

    # ---- model, optimizer, schedules -------------------------------------------------------
    torch.manual_seed(seed)
    pretrainer = BrainMassPretrainer(enc_cfg, obj_cfg).to(dev)
    if enc_cfg.input_norm == "edge" and ckpt is None:  # a resumed run restores them with the weights
        fit_input_norm(pretrainer, torch_ds, seed=seed, device=dev)
    optimizer = build_optimizer(pretrainer, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_lr / lr))
    scaler = make_grad_scaler(dev, amp)
    generator = torch.Generator(device=dev).manual_seed(seed)
    history: list[dict[str, Any]] = []
    step, epoch, batch_in_epoch, wall_before = 0, 0, 0, 0.0
    if ckpt is not None:
        history, epoch, batch_in_epoch, wall_before = _restore(ckpt, pretrainer, optimizer, scheduler, scaler, generator)
        step = len(history)
        if main:
            logger.info("resumed from step %d (epoch %d, batch %d)", step, epoch, batch_in_epoch)

    sampler = _ResumableSampler(
        DistributedSampler(torch_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
    )
    loader = DataLoader(
        torch_ds,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=PFCCollate(),
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
        drop_last=True,
        persistent_workers=num_workers > 0,
    )
    forward_module = _training_module(pretrainer, info, dev, n_rois, compile_model=compile)
    view_fn = PFCViews(view_mode, drop_fraction, crop_length)

    # ---- outputs ---------------------------------------------------------------------------
    run = _RunInfo(
        preset, enc_cfg, obj_cfg, train_config, description, dev, resolve_amp(dev, amp), info.world_size,
        steps_per_epoch, total_steps,
    )
    t_start = time.perf_counter()
    card: dict[str, Any] = {}

    def save(at_epoch: int, at_batch: int) -> None:
        nonlocal card
        wall_s = wall_before + time.perf_counter() - t_start
        card = _model_card(run, pretrainer, history, wall_s)
        if out_path is not None and main:
            state = dict(
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=None if scaler is None else scaler.state_dict(), generator=generator,
            )
            _write_run_files(out_path, _checkpoint(run, pretrainer, state, history, at_epoch, at_batch, wall_s, card),
                             card, history)

    reporter = _Reporter(
        total_steps, step, f"pretrain {preset}", progress=progress and main, log_every=log_every,
        callback=callback if main else None, t0=t_start - wall_before, history=history,
    )
    try:
        while step < total_steps and (max_steps is None or step < max_steps):
            sampler.set_epoch(epoch, skip=batch_in_epoch * batch_size)
            train_one_epoch(
                pretrainer,
                loader,
                optimizer,
                scheduler,
                device=dev,
                generator=generator,
                view_fn=view_fn,
                momentum=lambda s: cosine_momentum(s, total_steps, obj_cfg.ema_base, obj_cfg.ema_final),
                amp=amp,
                scaler=scaler,
                grad_clip=grad_clip,
                accum_steps=accum_steps,
                epoch=epoch,
                start_step=step,
                first_batch=batch_in_epoch,
                batches_in_epoch=batches_per_epoch,
                seed=seed,
                max_steps=max_steps,
                forward_module=forward_module,
                on_step=reporter,
            )
            step = len(history)
            done_in_epoch = step - epoch * steps_per_epoch
            stopped = max_steps is not None and step >= max_steps
            if done_in_epoch >= steps_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
                if epoch % checkpoint_every == 0 or step >= total_steps or stopped:
                    save(epoch, 0)
            else:  # stopped by max_steps inside the epoch: save where it stopped
                batch_in_epoch = done_in_epoch * accum_steps
                save(epoch, batch_in_epoch)
    finally:
        reporter.close()
    bdist.barrier()
    pretrainer.eval()
    if ckpt is not None and step == int(ckpt["step"]) and "card" in ckpt:
        card = dict(ckpt["card"])  # nothing trained after loading: the card of that checkpoint
    elif not card:
        card = _model_card(run, pretrainer, history, wall_before + time.perf_counter() - t_start)
    return FitResult(history=pd.DataFrame(history), checkpoint_path=ckpt_file, card=card, pretrainer=pretrainer)


def fit_argument_names() -> list[str]:
    """Names of :func:`fit`'s keyword arguments that a config file may set (all but ``callback``)."""
    import inspect

    return [
        name
        for name, p in inspect.signature(fit).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "callback"
    ]
