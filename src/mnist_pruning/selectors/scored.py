"""Score-based pruning: keep the easy or the hard end of a per-image difficulty score, or (CCS)
cover the range of the score.

The scores come from short LeNet-5 trainings on the selection pool (`mnist_pruning.scores`),
computed once, cached, and passed in as `Options.scores` (high is hard for every score): the rule
itself is a sort. Sorscher et al. (2022) keep the easy end when data is scarce and the hard end
when it is abundant; Zheng et al. (2023) sample across the whole range once the hardest are cut.
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


@register("grand", scored=True, embedded=False)
def grand(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """GraNd (Paul et al. 2021): the norm of the loss gradient with respect to the weights, from
    the same trainings as EL2N, averaged over initialisations; low is easy."""
    return keep_by_score(options.scores, k, options.keep, seed)


@register("uncertainty", scored=True, embedded=False)
def uncertainty(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """DeepCore's uncertainty scores (least confidence, margin, entropy of the score trainings'
    softmax outputs; `selector.measure`); low is confident (easy)."""
    return keep_by_score(options.scores, k, options.keep, seed)


def strata_counts(sizes: np.ndarray, k: int) -> np.ndarray:
    """CCS's budget: strata visited from the smallest, each given min(its size, what is left
    shared evenly over the strata not yet visited), so that the counts are as even as k allows."""
    sizes = np.asarray(sizes, dtype=np.int64)
    take = np.zeros_like(sizes)
    left, open_ = k, len(sizes)
    for b in np.argsort(sizes, kind="stable"):
        take[b] = min(sizes[b], left // open_)
        left -= take[b]
        open_ -= 1
    return take


@register("ccs", scored=True, embedded=False)
def ccs(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """Coverage-centric coreset selection (Zheng et al. 2023): drop the hardest `prune_hard` of
    the pool by the score, cut the rest into `strata` equal-width bins of the score, and draw
    each bin's share of k at random (`strata_counts`). Where the bins cannot hold k (too few
    images left), the rest comes at random from the unpruned images."""
    s = np.asarray(options.scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(len(s)), -s))  # hardest first, ties at random
    cut = int(np.floor(options.prune_hard * len(s)))
    if len(s) - cut < k:
        cut = len(s) - k  # never prune below k
    kept = np.sort(order[cut:])
    lo, hi = s[kept].min(), s[kept].max()
    edges = np.linspace(lo, hi, options.strata + 1)
    bins = np.clip(np.searchsorted(edges, s[kept], side="right") - 1, 0, options.strata - 1)
    sizes = np.bincount(bins, minlength=options.strata)
    take = strata_counts(sizes[sizes > 0], k)
    chosen = [
        rng.choice(kept[bins == b], size=n, replace=False)
        for b, n in zip(np.flatnonzero(sizes > 0), take, strict=True)
        if n
    ]
    picked = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    if len(picked) < k:
        rest = np.setdiff1d(kept, picked)
        picked = np.concatenate([picked, rng.choice(rest, size=k - len(picked), replace=False)])
    return picked
