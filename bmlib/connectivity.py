"""Functional connectivity (FC): Pearson correlation of ROI time series, batched, on any device.

Definitions used throughout bmlib (they are the ones the notebooks, the encoder and the
evaluation tables rely on):

* **Time series** are ``(n_timepoints, n_rois)``; batches are ``(B, T, R)`` with ``lengths (B,)``
  for padded batches (padding at the end; rows at or beyond ``lengths[i]`` are ignored, whatever
  they hold; :func:`bmlib.pfc.pad_series` pads with 0).
* **Empirical FC** (default) is the Pearson correlation of each pair of ROIs over the
  timepoints used: ``r_ij = sum_t (x_ti - m_i)(x_tj - m_j) / sqrt(S_ii S_jj)`` with ``m`` the
  per-ROI mean and ``S`` the centred cross-product matrix. The normalisation of the covariance
  (``1/n`` or ``1/(n-1)``) cancels, so there is no ``ddof`` choice to make. This equals
  :func:`numpy.corrcoef` and ``nilearn.connectome.ConnectivityMeasure(kind="correlation",
  cov_estimator=EmpiricalCovariance())``.
* **Ledoit-Wolf FC** (``estimator="ledoit_wolf"``) reproduces nilearn's *default*
  ``ConnectivityMeasure(kind="correlation")``: each ROI series is z-scored (mean 0, sample
  standard deviation with ``ddof=1``), the covariance of the z-scores is shrunk with
  :class:`sklearn.covariance.LedoitWolf` (``S* = (1 - s) S + s * trace(S)/R * I``, with the
  data-driven shrinkage ``s`` of Ledoit & Wolf 2004 exactly as scikit-learn computes it) and
  converted to a correlation. For non-constant ROIs this is ``(1 - s) * r_ij`` off the diagonal:
  every edge is pulled towards 0 by the same per-scan factor.
* **Fisher z** is ``arctanh(clip(r, -(1 - clip), 1 - clip))`` with ``clip = 1e-6`` by default,
  so every value is finite: ``|z| <= arctanh(1 - 1e-6) ~= 7.254``.
* **Diagonal**: ``diagonal="ones"`` (default) sets ``r_ii = 1`` exactly; with ``fisher_z=True``
  that diagonal becomes the clipped value ``arctanh(1 - clip)`` (finite). ``diagonal="zeros"``
  sets it to 0 (both for ``r`` and for ``z``).
* **Constant ROIs** (a series whose standard deviation is at most ``32 * eps(dtype) * |mean|``,
  i.e. indistinguishable from rounding noise, or exactly 0) make the correlation undefined.
  By default (``constant="raise"``) a :class:`ConstantSeriesError` names the sample and the
  ROIs; ``constant="zero"`` sets the row and column of such an ROI to 0 (diagonal as chosen).
  NaN or infinite values raise :class:`ValueError` naming the sample and ROIs. A NaN matrix is
  never returned silently.

Speed (see ``benchmarks/bench_fc.py``): scans are processed in chunks of at most 4 MiB. Each
chunk is centred on an offset (the mean of 16 evenly spaced timepoints, close to the mean), its
cross products come from one batched matrix product (``torch.bmm``), the rest of the mean from the
sum of the centred values, and ``S = Z^T Z - n m m^T`` is normalised in ``(R, R)`` space. The offset
keeps float32 accurate on raw BOLD intensities (mean ~10^4 times the standard deviation) where the
textbook ``X^T X - n mu mu^T`` would lose every digit; scans where the offset is too far from the
mean are redone with exact two-pass centring. On CPU, for float32/float64, the memory-bound passes
around the matrix product run as two compiled numba kernels (:mod:`bmlib._fc_kernels`: gather,
centre and sum in one pass; scale, correct, clip, set the diagonal and screen in another); without numba,
or with ``BMLIB_NUMBA=0``, the same steps run as torch ops. The chunks are shared by
``torch.get_num_threads()`` worker threads, each running single-threaded ops and taking the next
chunk when done (guided sizes: the last chunks are small, so the workers finish together); this
avoids a barrier per small op, which costs a scheduler slice each on a busy machine. On other
devices the whole batch is one chunk.
"""

from __future__ import annotations

import bisect
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from bmlib import _fc_kernels

__all__ = [
    "FISHER_Z_CLIP",
    "CONSTANT_TOLERANCE",
    "ConstantSeriesError",
    "ConnectivityEstimator",
    "batch_fc",
    "fc_list",
    "fisher_z",
    "vectorize",
    "unvectorize",
]

Estimator = Literal["empirical", "ledoit_wolf"]
DiagonalPolicy = Literal["ones", "zeros"]
ConstantPolicy = Literal["raise", "zero"]
Kind = Literal["correlation", "covariance"]

#: Default Fisher z clip: correlations are clipped to ``[-(1 - clip), 1 - clip]`` before arctanh.
FISHER_Z_CLIP: float = 1e-6
#: An ROI is constant when ``std <= CONSTANT_TOLERANCE * eps(dtype) * |mean|`` (or ``std == 0``).
CONSTANT_TOLERANCE: float = 32.0

_ESTIMATORS = ("empirical", "ledoit_wolf")
_DIAGONALS = ("ones", "zeros")
_CONSTANT_POLICIES = ("raise", "zero")
_KINDS = ("correlation", "covariance")
_CPU_CHUNK_BYTES = 4 * 1024 * 1024  # largest chunk of scans (measured: 1-2 MiB slower, 8 MiB the same)
_LIST_BLOCK = 256  # scans padded together by fc_list / the estimator
_N_PROBES = 16  # rows averaged for the centring offset
_MAX_OFFSET_RATIO = 16.0  # centre exactly when n (mean - offset)^2 > this * centred sum of squares
_KERNEL_DTYPES = (torch.float32, torch.float64)  # dtypes the numba kernels are compiled for
_NO_INDEX = np.empty((0, 0), dtype=np.int64)  # index argument of the kernel for leading rows


