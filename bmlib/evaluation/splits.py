"""Evaluation splits that cannot leak participants, stored as explicit files.

Every protocol of :mod:`bmlib.evaluation` is written as one **split table**, a tidy DataFrame with
one row per (protocol, repeat, fold, sample) and the sample's ``role`` in that fold:

======== ===================================================================================
column   meaning
======== ===================================================================================
protocol ``kfold`` | ``loso`` | ``fewshot`` | ``zeroshot``
repeat   repetition (k-fold), 0 (LOSO), draw (few-shot), control hold-out repeat (zero-shot)
fold     test fold (k-fold), site index (LOSO), k (few-shot), 0 (zero-shot)
fold_name human-readable fold: ``fold2``, the held-out site, ``k=4``, ``holdout``
sample_id, participant, site, label   the sample (label 1 = patient, 0 = control)
role     ``train`` | ``test``; samples not used in a fold have no row
======== ===================================================================================

Guarantees, checked by :func:`check_splits` whenever a table is built or loaded:

- no participant (any session) is both in ``train`` and ``test`` of the same fold;
- k-fold: each sample is in the test part exactly once per repeat;
- few-shot: the test part is the same fixed held-out set for every k and draw, and the train
  part holds exactly k participants per class;
- zero-shot: no patient is ever in ``train``.

K-fold splits use :class:`sklearn.model_selection.StratifiedGroupKFold` on a combined
diagnosis x site stratum with participants as groups, reshuffled per repeat with a seed drawn from
``seed``. Tables round-trip through CSV with :func:`save_splits` / :func:`load_splits`, so that
every model of a benchmark (and every later run) uses the very same folds.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from bmlib._io import atomic_path

__all__ = [
    "SPLIT_COLUMNS",
    "Fold",
    "LeakageError",
    "check_splits",
    "few_shot_splits",
    "iter_folds",
    "kfold_splits",
    "load_splits",
    "loso_splits",
    "save_splits",
    "validate_samples",
    "zero_shot_splits",
]

SPLIT_COLUMNS: tuple[str, ...] = (
    "protocol",
    "repeat",
    "fold",
    "fold_name",
    "sample_id",
    "participant",
    "site",
    "label",
    "role",
)
_SAMPLE_COLUMNS = ("sample_id", "participant", "site", "label")


class LeakageError(ValueError):
    """A split puts the same participant in the training and the test part of a fold."""


@dataclass(frozen=True)
class Fold:
    """One train/test split, as row indices into the caller's ``sample_ids``.

    Attributes
    ----------
    protocol, repeat, fold, fold_name
        As in the split table.
    train, test : ndarray of int, shape (n_train,), (n_test,)
        Positions in the ``sample_ids`` passed to :func:`iter_folds`.
    """

    protocol: str
    repeat: int
    fold: int
    fold_name: str
    train: np.ndarray
    test: np.ndarray


def validate_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Check and normalise a sample table (``sample_id, participant, site, label``).

    Parameters
    ----------
    samples : DataFrame
        One row per scan. ``label`` is 1 for patients, 0 for controls.

    Returns
    -------
    DataFrame
        The four columns, ids as str, label as int, index reset.

    Raises
    ------
    ValueError
        Missing columns, duplicated sample ids, labels outside {0, 1}, or a participant whose
        scans carry different labels (diagnosis must be constant within a participant).
    """
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"expected a DataFrame of samples, got {type(samples).__name__}")
    missing = [c for c in _SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"sample table is missing columns {missing}; got {list(samples.columns)}")
    out = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].astype(str).to_numpy(),
            "participant": samples["participant"].astype(str).to_numpy(),
            "site": samples["site"].astype(str).to_numpy(),
            "label": samples["label"].to_numpy(),
        }
    )
    if out["sample_id"].duplicated().any():
        dup = out.loc[out["sample_id"].duplicated(), "sample_id"].to_numpy()[:5].tolist()
        raise ValueError(f"expected unique sample ids, got duplicates {dup}")
    labels = np.unique(out["label"].to_numpy())
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"expected labels in {{0, 1}} (1 = patient), got {labels.tolist()}")
    out["label"] = out["label"].astype(np.int64)
    n_labels = out.groupby("participant")["label"].nunique()
    if (n_labels > 1).any():
        bad = n_labels.index[n_labels.to_numpy() > 1].to_numpy()[:5].tolist()
        raise ValueError(f"participants {bad} have scans with different labels; diagnosis must be constant")
    return out


