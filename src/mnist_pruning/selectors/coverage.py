"""Coverage rules: choose images that together cover or summarise the whole embedding."""

from __future__ import annotations

import heapq

import numpy as np

from mnist_pruning.selectors import Options, register


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


@register("herding")
def herding(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Herding (Welling 2009; the coreset baseline of dataset condensation): repeatedly add the
    image that brings the mean of the chosen set closest to the mean of the pool.

    With t chosen summing to S, the next image i minimises ||(t + 1) mu - S - x_i||^2, one
    matrix-vector product a step. Deterministic: the seed is not used.
    """
    x64 = np.asarray(x, dtype=np.float64)
    x32 = np.asarray(x, dtype=np.float32)
    mu = x64.mean(axis=0)
    sq = np.einsum("ij,ij->i", x64, x64)
    total = np.zeros_like(mu)
    taken = np.zeros(len(x), dtype=bool)
    chosen = np.empty(k, dtype=np.int64)
    for t in range(k):
        r = (t + 1) * mu - total
        cost = sq - 2 * (x32 @ r.astype(np.float32)).astype(np.float64)
        cost[taken] = np.inf
        i = int(np.argmin(cost))
        chosen[t], taken[i] = i, True
        total += x64[i]
    return chosen


@register("facility_location")
def facility_location(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Facility location (as in CRAIG, Mirzasoleiman et al. 2020): maximise the sum over pool
    images of their best similarity to a chosen image, by lazy greedy.

    Similarities live on the sparse `neighbors`-nearest-neighbour graph (exact kNN, a Gaussian
    kernel whose width is the median distance to the furthest neighbour); an image that is no
    neighbour of a chosen one counts 0. So memory is n x neighbors, not the dense n x n matrix
    (60k x 60k floats would be 14 GB). Once every image is covered, the remaining gains are 0 and
    the rest of k is filled in an order drawn from the seed.
    """
    n = len(x)
    idx, dist = options.knn(x, options.neighbors)
    width = float(np.median(dist[:, -1])) if dist.shape[1] > 1 else 1.0
    sim = np.exp(-((dist / max(width, 1e-12)) ** 2) / 2).astype(np.float64)
    # reverse graph: for each candidate j, the points i that have j among their neighbours
    order = np.argsort(idx.ravel(), kind="stable")
    rows = np.repeat(np.arange(n), idx.shape[1])[order]
    sims = sim.ravel()[order]
    starts = np.searchsorted(idx.ravel()[order], np.arange(n + 1))
    best = np.zeros(n)  # each point's best similarity to the chosen set
    taken = np.zeros(n, dtype=bool)

    def gain(j: int) -> float:
        r, s = rows[starts[j] : starts[j + 1]], sims[starts[j] : starts[j + 1]]
        return float(np.maximum(s - best[r], 0).sum())

    tie = np.random.default_rng(seed).permutation(n)  # breaks ties, and orders the zero-gain rest
    first = np.bincount(idx.ravel(), weights=sim.ravel(), minlength=n)  # gains while nothing is chosen
    heap = [(-float(first[j]), int(tie[j]), j) for j in range(n)]
    heapq.heapify(heap)
    chosen: list[int] = []
    while len(chosen) < k:
        _, t, j = heapq.heappop(heap)
        fresh = gain(j)
        if heap and fresh < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-fresh, t, j))  # stale bound: put back with the true gain
            continue
        chosen.append(j)
        taken[j] = True
        r = rows[starts[j] : starts[j + 1]]
        best[r] = np.maximum(best[r], sims[starts[j] : starts[j + 1]])
    return np.asarray(chosen, dtype=np.int64)


def purity_delta(idx: np.ndarray, dist: np.ndarray, pseudo: np.ndarray, purity: float) -> float:
    """ProbCover's radius: the largest delta for which at least `purity` of the balls hold one
    pseudo-label only. A ball of radius delta around i is pure while delta <= the distance to
    i's nearest neighbour of another pseudo-label (beyond the graph's neighbours: the furthest
    one), so delta is a low quantile of those distances."""
    other = pseudo[idx] != pseudo[:, None]
    first = np.where(other.any(axis=1), other.argmax(axis=1), idx.shape[1] - 1)
    reach = dist[np.arange(len(idx)), first]
    ranked = np.sort(reach)
    return float(ranked[int(np.floor((1 - purity) * len(ranked)))])


@register("probcover", whole=True)
def probcover(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """ProbCover (Yehuda et al. 2022): greedily the image whose delta-ball (on the
    `neighbors`-nearest-neighbour graph) covers the most images not yet covered, until k are
    chosen; delta by the purity rule on k-means pseudo-labels (as many clusters as classes) or
    `options.delta`. With `balance`, an image is taken only while its class has quota left.
    Once everything is covered the rest of k comes in an order drawn from the seed."""
    from mnist_pruning.selectors import class_quotas

    n = len(x)
    idx, dist = options.knn(x, options.neighbors)
    delta = options.delta
    if delta is None:
        pseudo = options.kmeans(x, len(np.unique(labels)), seed).assignments
        delta = purity_delta(idx, dist, pseudo, options.purity)
    inside = dist < delta
    inside[:, 0] = True  # an image always covers itself
    covers = [idx[i][inside[i]] for i in range(n)]  # ball(i)
    order = np.argsort(idx.ravel()[inside.ravel()], kind="stable")  # reverse: who covers j
    owners = np.repeat(np.arange(n), inside.sum(axis=1))[order]
    starts = np.searchsorted(idx.ravel()[inside.ravel()][order], np.arange(n + 1))
    gain = inside.sum(axis=1).astype(np.int64)
    covered = np.zeros(n, dtype=bool)
    quota = class_quotas(labels, k) if options.balance else None
    tie = np.random.default_rng(seed).permutation(n)
    heap = [(-int(gain[i]), int(tie[i]), i) for i in range(n)]
    heapq.heapify(heap)
    chosen: list[int] = []
    while len(chosen) < k and heap:
        g, t, i = heapq.heappop(heap)
        if gain[i] < 0 or (quota is not None and quota[int(labels[i])] == 0):
            continue  # taken, or its class is full: never again
        if -g != gain[i]:
            heapq.heappush(heap, (-int(gain[i]), t, i))  # stale: back with its true gain
            continue
        chosen.append(i)
        gain[i] = -1  # taken
        if quota is not None:
            quota[int(labels[i])] -= 1
        for j in covers[i][~covered[covers[i]]]:
            covered[j] = True
            holders = owners[starts[j] : starts[j + 1]]
            gain[holders[gain[holders] > 0]] -= 1
    return np.asarray(chosen, dtype=np.int64)
