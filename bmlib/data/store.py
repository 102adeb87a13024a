"""HDF5 time-series store: one file per curated dataset, one HDF5 dataset per scan.

Layout of a store file::

    /scans/<sample_id>    float32 (n_timepoints, n_rois), contiguous, no compression by default
    attributes            bmlib_store_format, plus what the writer passes (dataset, atlas, ...)

Reads are lazy: nothing is loaded until a scan is asked for, so a 70,000-scan corpus never has
to fit in memory. h5py handles are not fork-safe, so :class:`TimeSeriesStore` opens its file on
first use *in the current process* (it reopens after a fork and drops the handle when pickled);
DataLoader workers each get their own handle.

Files are written atomically (a temporary file in the same folder, moved into place when
complete) and deterministically (no HDF5 timestamps): identical input gives identical bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from bmlib._io import atomic_path

__all__ = ["STORE_FORMAT", "StoreWriter", "TimeSeriesDataset", "TimeSeriesStore", "check_sample_id"]

STORE_FORMAT = "bmlib-timeseries-v1"
_GROUP = "scans"
_BAD_ID = re.compile(r"[/\x00]")


def check_sample_id(sample_id: Any) -> str:
    """Return ``sample_id`` if it can name an HDF5 dataset, else raise ``ValueError``."""
    if not isinstance(sample_id, str) or not sample_id.strip() or sample_id in (".", ".."):
        raise ValueError(f"expected a non-empty string sample id, got {sample_id!r}")
    if _BAD_ID.search(sample_id):
        raise ValueError(f"sample id {sample_id!r} must not contain '/' or NUL")
    return sample_id


def _open_h5(path: Path) -> Any:
    import h5py

    try:  # no POSIX locks: read-only access, and locks fail on some network file systems
        return h5py.File(path, "r", locking=False)
    except (TypeError, ValueError):  # HDF5 builds without the locking option
        return h5py.File(path, "r")


class StoreWriter:
    """Write scans to a new store file; the file appears at ``path`` only when complete.

    Parameters
    ----------
    path : str or PathLike
        Destination ``.h5`` file (replaced atomically if it exists).
    attrs : mapping, optional
        File attributes (str, int, float or bool values).
    compression : {None, "gzip", "lzf"}, default None
        HDF5 filter for each scan (None reads fastest).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.h5"
    >>> with StoreWriter(p, attrs={"dataset": "demo"}) as w:
    ...     w.add("s1", np.zeros((5, 3)))
    >>> TimeSeriesStore(p)["s1"].shape
    (5, 3)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
    ) -> None:
        if compression not in (None, "gzip", "lzf"):
            raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
        self.path = Path(path)
        self.attrs = dict(attrs or {})
        self.compression = compression
        self._ctx: Any = None
        self._file: Any = None
        self._names: set[str] = set()

    def __enter__(self) -> StoreWriter:
        import h5py

        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._file = h5py.File(tmp, "w")
        self._file.create_group(_GROUP)
        return self

    def add(self, sample_id: str, series: np.ndarray) -> None:
        """Store one scan, shape (n_timepoints, n_rois), as float32."""
        if self._file is None:
            raise RuntimeError("StoreWriter.add called outside its `with` block")
        check_sample_id(sample_id)
        if sample_id in self._names:
            raise ValueError(f"sample id {sample_id!r} written twice to {self.path}")
        arr = np.asarray(series)
        if arr.ndim != 2:
            raise ValueError(f"expected 2D array (n_timepoints, n_rois), got shape {arr.shape}")
        self._file[_GROUP].create_dataset(
            sample_id,
            data=np.ascontiguousarray(arr, dtype=np.float32),
            track_times=False,
            compression=self.compression,
        )
        self._names.add(sample_id)

    def __len__(self) -> int:
        return len(self._names)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._file.attrs["bmlib_store_format"] = STORE_FORMAT
                self._file.attrs["n_scans"] = len(self._names)
                for k, v in sorted(self.attrs.items()):
                    self._file.attrs[k] = v
            self._file.close()
        finally:
            self._file = None
            self._ctx.__exit__(exc_type, exc, tb)


