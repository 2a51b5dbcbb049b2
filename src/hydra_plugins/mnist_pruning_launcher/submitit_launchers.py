"""submitit's local and SLURM launchers with the sweep's progress (the cluster extra)."""

from collections.abc import Sequence
from typing import Any

from hydra_plugins.mnist_pruning_launcher.parallel_launcher import watched

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:  # the cluster extra is not installed: hydra/launcher=local says so in one line
    LocalLauncher = SlurmLauncher = None


def _parallel(params: Any, jobs: int) -> int:
    limit = params.get("array_parallelism") or jobs
    return min(int(limit), jobs)


if LocalLauncher is not None:

    class WatchedLocalLauncher(LocalLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            parent = super().launch
            n = _parallel(self.params, len(job_overrides))
            return watched(lambda: parent(job_overrides, initial_job_idx), self.config, job_overrides, n)

    class WatchedSlurmLauncher(SlurmLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            parent = super().launch
            n = _parallel(self.params, len(job_overrides))
            return watched(lambda: parent(job_overrides, initial_job_idx), self.config, job_overrides, n)
