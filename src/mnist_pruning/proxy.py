"""The proxy a validation-guided search scores candidate subsets with: short LeNet-5 trainings
on the candidate, accuracy on images held out of the training set (never the test set).

Every candidate is trained with the same seeds (common random numbers), so that a difference
between two candidates' scores is theirs, not the draw of initial weights or augmentations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from mnist_pruning.training import Recipe, normalize, train


@dataclass(frozen=True)
class ProxySettings:
    steps: int
    batch_size: int
    seeds: int  # trainings per candidate
    eval_size: int  # held-out images scored
    augment: bool  # the recipe's augmentation, or plain images


def proxy_recipe(recipe: Recipe, s: ProxySettings) -> Recipe:
    """The run's recipe (its regime's learning rate, weight decay, augmentation) on a short
    schedule: `steps` at `batch_size` (never an epoch schedule), a tenth of them warm-up at most,
    cosine decay, no logging."""
    return replace(
        recipe,
        steps=s.steps,
        epochs=None,
        schedule="warmup_cosine",
        batch_size=s.batch_size,
        warmup_steps=min(recipe.warmup_steps, s.steps // 10),
        augment=recipe.augment and s.augment,
        eval_every=0,
        log_every=0,
    )


def proxy_seeds(run_seed: int, n: int) -> list[int]:
    """The training seeds every candidate of one search shares, drawn from the run's seed."""
    return [int(v) for v in np.random.SeedSequence(run_seed).generate_state(n) % (2**31)]


def make_proxy(
    images: torch.Tensor,
    labels: torch.Tensor,
    pool: np.ndarray,
    holdout: np.ndarray,
    recipe: Recipe,
    settings: ProxySettings,
    seeds: list[int],
    mean: float,
    std: float,
    device: torch.device,
) -> Callable[[np.ndarray], float]:
    """score(rows): trains on the pool rows `rows` once per seed and returns the mean accuracy
    on the first `eval_size` held-out images."""
    scored = np.asarray(holdout[: settings.eval_size])
    if len(scored) == 0:
        raise ValueError("the search's proxy needs held-out images (selector.search.holdout >= 1)")
    held = {"val": (normalize(images[scored], mean, std), labels[scored])}
    short = proxy_recipe(recipe, settings)

    def score(rows: np.ndarray) -> float:
        picked = torch.as_tensor(pool[rows], dtype=torch.long)
        x, y = normalize(images[picked], mean, std), labels[picked]
        accs = [train(x, y, held, short, seed, device, progress=False).metrics["val_acc"] for seed in seeds]
        return float(np.mean(accs))

    return score
