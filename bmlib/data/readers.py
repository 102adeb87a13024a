"""Readers for the ROI time series and phenotype tables that users actually have.

Time series (:func:`read_timeseries`, dispatch on the file suffix):

==========================  ==============================================================
``.1D`` / ``.txt``          whitespace-separated text (ABIDE Preprocessed ``rois_*.1D``);
                            lines starting with ``#`` are comments, the first one is read
                            as the ROI names when it has one name per column
``.tsv`` / ``.csv``         a table with a header row (fMRIPrep / XCP-D / nilearn style);
                            ``n/a`` is missing; non-numeric and ``Unnamed: *`` (saved
                            pandas index) columns are dropped
``.npy`` / ``.npz``         a 2D array; ``key`` picks the array of an ``.npz``
``.mat``                    MATLAB (``scipy.io.loadmat``; v7.3/HDF5 files through h5py);
                            ``key`` picks the variable
``.nii`` / ``.nii.gz``      4D BOLD, reduced to ROI means with nilearn's
                            ``NiftiLabelsMasker`` and ``atlas_img``
==========================  ==============================================================

Text formats may be gzipped (``.1D.gz``, ``.tsv.gz``, ...). Every reader returns
``(n_timepoints, n_rois)``; files stored the other way round are read with
``orientation="rois_x_timepoints"``: the orientation is never guessed.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "PHENOTYPE_ALIASES",
    "PHENOTYPE_COLUMNS",
    "SUPPORTED_SUFFIXES",
    "read_phenotypes",
    "read_timeseries",
]

Orientation = Literal["timepoints_x_rois", "rois_x_timepoints"]
_ORIENTATIONS = ("timepoints_x_rois", "rois_x_timepoints")

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".1D", ".txt", ".tsv", ".csv", ".npy", ".npz", ".mat", ".nii", ".nii.gz",
)  # fmt: skip

#: Standard phenotype columns, in manifest order.
PHENOTYPE_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "participant",
    "dataset",
    "site",
    "session",
    "diagnosis",
    "age",
    "sex",
    "tr",
)

#: Column names (compared case-insensitively, spaces and dashes read as underscores) that
#: :func:`read_phenotypes` renames to the standard columns. BIDS ``participants.tsv``,
#: ABIDE (``SUB_ID``, ``SITE_ID``, ``DX_GROUP``, ``AGE_AT_SCAN``, ``FILE_ID``) and ADHD-200
#: (``ScanDir ID``) spellings are covered.
PHENOTYPE_ALIASES: dict[str, str] = {
    **dict.fromkeys(["sample_id", "scan_id", "file_id", "sample"], "sample_id"),
    **dict.fromkeys(
        ["participant", "participant_id", "sub", "subject", "subject_id", "sub_id", "subid",
         "scandir_id"],
        "participant",
    ),
    **dict.fromkeys(["dataset", "study", "cohort"], "dataset"),
    **dict.fromkeys(["site", "site_id", "site_name", "center", "centre"], "site"),
    **dict.fromkeys(["session", "session_id", "ses", "visit"], "session"),
    **dict.fromkeys(["diagnosis", "dx", "dx_group", "diagnosis_group", "group"], "diagnosis"),
    **dict.fromkeys(["age", "age_at_scan", "age_years"], "age"),
    **dict.fromkeys(["sex", "gender"], "sex"),
    **dict.fromkeys(["tr", "repetition_time", "repetitiontime", "t_r"], "tr"),
}  # fmt: skip

_STRING_COLUMNS = ("sample_id", "participant", "dataset", "site", "session", "diagnosis", "sex")
_NUMERIC_COLUMNS = ("age", "tr")
_NA_VALUES = ["n/a", "N/A", "NA", "NaN", "nan", "", "-9999", "-9999.0"]
_SEX_VALUES = {"m": "M", "male": "M", "f": "F", "female": "F"}


def _suffix(path: Path) -> str:
    """The format suffix, with a trailing ``.gz`` removed (``.nii.gz`` kept whole)."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    return ".1D" if suffix == ".1d" else suffix


