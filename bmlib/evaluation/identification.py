"""Participant identification ("fingerprinting") across sessions from embeddings or FC.

Finn et al. (2015, Nat Neurosci) showed that a participant's FC is distinctive enough to pick
them out of a group: for every participant, the scan of one session (the *target*) is compared
with the scans of another session of **all** participants (the *database*), and the most
similar one is the prediction. Identification accuracy is the fraction of participants whose
own scan is the most similar; both directions (session A -> B and B -> A) are averaged.
Chance is ``1 / n`` for ``n`` participants.

Here any per-scan representation can be compared: pooled encoder embeddings (pretrained versus
a random-init encoder of the same architecture) or the vectorised FC itself (the classical
reference). Only participants with at least two sessions take part; the others are reported.

Ties: a participant whose own scan ties with ``t - 1`` others for the highest similarity
scores ``1 / t`` (the expected accuracy of a random tie-break), so a collapsed representation
(every scan equal) scores exactly chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["IdentificationResult", "identification_accuracy", "identification_table", "similarity_matrix"]

Metric = Literal["pearson", "cosine"]
_METRICS = ("pearson", "cosine")


@dataclass(frozen=True)
class IdentificationResult:
    """Outcome of :func:`identification_accuracy`.

    Attributes
    ----------
    accuracy : float
        Mean of the two directions.
    accuracy_ab, accuracy_ba : float
        Session A scans matched among session B scans, and the reverse.
    chance : float
        ``1 / n_participants``.
    n_participants : int
        Participants with two sessions (the size of the database).
    participants : ndarray of str, shape (n,)
        Those participants, in the order of ``similarity``'s rows and columns.
    sessions : ndarray of str, shape (n, 2)
        The two sessions used per participant (A, B).
    excluded : ndarray of str
        Participants left out because they have only one session.
    similarity : ndarray of float64, shape (n, n)
        ``similarity[i, j]``: session A of participant i versus session B of participant j.
    metric : str
        ``"pearson"`` or ``"cosine"``.
    """

    accuracy: float
    accuracy_ab: float
    accuracy_ba: float
    chance: float
    n_participants: int
    participants: np.ndarray
    sessions: np.ndarray
    excluded: np.ndarray
    similarity: np.ndarray
    metric: str

    def as_dict(self) -> dict[str, Any]:
        """Scalar summary (JSON-safe): accuracies, chance, counts, metric."""
        return {"accuracy": self.accuracy, "accuracy_ab": self.accuracy_ab, "accuracy_ba": self.accuracy_ba,
                "chance": self.chance, "n_participants": self.n_participants,
                "n_excluded": int(len(self.excluded)), "metric": self.metric}  # fmt: skip


def similarity_matrix(a: Any, b: Any, *, metric: Metric = "pearson") -> np.ndarray:
    """Pairwise similarity of the rows of two matrices.

    Parameters
    ----------
    a : array-like of shape (n, P)
    b : array-like of shape (m, P)
    metric : {"pearson", "cosine"}, default="pearson"
        Pearson r between rows (each row centred over its features) or cosine similarity.

    Returns
    -------
    ndarray of float64, shape (n, m)
        Rows with zero norm (after centring) give similarity 0.

    Examples
    --------
    >>> similarity_matrix([[1.0, 2.0, 3.0]], [[2.0, 4.0, 6.0], [3.0, 2.0, 1.0]]).round(3)
    array([[ 1., -1.]])
    """
    if metric not in _METRICS:
        raise ValueError(f"expected metric in {_METRICS}, got {metric!r}")
    x, y = _as_matrix(a, "a"), _as_matrix(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"expected a and b with the same number of features, got {x.shape} and {y.shape}")
    if metric == "pearson":
        x = x - x.mean(1, keepdims=True)
        y = y - y.mean(1, keepdims=True)
    nx, ny = np.linalg.norm(x, axis=1, keepdims=True), np.linalg.norm(y, axis=1, keepdims=True)
    x = np.divide(x, nx, out=np.zeros_like(x), where=nx > 0)
    y = np.divide(y, ny, out=np.zeros_like(y), where=ny > 0)
    return x @ y.T  # (n, m)


def _as_matrix(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"expected {name} of shape (n_scans, n_features), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"expected finite {name}, got {int((~np.isfinite(arr)).sum())} non-finite entries")
    return arr


def _as_labels(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values, dtype=object)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"expected {name} of shape ({n},) (one per scan), got shape {arr.shape}")
    if pd.isna(arr).any():
        raise ValueError(f"expected no missing values in {name}, got {int(pd.isna(arr).sum())}")
    return arr.astype(str)


def _session_key(s: str) -> tuple[int, float, str]:
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def _hit_rate(sim: np.ndarray) -> float:
    """Mean over rows of ``1 / t`` if the diagonal entry ties ``t`` ways for the row maximum, else 0."""
    top = sim.max(1, keepdims=True)  # (n, 1)
    ties = (sim == top).sum(1)  # (n,)
    own = np.diagonal(sim) == top[:, 0]  # (n,)
    return float(np.mean(own / ties))


def identification_accuracy(
    embeddings: Any,
    participants: Any,
    sessions: Any,
    *,
    metric: Metric = "pearson",
    session_pair: tuple[Any, Any] | None = None,
) -> IdentificationResult:
    """Session-to-session participant identification accuracy (Finn et al. 2015).

    Parameters
    ----------
    embeddings : array-like of shape (N, P)
        One row per scan: pooled embeddings, or vectorised FC (e.g.
        ``bmlib.connectivity.vectorize(fisher_z(fc), discard_diagonal=True)``).
    participants : array-like of shape (N,)
        Participant of each scan.
    sessions : array-like of shape (N,)
        Session label of each scan; one scan per (participant, session).
    metric : {"pearson", "cosine"}, default="pearson"
        Similarity between scans (see :func:`similarity_matrix`).
    session_pair : (A, B), optional
        Compare these two session labels. Default: per participant, the first two of its
        sessions (labels sorted numerically when they are numbers, else as text).

    Returns
    -------
    IdentificationResult
        Accuracy (both directions averaged), chance ``1 / n``, the included and excluded
        participants and the (n, n) similarity matrix.

    Raises
    ------
    ValueError
        On malformed inputs, a participant with two scans of one session, or fewer than 2
        participants with two sessions.

    Examples
    --------
    >>> e = np.array([[1.0, 0, 0], [0, 1, 0], [1, 0.1, 0], [0, 1, 0.1]])
    >>> res = identification_accuracy(e, ["p1", "p2", "p1", "p2"], [1, 1, 2, 2])
    >>> res.accuracy, res.chance
    (1.0, 0.5)
    """
    if metric not in _METRICS:
        raise ValueError(f"expected metric in {_METRICS}, got {metric!r}")
    x = _as_matrix(embeddings, "embeddings")
    n = x.shape[0]
    parts = _as_labels(participants, n, "participants")
    sess = _as_labels(sessions, n, "sessions")
    table = pd.DataFrame({"participant": parts, "session": sess, "row": np.arange(n)})
    dup = table.duplicated(["participant", "session"], keep=False)
    if dup.any():
        first = table[dup].iloc[0]
        raise ValueError(
            f"expected one scan per (participant, session), got {int(dup.sum())} scans sharing a pair, "
            f"e.g. participant {first['participant']!r} session {first['session']!r}"
        )
    if session_pair is not None:
        if len(session_pair) != 2 or str(session_pair[0]) == str(session_pair[1]):
            raise ValueError(f"expected session_pair as two different session labels, got {session_pair!r}")
        a, b = (str(s) for s in session_pair)
        table = table[table["session"].isin([a, b])]
        table = table.assign(order=(table["session"] == b).astype(int))
    else:
        table = table.assign(order=table["session"].map(_session_key))
    table = table.sort_values(["participant", "order"], kind="stable")
    counts = table.groupby("participant", sort=False)["row"].size()
    eligible = counts.index[counts >= 2]
    excluded = np.asarray(sorted(set(parts) - set(eligible)), dtype=str)
    if len(eligible) < 2:
        which = "two sessions" if session_pair is None else f"both sessions {(a, b)!r}"
        raise ValueError(
            f"expected at least 2 participants with {which}, got {len(eligible)} "
            f"({len(excluded)} participant(s) have fewer)"
        )
    firsts = table[table["participant"].isin(eligible)].groupby("participant", sort=True).head(2)
    pos = firsts.groupby("participant", sort=True).cumcount().to_numpy()
    rows_a, rows_b = firsts["row"].to_numpy()[pos == 0], firsts["row"].to_numpy()[pos == 1]
    sim = similarity_matrix(x[rows_a], x[rows_b], metric=metric)  # (n, n): A of i vs B of j
    acc_ab, acc_ba = _hit_rate(sim), _hit_rate(sim.T)
    k = len(rows_a)
    return IdentificationResult(
        accuracy=(acc_ab + acc_ba) / 2, accuracy_ab=acc_ab, accuracy_ba=acc_ba, chance=1.0 / k,
        n_participants=k, participants=parts[rows_a], sessions=np.stack([sess[rows_a], sess[rows_b]], 1),
        excluded=excluded, similarity=sim, metric=metric,
    )  # fmt: skip


def identification_table(
    representations: Mapping[str, Any],
    participants: Any,
    sessions: Any,
    *,
    metric: Metric = "pearson",
    session_pair: tuple[Any, Any] | None = None,
) -> pd.DataFrame:
    """:func:`identification_accuracy` for several representations of the same scans.

    Parameters
    ----------
    representations : mapping of str to array-like (N, P_i)
        E.g. ``{"pretrained": pooled, "random init": pooled_random, "FC": fc_vectors}``.
    participants, sessions, metric, session_pair
        As in :func:`identification_accuracy`.

    Returns
    -------
    DataFrame
        One row per representation (index ``representation``) with columns ``accuracy``,
        ``accuracy_ab``, ``accuracy_ba``, ``chance``, ``n_participants``, ``n_excluded``, ``metric``.
    """
    if not isinstance(representations, Mapping) or not representations:
        raise ValueError(
            f"expected a non-empty mapping of name -> (N, P) array, got {type(representations).__name__}"
        )
    rows = {str(name): identification_accuracy(x, participants, sessions, metric=metric,
                                               session_pair=session_pair).as_dict()
            for name, x in representations.items()}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("representation")
