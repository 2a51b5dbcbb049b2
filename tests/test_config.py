"""Bad input: one clear line naming the key, the value and what is allowed."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from conftest import REPO
from mnist_pruning.config import CONF_DIR, ConfigError, register_configs
from mnist_pruning.validation import validate

register_configs()


@pytest.fixture
def make_cfg():
    def make(*overrides: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    yield make
    GlobalHydra.instance().clear()


def test_default_config_is_valid(make_cfg):
    cfg = make_cfg()
    validate(cfg)
    assert cfg.selector.name == "random" and cfg.embedding.dims == 50


def test_cluster_selectors_default_to_one_cluster_per_image(make_cfg):
    cfg = make_cfg("selector=nearest", "k=600")
    assert cfg.selector.clusters == 600
    cfg = make_cfg("selector=furthest", "k=600", "selector.clusters=50")
    assert cfg.selector.clusters == 50


@pytest.mark.parametrize(
    "overrides,clusters,rule",
    [
        (["selector=nearest", "k=50"], 50, "k"),
        (["selector=hybrid", "k=50"], 25, "k/2"),  # a nearest and a furthest image per cluster
        (["selector=hybrid", "k=11"], 5, "k/2"),
        (["selector=hybrid", "k=1"], 1, "k/2"),
        (["selector=hybrid", "k=600", "selector.clusters=50"], 50, "50"),
        (["selector=random"], None, "-"),
    ],
)
def test_hybrid_defaults_to_two_images_per_cluster_and_runs_log_the_rule(make_cfg, overrides, clusters, rule):
    from mnist_pruning.tracking import clusters_rule

    cfg = make_cfg(*overrides)
    validate(cfg)
    assert cfg.selector.get("clusters") == clusters and clusters_rule(cfg) == rule


@pytest.mark.parametrize(
    "overrides,key,allowed",
    [
        (["k=0"], "k=0", "from 1 to 60000"),
        (["k=-5"], "k=-5", "from 1 to 60000"),
        (["k=60001"], "k=60001", "from 1 to 60000"),
        (["selector=nearest", "selector.clusters=0"], "selector.clusters=0", "from 1 to k"),
        (["selector=nearest", "k=100", "selector.clusters=60001"], "selector.clusters=60001", "from 1"),
        (["selector=nearest", "k=100", "selector.clusters=200"], "selector.clusters=200", "k=100"),
        (["pca_dims=0"], "pca_dims=0", "1 to 784"),
        (["pca_dims=785"], "pca_dims=785", "1 to 784"),
        (["train.steps=0"], "train.steps=0", ">= 1"),
        (["train.lr=-1"], "train.lr=-1", "> 0"),
        (["train.batch_size=0"], "train.batch_size=0", ">= 1"),
        (["device=tpu"], "device='tpu'", "auto, cpu, cuda"),
        (["data.validation_size=10000", "k=55000"], "k=55000", "from 1 to 50000"),
    ],
)
def test_out_of_range_values_are_one_line_errors(make_cfg, overrides, key, allowed):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert "\n" not in msg
    assert key in msg and allowed in msg


def test_full_ignores_k(make_cfg):
    validate(make_cfg("selector=full", "k=0"))


def test_wrong_type_fails_at_compose(make_cfg):
    with pytest.raises((ValidationError, ConfigCompositionException)):
        make_cfg("k=abc")
    with pytest.raises(ConfigCompositionException):
        make_cfg("selector.clustrs=5")  # a typo of a key is not silently added


def test_best_experiment_is_the_small_end_winner(make_cfg):
    """experiment/best.yaml must name what the committed reports found over curves whose five
    seeds drew five subsets: results/small_end and results/baselines (each seed its own fit) and
    the frontier's curves that always drew a new subset per seed (random, cluster_random, hybrid,
    kcenter on PCA); of the settings whose median of 5 seeds reaches 0.95, those at the smallest
    k, the highest median."""
    import pandas as pd

    frontier = pd.read_csv(REPO / "results/frontier/summary.csv")
    fresh = frontier[frontier["selector"].isin(["random", "cluster_random", "hybrid", "kcenter"])]
    fits = [pd.read_csv(REPO / f"results/{name}/summary.csv") for name in ("small_end", "baselines")]
    summary = pd.concat([*fits, fresh], ignore_index=True)
    summary = summary[summary["seeds"] >= 5]
    reached = summary[(summary["selector"] != "full") & (summary["median_acc"] >= 0.95)]
    at_k = reached[reached["k"] == reached["k"].min()]
    best = at_k.loc[at_k["median_acc"].idxmax()]
    from mnist_pruning.selectors import EMBEDDING_FREE, SCORED_SELECTORS

    cfg = make_cfg("+experiment=best")
    sel = cfg.selector
    name = f"{sel.name}-{sel.keep}" if sel.name in SCORED_SELECTORS else sel.name
    embedding = cfg.embedding.name + str(cfg.embedding.dims if cfg.embedding.name != "pca" else cfg.pca_dims)
    embedding = "-" if sel.name in EMBEDDING_FREE else embedding
    assert (name, embedding, bool(sel.balance), cfg.k) == (
        best["selector"],
        best["embedding"],
        bool(best["balance"]),
        best["k"],
    )
    clusters = cfg.selector.get("clusters")
    expected = {"k": cfg.k, "-": None}.get(best["clusters"], best["clusters"])
    assert str(clusters) == str(expected)


def test_run_name_says_what_picks_the_subset(make_cfg):
    """Runs that differ only in a refitted embedding or in the score trainings' seed select
    different subsets, so their names in the MLflow UI differ; a selector that ignores the
    embedding does not name one."""
    from mnist_pruning.tracking import run_name

    herding = ("selector=herding", "embedding=autoencoder", "k=30", "selector.balance=true")
    assert run_name(make_cfg(*herding)) == "herding-k30-bal-ae64-s0"
    assert run_name(make_cfg(*herding, "embedding.seed=3")) == "herding-k30-bal-ae64e3-s0"
    assert run_name(make_cfg("selector=el2n", "k=10", "seed=1")) == "el2n-easy-k10-s1"
    assert (
        run_name(make_cfg("selector=el2n", "k=10", "selector.score.seed=2", "seed=1"))
        == "el2n-easy-k10-ss2-s1"
    )
    assert run_name(make_cfg("selector=random", "k=10", "embedding=autoencoder")) == "random-k10-s0"


def test_a_run_label_names_the_run_and_changes_no_result(make_cfg):
    """`mlflow.run_label` tells apart runs whose names would match (a search and its control):
    it is in the name, before the seed, and not in the config hash, so resume and the report
    treat a labelled run as the setting it is."""
    from mnist_pruning.tracking import config_hash, run_name

    search = ("selector=search", "embedding=autoencoder", "k=10", "seed=2")
    control = make_cfg(*search, "selector.search.evaluations=0", "mlflow.run_label=control")
    assert run_name(control) == "search-herding-k10-bal-ae64-control-s2"
    assert run_name(make_cfg(*search)) == "search-herding-k10-bal-ae64-s2"
    plain = make_cfg(*search, "selector.search.evaluations=0")
    assert config_hash(control) == config_hash(plain)


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf/experiment").glob("*.yaml")))
def test_every_experiment_composes_and_each_grid_is_valid(make_cfg, name, tmp_path, empty_store, monkeypatch):
    """A typo in an experiment file (an unknown key, a grid value of the wrong type) fails here,
    not minutes into a sweep: the file, and the first job of each of its grids, compose and pass
    `validate`. Run names are looked up in an empty store, not the checkout's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store(tmp_path / "mlflow.db"))
    from hydra_plugins.mnist_pruning_sweeper.grid_sweeper import expand

    if "tune" in OmegaConf.load(REPO / f"conf/experiment/{name}.yaml"):  # a study of the tuner's
        from mnist_pruning.tune import check

        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            dims = check(compose("tune", overrides=[f"+experiment={name}"]))
        assert dims and all(key.startswith("train.") for key in dims)
        return
    cfg = make_cfg(f"+experiment={name}")
    validate(cfg)
    grids = OmegaConf.select(OmegaConf.load(REPO / f"conf/experiment/{name}.yaml"), "hydra.sweeper.grids")
    for grid in OmegaConf.to_container(grids) if grids is not None else []:
        first = make_cfg(f"+experiment={name}", *expand([grid], [])[0])
        if str(first.selector.get("run")).startswith(f"{first.mlflow.experiment_name}/"):
            # it trains the subsets of the experiment's own earlier grids: all but the lookup passes
            with pytest.raises(ConfigError, match="no finished run named"):
                validate(first)
        else:
            validate(first)


