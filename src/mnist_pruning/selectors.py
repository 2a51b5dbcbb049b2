"""Selection rules: pure functions (embedding, labels, k, seed, options) -> sorted unique indices.

A selector knows nothing of torch, MLflow or Hydra. Indices refer to the rows of the embedding
it is given (the selection pool). k-means is passed in as a function, so the caller decides
whether fits are cached, and the rule itself stays easy to test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mnist_pruning.cluster import KMeansFit, KMeansFn, kmeans


@dataclass(frozen=True)
class Options:
    clusters: int | None = None  # k-means clusters (cluster selectors); None means k
    balance: bool = False  # k/10 per class, clustering within each class
    neighbors: int = 20  # typicality: mean distance to this many nearest neighbours
    kmeans: KMeansFn = kmeans


Selector = Callable[[np.ndarray, np.ndarray, int, int, Options], np.ndarray]
SELECTORS: dict[str, Selector] = {}
CLUSTER_SELECTORS: set[str] = set()


def register(name: str, clustered: bool = False) -> Callable[[Selector], Selector]:
    def deco(fn: Selector) -> Selector:
        SELECTORS[name] = fn
        if clustered:
            CLUSTER_SELECTORS.add(name)
        return fn

    return deco


def select(
    name: str,
    embedding: np.ndarray,
    labels: np.ndarray,
    k: int,
    seed: int,
    options: Options | None = None,
) -> np.ndarray:
    """Run the selector registered as `name`; check the contract every selector must keep."""
    if name not in SELECTORS:
        raise ValueError(f"selector={name!r} is unknown: one of {', '.join(sorted(SELECTORS))}")
    options = options or Options()
    n = len(embedding)
    if name != "full" and not 1 <= k <= n:
        raise ValueError(f"k={k} is out of range: an integer from 1 to {n}")
    if options.balance and name != "full":
        idx = _balanced(SELECTORS[name], embedding, labels, k, seed, options)
    else:
        idx = SELECTORS[name](embedding, labels, k, seed, options)
    idx = np.asarray(idx, dtype=np.int64)
    expected = n if name == "full" else k
    if len(idx) != expected or len(np.unique(idx)) != expected:
        raise AssertionError(f"selector {name} returned {len(np.unique(idx))} unique of {expected}")
    return np.sort(idx)


def class_quotas(labels: np.ndarray, k: int) -> dict[int, int]:
    """Share k over the classes: k // C each, the remainder one each to the largest classes.

    A class smaller than its share gives what it has and the rest goes to the next largest, so
    the total is always exactly k.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    order = sorted(range(len(classes)), key=lambda i: (-sizes[i], classes[i]))
    quota = {int(c): 0 for c in classes}
    left = k
    while left > 0:
        open_ = [i for i in order if quota[int(classes[i])] < sizes[i]]
        share, extra = divmod(left, len(open_))
        for rank, i in enumerate(open_):
            c = int(classes[i])
            give = min(share + (rank < extra), sizes[i] - quota[c])
            quota[c] += give
            left -= give
    return quota


def _balanced(
    rule: Selector, x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options
) -> np.ndarray:
    """Apply `rule` within each class with that class's quota (clusters scaled alike)."""
    quotas = class_quotas(labels, k)
    clusters = options.clusters or k
    seeds = np.random.SeedSequence(seed).spawn(len(quotas))
    parts = []
    for (c, quota), ss in zip(sorted(quotas.items()), seeds, strict=True):
        if quota == 0:
            continue
        members = np.flatnonzero(labels == c)
        c_clusters = max(1, min(quota, round(clusters * quota / k)))
        c_options = replace(options, clusters=c_clusters, balance=False)
        c_seed = int(ss.generate_state(1)[0])
        parts.append(members[rule(x[members], labels[members], quota, c_seed, c_options)])
    return np.concatenate(parts)


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


def _take_per_cluster(fit: KMeansFit, k: int, rank: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Take allocate()'s count from each cluster, best first by `rank` (members -> order)."""
    n_clusters = len(fit.centroids)
    sizes = np.bincount(fit.assignments, minlength=n_clusters)
    take = allocate(sizes, k)
    members_sorted = np.argsort(fit.assignments, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    chosen = []
    for c in np.flatnonzero(take):
        members = members_sorted[bounds[c] : bounds[c + 1]]
        chosen.append(members[rank(members)[: take[c]]])
    return np.concatenate(chosen)


def _fit(x: np.ndarray, k: int, seed: int, options: Options) -> KMeansFit:
    return options.kmeans(x, options.clusters or k, seed)


@register("full")
def full(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Every image of the pool: the baseline (k is ignored)."""
    return np.arange(len(x))


@register("random")
def random(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """k images uniformly at random, without replacement."""
    return np.random.default_rng(seed).choice(len(x), size=k, replace=False)


@register("nearest", clustered=True)
def nearest(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """The images closest to their k-means centroid: the most prototypical ("easy") ones."""
    fit = _fit(x, k, seed, options)
    return _take_per_cluster(fit, k, lambda m: np.argsort(fit.distances[m], kind="stable"))


@register("furthest", clustered=True)
def furthest(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """The images furthest from their k-means centroid: the outliers ("hard" ones)."""
    fit = _fit(x, k, seed, options)
    return _take_per_cluster(fit, k, lambda m: np.argsort(-fit.distances[m], kind="stable"))


@register("cluster_random", clustered=True)
def cluster_random(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Random images within each k-means cluster: stratified by cluster, not by distance."""
    fit = _fit(x, k, seed, options)
    rng = np.random.default_rng(seed)
    return _take_per_cluster(fit, k, lambda m: rng.permutation(len(m)))


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

    return _take_per_cluster(fit, k, rank)


@register("kcenter")
def kcenter(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Greedy k-center coreset (Sener & Savarese 2018): from a random first image, repeatedly add
    the image furthest from everything chosen so far, so the kept set covers the embedding."""
    x = np.asarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = np.random.default_rng(seed).integers(len(x))
    d2 = np.full(len(x), np.inf, dtype=np.float32)
    for j in range(k):
        if j:
            chosen[j] = int(np.argmax(d2))
        c = chosen[j]
        np.minimum(d2, sq - 2 * (x @ x[c]) + sq[c], out=d2)
        d2[c] = -np.inf  # never again, even where rounding left a tiny positive distance
    return chosen


__all__ = ["CLUSTER_SELECTORS", "SELECTORS", "Options", "allocate", "class_quotas", "select"]
