"""bmlib: a notebook-first environment for brain-network foundation models.

The library implements the BrainMass recipe (Yang et al., IEEE TMI 2024): functional
connectivity (FC) and pseudo-FC (pFC) augmentation, a transformer over ROI tokens,
Mask-ROI Modeling (MRM) and Latent Representation Alignment (LRA) pretraining, and the
evaluation and interpretation tools that follow. Sub-modules are imported lazily so
``import bmlib`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "connectivity",
    "pfc",
    "data",
    "model",
    "objectives",
    "engine",
    "distributed",
    "features",
    "evaluation",
    "interpret",
    "plotting",
    "runner",
    "cli",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"bmlib.{name}")
    raise AttributeError(f"module 'bmlib' has no attribute {name!r}")
