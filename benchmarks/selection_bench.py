"""Selection cost: k-means against scikit-learn's, and each selector cold and warm."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import numpy as np
from common import config

from mnist_pruning.cache import Cache
from mnist_pruning.cluster import kmeans
from mnist_pruning.data import load_mnist
from mnist_pruning.selectors import Options, select
from mnist_pruning.subset import cached_kmeans, embedding_of, subset_of


def bench_kmeans(x: np.ndarray, ks: list[int]) -> list[dict]:
    from sklearn.cluster import KMeans

    rows = []
    for k in ks:
        t = time.perf_counter()
        ours = kmeans(x, k, seed=0)
        ours_s = time.perf_counter() - t
        t = time.perf_counter()
        sk = KMeans(n_clusters=k, n_init=1, random_state=0).fit(x)
        sk_s = time.perf_counter() - t
        rows.append(
            {
                "k": k,
                "seconds": ours_s,
                "sklearn_seconds": sk_s,
                "inertia_vs_sklearn": ours.inertia / float(sk.inertia_),
            }
        )
    return rows


def bench_warm_selection(x: np.ndarray, labels: np.ndarray, k: int, cache_dir: str) -> dict:
    cache = Cache(cache_dir)
    options = Options(clusters=k, kmeans=lambda p, n, s: cached_kmeans(cache, 100, 1e-4, p, n, s))
    select("nearest", x, labels, k, 0, options)  # cold: fits and stores
    out = {}
    for name in ("nearest", "furthest", "cluster_random"):
        warm = Cache(cache_dir)  # a new process's view: read from disk
        opts = Options(clusters=k, kmeans=lambda p, n, s, c=warm: cached_kmeans(c, 100, 1e-4, p, n, s))
        t = time.perf_counter()
        select(name, x, labels, k, 0, opts)
        out[name] = time.perf_counter() - t
    return {"k": k, "warm_select_seconds": out}


# The methods whose selection cost is measured: their overrides of a run's config
METHODS = {
    "hybrid": ["selector=hybrid"],
    "herding": ["selector=herding"],
    "facility_location": ["selector=facility_location"],
    "el2n": ["selector=el2n"],
    "forgetting": ["selector=forgetting"],
    "nearest on the classifier embedding": ["selector=nearest", "embedding=classifier"],
}
NEWER_METHODS = {  # the field's newer baselines (issue 27)
    "probcover": ["selector=probcover"],
    "ccs (forgetting)": ["selector=ccs"],
    "moderate": ["selector=moderate"],
    "grand": ["selector=grand"],
    "uncertainty (least confidence)": ["selector=uncertainty"],
}
QUICK = ["selector.score.epochs=2", "selector.score.inits=1", "embedding.epochs=1"]  # --tiny's fits


def bench_methods(
    root: str, ks: list[int], cache_dir: str, tiny: bool, methods: dict = METHODS
) -> list[dict]:
    """Cold (an empty cache: k-means fits, score trainings, a learned embedding) and warm (a new
    process's view of that cache) selection time, through the run's own `subset_of`, on the 60k
    pool (a 2,000-image pool if tiny). The PCA embedding is cached before the clock starts."""
    from mnist_pruning.train import get_cache

    data = load_mnist(root)
    pool = np.arange(2000 if tiny else len(data.train_labels))
    rows = []
    for name, overrides in methods.items():
        for k in ks:
            slug = re.sub(r"\W+", "_", name)
            folder = f"{cache_dir}/{slug}-{k}"
            cfg = config([*overrides, f"k={k}", f"cache.dir={folder}", *(QUICK if tiny else [])])
            if cfg.embedding.name == "pca":
                embedding_of(cfg, data, pool, get_cache(folder, True))
            times = {}
            for phase in ("cold", "warm"):
                get_cache.cache_clear()  # a new process's view of the cache
                cache = get_cache(folder, True)
                start = time.perf_counter()
                kept = subset_of(cfg, data, pool, cache)
                times[phase] = time.perf_counter() - start
                assert len(kept) == k
            rows.append({"method": name, "k": k, **{f"{p}_seconds": t for p, t in times.items()}})
    return rows


def bench_contrastive_fit(root: str, cache_dir: str, tiny: bool) -> dict:
    """The contrastive embedding's fit on the 60k pool (2,000 images if tiny) at its configured
    epochs, and the same embedding read back from the cache."""
    from mnist_pruning.train import get_cache

    data = load_mnist(root)
    pool = np.arange(2000 if tiny else len(data.train_labels))
    cfg = config(["embedding=contrastive", f"cache.dir={cache_dir}/contrastive", *(QUICK if tiny else [])])
    times = {}
    for phase in ("cold", "warm"):
        get_cache.cache_clear()
        cache = get_cache(cfg.cache.dir, True)
        start = time.perf_counter()
        embedding_of(cfg, data, pool, cache)
        times[phase] = time.perf_counter() - start
    seconds = {f"{p}_seconds": t for p, t in times.items()}
    return {"pool": len(pool), "epochs": cfg.embedding.epochs, **seconds}


def bench_facility_location_memory(root: str, k: int, n: int) -> dict:
    """Facility location on the PCA-50 pool in a fresh process: its wall time and peak memory."""
    script = f"""
import resource, time, numpy as np
from mnist_pruning.data import load_mnist
from mnist_pruning.embed import pca
from mnist_pruning.selectors import select
d = load_mnist({root!r}); x = pca(d.train_flat()[:{n}], 50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); select("facility_location", x, d.train_labels.numpy()[:{n}], {k}, 0)
print(time.perf_counter() - t, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seconds, before_kb, peak_kb = res.stdout.split()[-3:]
    return {
        "k": k,
        "pool": n,
        "seconds": float(seconds),
        "peak_gib": int(peak_kb) / 2**20,
        "before_gib": int(before_kb) / 2**20,
    }
