"""Embeddings of the training images that k-means and the selectors work in.

Each embedding is fitted on training images only: the test set never reaches this module. The
classifier embedding also uses labels, and is fitted on the selection pool only.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the report imports this module
    import torch

log = logging.getLogger(__name__)

Embedding = Callable[..., np.ndarray]


def pixels(x: np.ndarray, dims: int | None = None, **_: Any) -> np.ndarray:
    """The 784 raw pixels in [0, 1]; `dims` must be None or 784."""
    if dims not in (None, x.shape[1]):
        raise ValueError(f"the pixel embedding has {x.shape[1]} dims, not {dims}")
    return np.ascontiguousarray(x, dtype=np.float32)


def pca(x: np.ndarray, dims: int | None, **_: Any) -> np.ndarray:
    """Project onto the top `dims` principal components (None keeps the raw pixels).

    Exact PCA by an eigendecomposition of the 784 x 784 covariance: deterministic, no seed,
    and faster than an SVD of the 60k x 784 matrix.
    """
    if dims is None:
        return pixels(x)
    mean, components = pca_components(x, dims)
    return ((x.astype(np.float64) - mean) @ components).astype(np.float32)


def pca_with(x: np.ndarray, other: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """x's PCA embedding, and `other`'s projected onto x's components (a search's holdout seen
    in the pool's embedding, the holdout never shaping it)."""
    mean, components = pca_components(x, dims)
    return tuple(((a.astype(np.float64) - mean) @ components).astype(np.float32) for a in (x, other))


def pca_components(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the top `dims` principal directions (784 x dims) of x, each direction's sign
    fixed so that the embedding does not depend on LAPACK's choice: what `pca` projects onto,
    and what projects other images (a search's holdout) into the same embedding."""
    if not 1 <= dims <= x.shape[1]:
        raise ValueError(f"pca dims must be in [1, {x.shape[1]}], got {dims}")
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    cov = centred.T @ centred / (len(x) - 1)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    components = vecs[:, ::-1][:, :dims]
    signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(dims)])
    return mean, components * signs


