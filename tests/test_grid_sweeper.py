from omegaconf import OmegaConf

from conftest import REPO


def GridSweeper(**kwargs):  # noqa: N802
    """The sweeper class as Hydra loads it: Hydra's plugin scan re-executes BasicSweeper's module,
    so a class imported before that scan would subclass a stale BasicSweeper."""
    from hydra.core.plugins import Plugins

    Plugins.instance()
    from hydra_plugins.mnist_pruning_sweeper.grid_sweeper import GridSweeper as cls

    return cls(**kwargs)


def small_grids():
    return OmegaConf.to_container(OmegaConf.load(REPO / "conf/experiment/small.yaml").hydra.sweeper.grids)


def as_dicts(jobs):
    return [dict(o.split("=", 1) for o in job) for job in jobs]


def test_small_grid_is_the_union_without_impossible_cells():
    jobs = as_dicts(GridSweeper(grids=small_grids()).jobs([]))
    assert len(jobs) == 5 + 30 + 90 + 75
    assert sum(j["selector"] == "full" for j in jobs) == 5
    assert sum(j["selector"] == "random" for j in jobs) == 30
    assert not any(j.get("selector.clusters") == "500" and j["k"] == "60" for j in jobs)
    assert all("selector.clusters" not in j for j in jobs if j["selector"] == "random")
    assert len({tuple(sorted(j.items())) for j in jobs}) == len(jobs)


def test_command_line_applies_to_every_grid_and_wins():
    jobs = as_dicts(GridSweeper(grids=small_grids()).jobs(["seed=0", "train.steps=5"]))
    assert len(jobs) == (5 + 30 + 90 + 75) // 5
    assert all(j["seed"] == "0" and j["train.steps"] == "5" for j in jobs)


def test_shared_jobs_run_once():
    grids = [{"selector": "random,nearest", "k": "10"}, {"selector": "nearest", "k": "10,20"}]
    jobs = as_dicts(GridSweeper(grids=grids).jobs([]))
    assert sorted((j["selector"], j["k"]) for j in jobs) == [
        ("nearest", "10"),
        ("nearest", "20"),
        ("random", "10"),
    ]


def test_frontier_covers_every_selector_at_every_k():
    grids = OmegaConf.to_container(OmegaConf.load(REPO / "conf/experiment/frontier.yaml").hydra.sweeper.grids)
    jobs = as_dicts(GridSweeper(grids=grids).jobs([]))
    assert len({tuple(sorted(j.items())) for j in jobs}) == len(jobs) == 14 * 8 * 5 + 5
    assert sum(j["selector"] == "full" for j in jobs) == 5
    ks = {"10", "20", "30", "50", "100", "200", "500", "1000"}
    curves = {}
    for j in jobs:
        if j["selector"] != "full":
            curve = (j["selector"], j.get("selector.balance"), j.get("selector.keep"), j.get("embedding"))
            curves.setdefault(curve, []).append((j["k"], j["seed"]))
    assert len(curves) == 14
    for cells in curves.values():  # every curve at every k, with whole sets of 5 seeds
        assert sorted(cells) == sorted((k, str(s)) for k in ks for s in range(5))
    # one embedding per selector; every selector of the package is on the frontier
    from mnist_pruning.selectors import SELECTORS

    newer = {"search", "probcover", "ccs", "moderate", "grand", "uncertainty"}  # their own experiments
    # fixed is no method: it trains a subset chosen elsewhere (tests/test_fixed.py)
    assert {c[0] for c in curves} == set(SELECTORS) - {"full", "fixed"} - newer
    later = set()
    for name in ("baselines", "search"):
        grids = OmegaConf.load(REPO / f"conf/experiment/{name}.yaml").hydra.sweeper.grids
        default = "search" if name == "search" else None
        later |= {
            j.get("selector", default)
            for j in as_dicts(GridSweeper(grids=OmegaConf.to_container(grids)).jobs([]))
        }
    assert newer <= later
    # the blocks: k = 20 and 50 first
    assert {j.get("k") for j in jobs[: 14 * 2 * 5]} == {"20", "50"}


def test_original_all_grid_has_every_possible_cell_once():
    grids = OmegaConf.to_container(
        OmegaConf.load(REPO / "conf/experiment/original_all.yaml").hydra.sweeper.grids
    )
    jobs = as_dicts(GridSweeper(grids=grids).jobs([]))
    assert len({tuple(sorted(j.items())) for j in jobs}) == len(jobs) == 1160 + 30 + 5
    clustered = [j for j in jobs if "selector.clusters" in j]
    assert all(int(j["k"]) >= int(j["selector.clusters"]) for j in clustered)
    assert {j["embedding"] for j in clustered} == {"pixels", "pca"}
    assert {j["selector"] for j in clustered} == {"nearest", "furthest", "hybrid", "cluster_random"}
    assert {j["selector.clusters"] for j in clustered} == {"10", "50", "100", "500", "1000", "5000", "10000"}


def test_tiny_round_runs_each_variant_on_both_selectors_and_scores_on_validation():
    conf = OmegaConf.load(REPO / "conf/experiment/tiny.yaml")
    assert conf.data.validation_size > 0  # a recipe choice never reads the test set
    jobs = as_dicts(GridSweeper(grids=OmegaConf.to_container(conf.hydra.sweeper.grids)).jobs([]))
    assert len(jobs) == 5 * 2 * 5
    cells = {}  # the train.* keys a job changes -> its (selector, seed) cells
    for j in jobs:
        cells.setdefault(tuple(sorted(k for k in j if k.startswith("train."))), set()).add(
            (j["selector"], j["seed"])
        )
    assert set(cells) == {
        (),
        ("train.label_smoothing",),
        ("train.weight_decay",),
        ("train.lr",),
        ("train.elastic_alpha", "train.label_smoothing"),
    }
    for variant in cells.values():  # every variant on both selectors and all 5 seeds
        assert variant == {(s, str(seed)) for s in ("random", "herding") for seed in range(5)}
