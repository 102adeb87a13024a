"""Shared fixtures. Plots are tested headless."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

# Two xdist workers share 2 cores: one BLAS/torch thread each (multi-threaded small ops stall).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402

import torch  # noqa: E402

from bmlib import runner  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> runner.RunRecord:
    """Notebooks 01-04 executed once with papermill in SMOKE mode on the embedded data.

    Tests that use it are in the xdist group "notebooks", so one worker runs them all and
    the pipeline runs once per test session.
    """
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    return runner.run_notebooks(run_dir, smoke=True, index=True)
