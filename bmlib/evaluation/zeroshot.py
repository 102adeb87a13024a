"""Zero-shot screening: a normative model of controls, no patient labels at all.

A :class:`NormativeModel` is fitted on the representations of control participants only
(standardised, reduced by PCA, both fitted on the training controls); its anomaly score of a
new scan is the distance to that control distribution:

- ``"mahalanobis"``: Mahalanobis distance under a Ledoit-Wolf covariance of the PCA scores;
- ``"knn"``: mean Euclidean distance to the ``n_neighbors`` nearest training controls
  (PCA space).

Evaluated as the ROC AUC of patients vs **held-out** controls (see
:func:`bmlib.evaluation.splits.zero_shot_splits`), and as sensitivity / specificity at the
threshold that flags 5% of the training controls (``quantile=0.95``).
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

__all__ = ["NORMATIVE_METHODS", "NormativeModel"]

NORMATIVE_METHODS: tuple[str, ...] = ("mahalanobis", "knn")


class NormativeModel:
    """Distance to the controls' distribution in a representation space.

    Parameters
    ----------
    method : {"mahalanobis", "knn"}, default="mahalanobis"
    n_components : int, default=20
        PCA components, clipped to ``n_controls - 1`` and the feature count.
    n_neighbors : int, default=5
        For ``"knn"``; clipped to ``n_controls - 1``.
    quantile : float, default=0.95
        ``threshold_`` = this quantile of the (leave-one-out for kNN) training scores.
    seed : int or None, default=0
        For the randomised PCA solver.
    """

    def __init__(self, method: str = "mahalanobis", *, n_components: int = 20, n_neighbors: int = 5,
                 quantile: float = 0.95, seed: int | None = 0) -> None:
        if method not in NORMATIVE_METHODS:
            raise ValueError(f"expected method in {NORMATIVE_METHODS}, got {method!r}")
        if n_components < 1 or n_neighbors < 1:
            raise ValueError(f"expected n_components, n_neighbors >= 1, got {n_components}, {n_neighbors}")
        if not 0 < quantile < 1:
            raise ValueError(f"expected 0 < quantile < 1, got {quantile}")
        self.method = method
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.quantile = quantile
        self.seed = seed

    @staticmethod
    def _check(X: np.ndarray, n_features: int | None = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"expected 2D features (n_samples, n_features), got shape {X.shape}")
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError(f"expected {n_features} features as in fit, got {X.shape[1]}")
        return X

    def fit(self, X_controls: np.ndarray) -> NormativeModel:
        """Fit on controls only.

        Parameters
        ----------
        X_controls : ndarray, shape (n_controls, n_features)
        """
        X = self._check(X_controls)
        if X.shape[0] < 3:
            raise ValueError(f"a normative model needs at least 3 controls, got {X.shape[0]}")
        self.n_features_in_ = X.shape[1]
        self.scaler_ = StandardScaler().fit(X)
        n_comp = max(1, min(self.n_components, X.shape[0] - 1, X.shape[1]))
        self.pca_ = PCA(n_components=n_comp, random_state=self.seed).fit(self.scaler_.transform(X))
        Z = self.pca_.transform(self.scaler_.transform(X))  # (n, c)
        if self.method == "mahalanobis":
            self.cov_ = LedoitWolf().fit(Z)
            train_scores = self._score_z(Z)
        else:
            k = max(1, min(self.n_neighbors, Z.shape[0] - 1))
            self.nn_ = NearestNeighbors(n_neighbors=k).fit(Z)
            dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)
            train_scores = dist[:, 1:].mean(axis=1)  # leave the point itself out
        self.threshold_ = float(np.quantile(train_scores, self.quantile))
        return self

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        if self.method == "mahalanobis":
            return np.sqrt(np.maximum(self.cov_.mahalanobis(Z), 0.0))
        dist, _ = self.nn_.kneighbors(Z)
        return dist.mean(axis=1)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores (n_samples,), higher = further from the controls."""
        if not hasattr(self, "pca_"):
            raise RuntimeError("call fit() before score()")
        X = self._check(X, self.n_features_in_)
        return self._score_z(self.pca_.transform(self.scaler_.transform(X)))
