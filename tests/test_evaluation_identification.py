"""Tests of bmlib.evaluation.identification: session-to-session fingerprinting on hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bmlib.evaluation import identification as ID


def _two_sessions(x_a: np.ndarray, x_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack session-1 and session-2 rows of n participants: (2n, P), participants, sessions."""
    n = x_a.shape[0]
    parts = np.tile([f"sub-{i:03d}" for i in range(n)], 2)
    sess = np.repeat(["1", "2"], n)
    return np.concatenate([x_a, x_b]), parts, sess


def test_identical_sessions_are_identified_perfectly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 30))
    emb, parts, sess = _two_sessions(x, x)
    for metric in ("pearson", "cosine"):
        res = ID.identification_accuracy(emb, parts, sess, metric=metric)
        assert res.accuracy == res.accuracy_ab == res.accuracy_ba == 1.0
        assert res.chance == pytest.approx(1 / 12) and res.n_participants == 12
        assert res.similarity.shape == (12, 12)
        np.testing.assert_allclose(np.diag(res.similarity), 1.0)
        assert len(res.excluded) == 0 and (res.sessions == ["1", "2"]).all()


def test_noise_is_at_chance():
    rng = np.random.default_rng(1)
    n, reps = 20, 100
    accs = [ID.identification_accuracy(*_two_sessions(rng.normal(size=(n, 15)), rng.normal(size=(n, 15)))).accuracy
            for _ in range(reps)]  # fmt: skip
    # mean of 100 x 40 near-independent Bernoulli(1/20) draws: sd ~ 0.0035
    assert np.mean(accs) == pytest.approx(1 / n, abs=0.012)


def test_shuffled_second_session_fails_and_noise_level_orders_accuracy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 40))
    perm = np.roll(np.arange(25), 1)  # every participant's session 2 belongs to someone else
    assert ID.identification_accuracy(*_two_sessions(x, x[perm])).accuracy == 0.0
    accs = [ID.identification_accuracy(*_two_sessions(x, x + s * rng.normal(size=x.shape))).accuracy
            for s in (0.2, 1.0, 5.0)]  # fmt: skip
    assert accs[0] == 1.0 and accs[0] >= accs[1] >= accs[2] and accs[2] < 0.5


def test_directions_are_averaged():
    # session A of p0 and p1 both resemble session B of p0: A->B gets 1/2 right, B->A gets 2/2
    a = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]])
    b = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    res = ID.identification_accuracy(*_two_sessions(a, b), metric="cosine")
    assert res.accuracy_ab == 0.5 and res.accuracy_ba == 1.0 and res.accuracy == 0.75


def test_ties_score_chance_and_collapsed_embeddings_are_at_chance():
    emb, parts, sess = _two_sessions(np.ones((8, 5)), np.ones((8, 5)))
    res = ID.identification_accuracy(emb, parts, sess, metric="cosine")
    assert res.accuracy == pytest.approx(1 / 8) == pytest.approx(res.chance)
    # Pearson of constant rows is undefined: similarity 0 everywhere, again chance
    assert ID.identification_accuracy(emb, parts, sess).accuracy == pytest.approx(1 / 8)


def test_pearson_ignores_offsets_and_cosine_does_not():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 50))
    offsets = np.linspace(-20, 20, 10)[:, None]  # large per-row offsets on session 2
    emb, parts, sess = _two_sessions(x, x + offsets)
    assert ID.identification_accuracy(emb, parts, sess, metric="pearson").accuracy == 1.0
    assert ID.identification_accuracy(emb, parts, sess, metric="cosine").accuracy < 0.5


