"""The search proxy's cost and fidelity, for benchmarks/bench.py (`--only proxy` runs it alone).

Fidelity is what a search needs of its proxy: that it ranks candidate subsets as the full recipe
would, where the search ranks them. Measured at each k (10 and 20) against the full recipe's
held-out accuracy (the mean of `truth_seeds` trainings, on the holdout's second half; the proxies
score on its first half), on three sets of class-balanced candidates:

- `mixed`: subsets of very different quality (random within each class, herding on random halves
  of each class): Spearman over all of them, as the first generation was chosen;
- `group`: strong subsets that resemble each other (draws of one base, herding on class halves):
  Spearman within them, where a search's best-of-draws works;
- `pairs`: subsets one swap apart (an image for one of its 20 nearest same-class neighbours, the
  search's move): the share of pairs a proxy orders as the full recipe's mean does.

The full recipe's own noise is measured on the same sets: one of its trainings against the mean
of the others. Seconds per evaluation beside each proxy; the screens' one-off setup apart.

The full recipe's trainings and the proxies' scores are hours at full size, so each is written to
a ledger (`benchmarks/proxy-ledger.json`, committed) as it finishes: a stopped bench resumes where
it was, on this machine or another. A proxy's seconds are timed afresh on its first
`TIME_SAMPLE` candidates in every run, so that the seconds in one table come from one run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from common import MEAN, REPO, STD, config

from mnist_pruning.data import load_mnist
from mnist_pruning.embed import pca, pca_with
from mnist_pruning.model import build_model
from mnist_pruning.proxy import ProxySettings, make_proxy, proxy_seeds
from mnist_pruning.selectors import Options, select
from mnist_pruning.subset import recipe_of
from mnist_pruning.training import Recipe, normalize, train

# the proxies compared: the first generation's (the run's recipe cut short), then recipes of the
# proxy's own (selector.search.proxy.*); each a ProxySettings over BASE
BASE = dict(steps=1000, batch_size=64, seeds=2, augment=True)
LIGHT = dict(strength=0.5, elastic=False)
PROXIES: dict[str, dict] = {
    "first generation: 1000 steps x 2 seeds, the recipe cut short": {},
    "300 x 1": dict(steps=300, seeds=1),
    "300 x 1, light maps": dict(steps=300, seeds=1, **LIGHT),
    "300 x 1, plain": dict(steps=300, seeds=1, augment=False),
    "200 x 1, light maps": dict(steps=200, seeds=1, **LIGHT),
    "200 x 1, adam 3e-3, light maps": dict(steps=200, seeds=1, optimizer="adam", lr=3e-3, **LIGHT),
    "300 x 2, light maps": dict(steps=300, seeds=2, **LIGHT),
    # more updates of fewer images at the same cost (a step of 16 images costs 0.4 of one of 64)
    "700 x 1, batch 16": dict(steps=700, seeds=1, batch_size=16),
    "500 x 1, batch 16": dict(steps=500, seeds=1, batch_size=16),
    "500 x 1, batch 32": dict(steps=500, seeds=1, batch_size=32),
    "350 x 2, batch 16": dict(steps=350, seeds=2, batch_size=16),
    "250 x 2, batch 16": dict(steps=250, seeds=2, batch_size=16),
    "1000 x 1, batch 8": dict(steps=1000, seeds=1, batch_size=8),
    "300 x 1, light maps, lenet5 + mlp": dict(steps=300, seeds=1, models=("lenet5", "mlp"), **LIGHT),
}
TINY_PROXIES = {
    "5 x 1": dict(steps=5, seeds=1),
    "5 x 1, lenet5 + mlp": dict(steps=5, seeds=1, models=("lenet5", "mlp")),
}
LEDGER = REPO / "benchmarks" / "proxy-ledger.json"
TIME_SAMPLE = 4  # candidates each proxy is timed on afresh in every run
SCREEN_RIDGE = 1e-3  # relative to the kernel's mean diagonal (mnist_pruning.screens)
NTK_INITS = [0, 1, 2]


def mixed_candidates(x: np.ndarray, labels: np.ndarray, k: int, n: int) -> list[np.ndarray]:
    """n subsets of k pool rows, all class-balanced, of the kinds a search compares: half drawn
    at random within each class, half herding's picks from random halves of each class."""
    from mnist_pruning.selectors.search import class_halves

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(select("random", x, labels, k, i, Options(balance=True)))
        else:
            rows = class_halves(labels, rng)
            out.append(rows[select("herding", x[rows], labels[rows], k, i, Options(balance=True))])
    return out


