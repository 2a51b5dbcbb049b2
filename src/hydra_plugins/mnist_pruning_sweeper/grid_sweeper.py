"""`hydra/sweeper=grid`: the union of several cartesian grids, run as one sweep.

A study grid is rarely one product: random selection has no clusters, and 500 clusters cannot
each give one of 60 images. Hydra's basic sweeper only takes one product, so the experiment
files list several (`hydra.sweeper.grids`); arguments given on the command line apply to every
grid and win over a grid's own value for the same key. Jobs that two grids share run once.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.mnist_pruning_sweeper.grid_sweeper.GridSweeper"
    # no `from __future__ import annotations` here: Hydra loads plugins outside sys.modules
    max_batch_size: Optional[int] = None  # noqa: UP045 (OmegaConf reads this annotation)
    grids: list[dict[str, str]] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf)


def expand(grids: list[dict[str, str]], arguments: list[str], parser: Any = None) -> list[list[str]]:
    """The jobs of a union of grids: each grid's product with `arguments` last (they win),
    duplicates dropped. Also used to count and cost an experiment's jobs (benchmarks/bench.py)."""
    parser = parser or OverridesParser.create()
    seen: set[tuple[str, ...]] = set()
    jobs = []
    for grid in grids or [{}]:
        params = [f"{k}={v}" for k, v in grid.items()] + list(arguments)
        (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(params), None)
        for job in batch:
            key = tuple(sorted(job))
            if key not in seen:
                seen.add(key)
                jobs.append(job)
    return jobs


class GridSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None, grids: Any = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=None)
        self.grids = [dict(g) for g in (grids or [])] or [{}]

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        """Takes the grids again from the config, unresolved: Hydra resolves a plugin's arguments
        when it builds it, which would turn a value such as `run-${seed}` into the primary
        config's seed for every job; left as written, each job resolves it against its own."""
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        grids = OmegaConf.select(config, "hydra.sweeper.grids")
        if grids is not None:
            self.grids = [dict(g) for g in OmegaConf.to_container(grids, resolve=False)] or [{}]

    def jobs(self, arguments: list[str]) -> list[list[str]]:
        """Every job's overrides: each grid's product, command line last, duplicates dropped."""
        loader = self.hydra_context.config_loader if self.hydra_context else None
        return expand(self.grids, arguments, OverridesParser.create(config_loader=loader))

    def sweep(self, arguments: list[str]) -> Any:
        self._jobs = self.jobs(arguments)
        return super().sweep([])  # the basic loop, over the jobs given by split_arguments below

    def split_arguments(self, overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:  # type: ignore[override]
        return list(BasicSweeper.split_overrides_to_chunks(self._jobs, max_batch_size))
