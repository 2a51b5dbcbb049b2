"""Figures: montages of kept images, accuracy and time against subset size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def montage_grid(
    images: np.ndarray, labels: np.ndarray, indices: np.ndarray, per_class: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile the kept images, one row per class, at most `per_class` each, in index order.

    Returns the (rows*28, cols*28) picture, the (rows, cols) index shown in each tile (-1 for
    an empty tile) and the count of kept images per class (0..9).
    """
    indices = np.sort(np.asarray(indices))
    kept_labels = labels[indices]
    counts = np.bincount(kept_labels, minlength=10)
    classes = np.flatnonzero(counts)
    cols = int(min(per_class, counts.max())) if len(indices) else 1
    h, w = images.shape[1:3]
    picture = np.zeros((max(1, len(classes)) * h, cols * w), dtype=np.uint8)
    shown = -np.ones((max(1, len(classes)), cols), dtype=np.int64)
    for row, c in enumerate(classes):
        for col, i in enumerate(indices[kept_labels == c][:cols]):
            picture[row * h : (row + 1) * h, col * w : (col + 1) * w] = images[i]
            shown[row, col] = i
    return picture, shown, counts


def counts_title(counts: np.ndarray) -> str:
    return "per class: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts))


def save_montage(
    path: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, title: str, per_class: int = 10
) -> np.ndarray:
    """selected_images.png of a run: what it kept, grouped by class; returns the shown indices."""
    picture, shown, counts = montage_grid(images, labels, indices, per_class)
    fig, ax = plt.subplots(figsize=(max(3, picture.shape[1] / 40), max(2.5, picture.shape[0] / 40 + 0.8)))
    ax.imshow(picture, cmap="gray_r", interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title}\n{counts_title(counts)}", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return shown[shown >= 0]


def save_examples(
    path: Path, rows: Sequence[tuple[str, np.ndarray]], images: np.ndarray, n: int = 20
) -> None:
    """selected_examples.png: one row per selector, the first `n` kept images of each."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.45, 0.7 * len(rows) + 0.4), squeeze=False)
    for ax, (name, indices) in zip(axes[:, 0], rows, strict=True):
        shown = np.sort(indices)[:n]
        strip = np.concatenate([images[i] for i in shown], axis=1) if len(shown) else np.zeros((28, 28))
        ax.imshow(strip, cmap="gray_r", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_curves(
    path: Path,
    summary: pd.DataFrame,
    y: str,
    ylabel: str,
    band: tuple[str, str] | None = None,
    target: float | None = None,
    reference: float | None = None,
    zoom: tuple[float, float] | None = None,
) -> None:
    """One line per curve (column `curve`) of `y` against k on a log axis, with a min-max band;
    with `zoom`, a second panel limited to that y range, where the curves near the target part."""
    panels = 2 if zoom else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    ks = sorted(summary["k"].unique())
    colours = plt.get_cmap("tab20").colors  # 20 colours: a frontier has up to 15 curves
    for i, ax in enumerate(axes[0]):
        for j, (name, part) in enumerate(summary.groupby("curve", sort=True)):
            part = part.sort_values("k")
            style = ("-", "--", ":")[j // 20 % 3]
            (line,) = ax.plot(
                part["k"], part[y], marker="o", linestyle=style, color=colours[j % 20], label=name
            )
            if band:
                ax.fill_between(part["k"], part[band[0]], part[band[1]], color=line.get_color(), alpha=0.12)
        if target is not None:
            ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
        if reference is not None:
            ax.axhline(
                reference, color="grey", linestyle=":", linewidth=1, label=f"full data {reference:.4f}"
            )
        ax.set_xscale("log")
        if len(ks) <= 12:  # label the sizes that were run, not just the decades
            ax.set_xticks(ks, [f"{k:,}" for k in ks])
            ax.minorticks_off()
        ax.set_xlabel("k (training images kept)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if i == 1:
            ax.set_ylim(*zoom)
            ax.set_title(f"zoom: {zoom[0]:g} to {zoom[1]:g}", fontsize=9)
    # beside the panels, where it hides no curve
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
