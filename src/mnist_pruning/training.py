"""The training loop: a fixed schedule over a subset held as one tensor in memory.

A schedule is `steps` full batches (the study's regimes: a subset smaller than a batch is
cycled, so every size gets the same number of updates), or `epochs` passes over the subset in
batches of at most `batch_size`, the last one of each pass partial (the condensation
benchmark's protocol, `train=dc_protocol`): there a subset of k images gets
epochs x ceil(k / batch_size) updates.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_pruning.dsa import DcAugParams, DsaParams, dc_augment, dsa_augment
from mnist_pruning.model import LeNet5

log = logging.getLogger(__name__)

EvalHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Recipe:
    """The training settings (conf/train), without anything Hydra-specific."""

    steps: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    warmup_steps: int
    augment: bool
    aug_rotate: float  # degrees, uniform in [-r, r]
    aug_translate: float  # fraction of the image side, uniform in [-t, t]
    aug_scale: float  # relative, uniform in [1 - s, 1 + s]
    elastic_alpha: float  # elastic displacement scale in pixels (Simard et al. 2003); 0 is off
    elastic_sigma: float  # pixels: the Gaussian that smooths the displacement field
    label_smoothing: float  # of the cross-entropy target, 0 is off
    eval_every: int
    eval_batch_size: int
    log_every: int
    epochs: int | None = None  # set: passes over the subset instead of `steps` full batches
    nesterov: bool = True
    schedule: str = "warmup_cosine"  # or "step": lr x lr_decay from each of lr_decay_epochs on
    lr_decay_epochs: tuple[int, ...] = ()  # 0-based epochs (an epoch schedule only)
    lr_decay: float = 0.1
    reset_momentum: bool = False  # at each decay, as a new optimizer would (the DC code builds one)
    augmentation: str = "maps"  # this project's affine + elastic maps, the benchmark's "dsa", or "dc"
    optimizer: str = "sgd"  # or "adam" (AdamW: weight decay decoupled; momentum and nesterov unused)
    dsa: DsaParams = field(default_factory=DsaParams)
    dc_aug: DcAugParams = field(default_factory=DcAugParams)


SCHEDULES = ("warmup_cosine", "step")
OPTIMIZERS = ("sgd", "adam")
AUGMENTATIONS = ("maps", "dsa", "dc")


@dataclass(frozen=True)
class TrainResult:
    model: nn.Module
    metrics: dict[str, float]  # final accuracies on every evaluation set
    train_seconds: float


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but torch sees no CUDA device; use device=cpu")
    return torch.device(name)


def normalize(images: Tensor, mean: float, std: float) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), standardised."""
    return ((images.float() / 255.0) - mean).div_(std).unsqueeze(1)


