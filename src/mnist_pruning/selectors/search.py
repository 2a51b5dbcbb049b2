"""Validation-guided search: choose the subset by what a model trained on it gets right.

Every other rule ranks images by a stand-in for usefulness. `search` asks the question the study
measures, on training images only: it draws subsets with a base rule, scores each with a proxy
(short LeNet-5 trainings on the subset, accuracy on a split held out of the training set, built
outside this package and passed in as `Options.search.proxy`), keeps the best, then swaps one
image at a time for another of the same class, keeping a swap only when the score rises (as
GLISTER, Killamsetty et al. 2021, and bilevel coresets, Borsos et al. 2020, score a subset by a
model trained on it). Swaps stay within a class, so a balanced start stays balanced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from mnist_pruning.selectors import SELECTORS, Options, class_quotas, register, select

CANDIDATES = ("neighbors", "ranked")
NOT_A_BASE = ("full", "search", "fixed")


def class_halves(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random half of each class's rows (at least one), sorted: a deterministic base rule
    draws a new subset from each half without a new fit."""
    parts = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return np.sort(np.concatenate([p[: max(1, len(p) // 2)] for p in parts]))


@register("search", whole=True)
def search(x: np.ndarray, labels: np.ndarray, k: int, seed: int, options: Options) -> np.ndarray:
    """The base rule's best of `draws` subsets by the proxy, then single-image swaps within a
    class until `evaluations` proxy calls are spent; a swap is kept only if it raises the score.
    With a screen (`SearchOptions.screen`), a multi-fidelity search: of `screen_draws` base
    subsets the proxy judges each rule's own and the ones the screen ranks best, and each swap it
    judges is the screen's best of `screen_swaps` random ones, and with `screen_greedy` one more
    draw is built by the screen alone (`greedy_by_screen`). A portfolio (`bases`) alternates
    the draws between rules; a shortlist scores the best few again before the pick. With
    `evaluations=0`, the base rule's subset of the whole pool (the search's control)."""
    s = options.search
    if s is None:
        raise ValueError("selector search needs Options.search: its settings and its proxy")
    if options.base in NOT_A_BASE or options.base not in SELECTORS:
        allowed = ", ".join(sorted(set(SELECTORS) - set(NOT_A_BASE)))
        raise ValueError(f"selector.base={options.base!r} is not allowed: one of {allowed}")
    if s.candidates not in CANDIDATES:
        raise ValueError(f"selector.search.candidates={s.candidates!r}: one of {', '.join(CANDIDATES)}")
    rng = np.random.default_rng(seed)
    base = replace(options, search=None)
    everything = np.arange(len(x))

    def base_on(rows: np.ndarray, draw_seed: int, n: int = k, within: Options = base) -> np.ndarray:
        scores = None if within.scores is None else within.scores[rows]
        picked = select(options.base, x[rows], labels[rows], n, draw_seed, replace(within, scores=scores))
        return rows[picked]

    if s.evaluations == 0:
        return base_on(everything, seed)

    spent = 0
    best, best_score = everything[:0], -math.inf

    def evaluate(subset: np.ndarray) -> tuple[float, bool]:
        nonlocal spent
        spent += 1
        score = float(s.proxy(np.sort(subset)))
        if s.trace is not None:
            s.trace(spent, score, score > best_score)
        return score, score > best_score

    # the base rule and the portfolio's, in turn: each one's first draw on the whole pool
    rules: list[Callable[[np.ndarray, int, int], np.ndarray]] = [lambda rows, n, sd: base_on(rows, sd, n)]
    rules += list(s.bases)
    judged = min(max(1, s.draws), s.evaluations)
    drawn = max(judged, s.screen_draws if s.screen is not None else 0)
    subsets = [
        np.asarray(
            rules[draw % len(rules)](
                everything if draw < len(rules) else class_halves(labels, rng),
                k,
                seed if draw < len(rules) else int(rng.integers(2**31)),
            )
        )
        for draw in range(drawn)
    ]
    if drawn > judged:  # each rule's subset of the whole pool, then the draws the screen ranks best
        own = min(len(rules), judged)
        screened = [float(s.screen(np.sort(subset))) for subset in subsets[own:]]
        order = np.argsort(-np.asarray(screened), kind="stable")[: judged - own]
        subsets = subsets[:own] + [subsets[own + i] for i in order]
    if s.screen is not None and s.screen_greedy > 0:  # one more draw, built by the screen alone
        built = greedy_by_screen(s.screen, labels, k, s.screen_greedy, rng)
        subsets = (subsets[: len(rules)] + [built] + subsets[len(rules) :])[: s.evaluations]
    judged_subsets: list[tuple[float, np.ndarray]] = []
    for subset in subsets:
        score, better = evaluate(subset)
        judged_subsets.append((score, subset))
        if better:
            best, best_score = subset, score

    candidates = _candidates(
        x,
        labels,
        best,
        s.candidates,
        s.width,
        lambda rows, n: base_on(rows, seed, n, replace(base, balance=False)),
    )
    best = best.copy()
    kept = set(best.tolist())
    attempts = 0
    while spent < s.evaluations and attempts < 100 * s.evaluations:
        attempts += 1
        swaps = []  # (position, image): `screen_swaps` random swaps, the screen's best judged
        for _ in range(max(1, s.screen_swaps) if s.screen is not None else 1):
            position = int(rng.integers(len(best)))
            fresh = [j for j in candidates(int(best[position])) if j not in kept]
            if fresh:
                swaps.append((position, fresh[int(rng.integers(len(fresh)))]))
        if not swaps:
            continue
        if len(swaps) > 1:
            swaps = [swaps[int(np.argmax([float(s.screen(np.sort(_swapped(best, *w)))) for w in swaps]))]]
        position = swaps[0][0]
        new = _swapped(best, *swaps[0])
        score, better = evaluate(new)
        judged_subsets.append((score, new))
        if better:
            kept.remove(int(best[position]))
            kept.add(int(new[position]))
            best, best_score = new, score
    if s.shortlist > 0 and s.rescore is not None:
        best = _shortlisted(judged_subsets, s.shortlist, s.rescore, s.rescore_weight)
    return best


def greedy_by_screen(
    screen: Callable[[np.ndarray], float], labels: np.ndarray, k: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """k class-balanced rows built one image at a time, round by round over the classes: each
    adds to its class the one of `width` random images of it that the screen scores best with
    the images chosen so far (greedy forward selection under a kernel proxy, as bilevel coresets
    do, Borsos et al. 2020). The candidates of one step differ in that image alone, so a screen
    blind to the classes still missing compares them fairly."""
    quotas = class_quotas(labels, k)
    chosen: list[int] = []
    for round_ in range(max(quotas.values())):
        for c in sorted(quotas):
            if quotas[c] <= round_:
                continue
            members = np.setdiff1d(np.flatnonzero(labels == c), chosen)
            trial = rng.choice(members, size=min(width, len(members)), replace=False)
            scores = [float(screen(np.sort(np.array([*chosen, int(j)])))) for j in trial]
            chosen.append(int(trial[int(np.argmax(scores))]))
    return np.sort(np.array(chosen, dtype=np.int64))


def _shortlisted(
    judged: list[tuple[float, np.ndarray]], m: int, rescore: Callable[[np.ndarray], float], weight: float
) -> np.ndarray:
    """Of the `m` best distinct subsets the proxy judged, the one whose score, averaged with a
    second score under other seeds (`weight` on the second), is highest: the proxy's winner is
    partly its seeds' luck, and more seeds on a few finalists cost little."""
    seen: set[bytes] = set()
    finalists = []
    for score, subset in sorted(judged, key=lambda t: -t[0]):
        key = np.sort(subset).tobytes()
        if key not in seen:
            seen.add(key)
            finalists.append((score, subset))
        if len(finalists) == m:
            break
    combined = [
        (1 - weight) * score + weight * float(rescore(np.sort(subset))) for score, subset in finalists
    ]
    return finalists[int(np.argmax(combined))][1]


def _swapped(subset: np.ndarray, position: int, image: int) -> np.ndarray:
    """A copy of `subset` with `image` in place of the one at `position`."""
    trial = subset.copy()
    trial[position] = image
    return trial


def _candidates(
    x: np.ndarray,
    labels: np.ndarray,
    start: np.ndarray,
    kind: str,
    width: int,
    base_rule: Callable[[np.ndarray, int], np.ndarray],
) -> Callable[[int], list[int]]:
    """image -> the images a swap may bring in for it, all of its class: its `width` nearest
    neighbours in the embedding, or ("ranked") what the base rule picks from that class with
    `width` more images than the start holds of it."""
    neighbours: dict[int, list[int]] = {}
    ranked: dict[int, list[int]] = {}

    def near(i: int) -> list[int]:
        if i not in neighbours:
            members = np.flatnonzero(labels == labels[i])
            d = np.einsum("ij,ij->i", x[members] - x[i], x[members] - x[i])
            order = members[np.argsort(d, kind="stable")]
            neighbours[i] = [int(j) for j in order if j != i][:width]
        return neighbours[i]

    def by_rank(i: int) -> list[int]:
        c = int(labels[i])
        if c not in ranked:
            members = np.flatnonzero(labels == c)
            have = int(np.sum(labels[start] == c))
            ranked[c] = [int(j) for j in base_rule(members, min(len(members), have + width))]
        return ranked[c]

    return near if kind == "neighbors" else by_rank
