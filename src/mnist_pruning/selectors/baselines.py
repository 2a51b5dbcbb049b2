"""The baselines every method is compared with: all images, and k at random; and a subset chosen
elsewhere (`fixed`), given in `Options.given`."""

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


@register("fixed", embedded=False, whole=True)
def fixed(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """The rows a subset chosen elsewhere names (`Options.given`: read and checked outside, by
    `mnist_pruning.fixed`); a balance it has is its own."""
    if options.given is None or len(options.given) != k:
        raise ValueError(f"selector fixed needs its k={k} rows in Options.given")
    return np.asarray(options.given)
