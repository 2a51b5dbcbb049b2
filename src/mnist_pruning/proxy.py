"""The proxy a validation-guided search scores candidate subsets with: short LeNet-5 trainings
on the candidate, accuracy on images held out of the training set (never the test set).

Every candidate is trained with the same seeds (common random numbers), so that a difference
between two candidates' scores is theirs, not the draw of initial weights or augmentations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from mnist_pruning.model import LeNet5
from mnist_pruning.training import Recipe, normalize, train


@dataclass(frozen=True)
class ProxySettings:
    steps: int
    batch_size: int
    seeds: int  # trainings per candidate (per trainer)
    eval_size: int  # held-out images scored
    augment: bool  # the recipe's augmentation, or plain images
    optimizer: str | None = None  # None: the run's recipe's
    lr: float | None = None
    weight_decay: float | None = None
    strength: float = 1.0  # the maps' strength
    elastic: bool = True  # elastic fields on top of the affine maps
    models: tuple[str, ...] = ("lenet5",)  # the trainers a score is the mean over (model.MODELS)


def proxy_recipe(recipe: Recipe, s: ProxySettings) -> Recipe:
    """The proxy's recipe: `steps` at `batch_size` (never an epoch schedule), a tenth of them
    warm-up at most, cosine decay, no logging; its optimizer, learning rate, weight decay and
    maps' strength where set, the run's recipe's otherwise (at the defaults, that recipe cut short)."""
    return replace(
        recipe,
        steps=s.steps,
        epochs=None,
        schedule="warmup_cosine",
        batch_size=s.batch_size,
        warmup_steps=min(recipe.warmup_steps, s.steps // 10),
        augment=recipe.augment and s.augment,
        optimizer=recipe.optimizer if s.optimizer is None else s.optimizer,
        lr=recipe.lr if s.lr is None else s.lr,
        weight_decay=recipe.weight_decay if s.weight_decay is None else s.weight_decay,
        aug_rotate=recipe.aug_rotate * s.strength,
        aug_translate=recipe.aug_translate * s.strength,
        aug_scale=recipe.aug_scale * s.strength,
        elastic_alpha=recipe.elastic_alpha * s.strength if s.elastic else 0.0,
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
    models: Sequence[Callable[[], nn.Module]] = (LeNet5,),
) -> Callable[[np.ndarray], float]:
    """score(rows): trains on the pool rows `rows` once per seed under each of `models` and
    returns the mean accuracy on the first `eval_size` held-out images (the same seeds under
    every model and for every candidate)."""
    scored = np.asarray(holdout[: settings.eval_size])
    if len(scored) == 0:
        raise ValueError("the search's proxy needs held-out images (selector.search.holdout >= 1)")
    held = {"val": (normalize(images[scored], mean, std), labels[scored])}
    short = proxy_recipe(recipe, settings)

    def score(rows: np.ndarray) -> float:
        picked = torch.as_tensor(pool[rows], dtype=torch.long)
        x, y = normalize(images[picked], mean, std), labels[picked]
        accs = [
            train(x, y, held, short, seed, device, progress=False, model=model).metrics["val_acc"]
            for model in models
            for seed in seeds
        ]
        return float(np.mean(accs))

    return score