def autoencoder(
    x: np.ndarray,
    dims: int | None,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    **_: Any,
) -> np.ndarray:
    """Codes of a small convolutional autoencoder trained to reconstruct the images.

    Encoder: 28x28 -> conv 32 (stride 2) -> conv 64 (stride 2) -> linear `dims`; the decoder
    mirrors it. Trained with Adam on binary cross-entropy of the [0, 1] pixels, cosine-decayed.
    """
    import torch
    from torch import nn

    dims = dims or 64
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    encoder = nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, dims),
    )
    decoder = nn.Sequential(
        nn.Linear(dims, 64 * 7 * 7),
        nn.ReLU(),
        nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1),
    )
    model = nn.Sequential(encoder, decoder)
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).view(-1, 1, 28, 28)
    steps_per_epoch = -(-len(images) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    loss_fn = nn.BCEWithLogitsLoss()
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=epochs, desc="autoencoder", unit="epoch", leave=False)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(images), generator=gen)
        total = 0.0
        for i in range(0, len(images), batch_size):
            xb = images[order[i : i + batch_size]]
            loss = loss_fn(model(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
        if bar is not None:
            bar.update()
        log.info(
            "autoencoder epoch %d/%d: loss %.4f (%.0fs)",
            epoch,
            epochs,
            total / len(images),
            time.perf_counter() - start,
        )
    if bar is not None:
        bar.close()
    model.eval()
    with torch.no_grad():
        codes = torch.cat([encoder(images[i : i + 4096]) for i in range(0, len(images), 4096)])
    return codes.numpy().astype(np.float32)


def classifier(
    x: np.ndarray,
    dims: int | None,
    labels: np.ndarray,
    rows: np.ndarray,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    **_: Any,
) -> np.ndarray:
    """The 84 penultimate-layer features of a LeNet-5 trained on the labelled `rows` only (the
    selection pool: never the validation split), for every image of `x`. Uses the labels."""
    import torch

    from mnist_pruning.scores import ScoreSettings, fit_epochs, predict

    if dims not in (None, 84):
        raise ValueError(f"the classifier embedding has 84 dims, not {dims}")
    pool = x[rows]
    mean, std = float(pool.mean()), float(pool.std())
    images = torch.from_numpy(((x - mean) / std).astype(np.float32)).view(-1, 1, 28, 28)
    images = images.contiguous(memory_format=torch.channels_last)
    y = torch.as_tensor(labels[rows], dtype=torch.long)
    s = ScoreSettings(epochs, 1, batch_size, lr, momentum, weight_decay, seed)
    model = fit_epochs(images[torch.as_tensor(rows, dtype=torch.long)], y, s, seed)
    return predict(model, images, features=True).numpy().astype(np.float32)


@dataclass(frozen=True)
class Views:
    """The maps that make a contrastive embedding's two views of an image (training.augment)."""

    aug_rotate: float
    aug_translate: float
    aug_scale: float
    elastic_alpha: float
    elastic_sigma: float


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss over 2B projections, rows i and i + B the two views of one image: each view
    must pick out its partner among the other 2B - 1 by cosine similarity."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(z, dim=1)
    n = len(z) // 2
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


def contrastive(
    x: np.ndarray,
    dims: int | None,
    rows: np.ndarray,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 1e-6,
    seed: int = 0,
    temperature: float = 0.5,
    projection_dims: int = 32,
    aug_rotate: float = 30.0,
    aug_translate: float = 0.1,
    aug_scale: float = 0.2,
    elastic_alpha: float = 34.0,
    elastic_sigma: float = 4.0,
    **_: Any,
) -> np.ndarray:
    """The 84 trunk features of a LeNet-5 trained by SimCLR on the images of `rows` (the pool),
    no labels, for every image of `x`: two views per image from the recipe's affine and elastic
    maps, NT-Xent through a projection head (84 -> 84 -> `projection_dims`) that is then dropped."""
    import torch
    from torch import nn

    from mnist_pruning.model import LeNet5
    from mnist_pruning.training import augment

    if dims not in (None, 84):
        raise ValueError(f"the contrastive embedding has 84 dims, not {dims}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = LeNet5()
    trunk = nn.Sequential(net.features, *net.classifier[:-1]).to(memory_format=torch.channels_last)
    head = nn.Sequential(nn.Linear(84, 84), nn.ReLU(), nn.Linear(84, projection_dims))
    pool = x[rows]
    mean, std = float(pool.mean()), float(pool.std())
    images = torch.from_numpy(((x - mean) / std).astype(np.float32)).view(-1, 1, 28, 28)
    train_images = images[torch.as_tensor(rows, dtype=torch.long)]
    views = Views(aug_rotate, aug_translate, aug_scale, elastic_alpha, elastic_sigma)
    steps_per_epoch = max(1, len(train_images) // batch_size)  # full batches: 2B views a step
    params = [*trunk.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_images), generator=gen)
        total = 0.0
        for step in range(steps_per_epoch):
            xb = train_images[order[step * batch_size : (step + 1) * batch_size]]
            pair = augment(torch.cat([xb, xb]), views, gen)
            loss = nt_xent(head(trunk(pair)), temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log.info(
            "contrastive epoch %d/%d: loss %.4f (%.0fs)",
            epoch,
            epochs,
            total / steps_per_epoch,
            time.perf_counter() - start,
        )
    trunk.eval()
    with torch.no_grad():
        feats = [
            trunk(images[i : i + 4096].contiguous(memory_format=torch.channels_last))
            for i in range(0, len(images), 4096)
        ]
    return torch.cat(feats).numpy().astype(np.float32)


EMBEDDINGS: dict[str, Embedding] = {
    "pca": pca,
    "pixels": pixels,
    "autoencoder": autoencoder,
    "classifier": classifier,
    "contrastive": contrastive,
}
SUPERVISED = {"classifier"}  # fitted with the pool's labels, on the pool only
POOLED = {"classifier", "contrastive"}  # fitted on the pool's images only (its rows key the cache)
SEEDED = {"autoencoder", "classifier", "contrastive"}  # learned: one fit per seed (pca, pixels: none)


def embed(
    x: np.ndarray,
    name: str,
    dims: int | None,
    labels: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    **settings: Any,
) -> np.ndarray:
    """Embed the (N, 784) training images with the embedding registered as `name`; a pooled one
    is fitted on `rows` (the selection pool), a supervised one with their `labels` too."""
    try:
        fn = EMBEDDINGS[name]
    except KeyError:
        allowed = ", ".join(sorted(EMBEDDINGS))
        raise ValueError(f"embedding={name!r} is unknown: one of {allowed}") from None
    if name in SUPERVISED:
        return fn(x, dims, labels=labels, rows=rows, **settings)
    if name in POOLED:
        return fn(x, dims, rows=rows, **settings)
    return fn(x, dims, **settings)