@pytest.mark.parametrize("name,searches", [("search2_choice", 8 * 3), ("search2", 3 * 3 * 5)])
def test_an_experiment_reads_back_exactly_the_runs_its_searches_make(make_cfg, monkeypatch, name, searches):
    """A grid that trains the experiment's own subsets under other networks names them by run
    name (their ids do not exist yet): every name it reads is a search job's, and every search
    job is read back under each network. The jobs come from the sweeper as Hydra builds it (it
    resolves a plugin's arguments: the names' ${seed} must still be each job's own)."""
    from hydra.core.plugins import Plugins

    from mnist_pruning.tracking import run_name

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        primary = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    plugins = Plugins.instance()
    monkeypatch.setattr(plugins, "instantiate_launcher", lambda **_: None)
    sweeper = plugins.instantiate_sweeper(hydra_context=None, task_function=None, config=primary)
    made, read = set(), {}
    for job in sweeper.jobs([]):
        cfg = make_cfg(f"+experiment={name}", *job)
        if cfg.selector.name == "fixed":
            read.setdefault(cfg.model.name, set()).add(cfg.selector.run)
        else:
            made.add(f"{name}/{run_name(cfg)}")
    assert len(made) == searches and set(read) == {"mlp", "convnet3"}
    assert all(names == made for names in read.values())


