"""Tests for bmlib.data.store: atomic deterministic writes, lazy reads, torch dataset."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from bmlib.data.store import StoreWriter, TimeSeriesDataset, TimeSeriesStore, check_sample_id


def _scans(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"s{i}": rng.normal(size=(20 + 5 * i, 4)) for i in range(4)}


def _write(path: Path, scans: dict[str, np.ndarray], **kw) -> Path:
    with StoreWriter(path, attrs={"dataset": "demo", "n_rois": 4}, **kw) as w:
        for k, v in scans.items():
            w.add(k, v)
    return path


def test_roundtrip_lazy_reads(tmp_path: Path) -> None:
    scans = _scans()
    path = _write(tmp_path / "a.h5", scans)
    store = TimeSeriesStore(path)
    assert store._file is None  # nothing opened until asked
    assert len(store) == 4 and sorted(store) == sorted(scans)
    assert "s1" in store and "nope" not in store and 3 not in store
    assert store.shape("s2") == (30, 4)
    x = store["s2"]
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, scans["s2"], rtol=1e-6)
    attrs = store.attrs
    assert attrs["dataset"] == "demo" and attrs["n_rois"] == 4 and attrs["n_scans"] == 4
    with pytest.raises(KeyError, match=r"sample 'nope' is not in .*a\.h5"):
        store["nope"]
    store.close()
    assert store._file is None
    np.testing.assert_allclose(store["s0"], scans["s0"], rtol=1e-6)  # reopens


def test_writes_are_deterministic(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.h5", _scans())
    b = _write(tmp_path / "b.h5", _scans())
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    c = _write(tmp_path / "c.h5", _scans(seed=1))
    assert a.read_bytes() != c.read_bytes()


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.h5", _scans())
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(path) as w:
            w.add("x", np.zeros((3, 4)))
            raise RuntimeError("boom")
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]  # no temporary left
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(tmp_path / "new.h5") as w:
            raise RuntimeError("boom")
    assert not (tmp_path / "new.h5").exists()


def test_writer_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compression must be None, 'gzip' or 'lzf'"):
        StoreWriter(tmp_path / "a.h5", compression="zstd")
    w = StoreWriter(tmp_path / "a.h5")
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        w.add("a", np.zeros((2, 2)))
    with StoreWriter(tmp_path / "a.h5", compression="gzip") as w:
        w.add("a", np.zeros((2, 2)))
        with pytest.raises(ValueError, match="'a' written twice"):
            w.add("a", np.zeros((2, 2)))
        with pytest.raises(ValueError, match=r"expected 2D array \(n_timepoints, n_rois\), got shape \(3,\)"):
            w.add("b", np.zeros(3))
        with pytest.raises(ValueError, match="must not contain '/'"):
            w.add("sub/1", np.zeros((2, 2)))
    assert TimeSeriesStore(tmp_path / "a.h5")["a"].shape == (2, 2)


def test_check_sample_id() -> None:
    assert check_sample_id("abide_0050002") == "abide_0050002"
    for bad in ("", " ", ".", None, 3):
        with pytest.raises(ValueError, match="expected a non-empty string sample id"):
            check_sample_id(bad)


def test_not_a_store(tmp_path: Path) -> None:
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a bmlib store"):
        len(TimeSeriesStore(p))
    with pytest.raises(FileNotFoundError, match="time-series store not found"):
        TimeSeriesStore(tmp_path / "missing.h5")


def test_store_pickles_without_handle(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.h5", _scans())
    store = TimeSeriesStore(path)
    _ = store["s0"]
    clone = pickle.loads(pickle.dumps(store))
    assert clone._file is None
    np.testing.assert_array_equal(clone["s3"], store["s3"])


def _dataset(tmp_path: Path, metadata: pd.DataFrame | None = None) -> TimeSeriesDataset:
    scans = _scans()
    _write(tmp_path / "timeseries" / "a.h5", dict(list(scans.items())[:2]))
    _write(tmp_path / "timeseries" / "b.h5", dict(list(scans.items())[2:]))
    files = ["timeseries/a.h5"] * 2 + ["timeseries/b.h5"] * 2
    return TimeSeriesDataset(tmp_path, list(scans), files, metadata=metadata)


def test_torch_dataset_items(tmp_path: Path) -> None:
    meta = pd.DataFrame(
        {
            "sample_id": pd.array(["s0", "s1", "s2", "s3"], dtype="string"),
            "diagnosis": pd.array(["asd", None, "td", "td"], dtype="string"),
            "age": [10.0, np.nan, 12.5, 9.0],
            "n_timepoints": pd.array([20, 25, 30, 35], dtype="Int64"),
            "qc_pass": [True] * 4,
        }
    )
    ds = _dataset(tmp_path, meta)
    assert len(ds) == 4
    item = ds[2]
    assert item["x"].dtype == torch.float32 and tuple(item["x"].shape) == (30, 4)
    assert item["index"] == 2 and item["sample_id"] == "s2" and item["diagnosis"] == "td"
    assert item["n_timepoints"] == 30 and isinstance(item["n_timepoints"], int)
    assert ds[1]["diagnosis"] == "" and np.isnan(ds[1]["age"])
    assert ds[-1]["index"] == 3 and ds[-1]["sample_id"] == "s3"
    with pytest.raises(IndexError, match="index 4 out of range for 4 scans"):
        ds[4]


def test_torch_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected one store file per sample id, got 1 for 2 ids"):
        TimeSeriesDataset(tmp_path, ["a", "b"], ["f.h5"])
    with pytest.raises(ValueError, match="expected 2 metadata rows, got 1"):
        TimeSeriesDataset(tmp_path, ["a", "b"], ["f.h5"] * 2, metadata=pd.DataFrame({"m": [1]}))
    with pytest.raises(ValueError, match=r"metadata columns \['x'\] clash"):
        TimeSeriesDataset(tmp_path, ["a"], ["f.h5"], metadata=pd.DataFrame({"x": [1]}))


def test_dataloader_workers_open_their_own_handles(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    expected = [ds[i]["x"] for i in range(len(ds))]  # parent opened its handles first
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list,
                        multiprocessing_context="fork")  # fmt: skip
    got = [item for batch in loader for item in batch]
    assert [g["index"] for g in got] == [0, 1, 2, 3]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g["x"], e)