def group_candidates(x: np.ndarray, labels: np.ndarray, k: int, n: int) -> list[np.ndarray]:
    """n draws of one strong base (herding on random halves of each class): alike, all strong."""
    from mnist_pruning.selectors.search import class_halves

    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        rows = class_halves(labels, rng)
        out.append(np.sort(rows[select("herding", x[rows], labels[rows], k, 100 + i, Options(balance=True))]))
    return out


def swapped_pairs(
    x: np.ndarray, labels: np.ndarray, starts: list[np.ndarray], per_start: int, width: int = 20
) -> list[tuple[int, np.ndarray]]:
    """(start index, subset): each start with one image swapped for one of its `width` nearest
    same-class neighbours not in it, `per_start` times (the search's move)."""
    rng = np.random.default_rng(2)
    out = []
    for s, start in enumerate(starts):
        for _ in range(per_start):
            position = int(rng.integers(len(start)))
            i = int(start[position])
            members = np.flatnonzero(labels == labels[i])
            near = members[np.argsort(((x[members] - x[i]) ** 2).sum(1), kind="stable")]
            fresh = [int(j) for j in near[1 : width + 1] if j not in set(start.tolist())]
            trial = start.copy()
            trial[position] = fresh[int(rng.integers(len(fresh)))]
            out.append((s, np.sort(trial)))
    return out


def digest(*parts) -> str:
    """A short stable key for what a measurement depends on (recipes, settings, rows)."""
    h = hashlib.sha1()
    for part in parts:
        h.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return h.hexdigest()[:16]


