"""Small synthetic cohorts for the evaluation and feature tests (no other bmlib module needed).

Two diagnosis groups of AR(1) ROI time series, several sites (different noise levels and lengths)
and participants with several sessions. Patients get a planted FC increase among the first
``n_effect`` ROIs (a shared latent signal added to them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from bmlib.evaluation import Cohort


def toy_series(
    n_participants: int = 24,
    *,
    n_sites: int = 3,
    sessions: int = 2,
    n_rois: int = 10,
    n_timepoints: int = 60,
    effect: float = 0.8,
    n_effect: int = 4,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Manifest (sample_id, participant, site, session, diagnosis, dataset) and series by id.

    Half the participants are patients (odd numbers); pairs of participants share a site, so
    diagnosis and site are balanced for any number of sites.
    """
    rng = np.random.default_rng(seed)
    part = np.repeat(np.arange(n_participants), sessions)
    n = part.size
    diag = np.where(part % 2 == 1, "patient", "control")
    site_of = (np.arange(n_participants) // 2) % n_sites  # each control/patient pair shares a site
    site = site_of[part]
    noise = rng.standard_normal((n, n_timepoints, n_rois)) * (1.0 + 0.3 * site)[:, None, None]
    x = lfilter([1.0], [1.0, -0.5], noise, axis=1)  # AR(1) along time, all scans at once
    latent = lfilter([1.0], [1.0, -0.5], rng.standard_normal((n, n_timepoints)), axis=1)
    x[:, :, :n_effect] += effect * (diag == "patient")[:, None, None] * latent[:, :, None]
    lengths = n_timepoints - 10 * (site % 2)  # sites differ in length
    ids = [f"s{p:03d}_ses{i % sessions}" for i, p in enumerate(part)]
    manifest = pd.DataFrame(
        {
            "sample_id": ids,
            "participant": [f"p{p:03d}" for p in part],
            "site": [f"site{s}" for s in site],
            "session": np.arange(n) % sessions,
            "diagnosis": diag,
            "dataset": "toy",
        }
    )
    series = {sid: x[i, : lengths[i]].astype(np.float32) for i, sid in enumerate(ids)}
    return manifest, series


def toy_cohort(seed: int = 0, **kw: object) -> Cohort:
    """Two tasks: ``planted`` (effect in dataset toy) and ``null`` (no effect, dataset toy_null)."""
    m1, s1 = toy_series(seed=seed, **kw)
    kw0 = {**kw, "effect": 0.0}
    m0, s0 = toy_series(seed=seed + 1, **kw0)
    m0 = m0.assign(sample_id="n" + m0["sample_id"], participant="n" + m0["participant"], dataset="toy_null")
    s0 = {"n" + k: v for k, v in s0.items()}
    tasks = {
        "planted": {"datasets": ["toy"], "kind": "internal", "label_column": "diagnosis",
                    "positive": "patient", "negative": "control"},
        "null": {"datasets": ["toy_null"], "kind": "external", "label_column": "diagnosis",
                 "positive": "patient", "negative": "control"},
    }
    return Cohort(pd.concat([m1, m0], ignore_index=True), {**s1, **s0}, tasks)


def toy_fc(series: list[np.ndarray]) -> np.ndarray:
    """Pearson FC (N, R, R) with numpy, independent of bmlib.connectivity."""
    return np.stack([np.corrcoef(s.T) for s in series]).astype(np.float32)


def samples_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """sample_id, participant, site, label from a toy manifest."""
    return pd.DataFrame(
        {
            "sample_id": manifest["sample_id"].to_numpy(),
            "participant": manifest["participant"].to_numpy(),
            "site": manifest["site"].to_numpy(),
            "label": (manifest["diagnosis"].to_numpy() == "patient").astype(int),
        }
    )
