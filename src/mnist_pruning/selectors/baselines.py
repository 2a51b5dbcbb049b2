"""The baselines every method is compared with: all images, and k at random."""

from __future__ import annotations

import numpy as np

from mnist_pruning.selectors import Options, register


@register("full", embedded=False)
def full(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Every image of the pool: the baseline (k is ignored)."""
    return np.arange(len(x))


@register("random", embedded=False)
def random(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """k images uniformly at random, without replacement."""
    return np.random.default_rng(seed).choice(len(x), size=k, replace=False)
