"""Curated datasets on disk: a manifest table, lazy HDF5 time-series stores and QC.

A curated dataset is a folder::

    <root>/
      manifest.csv                      one row per scan, accepted AND rejected
      atlas.csv                         the atlas of every scan in this folder
      timeseries/<dataset>-<key>.h5     one store per source dataset (see bmlib.data.store)
      tasks.json, ground_truth.json     optional (labelled tasks, planted effects)
      .manifest.lock                    serialises concurrent manifest updates (POSIX)

Manifest columns (:data:`MANIFEST_COLUMNS`): ``sample_id, participant, dataset, site, session,
diagnosis, age, sex, tr, n_timepoints, n_rois, atlas, qc_pass, qc_reason, source,
store_file``, then any extra phenotype columns. ``store_file`` is the store of the scan's
dataset (relative to the root); only scans with ``qc_pass`` are in it.

Quality control (:func:`qc_check`) rejects a scan that cannot be read, is not 2D, has the
wrong number of ROIs, has fewer than ``min_timepoints`` rows, holds NaN/Inf, or has ROIs whose
signal is constant. Rejected scans stay in the manifest with ``qc_pass=False`` and the
reason(s) in ``qc_reason`` (``"code: detail"``, several joined with ``"; "``).

Guarantees of :func:`curate`:

- raw input files are only read, never modified;
- every file is written atomically (temporary file + ``os.replace``); the manifest is the
  commit point, so an interrupted run leaves the previous state readable;
- each dataset has its own store file, so appending a dataset never rewrites the others;
- the store name carries a fingerprint of the inputs (arrays or file paths/sizes/mtimes,
  phenotypes, atlas, QC settings): re-curating identical inputs is a no-op, different inputs
  need ``overwrite=True``; the same inputs always give byte-identical files.
- one folder holds one atlas: curate data on another atlas into another folder (the default
  data puts the real AAL2-94 sample in ``<root>/real/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bmlib._io import atomic_path, atomic_write_json
from bmlib.data.atlases import Atlas, _as_atlas
from bmlib.data.readers import PHENOTYPE_COLUMNS, read_timeseries

if TYPE_CHECKING:  # the store imports torch: kept out of file-reading worker processes
    from bmlib.data.store import TimeSeriesDataset, TimeSeriesStore

__all__ = [
    "DEFAULT_MIN_TIMEPOINTS",
    "MANIFEST_COLUMNS",
    "CuratedDataset",
    "curate",
    "drop_datasets",
    "qc_check",
    "read_manifest",
    "write_ground_truth",
    "write_tasks",
]

CURATION_FORMAT = "bmlib-curated-v1"
DEFAULT_MIN_TIMEPOINTS = 50
MANIFEST_FILE = "manifest.csv"
ATLAS_FILE = "atlas.csv"
TASKS_FILE = "tasks.json"
GROUND_TRUTH_FILE = "ground_truth.json"
STORE_DIR = "timeseries"

_QC_COLUMNS = ("n_timepoints", "n_rois", "atlas", "qc_pass", "qc_reason", "source", "store_file")
#: Manifest columns, in order (extra phenotype columns follow).
MANIFEST_COLUMNS: tuple[str, ...] = (*PHENOTYPE_COLUMNS, *_QC_COLUMNS)
_STRING_COLUMNS = ("sample_id", "participant", "dataset", "site", "session", "diagnosis", "sex",
                   "atlas", "qc_reason", "source", "store_file")  # fmt: skip
_FLOAT_COLUMNS = ("age", "tr")
_INT_COLUMNS = ("n_timepoints", "n_rois")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
_CONSTANT_RTOL = 1e-7


# ----------------------------------------------------------------------------------------- QC


def qc_check(
    series: Any, *, n_rois: int, min_timepoints: int = DEFAULT_MIN_TIMEPOINTS
) -> tuple[bool, str]:
    """Quality-control one scan.

    Parameters
    ----------
    series : array_like, shape (n_timepoints, n_rois)
    n_rois : int
        Expected ROI count (the atlas's).
    min_timepoints : int, default 50
        Shortest accepted scan.

    Returns
    -------
    passed : bool
    reason : str
        ``""`` when passed, else ``"code: detail"`` items joined with ``"; "``; codes are
        ``bad_shape``, ``wrong_roi_count``, ``too_short``, ``non_finite``, ``constant_rois``.

    Examples
    --------
    >>> qc_check(np.random.default_rng(0).normal(size=(60, 4)), n_rois=4)
    (True, '')
    >>> passed, reason = qc_check(np.zeros((10, 3)), n_rois=4, min_timepoints=20)
    >>> reason.split("; ")[:2]
    ['wrong_roi_count: expected 4 ROIs, got 3', 'too_short: 10 timepoints < min_timepoints=20']
    """
    x = np.asarray(series)
    if x.ndim != 2:
        return False, f"bad_shape: expected 2D array (n_timepoints, n_rois), got shape {x.shape}"
    reasons = []
    if x.shape[1] != n_rois:
        reasons.append(f"wrong_roi_count: expected {n_rois} ROIs, got {x.shape[1]}")
    if x.shape[0] < min_timepoints:
        reasons.append(f"too_short: {x.shape[0]} timepoints < min_timepoints={min_timepoints}")
    finite = np.isfinite(x)
    if not finite.all():
        reasons.append(f"non_finite: {int(x.size - finite.sum())} NaN/Inf value(s)")
    elif x.shape[0] > 0 and x.shape[1] > 0:
        scale = np.maximum(np.abs(x).max(axis=0), 1.0)
        constant = np.flatnonzero(np.ptp(x, axis=0) <= _CONSTANT_RTOL * scale)
        if constant.size:
            reasons.append(
                f"constant_rois: {constant.size} ROI(s) with constant signal, "
                f"e.g. {constant[:5].tolist()}"
            )
    return not reasons, "; ".join(reasons)


def _check_scan(
    series: Any, n_rois: int, min_timepoints: int
) -> tuple[np.ndarray | None, float, float, str]:
    """QC one in-memory scan: (float32 array if accepted, n_timepoints, n_rois, reason)."""
    try:
        x = np.asarray(series, dtype=np.float32)
    except (TypeError, ValueError) as err:
        return None, np.nan, np.nan, f"unreadable: {_short(err)}"
    ok, reason = qc_check(x, n_rois=n_rois, min_timepoints=min_timepoints)
    n_t, n_r = (x.shape if x.ndim == 2 else (np.nan, np.nan))
    return (np.ascontiguousarray(x) if ok else None), n_t, n_r, reason


def _load_scan(
    path: str, n_rois: int, min_timepoints: int, reader_kwargs: Mapping[str, Any]
) -> tuple[np.ndarray | None, float, float, str]:
    """Read + QC one file (runs in worker processes)."""
    try:
        x = read_timeseries(path, **reader_kwargs)
    except Exception as err:  # noqa: BLE001 - any reader failure is a recorded QC reject
        return None, np.nan, np.nan, f"unreadable: {_short(err)}"
    return _check_scan(x, n_rois, min_timepoints)


def _short(err: BaseException, limit: int = 300) -> str:
    msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


# ---------------------------------------------------------------------------------- manifest


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``manifest.csv`` with the column types of :data:`MANIFEST_COLUMNS`.

    Text columns are pandas ``string``; ``age``/``tr`` float64; ``n_timepoints``/``n_rois``
    nullable ``Int64`` (missing for unreadable scans); ``qc_pass`` bool; missing
    ``qc_reason``/``source``/``store_file`` are ``""``.
    """
    path = Path(path)
    df = pd.read_csv(
        path,
        dtype={c: "string" for c in _STRING_COLUMNS},
        keep_default_na=False,
        na_values=[""],
    )
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a bmlib manifest, missing columns {missing}")
    return _typed(df)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in _STRING_COLUMNS:
        df[c] = df[c].astype("string")
    for c in ("qc_reason", "source", "store_file"):
        df[c] = df[c].fillna("")
    for c in _FLOAT_COLUMNS:
        df[c] = pd.to_numeric(df[c]).astype("float64")
    for c in _INT_COLUMNS:
        df[c] = pd.to_numeric(df[c]).astype("Int64")
    df["qc_pass"] = df["qc_pass"].map(lambda v: str(v).strip().lower() == "true").astype(bool)
    extras = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return df[list(MANIFEST_COLUMNS) + extras].reset_index(drop=True)


def _write_manifest(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Serialise manifest updates of concurrent curations into one folder (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".manifest.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------ inputs


def _normalise_input(
    scans: Any, phenotypes: pd.DataFrame | None
) -> tuple[pd.DataFrame, list[Any] | None, list[str] | None]:
    """Split ``scans`` into (phenotype table, arrays or None, paths or None)."""
    if isinstance(scans, pd.DataFrame):
        if phenotypes is not None:
            raise ValueError(
                "a file table carries its phenotype columns itself; got phenotypes= as well"
            )
        if "path" not in scans.columns:
            raise ValueError(
                f"expected a file table with a 'path' column, got columns {list(scans.columns)}"
            )
        table = scans.drop(columns=["path"]).reset_index(drop=True)
        paths = [str(p) for p in scans["path"].to_numpy()]
        if "source" in table.columns:
            raise ValueError("a file table's 'path' column becomes 'source'; drop 'source'")
        table["source"] = paths
        return table, None, paths
    if isinstance(scans, np.ndarray) and scans.ndim == 3:
        scans = list(scans)
    if not isinstance(scans, Sequence) or isinstance(scans, str | bytes):
        raise TypeError(
            "expected scans as a list of (n_timepoints, n_rois) arrays or a DataFrame with a "
            f"'path' column, got {type(scans).__name__}"
        )
    if phenotypes is None:
        phenotypes = pd.DataFrame(index=range(len(scans)))
    if not isinstance(phenotypes, pd.DataFrame):
        raise TypeError(f"expected phenotypes as a DataFrame, got {type(phenotypes).__name__}")
    if len(phenotypes) != len(scans):
        raise ValueError(
            f"expected one phenotype row per scan, got {len(phenotypes)} rows for "
            f"{len(scans)} scans"
        )
    table = phenotypes.reset_index(drop=True).copy()
    if "source" not in table.columns:
        table["source"] = ""
    return table, list(scans), None


def _prepare_rows(table: pd.DataFrame, dataset: str, tr: float | None) -> pd.DataFrame:
    """Standard phenotype columns, typed, with sample ids; extras kept after them."""
    reserved = [c for c in _QC_COLUMNS if c in table.columns and c != "source"]
    if reserved:
        raise ValueError(f"phenotype columns {reserved} are written by curate(); drop them")
    table = table.copy()
    if "dataset" in table.columns:
        other = sorted(set(table["dataset"].dropna().astype(str).to_numpy()) - {dataset})
        if other:
            raise ValueError(
                f"dataset={dataset!r} but the phenotype table names other datasets {other[:5]}; "
                "curate each dataset separately"
            )
    table["dataset"] = dataset
    if "site" not in table.columns:
        table["site"] = dataset  # one acquisition site unless told otherwise
    for c in ("participant", "session", "diagnosis", "sex"):
        if c not in table.columns:
            table[c] = pd.NA
    for c in _FLOAT_COLUMNS:
        if c not in table.columns:
            table[c] = np.nan
        try:
            table[c] = pd.to_numeric(table[c]).astype("float64")
        except (TypeError, ValueError) as err:
            raise ValueError(f"phenotype column {c!r} must be numeric ({err})") from err
    if tr is not None:
        table["tr"] = table["tr"].fillna(float(tr))
    for c in ("participant", "dataset", "site", "session", "diagnosis", "sex", "source"):
        table[c] = table[c].astype("string")
    if "sample_id" in table.columns:
        ids = table["sample_id"]
        if ids.isna().any():
            raise ValueError(f"sample_id is missing in {int(ids.isna().sum())} row(s)")
        table["sample_id"] = ids.astype(str).astype("string")
    else:
        table["sample_id"] = pd.array(_default_sample_ids(table, dataset), dtype="string")
    table["participant"] = table["participant"].fillna(table["sample_id"])
    from bmlib.data.store import check_sample_id

    ids = table["sample_id"].to_numpy()
    for s in ids:
        check_sample_id(str(s))
    dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique()
    if len(dup):
        raise ValueError(f"sample ids must be unique, repeated: {list(dup[:5])}")
    first = [c for c in PHENOTYPE_COLUMNS] + ["source"]
    return table[first + [c for c in table.columns if c not in first]]


def _default_sample_ids(table: pd.DataFrame, dataset: str) -> list[str]:
    """``<dataset>_<participant>[_<session>]`` when unique, else ``<dataset>_<row:05d>``."""
    part = table["participant"]
    if part.notna().all():
        ids = [f"{dataset}_{p}" for p in part.astype(str).to_numpy()]
        if table["session"].notna().all():
            ids = [f"{i}_{s}" for i, s in zip(ids, table["session"].astype(str).to_numpy(), strict=True)]
        if len(set(ids)) == len(ids) and not any("/" in i for i in ids):
            return ids
    width = max(5, len(str(len(table))))
    return [f"{dataset}_{i:0{width}d}" for i in range(len(table))]


def _fingerprint(
    table: pd.DataFrame,
    arrays: list[Any] | None,
    paths: list[str] | None,
    *,
    dataset: str,
    atlas: Atlas,
    min_timepoints: int,
    reader_kwargs: Mapping[str, Any],
    compression: str | None,
) -> str:
    h = hashlib.sha256()
    settings = {
        "format": CURATION_FORMAT,
        "dataset": dataset,
        "atlas": atlas.name,
        "labels": list(atlas.labels),
        "min_timepoints": int(min_timepoints),
        "reader_kwargs": repr(sorted((str(k), repr(v)) for k, v in reader_kwargs.items())),
        "compression": compression,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(table.to_csv(index=False).encode())
    if arrays is not None:
        for a in arrays:
            arr = np.asarray(a)
            h.update(f"|{arr.dtype.str}{arr.shape}|".encode())
            if arr.dtype.kind in "biuf":
                h.update(np.ascontiguousarray(arr).data)
            else:
                h.update(repr(arr.tolist()).encode())
    for p in paths or []:
        try:
            st = os.stat(p)
            h.update(f"|{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"|{p}|missing".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ curate


def curate(
    out_dir: str | os.PathLike[str],
    scans: Sequence[np.ndarray] | np.ndarray | pd.DataFrame,
    *,
    dataset: str,
    atlas: Atlas | str = "schaefer100_7",
    phenotypes: pd.DataFrame | None = None,
    min_timepoints: int = DEFAULT_MIN_TIMEPOINTS,
    tr: float | None = None,
    reader_kwargs: Mapping[str, Any] | None = None,
    n_jobs: int = 1,
    overwrite: bool = False,
    compression: str | None = None,
    progress: bool = False,
) -> CuratedDataset:
    """Curate one dataset into the folder ``out_dir`` (created if needed).

    Parameters
    ----------
    out_dir : str or PathLike
        Root of the curated dataset; other datasets already there are kept untouched.
    scans : list of arrays (n_timepoints, n_rois), array (N, T, R), or DataFrame
        In-memory scans (then ``phenotypes`` gives one row per scan), or a file table: a
        DataFrame with a ``path`` column (any format :func:`bmlib.data.read_timeseries`
        reads) plus phenotype columns. The path becomes the manifest's ``source``.
    dataset : str
        Dataset name (letters, digits, ``_`` and ``.``; e.g. ``"abide_nyu"``). A ``dataset``
        column in the phenotypes must agree with it.
    atlas : Atlas or str, default "schaefer100_7"
        Atlas of the series; its ROI count is the one QC expects. One folder holds one atlas.
    phenotypes : DataFrame, optional
        For in-memory scans: standard columns (see :data:`bmlib.data.PHENOTYPE_COLUMNS`; use
        :func:`bmlib.data.read_phenotypes` to normalise a participants file) and any extra
        columns, which are kept. Missing ``sample_id`` -> ``<dataset>_<participant>[_<session>]``
        (or ``<dataset>_<row>`` when those are not unique); missing ``participant`` -> the
        sample id; missing ``site`` column -> the dataset name.
    min_timepoints : int, default 50
        Shorter scans are rejected (``too_short``).
    tr : float, optional
        Repetition time (s) for rows without one.
    reader_kwargs : mapping, optional
        Passed to :func:`bmlib.data.read_timeseries` for every file (``orientation``,
        ``key``, ``atlas_img``, ...). ``n_rois`` is checked by QC instead, so a mismatch
        becomes a recorded reject, not an exception.
    n_jobs : int, default 1
        Worker processes reading files (joblib/loky; -1 = all cores). In-memory scans are
        checked in this process.
    overwrite : bool, default False
        Replace a dataset of the same name curated from different inputs (otherwise a
        ``ValueError``). Identical inputs are always a no-op.
    compression : {None, "gzip", "lzf"}, default None
        HDF5 compression of the store.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    CuratedDataset
        The whole folder (all datasets).
    """
    root = Path(out_dir)
    if not isinstance(dataset, str) or not _DATASET_NAME.match(dataset):
        raise ValueError(
            f"dataset must be a name of letters, digits, '_' and '.', starting with a letter "
            f"or digit, got {dataset!r}"
        )
    atlas = _as_atlas(atlas)
    is_int = isinstance(min_timepoints, int | np.integer) and not isinstance(min_timepoints, bool)
    if not is_int or min_timepoints < 2:
        raise ValueError(f"min_timepoints must be an integer >= 2, got {min_timepoints!r}")
    if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    reader_kwargs = dict(reader_kwargs or {})
    if "n_rois" in reader_kwargs:
        raise ValueError("reader_kwargs must not set n_rois: QC checks the atlas's ROI count")
    table, arrays, paths = _normalise_input(scans, phenotypes)
    if arrays is not None and reader_kwargs:
        raise ValueError("reader_kwargs only applies to a file table, got in-memory scans")
    table = _prepare_rows(table, dataset, tr)

    fp = _fingerprint(table, arrays, paths, dataset=dataset, atlas=atlas,
                      min_timepoints=int(min_timepoints), reader_kwargs=reader_kwargs,
                      compression=compression)  # fmt: skip
    store_rel = f"{STORE_DIR}/{dataset}-{fp[:12]}.h5"

    existing = _existing_manifest(root)
    _check_folder_atlas(root, atlas)
    mine = existing[existing["dataset"] == dataset]
    if len(mine):
        unchanged = (
            len(mine) == len(table)
            and bool((mine["store_file"] == store_rel).all())
            and (root / store_rel).is_file()
        )
        if unchanged:
            return CuratedDataset(root)
        if not overwrite:
            raise ValueError(
                f"dataset {dataset!r} is already curated in {root} from different inputs; "
                "pass overwrite=True to replace it"
            )
    _check_id_clash(existing, table, dataset)

    n = len(table)
    n_t = np.full(n, np.nan)
    n_r = np.full(n, np.nan)
    reasons = [""] * n
    sample_ids = table["sample_id"].astype(str).to_list()
    from bmlib.data.store import StoreWriter

    attrs = {"format": CURATION_FORMAT, "dataset": dataset, "atlas": atlas.name,
             "n_rois": atlas.n_rois, "min_timepoints": int(min_timepoints), "fingerprint": fp}  # fmt: skip
    with StoreWriter(root / store_rel, attrs=attrs, compression=compression) as writer:
        for i, (x, t, r, reason) in enumerate(
            _results(arrays, paths, atlas.n_rois, int(min_timepoints), reader_kwargs, n_jobs, progress)
        ):
            n_t[i], n_r[i], reasons[i] = t, r, reason
            if x is not None:
                writer.add(sample_ids[i], x)

    rows = table.copy()
    rows["n_timepoints"] = pd.array(n_t, dtype="Float64").astype("Int64")
    rows["n_rois"] = pd.array(n_r, dtype="Float64").astype("Int64")
    rows["atlas"] = atlas.name
    rows["qc_pass"] = [not r for r in reasons]
    rows["qc_reason"] = reasons
    rows["store_file"] = store_rel
    rows = _typed(rows)

    with _lock(root):
        current = _existing_manifest(root)
        _check_id_clash(current, rows, dataset)
        mine_now = (current["dataset"] == dataset).to_numpy()
        at = int(np.flatnonzero(mine_now)[0]) if mine_now.any() else len(current)
        parts = [current.iloc[:at][~mine_now[:at]], rows, current.iloc[at:][~mine_now[at:]]]
        manifest = pd.concat([p for p in parts if len(p)], ignore_index=True)
        if not (root / ATLAS_FILE).is_file():
            atlas.to_csv(root / ATLAS_FILE)
        _write_manifest(root / MANIFEST_FILE, _typed(manifest))
        _remove_stale_stores(root, dataset, keep=store_rel)
    return CuratedDataset(root)


def _results(
    arrays: list[Any] | None,
    paths: list[str] | None,
    n_rois: int,
    min_timepoints: int,
    reader_kwargs: Mapping[str, Any],
    n_jobs: int,
    progress: bool,
) -> Iterator[tuple[np.ndarray | None, float, float, str]]:
    """QC results in input order; files are read in worker processes when n_jobs != 1."""
    if arrays is not None:
        it: Any = (_check_scan(x, n_rois, min_timepoints) for x in arrays)
        total = len(arrays)
    else:
        assert paths is not None
        total = len(paths)
        if n_jobs == 1 or total <= 1:
            it = (_load_scan(p, n_rois, min_timepoints, reader_kwargs) for p in paths)
        else:
            from joblib import Parallel, delayed

            it = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_load_scan)(p, n_rois, min_timepoints, reader_kwargs) for p in paths
            )
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=total, desc="curating")
    yield from it


def _existing_manifest(root: Path) -> pd.DataFrame:
    path = root / MANIFEST_FILE
    if path.is_file():
        return read_manifest(path)
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in MANIFEST_COLUMNS})
    return _typed(empty)