def _participants_per_class(samples: pd.DataFrame) -> dict[int, int]:
    per = samples.drop_duplicates("participant").groupby("label").size()
    return {lab: int(per.get(lab, 0)) for lab in (0, 1)}


def _rows(samples: pd.DataFrame, idx: np.ndarray, *, protocol: str, repeat: int, fold: int,
          fold_name: str, role: str) -> pd.DataFrame:
    part = samples.iloc[np.sort(idx)].copy()
    part.insert(0, "fold_name", fold_name)
    part.insert(0, "fold", fold)
    part.insert(0, "repeat", repeat)
    part.insert(0, "protocol", protocol)
    part["role"] = role
    return part


def _finish(frames: list[pd.DataFrame]) -> pd.DataFrame:
    table = pd.concat(frames, ignore_index=True)[list(SPLIT_COLUMNS)]
    table["repeat"] = table["repeat"].astype(np.int64)
    table["fold"] = table["fold"].astype(np.int64)
    check_splits(table)
    return table


def _repeat_seeds(seed: int | None, n: int) -> list[int]:
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)]


def _grouped_kfold(samples: pd.DataFrame, n_splits: int, seed: int, stratify_site: bool) -> list[np.ndarray]:
    """Test indices of each fold; falls back to label-only strata if a fold would miss a class."""
    y = samples["label"].to_numpy()
    groups = samples["participant"].to_numpy()
    strata_options = []
    if stratify_site:
        site_code = pd.factorize(samples["site"].to_numpy())[0]
        strata_options.append(y * (site_code.max() + 1) + site_code)
    strata_options.append(y)
    for strata in strata_options:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # strata of a small site may hold fewer participants than folds; the split is still valid
            warnings.filterwarnings("ignore", message=".*least populated class.*")
            tests = [test for _, test in cv.split(np.zeros(len(y)), strata, groups)]
        if all(len(np.unique(y[t])) == 2 for t in tests):
            return tests
    warnings.warn(
        f"some test folds hold a single class even with label-only stratification (seed {seed}); "
        "their ROC AUC, sensitivity or specificity will be NaN",
        stacklevel=3,
    )
    return tests


def kfold_splits(
    samples: pd.DataFrame,
    *,
    n_splits: int = 5,
    n_repeats: int = 1,
    seed: int | None = 0,
    stratify_site: bool = True,
) -> pd.DataFrame:
    """Repeated stratified k-fold grouped by participant.

    Parameters
    ----------
    samples : DataFrame
        ``sample_id, participant, site, label`` (see :func:`validate_samples`).
    n_splits : int, default=5
        Folds per repeat. Each class needs at least ``n_splits`` participants.
    n_repeats : int, default=1
        Repetitions with different shuffles (seeds drawn from ``seed``).
    seed : int or None, default=0
    stratify_site : bool, default=True
        Stratify by diagnosis x site (else diagnosis only).

    Returns
    -------
    DataFrame
        A split table (see module docstring), protocol ``"kfold"``.
    """
    samples = validate_samples(samples)
    if n_splits < 2:
        raise ValueError(f"expected n_splits >= 2, got {n_splits}")
    if n_repeats < 1:
        raise ValueError(f"expected n_repeats >= 1, got {n_repeats}")
    per_class = _participants_per_class(samples)
    if min(per_class.values()) < n_splits:
        raise ValueError(
            f"k-fold with n_splits={n_splits} needs at least {n_splits} participants per class, "
            f"got {per_class[1]} patients and {per_class[0]} controls"
        )
    frames = []
    all_idx = np.arange(len(samples))
    for repeat, rs in enumerate(_repeat_seeds(seed, n_repeats)):
        for fold, test in enumerate(_grouped_kfold(samples, n_splits, rs, stratify_site)):
            train = np.setdiff1d(all_idx, test)
            meta = dict(protocol="kfold", repeat=repeat, fold=fold, fold_name=f"fold{fold}")
            frames += [_rows(samples, train, role="train", **meta), _rows(samples, test, role="test", **meta)]
    return _finish(frames)


