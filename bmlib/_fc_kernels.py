"""Fused CPU kernels for the FC hot path, compiled with numba when it is installed.

:func:`bmlib.connectivity.batch_fc` and the pFC views spend, besides the cross-product matrix
multiply (``torch.bmm``, MKL), their time in memory-bound passes over each chunk of scans:
subtract the centring offset, sum the centred values, then scale, correct and clip the
``(R, R)`` products, then screen each ROI. As separate torch ops these are a dozen calls per
chunk, each of which has to re-take the GIL in its worker thread. Here they are two passes,
each one call that releases the GIL:

:func:`centre`
    Gathers the used rows of each scan (pFC views), subtracts the offset (the mean of the same
    16 probe rows as the torch path) and accumulates the per-ROI sums, in one read of ``x``.
:func:`normalise`
    Turns the cross products ``G = Z^T Z`` into Pearson correlation in place:
    ``r_ij = G_ij (d_i d_j) - u_i u_j`` with ``d = 1 / sqrt(var)`` and ``u = d (mean - offset)
    sqrt(n)``, clipped to ``[-1, 1]``, diagonal set. Every factor is symmetric and no fused
    multiply-add is allowed (no fast-math), so ``r`` is exactly symmetric when ``G`` is. It also
    screens each ROI (offset too far from the mean, constant, NaN/inf) as the torch path does.

A third kernel, ``drop_index``, picks the kept rows of pFC drop views (see :mod:`bmlib.pfc`).

The results equal the torch path to float rounding (tested in ``tests/test_connectivity.py``,
which runs both). :func:`kernels` returns ``None`` when numba is missing or broken, or when
``BMLIB_NUMBA=0`` is set in the environment; the torch path is used then. Compiled code is
cached on disk by numba (first use after installation compiles for about five seconds, later
processes load it in about half a second).
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["kernels", "enabled", "TIE_STEP"]

#: Drop views break ties between equal random keys by position: row t has key + t * TIE_STEP.
TIE_STEP: float = 2.0**-40
_TIE_STEP = TIE_STEP

_LOCK = threading.Lock()
_KERNELS: SimpleNamespace | None = None
_TRIED = False


def enabled() -> bool:
    """Whether the numba kernels may be used (``BMLIB_NUMBA`` is not ``"0"``)."""
    return os.environ.get("BMLIB_NUMBA", "1").strip() != "0"


def _compile(numba: Any) -> SimpleNamespace:
    def jit(fn: Any) -> Any:
        opts = dict(nogil=True, boundscheck=False, error_model="numpy")
        try:
            return numba.njit(cache=True, **opts)(fn)
        except RuntimeError:  # no writable cache location: compile in memory only
            return numba.njit(**opts)(fn)

    def centre(x: np.ndarray, index: np.ndarray, counts: np.ndarray, used: int, step: int,
               n_probes: int, buf: np.ndarray, offsets: np.ndarray, sums: np.ndarray) -> int:
        """Fill ``buf`` with offset-centred rows, ``offsets`` and ``sums``; -1 if all is well.

        ``x (c, T, R)``; ``index (c, K)`` rows to use (``K == 0``: the leading rows);
        ``counts (c,)`` rows used per scan; probes are the used rows ``0, step, ...`` below
        ``used`` (at most ``n_probes``); ``buf (c, n_rows, R)`` gets the centred rows and zeros
        beyond ``counts``. Returns the first scan with an index outside ``[0, T)``, else -1.
        """
        c, n_t, n_r = x.shape
        n_rows = buf.shape[1]
        gather = index.shape[1] > 0
        acc = np.empty(n_r, dtype=np.float64)
        for b in range(c):
            xb = x[b]
            zb = buf[b]
            n = counts[b]
            if gather:
                for k in range(n):
                    if index[b, k] < 0 or index[b, k] >= n_t:
                        return b
            acc[:] = 0.0
            k = 0
            t = 0
            while t < used and k < n_probes:
                row = xb[index[b, t]] if gather else xb[t]
                for r in range(n_r):
                    acc[r] += row[r]
                k += 1
                t += step
            off = offsets[b]
            for r in range(n_r):
                off[r] = acc[r] / k
            acc[:] = 0.0
            for t in range(n):
                row = xb[index[b, t]] if gather else xb[t]
                zr = zb[t]
                for r in range(n_r):
                    v = row[r] - off[r]
                    zr[r] = v
                    acc[r] += v
            for t in range(n, n_rows):
                zb[t, :] = 0.0
            s = sums[b]
            for r in range(n_r):
                s[r] = acc[r]
        return -1

    def normalise(gram: np.ndarray, sums: np.ndarray, counts: np.ndarray, offsets: np.ndarray,
                  sumsq: np.ndarray, means: np.ndarray, diagonal: float, max_ratio: float,
                  tiny: float) -> int:
        """Cross products of offset-centred rows -> clipped Pearson r, in place.

        Fills ``sumsq`` (centred sums of squares) and ``means``, and screens every ROI as the
        torch path does: it is flagged when ``sumsq`` is not finite or not above
        ``max(sum^2 / (n max_ratio), n mean^2 tiny)`` (offset too far from the mean, or a
        constant series). Returns the number of flagged ROIs; their values are redone or
        reported by the caller.
        """
        c, n_r, _ = gram.shape
        inv = np.empty(n_r, dtype=gram.dtype)
        u = np.empty(n_r, dtype=gram.dtype)
        flagged = 0
        for b in range(c):
            g = gram[b]
            n = counts[b]
            root_n = math.sqrt(n)
            for i in range(n_r):
                s = sums[b, i]
                scaled = s / root_n  # sqrt(n) (mean - offset)
                var = g[i, i] - scaled * scaled  # centred sum of squares
                sumsq[b, i] = var
                mean = offsets[b, i] + s / n
                means[b, i] = mean
                limit = max(s * s / (n * max_ratio), mean * mean * n * tiny)
                if not (var > limit and var < math.inf):  # NaN fails both comparisons
                    flagged += 1
                inv[i] = 1.0 / math.sqrt(var)  # inf / nan for flagged ROIs: fixed by the caller
                u[i] = scaled * inv[i]
            for i in range(n_r):
                row = g[i]
                d_i = inv[i]
                u_i = u[i]
                for j in range(n_r):
                    r = row[j] * (d_i * inv[j]) - u_i * u[j]
                    row[j] = min(1.0, max(-1.0, r))
                row[i] = diagonal
        return flagged

    def drop_index(keys: np.ndarray, lengths: np.ndarray, n_drop: np.ndarray, index: np.ndarray) -> None:
        """Kept timepoints of drop views: all but the ``n_drop[b]`` smallest keys, in order.

        ``keys (V, B, T)`` uniform in [0, 1); ties are broken by position (the key of row t is
        ``key + t * 2**-40``, exact in float64 for float32 keys and T < 2**16), the rule of the
        torch path. ``index (V, B, K)`` gets the kept rows first and zeros after them. The
        threshold (the ``n_drop``-th smallest key) is found with ``n`` equal-width bins of the
        keys, so each scan costs a few passes over its ``n`` keys (no sort).
        """
        n_views, batch, n_t = keys.shape
        count = np.empty(n_t + 1, dtype=np.int64)
        pool = np.empty(n_t, dtype=np.float64)
        for v in range(n_views):
            for b in range(batch):
                n = lengths[b]
                nd = n_drop[b]
                out = index[v, b]
                out[:] = 0
                k = keys[v, b]
                threshold = -1.0
                if nd > 0:
                    count[:n] = 0
                    for t in range(n):
                        count[int(k[t] * n)] += 1  # exact: 24-bit key times n < 2**16
                    below = 0
                    edge = 0
                    while below + count[edge] < nd:
                        below += count[edge]
                        edge += 1
                    m = 0
                    for t in range(n):  # keys in the bin that holds the threshold
                        if int(k[t] * n) == edge:
                            pool[m] = np.float64(k[t]) + t * _TIE_STEP
                            m += 1
                    part = np.sort(pool[:m])  # a handful of keys
                    threshold = part[nd - below - 1]
                j = 0
                for t in range(n):
                    if np.float64(k[t]) + t * _TIE_STEP > threshold:
                        out[j] = t
                        j += 1

    return SimpleNamespace(centre=jit(centre), normalise=jit(normalise), drop_index=jit(drop_index))


def kernels() -> SimpleNamespace | None:
    """The compiled kernels (``centre``, ``normalise``, ``drop_index``), or ``None`` for the torch path."""
    global _KERNELS, _TRIED
    if not enabled():
        return None
    if _TRIED:
        return _KERNELS
    with _LOCK:
        if not _TRIED:
            try:
                import numba
            except Exception as err:  # missing (it is a dependency), or incompatible with this numpy
                warnings.warn(f"numba is not usable ({err}); FC uses the slower torch path",
                              RuntimeWarning, stacklevel=2)
                numba = None
            _KERNELS = _compile(numba) if numba is not None else None
            _TRIED = True
    return _KERNELS
