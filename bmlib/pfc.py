"""Pseudo-FC (pFC) views: FC of randomly thinned or cropped copies of a scan, batched, on device.

BrainMass augments a scan by recomputing its FC on a random subset of its timepoints. Two modes:

* ``mode="drop"`` (default): drop exactly ``round(drop_fraction * length_i)`` timepoints of scan
  ``i`` (``torch.round``: halves go to the even integer), chosen uniformly without replacement
  among its valid timepoints, independently per view and per scan; the kept timepoints keep their
  temporal order. ``drop_fraction=0.2`` by default (the paper's setting).
* ``mode="crop"``: a contiguous window of ``crop_length`` timepoints (an int, or a float in
  ``(0, 1]`` meaning that fraction of each scan's length, rounded) at a uniformly random start.

Views are computed for the whole padded batch at once (no Python loop over scans): random keys
for all ``(view, scan, timepoint)`` come from one draw of a seeded :class:`torch.Generator`,
the dropped timepoints are the ``n_drop_i`` smallest keys of each scan (equal keys, which
float32 draws can produce, are ordered by position: row ``t`` has key ``key + t * 2**-40``), the
kept rows are gathered and FC follows with the kernel of :mod:`bmlib.connectivity`. On CPU the
selection is a compiled numba pass per view (no sort) and the gather is fused into the FC
kernel; elsewhere, or without numba, one batched ``topk`` gives the same rows. The same seed on
the same device gives the same views; a CPU generator gives the same views whatever device
``x`` is on (keys are drawn on the generator's device).

Scans too short for the request are refused with a message naming the scan, its length and
the minimum (``min_timepoints``, default 20): FC from a handful of timepoints is noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    import pandas as pd

from bmlib import _fc_kernels
from bmlib.connectivity import (
    FISHER_Z_CLIP,
    ConstantPolicy,
    _as_batch,
    _check_choice,
    _check_lengths,
    _connectivity,
    _pad,
    _parallel_map,
)

__all__ = [
    "DEFAULT_MIN_TIMEPOINTS",
    "ViewIndices",
    "pad_series",
    "view_indices",
    "make_views",
    "PFCCollate",
    "TwoViewDataset",
    "view_similarity",
]

Mode = Literal["drop", "crop"]

#: Fewest timepoints a pFC view may keep unless the caller says otherwise.
DEFAULT_MIN_TIMEPOINTS: int = 20


@dataclass(frozen=True)
class ViewIndices:
    """Which timepoints each pFC view uses.

    Attributes
    ----------
    index : Tensor (n_views, B, K), int64
        Rows of ``x`` used by each view, in temporal order; for scan ``i`` only the first
        ``counts[v, i]`` entries are meaningful (the rest are padding).
    counts : Tensor (n_views, B), int64
        Number of timepoints kept by each view of each scan.
    """

    index: torch.Tensor
    counts: torch.Tensor

    def kept(self, view: int, scan: int) -> torch.Tensor:
        """Timepoints (rows of ``x``) kept by ``view`` for ``scan``, shape ``(counts[view, scan],)``."""
        return self.index[view, scan, : int(self.counts[view, scan])]


def pad_series(
    series: Sequence[Any],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad scans of different lengths into one batch (zeros at the end).

    Parameters
    ----------
    series : sequence of array-like (T_i, R), or array (B, T, R)
        Time series, rows are time, same number of ROIs.
    device : torch.device or str, optional
        Device of the outputs (default: CPU, or the device of tensor inputs).
    dtype : torch.dtype, default=torch.float32
        float32 or float64.

    Returns
    -------
    x : Tensor (B, Tmax, R)
    lengths : Tensor (B,), int64

    Examples
    --------
    >>> import numpy as np
    >>> x, lengths = pad_series([np.ones((3, 2)), np.ones((5, 2))])
    >>> tuple(x.shape), lengths.tolist(), float(x[0, 3:].abs().sum())
    ((2, 5, 2), [3, 5], 0.0)
    """
    return _pad(series, device=device, dtype=dtype)


