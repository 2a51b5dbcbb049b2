"""Selection rules: pure functions (embedding, labels, k, seed, options) -> sorted unique indices.

A selector knows nothing of torch, MLflow or Hydra. Indices refer to the rows of the embedding
it is given (the selection pool). What a rule needs from elsewhere arrives in `Options`: k-means
and the kNN graph as functions (so the caller decides whether fits are cached), and per-image
scores computed by model trainings outside this package (`mnist_pruning.scores`).

One module per family, each registering its rules here:
- `baselines`: full, random, fixed (a subset chosen elsewhere, given in `Options.given`)
- `clusters`: nearest, furthest, cluster_random, hybrid, typical (k-means in the embedding)
- `coverage`: kcenter, herding, facility_location (cover or summarise the embedding)
- `clusters` also: moderate (the band around the median distance to the class centre)
- `coverage` also: probcover (greedy coverage of delta-balls)
- `scored`: el2n, forgetting, grand, uncertainty (keep the easy or the hard end of a per-image
  score), ccs (the hardest fraction pruned, then even strata of the score)
- `search`: search (a base rule's best draw, improved by swaps a proxy training scores)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mnist_pruning.cluster import KMeansFn, kmeans
from mnist_pruning.neighbors import KnnFn, knn_graph


@dataclass(frozen=True)
class Options:
    clusters: int | None = None  # k-means clusters (cluster selectors); None means k
    balance: bool = False  # k/10 per class, selecting within each class
    neighbors: int = 20  # typical: typicality neighbours; facility_location: similarity graph
    easy_fraction: float = 0.5  # hybrid: the share of each cluster's images taken nearest
    keep: str = "easy"  # scored selectors: the lowest ("easy") or highest ("hard") scores
    scores: np.ndarray | None = None  # scored selectors: one score per row of the embedding
    kmeans: KMeansFn = kmeans
    knn: KnnFn = knn_graph  # facility_location, probcover: (points, neighbours) -> (indices, distances)
    prune_hard: float = 0.1  # ccs: the hardest fraction of the scores dropped
    strata: int = 50  # ccs: equal-width score strata sampled evenly
    delta: float | None = None  # probcover: ball radius (None: by the purity rule)
    purity: float = 0.95  # probcover: the purity its delta keeps
    base: str = "herding"  # search: the rule whose subsets it starts from
    search: SearchOptions | None = None  # search: its settings and the proxy that scores a subset
    given: np.ndarray | None = None  # fixed: the rows of a subset chosen elsewhere


Proxy = Callable[[np.ndarray], float]  # rows of the embedding (a candidate subset) -> its score
Trace = Callable[[int, float, bool], None]  # (evaluation, score, kept) after each proxy call
BaseRule = Callable[[np.ndarray, int, int], np.ndarray]  # (rows, n, seed) -> n of the rows


@dataclass(frozen=True)
class SearchOptions:
    proxy: Proxy  # trains on a candidate subset and scores it on held-out training images
    draws: int = 8  # base subsets drawn (the first on the whole pool, the rest on class halves)
    evaluations: int = 60  # proxy calls in all, draws included
    candidates: str = "neighbors"  # "neighbors" of the image replaced, or "ranked" by the base
    width: int = 20
    trace: Trace | None = None
    # a cheap screen (mnist_pruning.screens) that ranks candidates before the proxy judges them
    screen: Proxy | None = None
    screen_draws: int = 0  # base subsets screened; the best `draws` go to the proxy (0: none screened)
    screen_swaps: int = 1  # candidate swaps screened for each one the proxy judges (1: none screened)
    screen_greedy: int = 0  # > 0: one more draw built greedily by the screen, of this many per step
    # a portfolio: more base rules the draws alternate with Options.base, each built elsewhere
    # (its own embedding or scores) as (rows, n, seed) -> n of those rows
    bases: tuple[BaseRule, ...] = ()
    # the shortlist: the best `shortlist` subsets judged, scored again by `rescore` (other proxy
    # seeds); the pick is the best of (1 - rescore_weight) x score + rescore_weight x rescore
    shortlist: int = 0
    rescore: Proxy | None = None
    rescore_weight: float = 0.5


Selector = Callable[[np.ndarray, np.ndarray, int, int, Options], np.ndarray]
SELECTORS: dict[str, Selector] = {}
CLUSTER_SELECTORS: set[str] = set()  # use k-means: selector.clusters applies
SCORED_SELECTORS: set[str] = set()  # need Options.scores, a score of that selector's name
EMBEDDING_FREE: set[str] = set()  # ignore the embedding (the report says '-', not the config's)
WHOLE: set[str] = set()  # balance the subset themselves: `balance` is not applied class by class


def register(
    name: str, clustered: bool = False, scored: bool = False, embedded: bool = True, whole: bool = False
) -> Callable[[Selector], Selector]:
    def deco(fn: Selector) -> Selector:
        SELECTORS[name] = fn
        if whole:
            WHOLE.add(name)
        if clustered:
            CLUSTER_SELECTORS.add(name)
        if scored:
            SCORED_SELECTORS.add(name)
        if not embedded:
            EMBEDDING_FREE.add(name)
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
    if name in SCORED_SELECTORS and (options.scores is None or len(options.scores) != n):
        raise ValueError(f"selector {name} needs one score per pool image (Options.scores)")
    if options.balance and name != "full" and name not in WHOLE:
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
        scores = None if options.scores is None else options.scores[members]
        c_options = replace(options, clusters=c_clusters, balance=False, scores=scores)
        c_seed = int(ss.generate_state(1)[0])
        parts.append(members[rule(x[members], labels[members], quota, c_seed, c_options)])
    return np.concatenate(parts)


FAMILIES = ("baselines", "clusters", "coverage", "scored", "search")
for _family in FAMILIES:  # each family registers its rules on import
    importlib.import_module(f"{__name__}.{_family}")

from mnist_pruning.selectors.clusters import allocate  # noqa: E402

__all__ = [
    "CLUSTER_SELECTORS",
    "EMBEDDING_FREE",
    "SCORED_SELECTORS",
    "SELECTORS",
    "WHOLE",
    "Options",
    "SearchOptions",
    "allocate",
    "class_quotas",
    "register",
    "select",
]