def read_timeseries(
    path: str | os.PathLike[str],
    *,
    orientation: Orientation = "timepoints_x_rois",
    n_rois: int | None = None,
    key: str | None = None,
    atlas_img: Any = None,
    confounds: Any = None,
    header: bool = True,
    drop_columns: Sequence[str] = (),
    masker_kwargs: Mapping[str, Any] | None = None,
    dtype: type | np.dtype = np.float64,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[str] | None]:
    """Read one scan's ROI time series.

    Parameters
    ----------
    path : str or PathLike
        A file with one of the suffixes in :data:`SUPPORTED_SUFFIXES` (see the module doc).
    orientation : {"timepoints_x_rois", "rois_x_timepoints"}, default "timepoints_x_rois"
        How the array is stored in the file. ``"rois_x_timepoints"`` is transposed on read.
        Does not apply to NIfTI input (the masker always returns time x ROIs).
    n_rois : int, optional
        Expected number of ROIs. A file with another count is refused with a ``ValueError``
        naming the file and both counts.
    key : str, optional
        Array / variable name inside ``.npz`` and ``.mat`` files; required when the file holds
        more than one 2D array.
    atlas_img : str, PathLike or Nifti1Image, optional
        Label image for NIfTI input (required there, refused elsewhere).
    confounds : array_like (T, K), DataFrame or path, optional
        Regressors removed from the series: passed to ``NiftiLabelsMasker.transform`` for
        NIfTI input, otherwise applied with ``nilearn.signal.clean`` (no detrending,
        standardisation or filtering). Must not contain NaN (fill fMRIPrep's first-row ``n/a``).
    header : bool, default True
        Whether a ``.tsv``/``.csv`` file starts with a header row.
    drop_columns : sequence of str, default ()
        Extra ``.tsv``/``.csv`` columns to drop (e.g. a numeric ``"time"`` column).
    masker_kwargs : mapping, optional
        Extra ``NiftiLabelsMasker`` arguments (``standardize`` defaults to False, so raw ROI
        means are returned; ``t_r``, ``detrend``, ``low_pass``... as in nilearn).
    dtype : numpy dtype, default float64
        Output dtype.
    return_labels : bool, default False
        Also return the ROI names found in the file (``.1D`` header, table header), or None.

    Returns
    -------
    numpy.ndarray, shape (n_timepoints, n_rois)
        Or ``(array, labels)`` when ``return_labels`` is True.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.npy"
    >>> np.save(p, np.arange(12.0).reshape(3, 4))
    >>> read_timeseries(p, n_rois=4).shape
    (3, 4)
    >>> read_timeseries(p, orientation="rois_x_timepoints").shape
    (4, 3)
    """
    path = Path(path)
    if orientation not in _ORIENTATIONS:
        raise ValueError(f"orientation must be one of {_ORIENTATIONS}, got {orientation!r}")
    if n_rois is not None and (not isinstance(n_rois, int | np.integer) or n_rois < 1):
        raise ValueError(f"n_rois must be a positive integer or None, got {n_rois!r}")
    if not path.is_file():
        raise FileNotFoundError(f"time-series file not found: {path}")
    suffix = _suffix(path)
    is_nifti = suffix in (".nii", ".nii.gz")
    if is_nifti and atlas_img is None:
        raise ValueError(f"{path}: NIfTI input needs atlas_img (a label image), got None")
    if not is_nifti and atlas_img is not None:
        raise ValueError(f"{path}: atlas_img only applies to NIfTI input, got a {suffix} file")
    if is_nifti and orientation != "timepoints_x_rois":
        raise ValueError(
            f"{path}: orientation does not apply to NIfTI input (the masker returns "
            f"timepoints x ROIs), got {orientation!r}"
        )
    if key is not None and suffix not in (".npz", ".mat"):
        raise ValueError(f"{path}: key only applies to .npz and .mat files, got a {suffix} file")

    labels: list[str] | None = None
    if suffix in (".1D", ".txt"):
        arr, labels = _read_text(path)
    elif suffix in (".tsv", ".csv"):
        arr, labels = _read_table(path, sep="\t" if suffix == ".tsv" else ",", header=header,
                                  drop_columns=drop_columns)  # fmt: skip
    elif suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arr = _pick_key(path, {k: npz[k] for k in npz.files}, key)
    elif suffix == ".mat":
        arr = _read_mat(path, key)
    elif is_nifti:
        arr = _read_nifti(path, atlas_img, confounds, masker_kwargs)
    else:
        raise ValueError(
            f"{path}: unsupported file type {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(
            f"{path}: expected a 2D array ({orientation.replace('_x_', ' x ')}), "
            f"got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{path}: expected real numeric values, got dtype {arr.dtype}")
    if orientation == "rois_x_timepoints":
        arr = arr.T
    if n_rois is not None and arr.shape[1] != n_rois:
        hint = ""
        if arr.shape[0] == n_rois:
            other = _ORIENTATIONS[1 - _ORIENTATIONS.index(orientation)]
            hint = f"; the other axis has {n_rois}: is it stored {other!r}?"
        raise ValueError(
            f"{path}: expected {n_rois} ROIs, got {arr.shape[1]} "
            f"(array of shape {arr.shape} read as {orientation}){hint}"
        )
    if confounds is not None and not is_nifti:
        arr = _regress_confounds(path, arr, confounds)
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if labels is not None and len(labels) != arr.shape[1]:
        labels = None
    return (arr, labels) if return_labels else arr


