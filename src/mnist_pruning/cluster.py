"""k-means on an embedding: centroids, each point's cluster and its distance to that centroid.

Lloyd's algorithm in torch with greedy k-means++ seeding. Distances are one matrix product per chunk of
points (||x||^2 - 2 x.c + ||c||^2), so an iteration at k = 10,000 on 60k x 50 runs at BLAS speed.
scikit-learn's KMeans takes minutes there, most of it in its greedy k-means++ seeding, one centre
at a time; here seeding adds many centres per round and Lloyd steps between full passes compare
each point with a few candidate centres only (benchmarks/bench.py measures both, with inertia).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KMeansFit:
    centroids: np.ndarray  # (clusters, d) float32
    assignments: np.ndarray  # (n,) int64, cluster of each point
    distances: np.ndarray  # (n,) float32, Euclidean distance to its own centroid
    inertia: float


KMeansFn = Callable[[np.ndarray, int, int], KMeansFit]

CHUNK = 4096  # points per distance block: bounds memory at CHUNK x clusters floats
SEED_ROUNDS = 100  # k-means++ seeding adds k / SEED_ROUNDS centres a round
SEED_SAMPLE = 32768  # points on which seeding compares candidates
CANDIDATES = 16  # centres a point is compared with between full passes, when k is large
REFRESH = 10  # Lloyd steps between full passes over all centres
# in cache keys: a changed algorithm or setting is a new entry, never a stale fit
VERSION = f"lloyd-candidates+greedy-rounds/1:{SEED_ROUNDS}:{SEED_SAMPLE}:{CANDIDATES}:{REFRESH}"


def _nearest(
    x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor, c_sq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.empty(len(x), dtype=torch.int64)
    d2 = torch.empty(len(x), dtype=x.dtype)
    for i in range(0, len(x), CHUNK):
        best, arg = torch.addmm(c_sq, x[i : i + CHUNK], c.T, alpha=-2.0).min(1)
        labels[i : i + CHUNK] = arg
        d2[i : i + CHUNK] = (best + x_sq[i : i + CHUNK]).clamp_(min=0)
    return labels, d2


def _closest(x: torch.Tensor, c: torch.Tensor, m: int) -> torch.Tensor:
    """The m nearest centres of every point (n, m): one full pass, in blocks (||x||^2, the same
    for a whole row, does not change the ranking)."""
    c_sq = (c * c).sum(1)
    out = torch.empty(len(x), m, dtype=torch.int64)
    for i in range(0, len(x), CHUNK):
        block = torch.addmm(c_sq, x[i : i + CHUNK], c.T, alpha=-2.0)
        out[i : i + CHUNK] = block.topk(m, dim=1, largest=False, sorted=False).indices
    return out


def _assign(
    x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor, cand: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre among each point's candidates (None: all), and the squared distance to it."""
    c_sq = (c * c).sum(1)
    if cand is None:
        return _nearest(x, c, x_sq, c_sq)
    labels = torch.empty(len(x), dtype=torch.int64)
    d2 = torch.empty(len(x), dtype=x.dtype)
    for i in range(0, len(x), CHUNK):
        ci = cand[i : i + CHUNK]
        dots = torch.einsum("nd,nmd->nm", x[i : i + CHUNK], c[ci])
        dist = c_sq[ci] - 2 * dots
        best, arg = dist.min(1)
        labels[i : i + CHUNK] = ci.gather(1, arg.unsqueeze(1)).squeeze(1)
        d2[i : i + CHUNK] = (best + x_sq[i : i + CHUNK]).clamp_(min=0)
    return labels, d2