def loso_splits(samples: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-site-out: each site in turn is the test part.

    Participants scanned at several sites are removed from the training part of the folds
    that test one of their sites. Folds whose training part lacks a class are dropped with a
    warning; test sites with a single class are kept (their AUC is NaN).

    Parameters
    ----------
    samples : DataFrame
        ``sample_id, participant, site, label``.

    Returns
    -------
    DataFrame
        A split table, protocol ``"loso"``, ``fold`` = site index in sorted order, ``fold_name``
        = the site.
    """
    samples = validate_samples(samples)
    sites = np.sort(samples["site"].unique())
    if len(sites) < 2:
        raise ValueError(f"leave-one-site-out needs at least 2 sites, got {len(sites)} ({sites.tolist()})")
    frames = []
    site_arr = samples["site"].to_numpy()
    part_arr = samples["participant"].to_numpy()
    for fold, site in enumerate(sites):
        test = np.flatnonzero(site_arr == site)
        train = np.flatnonzero((site_arr != site) & ~np.isin(part_arr, part_arr[test]))
        if len(np.unique(samples["label"].to_numpy()[train])) < 2:
            warnings.warn(f"LOSO fold for site {site!r} dropped: its training part holds one class", stacklevel=2)
            continue
        meta = dict(protocol="loso", repeat=0, fold=fold, fold_name=str(site))
        frames += [_rows(samples, train, role="train", **meta), _rows(samples, test, role="test", **meta)]
    if not frames:
        raise ValueError("no usable leave-one-site-out fold: every training part holds a single class")
    return _finish(frames)


def _holdout_participants(samples: pd.DataFrame, test_fraction: float, seed: int | None,
                          subset: np.ndarray | None = None) -> np.ndarray:
    """Participant-grouped, label x site stratified hold-out; returns test sample indices."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"expected 0 < test_fraction < 1, got {test_fraction}")
    sub = samples if subset is None else samples.iloc[subset]
    n_splits = max(2, int(round(1.0 / test_fraction)))
    n_groups = sub["participant"].nunique()
    if n_groups < n_splits:
        raise ValueError(f"a {test_fraction:.0%} hold-out needs at least {n_splits} participants, got {n_groups}")
    site_code = pd.factorize(sub["site"].to_numpy())[0]
    strata = sub["label"].to_numpy() * (site_code.max() + 1) + site_code
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=_repeat_seeds(seed, 1)[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        _, test = next(cv.split(np.zeros(len(sub)), strata, sub["participant"].to_numpy()))
    return test if subset is None else subset[test]


def few_shot_splits(
    samples: pd.DataFrame,
    *,
    ks: Sequence[int] = (1, 2, 4, 8, 16, 32),
    n_draws: int = 10,
    test_fraction: float = 0.3,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Few-shot draws of k labelled participants per class, tested on one fixed held-out set.

    The held-out set (about ``test_fraction`` of the participants, stratified by diagnosis x
    site) is drawn once; every draw picks k patients and k controls from the remaining pool
    (all their scans are used for training). Values of k larger than the pool allows are
    skipped with a warning.

    Parameters
    ----------
    samples : DataFrame
        ``sample_id, participant, site, label``.
    ks : sequence of int, default=(1, 2, 4, 8, 16, 32)
    n_draws : int, default=10
        Random draws per k (seeded by ``(seed, k, draw)``).
    test_fraction : float, default=0.3
    seed : int or None, default=0

    Returns
    -------
    DataFrame
        A split table, protocol ``"fewshot"``, ``repeat`` = draw, ``fold`` = k.
    """
    samples = validate_samples(samples)
    if n_draws < 1:
        raise ValueError(f"expected n_draws >= 1, got {n_draws}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"expected ks of positive integers, got {ks}")
    test = _holdout_participants(samples, test_fraction, seed)
    pool = samples.drop(index=test).drop_duplicates("participant")
    pool_by_class = {lab: np.sort(pool.loc[pool["label"] == lab, "participant"].to_numpy()) for lab in (0, 1)}
    part_arr = samples["participant"].to_numpy()
    frames = []
    for k in ks:
        available = min(len(v) for v in pool_by_class.values())
        if k > available:
            warnings.warn(f"few-shot k={k} skipped: the training pool holds only {available} "
                          "participants of the smaller class", stacklevel=2)
            continue
        for draw in range(n_draws):
            rng = np.random.default_rng([0 if seed is None else seed, k, draw])
            chosen = np.concatenate([rng.choice(pool_by_class[lab], size=k, replace=False) for lab in (0, 1)])
            train = np.flatnonzero(np.isin(part_arr, chosen))
            meta = dict(protocol="fewshot", repeat=draw, fold=k, fold_name=f"k={k}")
            frames += [_rows(samples, train, role="train", **meta), _rows(samples, test, role="test", **meta)]
    if not frames:
        raise ValueError(f"no few-shot k in {ks} fits the training pool")
    return _finish(frames)


def zero_shot_splits(
    samples: pd.DataFrame,
    *,
    n_repeats: int = 5,
    test_fraction: float = 0.3,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Zero-shot splits: a normative model is fitted on controls only.

    Per repeat, about ``test_fraction`` of the control participants (stratified by site) are
    held out; ``train`` = the other controls, ``test`` = held-out controls + all patients.

    Parameters
    ----------
    samples : DataFrame
        ``sample_id, participant, site, label``.
    n_repeats : int, default=5
    test_fraction : float, default=0.3
    seed : int or None, default=0

    Returns
    -------
    DataFrame
        A split table, protocol ``"zeroshot"``, ``fold`` = 0.
    """
    samples = validate_samples(samples)
    if n_repeats < 1:
        raise ValueError(f"expected n_repeats >= 1, got {n_repeats}")
    per_class = _participants_per_class(samples)
    if per_class[1] == 0:
        raise ValueError("zero-shot evaluation needs patients (label 1) in the test part, got none")
    labels = samples["label"].to_numpy()
    controls = np.flatnonzero(labels == 0)
    patients = np.flatnonzero(labels == 1)
    frames = []
    for repeat, rs in enumerate(_repeat_seeds(seed, n_repeats)):
        held = _holdout_participants(samples, test_fraction, rs, subset=controls)
        train = np.setdiff1d(controls, held)
        meta = dict(protocol="zeroshot", repeat=repeat, fold=0, fold_name="holdout")
        frames += [_rows(samples, train, role="train", **meta),
                   _rows(samples, np.concatenate([held, patients]), role="test", **meta)]
    return _finish(frames)


def check_splits(splits: pd.DataFrame) -> None:
    """Raise if a split table leaks participants or breaks its protocol's guarantees.

    Parameters
    ----------
    splits : DataFrame
        A split table (columns :data:`SPLIT_COLUMNS`).

    Raises
    ------
    LeakageError
        A participant in both roles of a fold, or a patient in a zero-shot training part.
    ValueError
        Malformed table, a sample twice in one fold, k-fold test parts that do not cover every
        sample once per repeat, few-shot draws without exactly k participants per class or with
        a test part that changes between draws.
    """
    missing = [c for c in SPLIT_COLUMNS if c not in splits.columns]
    if missing:
        raise ValueError(f"split table is missing columns {missing}; got {list(splits.columns)}")
    roles = set(splits["role"].astype(str).unique())
    if not roles <= {"train", "test"}:
        raise ValueError(f"expected roles 'train' and 'test', got {sorted(roles)}")
    keys = ["protocol", "repeat", "fold"]
    if splits.duplicated([*keys, "sample_id"]).any():
        raise ValueError("a sample appears twice in the same fold of the split table")
    both = splits.groupby([*keys, "participant"])["role"].nunique()
    leaked = both[both > 1]
    if len(leaked):
        first = leaked.index[0]
        raise LeakageError(
            f"participant {first[3]!r} is in both the training and the test part of "
            f"{first[0]} repeat {first[1]} fold {first[2]} ({len(leaked)} leaks in total)"
        )
    test = splits[splits["role"].to_numpy() == "test"]
    train = splits[splits["role"].to_numpy() == "train"]
    kf = test[test["protocol"].to_numpy() == "kfold"]
    if len(kf):
        n_in = kf.groupby(["repeat", "sample_id"]).size()
        all_samples = splits.loc[splits["protocol"].to_numpy() == "kfold", "sample_id"].unique()
        per_repeat = kf.groupby("repeat")["sample_id"].nunique()
        if (n_in != 1).any() or (per_repeat != len(all_samples)).any():
            raise ValueError("k-fold test parts must hold every sample exactly once per repeat")
    fs_train = train[train["protocol"].to_numpy() == "fewshot"]
    if len(fs_train):
        counts = fs_train.groupby(["repeat", "fold", "label"])["participant"].nunique()
        bad = counts[counts.to_numpy() != counts.index.get_level_values("fold").to_numpy()]
        n_classes = fs_train.groupby(["repeat", "fold"])["label"].nunique()
        if len(bad) or (n_classes != 2).any():
            raise ValueError("few-shot training parts must hold exactly k participants of each class")
        fs_test = test[test["protocol"].to_numpy() == "fewshot"]
        sets = fs_test.groupby(["repeat", "fold"])["sample_id"].apply(lambda s: tuple(sorted(s)))
        if sets.nunique() > 1:
            raise ValueError("few-shot test parts must be the same fixed held-out set for every k and draw")
    zs_train = train[train["protocol"].to_numpy() == "zeroshot"]
    if (zs_train["label"].to_numpy() == 1).any():
        raise LeakageError("zero-shot training parts must hold controls only, found patients")


def iter_folds(splits: pd.DataFrame, sample_ids: Sequence[str] | np.ndarray,
               *, protocol: str | None = None) -> Iterator[Fold]:
    """Yield the folds of a split table as positions into ``sample_ids``.

    Parameters
    ----------
    splits : DataFrame
        A split table.
    sample_ids : sequence of str, shape (N,)
        The order of the caller's data arrays. Every sample of the table must be present.
    protocol : str, optional
        Only this protocol.

    Yields
    ------
    Fold
    """
    index = pd.Index(np.asarray(sample_ids).astype(str))
    if index.has_duplicates:
        raise ValueError("expected unique sample_ids")
    table = splits if protocol is None else splits[splits["protocol"].to_numpy() == protocol]
    pos = index.get_indexer(table["sample_id"].astype(str).to_numpy())
    if (pos < 0).any():
        absent = table["sample_id"].to_numpy()[pos < 0][:5].tolist()
        raise ValueError(f"split table names samples absent from sample_ids, e.g. {absent}")
    table = table.assign(_pos=pos)
    for (proto, repeat, fold), grp in table.groupby(["protocol", "repeat", "fold"], sort=False):
        is_test = grp["role"].to_numpy() == "test"
        yield Fold(
            protocol=str(proto),
            repeat=int(repeat),
            fold=int(fold),
            fold_name=str(grp["fold_name"].iloc[0]),
            train=grp["_pos"].to_numpy()[~is_test],
            test=grp["_pos"].to_numpy()[is_test],
        )


def save_splits(splits: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Check a split table and write it atomically as CSV; returns the path."""
    check_splits(splits)
    path = Path(path)
    with atomic_path(path) as tmp:
        splits[list(SPLIT_COLUMNS)].to_csv(tmp, index=False)
    return path


def load_splits(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a split table written by :func:`save_splits` and check it again.

    Ids are read as strings (so ``"007"`` stays ``"007"``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no split file at {path}")
    table = pd.read_csv(
        path,
        dtype={"protocol": str, "fold_name": str, "sample_id": str, "participant": str, "site": str, "role": str},
    )
    check_splits(table)
    for col in ("repeat", "fold", "label"):
        table[col] = table[col].astype(np.int64)
    return table[list(SPLIT_COLUMNS)]