def _check_folder_atlas(root: Path, atlas: Atlas) -> None:
    path = root / ATLAS_FILE
    if not path.is_file():
        return
    current = Atlas.from_csv(path, name=atlas.name)
    if current.labels != atlas.labels or not np.allclose(
        current.coords, atlas.coords, atol=1e-4, equal_nan=True
    ):
        raise ValueError(
            f"{root} holds data on another atlas ({current.n_rois} ROIs, first "
            f"{list(current.labels[:2])}) than {atlas.name!r} ({atlas.n_rois} ROIs): "
            "curate each atlas into its own folder"
        )


def _check_id_clash(existing: pd.DataFrame, table: pd.DataFrame, dataset: str) -> None:
    others = existing[existing["dataset"] != dataset]
    clash = sorted(set(others["sample_id"].astype(str)) & set(table["sample_id"].astype(str)))
    if clash:
        raise ValueError(
            f"sample ids of dataset {dataset!r} already belong to other datasets: {clash[:5]}"
        )


def _remove_stale_stores(root: Path, dataset: str, keep: str) -> None:
    pattern = re.compile(rf"^{re.escape(dataset)}-[0-9a-f]{{12}}\.h5$")
    for f in (root / STORE_DIR).glob(f"{dataset}-*.h5"):
        if pattern.match(f.name) and f"{STORE_DIR}/{f.name}" != keep:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def drop_datasets(root: str | os.PathLike[str], datasets: str | Sequence[str]) -> None:
    """Remove whole datasets (manifest rows and store files) from a curated folder.

    Other datasets are untouched. When nothing is left, ``manifest.csv`` and ``atlas.csv``
    are removed too, so the folder can take data on another atlas.
    """
    root = Path(root)
    names = [datasets] if isinstance(datasets, str) else [str(d) for d in datasets]
    with _lock(root):
        current = _existing_manifest(root)
        known = set(current["dataset"].astype(str))
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown} in {root}; available: {sorted(known)}")
        kept = current[~current["dataset"].isin(names)]
        if len(kept):
            _write_manifest(root / MANIFEST_FILE, kept)
        else:
            for f in (MANIFEST_FILE, ATLAS_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (root / f).unlink()
        for name in names:
            _remove_stale_stores(root, name, keep="")


def write_tasks(
    root: str | os.PathLike[str],
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    pretraining_datasets: Sequence[str] | None = None,
) -> Path:
    """Write ``tasks.json``: ``{"pretraining_datasets": [...], "tasks": {name: spec}}``.

    A task spec is a JSON-serialisable mapping, typically ``datasets`` (list of dataset names),
    ``label_column`` (manifest column), ``positive`` / ``negative`` (its class values) and
    ``kind`` (``"internal"``/``"external"``), as :meth:`bmlib.data.synthetic.TaskSpec.to_dict`
    gives. Written atomically.
    """
    payload: dict[str, Any] = {"tasks": {str(k): dict(v) for k, v in tasks.items()}}
    if pretraining_datasets is not None:
        payload = {"pretraining_datasets": [str(d) for d in pretraining_datasets], **payload}
    return _write_json_if_changed(Path(root) / TASKS_FILE, payload)


def write_ground_truth(root: str | os.PathLike[str], ground_truth: Mapping[str, Any]) -> Path:
    """Write ``ground_truth.json`` (planted effects per task), atomically."""
    return _write_json_if_changed(Path(root) / GROUND_TRUTH_FILE, dict(ground_truth))


def _write_json_if_changed(path: Path, obj: Any) -> Path:
    from bmlib._io import _json_default

    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    if path.is_file() and path.read_text() == text:
        return path
    return atomic_write_json(path, obj)


# ---------------------------------------------------------------------------- CuratedDataset


class CuratedDataset:
    """A curated dataset folder (or a filtered view of one), read lazily.

    Parameters
    ----------
    root : str or PathLike
        Folder written by :func:`curate` / :func:`bmlib.data.make_default_data`.

    Attributes
    ----------
    root : Path

    Examples
    --------
    >>> ds = CuratedDataset("runs/x/data")                       # doctest: +SKIP
    >>> x = ds.load(ds.manifest["sample_id"].iloc[0])            # doctest: +SKIP
    >>> train = ds.select(datasets=ds.pretraining_datasets)      # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str], *, _rows: pd.DataFrame | None = None) -> None:
        self.root = Path(root)
        if _rows is None:
            path = self.root / MANIFEST_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"no curated dataset at {self.root} (missing {MANIFEST_FILE}); create one "
                    "with bmlib.data.curate(...) or bmlib.data.make_default_data(...)"
                )
            _rows = read_manifest(path)
        self._rows = _rows.reset_index(drop=True)
        self._stores: dict[str, TimeSeriesStore] = {}
        self._index: dict[str, int] | None = None
        self._atlas: Atlas | None = None

    # --- tables -----------------------------------------------------------------------------
    @property
    def all_rows(self) -> pd.DataFrame:
        """Every row of this view, accepted and rejected."""
        return self._rows.copy()

    @property
    def manifest(self) -> pd.DataFrame:
        """Accepted scans (``qc_pass``), in manifest order; ROI/timepoint counts as int64."""
        df = self._rows[self._rows["qc_pass"]].reset_index(drop=True)
        for c in _INT_COLUMNS:
            df[c] = df[c].astype("int64")
        return df

    @property
    def rejected(self) -> pd.DataFrame:
        """Scans that failed QC, with ``qc_reason``."""
        return self._rows[~self._rows["qc_pass"]].reset_index(drop=True)

    @property
    def sample_ids(self) -> list[str]:
        """Accepted sample ids, in manifest order."""
        return self.manifest["sample_id"].astype(str).to_list()

    @property
    def datasets(self) -> list[str]:
        """Dataset names in this view, in manifest order."""
        return list(dict.fromkeys(self._rows["dataset"].astype(str).to_list()))

    def __len__(self) -> int:
        return int(self._rows["qc_pass"].sum())

    def __repr__(self) -> str:
        return (
            f"CuratedDataset({str(self.root)!r}: {len(self)} accepted, "
            f"{len(self._rows) - len(self)} rejected, datasets {self.datasets})"
        )

    # --- side files ---------------------------------------------------------------------------
    @property
    def atlas(self) -> Atlas:
        """The atlas of every scan in the folder (from ``atlas.csv``)."""
        if self._atlas is None:
            names = self._rows["atlas"].dropna().unique()
            name = str(names[0]) if len(names) else "atlas"
            self._atlas = Atlas.from_csv(self.root / ATLAS_FILE, name=name)
        return self._atlas

    def _json(self, name: str) -> dict[str, Any]:
        path = self.root / name
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Labelled tasks from ``tasks.json`` (``{}`` when absent)."""
        return dict(self._json(TASKS_FILE).get("tasks", {}))

    @property
    def ground_truth(self) -> dict[str, Any]:
        """Planted effects per task from ``ground_truth.json`` (``{}`` when absent)."""
        return self._json(GROUND_TRUTH_FILE)

    @property
    def pretraining_datasets(self) -> list[str]:
        """Datasets meant for pretraining (``tasks.json``); all datasets when not specified."""
        info = self._json(TASKS_FILE)
        if "pretraining_datasets" in info:
            return [str(d) for d in info["pretraining_datasets"]]
        return self.datasets

    # --- scans ----------------------------------------------------------------------------------
    def _row(self, sample_id: str) -> pd.Series:
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self._rows["sample_id"].astype(str))}
        if sample_id not in self._index:
            raise KeyError(f"sample {sample_id!r} is not in this curated dataset ({self.root})")
        return self._rows.iloc[self._index[sample_id]]

    def _store(self, rel: str) -> TimeSeriesStore:
        from bmlib.data.store import TimeSeriesStore

        if rel not in self._stores:
            self._stores[rel] = TimeSeriesStore(self.root / rel)
        return self._stores[rel]

    def load(self, sample_id: str) -> np.ndarray:
        """One accepted scan as float32, shape (n_timepoints, n_rois)."""
        row = self._row(str(sample_id))
        if not row["qc_pass"]:
            raise ValueError(f"sample {sample_id!r} was rejected by QC ({row['qc_reason']})")
        return self._store(str(row["store_file"]))[str(sample_id)]

    def load_many(self, sample_ids: Sequence[str] | None = None) -> list[np.ndarray]:
        """Several scans (default: all accepted, in manifest order)."""
        ids = self.sample_ids if sample_ids is None else [str(s) for s in sample_ids]
        return [self.load(s) for s in ids]

    # --- views ----------------------------------------------------------------------------------
    def select(
        self,
        datasets: str | Sequence[str] | None = None,
        *,
        task: str | None = None,
        sites: str | Sequence[str] | None = None,
        sample_ids: Sequence[str] | None = None,
        qc: bool = True,
    ) -> CuratedDataset:
        """A filtered view sharing the folder (nothing is copied).

        Parameters
        ----------
        datasets, sites : str or sequence of str, optional
            Keep these datasets / sites.
        task : str, optional
            Keep the labelled scans of a task: rows of ``tasks[task]["datasets"]`` whose
            ``label_column`` (or ``label``) value is the spec's ``positive`` or ``negative``
            class (any non-missing value when the spec names no classes).
        sample_ids : sequence of str, optional
            Keep these scans, in this order.
        qc : bool, default True
            Drop rejected rows from the view (``rejected`` is then empty).
        """
        rows = self._rows
        if datasets is not None:
            wanted = [datasets] if isinstance(datasets, str) else list(datasets)
            unknown = sorted(set(wanted) - set(self.datasets))
            if unknown:
                raise ValueError(f"unknown dataset(s) {unknown}; available: {self.datasets}")
            rows = rows[rows["dataset"].isin(wanted)]
        if task is not None:
            tasks = self.tasks
            if task not in tasks:
                raise ValueError(f"unknown task {task!r}; available: {sorted(tasks)}")
            spec = tasks[task]
            if spec.get("datasets"):
                rows = rows[rows["dataset"].isin([str(d) for d in spec["datasets"]])]
            label = spec.get("label_column", spec.get("label"))
            if isinstance(label, str) and label in rows.columns:
                classes = [spec[k] for k in ("positive", "negative") if spec.get(k) is not None]
                if len(classes) == 2:
                    rows = rows[rows[label].astype(str).isin([str(c) for c in classes])]
                else:
                    rows = rows[rows[label].notna()]
        if sites is not None:
            wanted = [sites] if isinstance(sites, str) else list(sites)
            rows = rows[rows["site"].isin(wanted)]
        if sample_ids is not None:
            ids = [str(s) for s in sample_ids]
            pos = {s: i for i, s in enumerate(rows["sample_id"].astype(str))}
            missing = [s for s in ids if s not in pos]
            if missing:
                raise KeyError(f"sample ids not in this view: {missing[:5]}")
            rows = rows.iloc[[pos[s] for s in ids]]
        if qc:
            rows = rows[rows["qc_pass"]]
        view = CuratedDataset(self.root, _rows=rows)
        view._atlas = self._atlas
        return view

    subset = select

    def torch_dataset(self, metadata: Sequence[str] = ()) -> TimeSeriesDataset:
        """The accepted scans as a torch Dataset of ``{"x": (T, R), "index": int, ...}``.

        Parameters
        ----------
        metadata : sequence of str, default ()
            Manifest columns added to every item (e.g. ``("sample_id", "diagnosis")``).
        """
        from bmlib.data.store import TimeSeriesDataset

        m = self.manifest
        unknown = [c for c in metadata if c not in m.columns]
        if unknown:
            raise ValueError(f"unknown manifest column(s) {unknown}; available: {list(m.columns)}")
        return TimeSeriesDataset(
            self.root,
            m["sample_id"].astype(str).to_list(),
            m["store_file"].astype(str).to_list(),
            metadata=m[list(metadata)] if metadata else None,
        )

    # --- summaries ------------------------------------------------------------------------------
    def summary(self, by: str | Sequence[str] = ("dataset", "site")) -> pd.DataFrame:
        """Per group: scans accepted/rejected, participants, TR, length, age, diagnoses.

        Returns
        -------
        DataFrame indexed by ``by`` with columns n_scans, n_rejected, n_participants,
        tr, timepoints_min, timepoints_median, timepoints_max, age_mean and one
        ``dx=<value>`` count column per diagnosis (accepted scans).
        """
        by = [by] if isinstance(by, str) else list(by)
        rows = self._rows.copy()
        rows["_accepted"] = rows["qc_pass"].astype(int)
        rows["_rejected"] = (~rows["qc_pass"]).astype(int)
        acc = rows[rows["qc_pass"]]
        g_all = rows.groupby(by, sort=False, dropna=False)
        out = pd.DataFrame({"n_scans": g_all["_accepted"].sum(), "n_rejected": g_all["_rejected"].sum()})
        acc = acc.assign(_nt=acc["n_timepoints"].astype("float64"))
        g = acc.groupby(by, sort=False, dropna=False)
        stats = pd.DataFrame(
            {
                "n_participants": g["participant"].nunique(),
                "tr": g["tr"].median(),
                "timepoints_min": g["_nt"].min(),
                "timepoints_median": g["_nt"].median(),
                "timepoints_max": g["_nt"].max(),
                "age_mean": g["age"].mean(),
            }
        )
        out = out.join(stats)
        if acc["diagnosis"].notna().any():
            dx = pd.crosstab([acc[c] for c in by], acc["diagnosis"].astype(str))
            dx.columns = [f"dx={c}" for c in dx.columns]
            out = out.join(dx)
        count_cols = ["n_participants"] + [c for c in out.columns if c.startswith("dx=")]
        out[count_cols] = out[count_cols].fillna(0).astype("int64")
        return out

    def qc_summary(self) -> pd.DataFrame:
        """Rejects per dataset and QC reason code (columns dataset, reason, n_scans)."""
        rej = self.rejected
        records = [
            (ds, item.split(":", 1)[0].strip())
            for ds, reason in zip(rej["dataset"].astype(str), rej["qc_reason"].astype(str), strict=True)
            for item in reason.split("; ")
        ]
        df = pd.DataFrame(records, columns=["dataset", "reason"])
        return df.groupby(["dataset", "reason"]).size().rename("n_scans").reset_index()
