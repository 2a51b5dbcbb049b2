"""Score-based pruning: keep the easy or the hard end of a per-image difficulty score.

The scores come from short LeNet-5 trainings on the selection pool (`mnist_pruning.scores`),
computed once, cached, and passed in as `Options.scores`: the rule itself is a sort. Sorscher
et al. (2022) keep the easy end when data is scarce and the hard end when it is abundant.
"""

from __future__ import annotations

import numpy as np

from mnist_pruning.selectors import Options, register

KEEP = ("easy", "hard")


def keep_by_score(scores: np.ndarray, k: int, keep: str, seed: int) -> np.ndarray:
    """The k lowest ("easy") or highest ("hard") scores; ties in an order drawn from the seed
    (forgetting counts tie a lot: most images are never forgotten)."""
    if keep not in KEEP:
        raise ValueError(f"selector.keep={keep!r} is not allowed: one of {', '.join(KEEP)}")
    s = np.asarray(scores, dtype=np.float64)
    tie = np.random.default_rng(seed).permutation(len(s))
    order = np.lexsort((tie, s if keep == "easy" else -s))
    return order[:k]


@register("el2n", scored=True, embedded=False)
def el2n(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """EL2N (Paul et al. 2021): the L2 norm of softmax output minus the one-hot label, early in
    training, averaged over initialisations; low is easy."""
    return keep_by_score(options.scores, k, options.keep, seed)


@register("forgetting", scored=True, embedded=False)
def forgetting(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Forgetting events (Toneva et al. 2019): how often an image went from correctly to wrongly
    classified during training (never learned counts as most forgotten); low is easy."""
    return keep_by_score(options.scores, k, options.keep, seed)
