import numpy as np
import pytest

from mnist_pruning.cluster import KMeansFit, fit_from_centroids, kmeans
from mnist_pruning.selectors import (
    CLUSTER_SELECTORS,
    EMBEDDING_FREE,
    SCORED_SELECTORS,
    SELECTORS,
    Options,
    allocate,
    class_quotas,
    select,
)
from mnist_pruning.selectors.clusters import hybrid_split

# the search needs a proxy in its options (tests/test_search.py), fixed the subset it is given
# (below, and tests/test_fixed.py); ccs samples strata of its score rather than keeping one end
# (tests/test_baselines.py)
GENERIC = sorted(set(SELECTORS) - {"search", "fixed"})
KEEPERS = sorted(set(SCORED_SELECTORS) - {"ccs"})


@pytest.fixture(scope="module")
def blobs():
    """300 points in 2D around 6 well-separated centres, labels from 3 classes."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [20, 0], [20, 10]], dtype=np.float32)
    sizes = [80, 60, 50, 50, 40, 20]
    x = np.concatenate([c + rng.normal(size=(n, 2)) for c, n in zip(centres, sizes, strict=True)]).astype(
        np.float32
    )
    labels = np.repeat([0, 1, 2, 0, 1, 2], sizes)
    return x, labels


@pytest.mark.parametrize("name", GENERIC)
@pytest.mark.parametrize("k", [1, 6, 17, 120])
def test_exact_size_unique_sorted_deterministic(blobs, name, k):
    x, labels = blobs
    scored = Options(scores=np.round(x[:, 0]))  # ties on purpose; other selectors ignore scores
    a = select(name, x, labels, k, seed=3, options=scored)
    b = select(name, x, labels, k, seed=3, options=scored)
    expected = len(x) if name == "full" else k
    assert len(a) == expected
    assert len(np.unique(a)) == expected
    assert np.all(np.diff(a) > 0)
    assert a.dtype == np.int64
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", GENERIC)
def test_embedding_free_means_the_embedding_does_not_matter(blobs, name):
    """The report labels these selectors' runs with no embedding: the label must be true, and a
    selector that does use its embedding must not be marked free of it."""
    x, labels = blobs
    options = Options(scores=np.round(x[:, 0]), balance=True)
    other = np.random.default_rng(1).normal(size=(len(x), 3)).astype(np.float32)
    ours, theirs = (select(name, e, labels, 30, 2, options) for e in (x, other))
    same = np.array_equal(ours, theirs)
    assert same == (name in EMBEDDING_FREE)
    assert {"full", "random", "fixed", "el2n", "forgetting", "grand", "uncertainty", "ccs"} == EMBEDDING_FREE


def test_fixed_returns_exactly_the_rows_it_is_given_whatever_the_embedding_and_seed(blobs):
    x, labels = blobs
    given = np.sort(np.random.default_rng(4).choice(len(x), 17, replace=False))
    other = np.zeros((len(x), 1), dtype=np.float32)
    for emb, seed in ((x, 0), (other, 5)):
        chosen = select("fixed", emb, labels, 17, seed, Options(given=given, balance=True))
        assert np.array_equal(chosen, given) and chosen.dtype == np.int64
    with pytest.raises(ValueError, match="needs its k=17 rows in Options.given"):
        select("fixed", x, labels, 17, 0)
    with pytest.raises(ValueError, match="needs its k=16 rows"):
        select("fixed", x, labels, 16, 0, Options(given=given))


@pytest.mark.parametrize("name", ["random", "cluster_random"])
def test_seed_changes_random_choices(blobs, name):
    x, labels = blobs
    assert not np.array_equal(select(name, x, labels, 30, 0), select(name, x, labels, 30, 1))


@pytest.mark.parametrize("name,pick", [("nearest", np.argmin), ("furthest", np.argmax)])
def test_nearest_and_furthest_pick_the_extreme_of_each_cluster(blobs, name, pick):
    x, labels = blobs
    k = 6
    fit = kmeans(x, k, seed=0)
    chosen = select(name, x, labels, k, seed=0)
    expected = []
    for c in range(k):
        members = np.flatnonzero(fit.assignments == c)
        d = np.linalg.norm(x[members] - fit.centroids[c], axis=1)
        expected.append(members[pick(d)])
    assert np.array_equal(chosen, np.sort(expected))


def test_fewer_clusters_than_k_fills_exactly_k_in_proportion(blobs):
    x, labels = blobs
    fit = kmeans(x, 3, seed=0)
    for name in sorted(CLUSTER_SELECTORS):
        chosen = select(name, x, labels, 50, 0, Options(clusters=3))
        assert len(chosen) == 50 and len(np.unique(chosen)) == 50
        per_cluster = np.bincount(fit.assignments[chosen], minlength=3)
        sizes = np.bincount(fit.assignments, minlength=3)
        assert np.array_equal(per_cluster, allocate(sizes, 50))
    # nearest with clusters < k takes the closest members of each cluster, in order
    near = select("nearest", x, labels, 50, 0, Options(clusters=3))
    for c in range(3):
        members = np.flatnonzero(fit.assignments == c)
        n_c = np.sum(fit.assignments[near] == c)
        closest = members[np.argsort(fit.distances[members], kind="stable")[:n_c]]
        assert set(closest) == set(near[fit.assignments[near] == c])


def test_empty_and_tiny_clusters_still_give_exactly_k():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    assignments = np.array([0, 0, 0, 0, 0, 0, 0, 0, 2, 2])  # cluster 1 empty, cluster 2 tiny
    centroids = np.array([[3.5], [100.0], [8.5]], dtype=np.float32)

    def fake_kmeans(points: np.ndarray, n: int, seed: int) -> KMeansFit:
        assert n == 3
        return fit_from_centroids(points, centroids, assignments)

    for name in sorted(CLUSTER_SELECTORS):
        chosen = select(name, x, np.zeros(10), 3, 0, Options(clusters=3, kmeans=fake_kmeans))
        assert len(chosen) == 3 and len(np.unique(chosen)) == 3
        assert np.sum(np.isin(chosen, [8, 9])) >= 1  # the tiny cluster is represented


def test_allocate():
    assert allocate(np.array([5, 5, 5]), 3).tolist() == [1, 1, 1]
    assert allocate(np.array([10, 0, 1]), 5).tolist() == [4, 0, 1]
    assert allocate(np.array([1, 1, 100]), 10).tolist() == [1, 1, 8]
    sizes = np.array([7, 3, 0, 12, 1])
    for k in range(4, 24):
        take = allocate(sizes, k)
        assert take.sum() == k and np.all(take <= sizes) and np.all(take[sizes > 0] >= 1)
    with pytest.raises(ValueError):
        allocate(np.array([2, 2]), 5)


def test_class_quotas_exact_and_largest_classes_get_the_remainder():
    labels = np.repeat(np.arange(10), [50, 60, 40, 55, 45, 50, 50, 52, 48, 50])
    q = class_quotas(labels, 100)
    assert sum(q.values()) == 100 and set(q.values()) == {10}
    q = class_quotas(labels, 103)
    assert sum(q.values()) == 103
    assert [c for c, n in q.items() if n == 11] == [1, 3, 7]  # the three largest classes
    tiny = np.repeat([0, 1], [2, 50])
    assert class_quotas(tiny, 10) == {0: 2, 1: 8}


@pytest.mark.parametrize("name", sorted(set(GENERIC) - {"full"}))
def test_balance_gives_k_over_classes_per_class(blobs, name):
    x, labels = blobs
    chosen = select(name, x, labels, 30, 0, Options(balance=True, scores=x[:, 1].copy()))
    assert np.bincount(labels[chosen]).tolist() == [10, 10, 10]
    assert len(np.unique(chosen)) == 30
    if name in KEEPERS:  # per class: that class's 10 lowest scores
        for c in range(3):
            members = np.flatnonzero(labels == c)
            lowest = members[np.argsort(x[members, 1])[:10]]
            assert set(chosen[labels[chosen] == c]) == set(lowest)


def test_unknown_selector_and_bad_k(blobs):
    x, labels = blobs
    with pytest.raises(ValueError, match="nearest"):
        select("nearst", x, labels, 5, 0)
    with pytest.raises(ValueError, match="k=0"):
        select("random", x, labels, 0, 0)
    with pytest.raises(ValueError, match="k=301"):
        select("random", x, labels, 301, 0)


def test_typical_picks_the_densest_point_of_each_cluster():
    rng = np.random.default_rng(1)
    core = rng.normal(scale=0.1, size=(30, 2))
    halo = rng.normal(scale=3.0, size=(70, 2))
    x = np.concatenate([core, halo, core + 100, halo + 100]).astype(np.float32)
    labels = np.zeros(len(x), dtype=int)
    chosen = select("typical", x, labels, 2, 0, Options(neighbors=5))
    for c, offset in enumerate((0, 100)):
        members = np.arange(100) + 100 * c
        d = np.linalg.norm(x[members, None] - x[None, members], axis=2)
        score = 1 / np.sort(d, axis=1)[:, 1:6].mean(axis=1)
        assert members[np.argmax(score)] in chosen
        assert np.all(np.abs(x[chosen[c]] - offset) < 1)  # in the dense core


def test_kcenter_covers_spread_out_points_first():
    rng = np.random.default_rng(2)
    corners = np.array([[50, 50], [-50, 50], [50, -50], [-50, -50], [0, 80]], dtype=np.float32)
    x = np.concatenate([rng.normal(size=(200, 2)), corners]).astype(np.float32)
    for seed in range(3):
        chosen = select("kcenter", x, np.zeros(len(x)), 6, seed)
        assert set(range(200, 205)) <= set(chosen)


def test_kcenter_is_greedy_furthest_first():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    chosen = select("kcenter", x, np.zeros(100), 10, 0)
    first = np.random.default_rng(0).integers(100)
    order = [first]
    for _ in range(9):
        d = np.min(np.linalg.norm(x[:, None] - x[order][None], axis=2), axis=1)
        order.append(int(np.argmax(d)))
    assert np.array_equal(chosen, np.sort(order))


def test_hybrid_split_gives_the_odd_one_to_the_nearest_side():
    assert [hybrid_split(n, 0.5) for n in range(5)] == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]
    assert hybrid_split(4, 1.0) == (4, 0) and hybrid_split(4, 0.0) == (0, 4)
    assert hybrid_split(10, 0.3) == (3, 7)


@pytest.mark.parametrize("easy_fraction", [0.5, 0.25, 1.0])
def test_hybrid_takes_exactly_the_nearest_and_furthest_members(blobs, easy_fraction):
    x, labels = blobs
    fit = kmeans(x, 4, seed=0)
    chosen = select("hybrid", x, labels, 41, 0, Options(clusters=4, easy_fraction=easy_fraction))
    sizes = np.bincount(fit.assignments, minlength=4)
    for c, n in enumerate(allocate(sizes, 41)):
        members = np.flatnonzero(fit.assignments == c)
        order = members[np.argsort(fit.distances[members], kind="stable")]
        near, far = hybrid_split(int(n), easy_fraction)
        expected = set(order[:near]) | set(order[len(order) - far :])
        assert set(chosen[fit.assignments[chosen] == c]) == expected


def test_herding_first_pick_is_nearest_the_mean_and_the_mean_is_matched():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 5)).astype(np.float32) + np.array([3, 0, 0, 0, -2], dtype=np.float32)
    mu = x.mean(axis=0)
    first = select("herding", x, np.zeros(500), 1, 0)
    assert first.tolist() == [int(np.argmin(np.linalg.norm(x - mu, axis=1)))]
    chosen = select("herding", x, np.zeros(500), 20, 0)
    gap = np.linalg.norm(x[chosen].mean(axis=0) - mu)
    random_gaps = [np.linalg.norm(x[rng.choice(500, 20, replace=False)].mean(axis=0) - mu) for _ in range(50)]
    assert gap < 0.2 * np.median(random_gaps)  # herding tracks the mean far better than chance


def test_facility_location_picks_one_point_per_blob_first():
    rng = np.random.default_rng(5)
    centres = rng.uniform(-100, 100, size=(6, 3))
    sizes = [40, 35, 30, 25, 20, 15]
    x = np.concatenate([c + rng.normal(scale=0.5, size=(n, 3)) for c, n in zip(centres, sizes, strict=True)])
    x = x.astype(np.float32)
    blob = np.repeat(np.arange(6), sizes)
    for k in (6, 9):
        chosen = select("facility_location", x, np.zeros(len(x)), k, 0, Options(neighbors=10))
        assert set(blob[chosen]) == set(range(6))  # every blob covered before any gets a second
    # greedy order: the first pick lies in the largest blob (the most neighbours to cover)
    one = select("facility_location", x, np.zeros(len(x)), 1, 0, Options(neighbors=10))
    assert blob[one[0]] == 0


@pytest.mark.parametrize("name", KEEPERS)
def test_scored_selectors_keep_the_easy_or_the_hard_end(name):
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 0.0])
    x = np.zeros((6, 2), dtype=np.float32)
    easy = select(name, x, np.zeros(6), 2, 0, Options(scores=scores, keep="easy"))
    hard = select(name, x, np.zeros(6), 2, 0, Options(scores=scores, keep="hard"))
    assert easy.tolist() == [1, 5] and hard.tolist() == [2, 4]
    tied = np.zeros(50)
    flat = np.zeros((50, 1))
    picks = {tuple(select(name, flat, np.zeros(50), 5, s, Options(scores=tied))) for s in range(4)}
    assert len(picks) > 1  # ties are broken by the seed
    with pytest.raises(ValueError, match="score"):
        select(name, x, np.zeros(6), 2, 0)