def _read_text(path: Path) -> tuple[np.ndarray, list[str] | None]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    labels = None
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                tokens = [t.lstrip("#") for t in line.lstrip("#").split()]
                labels = [t for t in tokens if t] or None
                break
            if line.strip():
                break
    try:
        arr = np.loadtxt(path, comments="#", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: could not parse whitespace-separated numbers ({err})") from err
    return arr, labels


def _read_table(
    path: Path, *, sep: str, header: bool, drop_columns: Sequence[str]
) -> tuple[np.ndarray, list[str] | None]:
    df = pd.read_csv(path, sep=sep, header=0 if header else None, na_values=["n/a", "N/A"])
    if not header:
        return df.to_numpy(dtype=np.float64), None
    missing = [c for c in drop_columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: drop_columns {missing} not in the header {list(df.columns)}")
    drop = set(drop_columns) | {c for c in df.columns if str(c).startswith("Unnamed:")}
    drop |= {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])}
    kept = [c for c in df.columns if c not in drop]
    if not kept:
        raise ValueError(f"{path}: no numeric ROI columns found (columns: {list(df.columns)})")
    return df[kept].to_numpy(dtype=np.float64), [str(c) for c in kept]


def _pick_key(path: Path, arrays: Mapping[str, Any], key: str | None) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise ValueError(f"{path}: no array named {key!r}; available: {sorted(arrays)}")
        return np.asarray(arrays[key])
    candidates = [k for k, v in arrays.items() if getattr(v, "ndim", 0) == 2]
    if len(candidates) != 1:
        raise ValueError(
            f"{path}: pass key= to choose the time series; 2D arrays found: {sorted(candidates)}"
            f" (all entries: {sorted(arrays)})"
        )
    return np.asarray(arrays[candidates[0]])


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    import scipy.io

    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 = HDF5; arrays come back transposed
        import h5py

        with h5py.File(path, "r") as fh:
            arrays = {k: fh[k][()].T for k in fh if isinstance(fh[k], h5py.Dataset)}
        return _pick_key(path, arrays, key)
    return _pick_key(path, {k: v for k, v in content.items() if not k.startswith("__")}, key)


def _read_nifti(
    path: Path, atlas_img: Any, confounds: Any, masker_kwargs: Mapping[str, Any] | None
) -> np.ndarray:
    from nilearn.maskers import NiftiLabelsMasker

    kwargs = {"standardize": _no_standardize(), **(masker_kwargs or {})}
    masker = NiftiLabelsMasker(labels_img=atlas_img, **kwargs)
    return masker.fit_transform(str(path), confounds=confounds)


def _no_standardize() -> bool | None:
    """nilearn's "no standardisation" value: None from 0.14 on (False is deprecated there)."""
    import nilearn

    major, minor = (int(v) for v in re.findall(r"\d+", nilearn.__version__)[:2])
    return None if (major, minor) >= (0, 14) else False


def _regress_confounds(path: Path, arr: np.ndarray, confounds: Any) -> np.ndarray:
    from nilearn.signal import clean

    if isinstance(confounds, str | os.PathLike):
        sep = "\t" if _suffix(Path(confounds)) == ".tsv" else ","
        conf = pd.read_csv(confounds, sep=sep, na_values=["n/a"]).to_numpy(float)
    else:
        conf = np.asarray(confounds, dtype=np.float64)
    if conf.ndim == 1:
        conf = conf[:, None]
    if conf.ndim != 2 or conf.shape[0] != arr.shape[0]:
        raise ValueError(
            f"{path}: expected confounds of shape ({arr.shape[0]}, n_confounds), got {conf.shape}"
        )
    if not np.isfinite(conf).all():
        raise ValueError(f"{path}: confounds contain NaN/Inf; fill them (e.g. first-row n/a) first")
    return clean(arr.astype(np.float64), detrend=False, standardize=_no_standardize(), confounds=conf,
                 filter=False, standardize_confounds=True, t_r=None)  # fmt: skip