def _check_view_options(
    n_views: int, mode: str, drop_fraction: float, crop_length: int | float | None,
    min_timepoints: int,
) -> None:
    if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) or n_views < 1:
        raise ValueError(f"n_views must be a positive integer, got {n_views!r}")
    _check_choice("mode", mode, ("drop", "crop"))
    if isinstance(min_timepoints, bool) or not isinstance(min_timepoints, (int, np.integer)) \
            or min_timepoints < 2:
        raise ValueError(f"min_timepoints must be an integer >= 2 (FC needs 2), got {min_timepoints!r}")
    if mode == "drop":
        if not isinstance(drop_fraction, (int, float, np.floating)) or not 0.0 <= drop_fraction < 1.0:
            raise ValueError(f"drop_fraction must be in [0, 1), got {drop_fraction!r}")
    else:
        if crop_length is None:
            raise ValueError("mode='crop' needs crop_length (timepoints, or a fraction in (0, 1])")
        if isinstance(crop_length, bool) or not isinstance(
                crop_length, (int, float, np.integer, np.floating)):
            raise TypeError(f"crop_length must be an int or a float, got {type(crop_length).__name__}")
        if isinstance(crop_length, (float, np.floating)):
            if not 0.0 < crop_length <= 1.0:
                raise ValueError(
                    f"a float crop_length is a fraction of each scan and must be in (0, 1], "
                    f"got {crop_length!r}"
                )
        elif crop_length < min_timepoints:
            raise ValueError(
                f"crop_length={crop_length} is below min_timepoints={min_timepoints}: "
                "FC from so few timepoints is unreliable (lower min_timepoints to allow it)"
            )


