"""Participant-grouped splits: no leakage, stratification, round trips, few-/zero-shot guarantees."""

from __future__ import annotations

import pandas as pd
import pytest
from evaluation_toys import samples_table, toy_series

from bmlib.evaluation.splits import (
    LeakageError,
    check_splits,
    few_shot_splits,
    iter_folds,
    kfold_splits,
    load_splits,
    loso_splits,
    save_splits,
    zero_shot_splits,
)


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    manifest, _ = toy_series(40, n_sites=3, sessions=3, n_rois=4, n_timepoints=10)
    return samples_table(manifest)


def _assert_no_crossing(splits: pd.DataFrame) -> None:
    for _, grp in splits.groupby(["protocol", "repeat", "fold"]):
        train = set(grp.loc[grp["role"] == "train", "participant"])
        test = set(grp.loc[grp["role"] == "test", "participant"])
        assert train and test and not train & test


def test_kfold_grouped_stratified_repeated(samples: pd.DataFrame) -> None:
    splits = kfold_splits(samples, n_splits=4, n_repeats=3, seed=1)
    _assert_no_crossing(splits)
    test = splits[splits["role"] == "test"]
    # every sample tested exactly once per repeat, all sessions of a participant in one fold
    assert (test.groupby(["repeat", "sample_id"]).size() == 1).all()
    assert test.groupby("repeat")["sample_id"].nunique().eq(len(samples)).all()
    assert (test.groupby(["repeat", "participant"])["fold"].nunique() == 1).all()
    # stratified: every test fold holds both classes and every site, class share near 50%
    assert (test.groupby(["repeat", "fold"])["label"].nunique() == 2).all()
    assert (test.groupby(["repeat", "fold"])["site"].nunique() == 3).all()
    share = test.groupby(["repeat", "fold"])["label"].mean()
    assert share.between(0.3, 0.7).all()
    # repeats reshuffle
    folds = test.pivot_table(index="sample_id", columns="repeat", values="fold")
    assert not (folds[0] == folds[1]).all()
    # deterministic given the seed
    pd.testing.assert_frame_equal(splits, kfold_splits(samples, n_splits=4, n_repeats=3, seed=1))


def test_kfold_refuses_too_few_participants(samples: pd.DataFrame) -> None:
    small = samples[samples["participant"].isin(["p000", "p001", "p002", "p003"])]
    with pytest.raises(ValueError, match="needs at least 5 participants per class, got 2 patients"):
        kfold_splits(small, n_splits=5)


def test_sample_table_errors(samples: pd.DataFrame) -> None:
    bad = samples.copy()
    bad.loc[0, "label"] = 1 - bad.loc[0, "label"]
    with pytest.raises(ValueError, match="have scans with different labels"):
        kfold_splits(bad)
    with pytest.raises(ValueError, match="missing columns"):
        kfold_splits(samples.drop(columns="site"))
    with pytest.raises(ValueError, match="expected unique sample ids"):
        kfold_splits(pd.concat([samples, samples.iloc[:1]]))
    with pytest.raises(ValueError, match=r"expected labels in \{0, 1\}"):
        kfold_splits(samples.assign(label=samples["label"] + 1))


def test_check_splits_catches_planted_leak(samples: pd.DataFrame) -> None:
    splits = kfold_splits(samples, n_splits=4, seed=0)
    leaky = splits.copy()
    # move one session of a test participant into the training part of the same fold
    row = leaky.index[(leaky["role"] == "test") & (leaky["fold"] == 0)][0]
    leaky.loc[row, "role"] = "train"
    with pytest.raises(LeakageError, match=r"participant 'p\d+' is in both the training and the test part"):
        check_splits(leaky)


