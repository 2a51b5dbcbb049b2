"""The validation-guided search: exact, balanced, greedy on its proxy, reproducible, and scored
on training images held out of the pool, never on the test set."""

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import run_train, search_runs
from mnist_pruning import proxy as proxy_module
from mnist_pruning.cache import Cache
from mnist_pruning.config import CONF_DIR, ConfigError, register_configs
from mnist_pruning.data import Mnist, load_mnist
from mnist_pruning.selectors import Options, SearchOptions, select
from mnist_pruning.subset import search_split, subset_of
from mnist_pruning.validation import validate

register_configs()


def toy(n_per_class=6, classes=10, dims=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    x = rng.normal(size=(len(labels), dims)).astype(np.float32) + labels[:, None]
    return x, labels


def searched(x, labels, k, proxy, seed=0, **settings):
    trace = []
    s = SearchOptions(proxy=proxy, trace=lambda n, score, kept: trace.append((n, score, kept)), **settings)
    picked = select("search", x, labels, k, seed, Options(balance=True, base="herding", search=s))
    return picked, trace


def noisy(subset: np.ndarray) -> float:
    """A deterministic stand-in proxy: a hash of the subset, in [0, 1)."""
    return (hash(tuple(subset.tolist())) % 10_007) / 10_007


def test_search_keeps_exactly_k_balanced_images_and_spends_its_evaluations():
    x, labels = toy()
    picked, trace = searched(x, labels, 20, noisy, draws=3, evaluations=40, width=3)
    assert len(picked) == 20 and len(np.unique(picked)) == 20 and np.all(np.diff(picked) > 0)
    assert np.bincount(labels[picked], minlength=10).tolist() == [2] * 10
    assert [n for n, _, _ in trace] == list(range(1, 41))


def test_a_swap_that_lowers_the_proxy_is_never_kept_and_the_best_image_is_found():
    """The stub scores one known image (not in herding's start) far above all else: the search
    ends with it chosen, and its score path rises only when a swap is kept."""
    x, labels = toy()
    start = select("herding", x, labels, 10, 0, Options(balance=True))
    target = next(i for i in np.flatnonzero(labels == 3) if i not in start)

    def proxy(subset):
        return float(target in subset) + 0.01 * noisy(subset)

    picked, trace = searched(x, labels, 10, proxy, draws=1, evaluations=400, candidates="ranked", width=5)
    assert target in picked
    best = -np.inf
    for _, score, kept in trace:
        assert kept == (score > best)
        best = max(best, score) if kept else best
    assert proxy(picked) == pytest.approx(best)


def test_a_seeded_search_is_reproducible_and_zero_evaluations_is_the_base():
    x, labels = toy()
    runs = [searched(x, labels, 20, noisy, seed=s, draws=4, evaluations=30) for s in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] and runs[0][1] != runs[2][1]
    base = select("herding", x, labels, 20, 0, Options(balance=True))
    np.testing.assert_array_equal(searched(x, labels, 20, noisy, evaluations=0)[0], base)


N = 2000  # a small pool of real images for the proxy


@pytest.fixture(scope="module")
def small_mnist(mnist_root) -> Mnist:
    data = load_mnist(str(mnist_root), download=False, verify=False)
    test = data.test_images, data.test_labels
    return Mnist(data.train_images[:N], data.train_labels[:N], *test, fingerprint="first-2000")


def search_cfg(*overrides):
    args = [
        "selector=search",
        "k=20",
        "selector.search.holdout=500",
        "selector.search.proxy.eval_size=300",
        "selector.search.proxy.steps=10",
        "selector.search.draws=2",
        "selector.search.evaluations=3",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=args)


def test_the_proxy_trains_on_the_pool_and_scores_on_the_holdout_never_the_test_set(
    small_mnist, tmp_path, monkeypatch
):
    """Every proxy training sees pool images only and is scored on the search's held-out split
    (carved out before anything else); the test images never reach it. A finished search is
    cached: asked again, it trains nothing."""
    seen = []
    real_train = proxy_module.train

    def spy(x, y, evals, *args, **kwargs):
        seen.append((x.clone(), evals["val"][0].clone()))
        assert set(evals) == {"val"}
        return real_train(x, y, evals, *args, **kwargs)

    monkeypatch.setattr(proxy_module, "train", spy)
    cfg = search_cfg()
    pool, holdout = search_split(cfg, np.arange(N))
    assert len(holdout) == 500 and not set(pool) & set(holdout) and len(pool) == N - 500
    cache, found = Cache(tmp_path), {}
    picked = subset_of(cfg, small_mnist, pool, cache, holdout, torch.device("cpu"), found)
    assert len(seen) == 3 * cfg.selector.search.proxy.seeds and found["path"].shape == (3, 3)
    assert set(picked) <= set(pool)
    norm = proxy_module.normalize
    scored = norm(small_mnist.train_images[holdout[:300]], cfg.data.mean, cfg.data.std)
    held = norm(small_mnist.train_images[holdout], cfg.data.mean, cfg.data.std)
    for x, val in seen:
        assert torch.equal(val, scored)
        assert not (x[:, None] == held[None]).flatten(2).all(2).any()  # no held-out image trained on

    again = subset_of(cfg, small_mnist, pool, cache, holdout, torch.device("cpu"), {})
    np.testing.assert_array_equal(picked, again)
    assert len(seen) == 3 * cfg.selector.search.proxy.seeds


def test_a_bad_search_setting_is_one_line():
    with pytest.raises(ConfigError, match=r"selector.base='full' is not allowed: one of .*herding"):
        validate(search_cfg("selector.base=full"))
    with pytest.raises(ConfigError, match=r"selector.search.holdout=60000 is not allowed: .* to 59980"):
        validate(search_cfg("selector.search.holdout=60000"))
    with pytest.raises(ConfigError, match=r"selector.search.candidates='far' is not allowed"):
        validate(search_cfg("selector.search.candidates=far"))


TINY_SEARCH = [
    "selector=search",
    "k=20",
    "selector.search.evaluations=3",
    "selector.search.draws=2",
    "selector.search.proxy.steps=10",
    "selector.search.proxy.eval_size=500",
    "train.steps=10",
    "train.warmup_steps=2",
]


def test_a_tiny_search_runs_from_the_command_line(tmp_path, run_env):
    res = run_train(TINY_SEARCH, tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    (run,) = search_runs(tmp_path).to_dict("records")
    assert run["status"] == "FINISHED" and run["tags.mlflow.runName"] == "search-herding-k20-bal-pca50-s0"
    assert run["metrics.search_evaluations"] == 3 and run["metrics.train_size"] == 20
    assert run["metrics.search_final_score"] >= run["metrics.search_base_score"]
    assert run["params.selector.search.holdout"] == "10000"


def test_a_screened_search_judges_the_draws_and_swaps_its_screen_ranks_best():
    """Multi-fidelity: of 12 draws the proxy judges the base's own and the screen's best 3; each
    swap it judges is the screen's best of 5; the proxy still spends exactly its evaluations."""
    x, labels = toy()
    screened: list[tuple[tuple[int, ...], float]] = []

    def screen(subset):
        score = (hash((-1, *subset.tolist())) % 10_007) / 10_007  # not the proxy's hash
        screened.append((tuple(subset.tolist()), score))
        return score

    judged: list[tuple[int, ...]] = []

    def proxy(subset):
        judged.append(tuple(subset.tolist()))
        return noisy(subset)

    s = dict(draws=4, evaluations=10, width=3, screen=screen, screen_draws=12, screen_swaps=5)
    picked, trace = searched(x, labels, 20, proxy, **s)
    assert len(picked) == 20 and len(np.unique(picked)) == 20
    assert np.bincount(labels[picked], minlength=10).tolist() == [2] * 10
    assert len(judged) == 10 and [n for n, _, _ in trace] == list(range(1, 11))
    draws = screened[:11]  # the 11 draws after the base's own
    best3 = [d for d, _ in sorted(draws, key=lambda d: -d[1])[:3]]
    assert judged[1:4] == best3 and judged[0] not in [d for d, _ in draws]
    swaps = screened[11:]
    assert len(swaps) == 5 * 6  # five screened for each of the six swaps judged
    for i in range(6):
        group = swaps[5 * i : 5 * i + 5]
        assert judged[4 + i] == max(group, key=lambda d: d[1])[0]
    best = -np.inf
    for _, score, kept in trace:  # a swap that lowers the proxy is never kept
        assert kept == (score > best)
        best = max(best, score) if kept else best
    again, trace_again = searched(x, labels, 20, noisy, **{**s, "screen": lambda r: noisy(r[::-1])})
    repeat, trace_repeat = searched(x, labels, 20, noisy, **{**s, "screen": lambda r: noisy(r[::-1])})
    np.testing.assert_array_equal(again, repeat)
    assert trace_again == trace_repeat


def test_greedy_by_screen_adds_the_best_of_its_candidates_class_by_class():
    """Each step keeps, of its class's candidates, the one the screen scores best with what is
    chosen: with every image a candidate and a screen that sums a known value per image, the
    pick is each class's most valuable images, exactly k of them, balanced."""
    from mnist_pruning.selectors.search import greedy_by_screen

    x, labels = toy(n_per_class=8)
    value = np.random.default_rng(3).permutation(len(labels)).astype(float)
    calls = []

    def screen(rows):
        calls.append(len(rows))
        return float(value[rows].sum())

    picked = greedy_by_screen(screen, labels, 20, 8, np.random.default_rng(0))
    expected = np.sort(
        np.concatenate([np.flatnonzero(labels == c)[np.argsort(-value[labels == c])[:2]] for c in range(10)])
    )
    np.testing.assert_array_equal(picked, expected)
    assert calls == [1] * 8 + [i for i in range(2, 11) for _ in range(8)] + [
        i for i in range(11, 21) for _ in range(7)
    ]
    fewer = greedy_by_screen(screen, labels, 25, 3, np.random.default_rng(0))  # 3 candidates a step
    assert len(np.unique(fewer)) == 25 and sorted(np.bincount(labels[fewer]).tolist()) == [2] * 5 + [3] * 5


def test_a_screened_search_judges_the_screens_greedy_draw():
    """With screen_greedy, the subset the screen builds alone is judged after the base's own, and
    kept when the proxy scores it best; the proxy still spends exactly its evaluations."""
    from mnist_pruning.selectors.search import greedy_by_screen

    x, labels = toy(n_per_class=8)
    value = np.random.default_rng(3).permutation(len(labels)).astype(float)

    def screen(rows):
        return float(value[rows].sum())

    # every image of a class a candidate: the greedy draw is each class's two most valuable
    built = greedy_by_screen(screen, labels, 20, 8, np.random.default_rng(0))
    judged = []

    def proxy(rows):
        judged.append(tuple(rows.tolist()))
        return 1.0 if np.array_equal(rows, built) else noisy(rows) / 2

    s = dict(draws=3, evaluations=6, width=3, screen=screen, screen_greedy=8)
    picked, trace = searched(x, labels, 20, proxy, seed=7, **s)
    assert len(judged) == 6 and tuple(picked.tolist()) in judged
    assert judged[1] == tuple(picked.tolist()) and trace[1][1] == 1.0  # judged second, kept to the end
    assert np.bincount(labels[picked], minlength=10).tolist() == [2] * 10


def test_a_bad_screen_setting_is_one_line():
    with pytest.raises(
        ConfigError, match=r"selector.search.screen.name='krr' is not allowed: one of none, rbf, nn, ntk"
    ):
        validate(search_cfg("selector.search.screen.name=krr"))
    with pytest.raises(ConfigError, match=r"selector.search.screen.swaps=0 is not allowed"):
        validate(search_cfg("selector.search.screen.swaps=0"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "selector.search.proxy.optimizer=lbfgs",
            r"proxy.optimizer='lbfgs' is not allowed: null .* sgd, adam",
        ),
        ("selector.search.proxy.lr=0", r"proxy.lr=0.0 is not allowed"),
        (
            "selector.search.proxy.models=[lenet5,resnet]",
            r"proxy.models=\['lenet5', 'resnet'\] is not allowed",
        ),
        ("selector.search.bases=[full]", r"bases='full' is not allowed: rule or rule@embedding, rule one of"),
        ("selector.search.bases=[typical@umap]", r"bases='typical@umap' is not allowed: .* autoencoder"),
        ("selector.search.shortlist=-1", r"shortlist=-1 is not allowed"),
        ("selector.search.bases=[random,el2n]", r"draws=2 is not allowed: an integer >= 3"),
        ("selector.search.screen.eval_size=20000", r"screen.eval_size=20000 is not allowed"),
        (
            "selector.search.screen.name=none selector.search.screen.greedy=50",
            r"screen.greedy=50 is not allowed: 0, or .* with a screen",
        ),
        ("train.optimizer=rmsprop", r"train.optimizer='rmsprop' is not allowed: one of sgd, adam"),
    ],
)
def test_a_bad_multi_fidelity_setting_is_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(search_cfg(*override.split()))


def test_a_portfolio_alternates_its_rules_each_first_on_the_whole_pool():
    x, labels = toy(n_per_class=12)
    calls = []

    def rule(name):
        def draw(rows, n, seed):
            calls.append((name, len(rows), seed))
            per = n // 10
            return np.concatenate([rows[labels[rows] == c][:per] for c in range(10)])

        return draw

    picked, trace = searched(x, labels, 10, noisy, draws=5, evaluations=5, bases=(rule("a"), rule("b")))
    # draws: herding (the base), a, b on the whole pool with the run's seed; herding, a on class halves
    assert [c[0] for c in calls] == ["a", "b", "a"]
    assert [c[1] for c in calls] == [120, 120, 60] and calls[0][2] == calls[1][2] == 0 != calls[2][2]
    assert len(trace) == 5 and len(picked) == 10


def test_the_shortlist_rescores_the_best_distinct_subsets_and_picks_by_both():
    x, labels = toy()
    rescored = []

    def rescore(subset):
        rescored.append(tuple(subset.tolist()))
        return 1.0 - noisy(subset)  # disagrees with the proxy: the pick is no longer the proxy's best

    settings = dict(draws=4, evaluations=12)
    plain, trace = searched(x, labels, 10, noisy, **settings)
    listed, trace2 = searched(
        x, labels, 10, noisy, shortlist=3, rescore=rescore, rescore_weight=0.5, **settings
    )
    assert trace == trace2 and len(rescored) == 3 and len(set(rescored)) == 3
    assert max(trace, key=lambda t: t[1])[1] == noisy(np.sort(plain))  # without it, the proxy's best
    combined = {r: 0.5 * noisy(np.array(r)) + 0.5 * (1 - noisy(np.array(r))) for r in rescored}
    assert tuple(np.sort(listed).tolist()) == max(combined, key=combined.get)
    top3 = sorted({t[1] for t in trace}, reverse=True)[:3]
    assert sorted(noisy(np.array(r)) for r in rescored) == sorted(top3)


def test_a_tiny_screened_search_runs_from_the_command_line(tmp_path, run_env):
    screen = [
        "selector.search.screen.name=rbf",
        "selector.search.screen.draws=6",
        "selector.search.screen.swaps=4",
    ]
    res = run_train([*TINY_SEARCH, *screen], tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    (run,) = search_runs(tmp_path).to_dict("records")
    assert run["status"] == "FINISHED" and run["metrics.search_evaluations"] == 3
    assert run["metrics.screen_evaluations"] == 5 + 4  # 5 draws screened, then 4 for the one swap judged
    assert run["metrics.screen_seconds"] > 0 and run["params.selector.search.screen.name"] == "rbf"


def test_a_tiny_multi_fidelity_search_runs_from_the_command_line(tmp_path, run_env):
    stages = [
        "selector.search.draws=4",
        "selector.search.evaluations=6",
        "selector.search.screen.name=ntk",
        "selector.search.screen.eval_size=200",
        "selector.search.screen.draws=5",
        "selector.search.screen.swaps=3",
        "selector.search.screen.greedy=2",
        "selector.search.bases=[random,herding@pca]",
        "selector.search.shortlist=2",
        "selector.search.shortlist_seeds=1",
        "selector.search.proxy.models=[lenet5,mlp]",
        "selector.search.proxy.optimizer=adam",
        "selector.search.proxy.lr=0.003",
        "selector.search.proxy.strength=0.5",
        "selector.search.proxy.elastic=false",
    ]
    res = run_train([*TINY_SEARCH, *stages], tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    (run,) = search_runs(tmp_path).to_dict("records")
    assert run["status"] == "FINISHED" and run["metrics.search_evaluations"] == 6
    assert run["metrics.train_size"] == 20
    # 5 draws: the 3 rules' own judged unscreened, the screen's best of the other 2; the greedy
    # draw (20 steps of 2 candidates); then the one swap judged, the best of 3 screened
    assert run["metrics.screen_evaluations"] == 2 + 20 * 2 + 3
    assert run["metrics.shortlist_evaluations"] == 2 and run["metrics.shortlist_seconds"] > 0
    assert run["params.selector.search.proxy.models"] == "['lenet5', 'mlp']"


def test_the_proxys_own_recipe_replaces_the_runs_where_set_and_only_there():
    from mnist_pruning.proxy import ProxySettings, proxy_recipe
    from mnist_pruning.subset import recipe_of

    run = recipe_of(search_cfg())
    base = dict(steps=300, batch_size=32, seeds=1, eval_size=100, augment=True)
    cut = proxy_recipe(run, ProxySettings(**base))
    assert (cut.lr, cut.weight_decay, cut.optimizer) == (run.lr, run.weight_decay, run.optimizer)
    assert (cut.aug_rotate, cut.elastic_alpha, cut.steps, cut.batch_size) == (
        run.aug_rotate,
        run.elastic_alpha,
        300,
        32,
    )
    own = proxy_recipe(
        run,
        ProxySettings(**base, optimizer="adam", lr=3e-3, weight_decay=0.0, strength=0.5, elastic=False),
    )
    assert (own.optimizer, own.lr, own.weight_decay) == ("adam", 3e-3, 0.0)
    assert own.aug_rotate == run.aug_rotate / 2 and own.aug_scale == run.aug_scale / 2
    assert own.elastic_alpha == 0.0 and own.label_smoothing == run.label_smoothing


def test_a_proxy_over_trainers_is_the_mean_with_the_same_seeds_under_each(small_mnist, monkeypatch):
    from mnist_pruning.model import MLP, LeNet5
    from mnist_pruning.proxy import ProxySettings, make_proxy
    from mnist_pruning.subset import recipe_of

    calls = []

    def fake_train(x, y, evals, recipe, seed, device, progress=True, model=LeNet5):
        calls.append((model, seed))
        acc = {LeNet5: 0.9, MLP: 0.5}[model] + seed * 1e-6
        return type("R", (), {"metrics": {"val_acc": acc}})()

    monkeypatch.setattr(proxy_module, "train", fake_train)
    settings = ProxySettings(steps=5, batch_size=8, seeds=2, eval_size=50, augment=False)
    score = make_proxy(
        small_mnist.train_images,
        small_mnist.train_labels,
        np.arange(1000),
        np.arange(1000, 1100),
        recipe_of(search_cfg()),
        settings,
        [3, 7],
        0.13,
        0.31,
        torch.device("cpu"),
        [LeNet5, MLP],
    )
    assert score(np.arange(10)) == pytest.approx(0.7 + 5e-6)
    assert calls == [(LeNet5, 3), (LeNet5, 7), (MLP, 3), (MLP, 7)]


class _Untouchable:
    """Stands in for the test set: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the search touched the test set ({name})")

    def __getitem__(self, key):
        raise AssertionError("the search touched the test set (indexing)")

    def __len__(self):
        raise AssertionError("the search touched the test set (len)")


@pytest.mark.parametrize("screen", ["rbf", "ntk"])
def test_a_multi_fidelity_search_never_reads_the_test_set_and_keeps_k_balanced_images(
    small_mnist, tmp_path, screen
):
    """Every stage (portfolio draws, screen, proxy over two trainers, shortlist) sees pool and
    holdout images only: the test set is replaced by an object any use of which fails."""
    train = small_mnist.train_images, small_mnist.train_labels
    blind = Mnist(*train, _Untouchable(), _Untouchable(), "first-2000")
    cfg = search_cfg(
        f"selector.search.screen.name={screen}",
        "selector.search.screen.eval_size=100",
        "selector.search.screen.draws=6",
        "selector.search.screen.swaps=3",
        "selector.search.bases=[random]",
        "selector.search.draws=3",
        "selector.search.evaluations=5",
        "selector.search.shortlist=2",
        "selector.search.shortlist_seeds=1",
        "selector.search.proxy.models=[lenet5,mlp]",
        "selector.search.proxy.steps=3",
    )
    pool, holdout = search_split(cfg, np.arange(N))
    found = {}
    picked = subset_of(cfg, blind, pool, Cache(tmp_path), holdout, torch.device("cpu"), found)
    labels = small_mnist.train_labels.numpy()
    assert len(np.unique(picked)) == 20 and set(picked) <= set(pool)
    assert np.bincount(labels[picked], minlength=10).tolist() == [2] * 10
    # 6 draws: the 2 rules' own judged, the screen's best of the other 4; 2 swaps, each the best of 3
    assert found["path"].shape == (5, 3) and found["screen_evaluations"] == 4 + 2 * 3
    assert found["shortlist_evaluations"] == 2
    again = subset_of(cfg, blind, pool, Cache(tmp_path / "cold"), holdout, torch.device("cpu"), {})
    np.testing.assert_array_equal(picked, again)  # reproducible for a seed, from a cold cache