class Ledger:
    """Measurements by key, written through (atomically) after each one, so that a bench stopped
    after hours loses nothing; `path=None` keeps them in memory (the --tiny run). A write merges
    into what the file holds under a lock, so two benches may share it (`--sizes 10` beside
    `--sizes 20`) without one erasing the other's."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, list] = json.loads(path.read_text()) if path and path.exists() else {}

    def get(self, key: str) -> list | None:
        return self.data.get(key)

    def put(self, key: str, value: list) -> None:
        self.data[key] = value
        if self.path:
            with open(self.path.with_suffix(".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if self.path.exists():
                    self.data = {**json.loads(self.path.read_text()), **self.data}
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.data, indent=0, sort_keys=True))
                os.replace(tmp, self.path)


_WORKER: dict = {}  # what each truth worker loads once: the data, the recipe, the held-out set


def _truth_worker(root: str, recipe: Recipe, holdout: np.ndarray) -> None:
    """A truth worker's setup (one thread): MNIST and the normalised holdout, once per process
    rather than once per training; the full recipe as the bench composed it."""
    torch.set_num_threads(1)
    data = load_mnist(root)
    _WORKER["data"] = data
    _WORKER["recipe"] = recipe
    _WORKER["held"] = {"val": (normalize(data.train_images[holdout], MEAN, STD), data.train_labels[holdout])}


def _truth(args: tuple) -> tuple[float, float]:
    """One full-recipe training of a candidate in a worker: held-out accuracy, seconds."""
    rows, seed = args
    data = _WORKER["data"]
    idx = torch.as_tensor(rows, dtype=torch.long)
    x, y = normalize(data.train_images[idx], MEAN, STD), data.train_labels[idx]
    res = train(x, y, _WORKER["held"], _WORKER["recipe"], seed, torch.device("cpu"), progress=False)
    return res.metrics["val_acc"], res.train_seconds


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def truths_of(
    ledger: Ledger, jobs: list[tuple[np.ndarray, int]], setup: tuple, prefix: str, workers: int
) -> list[list]:
    """[held-out accuracy, seconds] of each (rows, seed) full-recipe training: from the ledger, or
    trained in `workers` processes, each written to the ledger as it finishes."""

    def key(rows: np.ndarray, seed: int) -> str:
        return f"{prefix}/{digest(rows)}/{seed}"

    todo = [job for job in jobs if ledger.get(key(*job)) is None]
    if todo:
        print(f"proxy bench: {len(todo)} of {len(jobs)} trainings to go (the rest in the ledger)")
        with ProcessPoolExecutor(max_workers=workers, initializer=_truth_worker, initargs=setup) as ex:
            futures = {ex.submit(_truth, job): job for job in todo}
            for done, future in enumerate(as_completed(futures), 1):
                ledger.put(key(*futures[future]), list(future.result()))
                if done % 10 == 0:
                    print(f"proxy bench: {done}/{len(todo)} trainings")
    return [ledger.get(key(*job)) for job in jobs]


def bench_proxy(
    root: str, tiny: bool, workers: int = 2, ledger_path: Path | None = None, sizes: list[int] | None = None
) -> dict:
    """Per k (`sizes`; None: 10 and 20, 10 alone when tiny), every proxy and screen: seconds per
    evaluation, Spearman over the mixed and within the group, pair agreement; the truth's own
    noise on the same sets. Resumes from the ledger at `ledger_path` (None: nothing kept), so a
    size whose trainings are in it is a table in minutes while another is still training."""
    ledger = Ledger(ledger_path)
    data = load_mnist(root)
    holdout_size = 600 if tiny else 10_000
    perm = np.random.default_rng(0).permutation(len(data.train_labels))
    holdout, pool = perm[:holdout_size], np.sort(perm[holdout_size:])
    labels = data.train_labels.numpy()
    x = pca(data.train_flat()[pool], 50)
    half = holdout_size // 2
    n_mixed, n_group, n_starts, per_start, truth_seeds = (4, 3, 2, 2, 2) if tiny else (24, 12, 4, 5, 3)
    sizes = sizes or ([10] if tiny else [10, 20])
    out = {"holdout": holdout_size, "truth_seeds": truth_seeds, "sizes": []}
    for k in sizes:
        mixed = mixed_candidates(x, labels[pool], k, n_mixed)
        group = group_candidates(x, labels[pool], k, n_group)
        starts = group[:n_starts]
        pairs = swapped_pairs(x, labels[pool], starts, per_start)
        subsets = mixed + group + [p for _, p in pairs]
        jobs = [(pool[s], seed) for s in subsets for seed in range(truth_seeds)]
        full = recipe_of(config([f"k={k}"] + (["train.steps=10"] if tiny else [])))
        setup = (root, full, holdout[half:])
        results = truths_of(ledger, jobs, setup, digest("truth", full, holdout[half:]), workers)
        truths = np.array([r[0] for r in results]).reshape(len(subsets), truth_seeds)
        full_seconds = [r[1] for r in results]
        sets = _sets(len(mixed), len(group), n_starts, pairs)
        rows = [
            _fidelity(
                "the full recipe: one training vs the mean of the others",
                sets,
                truths[:, 0],
                truths[:, 1:].mean(1),
                float(np.median(full_seconds)),
                0.0,
            )
        ]
        truth = truths.mean(1)
        for name, over in (TINY_PROXIES if tiny else PROXIES).items():
            settings = ProxySettings(**{**BASE, "eval_size": half, **over})
            score = make_proxy(
                data.train_images,
                data.train_labels,
                pool,
                holdout,
                full,
                settings,
                proxy_seeds(0, settings.seeds),
                MEAN,
                STD,
                torch.device("cpu"),
                [lambda m=m: build_model(m) for m in settings.models],
            )
            prefix = digest("proxy", settings, full, holdout[:half])
            keys = [f"{prefix}/{digest(pool[s])}" for s in subsets]
            rows.append(_scored(name, score, subsets, sets, truth, 0.0, ledger, keys))
        for name, score, setup in _screens(
            data, pool, holdout[:half], x, subsets, NTK_INITS[:1] if tiny else NTK_INITS
        ):
            rows.append(_scored(name, score, subsets, sets, truth, setup))
        out["sizes"].append(
            {
                "k": k,
                "mixed": len(mixed),
                "group": len(group),
                "pairs": len(pairs),
                "full_recipe_steps": full.steps,
                "full_recipe_seconds_median": float(np.median(full_seconds)),
                "truth_range_mixed": [float(truth[sets["mixed"]].min()), float(truth[sets["mixed"]].max())],
                "truth_range_group": [float(truth[sets["group"]].min()), float(truth[sets["group"]].max())],
                "proxies": rows,
            }
        )
        first = rows[1]["seconds_per_evaluation"]  # the first generation's proxy
        for r in rows[1:]:
            r["cheaper_than_first_generation"] = first / max(r["seconds_per_evaluation"], 1e-9)
    return out


def _sets(n_mixed: int, n_group: int, n_starts: int, pairs: list) -> dict:
    """Positions in the list of subsets: the mixed, the group, and each pair as (start, swapped)."""
    first_pair = n_mixed + n_group
    return {
        "mixed": np.arange(n_mixed),
        "group": np.arange(n_mixed, first_pair),
        "pairs": [(n_mixed + s, first_pair + i) for i, (s, _) in enumerate(pairs)],
    }


def _fidelity(
    name: str, sets: dict, scores: np.ndarray, truth: np.ndarray, seconds: float, setup: float
) -> dict:
    pair_agree = [
        0.5
        if scores[b] == scores[a]
        else float(np.sign(scores[b] - scores[a]) == np.sign(truth[b] - truth[a]))
        for a, b in sets["pairs"]
    ]
    return {
        "proxy": name,
        "seconds_per_evaluation": seconds,
        "setup_seconds": setup,
        "spearman_mixed": _spearman(scores[sets["mixed"]], truth[sets["mixed"]]),
        "spearman_group": _spearman(scores[sets["group"]], truth[sets["group"]]),
        "pair_agreement": float(np.mean(pair_agree)),
    }


def _scored(
    name: str,
    score: Callable[[np.ndarray], float],
    subsets: list,
    sets: dict,
    truth: np.ndarray,
    setup: float,
    ledger: Ledger | None = None,
    keys: list[str] | None = None,
) -> dict:
    """A proxy's fidelity; its scores from the ledger where there (a proxy is deterministic for
    its seeds), its seconds per evaluation timed afresh on the first TIME_SAMPLE candidates (on
    all of them without a ledger)."""
    scores, seconds = [], []
    for i, rows in enumerate(subsets):
        hit = ledger.get(keys[i]) if ledger else None
        if hit is None or i < TIME_SAMPLE:
            start = time.perf_counter()
            hit = [float(score(rows))]
            seconds.append(time.perf_counter() - start)
            if ledger:
                ledger.put(keys[i], hit)
        scores.append(hit[0])
    return _fidelity(name, sets, np.array(scores), truth, float(np.mean(seconds)), setup)


def _screens(data, pool, scored, x_pool, subsets, inits: list[int]) -> list[tuple[str, Callable, float]]:
    """The cheap screens (mnist_pruning.screens) on the proxies' scored half of the holdout: the
    PCA-50 embedding is the pool's, the holdout projected on its components; the NTK's setup is
    the holdout's gradients and every candidate image's, once."""
    from mnist_pruning.model import LeNet5
    from mnist_pruning.screens import nn_screen, ntk_screen, rbf_screen

    labels = data.train_labels.numpy()
    flat = data.train_flat()
    x_hold = pca_with(flat[pool], flat[scored], x_pool.shape[1])[1]
    images = normalize(data.train_images, MEAN, STD)
    start = time.perf_counter()
    ntk = ntk_screen(
        LeNet5,
        lambda rows: images[pool[rows]],
        labels[pool],
        images[scored],
        labels[scored],
        inits,
        SCREEN_RIDGE,
    )
    ntk(np.unique(np.concatenate(subsets)))
    setup = time.perf_counter() - start
    return [
        ("rbf-krr on pca50", rbf_screen(x_pool, labels[pool], x_hold, labels[scored], SCREEN_RIDGE), 0.0),
        ("1-nn on pca50", nn_screen(x_pool, labels[pool], x_hold, labels[scored]), 0.0),
        (f"ntk-krr, lenet5 at init x {len(inits)}", ntk, setup),
    ]


def proxy_table(p: dict) -> list[str]:
    if "sizes" not in p:  # results written by the first generation's bench
        return [
            f"| search proxy, {r['steps']} steps x {r['seeds']} seeds, k={p['k']}: seconds per evaluation, "
            f"Spearman vs the full recipe over {p['subsets']} subsets | {r['seconds_per_evaluation']:.1f} s, "
            f"{r['spearman']:.2f} |"
            for r in p["settings"]
        ]
    lines = []
    for s in p["sizes"]:
        for r in s["proxies"]:
            cost = (
                f"{r['seconds_per_evaluation']:.2f} s"
                if r["seconds_per_evaluation"] >= 0.1
                else (f"{r['seconds_per_evaluation'] * 1000:.1f} ms")
            )
            setup = f" ({r['setup_seconds']:.0f} s setup)" if r["setup_seconds"] else ""
            if "cheaper_than_first_generation" in r:
                setup += f", {r['cheaper_than_first_generation']:,.0f}x cheaper than the first generation"
            lines.append(
                f"| k={s['k']}, {r['proxy']}: seconds per evaluation; Spearman over {s['mixed']} mixed, "
                f"within {s['group']} alike; pairs ordered right of {s['pairs']} | {cost}{setup}; "
                f"{r['spearman_mixed']:.2f}, {r['spearman_group']:.2f}; {r['pair_agreement']:.2f} |"
            )
    return lines