class ConstantSeriesError(ValueError):
    """A scan has ROI time series with zero variance, for which correlation is undefined.

    Parameters
    ----------
    sample : int
        Index of the offending scan (in the caller's batch or list).
    rois : list of int
        Indices of the constant ROIs.
    detail : str, default=""
        Extra context appended to the message (e.g. which pFC view).
    """

    def __init__(self, sample: int, rois: Sequence[int], detail: str = "") -> None:
        self.sample = int(sample)
        self.rois = [int(r) for r in rois]
        shown = self.rois if len(self.rois) <= 20 else [*self.rois[:20], "..."]
        super().__init__(
            f"sample {self.sample}{detail}: {len(self.rois)} constant ROI time series "
            f"(ROIs {shown}); their correlation is undefined. Remove these ROIs, or pass "
            "constant='zero' to set their FC rows and columns to 0."
        )


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _as_batch(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy array (B, T, R), got {type(x).__name__}")
    if x.ndim != 3:
        hint = " (use x[None] for a single scan, or fc_list for a list)" if x.ndim == 2 else ""
        raise ValueError(
            f"expected 3D array (batch, n_timepoints, n_rois), got shape {tuple(x.shape)}{hint}"
        )
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"expected float32 or float64 time series, got dtype {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 2 or x.shape[2] < 1:
        raise ValueError(
            f"expected at least 1 scan, 2 timepoints and 1 ROI, got shape {tuple(x.shape)} (B, T, R)"
        )
    return x


def _check_lengths(
    lengths: torch.Tensor | np.ndarray | Sequence[int] | None, batch: int, n_timepoints: int,
    device: torch.device,
) -> torch.Tensor:
    """Return validated lengths as int64 on ``device`` (all ``T`` when ``lengths`` is None)."""
    if lengths is None:
        return torch.full((batch,), n_timepoints, dtype=torch.int64, device=device)
    lt = torch.as_tensor(lengths)
    if lt.ndim != 1 or lt.shape[0] != batch:
        raise ValueError(f"expected lengths of shape ({batch},), got shape {tuple(lt.shape)}")
    if lt.dtype.is_floating_point or lt.dtype == torch.bool or lt.dtype.is_complex:
        raise TypeError(f"expected integer lengths, got dtype {lt.dtype}")
    bad = ((lt < 2) | (lt > n_timepoints)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise ValueError(
            f"lengths[{i}] = {int(lt[i])} is out of range: expected 2 <= length <= "
            f"{n_timepoints} (the padded number of timepoints)"
        )
    return lt.to(device=device, dtype=torch.int64)


# --------------------------------------------------------------------------------------------
# the batched kernel
# --------------------------------------------------------------------------------------------
def _chunk_bounds(device: torch.device, n_rows: int, n_rois: int, itemsize: int,
                  batch: int, guided: bool = True) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of scans: at most ``_CPU_CHUNK_BYTES``.

    ``guided``: each chunk holds ``1/(2 W)`` of the scans still left (W workers), between
    ``_CPU_CHUNK_BYTES / 8`` and ``_CPU_CHUNK_BYTES``, so the last chunks are small and the
    workers finish together (a worker on a slower core takes fewer chunks); used with the
    compiled kernels, which make few calls per chunk. Otherwise equal chunks, as many as a
    multiple of W (the torch path runs a dozen ops per chunk: fewer chunks measured faster).
    One chunk on other devices.
    """
    if device.type != "cpu":
        return [(0, batch)]
    workers = max(1, torch.get_num_threads())
    per_scan = max(1, n_rows * n_rois * itemsize)
    most = max(1, _CPU_CHUNK_BYTES // per_scan)
    if not guided:
        n_chunks = math.ceil(batch / most)
        n_chunks = min(batch, workers * math.ceil(n_chunks / workers))
        most = max(1, math.ceil(batch / n_chunks))
    if workers == 1 or not guided:
        return [(start, min(batch, start + most)) for start in range(0, batch, most)]
    least = max(1, most // 8)
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < batch:
        size = min(most, max(least, math.ceil((batch - start) / (2 * workers))))
        bounds.append((start, min(batch, start + size)))
        start += size
    return bounds


# CPU execution: chunks of scans are spread over a small pool of worker threads, each running
# single-threaded torch ops on its own chunk (in its own cache). Compared with intra-op
# (OpenMP) parallelism over many small ops this avoids a barrier per op, which on a busy
# machine can cost a scheduler time slice each (measured: 40x slower under load).
_POOL: ThreadPoolExecutor | None = None
_POOL_KEY: tuple[int, int] | None = None  # (pid, workers): rebuilt after fork or a thread change
_POOL_LOCK = threading.Lock()
_LOCAL = threading.local()


def _forget_pool_after_fork() -> None:  # worker threads do not survive fork()
    global _POOL, _POOL_KEY, _POOL_LOCK
    _POOL, _POOL_KEY, _POOL_LOCK = None, None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _init_worker() -> None:
    _LOCAL.in_pool = True
    torch.get_num_threads()  # run torch's lazy per-thread init now, or it would undo the next line
    torch.set_num_threads(1)


def _cpu_pool(n_workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_KEY
    key = (os.getpid(), n_workers)
    with _POOL_LOCK:
        if _POOL is None or _POOL_KEY != key:
            if _POOL is not None and _POOL_KEY is not None and _POOL_KEY[0] == key[0]:
                _POOL.shutdown(wait=False)
            main_threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(n_workers, thread_name_prefix="bmlib-fc",
                                      initializer=_init_worker)
            barrier = threading.Barrier(n_workers)
            for fut in [pool.submit(barrier.wait, 30.0) for _ in range(n_workers)]:
                fut.result()  # start every worker now
            # set_num_threads(1) in the workers also changed the process-wide default that new
            # threads inherit; restore the caller's setting
            torch.set_num_threads(main_threads)
            _POOL, _POOL_KEY = pool, key
    return _POOL


def _no_grad_call(fn: Callable[[Any], Any], item: Any) -> Any:
    with torch.no_grad():  # grad mode is per thread; the kernels write with out=
        return fn(item)


def _parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], device: torch.device) -> list[Any]:
    """``[fn(item) for item in items]``, run on the CPU worker threads (single-threaded torch).

    Inline (in the calling thread) on other devices, with one torch thread, or when called
    from a worker. All items finish before an exception is re-raised.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1 or getattr(_LOCAL, "in_pool", False):
        return [_no_grad_call(fn, item) for item in items]
    pool = _cpu_pool(threads)
    futures = [pool.submit(_no_grad_call, fn, item) for item in items]
    wait(futures)  # nothing may still write into shared outputs once we return or raise
    return [fut.result() for fut in futures]


def _run_chunks(chunks: list[Any], fn: Callable[[Any], None], device: torch.device) -> None:
    """``fn(chunk)`` for every chunk; on CPU one task per worker, each taking the next chunk.

    One wake-up per worker per call instead of one per chunk (a thread hand-off costs tens to
    hundreds of microseconds on a virtual machine), and a worker on a slower core simply takes
    fewer chunks.
    """
    workers = min(len(chunks), max(1, torch.get_num_threads()))
    order = iter(chunks)  # shared queue
    lock = threading.Lock()

    def drain(_: int) -> None:
        while True:
            with lock:
                chunk = next(order, None)
            if chunk is None:
                return
            fn(chunk)

    _parallel_map(drain, range(workers), device)


def _buffer(x: torch.Tensor, shape: tuple[int, int, int], name: str = "z") -> torch.Tensor:
    """Per-thread scratch tensor of ``shape`` (reused across calls to stay cache-resident)."""
    need = shape[0] * shape[1] * shape[2]
    if x.device.type != "cpu":  # one chunk per call there: do not keep it alive
        return torch.empty(shape, dtype=x.dtype, device=x.device)
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None:
        buffers = _LOCAL.buffers = {}
    buf = buffers.get(name)
    if buf is None or buf.dtype != x.dtype or buf.numel() < need:
        buf = buffers[name] = torch.empty(need, dtype=x.dtype)
    return buf[:need].view(shape)


def _nonfinite_error(
    x: torch.Tensor, local: int, counts: torch.Tensor, index: torch.Tensor | None,
    sample_ids: Sequence[int] | None, detail: str,
) -> ValueError:
    """Build the error for a non-finite mean/variance (only called on the error path)."""
    used = x[local][: int(counts[local])] if index is None else x[local][index[local, : int(counts[local])]]
    rois = (~torch.isfinite(used)).any(0).nonzero().flatten().tolist()
    sid = local if sample_ids is None else int(sample_ids[local])
    if rois:
        shown = rois if len(rois) <= 20 else [*rois[:20], "..."]
        return ValueError(
            f"sample {sid}{detail}: ROI time series contain NaN or infinite values (ROIs {shown}); "
            "clean or remove them before computing FC"
        )
    return ValueError(
        f"sample {sid}{detail}: non-finite moments from finite input (values too large for "
        f"{x.dtype}); rescale the series or use float64"
    )


def _connectivity(
    x: torch.Tensor,
    counts: torch.Tensor,
    index: torch.Tensor | None = None,
    *,
    kind: Kind = "correlation",
    estimator: Estimator = "empirical",
    fisher_z: bool = False,
    clip: float = FISHER_Z_CLIP,
    diagonal: DiagonalPolicy = "ones",
    constant: ConstantPolicy = "raise",
    sample_ids: Sequence[int] | None = None,
    detail: str = "",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Connectivity of the rows ``index[i, :counts[i]]`` (or ``:counts[i]``) of each scan.

    Parameters
    ----------
    x : Tensor (B, T, R), float32 or float64
    counts : Tensor (B,), int64
        Number of timepoints used per scan (leading rows of ``x``, or leading entries of
        ``index``).
    index : Tensor (B, K), int64, optional
        Rows of ``x`` to use, in order (pFC views). Entries at or beyond ``counts`` are ignored.
    out : Tensor (B, R, R), optional
        Where to write the result (contiguous; not with autograd).

    Returns
    -------
    Tensor (B, R, R), dtype and device of ``x``.
    """
    batch, _, n_rois = x.shape
    n_rows = x.shape[1] if index is None else index.shape[1]
    differentiable = torch.is_grad_enabled() and x.requires_grad
    masked = bool((counts < n_rows).any())
    fast_corr = not differentiable and kind == "correlation" and estimator == "empirical"
    n_all = counts.to(x.dtype)  # (B,)
    value = 1.0 if diagonal == "ones" else 0.0
    rows = torch.arange(n_rows, device=x.device)
    need_fourth = estimator == "ledoit_wolf"
    suspicious = False

    if differentiable:  # autograd: whole batch, functional ops
        xb = x if index is None else torch.gather(x, 1, index[:, :, None].expand(-1, -1, n_rois))
        invalid = (rows[None, :] >= counts[:, None])[:, :, None] if masked else None
        if invalid is not None:
            xb = xb.masked_fill(invalid, 0.0)
        mean = xb.sum(1, keepdim=True) / n_all[:, None, None]  # (B, 1, R)
        z = xb - mean
        if invalid is not None:
            z = z.masked_fill(invalid, 0.0)
        gram_all = torch.bmm(z.mT, z)  # (B, R, R)
        fourth_all = torch.bmm((z * z).mT, z * z) if need_fourth else None
        means = mean[:, 0]
        sumsq = gram_all.diagonal(dim1=-2, dim2=-1)
    else:
        gram_all = out if out is not None else x.new_empty((batch, n_rois, n_rois))
        fourth_all = x.new_empty((batch, n_rois, n_rois)) if need_fourth else None
        sums = x.new_empty((batch, n_rois))  # sum_t (x_t - offset) over used rows
        sumsq = x.new_empty((batch, n_rois))  # centred sums of squares (diagonal of the Gram)
        means = x.new_empty((batch, n_rois))
        offsets = x.new_empty((batch, 1, n_rois))
        if index is not None:
            x = x.contiguous()
        flat = x.view(-1, n_rois) if index is not None else x
        row_base = torch.arange(batch, device=x.device)[:, None] * x.shape[1]
        inv_n = n_all.reciprocal()[:, None]  # (B, 1)
        inv_sqrt_n = n_all.rsqrt()[:, None, None]  # (B, 1, 1)
        # Centring offset: mean of 16 evenly spaced rows used by every scan; it is close to the
        # mean (|offset - mean| ~ sd/4), so Z = x - offset is small and a sum over Z,
        # done while Z is in cache, gives the rest: S = Z^T Z - (sum Z)(sum Z)^T / n stays
        # accurate in float32 on raw intensities. Scans where it would not (outliers at the
        # probes, constant ROIs) are redone with exact two-pass centring.
        used = int(counts.min())
        step = max(1, used // _N_PROBES)
        tiny = (CONSTANT_TOLERANCE * torch.finfo(x.dtype).eps) ** 2 if kind == "correlation" else 0.0
        # fused numba kernels for the memory-bound passes (CPU, float32/64; see _fc_kernels)
        kern = _fc_kernels.kernels() if x.device.type == "cpu" and x.dtype in _KERNEL_DTYPES else None
        bounds = _chunk_bounds(x.device, n_rows, n_rois, x.element_size(), batch, guided=kern is not None)
        if kern is not None:
            x_np = x.detach().contiguous().numpy()
            index_np = _NO_INDEX if index is None else index.detach().contiguous().numpy()
            counts_np = counts.contiguous().numpy()
            offsets_np = offsets.view(batch, n_rois).numpy()
            sums_np, sumsq_np, gram_np = sums.numpy(), sumsq.numpy(), gram_all.detach().numpy()
            means_np = means.numpy()
        flagged: list[int] = []  # ROIs the normalise kernel flagged, per chunk

        def run_chunk(span: tuple[int, int], exact: bool = False) -> None:
            start, stop = span
            c = stop - start
            buf = _buffer(x, (c, n_rows, n_rois))
            fused = kern is not None and not exact
            need_mask = masked and (not fused or fourth_all is not None)  # the kernel zeroes padding
            invalid = (rows[None, :] >= counts[start:stop, None])[:, :, None] if need_mask else None
            if fused:  # one pass: gather, subtract the probe offset, sum (rows >= count zeroed)
                bad = kern.centre(x_np[start:stop], index_np if index is None else index_np[start:stop],
                                  counts_np[start:stop], used, step, _N_PROBES, buf.numpy(),
                                  offsets_np[start:stop], sums_np[start:stop])
                if bad >= 0:
                    sid = start + bad if sample_ids is None else int(sample_ids[start + bad])
                    raise IndexError(f"sample {sid}{detail}: row index out of range [0, {x.shape[1]})")
                z, zsum = buf, sums[start:stop]
            else:
                if index is None:
                    xb = x[start:stop]
                else:  # copy the used rows once (a row gather; much faster than torch.gather)
                    xb = torch.index_select(flat, 0, (index[start:stop] + row_base[start:stop]).view(-1),
                                            out=buf.view(-1, n_rois)).view(c, n_rows, n_rois)
                if exact:  # rare path: offset = exact mean of the used rows
                    kept = xb if invalid is None else xb.masked_fill(invalid, 0.0)
                    torch.mul(kept.sum(1, keepdim=True), inv_n[start:stop, :, None], out=offsets[start:stop])
                else:  # strided view of the probe rows: no copy
                    torch.mean(xb[:, :used:step][:, :_N_PROBES], 1, keepdim=True, out=offsets[start:stop])
                offset = offsets[start:stop]
                z = xb.sub_(offset) if index is not None else torch.sub(xb, offset, out=buf)
                if invalid is not None:
                    z.masked_fill_(invalid, 0.0)
                zsum = torch.sum(z, 1, out=sums[start:stop])  # (c, R)
            gram = torch.bmm(z.mT, z, out=gram_all[start:stop])  # Z^T Z (c, R, R)
            if fused and fast_corr:  # one pass: scale, subtract u u^T, clip, set the diagonal, screen
                flagged.append(kern.normalise(
                    gram_np[start:stop], sums_np[start:stop], counts_np[start:stop],
                    offsets_np[start:stop], sumsq_np[start:stop], means_np[start:stop], value,
                    _MAX_OFFSET_RATIO, tiny))
                if fisher_z:
                    _fisher_z_symmetric_(gram, clip)
                return
            scaled = zsum.mul(inv_sqrt_n[start:stop, 0])  # sqrt(n) (mean - offset) (c, R)
            diag = gram.diagonal(dim1=-2, dim2=-1)
            var = torch.addcmul(diag, scaled, scaled, value=-1.0, out=sumsq[start:stop])  # centred
            scaled = scaled[:, None, :]  # (c, 1, R)
            if fourth_all is not None:
                z.sub_(scaled * inv_sqrt_n[start:stop])  # centre exactly
                if invalid is not None:
                    z.masked_fill_(invalid, 0.0)
                z.mul_(z)
                torch.bmm(z.mT, z, out=fourth_all[start:stop])  # sum_t z_ti^2 z_tj^2
            if fast_corr:  # normalise while the chunk is in cache; flagged scans fixed below
                inv = var.rsqrt()  # (c, R)
                u = scaled * inv[:, None, :]
                outer = torch.mul(inv[:, :, None], inv[:, None, :], out=_buffer(x, (c, n_rois, n_rois), "outer"))
                # r = D (Z^T Z - n m m^T) D = D Z^T Z D - u u^T with D = diag(inv), u = sqrt(n) m D;
                # every factor is symmetric, so r is exactly symmetric
                gram.mul_(outer).addcmul_(u.mT, u, value=-1.0).clamp_(-1.0, 1.0)
                diag.fill_(value)
                if fisher_z:
                    _fisher_z_symmetric_(gram, clip)
            else:
                gram.addcmul_(scaled.mT, scaled, value=-1.0)  # centred cross products

        _run_chunks(bounds, run_chunk, x.device)
        if kern is not None and fast_corr:  # the kernel screened every ROI and filled the means
            suspicious = sum(flagged) > 0
        else:
            torch.addcmul(offsets[:, 0], sums, inv_n, out=means)
            # screen (B, R) statistics: precision lost to the offset (n (mean - offset)^2 > 16 var),
            # constant ROIs (var <= n (32 eps mean)^2), NaN/inf (comparisons with NaN are False)
            limit = torch.maximum(sums * sums * (inv_n / _MAX_OFFSET_RATIO),
                                  means * means * (n_all[:, None] * tiny))
            suspicious = not bool(((sumsq > limit) & (sumsq < math.inf)).all())  # one host sync
        if suspicious:  # rare: redo the chunks whose offset cost precision, exactly
            lost = (sums**2 * inv_n > _MAX_OFFSET_RATIO * sumsq).any(1)  # (B,)
            if bool(lost.any()):
                stops = [stop for _, stop in bounds]
                redo = sorted({bounds[bisect.bisect_right(stops, int(i))]
                               for i in lost.nonzero().flatten().tolist()})
                _run_chunks(redo, lambda span: run_chunk(span, exact=True), x.device)
                torch.addcmul(offsets[:, 0], sums, inv_n, out=means)

    # ---- NaN/inf and constant ROIs, on the (B, R) statistics
    const = torch.zeros_like(sumsq, dtype=torch.bool)
    any_const = False
    if differentiable or suspicious:
        finite = torch.isfinite(means) & torch.isfinite(sumsq)
        if kind == "correlation":
            eps = torch.finfo(x.dtype).eps
            const = sumsq <= n_all[:, None] * (CONSTANT_TOLERANCE * eps * means) ** 2
        problem = ~finite | const
        if bool(problem.any()):
            first = int(problem.any(1).nonzero()[0, 0])
            if not bool(finite[first].all()):
                raise _nonfinite_error(x, first, counts, index, sample_ids, detail)
            if constant == "raise":
                sid = first if sample_ids is None else int(sample_ids[first])
                raise ConstantSeriesError(sid, const[first].nonzero().flatten().tolist(), detail)
            any_const = True

    if fast_corr and any_const:  # constant ROIs were divided by ~0; zero their rows/columns
        gram_all.masked_fill_(const[:, :, None] | const[:, None, :], 0.0)  # arctanh(0) = 0
        diag_value = float(np.arctanh(1.0 - clip)) if (fisher_z and value == 1.0) else value
        gram_all.diagonal(dim1=-2, dim2=-1).fill_(diag_value)
    if fast_corr:
        if x.device.type != "cpu":  # accelerator GEMMs need not be bitwise symmetric
            gram_all.copy_(0.5 * (gram_all + gram_all.mT))
        return gram_all
    result = _finish(kind, estimator, gram_all, fourth_all, n_all, sumsq, const, diagonal,
                     fisher_z, clip, differentiable)
    if out is not None and result.data_ptr() != out.data_ptr():
        out.copy_(result)
        return out
    return result


def _finish(
    kind: Kind, estimator: Estimator, gram: torch.Tensor, fourth: torch.Tensor | None,
    n: torch.Tensor, sumsq: torch.Tensor, const: torch.Tensor, diagonal: DiagonalPolicy,
    fisher: bool, clip: float, differentiable: bool,
) -> torch.Tensor:
    """Covariance, Ledoit-Wolf correlation, or (autograd path) empirical correlation from moments."""
    if kind == "covariance":
        return _covariance(gram, fourth, n, estimator, not differentiable)
    if estimator == "ledoit_wolf":
        return _finish_correlation(_ledoit_wolf_correlation(gram, fourth, n, const),  # type: ignore[arg-type]
                                   diagonal, fisher, clip)
    inv = torch.where(const, torch.zeros_like(sumsq), sumsq.rsqrt())
    r = (gram * (inv[:, :, None] * inv[:, None, :])).clamp(-1.0, 1.0)
    return _finish_correlation(0.5 * (r + r.mT), diagonal, fisher, clip)


def _finish_correlation(
    r: torch.Tensor, diagonal: DiagonalPolicy, fisher: bool, clip: float
) -> torch.Tensor:
    """Set the diagonal and optionally apply Fisher z to correlation matrices (c, R, R)."""
    value = 1.0 if diagonal == "ones" else 0.0
    diag = torch.full(r.shape[:-1], value, dtype=r.dtype, device=r.device)
    r = torch.diagonal_scatter(r, diag, dim1=-2, dim2=-1)
    if fisher:
        z = r.clamp(-1.0 + clip, 1.0 - clip).atanh()
        r = 0.5 * (z + z.mT)  # exactly symmetric (see _fisher_z_symmetric_)
    return r


def _fisher_z_symmetric_(m: torch.Tensor, clip: float) -> torch.Tensor:
    """In place ``arctanh(clip(m))`` of symmetric matrices ``(c, R, R)``, kept exactly symmetric.

    torch's vectorised arctanh can differ by an ulp between SIMD lanes and the scalar tail, and
    ``m_ij`` and ``m_ji`` may fall in different ones; both get ``(z_ij + z_ji) / 2``.
    """
    z = m.clamp_(-1.0 + clip, 1.0 - clip).atanh_()
    return m.copy_(0.5 * (z + z.mT))


def _ledoit_wolf_shrinkage(
    gram: torch.Tensor, fourth_quad: torch.Tensor, n: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ledoit-Wolf shrinkage exactly as :func:`sklearn.covariance.ledoit_wolf_shrinkage`.

    Parameters
    ----------
    gram : Tensor (c, R, R)
        ``X^T X`` of the centred (and possibly scaled) data.
    fourth_quad : Tensor (c,)
        ``sum_t (sum_i x_ti^2)^2`` of the same data (sklearn's ``beta_`` before scaling).
    n : Tensor (c,)
        Number of timepoints.

    Returns
    -------
    shrinkage : Tensor (c,)
    mu : Tensor (c,)
        ``trace(S) / R`` with ``S = gram / n``.
    """
    p = gram.shape[-1]
    emp_trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1) / n  # (c,)
    mu = emp_trace / p
    delta_ = (gram * gram).sum((-2, -1)) / n**2
    beta = (fourth_quad / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * emp_trace + p * mu**2) / p
    beta = torch.minimum(beta, delta)
    shrinkage = torch.where(beta == 0, torch.zeros_like(beta), beta / delta)
    if p == 1:
        shrinkage = torch.zeros_like(shrinkage)
    return shrinkage, mu


def _ledoit_wolf_correlation(
    gram: torch.Tensor, fourth: torch.Tensor, n: torch.Tensor, const: torch.Tensor
) -> torch.Tensor:
    """nilearn's default correlation: LedoitWolf on z-scored (ddof=1) series, then cov -> corr.

    Constant ROIs have zero z-scores (nilearn replaces their std by 1), hence a zero row.
    """
    var = gram.diagonal(dim1=-2, dim2=-1)  # (c, R)
    sd2 = var / (n[:, None] - 1.0)
    a = torch.where(const, torch.zeros_like(var), 1.0 / sd2)  # 1/sd^2 (c, R)
    sa = a.sqrt()
    gz = gram * (sa[:, :, None] * sa[:, None, :])  # Gram of the z-scores
    beta_raw = torch.einsum("bi,bij,bj->b", a, fourth, a)  # sum_t (sum_i z_ti^2)^2
    shrinkage, mu = _ledoit_wolf_shrinkage(gz, beta_raw, n)
    s = shrinkage[:, None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    shrunk = (1.0 - s) * gz / n[:, None, None] + s * mu[:, None, None] * eye
    d = shrunk.diagonal(dim1=-2, dim2=-1)
    inv = torch.where(const | (d <= 0), torch.zeros_like(d), d.rsqrt())
    r = (shrunk * (inv[:, :, None] * inv[:, None, :])).clamp(-1.0, 1.0)
    return 0.5 * (r + r.mT)  # exactly symmetric


def _covariance(
    gram: torch.Tensor, fourth: torch.Tensor | None, n: torch.Tensor, estimator: Estimator,
    inplace: bool,
) -> torch.Tensor:
    """Maximum-likelihood covariance (``/n``, as sklearn), optionally Ledoit-Wolf shrunk."""
    if estimator == "empirical":
        scale = (1.0 / n)[:, None, None]
        return gram.mul_(scale) if inplace else gram * scale
    assert fourth is not None
    ones = torch.ones(gram.shape[:-1], dtype=gram.dtype, device=gram.device)
    beta_raw = torch.einsum("bi,bij,bj->b", ones, fourth, ones)
    shrinkage, mu = _ledoit_wolf_shrinkage(gram, beta_raw, n)
    s = shrinkage[:, None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return (1.0 - s) * gram / n[:, None, None] + s * mu[:, None, None] * eye


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------
def _check_options(estimator: str, diagonal: str, constant: str, clip: float) -> None:
    _check_choice("estimator", estimator, _ESTIMATORS)
    _check_choice("diagonal", diagonal, _DIAGONALS)
    _check_choice("constant", constant, _CONSTANT_POLICIES)
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip must be in (0, 1), got {clip!r}")


def batch_fc(
    x: torch.Tensor | np.ndarray,
    lengths: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    *,
    estimator: Estimator = "empirical",
    fisher_z: bool = False,
    diagonal: DiagonalPolicy = "ones",
    constant: ConstantPolicy = "raise",
    clip: float = FISHER_Z_CLIP,
) -> torch.Tensor:
    """Pearson FC of a (padded) batch of scans, on the device and in the dtype of ``x``.

    Parameters
    ----------
    x : Tensor or ndarray (B, T, R), float32 or float64
        Time series, rows are time. With ``lengths``, scan ``i`` uses rows ``:lengths[i]``.
    lengths : Tensor or sequence of int (B,), optional
        Number of valid timepoints per scan (``2 <= lengths[i] <= T``); all ``T`` when omitted.
        Padding rows are ignored (their values do not matter).
    estimator : {"empirical", "ledoit_wolf"}, default="empirical"
        Empirical Pearson correlation, or nilearn's default Ledoit-Wolf shrunk correlation
        (see the module docstring for the exact definitions).
    fisher_z : bool, default=False
        Return ``arctanh(clip(r, -(1 - clip), 1 - clip))`` instead of ``r``.
    diagonal : {"ones", "zeros"}, default="ones"
        Value of ``r_ii``; with ``fisher_z`` "ones" gives ``arctanh(1 - clip)`` (~7.254).
    constant : {"raise", "zero"}, default="raise"
        Constant ROI series: raise :class:`ConstantSeriesError`, or set their rows/columns to 0.
    clip : float, default=1e-6
        Fisher z clip (only used with ``fisher_z=True``).

    Returns
    -------
    Tensor (B, R, R)
        Symmetric FC matrices, values in ``[-1, 1]`` (or finite z values).

    Raises
    ------
    ConstantSeriesError
        A scan has constant ROIs and ``constant="raise"``.
    ValueError
        Wrong shapes, lengths or options, or NaN/inf values (the sample and ROIs are named).

    Notes
    -----
    Differentiable with respect to ``x`` when ``x.requires_grad`` (a slower path without
    in-place ops is used then).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(4, 200, 10, generator=torch.Generator().manual_seed(0))
    >>> fc = batch_fc(x)
    >>> fc.shape, bool(torch.allclose(fc, fc.mT)), float(fc[0, 3, 3])
    (torch.Size([4, 10, 10]), True, 1.0)
    """
    x = _as_batch(x)
    _check_options(estimator, diagonal, constant, clip)
    counts = _check_lengths(lengths, x.shape[0], x.shape[1], x.device)
    return _connectivity(x, counts, estimator=estimator, fisher_z=fisher_z, clip=clip,
                         diagonal=diagonal, constant=constant)


def _series_to_numpy_or_tensor(item: Any, i: int) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        t = item.detach()
    elif isinstance(item, np.ndarray) or hasattr(item, "__array__"):
        t = torch.from_numpy(np.asarray(item))
    else:
        raise TypeError(
            f"series[{i}]: expected a 2D array (n_timepoints, n_rois), got {type(item).__name__}"
        )
    if t.ndim != 2:
        raise ValueError(
            f"series[{i}]: expected 2D array (n_timepoints, n_rois), got shape {tuple(t.shape)}"
        )
    if not (t.dtype.is_floating_point or t.dtype in (torch.int8, torch.int16, torch.int32,
                                                      torch.int64, torch.uint8)):
        raise TypeError(f"series[{i}]: expected real numeric values, got dtype {t.dtype}")
    return t


def _pad(
    series: Sequence[Any], device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of (T_i, R) arrays into ``x (B, Tmax, R)`` (zeros at the end) and ``lengths``."""
    if isinstance(series, (np.ndarray, torch.Tensor)):
        if series.ndim == 3:
            series = list(series)
        else:
            raise ValueError(
                "expected a list of 2D arrays (n_timepoints, n_rois) or a 3D array, got an "
                f"array of shape {tuple(series.shape)}"
            )
    if not isinstance(series, Sequence) or isinstance(series, (str, bytes)):
        raise TypeError(f"expected a list of 2D arrays (n_timepoints, n_rois), got {type(series).__name__}")
    if len(series) == 0:
        raise ValueError("expected at least one time series, got an empty list")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    items = [_series_to_numpy_or_tensor(s, i) for i, s in enumerate(series)]
    n_rois = items[0].shape[1]
    for i, t in enumerate(items):
        if t.shape[1] != n_rois:
            raise ValueError(
                f"series[{i}] has {t.shape[1]} ROIs, expected {n_rois} like series[0] "
                f"(shape {tuple(t.shape)}; rows must be timepoints)"
            )
    lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.int64)
    dev = torch.device(device) if device is not None else (
        items[0].device if isinstance(series[0], torch.Tensor) else torch.device("cpu"))
    x = torch.zeros((len(items), int(lengths.max()), n_rois), dtype=dtype, device=dev)
    for i, t in enumerate(items):  # one copy per scan: unavoidable for ragged input
        x[i, : t.shape[0]] = t.to(device=dev, dtype=dtype)
    return x, lengths.to(dev)


def fc_list(
    series: Sequence[Any],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
) -> torch.Tensor:
    """FC of a list of scans of different lengths.

    Scans are sorted by length and padded in blocks of 256, so memory stays bounded and little
    work is spent on padding; results come back in the input order.

    Parameters
    ----------
    series : sequence of array-like (T_i, R), or array (N, T, R)
        Time series, rows are time; all scans must have the same number of ROIs.
    device : torch.device or str, optional
        Where to compute (default: CPU, or the device of tensor inputs).
    dtype : torch.dtype, default=torch.float32
        Compute and output dtype (float32 or float64).
    **kwargs
        ``estimator``, ``fisher_z``, ``diagonal``, ``constant``, ``clip`` as in :func:`batch_fc`.

    Returns
    -------
    Tensor (N, R, R)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scans = [rng.standard_normal((100, 5)), rng.standard_normal((80, 5))]
    >>> fc = fc_list(scans, dtype=torch.float64)
    >>> tuple(fc.shape), bool(np.allclose(fc[1].numpy(), np.corrcoef(scans[1].T)))
    ((2, 5, 5), True)
    """
    unknown = set(kwargs) - {"estimator", "fisher_z", "diagonal", "constant", "clip"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    opts = {"estimator": "empirical", "fisher_z": False, "diagonal": "ones",
            "constant": "raise", "clip": FISHER_Z_CLIP, **kwargs}
    _check_options(opts["estimator"], opts["diagonal"], opts["constant"], opts["clip"])
    return _fc_list(series, device=device, dtype=dtype, kind="correlation", **opts)


def _fc_list(
    series: Sequence[Any], *, device: torch.device | str | None, dtype: torch.dtype,
    kind: Kind, **opts: Any,
) -> torch.Tensor:
    if isinstance(series, (np.ndarray, torch.Tensor)) and series.ndim == 3:
        series = list(series)
    if not isinstance(series, Sequence) or isinstance(series, (str, bytes)) or len(series) == 0:
        raise ValueError("expected a non-empty list of 2D arrays (n_timepoints, n_rois)")
    items = [_series_to_numpy_or_tensor(s, i) for i, s in enumerate(series)]
    for i, t in enumerate(items):
        if t.shape[0] < 2:
            raise ValueError(f"series[{i}] has {t.shape[0]} timepoints; FC needs at least 2")
    order = np.argsort([t.shape[0] for t in items], kind="stable")
    out: torch.Tensor | None = None
    for start in range(0, len(items), _LIST_BLOCK):
        ids = order[start : start + _LIST_BLOCK]
        x, lengths = _pad([items[i] for i in ids], device=device, dtype=dtype)
        fc = _connectivity(x, lengths, kind=kind, sample_ids=ids.tolist(), **opts)
        if out is None:
            out = fc.new_empty((len(items), *fc.shape[1:]))
        out[torch.as_tensor(ids, device=fc.device)] = fc
    assert out is not None
    return out


def fisher_z(fc: torch.Tensor | np.ndarray, clip: float = FISHER_Z_CLIP) -> torch.Tensor | np.ndarray:
    """Fisher z transform ``arctanh(clip(r, -(1 - clip), 1 - clip))``, finite everywhere.

    Parameters
    ----------
    fc : Tensor or ndarray (..., R, R) or any shape
        Correlations in ``[-1, 1]``.
    clip : float, default=1e-6
        Distance from +-1 at which values are clipped: ``|z| <= arctanh(1 - clip)``
        (7.254 for the default, so a unit diagonal maps to 7.254).

    Returns
    -------
    Tensor or ndarray
        Same type, shape and dtype as ``fc``.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(fisher_z(np.array([0.0, 0.5, 1.0])), 3)
    array([0.   , 0.549, 7.254])
    """
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip must be in (0, 1), got {clip!r}")
    if isinstance(fc, torch.Tensor):
        return fc.clamp(-1.0 + clip, 1.0 - clip).atanh()
    arr = np.asarray(fc)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return np.arctanh(np.clip(arr, -1.0 + clip, 1.0 - clip))


def _tril(n_rois: int, discard_diagonal: bool) -> tuple[np.ndarray, np.ndarray]:
    # row-major lower triangle: the order of nilearn's sym_matrix_to_vec (np.tril boolean mask)
    return np.tril_indices(n_rois, k=-1 if discard_diagonal else 0)


def vectorize(
    fc: torch.Tensor | np.ndarray, discard_diagonal: bool = False, *, scale_diagonal: bool = False
) -> torch.Tensor | np.ndarray:
    """Flatten symmetric matrices to their lower triangle, in nilearn's order.

    Parameters
    ----------
    fc : Tensor or ndarray (..., R, R)
        Symmetric matrices.
    discard_diagonal : bool, default=False
        Leave the diagonal out (``R (R - 1) / 2`` features instead of ``R (R + 1) / 2``).
    scale_diagonal : bool, default=False
        Divide the kept diagonal by ``sqrt(2)`` like :func:`nilearn.connectome.sym_matrix_to_vec`
        (so that vector norms equal matrix Frobenius norms / sqrt(2)); off by default so that
        :func:`unvectorize` restores the input bit for bit.

    Returns
    -------
    Tensor or ndarray (..., F)
        Entries ``(i, j)`` with ``i >= j`` (``i > j`` when discarding the diagonal), row by row:
        ``(0,0), (1,0), (1,1), (2,0), ...``.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 5.0], [3.0, 5.0, 1.0]])
    >>> vectorize(m)
    array([1., 2., 1., 3., 5., 1.])
    >>> vectorize(m, discard_diagonal=True)
    array([2., 3., 5.])
    """
    if fc.ndim < 2 or fc.shape[-1] != fc.shape[-2]:
        raise ValueError(f"expected square matrices (..., R, R), got shape {tuple(fc.shape)}")
    n = fc.shape[-1]
    rows, cols = _tril(n, discard_diagonal)
    if isinstance(fc, torch.Tensor):
        vec = fc[..., torch.from_numpy(rows).to(fc.device), torch.from_numpy(cols).to(fc.device)]
    else:
        vec = np.asarray(fc)[..., rows, cols]
    if scale_diagonal and not discard_diagonal:
        on_diag = rows == cols
        if isinstance(vec, torch.Tensor):
            vec = vec.clone()
            idx = torch.from_numpy(np.flatnonzero(on_diag)).to(vec.device)
            vec[..., idx] = vec[..., idx] / math.sqrt(2.0)
        else:
            vec = vec.astype(np.result_type(vec.dtype, np.float32), copy=True)
            vec[..., on_diag] = vec[..., on_diag] / np.sqrt(2.0)
    return vec


def unvectorize(
    vec: torch.Tensor | np.ndarray,
    n_rois: int | None = None,
    discard_diagonal: bool = False,
    diagonal: float | torch.Tensor | np.ndarray = 1.0,
    *,
    scale_diagonal: bool = False,
) -> torch.Tensor | np.ndarray:
    """Rebuild symmetric matrices from :func:`vectorize` output (exact inverse).

    Parameters
    ----------
    vec : Tensor or ndarray (..., F)
        Lower-triangle vectors.
    n_rois : int, optional
        Number of ROIs ``R``; inferred from ``F`` when omitted (and checked when given).
    discard_diagonal : bool, default=False
        Whether ``vec`` lacks the diagonal (as produced with ``discard_diagonal=True``).
    diagonal : float or array (..., R), default=1.0
        Diagonal to fill in when ``discard_diagonal`` is True (ignored otherwise).
    scale_diagonal : bool, default=False
        Multiply the stored diagonal by ``sqrt(2)`` (inverse of ``vectorize(scale_diagonal=True)``,
        as :func:`nilearn.connectome.vec_to_sym_matrix`; exact to within one rounding).

    Returns
    -------
    Tensor or ndarray (..., R, R)

    Examples
    --------
    >>> import numpy as np
    >>> unvectorize(np.array([2.0, 3.0, 5.0]), discard_diagonal=True)
    array([[1., 2., 3.],
           [2., 1., 5.],
           [3., 5., 1.]])
    """
    if vec.ndim < 1:
        raise ValueError("expected vectors (..., F), got a scalar")
    f = vec.shape[-1]
    root = math.isqrt(8 * f + 1)
    if root * root != 8 * f + 1:
        kind = "R (R - 1) / 2" if discard_diagonal else "R (R + 1) / 2"
        raise ValueError(f"vector length {f} is not {kind} for any integer R")
    inferred = (root + 1) // 2 if discard_diagonal else (root - 1) // 2
    if n_rois is not None and n_rois != inferred:
        raise ValueError(
            f"n_rois={n_rois} does not match vector length {f} "
            f"(which gives R={inferred} with discard_diagonal={discard_diagonal})"
        )
    n = inferred
    rows, cols = _tril(n, discard_diagonal)
    batch_shape = tuple(vec.shape[:-1])
    if isinstance(vec, torch.Tensor):
        out_t = vec.new_zeros((*batch_shape, n, n))
        r_t, c_t = torch.from_numpy(rows).to(vec.device), torch.from_numpy(cols).to(vec.device)
        out_t[..., r_t, c_t] = vec
        out_t[..., c_t, r_t] = vec
        d_t = out_t.diagonal(dim1=-2, dim2=-1)
        if discard_diagonal:
            d_t.copy_(torch.as_tensor(diagonal, dtype=vec.dtype, device=vec.device).expand_as(d_t))
        elif scale_diagonal:
            d_t.mul_(math.sqrt(2.0))
        return out_t
    arr = np.asarray(vec)
    out = np.zeros((*batch_shape, n, n), dtype=np.result_type(arr.dtype, np.float32)
                   if not np.issubdtype(arr.dtype, np.floating) else arr.dtype)
    out[..., rows, cols] = arr
    out[..., cols, rows] = arr
    idx = np.arange(n)
    if discard_diagonal:
        out[..., idx, idx] = np.broadcast_to(np.asarray(diagonal, dtype=out.dtype), (*batch_shape, n))
    elif scale_diagonal:
        out[..., idx, idx] = out[..., idx, idx] * np.sqrt(2.0)
    return out


# --------------------------------------------------------------------------------------------
# sklearn-style estimator
# --------------------------------------------------------------------------------------------
class ConnectivityEstimator(TransformerMixin, BaseEstimator):
    """FC estimator with nilearn's ``ConnectivityMeasure`` interface (correlation/covariance).

    Parameters
    ----------
    kind : {"correlation", "covariance"}, default="correlation"
        Pearson correlation, or maximum-likelihood covariance (divided by ``n``, as
        :class:`sklearn.covariance.EmpiricalCovariance`). Use nilearn for "tangent".
    estimator : {"empirical", "ledoit_wolf"}, default="empirical"
        Empirical estimate, or Ledoit-Wolf shrinkage. ``kind="correlation",
        estimator="ledoit_wolf"`` equals nilearn's default ``ConnectivityMeasure()``; the
        empirical correlation equals ``ConnectivityMeasure(cov_estimator=EmpiricalCovariance())``
        and :func:`numpy.corrcoef`.
    vectorize : bool, default=False
        Return the lower triangle ``(n_samples, F)`` instead of ``(n_samples, R, R)``. Like
        nilearn, a kept diagonal is divided by ``sqrt(2)``, so the features are identical to
        nilearn's.
    discard_diagonal : bool, default=False
        With ``vectorize``, leave the diagonal out.
    fisher_z : bool, default=False
        Fisher z transform of correlations (clip 1e-6, see :func:`fisher_z`).
    constant : {"raise", "zero"}, default="raise"
        Policy for constant ROI series (see :func:`batch_fc`).
    device : str, optional
        Torch device for the computation (default CPU). Computations are in float64.

    Attributes
    ----------
    n_features_in_ : int
        Number of ROIs seen in :meth:`fit`.
    n_rois_ : int
        Same as ``n_features_in_``.
    mean_ : ndarray (R, R)
        Mean connectivity matrix of the fitted scans.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.standard_normal((120, 6)), rng.standard_normal((90, 6))]
    >>> ConnectivityEstimator(vectorize=True, discard_diagonal=True).fit_transform(X).shape
    (2, 15)
    """

    def __init__(
        self,
        kind: Kind = "correlation",
        estimator: Estimator = "empirical",
        vectorize: bool = False,
        discard_diagonal: bool = False,
        fisher_z: bool = False,
        constant: ConstantPolicy = "raise",
        device: str | None = None,
    ) -> None:
        self.kind = kind
        self.estimator = estimator
        self.vectorize = vectorize
        self.discard_diagonal = discard_diagonal
        self.fisher_z = fisher_z
        self.constant = constant
        self.device = device

    def _validate(self) -> None:
        _check_choice("kind", self.kind, _KINDS)
        _check_choice("estimator", self.estimator, _ESTIMATORS)
        _check_choice("constant", self.constant, _CONSTANT_POLICIES)
        if self.fisher_z and self.kind != "correlation":
            raise ValueError(f"fisher_z=True applies to kind='correlation', got kind={self.kind!r}")

    @staticmethod
    def _as_list(X: Any) -> list[Any]:
        if isinstance(X, (np.ndarray, torch.Tensor)):
            if X.ndim == 2:  # nilearn accepts a single (n_timepoints, n_rois) array
                return [X]
            if X.ndim == 3:
                return list(X)
            raise ValueError(
                "expected a list of 2D arrays (n_timepoints, n_rois) or a 3D array "
                f"(n_samples, n_timepoints, n_rois), got an array of shape {tuple(X.shape)}"
            )
        if isinstance(X, (str, bytes)) or not hasattr(X, "__iter__"):
            raise TypeError(
                f"expected a list of 2D arrays (n_timepoints, n_rois), got {type(X).__name__}"
            )
        return list(X)

    def _compute(self, X: Any) -> np.ndarray:
        series = self._as_list(X)
        fc = _fc_list(series, device=self.device, dtype=torch.float64, kind=self.kind,
                      estimator=self.estimator, fisher_z=self.fisher_z, diagonal="ones",
                      constant=self.constant, clip=FISHER_Z_CLIP)
        return fc.cpu().numpy()

    def _output(self, conn: np.ndarray) -> np.ndarray:
        if self.vectorize:
            return vectorize(conn, discard_diagonal=self.discard_diagonal, scale_diagonal=True)  # type: ignore[return-value]
        return conn

    def fit(self, X: Any, y: Any = None) -> ConnectivityEstimator:
        """Check the scans and store the number of ROIs and the mean connectivity.

        Parameters
        ----------
        X : list of array-like (n_timepoints_i, n_rois), or array (n_samples, T, n_rois)
        y : ignored

        Returns
        -------
        self
        """
        self._fit(X)
        return self

    def _fit(self, X: Any) -> np.ndarray:
        self._validate()
        conn = self._compute(X)
        self.n_features_in_ = int(conn.shape[-1])
        self.n_rois_ = self.n_features_in_
        mean = conn.mean(axis=0)
        self.mean_ = 0.5 * (mean + mean.T)
        return conn

    def transform(self, X: Any) -> np.ndarray:
        """Connectivity of each scan.

        Parameters
        ----------
        X : list of array-like (n_timepoints_i, n_rois), or array (n_samples, T, n_rois)

        Returns
        -------
        ndarray (n_samples, R, R), or (n_samples, F) with ``vectorize=True``
        """
        check_is_fitted(self, "n_features_in_")
        self._validate()
        series = self._as_list(X)
        for i, s in enumerate(series):
            shape = np.shape(s)
            if len(shape) == 2 and shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X[{i}] has {shape[1]} ROIs, but this estimator was fitted with "
                    f"{self.n_features_in_} (shape {shape}; rows must be timepoints)"
                )
        return self._output(self._compute(series))

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit and return the connectivity of ``X`` (computed once).

        Parameters
        ----------
        X : list of array-like (n_timepoints_i, n_rois), or array (n_samples, T, n_rois)
        y : ignored

        Returns
        -------
        ndarray (n_samples, R, R), or (n_samples, F) with ``vectorize=True``
        """
        return self._output(self._fit(X))