@pytest.mark.parametrize(
    "overrides,regime",
    [
        (["k=1"], "tiny"),
        (["k=50"], "tiny"),
        (["k=51"], "small"),
        (["k=500"], "small"),
        (["k=501"], "large"),
        (["k=2000"], "large"),
        (["k=2001"], "xlarge"),
        (["k=5000"], "xlarge"),
        (["k=10000"], "xlarge"),
        (["k=10001"], "all"),
        (["selector=full"], "all"),
        (["selector=full", "data.validation_size=10000"], "all"),
        (["k=100", "train.regime=full"], "full"),
        (["selector=full", "train.regime=full"], "full"),
    ],
)
def test_the_regime_rule_picks_the_documented_regime_at_each_boundary(overrides, regime):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    assert cfg.train.regime == regime
    assert cfg.train.steps == cfg.train.regimes[regime].steps
    assert cfg.train.batch_size == cfg.train.regimes[regime].batch_size  # a regime's key too
    bounds = cfg.train.regime_bounds
    # full: no bound, forced only
    assert dict(bounds) == {"tiny": 50, "small": 500, "large": 2000, "xlarge": 10000, "all": 60000}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        one = compose("config", overrides=[*overrides, "train.steps=7"])
    assert one.train.steps == 7 and one.train.lr == cfg.train.lr  # one setting overridden, the rest kept


def test_tiny_is_small_said_once_and_an_override_of_tiny_changes_tiny_alone(make_cfg):
    from mnist_pruning.config import RegimeConfig

    regimes = make_cfg("k=20").train.regimes
    fields = list(RegimeConfig.__dataclass_fields__)
    assert all(regimes.tiny[f] == regimes.small[f] for f in fields)
    text = (REPO / "conf/train/default.yaml").read_text()
    tiny = OmegaConf.load(REPO / "conf/train/default.yaml").regimes.tiny
    assert all(OmegaConf.is_interpolation(tiny, f) for f in fields) and "${..small." in text
    own = make_cfg("k=20", "train.regimes.tiny.steps=2000").train
    assert (own.steps, own.regimes.small.steps, own.lr) == (2000, regimes.small.steps, regimes.small.lr)
    both = make_cfg("k=20", "train.regimes.small.weight_decay=1e-3").train
    assert both.weight_decay == both.regimes.small.weight_decay == 1e-3


def test_the_large_end_experiment_composes_to_the_runs_it_lists():
    from hydra_plugins.mnist_pruning_sweeper.grid_sweeper import expand

    grids = OmegaConf.load(REPO / "conf/experiment/large_end.yaml").hydra.sweeper.grids
    jobs = [dict(o.split("=", 1) for o in job) for job in expand(OmegaConf.to_container(grids), [])]
    assert len(jobs) == 5 + 8 * 6 * 5
    sizes = {"1000", "1500", "2000", "3000", "5000", "10000"}
    assert [j["seed"] for j in jobs if j["selector"] == "full"] == ["0", "1", "2", "3", "4"]

    def curve(j):
        extra = j.get("selector.difficulty") or j.get("selector.keep") or j.get("selector.balance")
        return j["selector"], extra, j.get("selector.measure")

    curves = {}
    for j in jobs:
        if j["selector"] != "full":
            curves.setdefault(curve(j), set()).add((j["k"], j["seed"]))
    assert set(curves) == {
        ("random", "False", None),
        ("random", "True", None),
        ("ccs", "el2n", None),
        ("ccs", "forgetting", None),
        ("forgetting", "hard", None),
        ("el2n", "hard", None),
        ("grand", "hard", None),
        ("uncertainty", "hard", "least_confidence"),
    }
    assert all(runs == {(k, str(s)) for k in sizes for s in range(5)} for runs in curves.values())


def test_a_launcher_without_its_plugin_is_one_line_naming_the_extra(monkeypatch):
    import importlib.util

    from mnist_pruning.validation import check_choices

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "submitit" in name else real(name, *a)
    )
    for launcher in ("local", "slurm"):
        with pytest.raises(ConfigError, match=r"hydra/launcher=.* pip install 'mnist-pruning\[cluster\]'"):
            check_choices([f"hydra/launcher={launcher}", "k=100"])
    check_choices(["hydra/launcher=joblib"])  # in the base install: no error


def test_the_first_generation_search_stays_reachable_value_for_value(make_cfg):
    """`selector=search_first` is the search +experiment=search measured (RESULTS.md): 60
    evaluations of 1,000 steps x 2 seeds of the run's recipe, 8 draws of herding, no screen, no
    portfolio, no shortlist; a search all the same (its name, its holdout)."""
    cfg = make_cfg("selector=search_first", "embedding=autoencoder", "k=20")
    s = cfg.selector.search
    assert cfg.selector.name == "search" and cfg.selector.base == "herding" and cfg.selector.balance
    assert (s.draws, s.evaluations, s.candidates, s.width) == (8, 60, "neighbors", 20)
    p = s.proxy
    assert (p.steps, p.batch_size, p.seeds, p.eval_size, p.augment) == (1000, 64, 2, 5000, True)
    assert (p.optimizer, p.lr, p.weight_decay, p.strength, p.elastic) == (None, None, None, 1.0, True)
    assert list(p.models) == ["lenet5"] and s.screen.name == "none" and list(s.bases) == []
    assert s.shortlist == 0 and s.holdout == 10000
