"""Tests for bmlib.data.readers: every time-series format and phenotype normalisation."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io

from bmlib.data.readers import read_phenotypes, read_timeseries


@pytest.fixture
def series() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(30, 5))


# ------------------------------------------------------------------------------- text formats


def _write_1d(path: Path, x: np.ndarray, names: list[str] | None) -> None:
    header = "#" + "\t#".join(names) + "\n" if names else ""
    body = "\n".join("\t".join(f"{v:.8f}" for v in row) for row in x) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(header + body)
    else:
        path.write_text(header + body)


def test_abide_1d_with_header(tmp_path: Path, series: np.ndarray) -> None:
    p = tmp_path / "rois_cc200.1D"
    names = ["2001", "2002", "2101", "2102", "2201"]
    _write_1d(p, series, names)
    x, labels = read_timeseries(p, n_rois=5, return_labels=True)
    np.testing.assert_allclose(x, series, atol=1e-7)
    assert labels == names
    assert x.dtype == np.float64 and x.flags.c_contiguous


def test_1d_gzip_without_header_and_dtype(tmp_path: Path, series: np.ndarray) -> None:
    p = tmp_path / "rois.1D.gz"
    _write_1d(p, series, None)
    x, labels = read_timeseries(p, dtype=np.float32, return_labels=True)
    assert labels is None and x.dtype == np.float32
    np.testing.assert_allclose(x, series, atol=1e-6)


def test_tsv_header_drops_index_and_text_columns(tmp_path: Path, series: np.ndarray) -> None:
    df = pd.DataFrame(series, columns=[f"roi{i}" for i in range(5)])
    df.insert(0, "condition", "rest")
    p = tmp_path / "sub-01_timeseries.tsv"
    df.to_csv(p, sep="\t")  # writes the pandas index as an 'Unnamed: 0' column
    text = p.read_text().splitlines()
    text[3] = text[3].rsplit("\t", 1)[0] + "\tn/a"  # XCP-D style missing value
    p.write_text("\n".join(text) + "\n")
    x, labels = read_timeseries(p, n_rois=5, return_labels=True)
    assert labels == [f"roi{i}" for i in range(5)]
    assert np.isnan(x[2, 4]) and np.isfinite(np.delete(x.ravel(), 2 * 5 + 4)).all()
    np.testing.assert_allclose(x[0], series[0])


def test_csv_drop_columns_and_no_header(tmp_path: Path, series: np.ndarray) -> None:
    df = pd.DataFrame(series, columns=list("abcde"))
    df.insert(0, "time", np.arange(30) * 2.0)
    p = tmp_path / "ts.csv"
    df.to_csv(p, index=False)
    assert read_timeseries(p).shape == (30, 6)
    np.testing.assert_allclose(read_timeseries(p, drop_columns=["time"]), series)
    with pytest.raises(ValueError, match=r"drop_columns \['nope'\] not in the header"):
        read_timeseries(p, drop_columns=["nope"])
    p2 = tmp_path / "plain.csv"
    np.savetxt(p2, series, delimiter=",")
    np.testing.assert_allclose(read_timeseries(p2, header=False), series)


# ------------------------------------------------------------------------------ binary formats


def test_npy_orientation_and_roi_count(tmp_path: Path, series: np.ndarray) -> None:
    p = tmp_path / "scan.npy"
    np.save(p, series.T)  # stored ROIs x time
    np.testing.assert_allclose(read_timeseries(p, orientation="rois_x_timepoints", n_rois=5), series)
    with pytest.raises(ValueError, match=r"scan\.npy: expected 5 ROIs, got 30 .*stored 'rois_x_timepoints'"):
        read_timeseries(p, n_rois=5)
    with pytest.raises(ValueError, match=r"scan\.npy: expected 7 ROIs, got 5"):
        read_timeseries(p, n_rois=7, orientation="rois_x_timepoints")
    with pytest.raises(ValueError, match="orientation must be one of"):
        read_timeseries(p, orientation="auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_rois must be a positive integer"):
        read_timeseries(p, n_rois=0)


def test_npy_shape_and_dtype_errors(tmp_path: Path) -> None:
    p = tmp_path / "cube.npy"
    np.save(p, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"cube\.npy: expected a 2D array .*got shape \(2, 3, 4\)"):
        read_timeseries(p)
    p2 = tmp_path / "text.npy"
    np.save(p2, np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="expected real numeric values, got dtype <U1"):
        read_timeseries(p2)


def test_npz_keys(tmp_path: Path, series: np.ndarray) -> None:
    p = tmp_path / "scans.npz"
    np.savez(p, ts=series, confounds=np.ones((30, 2)), tr=np.array(2.0))
    np.testing.assert_allclose(read_timeseries(p, key="ts"), series)
    with pytest.raises(ValueError, match=r"pass key= .*\['confounds', 'ts'\]"):
        read_timeseries(p)
    with pytest.raises(ValueError, match=r"no array named 'bold'; available: \['confounds', 'tr', 'ts'\]"):
        read_timeseries(p, key="bold")
    single = tmp_path / "one.npz"
    np.savez(single, ts=series, tr=np.array(2.0))
    np.testing.assert_allclose(read_timeseries(single), series)


def test_mat_v5_and_v73(tmp_path: Path, series: np.ndarray) -> None:
    p = tmp_path / "subj.mat"
    scipy.io.savemat(p, {"tc": series.T, "other": np.eye(3)})
    np.testing.assert_allclose(read_timeseries(p, key="tc", orientation="rois_x_timepoints"), series)
    with pytest.raises(ValueError, match=r"pass key=.*\['other', 'tc'\]"):
        read_timeseries(p)
    # MATLAB v7.3 = HDF5 with a 512-byte MAT header; MATLAB writes column-major, so a (T, R)
    # MATLAB variable appears as (R, T) to h5py
    p73 = tmp_path / "subj73.mat"
    with h5py.File(p73, "w", userblock_size=512) as fh:
        fh["ts"] = series.T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    with open(p73, "r+b") as fh:
        fh.write(header)
    np.testing.assert_allclose(read_timeseries(p73, n_rois=5), series)


def test_nifti_with_label_atlas(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    shape, n_t = (6, 6, 6), 20
    labels = np.zeros(shape, dtype=np.int16)
    labels[:3, :, :3] = 1
    labels[3:, :, :3] = 2
    labels[:, :, 3:] = 3
    signals = rng.normal(size=(n_t, 3)) + 100.0
    bold = np.zeros((*shape, n_t))
    for k in range(3):
        bold[labels == k + 1] = signals[:, k]
    bold += rng.normal(scale=0.01, size=bold.shape)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold_path = tmp_path / "sub-01_bold.nii.gz"
    nib.save(nib.Nifti1Image(bold.astype(np.float32), affine), bold_path)
    atlas_img = nib.Nifti1Image(labels, affine)
    x = read_timeseries(bold_path, atlas_img=atlas_img, n_rois=3)
    assert x.shape == (n_t, 3)
    np.testing.assert_allclose(x, signals, atol=0.01)
    with pytest.raises(ValueError, match=r"expected 4 ROIs, got 3"):
        read_timeseries(bold_path, atlas_img=atlas_img, n_rois=4)
    with pytest.raises(ValueError, match="NIfTI input needs atlas_img"):
        read_timeseries(bold_path)
    with pytest.raises(ValueError, match="orientation does not apply to NIfTI"):
        read_timeseries(bold_path, atlas_img=atlas_img, orientation="rois_x_timepoints")


def test_confounds_are_regressed_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    drift = np.linspace(-1, 1, 200)
    clean = rng.normal(size=(200, 4))
    p = tmp_path / "s.npy"
    np.save(p, clean + 5.0 * drift[:, None])
    x = read_timeseries(p, confounds=drift[:, None])
    assert abs(np.corrcoef(x[:, 0], drift)[0, 1]) < 1e-6
    assert np.corrcoef(x[:, 0], clean[:, 0])[0, 1] > 0.99
    conf_path = tmp_path / "confounds.tsv"
    pd.DataFrame({"trans_x": drift}).to_csv(conf_path, sep="\t", index=False)
    np.testing.assert_allclose(read_timeseries(p, confounds=conf_path), x, atol=1e-10)
    with pytest.raises(ValueError, match=r"expected confounds of shape \(200, n_confounds\), got \(50, 1\)"):
        read_timeseries(p, confounds=np.ones((50, 1)))
    bad = drift.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="confounds contain NaN"):
        read_timeseries(p, confounds=bad)


def test_dispatch_errors(tmp_path: Path, series: np.ndarray) -> None:
    with pytest.raises(FileNotFoundError, match="time-series file not found"):
        read_timeseries(tmp_path / "missing.npy")
    p = tmp_path / "scan.xlsx"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match=r"unsupported file type '\.xlsx'; supported: \.1D"):
        read_timeseries(p)
    q = tmp_path / "scan.npy"
    np.save(q, series)
    with pytest.raises(ValueError, match="atlas_img only applies to NIfTI input"):
        read_timeseries(q, atlas_img="labels.nii.gz")
    with pytest.raises(ValueError, match=r"key only applies to \.npz and \.mat"):
        read_timeseries(q, key="x")
    r = tmp_path / "broken.1D"
    r.write_text("1 2 3\n4 five 6\n")
    with pytest.raises(ValueError, match=r"broken\.1D: could not parse"):
        read_timeseries(r)


# ---------------------------------------------------------------------------------- phenotypes


def test_bids_participants_tsv(tmp_path: Path) -> None:
    p = tmp_path / "participants.tsv"
    p.write_text(
        "participant_id\tage\tsex\tgroup\thandedness\n"
        "sub-01\t23.5\tmale\tcontrol\t0.8\n"
        "sub-02\tn/a\tF\tpatient\t-0.2\n"
    )
    df = read_phenotypes(p, dataset="ds001", tr=2.0)
    assert list(df.columns[:6]) == ["participant", "dataset", "diagnosis", "age", "sex", "tr"]
    assert df["participant"].tolist() == ["sub-01", "sub-02"]
    assert df["sex"].tolist() == ["M", "F"]
    assert df["diagnosis"].tolist() == ["control", "patient"]
    assert df["age"].iloc[0] == 23.5 and np.isnan(df["age"].iloc[1])
    assert df["tr"].tolist() == [2.0, 2.0] and df["dataset"].tolist() == ["ds001"] * 2
    assert df["handedness"].dtype == np.float64  # extra numeric column kept as numbers


def test_abide_phenotype_csv(tmp_path: Path) -> None:
    p = tmp_path / "Phenotypic_V1_0b_preprocessed1.csv"
    p.write_text(
        "SUB_ID,SITE_ID,FILE_ID,DX_GROUP,AGE_AT_SCAN,SEX,FIQ\n"
        "0050002,PITT,Pitt_0050002,1,16.77,1,-9999\n"
        "0050003,PITT,Pitt_0050003,2,24.45,2,124\n"
    )
    df = read_phenotypes(p)
    assert df["participant"].tolist() == ["0050002", "0050003"]  # leading zeros kept
    assert df["sample_id"].tolist() == ["Pitt_0050002", "Pitt_0050003"]
    assert df["site"].tolist() == ["PITT", "PITT"]
    assert df["diagnosis"].tolist() == ["1", "2"]
    assert df["sex"].tolist() == ["1", "2"]  # numeric codes are dataset-specific: left as is
    assert np.isnan(df["FIQ"].iloc[0]) and df["FIQ"].iloc[1] == 124


def test_phenotype_rename_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "pheno.csv"
    p.write_text("ID,Diag,age\nA,asd,x\n")
    with pytest.raises(ValueError, match=r"expected a participant column .*got \['ID', 'Diag', 'age'\]"):
        read_phenotypes(p)
    with pytest.raises(ValueError, match=r"column 'age' must be numeric, got 'x'"):
        read_phenotypes(p, rename={"ID": "participant"})
    p.write_text("ID,Diag\nA,asd\n")
    df = read_phenotypes(p, rename={"ID": "participant", "Diag": "diagnosis"})
    assert df.loc[0, "participant"] == "A" and df.loc[0, "diagnosis"] == "asd"
    p2 = tmp_path / "dup.csv"
    p2.write_text("participant_id,sub\n1,2\n")
    with pytest.raises(ValueError, match="columns 'participant_id' and 'sub' both map to 'participant'"):
        read_phenotypes(p2)
    p3 = tmp_path / "ds.csv"
    p3.write_text("sub,dataset\n1,abide\n")
    with pytest.raises(ValueError, match=r"dataset='adhd' but the file names \['abide'\]"):
        read_phenotypes(p3, dataset="adhd")
    with pytest.raises(FileNotFoundError, match="phenotype file not found"):
        read_phenotypes(tmp_path / "none.tsv")
