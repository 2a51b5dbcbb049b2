"""Sweeps: the per-run overhead, a sweep one job at a time against the default launcher, and an
experiment's wall time projected from that sample."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import config
from omegaconf import OmegaConf

from hydra_plugins.mnist_pruning_sweeper.grid_sweeper import expand
from mnist_pruning.config import CONF_DIR
from mnist_pruning.progress import parallel_jobs


def sweep(args: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "mnist_pruning.train", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"sweep failed: {res.stdout[-2000:]}{res.stderr[-2000:]}")
    return time.perf_counter() - start


def runs_of(tracking_uri: str):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(experiment_names=["mnist-pruning"]).sort_values("start_time")


def bench_overhead_and_parallel(root: str, steps: int, n_runs: int, k: int, tiny: bool = False) -> dict:
    """Per-run overhead from the runs' own timestamps, and a sweep sequential vs the default
    launcher, which runs as many jobs as cores and memory allow (tiny:
    fewer warm jobs and one cached one-step run instead of the median of three)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, MNIST_DATA_DIR=root, MNIST_PRUNING_CACHE=str(tmp / "cache"))
        short = f"train.steps={max(1, steps // 10)}"

        # cold: a new process, nothing cached (MNIST parse, PCA, k-means fit, imports)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/cold.db"
        cold_wall = sweep(["selector=nearest", f"k={k}", short], env, tmp)
        cold = runs_of(env["MLFLOW_TRACKING_URI"]).iloc[0]

        # warm: a multirun whose embedding and k-means fit are cached; from one job's start to the
        # next, minus the training in between
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/warm.db"
        sweep(
            [
                "-m",
                "hydra/launcher=basic",  # one job after another: the gaps are the overhead
                "selector=nearest,furthest,cluster_random,random",
                f"k={k}",
                short,
                f"seed={0 if tiny else '0,1'}",
            ],
            env,
            tmp,
        )
        warm = runs_of(env["MLFLOW_TRACKING_URI"])
        starts = (warm["start_time"] - warm["start_time"].iloc[0]).dt.total_seconds().to_numpy()
        gaps = np.diff(starts) - warm["metrics.train_seconds"].to_numpy()[:-1]

        # the same sweep of random selections, one job at a time and by default (in parallel)
        common = ["selector=random", f"k={k}", f"train.steps={steps}", f"seed=range({n_runs})"]
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/seq.db"
        seq_wall = sweep(["-m", "hydra/launcher=basic", *common], env, tmp)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/par.db"
        par_wall = sweep(["-m", *common], env, tmp)
        par = runs_of(env["MLFLOW_TRACKING_URI"])
        par = par[par["tags.kind"] == "train"]
        assert (par["status"] == "FINISHED").sum() == n_runs

        # a cached one-step run: store, MNIST checks and embedding all there already
        one = ["selector=random", "k=100", "train.steps=1"]
        one_step = float(np.median([sweep(one, env, tmp) for _ in range(1 if tiny else 3)]))
    return {
        "cold_run_wall_seconds": cold_wall,
        "cold_overhead_seconds": cold_wall - float(cold["metrics.train_seconds"]),
        "one_step_run_wall_seconds": one_step,
        "parallel_seconds_per_step": float(np.median(par["metrics.train_seconds"])) / steps,
        "warm_overhead_seconds_median": float(np.median(gaps[1:])),  # the first job parses MNIST
        "sweep_runs": n_runs,
        "sweep_sequential_seconds": seq_wall,
        "sweep_default_seconds": par_wall,
        "default_jobs": parallel_jobs(0, 2.5),
        "parallel_speedup": seq_wall / par_wall,
    }


def experiment_jobs(name: str) -> list[list[str]]:
    """Every job's overrides of a named experiment (conf/experiment/NAME.yaml), as its sweep runs."""
    grids = OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml").hydra.sweeper.grids
    return [[*job, f"+experiment={name}"] for job in expand(OmegaConf.to_container(grids), [])]


def job_steps(name: str) -> list[int]:
    """Each job's training steps (its regime's, or its own train.steps), from one composed config:
    composing each of a frontier's 565 jobs takes minutes. A job's steps depend only on the
    training-set size (k, the selector being `full`, the validation split) and train.* keys, so
    those overrides are applied to a copy of the experiment's config and the rest left out."""
    base = config([f"+experiment={name}"])
    steps = []
    for job in experiment_jobs(name):
        cfg = copy.deepcopy(base)
        for override in job:
            key, value = override.split("=", 1)
            key = "selector.name" if key == "selector" else key
            if key in ("k", "selector.name") or key.startswith(("train.", "data.")):
                OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
        steps.append(cfg.train.steps)
    return steps


def projected_wall(name: str, sweep_result: dict, jobs_at_once: int | None = None) -> dict:
    """The sweep's wall time projected from the default launcher's sample: each run costs the
    sample's per-run overhead plus its own steps (its regime's) at the sample's seconds per step."""
    jobs_at_once = jobs_at_once or sweep_result.get("default_jobs", 2)
    s_step = sweep_result["parallel_seconds_per_step"]
    sample = sweep_result.get("sweep_default_seconds", sweep_result.get("sweep_parallel_2_jobs_seconds"))
    slot = sample * jobs_at_once / sweep_result["sweep_runs"]
    overhead = slot - s_step * sweep_result["sample_steps"]
    steps = job_steps(name)
    total = sum(overhead + s_step * n for n in steps) / jobs_at_once
    return {
        "experiment": name,
        "jobs": jobs_at_once,
        "runs": len(steps),
        "steps": int(sum(steps)),
        "minutes": total / 60,
        "overhead_seconds": overhead,
        "seconds_per_step": s_step,
    }
