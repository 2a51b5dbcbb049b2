"""Torch threads per run: a single run uses every core, a multirun shares them among its jobs."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from mnist_pruning import progress
from mnist_pruning.config import CONF_DIR, register_configs
from mnist_pruning.train import threads_per_job

register_configs()


@pytest.fixture
def hydra_cfg(monkeypatch):
    """The `hydra` node a run sees, composed as the entrypoint composes it, on a machine of 2
    cores and 24 GiB (the parallel launcher's bound: 2 jobs)."""
    monkeypatch.setattr(progress, "cores", lambda: 2)
    monkeypatch.setattr(progress, "memory_gib", lambda: 24.0)

    def make(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=True).hydra

    yield make
    GlobalHydra.instance().clear()


def test_a_single_run_uses_every_core_although_the_parallel_launcher_is_composed(hydra_cfg):
    run = hydra_cfg("selector=full")
    assert run.launcher._target_.endswith("ParallelLauncher") and run.mode in (None, RunMode.RUN)
    assert threads_per_job(None, run) == 2
    assert threads_per_job(None, hydra_cfg("selector=full", "hydra.mode=RUN")) == 2
    assert threads_per_job(1, run) == 1  # an explicit `threads=` wins


def test_a_multirun_shares_the_cores_among_its_parallel_jobs(hydra_cfg):
    sweep = hydra_cfg("selector=full", "hydra.mode=MULTIRUN")
    assert threads_per_job(None, sweep) == 1  # 2 cores // 2 jobs
    assert threads_per_job(2, sweep) == 2  # an explicit `threads=` wins
    assert threads_per_job(None, hydra_cfg("hydra.mode=MULTIRUN", "hydra.launcher.n_jobs=1")) == 2
    assert threads_per_job(None, hydra_cfg("hydra.mode=MULTIRUN", "hydra/launcher=basic")) == 2


def test_submitit_cpus_per_task_wins_in_a_multirun(hydra_cfg, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setattr(progress, "cores", lambda: 8)
    local = hydra_cfg("hydra.mode=MULTIRUN", "hydra/launcher=local")
    assert local.launcher.cpus_per_task == 1 and threads_per_job(None, local) == 1
    three = hydra_cfg("hydra.mode=MULTIRUN", "hydra/launcher=local", "hydra.launcher.cpus_per_task=3")
    assert threads_per_job(None, three) == 3
    assert threads_per_job(4, three) == 4
    # the same launcher named in a single run (no launcher starts it) leaves every core to it
    assert threads_per_job(None, hydra_cfg("hydra/launcher=local")) == 8


def test_joblib_bounds_without_the_memory_rule(monkeypatch):
    """joblib's own launcher: n_jobs -1 is one per core, N jobs share the cores, 0 is no bound."""
    monkeypatch.setattr(progress, "cores", lambda: 8)
    multirun = {"mode": RunMode.MULTIRUN}
    assert threads_per_job(None, OmegaConf.create({**multirun, "launcher": {"n_jobs": 2}})) == 4
    assert threads_per_job(None, OmegaConf.create({**multirun, "launcher": {"n_jobs": -1}})) == 1
    assert threads_per_job(None, OmegaConf.create({**multirun, "launcher": {"n_jobs": 16}})) == 1
    assert threads_per_job(None, OmegaConf.create({**multirun, "launcher": {"n_jobs": 0}})) == 8


def test_a_sweep_of_one_job_trains_on_every_core_and_a_sweep_of_two_shares_them(tmp_path, run_env):
    """As a user meets it, no override: `-m` with nothing swept is one job, which the parallel
    launcher tells it runs alone; two jobs on this machine share its cores as the launcher runs them."""
    from conftest import run_train, search_runs

    fast = ["selector=random", "train.steps=5", "train.warmup_steps=1"]
    res = run_train(["-m", "k=10", *fast], tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    (one,) = search_runs(tmp_path)["tags.torch_threads"]
    assert one == str(progress.cores())
    res = run_train(["-m", "k=20,30", *fast], tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    runs = search_runs(tmp_path)
    two = runs[runs["params.k"] != "10"]["tags.torch_threads"]
    at_once = min(2, progress.parallel_jobs(0, 2.5))
    assert list(two) == [str(max(1, progress.cores() // at_once))] * 2
