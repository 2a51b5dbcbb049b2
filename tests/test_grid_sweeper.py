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
    assert len({tuple(sorted(j.items())) for j in jobs}) == len(jobs)
    assert sum(j["selector"] == "full" for j in jobs) == 10
    ks = {"20", "50", "100", "200", "500", "1000"}
    for name in ("random", "typical", "kcenter", "nearest", "furthest", "cluster_random"):
        cells = [j for j in jobs if j["selector"] == name and j.get("selector.balance") == "True"]
        assert {j["k"] for j in cells} == ks
        assert all(sum(j["k"] == k for j in cells) % 5 == 0 for k in ks)  # whole sets of 5 seeds
    assert len(jobs) == 310


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
