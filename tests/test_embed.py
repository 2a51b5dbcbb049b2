import numpy as np

from mnist_pruning.cache import Cache
from mnist_pruning.embed import embed


def test_pca_is_exact_deterministic_and_ordered():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 784)) * np.linspace(3, 0.1, 784)).astype(np.float32)
    a, b = embed(x, "pca", 5), embed(x, "pca", 5)
    assert a.shape == (500, 5) and np.array_equal(a, b)
    var = a.var(axis=0)
    assert np.all(np.diff(var) <= 1e-6)  # components by decreasing variance
    centred = x - x.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[0][:, :5] * np.linalg.svd(centred, compute_uv=False)[:5]
    assert np.allclose(np.abs(a), np.abs(top), atol=1e-3)
    assert embed(x, "pca", None).shape == (500, 784)


def test_autoencoder_codes_and_cache_reuse(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((256, 784), dtype=np.float32)
    cache = Cache(tmp_path)
    settings = {"name": "autoencoder", "dims": 8, "epochs": 1, "batch_size": 64, "lr": 2e-3, "seed": 0}
    first = cache.get("embedding", settings, lambda: {"x": embed(x, **settings)})["x"]
    assert first.shape == (256, 8) and np.isfinite(first).all()
    again = Cache(tmp_path).get("embedding", settings, lambda: {"x": embed(x, **settings)})
    assert np.array_equal(again["x"], first)
    assert cache.computed == 1
    assert np.array_equal(embed(x, **settings), first)  # deterministic for its seed
