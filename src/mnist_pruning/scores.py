"""Per-image scores from short LeNet-5 trainings on the selection pool, for scored selectors.

    el2n        Paul et al. 2021: || softmax(f(x)) - onehot(y) ||_2 after `epochs` epochs,
                averaged over `inits` initialisations
    grand       Paul et al. 2021: the norm of the loss's gradient with respect to all weights,
                per image, from the same trainings as el2n
    least_confidence, margin, entropy
                the uncertainty scores of DeepCore (Guo et al. 2022): 1 - the top softmax
                output, 1 - (top - second), the softmax entropy; from the same trainings
    forgetting  Toneva et al. 2019: per image, how often its prediction went from correct to
                wrong between two presentations during training, summed over initialisations;
                an image never classified correctly counts as `epochs` events (most forgotten)

Every score but forgetting is read off the same `inits` trained models (`fit_models`), so one
set of trainings serves them all (train.py caches the models). The trainings see only the rows
they are given (the selection pool): never the validation split or the test set. Settings are
`selector.score` (conf/selector/el2n.yaml, forgetting.yaml). High is hard for every score.
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


def fit_models(x: Tensor, y: Tensor, s: ScoreSettings) -> list[nn.Module]:
    """The `inits` LeNet-5 trainings of `s.epochs` epochs that el2n, grand and the uncertainty
    scores are read from (seeds s.seed, s.seed + 1, ...)."""
    models = []
    for init in range(s.inits):
        models.append(fit_epochs(x, y, s, s.seed + init))
        log.info("score trainings: initialisation %d/%d done", init + 1, s.inits)
    return models


def models_to_arrays(models: list[nn.Module]) -> dict[str, np.ndarray]:
    """The trained models' weights as named arrays, for the cache ('m0.features.0.weight', ...)."""
    return {f"m{i}.{k}": v.detach().numpy() for i, m in enumerate(models) for k, v in m.state_dict().items()}


def models_from_arrays(arrays: dict[str, np.ndarray]) -> list[nn.Module]:
    """The models back from their cached weights, ready to score (eval mode)."""
    n = 1 + max(int(key.split(".", 1)[0][1:]) for key in arrays)
    models = []
    for i in range(n):
        state = {k.split(".", 1)[1]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(f"m{i}.")}
        model = LeNet5().to(memory_format=torch.channels_last)
        model.load_state_dict(state)
        models.append(model.eval())
    return models


@torch.no_grad()
def uncertainty(probs: Tensor, measure: str) -> Tensor:
    """Per image, how unsure the softmax outputs are; high is uncertain (hard)."""
    if measure == "least_confidence":
        return 1 - probs.max(dim=1).values
    if measure == "margin":
        top2 = probs.topk(2, dim=1).values
        return 1 - (top2[:, 0] - top2[:, 1])
    if measure == "entropy":
        return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    raise ValueError(f"uncertainty measure {measure!r}: one of {', '.join(UNCERTAINTY)}")


UNCERTAINTY = ("least_confidence", "margin", "entropy")


def gradient_norms(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> Tensor:
    """Per image, the L2 norm of the cross-entropy's gradient with respect to every weight of
    the model (GraNd), by per-sample gradients (torch.func)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    out = []
    for i in range(0, len(x), batch_size):
        g = per_sample(params, x[i : i + batch_size].contiguous(), y[i : i + batch_size])
        out.append(torch.sqrt(sum(v.flatten(1).pow(2).sum(1) for v in g.values())))
    return torch.cat(out)


def from_models(kind: str, models: list[nn.Module], x: Tensor, y: Tensor) -> np.ndarray:
    """Score `kind` of every image of x, averaged over the trained models."""
    total = torch.zeros(len(x))
    for model in models:
        if kind == "grand":
            total += gradient_norms(model, x, y)
        elif kind == "el2n":
            total += (predict(model, x) - F.one_hot(y, 10).float()).norm(dim=1)
        else:
            total += uncertainty(predict(model, x), kind)
    return (total / len(models)).numpy()


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


SCORES: dict[str, Callable[[Tensor, Tensor, ScoreSettings], np.ndarray]] = {"forgetting": forgetting}
FROM_MODELS = ("el2n", "grand", *UNCERTAINTY)  # read off the same trained models (fit_models)


def pool_scores(
    kind: str,
    images: Tensor,
    labels: Tensor,
    rows: np.ndarray,
    s: ScoreSettings,
    mean: float,
    std: float,
    models: Callable[[Tensor, Tensor], list[nn.Module]] | None = None,
) -> np.ndarray:
    """Score `kind` of every image in `rows` (the selection pool), from trainings on those rows
    only; `images` are uint8 (N, 28, 28). `models(x, y)` gives the trained models the scores of
    FROM_MODELS are read from (a cache's, so every such score shares one set of trainings)."""
    from mnist_pruning.training import normalize

    idx = torch.as_tensor(rows, dtype=torch.long)
    x = normalize(images[idx], mean, std).contiguous(memory_format=torch.channels_last)
    y = labels[idx]
    if kind in FROM_MODELS:
        return from_models(kind, models(x, y) if models else fit_models(x, y, s), x, y)
    return SCORES[kind](x, y, s)