def view_indices(
    lengths: torch.Tensor | Sequence[int],
    n_timepoints: int | None = None,
    *,
    n_views: int = 2,
    mode: Mode = "drop",
    drop_fraction: float = 0.2,
    crop_length: int | float | None = None,
    min_timepoints: int = DEFAULT_MIN_TIMEPOINTS,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ViewIndices:
    """Draw the timepoints of ``n_views`` pFC views of each scan (see the module docstring).

    Parameters
    ----------
    lengths : Tensor or sequence of int (B,)
        Valid timepoints per scan.
    n_timepoints : int, optional
        Padded length ``T`` (default ``max(lengths)``).
    n_views : int, default=2
    mode : {"drop", "crop"}, default="drop"
    drop_fraction : float, default=0.2
        Fraction of each scan's timepoints dropped (``mode="drop"``), in ``[0, 1)``.
    crop_length : int or float, optional
        Window length (``mode="crop"``): timepoints, or a fraction in ``(0, 1]`` of each scan.
    min_timepoints : int, default=20
        Refuse views that would keep fewer timepoints.
    generator : torch.Generator, optional
        Source of randomness (keys are drawn on its device); the global RNG of ``device`` if None.
    device : torch.device or str, optional
        Device of the returned tensors (default: that of ``lengths``).

    Returns
    -------
    ViewIndices
        ``index (n_views, B, K)`` and ``counts (n_views, B)``.

    Raises
    ------
    ValueError
        Invalid options, or a scan for which a view would keep fewer than ``min_timepoints``
        (the message names the scan, its length, the request and the minimum).
    """
    _check_view_options(n_views, mode, drop_fraction, crop_length, min_timepoints)
    lt = torch.as_tensor(lengths)
    if lt.ndim != 1 or lt.shape[0] == 0:
        raise ValueError(f"expected lengths of shape (B,) with B >= 1, got shape {tuple(lt.shape)}")
    dev = torch.device(device) if device is not None else lt.device
    t_max = int(lt.max()) if n_timepoints is None else int(n_timepoints)
    lt = _check_lengths(lt, lt.shape[0], t_max, dev)
    batch = lt.shape[0]
    draw_device = generator.device if generator is not None else dev

    if mode == "drop":
        n_drop = torch.round(lt.to(torch.float64) * float(drop_fraction)).to(torch.int64)  # (B,)
        counts = lt - n_drop
        _refuse_short(lt, counts, min_timepoints,
                      lambda i: f"dropping drop_fraction={drop_fraction} of them "
                                f"({int(n_drop[i])}) leaves {int(counts[i])}",
                      "lower drop_fraction or min_timepoints, or leave such short scans out")
        k_drop = int(n_drop.max())
        positions = torch.arange(t_max, device=dev)
        if k_drop == 0:
            index = positions.expand(n_views, batch, t_max).clone()
            return ViewIndices(index=index, counts=counts.expand(n_views, batch).clone())
        k_max = int(counts.max())
        index = torch.empty((n_views, batch, k_max), dtype=torch.int64, device=dev)
        keys = torch.rand((n_views, batch, t_max), generator=generator, device=draw_device).to(dev)
        kern = _fc_kernels.kernels() if dev.type == "cpu" else None
        if kern is not None:  # compiled, one view per worker; the same views as the torch code below
            keys_np, index_np, lt_np, n_drop_np = keys.numpy(), index.numpy(), lt.numpy(), n_drop.numpy()
            _parallel_map(lambda v: kern.drop_index(keys_np[v:v + 1], lt_np, n_drop_np, index_np[v:v + 1]),
                          range(n_views), dev)
            return ViewIndices(index=index, counts=counts.expand(n_views, batch).clone())
        valid = positions < lt[:, None]  # (B, T)
        chosen = torch.arange(k_drop, device=dev) < n_drop[:, None]  # (B, k): the first n_drop_i
        # ties between equal float32 keys are broken by position (exact in float64)
        tie_break = positions.to(torch.float64) * _fc_kernels.TIE_STEP

        def one_view(v: int) -> None:
            k = (keys[v].to(torch.float64) + tie_break).masked_fill_(~valid, 2.0)  # padding: never dropped
            smallest = k.topk(k_drop, dim=-1, largest=False, sorted=True).indices  # (B, k)
            drop = torch.zeros((batch, t_max), dtype=torch.bool, device=dev)
            drop.scatter_(-1, smallest, chosen)
            keep = valid & ~drop  # (B, T)
            slot = torch.where(keep, keep.cumsum(-1) - 1, k_max)  # destination of each kept row
            compact = torch.zeros((batch, k_max + 1), dtype=torch.int64, device=dev)
            compact.scatter_(-1, slot, positions.expand(batch, -1))
            index[v] = compact[:, :k_max]

        _parallel_map(one_view, range(n_views), dev)
        return ViewIndices(index=index, counts=counts.expand(n_views, batch).clone())

    # crop
    assert crop_length is not None
    if isinstance(crop_length, (float, np.floating)):
        crop = torch.round(lt.to(torch.float64) * float(crop_length)).to(torch.int64)
        _refuse_short(lt, crop, min_timepoints,
                      lambda i: f"crop_length={crop_length} (a fraction) keeps {int(crop[i])}",
                      "use a longer crop or a lower min_timepoints, or leave such short scans out")
    else:
        crop = torch.full_like(lt, int(crop_length))
        short = (lt < crop).nonzero()
        if short.numel():
            i = int(short[0, 0])
            raise ValueError(
                f"scan {i} has {int(lt[i])} timepoints, fewer than crop_length={int(crop_length)}; "
                "use a shorter crop (or a fractional crop_length), or leave such short scans out"
            )
    room = (lt - crop + 1).to(torch.float64)  # number of possible starts per scan
    u = torch.rand((n_views, batch), generator=generator, device=draw_device, dtype=torch.float64)
    start = torch.minimum((u.to(dev) * room).floor().to(torch.int64), (room - 1).to(torch.int64))
    k_max = int(crop.max())
    index = _parallel_map(
        lambda _: (start[..., None] + torch.arange(k_max, device=dev)).clamp_(max=t_max - 1),
        [None], dev)[0]
    return ViewIndices(index=index, counts=crop.expand(n_views, batch).clone())


def _refuse_short(
    lengths: torch.Tensor, kept: torch.Tensor, min_timepoints: int,
    what: Callable[[int], str], advice: str,
) -> None:
    short = (kept < min_timepoints).nonzero()
    if short.numel():
        i = int(short[0, 0])
        raise ValueError(
            f"scan {i} has {int(lengths[i])} timepoints; {what(i)}, fewer than "
            f"min_timepoints={min_timepoints} ({int(short.shape[0])} scan(s) affected); {advice}"
        )


def make_views(
    x: torch.Tensor | np.ndarray,
    lengths: torch.Tensor | Sequence[int] | None = None,
    *,
    n_views: int = 2,
    mode: Mode = "drop",
    drop_fraction: float = 0.2,
    crop_length: int | float | None = None,
    min_timepoints: int = DEFAULT_MIN_TIMEPOINTS,
    generator: torch.Generator | None = None,
    fisher_z: bool = False,
    constant: ConstantPolicy = "raise",
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ViewIndices]:
    """pFC views of a padded batch: ``n_views`` independent FC matrices per scan.

    Parameters
    ----------
    x : Tensor (B, T, R), float32 or float64
        Padded time series (rows are time); views are computed on its device and in its dtype.
    lengths : Tensor or sequence of int (B,), optional
        Valid timepoints per scan (all ``T`` when omitted).
    n_views : int, default=2
        Views per scan (two for LRA).
    mode : {"drop", "crop"}, default="drop"
        Random timepoint drop (order kept) or contiguous crop.
    drop_fraction : float, default=0.2
        Fraction of each scan's timepoints dropped, ``round(drop_fraction * length)``.
    crop_length : int or float, optional
        Crop window (``mode="crop"``): timepoints, or a fraction in ``(0, 1]`` of each scan.
    min_timepoints : int, default=20
        Refuse (ValueError) views keeping fewer timepoints.
    generator : torch.Generator, optional
        Seeded generator: same seed and device give the same views.
    fisher_z : bool, default=False
        Fisher z of the correlations (clip 1e-6, see :func:`bmlib.connectivity.fisher_z`).
    constant : {"raise", "zero"}, default="raise"
        Policy for ROIs constant over a view's timepoints (see :func:`bmlib.connectivity.batch_fc`).
    return_indices : bool, default=False
        Also return the :class:`ViewIndices` used.

    Returns
    -------
    views : Tensor (n_views, B, R, R)
        Empirical Pearson FC of each view (diagonal 1).
    indices : ViewIndices
        Only with ``return_indices=True``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(3, 100, 8, generator=torch.Generator().manual_seed(0))
    >>> v = make_views(x, generator=torch.Generator().manual_seed(1))
    >>> tuple(v.shape)
    (2, 3, 8, 8)
    """
    xb = _as_batch(x)
    batch, t_max, n_rois = xb.shape
    counts_full = _check_lengths(lengths, batch, t_max, xb.device)
    idx = view_indices(counts_full, t_max, n_views=n_views, mode=mode, drop_fraction=drop_fraction,
                       crop_length=crop_length, min_timepoints=min_timepoints,
                       generator=generator, device=xb.device)
    if not xb.is_contiguous():
        xb = xb.contiguous()  # rows are gathered from a flat view
    differentiable = torch.is_grad_enabled() and xb.requires_grad
    out = None if differentiable else xb.new_empty((n_views, batch, n_rois, n_rois))
    whole = mode == "drop" and bool((idx.counts[0] == counts_full).all())  # nothing dropped
    views = []
    for v in range(n_views):
        views.append(_connectivity(
            xb, idx.counts[v], None if whole else idx.index[v], fisher_z=fisher_z,
            clip=FISHER_Z_CLIP, constant=constant, detail=f" (pFC view {v})",
            out=None if out is None else out[v],
        ))
    result = out if out is not None else torch.stack(views)
    return (result, idx) if return_indices else result


def _item_to_dict(item: Any, i: int) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        if "x" not in item:
            raise KeyError(f"batch item {i} has no 'x' entry (keys: {sorted(item)})")
        return item
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return {"x": item, "index": i}
    raise TypeError(
        f"batch item {i}: expected a dict with 'x' (T, R) or an array, got {type(item).__name__}"
    )


class PFCCollate:
    """``collate_fn`` that pads raw scans for on-device pFC (views are made by the engine).

    Parameters
    ----------
    dtype : torch.dtype, default=torch.float32
        dtype of the padded series.

    Notes
    -----
    Each item is a dict ``{"x": (T_i, R), "index": int, ...}`` (as
    :class:`bmlib.data.TimeSeriesDataset` yields) or a bare array. The batch is
    ``{"x": (B, Tmax, R), "lengths": (B,) int64, "index": (B,) int64, ...}``; other keys are
    stacked into tensors when every item has a number or an equally shaped tensor there, and
    kept as lists otherwise (e.g. strings). Feed ``batch["x"].to(device)`` and
    ``batch["lengths"]`` to :func:`make_views`.

    Examples
    --------
    >>> import torch
    >>> items = [{"x": torch.ones(5, 3), "index": 0, "site": "a"},
    ...          {"x": torch.ones(7, 3), "index": 1, "site": "b"}]
    >>> b = PFCCollate()(items)
    >>> tuple(b["x"].shape), b["lengths"].tolist(), b["index"].tolist(), b["site"]
    ((2, 7, 3), [5, 7], [0, 1], ['a', 'b'])
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype

    def __call__(self, items: Sequence[Any]) -> dict[str, Any]:
        if len(items) == 0:
            raise ValueError("cannot collate an empty batch")
        dicts = [_item_to_dict(it, i) for i, it in enumerate(items)]
        x, lengths = _pad([d["x"] for d in dicts], device="cpu", dtype=self.dtype)
        batch: dict[str, Any] = {"x": x, "lengths": lengths}
        keys = [k for k in dicts[0] if k not in ("x", "lengths")]
        if "index" not in keys:
            keys.append("index")
        for key in keys:
            values = [d.get(key, i if key == "index" else None) for i, d in enumerate(dicts)]
            batch[key] = _stack_or_list(values)
        return batch

    def __repr__(self) -> str:
        return f"PFCCollate(dtype={self.dtype})"


def _stack_or_list(values: list[Any]) -> Any:
    if all(isinstance(v, (bool, int, float, np.integer, np.floating)) for v in values):
        return torch.as_tensor(np.asarray(values))
    if all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
        return torch.stack(values)
    if all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) == 1:
        return torch.as_tensor(np.stack(values))
    return values


class TwoViewDataset(Dataset):
    """Wrap a dataset of scans so each item carries pFC views computed on the fly (CPU).

    For notebook users without a training engine; the engine instead pads raw scans with
    :class:`PFCCollate` and calls :func:`make_views` on the training device.

    Parameters
    ----------
    dataset : Dataset
        Items are dicts with ``"x"`` (T, R) (other entries are passed through) or bare arrays.
    n_views : int, default=2
    mode, drop_fraction, crop_length, min_timepoints, fisher_z
        As in :func:`make_views`.
    seed : int, default=0
        Views of item ``i`` in epoch ``e`` come from a generator seeded with ``(seed, e, i)``,
        so they are reproducible, differ between items and change when :meth:`set_epoch` is
        called.

    Examples
    --------
    >>> import torch
    >>> data = [{"x": torch.randn(60, 5), "index": i} for i in range(3)]
    >>> ds = TwoViewDataset(data, seed=0)
    >>> tuple(ds[1]["views"].shape), ds[1]["index"]
    ((2, 5, 5), 1)
    """

    def __init__(
        self,
        dataset: Any,
        *,
        n_views: int = 2,
        mode: Mode = "drop",
        drop_fraction: float = 0.2,
        crop_length: int | float | None = None,
        min_timepoints: int = DEFAULT_MIN_TIMEPOINTS,
        fisher_z: bool = False,
        seed: int = 0,
    ) -> None:
        _check_view_options(n_views, mode, drop_fraction, crop_length, min_timepoints)
        self.dataset = dataset
        self.n_views = n_views
        self.mode = mode
        self.drop_fraction = drop_fraction
        self.crop_length = crop_length
        self.min_timepoints = min_timepoints
        self.fisher_z = fisher_z
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use fresh views for a new epoch (call once per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(_item_to_dict(self.dataset[i], i))
        x = item["x"]
        x = torch.as_tensor(x).to(torch.float32) if not isinstance(x, torch.Tensor) else x
        if x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float32)
        if x.ndim != 2:
            raise ValueError(f"item {i}: expected 2D array (n_timepoints, n_rois), got shape {tuple(x.shape)}")
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, self.epoch, int(i)]).generate_state(1)[0])
        )
        views = make_views(x[None], n_views=self.n_views, mode=self.mode,
                           drop_fraction=self.drop_fraction, crop_length=self.crop_length,
                           min_timepoints=self.min_timepoints, generator=gen,
                           fisher_z=self.fisher_z)
        item["views"] = views[:, 0]  # type: ignore[index]  # (n_views, R, R)
        item.setdefault("index", i)
        return item


def view_similarity(
    x: torch.Tensor | np.ndarray,
    lengths: torch.Tensor | Sequence[int] | None = None,
    *,
    drop_fractions: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5),
    n_views: int = 20,
    mode: Mode = "drop",
    crop_lengths: Sequence[int | float] | None = None,
    min_timepoints: int = DEFAULT_MIN_TIMEPOINTS,
    seed: int = 0,
    sample_ids: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """How far pFC views move from the full-scan FC as more timepoints are removed.

    For every scan and every augmentation strength, ``n_views`` views are drawn (batched over
    scans, as in pretraining) and each view's upper triangle is correlated with the upper
    triangle of the scan's full FC. A Pearson r near 1 means the view is nearly the same network;
    the drop in r with the fraction removed shows how strong the augmentation is.

    Parameters
    ----------
    x : Tensor or ndarray (B, T, R)
        Padded time series (see :func:`pad_series`).
    lengths : Tensor or sequence of int (B,), optional
        Valid timepoints per scan (all ``T`` when omitted).
    drop_fractions : sequence of float, default=(0.05, 0.1, 0.2, 0.3, 0.5)
        Fractions of timepoints dropped (``mode="drop"``), each in ``[0, 1)``.
    n_views : int, default=20
        Views per scan and strength.
    mode : {"drop", "crop"}, default="drop"
    crop_lengths : sequence of int or float, optional
        Crop windows (``mode="crop"``; timepoints, or fractions of each scan in ``(0, 1]``).
    min_timepoints : int, default=20
        Strengths leaving fewer timepoints are refused (ValueError from :func:`make_views`).
    seed : int, default=0
        Seed of the view generator (same seed, same table).
    sample_ids : sequence, optional
        Identifiers for the ``B`` scans (default ``0 .. B-1``).

    Returns
    -------
    pandas.DataFrame
        One row per (scan, strength, view): ``sample``, ``drop_fraction`` or ``crop_length``,
        ``view``, ``n_kept`` (timepoints in the view) and ``r_to_full_fc``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 120, 10, generator=torch.Generator().manual_seed(0))
    >>> table = view_similarity(x, drop_fractions=[0.1, 0.5], n_views=3)
    >>> table.shape, sorted(table["drop_fraction"].unique())
    ((12, 5), [0.1, 0.5])
    """
    import pandas as pd

    from bmlib.connectivity import batch_fc

    _check_choice("mode", mode, ("drop", "crop"))
    strengths = list(drop_fractions if mode == "drop" else (crop_lengths or []))
    column = "drop_fraction" if mode == "drop" else "crop_length"
    if not strengths:
        raise ValueError(f"expected at least one {'drop fraction' if mode == 'drop' else 'crop length'}, got none")
    if not isinstance(n_views, int | np.integer) or n_views < 1:
        raise ValueError(f"expected n_views to be a positive integer, got {n_views!r}")
    xb = _as_batch(x)
    batch, t_max, n_rois = xb.shape
    if sample_ids is None:
        sample_ids = list(range(batch))
    elif len(sample_ids) != batch:
        raise ValueError(f"expected {batch} sample_ids (one per scan), got {len(sample_ids)}")
    full = batch_fc(xb, lengths)  # (B, R, R)
    rows, cols = np.triu_indices(n_rois, 1)
    iu = (torch.as_tensor(rows, device=xb.device), torch.as_tensor(cols, device=xb.device))
    ref = full[:, iu[0], iu[1]]
    ref = ref - ref.mean(-1, keepdim=True)
    ref = ref / ref.norm(dim=-1, keepdim=True)
    generator = torch.Generator(device=xb.device).manual_seed(int(seed))
    frames = []
    for strength in strengths:
        kwargs = {"drop_fraction": float(strength)} if mode == "drop" else {"crop_length": strength}
        views, idx = make_views(xb, lengths, n_views=n_views, mode=mode, min_timepoints=min_timepoints,
                                generator=generator, return_indices=True, **kwargs)
        v = views[:, :, iu[0], iu[1]]  # (V, B, E)
        v = v - v.mean(-1, keepdim=True)
        r = (v * ref[None]).sum(-1) / v.norm(dim=-1)  # (V, B)
        frames.append(pd.DataFrame({
            "sample": np.tile(np.asarray(sample_ids, dtype=object), n_views),
            column: strength,
            "view": np.repeat(np.arange(n_views), batch),
            "n_kept": idx.counts.reshape(-1).cpu().numpy(),
            "r_to_full_fc": r.reshape(-1).double().cpu().numpy(),
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)
