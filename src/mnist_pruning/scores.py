"""Per-image scores from short LeNet-5 trainings on the selection pool, for scored selectors.

    el2n        Paul et al. 2021: || softmax(f(x)) - onehot(y) ||_2 after `epochs` epochs,
                averaged over `inits` initialisations
    forgetting  Toneva et al. 2019: per image, how often its prediction went from correct to
                wrong between two presentations during training, summed over initialisations;
                an image never classified correctly counts as `epochs` events (most forgotten)

The trainings see only the rows they are given (the selection pool): never the validation split
or the test set. Settings are `selector.score` (conf/selector/el2n.yaml, forgetting.yaml).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_pruning.model import LeNet5

log = logging.getLogger(__name__)

BatchHook = Callable[[int, Tensor, Tensor], None]  # (epoch, batch rows, logits)


@dataclass(frozen=True)
class ScoreSettings:
    epochs: int
    inits: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    seed: int


def fit_epochs(
    x: Tensor, y: Tensor, s: ScoreSettings, seed: int, on_batch: BatchHook | None = None
) -> nn.Module:
    """LeNet-5 trained for `s.epochs` whole epochs over (x, y) by SGD with Nesterov momentum,
    cosine-decayed; `on_batch` sees every batch's rows and logits (for forgetting events)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LeNet5().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=s.momentum, nesterov=s.momentum > 0, weight_decay=s.weight_decay
    )
    epochs, batch_size = s.epochs, s.batch_size
    steps = epochs * -(-len(x) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            rows = order[i : i + batch_size]
            logits = model(x[rows])
            if on_batch is not None:
                on_batch(epoch, rows, logits.detach())
            loss = F.cross_entropy(logits, y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 4096, features: bool = False) -> Tensor:
    """Softmax outputs, or with `features` the 84 penultimate-layer activations."""
    head = model.classifier[:-1] if features else model.classifier
    out = [head(model.features(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    out = torch.cat(out)
    return out if features else out.softmax(1)


def el2n(x: Tensor, y: Tensor, s: ScoreSettings) -> np.ndarray:
    """Mean over initialisations of the error L2 norm after `s.epochs` epochs; low is easy."""
    total = torch.zeros(len(x))
    onehot = F.one_hot(y, 10).float()
    for init in range(s.inits):
        model = fit_epochs(x, y, s, s.seed + init)
        total += (predict(model, x) - onehot).norm(dim=1)
        log.info("el2n: initialisation %d/%d done", init + 1, s.inits)
    return (total / s.inits).numpy()


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """(presentations, images) booleans -> per image, the correct-to-wrong transitions; an image
    never correct gets `presentations` (more than any image that was learned can have)."""
    correct = np.asarray(correct, dtype=bool)
    events = (correct[:-1] & ~correct[1:]).sum(axis=0)
    return np.where(correct.any(axis=0), events, correct.shape[0]).astype(np.int64)


def forgetting(x: Tensor, y: Tensor, s: ScoreSettings) -> np.ndarray:
    """Forgetting events summed over initialisations, recorded on each image's presentation in
    its training batch (once per epoch); low is easy."""
    total = np.zeros(len(x), dtype=np.int64)
    for init in range(s.inits):
        correct = np.zeros((s.epochs, len(x)), dtype=bool)

        def record(epoch: int, rows: Tensor, logits: Tensor, correct: np.ndarray = correct) -> None:
            correct[epoch, rows.numpy()] = (logits.argmax(1) == y[rows]).numpy()

        fit_epochs(x, y, s, s.seed + init, on_batch=record)
        total += forgetting_events(correct)
        log.info("forgetting: initialisation %d/%d done", init + 1, s.inits)
    return total.astype(np.float64)


SCORES: dict[str, Callable[[Tensor, Tensor, ScoreSettings], np.ndarray]] = {
    "el2n": el2n,
    "forgetting": forgetting,
}


def pool_scores(
    kind: str, images: Tensor, labels: Tensor, rows: np.ndarray, s: ScoreSettings, mean: float, std: float
) -> np.ndarray:
    """Score `kind` of every image in `rows` (the selection pool), from trainings on those rows
    only; `images` are uint8 (N, 28, 28)."""
    from mnist_pruning.training import normalize

    idx = torch.as_tensor(rows, dtype=torch.long)
    x = normalize(images[idx], mean, std).contiguous(memory_format=torch.channels_last)
    return SCORES[kind](x, labels[idx], s)
