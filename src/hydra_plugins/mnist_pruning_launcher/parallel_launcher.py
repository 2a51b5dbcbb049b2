"""`hydra/launcher=parallel`, the default of every multirun: joblib's launcher with as many jobs
as the cores and the memory allow, and the sweep's progress with an end time.

Also the progress for submitit's launchers (`hydra/launcher=local`, `slurm`, when the cluster
extra is installed): the same launchers, watched the same way.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

# no `from __future__ import annotations` here: Hydra loads plugins outside sys.modules


@dataclass
class ParallelLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.mnist_pruning_launcher.parallel_launcher.ParallelLauncher"
    n_jobs: int = 0  # 0: as many as the cores and the memory allow; -1: one per core; N: N
    job_memory_gib: float = 2.5  # a job's peak memory, with headroom (README: the rule)


ConfigStore.instance().store(
    group="hydra/launcher", name="parallel", node=ParallelLauncherConf, provider="mnist_pruning"
)


def watched(launch: Any, config: Any, job_overrides: Sequence[Sequence[str]], parallel: int) -> Any:
    """Run `launch()` while a Watcher reports the sweep's progress from the jobs' markers."""
    from mnist_pruning.progress import Watcher

    with Watcher(str(config.hydra.sweep.dir), len(job_overrides), parallel):
        return launch()


class ParallelLauncher(JoblibLauncher):
    def __init__(self, job_memory_gib: float = 2.5, **kwargs: Any) -> None:
        from mnist_pruning.progress import parallel_jobs

        kwargs["n_jobs"] = parallel_jobs(int(kwargs.get("n_jobs", 0)), job_memory_gib)
        super().__init__(**kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        # a job shares the cores among the jobs that run at once, which are fewer than n_jobs in
        # a sweep of fewer jobs: each job is told (its hydra.launcher.n_jobs), so that a sweep of
        # one job trains on every core as a single run does (mnist_pruning.train.threads_per_job)
        at_once = max(1, min(self.joblib["n_jobs"], len(job_overrides)))
        jobs = [[*overrides, f"hydra.launcher.n_jobs={at_once}"] for overrides in job_overrides]
        parent = super().launch
        return watched(lambda: parent(jobs, initial_job_idx), self.config, jobs, at_once)