def test_single_session_participants_are_excluded_and_reported():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 10))
    emb, parts, sess = _two_sessions(x, x)
    # two extra participants with one session only, and a third session for sub-000
    emb = np.concatenate([emb, rng.normal(size=(3, 10))])
    parts = np.concatenate([parts, ["solo-a", "solo-b", "sub-000"]])
    sess = np.concatenate([sess, ["1", "2", "3"]])
    res = ID.identification_accuracy(emb, parts, sess)
    assert res.n_participants == 6 and res.accuracy == 1.0 and res.chance == pytest.approx(1 / 6)
    assert res.excluded.tolist() == ["solo-a", "solo-b"]
    assert sorted(res.participants.tolist()) == [f"sub-{i:03d}" for i in range(6)]
    # default pair: the first two sessions (numeric order "2" < "10"), so sub-000 uses 1 and 2
    assert res.sessions[res.participants.tolist().index("sub-000")].tolist() == ["1", "2"]
    # an explicit pair: sub-000's session 3 versus 1 -> noise, the others have no session 3
    with pytest.raises(ValueError, match=r"at least 2 participants with both sessions \('1', '3'\), got 1"):
        ID.identification_accuracy(emb, parts, sess, session_pair=(1, 3))
    out = ID.identification_accuracy(emb, parts, sess, session_pair=("2", "1"))
    assert (out.sessions == ["2", "1"]).all() and out.accuracy == 1.0


def test_numeric_session_order_and_pandas_inputs():
    x = np.eye(4)
    frame = pd.DataFrame({"participant": ["p", "q", "p", "q"], "session": ["10", "10", "2", "2"]})
    emb = np.stack([x[0], x[1], x[0] + 0.01, x[1] + 0.01])
    res = ID.identification_accuracy(emb, frame["participant"], frame["session"])
    assert res.sessions.tolist() == [["2", "10"], ["2", "10"]] and res.accuracy == 1.0


def test_input_validation_messages():
    emb, parts, sess = _two_sessions(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match=r"embeddings of shape \(n_scans, n_features\), got shape \(6,\)"):
        ID.identification_accuracy(emb[:, 0], parts, sess)
    with pytest.raises(ValueError, match=r"participants of shape \(6,\) \(one per scan\), got shape \(5,\)"):
        ID.identification_accuracy(emb, parts[:5], sess)
    with pytest.raises(ValueError, match="finite embeddings"):
        ID.identification_accuracy(np.where(emb == 1, np.nan, emb), parts, sess)
    with pytest.raises(ValueError, match="no missing values in sessions"):
        ID.identification_accuracy(emb, parts, np.array(["1", None, "1", "2", "2", "2"], dtype=object))
    with pytest.raises(ValueError, match="metric in"):
        ID.identification_accuracy(emb, parts, sess, metric="euclid")
    dup_sess = sess.copy()
    dup_sess[3] = "1"  # sub-000 has two session-1 scans
    with pytest.raises(ValueError, match="one scan per \\(participant, session\\).*'sub-000' session '1'"):
        ID.identification_accuracy(emb, parts, dup_sess)
    with pytest.raises(ValueError, match="at least 2 participants with two sessions, got 0"):
        ID.identification_accuracy(emb[:3], parts[:3], sess[:3])
    with pytest.raises(ValueError, match="two different session labels"):
        ID.identification_accuracy(emb, parts, sess, session_pair=("1", "1"))


def test_similarity_matrix_matches_numpy():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(4, 9)), rng.normal(size=(3, 9))
    expected = np.corrcoef(np.concatenate([a, b]))[:4, 4:]
    np.testing.assert_allclose(ID.similarity_matrix(a, b), expected, atol=1e-12)
    cos = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    np.testing.assert_allclose(ID.similarity_matrix(a, b, metric="cosine"), cos, atol=1e-12)
    with pytest.raises(ValueError, match="same number of features"):
        ID.similarity_matrix(a, b[:, :5])


def test_identification_table_compares_representations():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(15, 20))
    good, parts, sess = _two_sessions(x, x + 0.1 * rng.normal(size=x.shape))
    noise = rng.normal(size=good.shape)
    table = ID.identification_table({"good": good, "noise": noise}, parts, sess)
    assert list(table.index) == ["good", "noise"] and table.index.name == "representation"
    assert {"accuracy", "chance", "n_participants", "n_excluded", "metric"} <= set(table.columns)
    assert table.loc["good", "accuracy"] == 1.0 and table.loc["noise", "accuracy"] < 0.5
    np.testing.assert_allclose(table["chance"], 1 / 15)
    with pytest.raises(ValueError, match="non-empty mapping"):
        ID.identification_table({}, parts, sess)
