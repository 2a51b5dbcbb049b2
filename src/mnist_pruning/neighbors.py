"""The exact k-nearest-neighbour graph of an embedding, which facility location and ProbCover
build on. A function of the points alone, so the caller can cache it (as `subset.py` does), and
passed to the selectors in `Options.knn`, as k-means is."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

KnnFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
VERSION = 1  # bump when the graph's rule changes: cached graphs are then rebuilt


def knn_graph(x: np.ndarray, neighbors: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each point's `neighbors` nearest points (itself first) and their distances, (n, m) each.

    Exact, by blocks of squared distances from one matrix product, so memory stays at
    chunk x n floats however large the pool.
    """
    import torch

    pts = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    sq = (pts * pts).sum(1)
    m = min(neighbors + 1, len(pts))
    idx = np.empty((len(pts), m), dtype=np.int64)
    dist = np.empty((len(pts), m), dtype=np.float32)
    for lo in range(0, len(pts), chunk):
        block = pts[lo : lo + chunk]
        d2 = sq[lo : lo + chunk, None] - 2 * block @ pts.T + sq[None, :]
        rows = torch.arange(len(block))
        d2[rows, rows + lo] = -1.0  # itself first, whatever the rounding
        val, ind = torch.topk(d2, m, dim=1, largest=False)
        idx[lo : lo + len(block)] = ind.numpy()
        dist[lo : lo + len(block)] = val.clamp_min(0).sqrt().numpy()
    return idx, dist
