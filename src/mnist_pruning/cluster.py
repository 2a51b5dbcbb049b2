"""k-means on an embedding: centroids, each point's cluster and its distance to that centroid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KMeansFit:
    centroids: np.ndarray  # (clusters, d) float32
    assignments: np.ndarray  # (n,) int64, cluster of each point
    distances: np.ndarray  # (n,) float32, Euclidean distance to its own centroid
    inertia: float


KMeansFn = Callable[[np.ndarray, int, int], KMeansFit]


def kmeans(x: np.ndarray, n_clusters: int, seed: int, max_iter: int = 100, tol: float = 1e-4) -> KMeansFit:
    """Fit k-means (k-means++ init, one run) with scikit-learn; deterministic for a seed."""
    from sklearn.cluster import KMeans

    if not 1 <= n_clusters <= len(x):
        raise ValueError(f"clusters must be in [1, {len(x)}], got {n_clusters}")
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed, max_iter=max_iter, tol=tol)
    assignments = km.fit_predict(x).astype(np.int64)
    centroids = km.cluster_centers_.astype(np.float32)
    return fit_from_centroids(x, centroids, assignments)


def fit_from_centroids(x: np.ndarray, centroids: np.ndarray, assignments: np.ndarray) -> KMeansFit:
    distances = np.linalg.norm(x - centroids[assignments], axis=1).astype(np.float32)
    return KMeansFit(
        centroids=centroids,
        assignments=assignments,
        distances=distances,
        inertia=float(np.sum(distances.astype(np.float64) ** 2)),
    )
