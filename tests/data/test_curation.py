"""Tests for bmlib.data.curation: QC, manifest, idempotence, appends, file tables, views."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmlib.data import curation
from bmlib.data.atlases import Atlas, load_atlas
from bmlib.data.curation import (
    MANIFEST_COLUMNS,
    CuratedDataset,
    curate,
    drop_datasets,
    qc_check,
    read_manifest,
    write_ground_truth,
    write_tasks,
)

R = 100  # Schaefer-100


def _cohort(n: int = 12, seed: int = 0, n_rois: int = R) -> tuple[list[np.ndarray], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    series = [rng.normal(size=(int(rng.integers(60, 90)), n_rois)) for _ in range(n)]
    phen = pd.DataFrame(
        {
            "participant": [f"{i // 2:03d}" for i in range(n)],
            "session": [f"ses{i % 2 + 1}" for i in range(n)],
            "site": [["A", "B", "C"][i % 3] for i in range(n)],
            "diagnosis": [["control", "patient"][i % 2] for i in range(n)],
            "age": rng.uniform(8, 40, n).round(1),
            "sex": [["F", "M", "M"][i % 3] for i in range(n)],
            "tr": 2.0,
            "iq": rng.integers(80, 130, n),
        }
    )
    return series, phen


def _digest(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root (lock file excluded)."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".manifest.lock"
    }


# ------------------------------------------------------------------------------------------ QC


def test_qc_check_each_reason() -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(size=(60, 4)) * 100 + 9500  # raw-intensity scale still passes
    assert qc_check(good, n_rois=4) == (True, "")
    assert qc_check(good, n_rois=5)[1] == "wrong_roi_count: expected 5 ROIs, got 4"
    assert qc_check(good[:10], n_rois=4)[1] == "too_short: 10 timepoints < min_timepoints=50"
    bad = good.copy()
    bad[3, 1] = np.nan
    bad[4, 2] = np.inf
    assert qc_check(bad, n_rois=4)[1] == "non_finite: 2 NaN/Inf value(s)"
    const = good.copy()
    const[:, 2] = 9500.0
    assert qc_check(const, n_rois=4)[1].startswith("constant_rois: 1 ROI(s) with constant signal, e.g. [2]")
    assert qc_check(np.zeros(5), n_rois=4)[1].startswith("bad_shape: expected 2D array")
    passed, reason = qc_check(np.zeros((10, 3)), n_rois=4, min_timepoints=20)
    assert not passed and reason.count("; ") == 2


# ------------------------------------------------------------------------------ in-memory input


@pytest.fixture
def cohort_with_rejects() -> tuple[list[np.ndarray], pd.DataFrame]:
    series, phen = _cohort()
    series[1] = series[1][:30]  # too short
    series[2][5, 7] = np.nan  # non-finite
    series[3][:, 10] = 1.0  # constant ROI
    series[4] = series[4][:, :90]  # wrong ROI count
    series[5] = np.zeros(10)  # bad shape
    return series, phen


def test_curate_records_rejects_with_reasons(tmp_path: Path, cohort_with_rejects) -> None:
    series, phen = cohort_with_rejects
    ds = curate(tmp_path / "data", series, dataset="toy", phenotypes=phen)
    assert len(ds) == 7 and len(ds.all_rows) == 12 and len(ds.rejected) == 5
    reasons = dict(zip(ds.rejected["sample_id"], ds.rejected["qc_reason"], strict=True))
    codes = {sid: r.split(":")[0] for sid, r in reasons.items()}
    assert codes == {
        "toy_000_ses2": "too_short",
        "toy_001_ses1": "non_finite",
        "toy_001_ses2": "constant_rois",
        "toy_002_ses1": "wrong_roi_count",
        "toy_002_ses2": "bad_shape",
    }
    rej = ds.rejected.set_index("sample_id")
    assert rej.loc["toy_002_ses1", "n_rois"] == 90 and rej.loc["toy_000_ses2", "n_timepoints"] == 30
    assert pd.isna(rej.loc["toy_002_ses2", "n_rois"])
    qc = ds.qc_summary()
    assert qc["n_scans"].sum() == 5 and set(qc["reason"]) == set(codes.values())
    # rejected scans are not in the store and cannot be loaded
    with pytest.raises(ValueError, match=r"'toy_001_ses1' was rejected by QC \(non_finite"):
        ds.load("toy_001_ses1")


def test_manifest_columns_types_and_values(tmp_path: Path) -> None:
    series, phen = _cohort()
    ds = curate(tmp_path / "data", series, dataset="toy", phenotypes=phen)
    m = ds.manifest
    assert tuple(m.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert list(m.columns[len(MANIFEST_COLUMNS):]) == ["iq"]
    assert m["participant"].iloc[0] == "000"  # string, leading zeros kept through the CSV
    assert m["n_timepoints"].dtype == np.int64 and (m["n_rois"] == R).all()
    assert (m["atlas"] == "schaefer100_7").all() and m["qc_pass"].all()
    assert (m["qc_reason"] == "").all() and (m["source"] == "").all()
    assert m["store_file"].str.match(r"^timeseries/toy-[0-9a-f]{12}\.h5$").all()
    np.testing.assert_array_equal(m["n_timepoints"], [len(s) for s in series])
    np.testing.assert_allclose(m["age"], phen["age"])
    raw = pd.read_csv(tmp_path / "data" / "manifest.csv")  # plain pandas reads it too
    assert len(raw) == 12 and "qc_reason" in raw.columns
    for sid, x in zip(m["sample_id"], series, strict=True):
        np.testing.assert_allclose(ds.load(sid), x.astype(np.float32))
    assert ds.atlas == load_atlas("schaefer100_7")


def test_curate_is_idempotent_and_deterministic(tmp_path: Path) -> None:
    series, phen = _cohort()
    curate(tmp_path / "a", series, dataset="toy", phenotypes=phen)
    before = _digest(tmp_path / "a")
    curate(tmp_path / "a", series, dataset="toy", phenotypes=phen)
    assert _digest(tmp_path / "a") == before  # same bytes, files not even rewritten
    curate(tmp_path / "b", series, dataset="toy", phenotypes=phen)
    same = {k: v[0] for k, v in _digest(tmp_path / "b").items()}
    assert same == {k: v[0] for k, v in before.items()}


def test_changed_inputs_need_overwrite(tmp_path: Path) -> None:
    series, phen = _cohort()
    root = tmp_path / "data"
    first = curate(root, series, dataset="toy", phenotypes=phen).manifest["store_file"].iloc[0]
    series2 = [s * 2 for s in series]
    with pytest.raises(ValueError, match="'toy' is already curated .* from different inputs; pass overwrite=True"):
        curate(root, series2, dataset="toy", phenotypes=phen)
    ds = curate(root, series2, dataset="toy", phenotypes=phen, overwrite=True)
    second = ds.manifest["store_file"].iloc[0]
    assert second != first and not (root / first).exists() and (root / second).exists()
    np.testing.assert_allclose(ds.load(ds.sample_ids[0]), (series[0] * 2).astype(np.float32))
    assert len(list((root / "timeseries").iterdir())) == 1


def test_append_dataset_leaves_others_untouched(tmp_path: Path) -> None:
    root = tmp_path / "data"
    s1, p1 = _cohort(seed=1)
    s2, p2 = _cohort(n=6, seed=2)
    curate(root, s1, dataset="cohort_a", phenotypes=p1)
    store_a = next((root / "timeseries").glob("cohort_a-*.h5"))
    before = _digest(root)[f"timeseries/{store_a.name}"]
    ds = curate(root, s2, dataset="cohort_b", phenotypes=p2)
    assert _digest(root)[f"timeseries/{store_a.name}"] == before
    assert ds.datasets == ["cohort_a", "cohort_b"] and len(ds) == 18
    # replacing cohort_a keeps the manifest order and cohort_b's store
    store_b = _digest(root)[next(k for k in _digest(root) if "cohort_b-" in k)]
    ds = curate(root, [s + 1 for s in s1], dataset="cohort_a", phenotypes=p1, overwrite=True)
    assert ds.datasets == ["cohort_a", "cohort_b"]
    assert store_b in _digest(root).values()
    # sample ids may not collide across datasets
    clash = p2.assign(sample_id=[f"cohort_a_{p}_{s}" for p, s in zip(p2.participant, p2.session, strict=True)])
    with pytest.raises(ValueError, match=r"already belong to other datasets: \['cohort_a_000_ses1'"):
        curate(root, s2, dataset="cohort_c", phenotypes=clash)


def test_one_atlas_per_folder(tmp_path: Path) -> None:
    series, phen = _cohort()
    curate(tmp_path, series, dataset="toy", phenotypes=phen)
    aal_series, aal_phen = _cohort(n=3, n_rois=94)
    with pytest.raises(ValueError, match=r"holds data on another atlas \(100 ROIs.*'aal2_94' \(94 ROIs\)"):
        curate(tmp_path, aal_series, dataset="real", atlas="aal2_94", phenotypes=aal_phen)


def test_interrupted_curation_keeps_previous_state(tmp_path: Path, monkeypatch) -> None:
    series, phen = _cohort()
    root = tmp_path / "data"
    curate(root, series, dataset="toy", phenotypes=phen)
    before = _digest(root)
    calls = {"n": 0}
    original = curation._check_scan

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(curation, "_check_scan", failing)
    with pytest.raises(KeyboardInterrupt):
        curate(root, [s + 1 for s in series], dataset="toy", phenotypes=phen, overwrite=True)
    assert _digest(root) == before  # no partial store, no temporary files, manifest unchanged


def test_default_sample_ids_and_participants(tmp_path: Path) -> None:
    series, phen = _cohort(n=6)
    ds = curate(tmp_path / "a", series, dataset="x", phenotypes=phen.drop(columns=["session"]))
    assert ds.all_rows["sample_id"].tolist() == [f"x_{i:05d}" for i in range(6)]  # participants repeat
    ds = curate(tmp_path / "b", series, dataset="x")  # no phenotypes at all
    rows = ds.all_rows
    assert rows["participant"].tolist() == rows["sample_id"].tolist()
    assert (rows["site"] == "x").all() and rows["diagnosis"].isna().all()
    ds = curate(tmp_path / "c", np.stack([s[:60] for s in series]), dataset="x", tr=0.8)
    assert len(ds) == 6 and (ds.manifest["tr"] == 0.8).all()


def test_curate_input_errors(tmp_path: Path) -> None:
    series, phen = _cohort(n=3)
    with pytest.raises(ValueError, match="dataset must be a name of letters"):
        curate(tmp_path, series, dataset="my data", phenotypes=phen)
    with pytest.raises(ValueError, match="expected one phenotype row per scan, got 2 rows for 3 scans"):
        curate(tmp_path, series, dataset="x", phenotypes=phen.iloc[:2])
    with pytest.raises(TypeError, match="expected scans as a list of"):
        curate(tmp_path, "scans.csv", dataset="x")
    with pytest.raises(ValueError, match=r"phenotype columns \['qc_pass'\] are written by curate"):
        curate(tmp_path, series, dataset="x", phenotypes=phen.assign(qc_pass=True))
    with pytest.raises(ValueError, match=r"dataset='x' but the phenotype table names other datasets \['y'\]"):
        curate(tmp_path, series, dataset="x", phenotypes=phen.assign(dataset="y"))
    with pytest.raises(ValueError, match=r"sample ids must be unique, repeated: \['a'\]"):
        curate(tmp_path, series, dataset="x", phenotypes=phen.assign(sample_id=["a", "a", "b"]))
    with pytest.raises(ValueError, match="phenotype column 'age' must be numeric"):
        curate(tmp_path, series, dataset="x", phenotypes=phen.assign(age="old"))
    with pytest.raises(ValueError, match="min_timepoints must be an integer >= 2"):
        curate(tmp_path, series, dataset="x", phenotypes=phen, min_timepoints=1)
    with pytest.raises(ValueError, match="n_jobs must be a positive integer or -1"):
        curate(tmp_path, series, dataset="x", phenotypes=phen, n_jobs=0)
    with pytest.raises(ValueError, match="reader_kwargs only applies to a file table"):
        curate(tmp_path, series, dataset="x", phenotypes=phen, reader_kwargs={"key": "tc"})
    with pytest.raises(TypeError, match="expected an Atlas or an atlas name, got int"):
        curate(tmp_path, series, dataset="x", phenotypes=phen, atlas=100)  # type: ignore[arg-type]
    assert not (tmp_path / "manifest.csv").exists()


# ---------------------------------------------------------------------------------- file tables


def _file_table(folder: Path) -> tuple[pd.DataFrame, list[np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(70, R)) for _ in range(6)]
    paths = []
    for i, x in enumerate(xs):
        if i % 3 == 0:
            p = folder / f"sub-{i}.npy"
            np.save(p, x.T)  # stored ROIs x time
        elif i % 3 == 1:
            p = folder / f"sub-{i}.npz"
            np.savez(p, ts=x.T)
        else:
            p = folder / f"sub-{i}.npy"
            np.save(p, x.T[:90])  # wrong ROI count
        paths.append(str(p))
    broken = folder / "sub-6.npy"
    broken.write_bytes(b"not numpy")
    paths += [str(broken), str(folder / "sub-7.npy")]  # corrupt and missing
    table = pd.DataFrame({"path": paths, "participant": [f"sub-{i}" for i in range(8)], "age": 20.0})
    return table, xs


def test_file_table_serial_and_parallel(tmp_path: Path) -> None:
    table, xs = _file_table(tmp_path / "raw")
    raw_before = _digest(tmp_path / "raw")
    kwargs = {"orientation": "rois_x_timepoints"}
    serial = curate(tmp_path / "s", table, dataset="files", reader_kwargs=kwargs)
    parallel = curate(tmp_path / "p", table, dataset="files", reader_kwargs=kwargs, n_jobs=2)
    assert _digest(tmp_path / "raw") == raw_before  # raw inputs are never modified
    pd.testing.assert_frame_equal(serial.all_rows, parallel.all_rows)
    rows = serial.all_rows.set_index("participant")
    assert rows["qc_pass"].tolist() == [True, True, False, True, True, False, False, False]
    assert rows.loc["sub-2", "qc_reason"] == "wrong_roi_count: expected 100 ROIs, got 90"
    assert rows.loc["sub-6", "qc_reason"].startswith("unreadable: ValueError")
    assert rows.loc["sub-7", "qc_reason"].startswith("unreadable: FileNotFoundError")
    assert rows.loc["sub-0", "source"] == table["path"].iloc[0]
    np.testing.assert_allclose(serial.load("files_sub-4"), xs[4].astype(np.float32))
    with pytest.raises(ValueError, match="reader_kwargs must not set n_rois"):
        curate(tmp_path / "s", table, dataset="files", reader_kwargs={"n_rois": 100})
    with pytest.raises(ValueError, match="carries its phenotype columns itself"):
        curate(tmp_path / "s", table, dataset="files", phenotypes=table)
    with pytest.raises(ValueError, match=r"expected a file table with a 'path' column, got columns \['file'\]"):
        curate(tmp_path / "s", pd.DataFrame({"file": ["a"]}), dataset="files")


# ----------------------------------------------------------------------- CuratedDataset views


@pytest.fixture
def two_datasets(tmp_path: Path) -> CuratedDataset:
    root = tmp_path / "data"
    s1, p1 = _cohort(seed=1)
    s1[0] = s1[0][:20]
    curate(root, s1, dataset="pre", phenotypes=p1)
    s2, p2 = _cohort(n=6, seed=2)
    p2.loc[0, "diagnosis"] = None
    curate(root, s2, dataset="dx", phenotypes=p2)
    write_tasks(root, {"asd": {"datasets": ["dx"], "label_column": "diagnosis", "positive": "patient",
                               "negative": "control", "kind": "internal"},
                       "any": {"datasets": ["dx"], "label": "diagnosis"}},
                pretraining_datasets=["pre"])  # fmt: skip
    write_ground_truth(root, {"asd": {"affected_rois": [1, 2], "effect_size": np.float32(0.5)}})
    return CuratedDataset(root)


def test_views_and_side_files(two_datasets: CuratedDataset) -> None:
    ds = two_datasets
    assert ds.pretraining_datasets == ["pre"]
    assert ds.tasks["asd"]["positive"] == "patient"
    assert ds.ground_truth == {"asd": {"affected_rois": [1, 2], "effect_size": 0.5}}
    pre = ds.select(datasets="pre")
    assert len(pre) == 11 and pre.rejected.empty and pre.datasets == ["pre"]
    assert len(ds.select("pre", qc=False).rejected) == 1
    task = ds.select(task="asd")
    assert task.datasets == ["dx"] and len(task) == 5  # the unlabelled scan is dropped
    assert len(ds.select(task="any")) == 5
    ids = ds.sample_ids[::-1][:3]
    assert ds.select(sample_ids=ids).sample_ids == ids
    assert set(ds.select(sites=["A"]).manifest["site"]) == {"A"}
    np.testing.assert_array_equal(task.load(task.sample_ids[0]), ds.load(task.sample_ids[0]))
    assert len(task.load_many()) == 5
    assert "5 accepted" in repr(task)
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['nope'\]; available: \['pre', 'dx'\]"):
        ds.select(datasets=["nope"])
    with pytest.raises(ValueError, match=r"unknown task 'adhd'; available: \['any', 'asd'\]"):
        ds.select(task="adhd")
    with pytest.raises(KeyError, match="sample ids not in this view"):
        pre.select(sample_ids=["dx_000_ses1"])
    with pytest.raises(KeyError, match="'nope' is not in this curated dataset"):
        ds.load("nope")
    # writing the same tasks again does not touch the file
    path = ds.root / "tasks.json"
    mtime = path.stat().st_mtime_ns
    write_tasks(ds.root, ds.tasks, pretraining_datasets=["pre"])
    assert path.stat().st_mtime_ns == mtime and json.loads(path.read_text())["pretraining_datasets"] == ["pre"]


def test_defaults_without_side_files(tmp_path: Path) -> None:
    series, phen = _cohort(n=3)
    ds = curate(tmp_path, series, dataset="x", phenotypes=phen)
    assert ds.tasks == {} and ds.ground_truth == {} and ds.pretraining_datasets == ["x"]
    with pytest.raises(FileNotFoundError, match="no curated dataset at .*missing manifest.csv"):
        CuratedDataset(tmp_path / "empty")


def test_torch_dataset_and_summary(two_datasets: CuratedDataset) -> None:
    ds = two_datasets.select(datasets="dx")
    td = ds.torch_dataset(metadata=("sample_id", "diagnosis"))
    assert len(td) == 6
    item = td[0]
    assert tuple(item["x"].shape) == (ds.manifest["n_timepoints"].iloc[0], R)
    assert item["sample_id"] == ds.sample_ids[0] and item["diagnosis"] == ""
    assert set(two_datasets.torch_dataset()[0]) == {"x", "index"}
    with pytest.raises(ValueError, match=r"unknown manifest column\(s\) \['label'\]"):
        ds.torch_dataset(metadata=["label"])
    summary = two_datasets.summary()
    assert summary.loc[("pre", "A"), "n_rejected"] == 1 and summary["n_scans"].sum() == 17
    assert summary.loc[("dx", "A"), "dx=patient"] + summary.loc[("dx", "A"), "dx=control"] <= 2
    by_ds = two_datasets.summary(by="dataset")
    assert by_ds.loc["dx", "n_participants"] == 3 and by_ds.loc["pre", "tr"] == 2.0
    assert by_ds.loc["pre", "timepoints_min"] >= 60


def test_read_manifest_and_drop_datasets(two_datasets: CuratedDataset, tmp_path: Path) -> None:
    root = two_datasets.root
    m = read_manifest(root / "manifest.csv")
    assert m["n_rois"].dtype == "Int64" and m["qc_pass"].dtype == bool
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"sample_id": ["a"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="not a bmlib manifest, missing columns"):
        read_manifest(bad)
    drop_datasets(root, "pre")
    ds = CuratedDataset(root)
    assert ds.datasets == ["dx"] and not list((root / "timeseries").glob("pre-*.h5"))
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['pre'\]"):
        drop_datasets(root, ["pre"])
    drop_datasets(root, ["dx"])
    assert not (root / "manifest.csv").exists() and not (root / "atlas.csv").exists()


def test_user_atlas(tmp_path: Path) -> None:
    atlas = Atlas("tiny", ("a", "b", "c"), ("n1", "n1", "n2"), ("L", "R", "L"), np.eye(3))
    series = [np.random.default_rng(i).normal(size=(55, 3)) for i in range(2)]
    ds = curate(tmp_path, series, dataset="t", atlas=atlas)
    assert ds.atlas == atlas and (ds.manifest["atlas"] == "tiny").all()
