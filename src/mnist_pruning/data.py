"""MNIST loading with an integrity check, as uint8 tensors held in memory.

The four raw idx files are checked against their MD5 sums before they are parsed, so a truncated
or corrupt download is one clear error rather than a parse failure deep inside torchvision or,
worse, silently wrong pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
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


def _stamped_md5(path: Path, stamps: dict[str, list]) -> str:
    """The file's MD5, from `stamps` when its size and mtime are those stamped (a re-download or
    an edit changes them), else computed and stamped."""
    st = path.stat()
    key = str(path.resolve())
    known = stamps.get(key)
    if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
        return known[2]
    digest = file_md5(path)
    stamps[key] = [st.st_size, st.st_mtime_ns, digest]
    return digest


def verify_files(
    root: str | Path, checksums: Mapping[str, str], download: bool, stamp_file: Path | None = None
) -> str:
    """Check every raw file against `checksums`; return a fingerprint of the data set.

    Hashing 55 MB takes a second: with `stamp_file`, a file whose size and mtime match its last
    check is not hashed again."""
    root = Path(root)
    stamps = _read_stamps(stamp_file)
    digests = []
    for name, expected in checksums.items():
        path = raw_dir(root) / name
        if not path.is_file():
            raise DataError(f"MNIST file {path} is missing (data.root={root}): {_fix_hint(root, download)}")
        got = _stamped_md5(path, stamps)
        if expected is not None and got != expected:
            raise DataError(
                f"MNIST file {path} is corrupt (MD5 {got}, expected {expected}): {_fix_hint(root, download)}"
            )
        digests.append(f"{name}:{got}")
    _write_stamps(stamp_file, stamps)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]


def _read_stamps(stamp_file: Path | None) -> dict[str, list]:
    if stamp_file is None:
        return {}
    try:
        return json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_stamps(stamp_file: Path | None, stamps: dict[str, list]) -> None:
    """Atomically, so that parallel jobs never read half a file."""
    if stamp_file is None or stamps == _read_stamps(stamp_file):
        return
    try:
        stamp_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=stamp_file.parent, delete=False, suffix=".tmp") as f:
            json.dump(stamps, f)
        os.replace(f.name, stamp_file)
    except OSError:  # a read-only cache only costs the hashing
        pass


def load_mnist(
    root: str | Path,
    download: bool = False,
    verify: bool = True,
    checksums: Mapping[str, str] | None = None,
    stamp_file: Path | None = None,
) -> Mnist:
    """Load MNIST from `root` (torchvision layout), downloading it first if allowed and missing.

    `checksums` defaults to the published sums; tests pass their own for tiny files. With
    `verify=False` the files are still hashed (for the fingerprint) but not compared.
    `stamp_file` (in the cache) remembers files already checked, by size and mtime.
    """
    root = Path(root).expanduser()
    sums = dict(MNIST_MD5 if checksums is None else checksums)
    if download and not all((raw_dir(root) / n).is_file() for n in sums):
        _download(root)
    fingerprint = verify_files(root, sums if verify else dict.fromkeys(sums), download, stamp_file)
    return _parse(str(root.resolve()), fingerprint)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format): a magic number giving the type and rank, big-endian dims,
    then the data. Read directly: torchvision's parser costs seconds of imports per run."""
    raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an idx file of unsigned bytes")
    rank = raw[3]
    dims = struct.unpack(f">{rank}I", raw[4 : 4 + 4 * rank])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} holds {data.size} values, its header says {dims}")
    return data.reshape(dims)


@lru_cache(maxsize=2)
def _parse(root: str, fingerprint: str) -> Mnist:
    """Parse once per process: a sequential multirun reads MNIST a single time."""
    raw = raw_dir(root)
    arrays = {name: read_idx(raw / name) for name in MNIST_MD5}
    return Mnist(
        train_images=torch.from_numpy(arrays["train-images-idx3-ubyte"].copy()),
        train_labels=torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["t10k-images-idx3-ubyte"].copy()),
        test_labels=torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)),
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
