"""Embeddings of the training images that k-means and the selectors work in.

Each embedding is fitted on training images only: the test set never reaches this module. The
classifier embedding also uses labels, and is fitted on the selection pool only.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

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
    if not 1 <= dims <= x.shape[1]:
        raise ValueError(f"pca dims must be in [1, {x.shape[1]}], got {dims}")
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    cov = centred.T @ centred / (len(x) - 1)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    components = vecs[:, ::-1][:, :dims]
    # fix each component's sign so that the embedding does not depend on LAPACK's choice
    signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(dims)])
    components = components * signs
    return (centred @ components).astype(np.float32)


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


EMBEDDINGS: dict[str, Embedding] = {
    "pca": pca,
    "pixels": pixels,
    "autoencoder": autoencoder,
    "classifier": classifier,
}
SUPERVISED = {"classifier"}  # fitted with the pool's labels, on the pool only
SEEDED = {"autoencoder", "classifier"}  # learned fits: one per seed (pca and pixels have no randomness)


def embed(
    x: np.ndarray,
    name: str,
    dims: int | None,
    labels: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    **settings: Any,
) -> np.ndarray:
    """Embed the (N, 784) training images with the embedding registered as `name`; a supervised
    one is fitted on `rows` (the selection pool) with their `labels`."""
    try:
        fn = EMBEDDINGS[name]
    except KeyError:
        allowed = ", ".join(sorted(EMBEDDINGS))
        raise ValueError(f"embedding={name!r} is unknown: one of {allowed}") from None
    if name in SUPERVISED:
        return fn(x, dims, labels=labels, rows=rows, **settings)
    return fn(x, dims, **settings)
