"""Five seeds, five subsets: everything random behind a run's subset (a learned embedding's fit,
the score trainings, k-means, the selector's own draws) follows the run's seed by default, and
an explicit fit seed keeps one fit for every run seed."""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from mnist_pruning.cache import Cache
from mnist_pruning.config import CONF_DIR, register_configs
from mnist_pruning.data import Mnist, load_mnist
from mnist_pruning.selectors import EMBEDDING_FREE, SELECTORS
from mnist_pruning.subset import search_split, subset_of

N = 1200  # a small pool: the first 1,200 MNIST training images
FAST = ["embedding.epochs=1", "selector.score.epochs=2", "selector.score.inits=1"]

register_configs()


@pytest.fixture(scope="module")
def small_mnist(mnist_root) -> Mnist:
    data = load_mnist(str(mnist_root), download=False, verify=False)
    empty = data.test_images[:0], data.test_labels[:0]
    return Mnist(data.train_images[:N], data.train_labels[:N], *empty, fingerprint="first-1200")


def subset(data: Mnist, tmp_path, selector: str, seed: int, *overrides: str) -> np.ndarray:
    """The full path of a run (config -> embedding or scores -> select), nothing cached: each
    call fits its embedding or scores afresh."""
    embedding = [] if selector in EMBEDDING_FREE else ["embedding=autoencoder"]
    args = [f"selector={selector}", "k=20", "selector.balance=true", f"seed={seed}", *embedding, *FAST]
    if selector == "search":  # its own holdout (which also follows the seed) and a tiny proxy
        args += [f"selector.search.{k}" for k in ("holdout=300", "draws=2", "evaluations=3")]
        args += ["selector.search.proxy.steps=5", "selector.search.proxy.eval_size=200"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*args, *overrides])
    pool, holdout = search_split(cfg, np.arange(N))
    return subset_of(cfg, data, pool, Cache(tmp_path, enabled=False), holdout)


# full keeps everything; fixed trains the subset it is given, whatever the seed (tests/test_fixed.py)
@pytest.mark.parametrize("selector", sorted(set(SELECTORS) - {"full", "fixed"}))
def test_each_seed_draws_its_own_subset_and_a_seed_repeats_it(small_mnist, tmp_path, selector):
    a, b, again = (subset(small_mnist, tmp_path, selector, s) for s in (0, 1, 0))
    labels = small_mnist.train_labels.numpy()
    assert len(np.unique(a)) == 20 and np.bincount(labels[a], minlength=10).tolist() == [2] * 10
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, again)


@pytest.mark.parametrize("selector", ["typical", "furthest", "herding"])
def test_the_classifier_embedding_follows_the_seed(small_mnist, tmp_path, selector):
    a, b = (subset(small_mnist, tmp_path, selector, s, "embedding=classifier") for s in (0, 1))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("selector", "fixed"), [("herding", "embedding.seed=0"), ("el2n", "selector.score.seed=0")]
)
def test_an_explicit_fit_seed_keeps_one_subset_across_run_seeds(small_mnist, tmp_path, selector, fixed):
    """The old design on request: one autoencoder fit (or one set of scores) for every seed; a
    deterministic rule on it then keeps the same subset whatever the run's seed, and that seed's
    own fit gives another one."""
    fixed_runs = [subset(small_mnist, tmp_path, selector, s, fixed) for s in (0, 1, 2)]
    np.testing.assert_array_equal(fixed_runs[0], fixed_runs[1])
    np.testing.assert_array_equal(fixed_runs[0], fixed_runs[2])
    assert not np.array_equal(fixed_runs[0], subset(small_mnist, tmp_path, selector, 1))


def test_pca_is_one_fit_for_every_seed(small_mnist, tmp_path):
    """PCA has no randomness: herding on it is one subset whatever the seed (the report says
    '1' in its subsets column), and the cache holds one PCA for all seeds."""
    cache = Cache(tmp_path)
    picked = []
    for seed in (0, 1):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=["selector=herding", "k=20", f"seed={seed}"])
        picked.append(subset_of(cfg, small_mnist, np.arange(N), cache))
    np.testing.assert_array_equal(picked[0], picked[1])
    assert cache.computed == 1