class TimeSeriesStore:
    """Lazy, read-only access to one store file.

    Parameters
    ----------
    path : str or PathLike
        A file written by :class:`StoreWriter`.

    Notes
    -----
    The HDF5 handle is opened on first access and re-opened in a new process (after a fork or
    when unpickled), so one object can be shared with DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"time-series store not found: {self.path}")
        self._file: Any = None
        self._pid: int | None = None

    @property
    def _h5(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            self._file = _open_h5(self.path)
            self._pid = os.getpid()
            fmt = self._file.attrs.get("bmlib_store_format")
            if fmt != STORE_FORMAT or _GROUP not in self._file:
                raise ValueError(f"{self.path}: not a bmlib store (format {fmt!r})")
        return self._file

    def __getitem__(self, sample_id: str) -> np.ndarray:
        """One scan, float32 (n_timepoints, n_rois)."""
        group = self._h5[_GROUP]
        if sample_id not in group:
            raise KeyError(f"sample {sample_id!r} is not in {self.path}")
        return group[sample_id][()]

    def __contains__(self, sample_id: object) -> bool:
        return isinstance(sample_id, str) and sample_id in self._h5[_GROUP]

    def __len__(self) -> int:
        return len(self._h5[_GROUP])

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """Sample ids in the file (sorted by name, not manifest order)."""
        return list(self._h5[_GROUP].keys())

    def shape(self, sample_id: str) -> tuple[int, int]:
        """Shape of one scan without reading it."""
        return tuple(self._h5[_GROUP][sample_id].shape)  # type: ignore[return-value]

    @property
    def attrs(self) -> dict[str, Any]:
        """File attributes as plain Python values."""
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self._h5.attrs.items()}

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._file.close()
        self._file = None
        self._pid = None

    def __enter__(self) -> TimeSeriesStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_file": None, "_pid": None}

    def __repr__(self) -> str:
        return f"TimeSeriesStore({str(self.path)!r})"


class TimeSeriesDataset(Dataset):
    """A torch Dataset over curated scans: items ``{"x": FloatTensor (T, R), "index": int, ...}``.

    Usually obtained from :meth:`bmlib.data.CuratedDataset.torch_dataset`. Scans are read
    lazily from the store files; each worker process opens its own HDF5 handles.

    Parameters
    ----------
    root : str or PathLike
        Folder the ``store_files`` are relative to.
    sample_ids : sequence of str, length N
    store_files : sequence of str, length N
        Store file (relative to ``root``) holding each scan.
    metadata : DataFrame, optional
        N rows aligned with ``sample_ids``; each column becomes an item key. Missing values
        become ``""`` in text columns and NaN in numeric ones (so the default collate works).
    dtype : torch.dtype, default torch.float32

    Notes
    -----
    ``index`` is the item's position in this dataset (row order of the manifest view it came
    from), so outputs can be matched back to ``sample_ids``. Scans differ in length: batch them
    with :func:`bmlib.pfc.pad_series` / ``PFCCollate``, not the default collate.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        sample_ids: Sequence[str],
        store_files: Sequence[str],
        metadata: pd.DataFrame | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.root = Path(root)
        self.sample_ids = [str(s) for s in sample_ids]
        self.store_files = [str(s) for s in store_files]
        if len(self.sample_ids) != len(self.store_files):
            raise ValueError(
                f"expected one store file per sample id, got {len(self.store_files)} for "
                f"{len(self.sample_ids)} ids"
            )
        self._meta: list[dict[str, Any]] | None = None
        if metadata is not None:
            if len(metadata) != len(self.sample_ids):
                raise ValueError(
                    f"expected {len(self.sample_ids)} metadata rows, got {len(metadata)}"
                )
            reserved = {"x", "index"} & set(metadata.columns)
            if reserved:
                raise ValueError(f"metadata columns {sorted(reserved)} clash with item keys")
            self._meta = _records(metadata)
        self.dtype = dtype
        self._stores: dict[str, TimeSeriesStore] = {}

    def __len__(self) -> int:
        return len(self.sample_ids)

    def _store(self, rel: str) -> TimeSeriesStore:
        store = self._stores.get(rel)
        if store is None:
            store = self._stores[rel] = TimeSeriesStore(self.root / rel)
        return store

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} scans")
        index = int(index) % len(self)
        arr = self._store(self.store_files[index])[self.sample_ids[index]]
        item: dict[str, Any] = {"x": torch.from_numpy(arr).to(self.dtype), "index": index}
        if self._meta is not None:
            item.update(self._meta[index])
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stores"] = {}
        return state


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values, missing text as "" and missing numbers as NaN."""
    cols = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s) and not s.isna().any():
            cols[c] = s.astype(bool).to_numpy().tolist()
        elif pd.api.types.is_numeric_dtype(s):
            cols[c] = s.astype("float64").to_numpy(na_value=np.nan).tolist()
            if pd.api.types.is_integer_dtype(s) and not s.isna().any():
                cols[c] = [int(v) for v in cols[c]]
        else:
            cols[c] = ["" if pd.isna(v) else str(v) for v in s.to_numpy()]
    if not cols:
        return [{} for _ in range(len(df))]
    return [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
