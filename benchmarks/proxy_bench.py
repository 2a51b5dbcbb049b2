"""The search proxy's cost and fidelity, for benchmarks/bench.py (`--only proxy` runs it alone).

Fidelity is what a search needs of its proxy: that it ranks candidate subsets as the full recipe
would. Measured as the Spearman correlation, over the same candidates, between the proxy's score
and the full recipe's accuracy, both on training images held out of the pool.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from common import MEAN, STD, config

from mnist_pruning.data import load_mnist
from mnist_pruning.embed import pca, pca_with
from mnist_pruning.proxy import ProxySettings, make_proxy, proxy_seeds
from mnist_pruning.selectors import Options, select
from mnist_pruning.subset import recipe_of
from mnist_pruning.training import normalize, train

PROXY_SETTINGS = [(300, 1), (600, 1), (600, 2), (1000, 2)]  # (steps, seeds) compared for fidelity
SCREEN_RIDGE = 1e-3  # relative to the kernel's mean diagonal (mnist_pruning.screens)
NTK_INITS = [0, 1, 2]


def proxy_candidates(x: np.ndarray, labels: np.ndarray, k: int, n: int) -> list[np.ndarray]:
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


def bench_proxy(root: str, tiny: bool) -> dict:
    """The search's proxy on this machine: per setting, seconds per evaluation, and its fidelity:
    the Spearman correlation, over the same candidates, between the proxy's score (on the first
    half of a 10,000-image holdout) and the accuracy of the full recipe trained on the candidate
    (on the holdout's other half), both from training images only."""
    from scipy.stats import spearmanr

    data = load_mnist(root)
    k, n, holdout_size = (20, 4, 600) if tiny else (20, 24, 10_000)
    perm = np.random.default_rng(0).permutation(len(data.train_labels))
    holdout, pool = perm[:holdout_size], np.sort(perm[holdout_size:])
    labels = data.train_labels.numpy()
    x = pca(data.train_flat()[pool], 50)
    candidates = proxy_candidates(x, labels[pool], k, n)
    cfg = config([f"k={k}"] + (["train.steps=10"] if tiny else []))
    full = recipe_of(cfg)
    half = holdout_size // 2
    second = {
        "val": (normalize(data.train_images[holdout[half:]], MEAN, STD), data.train_labels[holdout[half:]])
    }
    accs, full_seconds = [], []
    for rows in candidates:
        idx = torch.as_tensor(pool[rows], dtype=torch.long)
        res = train(
            normalize(data.train_images[idx], MEAN, STD),
            data.train_labels[idx],
            second,
            full,
            0,
            torch.device("cpu"),
            progress=False,
        )
        accs.append(res.metrics["val_acc"])
        full_seconds.append(res.train_seconds)
    rows_out = []
    for steps, seeds in [(5, 1), (5, 2)] if tiny else PROXY_SETTINGS:
        settings = ProxySettings(steps=steps, batch_size=64, seeds=seeds, eval_size=half, augment=True)
        score = make_proxy(
            data.train_images,
            data.train_labels,
            pool,
            holdout,
            full,
            settings,
            proxy_seeds(0, seeds),
            MEAN,
            STD,
            torch.device("cpu"),
        )
        start = time.perf_counter()
        scores = [score(rows) for rows in candidates]
        seconds = (time.perf_counter() - start) / len(candidates)
        rho = float(spearmanr(scores, accs).statistic)
        rows_out.append({"steps": steps, "seeds": seeds, "seconds_per_evaluation": seconds, "spearman": rho})
    screens = bench_screens(
        data, pool, holdout[:half], x, candidates, accs, NTK_INITS[:1] if tiny else NTK_INITS
    )
    return {
        "k": k,
        "subsets": n,
        "full_recipe_steps": full.steps,
        "full_recipe_seconds_median": float(np.median(full_seconds)),
        "full_recipe_acc_range": [float(min(accs)), float(max(accs))],
        "settings": rows_out,
        "screens": screens,
    }


def bench_screens(data, pool, scored, x_pool, candidates, truths, inits: list[int]) -> list[dict]:
    """The cheap screens (mnist_pruning.screens) on the same candidates and the same scored
    half of the holdout as the proxies: seconds per evaluation (the NTK's one-off kernels apart)
    and Spearman against the full recipe. The PCA-50 embedding here is the pool's, and the
    holdout is projected on the pool's components."""
    from scipy.stats import spearmanr

    from mnist_pruning.model import LeNet5
    from mnist_pruning.screens import nn_screen, ntk_screen, rbf_screen

    labels = data.train_labels.numpy()
    flat = data.train_flat()
    x_hold = pca_with(flat[pool], flat[scored], x_pool.shape[1])[1]
    cand = np.unique(np.concatenate(candidates))
    images = normalize(data.train_images, MEAN, STD)
    start = time.perf_counter()
    ntk = ntk_screen(
        LeNet5,
        images[pool[cand]],
        cand,
        labels[pool],
        images[scored],
        labels[scored],
        inits,
        SCREEN_RIDGE,
    )
    setup = time.perf_counter() - start
    out = []
    for name, screen, setup_seconds in [
        ("rbf-krr on pca50", rbf_screen(x_pool, labels[pool], x_hold, labels[scored], SCREEN_RIDGE), 0.0),
        ("1-nn on pca50", nn_screen(x_pool, labels[pool], x_hold, labels[scored]), 0.0),
        (f"ntk-krr, lenet5 at init x {len(inits)}", ntk, setup),
    ]:
        start = time.perf_counter()
        scores = [screen(rows) for rows in candidates]
        seconds = (time.perf_counter() - start) / len(candidates)
        rho = float(spearmanr(scores, truths).statistic)
        out.append(
            {
                "screen": name,
                "seconds_per_evaluation": seconds,
                "setup_seconds": setup_seconds,
                "spearman": rho,
            }
        )
    return out


def proxy_table(p: dict) -> list[str]:
    lines = []
    for r in p["settings"]:
        lines.append(
            f"| search proxy, {r['steps']} steps x {r['seeds']} seeds, k={p['k']}: seconds per evaluation, "
            f"Spearman vs the full recipe over {p['subsets']} subsets | {r['seconds_per_evaluation']:.1f} s, "
            f"{r['spearman']:.2f} |"
        )
    for r in p.get("screens", []):  # results written before the screens have none
        lines.append(
            f"| screen, {r['screen']}, k={p['k']}: seconds per evaluation (setup), Spearman vs the full "
            f"recipe over {p['subsets']} subsets | {r['seconds_per_evaluation'] * 1000:.1f} ms "
            f"({r['setup_seconds']:.0f} s), {r['spearman']:.2f} |"
        )
    return lines