def gaussian_kernel(sigma: float, device: torch.device) -> Tensor:
    """A normalised 1-D Gaussian, cut at 3 sigma (and at the 28-pixel image)."""
    radius = max(1, min(13, math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@lru_cache(maxsize=8)
def smoothing_matrix(size: int, sigma: float, device: torch.device) -> Tensor:
    """(size, size) matrix W such that `v @ W` is v smoothed by the Gaussian, borders reflected:
    the response of the 1-D convolution to each basis vector, so that smoothing a batch of
    fields is two small matrix products instead of two one-channel convolutions (4x faster on
    CPU)."""
    k = gaussian_kernel(sigma, device)
    r = len(k) // 2
    basis = torch.eye(size, device=device).view(size, 1, 1, size)
    return F.conv2d(F.pad(basis, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1)).view(size, size)


def elastic_field(n: int, size: int, alpha: float, sigma: float, gen: torch.Generator) -> Tensor:
    """(n, size, size, 2) random displacements in pixels (Simard et al. 2003): uniform noise in
    [-1, 1] per pixel and direction, smoothed by a Gaussian of `sigma` pixels, times `alpha`.

    The smoothing is separable (rows, then columns); borders are reflected so that the field is
    as strong at the edge as in the middle.
    """
    w = smoothing_matrix(size, float(sigma), gen.device)
    noise = torch.rand(n * 2, size, size, generator=gen, device=gen.device) * 2 - 1
    smooth = w.T @ noise @ w
    return (alpha * smooth).view(n, 2, size, size).permute(0, 2, 3, 1)


class Maps(Protocol):
    """What `augment` reads of a recipe: the affine and elastic maps' sizes."""

    aug_rotate: float
    aug_translate: float
    aug_scale: float
    elastic_alpha: float
    elastic_sigma: float


def augment(x: Tensor, recipe: Maps, gen: torch.Generator) -> Tensor:
    """A random small affine map per image (rotation, scale, translation; no flips), plus an
    elastic displacement field when `elastic_alpha` > 0, both in one resampling of the batch."""
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=gen, device=x.device) * 2 - 1
    angle = u[:, 0] * math.radians(recipe.aug_rotate)
    scale = 1 + u[:, 1] * recipe.aug_scale
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of t * side is 2t there
    tx, ty = u[:, 2] * 2 * recipe.aug_translate, u[:, 3] * 2 * recipe.aug_translate
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if recipe.elastic_alpha > 0:
        # pixels -> grid units: the image side spans 2 in grid coordinates
        grid = grid + elastic_field(n, h, recipe.elastic_alpha, recipe.elastic_sigma, gen) * (2 / h)
    # the background is the normalised value of a black pixel, the minimum of the batch
    background = x.amin()
    out = F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background
    return out.contiguous(memory_format=torch.channels_last)


AUGMENT: dict[str, Callable[[Tensor, Recipe, torch.Generator], Tensor]] = {
    "maps": augment,
    "dsa": lambda x, r, gen: dsa_augment(x, r.dsa, gen),
    "dc": lambda x, r, gen: dc_augment(x, r.dc_aug, gen),
}


def batch_indices(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Tensor:
    """(steps, batch_size) indices: consecutive shuffled passes over the subset, cut in batches.

    Every step gets a full batch even when the subset is smaller than a batch, so the number of
    updates, and the noise of each, is the same for every subset size.
    """
    total = steps * batch_size
    passes = -(-total // n)
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])
    return order[:total].view(steps, batch_size)


def epoch_batches(n: int, batch_size: int, epochs: int, gen: torch.Generator) -> tuple[list[Tensor], Tensor]:
    """An epoch schedule's batches: each epoch a new shuffle of the subset cut in batches of at
    most `batch_size` (the last one partial, as a DataLoader without drop_last), and the epoch
    of each batch."""
    per_epoch = -(-n // batch_size)
    batches = [b for _ in range(epochs) for b in torch.randperm(n, generator=gen).split(batch_size)]
    return batches, torch.arange(epochs).repeat_interleave(per_epoch)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    model.train()
    return correct / len(x)


def _progress(steps: int):
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=steps, desc="train", unit="step", leave=False)
    return None


def train(
    x: Tensor,
    y: Tensor,
    evals: dict[str, tuple[Tensor, Tensor]],
    recipe: Recipe,
    seed: int,
    device: torch.device,
    on_eval: EvalHook | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = True,
    model: Callable[[], nn.Module] = LeNet5,
) -> TrainResult:
    """Train a fresh `model()` (LeNet-5 by default) on normalised images `x` and evaluate on
    `evals` at the end.

    `evals` maps a name ("test", "val") to normalised images and labels; with
    `recipe.eval_every` they are also evaluated along the way and passed to `on_eval`, for the
    learning curve only: the result is always the accuracy after the last step. `should_stop`
    is asked before every step; when it says so, training ends with KeyboardInterrupt.
    `progress=False` shows no bar (a search's many short proxy trainings).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # channels_last: oneDNN's convolutions skip a layout conversion per layer (benchmarks/bench.py)
    net = model().to(device, memory_format=torch.channels_last)
    opt = optimizer(net, recipe)
    x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
    evals = {
        k: (ex.to(device, memory_format=torch.channels_last), ey.to(device)) for k, (ex, ey) in evals.items()
    }
    if recipe.epochs is None:
        batches: Tensor | list[Tensor] = batch_indices(len(x), recipe.batch_size, recipe.steps, gen).to(
            device
        )
        epoch_of = None
    else:
        batches, epoch_of = epoch_batches(len(x), recipe.batch_size, recipe.epochs, gen)
    steps = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(recipe, steps, epoch_of))
    decays = _decay_steps(recipe, epoch_of)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)

    def evaluate() -> dict[str, float]:
        return {f"{k}_acc": accuracy(net, ex, ey, recipe.eval_batch_size) for k, (ex, ey) in evals.items()}

    bar = _progress(steps) if progress else None
    start = time.perf_counter()
    net.train()
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt(f"stopped before step {step}")
        if step - 1 in decays:  # a new optimizer at the decay, as the benchmark's code makes one
            opt.state.clear()
        idx = batches[step - 1].to(device)
        xb = x[idx]
        if recipe.augment:
            xb = AUGMENT[recipe.augmentation](xb, recipe, aug_gen)
        loss = F.cross_entropy(net(xb), y[idx], label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update()
        elif recipe.log_every and step % recipe.log_every == 0:
            log.info("step %d/%d loss %.4f", step, steps, loss.item())
        if recipe.eval_every and step % recipe.eval_every == 0 and step < steps and on_eval:
            on_eval(step, evaluate())
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - start
    metrics = evaluate()
    if recipe.eval_every and on_eval:
        on_eval(steps, metrics)
    return TrainResult(model=net, metrics=metrics, train_seconds=train_seconds)


def optimizer(net: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum, the study's; or AdamW, which a short proxy training may use."""
    if recipe.optimizer == "adam":
        return torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer != "sgd":
        raise ValueError(f"optimizer={recipe.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
    return torch.optim.SGD(
        net.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov and recipe.momentum > 0,
        fused=True,  # one kernel for the whole update: a few percent of a LeNet-5 step on CPU
    )


def lr_factor(recipe: Recipe, steps: int, epoch_of: Tensor | None) -> Callable[[int], float]:
    """The learning rate of each step as a factor of `recipe.lr`: warm-up then cosine over the
    steps, or a step decay by `lr_decay` from each of `lr_decay_epochs` on."""
    if recipe.schedule == "warmup_cosine":
        return _warmup_cosine(steps, recipe.warmup_steps)
    if epoch_of is None:
        raise ValueError("train.schedule=step needs an epoch schedule (train.epochs)")
    epochs = epoch_of.tolist()
    bounds = sorted(recipe.lr_decay_epochs)

    def factor(step: int) -> float:
        epoch = epochs[min(step, len(epochs) - 1)]
        return recipe.lr_decay ** sum(epoch >= b for b in bounds)

    return factor


def _decay_steps(recipe: Recipe, epoch_of: Tensor | None) -> set[int]:
    """The 0-based steps that open a decay epoch, where `reset_momentum` clears the optimizer."""
    if not recipe.reset_momentum or recipe.schedule != "step" or epoch_of is None:
        return set()
    first = {int(e): i for i, e in reversed(list(enumerate(epoch_of.tolist())))}
    return {first[b] for b in recipe.lr_decay_epochs if b in first}


def _warmup_cosine(steps: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up to the base rate, then a cosine decay to zero at the last step."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
