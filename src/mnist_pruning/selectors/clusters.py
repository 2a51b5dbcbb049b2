"""Cluster-based rules: k-means in the embedding, then a choice within each cluster.

With fewer clusters than k, every non-empty cluster gives one image and the rest is shared in
proportion to cluster size (`allocate`), so every rule keeps exactly k.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mnist_pruning.cluster import KMeansFit
from mnist_pruning.selectors import Options, register


def allocate(sizes: np.ndarray, k: int) -> np.ndarray:
    """How many to take from each cluster so that the total is exactly k.

    Every non-empty cluster gives one (so clusters == k means one per cluster); the rest is
    shared in proportion to what each cluster has left, by largest remainder, ties to the lower
    cluster index. Empty clusters give none; no cluster gives more than it has.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if k > sizes.sum():
        raise ValueError(f"cannot take {k} from clusters holding {sizes.sum()} points")
    take = (sizes > 0).astype(np.int64)
    if take.sum() > k:
        raise ValueError(f"{take.sum()} non-empty clusters cannot each give one of k={k}")
    left = k - take.sum()
    room = sizes - take
    if left > 0:
        exact = left * room / room.sum()
        base = np.floor(exact).astype(np.int64)
        rest = left - base.sum()
        order = np.lexsort((np.arange(len(sizes)), -(exact - base)))
        base[order[:rest]] += 1
        take += base
    return take


Pick = Callable[[np.ndarray, int], np.ndarray]  # (members, how many) -> the chosen members


def _take_per_cluster(fit: KMeansFit, k: int, pick: Pick) -> np.ndarray:
    """Take allocate()'s count from each cluster, chosen by `pick`."""
    n_clusters = len(fit.centroids)
    sizes = np.bincount(fit.assignments, minlength=n_clusters)
    take = allocate(sizes, k)
    members_sorted = np.argsort(fit.assignments, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    chosen = [pick(members_sorted[bounds[c] : bounds[c + 1]], int(take[c])) for c in np.flatnonzero(take)]
    return np.concatenate(chosen)


def _ranked(rank: Callable[[np.ndarray], np.ndarray]) -> Pick:
    """A pick that takes the first members by `rank` (members -> order)."""
    return lambda members, n: members[rank(members)[:n]]


def _fit(x: np.ndarray, k: int, seed: int, options: Options) -> KMeansFit:
    return options.kmeans(x, options.clusters or k, seed)


@register("nearest", clustered=True)
def nearest(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """The images closest to their k-means centroid: the most prototypical ("easy") ones."""
    fit = _fit(x, k, seed, options)
    return _take_per_cluster(fit, k, _ranked(lambda m: np.argsort(fit.distances[m], kind="stable")))


@register("furthest", clustered=True)
def furthest(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """The images furthest from their k-means centroid: the outliers ("hard" ones)."""
    fit = _fit(x, k, seed, options)
    return _take_per_cluster(fit, k, _ranked(lambda m: np.argsort(-fit.distances[m], kind="stable")))


@register("cluster_random", clustered=True)
def cluster_random(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Random images within each k-means cluster: stratified by cluster, not by distance."""
    fit = _fit(x, k, seed, options)
    rng = np.random.default_rng(seed)
    return _take_per_cluster(fit, k, _ranked(lambda m: rng.permutation(len(m))))


def hybrid_split(n: int, easy_fraction: float) -> tuple[int, int]:
    """(nearest, furthest) counts of a cluster's n images: the odd one to the nearest side."""
    far = int(np.floor(n * (1 - easy_fraction) + 1e-9))
    return n - far, far


@register("hybrid", clustered=True)
def hybrid(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """The original study's hybrid: from each cluster, its share of k split between the members
    nearest the centroid and those furthest from it (`easy_fraction` nearest)."""
    fit = _fit(x, k, seed, options)

    def pick(members: np.ndarray, n: int) -> np.ndarray:
        order = members[np.argsort(fit.distances[members], kind="stable")]
        near, far = hybrid_split(n, options.easy_fraction)
        return np.concatenate([order[:near], order[len(order) - far :]])

    return _take_per_cluster(fit, k, pick)


def typicality(x: np.ndarray, neighbors: int) -> np.ndarray:
    """1 / mean distance to the `neighbors` nearest other points (TypiClust's density score)."""
    from sklearn.neighbors import NearestNeighbors

    if len(x) == 1:
        return np.ones(1)
    n = min(neighbors, len(x) - 1)
    dist, _ = NearestNeighbors(n_neighbors=n + 1).fit(x).kneighbors(x)
    return 1.0 / (dist[:, 1:].mean(axis=1) + 1e-12)


@register("typical", clustered=True)
def typical(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """TypiClust (Hacohen et al. 2022): the most typical images of each k-means cluster, where
    typicality is measured against the cluster's own members."""
    fit = _fit(x, k, seed, options)

    def rank(members: np.ndarray) -> np.ndarray:
        return np.argsort(-typicality(x[members], options.neighbors), kind="stable")

    return _take_per_cluster(fit, k, _ranked(rank))


@register("moderate")
def moderate(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Moderate coresets (Xia et al. 2023): the images whose distance to their class centre in
    the embedding is nearest that class's median distance, neither prototypes nor outliers; ties
    in an order drawn from the seed. Uses the labels (the class centres)."""
    x = np.asarray(x, dtype=np.float64)
    gap = np.empty(len(x))
    for c in np.unique(labels):
        members = labels == c
        d = np.linalg.norm(x[members] - x[members].mean(axis=0), axis=1)
        gap[members] = np.abs(d - np.median(d))
    tie = np.random.default_rng(seed).permutation(len(x))
    return np.lexsort((tie, gap))[:k]