def _seed(x: torch.Tensor, x_sq: torch.Tensor, n_clusters: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (as scikit-learn's), in rounds.

    Each round adds k / SEED_ROUNDS centres. For each, 2 + log k candidates are drawn with
    probability proportional to D(x)^2 and the one that most lowers the potential is kept; the
    drop is estimated on SEED_SAMPLE points (plus the candidate's own D^2, counted once). With one
    centre a round and every point in the sample, this is exactly greedy k-means++.
    """
    n = len(x)
    trials = 2 + int(math.log(n_clusters))  # candidates per new centre, as scikit-learn
    per_round = max(1, n_clusters // SEED_ROUNDS)
    sample = torch.randperm(n, generator=gen)[: min(n, SEED_SAMPLE)]
    x_s, x_sq_s = x[sample], x_sq[sample]
    where_in_sample = torch.full((n,), -1, dtype=torch.int64)
    where_in_sample[sample] = torch.arange(len(sample))
    picks = torch.randint(n, (1,), generator=gen)
    d2 = (x_sq - 2 * (x @ x[picks[0]]) + x_sq[picks[0]]).clamp_(min=0)
    while len(picks) < n_clusters:
        b = min(per_round, n_clusters - len(picks))
        cdf = torch.cumsum(d2, 0, dtype=torch.float64)
        d2_s = d2[sample]
        if cdf[-1] <= 0:  # fewer distinct points than centres: any unpicked points will do
            free = torch.ones(n, dtype=torch.bool)
            free[picks] = False
            new = torch.nonzero(free).flatten()[:b]
        else:
            u = torch.rand(b * trials, generator=gen, dtype=torch.float64) * cdf[-1]
            cand = torch.searchsorted(cdf, u, right=True).clamp_(max=n - 1)
            c = x[cand]
            # minus the drop of each sample point's D^2 were the candidate added: (dist - D^2) ∧ 0
            loss = torch.addmm((c * c).sum(1), x_s, c.T, alpha=-2.0)
            loss.add_((x_sq_s - d2_s).unsqueeze(1)).clamp_(max=0)
            # a candidate's own D^2 counts once, not scaled up as if it stood for n / sample points
            pos = where_in_sample[cand]
            inside = pos >= 0
            loss[pos[inside], torch.nonzero(inside).flatten()] = 0
            score = d2[cand] - loss.sum(0) * (n / len(sample))
            best = cand.view(b, trials)[torch.arange(b), score.view(b, trials).argmax(1)]
            new = torch.unique(best)  # two slots may pick the same point: rounds go on until k
        picks = torch.cat([picks, new])
        c = x[new]
        block = torch.addmm((c * c).sum(1), x, c.T, alpha=-2.0).add_(x_sq.unsqueeze(1))
        torch.minimum(d2, block.min(1).values.clamp_(min=0), out=d2)
    return x[picks].clone()


def kmeans(
    x: np.ndarray,
    n_clusters: int,
    seed: int,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> KMeansFit:
    """Fit k-means; deterministic for a seed (on one machine and thread count).

    Between full passes over all centres (every REFRESH steps), a point is compared only with
    the CANDIDATES centres that were nearest to it at the last full pass: with thousands of
    clusters, points move between neighbouring clusters, and this makes a step cheap. It stops
    when, right after a full pass, the centres moved less than `tol` times the mean feature
    variance (summed over centres, as scikit-learn does), or after `max_iter` steps. The final
    assignment is exact. An empty cluster is re-seeded with the point furthest from its centre.
    """
    if not 1 <= n_clusters <= len(x):
        raise ValueError(f"clusters must be in [1, {len(x)}], got {n_clusters}")
    start = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    x_sq = (xt * xt).sum(1)
    gen = torch.Generator().manual_seed(seed)
    centres = _seed(xt, x_sq, n_clusters, gen)
    threshold = tol * float(xt.var(0).mean())
    # gathering candidates costs more than a full pass until k is well above their number
    m = CANDIDATES if n_clusters > 20 * CANDIDATES else n_clusters
    full = True
    for it in range(1, max_iter + 1):
        if m == n_clusters:
            cand, full_pass = None, True
        elif full or it % REFRESH == 1:
            cand, full_pass = _closest(xt, centres, m), True
        else:
            full_pass = False
        labels, d2 = _assign(xt, centres, x_sq, cand)
        counts = torch.bincount(labels, minlength=n_clusters)
        sums = torch.zeros_like(centres).index_add_(0, labels, xt)
        new = sums / counts.clamp(min=1).unsqueeze(1).to(xt.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            new[empty] = xt[torch.argsort(d2, descending=True)[: len(empty)]]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        converged = shift <= threshold
        if converged and full_pass:
            break
        full = converged  # converged on candidates only: confirm with a full pass
    labels, _ = _assign(xt, centres, x_sq, None)
    log.info(
        "k-means: %d clusters on %d x %d in %.1fs (%d steps)",
        n_clusters,
        len(x),
        x.shape[1],
        time.perf_counter() - start,
        it,
    )
    return fit_from_centroids(x, centres.numpy(), labels.numpy())


def fit_from_centroids(x: np.ndarray, centroids: np.ndarray, assignments: np.ndarray) -> KMeansFit:
    """Exact distances of every point to its own centroid (not the expanded-square estimate)."""
    centroids = np.asarray(centroids, dtype=np.float32)
    assignments = np.asarray(assignments, dtype=np.int64)
    distances = np.linalg.norm(x - centroids[assignments], axis=1).astype(np.float32)
    return KMeansFit(
        centroids=centroids,
        assignments=assignments,
        distances=distances,
        inertia=float(np.sum(distances.astype(np.float64) ** 2)),
    )
