"""Embeddings of the training images that k-means and the selectors work in.

Each embedding is fitted on training images only: the test set never reaches this module.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Embedding = Callable[[np.ndarray, "int | None"], np.ndarray]


def pixels(x: np.ndarray, dims: int | None = None) -> np.ndarray:
    """The 784 raw pixels in [0, 1]; `dims` must be None or 784."""
    if dims not in (None, x.shape[1]):
        raise ValueError(f"the pixel embedding has {x.shape[1]} dims, not {dims}")
    return np.ascontiguousarray(x, dtype=np.float32)


def pca(x: np.ndarray, dims: int | None) -> np.ndarray:
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


EMBEDDINGS: dict[str, Embedding] = {"pca": pca, "pixels": pixels}


def embed(name: str, x: np.ndarray, dims: int | None) -> np.ndarray:
    """Embed the (N, 784) training images with the embedding registered as `name`."""
    try:
        fn = EMBEDDINGS[name]
    except KeyError:
        allowed = ", ".join(sorted(EMBEDDINGS))
        raise ValueError(f"embedding={name!r} is unknown: one of {allowed}") from None
    return fn(x, dims)
