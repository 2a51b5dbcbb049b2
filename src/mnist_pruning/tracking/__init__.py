"""MLflow: the store, the experiment, the sweeps, and the life cycle of one run.

`identity` (what a run is: params, config hash, name, commit) -> `store` (created once, under a
lock) -> `sweeps` (parent runs, orphans, resume) -> `runs` (one run, closed with its status).
"""

from mnist_pruning.tracking.identity import (
    HOST,
    LATER_KEYS,
    NON_SEMANTIC_KEYS,
    TABLE_KEYS,
    clusters_rule,
    config_hash,
    flatten,
    git_commit,
    run_name,
    run_params,
)
from mnist_pruning.tracking.runs import (
    SUBSET_TAG,
    cause_of,
    interrupted,
    log_search,
    log_selection,
    mlflow_run,
    one_line,
    record_failure,
)
from mnist_pruning.tracking.store import TrackingError, check_reachable, ensure_experiment, ready_store
from mnist_pruning.tracking.sweeps import (
    SWEEP_TAG,
    StoreCallback,
    children,
    close_orphans,
    close_sweep,
    finished_run,
    newest_run,
    open_sweep,
    sweep_parent,
)

__all__ = [
    "HOST",
    "LATER_KEYS",
    "NON_SEMANTIC_KEYS",
    "SUBSET_TAG",
    "SWEEP_TAG",
    "TABLE_KEYS",
    "StoreCallback",
    "TrackingError",
    "cause_of",
    "check_reachable",
    "children",
    "close_orphans",
    "close_sweep",
    "clusters_rule",
    "config_hash",
    "ensure_experiment",
    "finished_run",
    "flatten",
    "run_params",
    "git_commit",
    "log_search",
    "log_selection",
    "mlflow_run",
    "newest_run",
    "interrupted",
    "one_line",
    "open_sweep",
    "ready_store",
    "record_failure",
    "run_name",
    "sweep_parent",
]
