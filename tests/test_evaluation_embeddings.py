"""Tests of bmlib.evaluation.embeddings: 2-D projections and site decoding on planted cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bmlib.evaluation import embeddings as E


def _cohort(n_part: int = 40, n_sites: int = 4, p: int = 30, site_effect: float = 0.0, seed: int = 0,
            fingerprint: float = 0.0) -> tuple[np.ndarray, pd.DataFrame]:  # fmt: skip
    """Two sessions per participant; each participant belongs to one site (sites in 2 datasets)."""
    rng = np.random.default_rng(seed)
    site_of = rng.permutation(np.arange(n_part) % n_sites)  # balanced sites
    site_means = rng.normal(size=(n_sites, p))
    person = rng.normal(size=(n_part, p))
    rows, emb = [], []
    for sess in (1, 2):
        emb.append(site_effect * site_means[site_of] + fingerprint * person + rng.normal(size=(n_part, p)))
        rows += [{"sample_id": f"sub-{i:03d}_ses-{sess}", "participant": f"sub-{i:03d}",
                  "dataset": f"ds{site_of[i] % 2}", "site": f"site-{site_of[i]}", "session": str(sess)}
                 for i in range(n_part)]  # fmt: skip
    return np.concatenate(emb), pd.DataFrame(rows)


def test_pca_projection_is_a_tidy_table_matching_sklearn():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, meta = _cohort(site_effect=2.0)
    frame = E.project_embeddings(x, meta)
    assert list(frame.columns) == [*E.PROJECTION_COLUMNS, "session"] and len(frame) == len(meta)
    assert (frame["sample_id"] == meta["sample_id"]).all()  # input order kept
    ref = PCA(n_components=2, random_state=0).fit(StandardScaler().fit_transform(x))
    xy = ref.transform(StandardScaler().fit_transform(x))
    np.testing.assert_allclose(np.abs(frame[["x", "y"]].to_numpy()), np.abs(xy), atol=1e-8)
    evr = frame.attrs["explained_variance_ratio"]
    assert frame.attrs["method"] == "pca" and evr == pytest.approx(ref.explained_variance_ratio_.tolist())
    # a strong planted site effect dominates the first components: site means are far apart
    centres = frame.groupby("site")[["x", "y"]].mean().to_numpy()
    spread = frame.groupby("site")[["x", "y"]].std().to_numpy().mean()
    assert np.linalg.norm(centres[:, None] - centres[None], axis=-1).max() > 2 * spread
    raw = E.project_embeddings(x, meta.drop(columns="session"), standardize=False)
    assert "session" not in raw.columns


def test_tsne_projection_is_seeded():
    x, meta = _cohort(n_part=15)
    a = E.project_embeddings(x, meta, method="tsne", seed=1)
    b = E.project_embeddings(x, meta, method="tsne", seed=1)
    np.testing.assert_allclose(a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy())
    assert a.attrs["method"] == "tsne" and a.attrs["perplexity"] == pytest.approx(29 / 3)


def test_projection_input_errors():
    x, meta = _cohort(n_part=5)
    with pytest.raises(ValueError, match="method in"):
        E.project_embeddings(x, meta, method="umap")
    with pytest.raises(ValueError, match=r"missing \['site'\]"):
        E.project_embeddings(x, meta.drop(columns="site"))
    with pytest.raises(ValueError, match="metadata with 10 rows"):
        E.project_embeddings(x, meta.iloc[:4])
    with pytest.raises(TypeError, match="metadata as a DataFrame"):
        E.project_embeddings(x, meta.to_numpy())
    with pytest.raises(ValueError, match=r"\(n_scans, n_features\), got shape \(10,\)"):
        E.project_embeddings(x[:, 0], meta)
    with pytest.raises(ValueError, match="finite embeddings"):
        E.project_embeddings(np.full_like(x, np.nan), meta)


def test_site_decoding_finds_a_planted_site_effect_and_not_noise():
    x, meta = _cohort(site_effect=1.0)
    strong = E.site_decoding(x, meta["site"], meta["participant"])
    assert strong.balanced_accuracy > 0.9 and strong.chance == 0.25 and strong.n_sites == 4
    assert strong.n_scans == 80 and strong.n_participants == 40
    assert strong.confusion.shape == (4, 4) and int(strong.confusion.to_numpy().sum()) == 80
    null = []
    for seed in range(5):  # no site effect: chance, on average over seeds
        xs, ms = _cohort(seed=seed)
        null.append(E.site_decoding(xs, ms["site"], ms["participant"]).balanced_accuracy)
    assert np.mean(null) == pytest.approx(0.25, abs=0.1)
    assert E.site_decoding(x, meta["site"], meta["participant"], seed=3).as_dict()["n_splits"] == 5


def test_site_decoding_groups_folds_by_participant():
    # no site effect, but a strong per-participant fingerprint shared by both sessions: folds that
    # split a participant's sessions would let the classifier recognise the person (and so the site)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import balanced_accuracy_score

    x, meta = _cohort(n_part=40, p=60, fingerprint=3.0, seed=1)
    leaky = cross_val_predict(LogisticRegression(max_iter=2000), x, meta["site"],
                              cv=StratifiedKFold(5, shuffle=True, random_state=0))  # fmt: skip
    assert balanced_accuracy_score(meta["site"], leaky) > 0.6  # the trap is real
    grouped = E.site_decoding(x, meta["site"], meta["participant"])
    assert grouped.balanced_accuracy < 0.25 + 0.15


def test_site_decoding_input_errors():
    x, meta = _cohort(n_part=8)
    with pytest.raises(ValueError, match="at least 2 sites"):
        E.site_decoding(x, np.repeat("a", 16), meta["participant"])
    with pytest.raises(ValueError, match=r"participants of shape \(16,\)"):
        E.site_decoding(x, meta["site"], meta["participant"][:3])
    with pytest.raises(ValueError, match=r"n_splits <= the number of participants \(8\), got 9"):
        E.site_decoding(x, meta["site"], meta["participant"], n_splits=9)
    with pytest.raises(ValueError, match="n_splits an int >= 2"):
        E.site_decoding(x, meta["site"], meta["participant"], n_splits=1)
    with pytest.raises(ValueError, match="C > 0"):
        E.site_decoding(x, meta["site"], meta["participant"], C=0)
    with pytest.raises(ValueError, match="no missing values in sites"):
        E.site_decoding(x, meta["site"].where(meta.index > 0), meta["participant"])


def test_site_decoding_table_one_row_per_representation() -> None:
    rng = np.random.default_rng(0)
    sites = np.repeat(["s1", "s2"], 40)
    participants = np.repeat(np.arange(40), 2)  # two scans per participant, same site
    informative = rng.normal(size=(80, 5)) + (sites == "s1")[:, None] * 3.0
    table = E.site_decoding_table({"site_info": informative, "noise": rng.normal(size=(80, 5))}, sites, participants,
                                n_splits=4, seed=0)  # fmt: skip
    assert list(table.index) == ["site_info", "noise"] and set(table["chance"]) == {0.5}
    assert table.loc["site_info", "balanced_accuracy"] > 0.9 and table.loc["noise", "balanced_accuracy"] < 0.75
    with pytest.raises(ValueError, match="non-empty mapping"):
        E.site_decoding_table({}, sites, participants)
