import struct
from pathlib import Path

import numpy as np
import pytest

from mnist_pruning.data import (
    MNIST_MD5,
    DataError,
    file_md5,
    load_mnist,
    raw_dir,
    split_pool,
)


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_mnist(tmp_path: Path):
    """A 20 + 5 image MNIST in torchvision's layout, with its own checksum table."""
    rng = np.random.default_rng(0)
    raw = raw_dir(tmp_path)
    raw.mkdir(parents=True)
    train_x = rng.integers(0, 256, size=(20, 28, 28))
    train_y = np.arange(20) % 10
    test_x = rng.integers(0, 256, size=(5, 28, 28))
    test_y = np.array([3, 1, 4, 1, 5])
    write_idx_images(raw / "train-images-idx3-ubyte", train_x)
    write_idx_labels(raw / "train-labels-idx1-ubyte", train_y)
    write_idx_images(raw / "t10k-images-idx3-ubyte", test_x)
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", test_y)
    sums = {name: file_md5(raw / name) for name in MNIST_MD5}
    return tmp_path, sums, (train_x, train_y, test_x, test_y)


def test_loads_tiny_idx_files(tiny_mnist):
    root, sums, (train_x, train_y, test_x, test_y) = tiny_mnist
    data = load_mnist(root, download=False, checksums=sums)
    assert data.train_images.shape == (20, 28, 28)
    assert np.array_equal(data.train_images.numpy(), train_x)
    assert np.array_equal(data.train_labels.numpy(), train_y)
    assert np.array_equal(data.test_images.numpy(), test_x)
    assert np.array_equal(data.test_labels.numpy(), test_y)
    flat = data.train_flat()
    assert flat.shape == (20, 784) and flat.dtype == np.float32 and flat.max() <= 1.0


def test_corrupt_file_is_one_clear_line(tiny_mnist):
    root, sums, _ = tiny_mnist
    path = raw_dir(root) / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.raises(DataError) as err:
        load_mnist(root, download=False, checksums=sums)
    msg = str(err.value)
    assert "\n" not in msg
    assert "train-images-idx3-ubyte" in msg and str(root) in msg and "corrupt" in msg


def test_missing_root_without_download(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "\n" not in msg and "missing" in msg and "data.download=true" in msg


def test_published_checksums_reject_other_files(tiny_mnist):
    root, _, _ = tiny_mnist
    with pytest.raises(DataError, match="corrupt"):
        load_mnist(root, download=False)


def test_real_mnist_passes_its_checksums(mnist_root):
    data = load_mnist(mnist_root, download=False)
    assert data.train_images.shape == (60000, 28, 28)
    assert data.test_images.shape == (10000, 28, 28)
    assert np.bincount(data.train_labels.numpy()).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]


def test_validation_split_is_disjoint_fixed_and_sized():
    pool, val = split_pool(1000, 100, seed=0)
    assert len(val) == 100 and len(pool) == 900
    assert not np.intersect1d(pool, val).size
    assert np.array_equal(np.union1d(pool, val), np.arange(1000))
    assert np.array_equal(split_pool(1000, 100, seed=0)[1], val)
    pool0, val0 = split_pool(1000, 0, seed=0)
    assert len(pool0) == 1000 and len(val0) == 0


def test_checked_files_are_not_hashed_again_until_they_change(tiny_mnist, monkeypatch, tmp_path):
    from mnist_pruning import data as data_module

    root, sums, _ = tiny_mnist
    stamps = tmp_path / "cache" / "mnist-md5.json"
    hashed = []
    real = data_module.file_md5
    monkeypatch.setattr(data_module, "file_md5", lambda p: hashed.append(p.name) or real(p))
    first = data_module.verify_files(root, sums, False, stamps)
    assert len(hashed) == 4 and stamps.is_file()
    assert data_module.verify_files(root, sums, False, stamps) == first and len(hashed) == 4
    path = data_module.raw_dir(root) / "train-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1  # a changed file: new size or mtime, hashed again and caught
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt"):
        data_module.verify_files(root, sums, False, stamps)
    assert hashed[-1] == "train-labels-idx1-ubyte"
