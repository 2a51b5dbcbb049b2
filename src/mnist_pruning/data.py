"""MNIST loading with an integrity check, as uint8 tensors held in memory.

The four raw idx files are checked against their MD5 sums before they are parsed, so a truncated
or corrupt download is one clear error rather than a parse failure deep inside torchvision or,
worse, silently wrong pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

N_TRAIN = 60_000
N_PIXELS = 28 * 28

# MD5 sums of the uncompressed files as published with the dataset (torchvision's raw names).
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class DataError(RuntimeError):
    """MNIST is missing or damaged; the message is one line that says how to fix it."""


@dataclass(frozen=True)
class Mnist:
    train_images: torch.Tensor  # (N, 28, 28) uint8
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    fingerprint: str  # digest of the four files' MD5 sums: keys caches built from this data

    def train_flat(self) -> np.ndarray:
        """Training images as (N, 784) float32 in [0, 1], the input of every embedding."""
        return self.train_images.reshape(len(self.train_images), -1).numpy().astype(np.float32) / 255


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def raw_dir(root: str | Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def _fix_hint(root: Path, download: bool) -> str:
    if download:
        return f"delete it so that it is downloaded again into {root}, or set data.root (MNIST_DATA_DIR)"
    return (
        f"set data.root (or MNIST_DATA_DIR) to a folder holding MNIST/raw, "
        f"or data.download=true to fetch it into {root}"
    )


def _download(root: Path) -> None:
    from torchvision.datasets import MNIST

    try:
        MNIST(str(root), train=True, download=True)
    except Exception as e:  # torchvision lists every mirror it tried; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"could not download MNIST into {raw_dir(root)} ({first}); "
            f"set data.root (or MNIST_DATA_DIR) to a folder that holds MNIST/raw"
        ) from e


def verify_files(root: str | Path, checksums: Mapping[str, str], download: bool) -> str:
    """Check every raw file against `checksums`; return a fingerprint of the data set."""
    root = Path(root)
    digests = []
    for name, expected in checksums.items():
        path = raw_dir(root) / name
        if not path.is_file():
            raise DataError(f"MNIST file {path} is missing (data.root={root}): {_fix_hint(root, download)}")
        got = file_md5(path)
        if expected is not None and got != expected:
            raise DataError(
                f"MNIST file {path} is corrupt (MD5 {got}, expected {expected}): {_fix_hint(root, download)}"
            )
        digests.append(f"{name}:{got}")
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]


def load_mnist(
    root: str | Path,
    download: bool = False,
    verify: bool = True,
    checksums: Mapping[str, str] | None = None,
) -> Mnist:
    """Load MNIST from `root` (torchvision layout), downloading it first if allowed and missing.

    `checksums` defaults to the published sums; tests pass their own for tiny files. With
    `verify=False` the files are still hashed (for the fingerprint) but not compared.
    """
    root = Path(root).expanduser()
    sums = dict(MNIST_MD5 if checksums is None else checksums)
    if download and not all((raw_dir(root) / n).is_file() for n in sums):
        _download(root)
    fingerprint = verify_files(root, sums if verify else dict.fromkeys(sums), download)
    return _parse(str(root.resolve()), fingerprint)


@lru_cache(maxsize=2)
def _parse(root: str, fingerprint: str) -> Mnist:
    """Parse once per process: a sequential multirun reads MNIST a single time."""
    from torchvision.datasets import MNIST

    try:
        train = MNIST(root, train=True, download=False)
        test = MNIST(root, train=False, download=False)
    except Exception as e:
        raise DataError(f"could not parse MNIST in {raw_dir(root)}: {e}") from e
    return Mnist(
        train_images=train.data,
        train_labels=train.targets.long(),
        test_images=test.data,
        test_labels=test.targets.long(),
        fingerprint=fingerprint,
    )


def split_pool(n_train: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into (selection pool, validation set), both sorted.

    The split depends only on `seed` (data.validation_seed), not on the run's seed, so every run
    of a sweep tunes and selects against the same held-out images.
    """
    if validation_size == 0:
        return np.arange(n_train), np.empty(0, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[validation_size:]), np.sort(perm[:validation_size])