def test_loso_holds_out_sites_and_multisite_participants(samples: pd.DataFrame) -> None:
    moved = samples.copy()
    moved.loc[moved["sample_id"] == "s000_ses2", "site"] = "site1"  # p000 scanned at site0 and site1
    splits = loso_splits(moved)
    _assert_no_crossing(splits)
    test = splits[splits["role"] == "test"]
    assert sorted(test["fold_name"].unique()) == ["site0", "site1", "site2"]
    assert (test.groupby("fold")["site"].nunique() == 1).all()
    train = splits[splits["role"] == "train"]
    assert "p000" not in set(train.loc[train["fold_name"].isin(["site0", "site1"]), "participant"])
    assert "p000" in set(train.loc[train["fold_name"] == "site2", "participant"])
    with pytest.raises(ValueError, match="needs at least 2 sites, got 1"):
        loso_splits(samples.assign(site="one"))


def test_round_trip_keeps_string_ids(tmp_path, samples: pd.DataFrame) -> None:
    s = samples.assign(participant=samples["participant"].str.replace("p", "0"),
                       sample_id="00" + samples["sample_id"])
    splits = kfold_splits(s, n_splits=3, n_repeats=2, seed=3)
    path = save_splits(splits, tmp_path / "splits.csv")
    back = load_splits(path)
    pd.testing.assert_frame_equal(back, splits, check_dtype=False)
    assert back["participant"].iloc[0].startswith("0")
    raw = pd.read_csv(path, dtype=str)
    raw.loc[raw.index[(raw["role"] == "test") & (raw["fold"] == "0")][0], "role"] = "train"
    raw.to_csv(path, index=False)
    with pytest.raises(LeakageError):
        load_splits(path)
    with pytest.raises(FileNotFoundError, match="no split file"):
        load_splits(tmp_path / "absent.csv")


def test_iter_folds_positions(samples: pd.DataFrame) -> None:
    splits = kfold_splits(samples, n_splits=3, seed=0)
    order = samples["sample_id"].to_numpy()[::-1]
    folds = list(iter_folds(splits, order))
    assert len(folds) == 3
    for f in folds:
        got = set(order[f.test])
        want = set(splits.loc[(splits["fold"] == f.fold) & (splits["role"] == "test"), "sample_id"])
        assert got == want and not set(f.train) & set(f.test)
    with pytest.raises(ValueError, match="absent from sample_ids"):
        list(iter_folds(splits, order[1:]))


def test_few_shot_k_per_class_and_fixed_heldout(samples: pd.DataFrame) -> None:
    with pytest.warns(UserWarning, match="k=32 skipped"):
        splits = few_shot_splits(samples, ks=(1, 2, 4, 32), n_draws=5, test_fraction=0.25, seed=0)
    _assert_no_crossing(splits)
    train = splits[splits["role"] == "train"]
    counts = train.groupby(["fold", "repeat", "label"])["participant"].nunique()
    assert (counts == counts.index.get_level_values("fold")).all()
    assert sorted(train["fold"].unique()) == [1, 2, 4]
    # all sessions of a drawn participant are used
    assert (train.groupby(["fold", "repeat", "participant"]).size() == 3).all()
    test = splits[splits["role"] == "test"]
    heldout = set(test["participant"])
    assert test.groupby(["fold", "repeat"])["sample_id"].apply(frozenset).nunique() == 1
    assert not heldout & set(train["participant"])
    assert 0.15 < len(heldout) / samples["participant"].nunique() < 0.35
    draws = train[train["fold"] == 4].groupby("repeat")["participant"].apply(frozenset)
    assert draws.nunique() > 1


def test_zero_shot_trains_on_controls_only(samples: pd.DataFrame) -> None:
    splits = zero_shot_splits(samples, n_repeats=3, test_fraction=0.3, seed=0)
    _assert_no_crossing(splits)
    train = splits[splits["role"] == "train"]
    test = splits[splits["role"] == "test"]
    assert (train["label"] == 0).all()
    n_pat = int(samples["label"].sum())
    assert (test.groupby("repeat")["label"].sum() == n_pat).all()  # every patient tested
    assert (test.groupby("repeat")["label"].apply(lambda s: (s == 0).sum()) > 0).all()
    bad = splits.copy()
    bad.loc[bad.index[(bad["role"] == "test") & (bad["label"] == 1)], "role"] = "train"
    with pytest.raises(LeakageError):
        check_splits(bad)
