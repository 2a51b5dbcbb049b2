"""Multiruns use the machine by default, and say how far along they are."""

import re

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import run_train, search_runs
from mnist_pruning import progress
from mnist_pruning.config import CONF_DIR

FAST = ["train.steps=5", "train.warmup_steps=1"]


def test_the_default_launcher_is_parallel_and_bounded_by_cores_and_memory(monkeypatch):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["k=20"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("parallel_launcher.ParallelLauncher") and launcher.n_jobs == 0
    monkeypatch.setattr(progress, "cores", lambda: 8)
    monkeypatch.setattr(progress, "memory_gib", lambda: 6.0)  # (6 - 1) // 2.5: two jobs fit
    params = {k: v for k, v in launcher.items() if k != "_target_"}
    assert instantiate({"_target_": launcher._target_, **params}).joblib["n_jobs"] == 2
    monkeypatch.setattr(progress, "memory_gib", lambda: 64.0)
    assert progress.parallel_jobs(0, 2.5) == 8  # then the cores bound it
    assert progress.parallel_jobs(3, 2.5) == 3 and progress.parallel_jobs(-1, 2.5) == 8


def test_progress_line_counts_and_time_left():
    ended = [
        {"status": "done", "seconds": 60.0},
        {"status": "failed", "seconds": 2.0},
        {"status": "skipped", "seconds": 1.0},
    ]
    line = progress.progress_line(10, ended, 360.0, 2)
    assert line == "3/10 done, 1 failed, elapsed 6 min, about 2 min left"  # 31 s x 7 left / 2
    assert progress.progress_line(3, ended, 90.0, 2) == "3/3 done, 1 failed, elapsed 2 min"
    assert progress.progress_line(4, ended[2:], 5.0, 2).endswith("time left not known yet")


def test_a_sweep_reports_its_progress_counting_failed_and_resumed_jobs(tmp_path, run_env):
    """4 jobs, one of them resumed (run before) and one failing: the last progress line says
    4/4 done, 1 failed; the jobs ran under the parallel launcher."""
    assert run_train(["-m", "selector=random", "k=20", "seed=0", *FAST], tmp_path, run_env).returncode == 0
    args = ["-m", "selector=random", "k=20,30,0,40", "seed=0", "resume=true", *FAST]
    res = run_train(args, tmp_path, run_env)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    lines = [m.group(0) for m in re.finditer(r"\d+/\d+ done, \d+ failed, elapsed [^\n]*", out)]
    assert lines[-1].startswith("4/4 done, 1 failed, elapsed ")
    counts = [int(line.split("/")[0]) for line in lines]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert "Joblib.Parallel(n_jobs=" in out


def test_the_basic_launcher_still_runs_jobs_one_after_another(tmp_path, run_env):
    args = ["-m", "hydra/launcher=basic", "selector=random", "k=20", "seed=0,1,2", *FAST]
    res = run_train(args, tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    runs = search_runs(tmp_path).sort_values("start_time")
    assert runs["tags.job_num"].tolist() == ["0", "1", "2"]
    starts, ends = runs["start_time"].to_numpy(), runs["end_time"].to_numpy()
    assert np.all(ends[:-1] <= starts[1:])  # never two at once
    assert "Joblib" not in res.stdout + res.stderr