def _normalise_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def read_phenotypes(
    path: str | os.PathLike[str],
    *,
    rename: Mapping[str, str] | None = None,
    dataset: str | None = None,
    tr: float | None = None,
) -> pd.DataFrame:
    """Read a BIDS ``participants.tsv`` or a phenotype CSV into the standard columns.

    Column names are matched case-insensitively (spaces and dashes as underscores) against
    :data:`PHENOTYPE_ALIASES`: e.g. ``participant_id``/``sub``/``SUB_ID`` -> ``participant``,
    ``DX_GROUP``/``dx``/``group`` -> ``diagnosis``, ``SITE_ID`` -> ``site``, ``AGE_AT_SCAN``
    -> ``age``, ``gender`` -> ``sex``, ``RepetitionTime`` -> ``tr``, ``FILE_ID`` -> ``sample_id``.
    Other columns are kept unchanged.

    Values: ``n/a``, ``NA``, empty and ``-9999`` (ABIDE) are missing. Identifier-like columns
    (participant, site, session, diagnosis, sex, ...) are read as strings, so ``"0050002"``
    keeps its leading zeros and a numeric diagnosis code such as ABIDE's ``1``/``2`` becomes
    ``"1"``/``"2"``. ``age`` and ``tr`` are floats. Sex spellings m/male/f/female become
    ``"M"``/``"F"``; numeric sex codes are left as they are (their meaning is dataset-specific).
    Other columns become numeric when every value parses as a number.

    Parameters
    ----------
    path : str or PathLike
        ``.tsv`` (tab-separated) or ``.csv`` file with a header row.
    rename : mapping, optional
        Extra ``{source column: standard column}`` renames, applied before the aliases.
    dataset : str, optional
        Fill (or check) the ``dataset`` column with this name.
    tr : float, optional
        Fill missing ``tr`` values with this repetition time (seconds).

    Returns
    -------
    pandas.DataFrame
        One row per line of the file; the standard columns present come first, in
        :data:`PHENOTYPE_COLUMNS` order. A ``participant`` column is required.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"phenotype file not found: {path}")
    sep = "\t" if _suffix(path) == ".tsv" else ","
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=_NA_VALUES)
    df = df.rename(columns=dict(rename or {}))
    mapping: dict[str, str] = {}
    for col in df.columns:
        target = col if col in PHENOTYPE_COLUMNS else PHENOTYPE_ALIASES.get(_normalise_name(col))
        if target is None:
            continue
        if target in mapping.values():
            first = next(k for k, v in mapping.items() if v == target)
            raise ValueError(
                f"{path}: columns {first!r} and {col!r} both map to {target!r}; "
                f"drop one or pass rename= to disambiguate"
            )
        mapping[col] = target
    df = df.rename(columns=mapping)
    if "participant" not in df.columns:
        raise ValueError(
            f"{path}: expected a participant column (participant_id, sub, subject, SUB_ID, ...), "
            f"got {list(df.columns)}"
        )
    if dataset is not None:
        if "dataset" in df.columns and df["dataset"].notna().any():
            found = sorted(set(df["dataset"].dropna().to_numpy()) - {dataset})
            if found:
                raise ValueError(f"{path}: dataset={dataset!r} but the file names {found}")
        df["dataset"] = dataset
    for col in _NUMERIC_COLUMNS:
        if col in df.columns:
            values = pd.to_numeric(df[col], errors="coerce")
            bad = df[col].notna() & values.isna()
            if bad.any():
                raise ValueError(
                    f"{path}: column {col!r} must be numeric, got {df.loc[bad, col].iloc[0]!r}"
                )
            df[col] = values.astype(np.float64)
    if tr is not None:
        df["tr"] = df["tr"].fillna(float(tr)) if "tr" in df.columns else float(tr)
    if "sex" in df.columns:
        df["sex"] = df["sex"].map(
            lambda v: _SEX_VALUES.get(str(v).strip().lower(), v) if isinstance(v, str) else v
        )
    for col in df.columns:
        if col in _STRING_COLUMNS or col in _NUMERIC_COLUMNS:
            continue
        numeric = pd.to_numeric(df[col], errors="coerce")
        if (numeric.notna() | df[col].isna()).all():
            df[col] = numeric
    for col in _STRING_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype("string")
    first = [c for c in PHENOTYPE_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]].reset_index(drop=True)
