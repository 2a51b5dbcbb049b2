import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from mnist_pruning.cache import Cache, array_digest, key_of
from mnist_pruning.cluster import KMeansFit
from mnist_pruning.selectors import Options, select
from mnist_pruning.subset import cached_kmeans


def test_hit_and_miss(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(5.0)}

    a = cache.get("ns", {"a": 1}, compute)
    b = cache.get("ns", {"a": 1}, compute)
    assert len(calls) == 1 and cache.computed == 1 and np.array_equal(a["x"], b["x"])
    # a fresh process (a new Cache) reads it from disk, without computing
    other = Cache(tmp_path)
    assert np.array_equal(other.get("ns", {"a": 1}, compute)["x"], np.arange(5.0))
    assert other.computed == 0 and len(calls) == 1
    other.get("ns", {"a": 2}, compute)
    assert other.computed == 1 and len(calls) == 2


def test_key_changes_with_every_input():
    base = {"data": "abc", "name": "pca", "dims": 50, "seed": 0}
    keys = {key_of(base)}
    for field, value in [("data", "abd"), ("name", "pixels"), ("dims", 49), ("seed", 1)]:
        keys.add(key_of({**base, field: value}))
    assert len(keys) == 5
    x = np.zeros((3, 2), dtype=np.float32)
    y = x.copy()
    y[1, 1] = 1e-7
    assert array_digest(x) != array_digest(y) != array_digest(x.astype(np.float64))


def test_disabled_always_computes_and_writes_nothing(tmp_path):
    cache = Cache(tmp_path / "c", enabled=False)
    for _ in range(2):
        cache.get("ns", {"a": 1}, lambda: {"x": np.ones(2)})
    assert cache.computed == 2 and not (tmp_path / "c").exists()


def test_corrupt_entry_is_rebuilt(tmp_path):
    cache = Cache(tmp_path)
    cache.get("ns", {"a": 1}, lambda: {"x": np.arange(1000.0)})
    path = cache.path("ns", {"a": 1})
    path.write_bytes(path.read_bytes()[:100])
    fresh = Cache(tmp_path)
    out = fresh.get("ns", {"a": 1}, lambda: {"x": np.arange(1000.0)})
    assert fresh.computed == 1 and np.array_equal(out["x"], np.arange(1000.0))
    assert np.array_equal(
        Cache(tmp_path).get("ns", {"a": 1}, lambda: pytest.fail("rebuilt twice"))["x"], out["x"]
    )


def _writer(root: str, barrier, queue) -> None:
    cache = Cache(root)
    barrier.wait()
    out = cache.get("ns", {"big": True}, lambda: {"x": np.arange(2_000_000, dtype=np.float64)})
    queue.put((cache.computed, float(out["x"].sum())))


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_compute_once_and_agree(tmp_path, writers):
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), barrier, queue)) for _ in range(writers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(c for c, _ in results) == 1  # the lock lets one compute, the others read
    assert len({s for _, s in results}) == 1
    assert not list(Path(tmp_path).rglob("*.tmp"))  # no temporary file left behind


def test_cluster_selectors_share_one_fit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    cache = Cache(tmp_path)
    fits = []

    def kmeans_fn(points, n, seed):
        fit = cached_kmeans(cache, 50, 1e-4, points, n, seed)
        fits.append(fit)
        return fit

    options = Options(clusters=20, kmeans=kmeans_fn)
    for name in ("nearest", "furthest", "cluster_random"):
        select(name, x, labels, 40, 0, options)
    assert cache.computed == 1 and len(fits) == 3
    assert all(isinstance(f, KMeansFit) for f in fits)
    select("nearest", x, labels, 40, 1, options)  # another seed is another fit
    assert cache.computed == 2


def test_graph_selectors_share_one_cached_knn_graph(tmp_path):
    """facility_location and probcover on the same points build the kNN graph once, a new
    process reads it back, and the subsets are those of the uncached graph."""
    from functools import partial

    from mnist_pruning.subset import cached_knn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    labels = rng.integers(0, 10, 400)
    plain = Options(neighbors=15, delta=1.5)
    cached = Options(neighbors=15, delta=1.5, knn=partial(cached_knn, Cache(tmp_path)))
    for name in ("facility_location", "probcover"):
        assert np.array_equal(select(name, x, labels, 30, 0, cached), select(name, x, labels, 30, 0, plain))
    assert cached.knn.args[0].computed == 1
    fresh = Cache(tmp_path)
    select("probcover", x, labels, 30, 0, Options(neighbors=15, delta=1.5, knn=partial(cached_knn, fresh)))
    assert fresh.computed == 0
    select("probcover", x, labels, 30, 0, Options(neighbors=10, delta=1.5, knn=partial(cached_knn, fresh)))
    assert fresh.computed == 1  # another graph size is another graph
