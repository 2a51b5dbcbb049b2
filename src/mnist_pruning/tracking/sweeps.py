"""A sweep in the store: its parent run, opened before any job and closed FAILED if a child
failed; runs whose process died marked KILLED; and the finished run `resume` skips to."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_pruning.tracking.identity import HOST, git_commit
from mnist_pruning.tracking.store import TrackingError, ensure_experiment

log = logging.getLogger(__name__)


class StoreCallback(Callback):
    """Before any job: create the MLflow store and experiment once, in the launching process,
    and open the sweep's parent run, whose children the jobs become (found by the sweep
    directory, so this works with any launcher). At the end: close the parent FINISHED, or
    FAILED with the count of failed children, and exit non-zero if any child failed (jobs
    record failures rather than raise)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        m = config.mlflow
        try:
            exp_id = ensure_experiment(m.tracking_uri, m.experiment_name, m.artifact_root)
        except TrackingError as e:
            print(f"Error: {e}", file=sys.stderr)  # one line, before any job starts
            raise SystemExit(2) from None
        log.info("MLflow experiment %s (id %s) at %s", m.experiment_name, exp_id, m.tracking_uri)
        close_orphans(m.tracking_uri, exp_id)
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        parent = open_sweep(m.tracking_uri, exp_id, str(config.hydra.sweep.dir), overrides)
        log.info("sweep parent run %s", parent)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        m = config.mlflow
        failed, total = close_sweep(m.tracking_uri, m.experiment_name, str(config.hydra.sweep.dir))
        if failed:
            names = ", ".join(f"{r['name']} ({r['error']})" for r in failed[:5])
            more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
            log.error("%d of %d runs of this sweep failed: %s%s", len(failed), total, names, more)
            raise SystemExit(1)


SWEEP_TAG = "sweep"  # tags.kind of a sweep's parent run


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def open_sweep(tracking_uri: str, experiment_id: str, sweep_dir: str, overrides: list[str]) -> str:
    """The parent run of a sweep, named after its directory and tagged with its overrides."""
    from mlflow.tracking import MlflowClient

    tags = {
        "kind": SWEEP_TAG,
        "sweep": sweep_dir,
        "overrides": " ".join(overrides)[:5000],
        "git_commit": git_commit(),
        "host": HOST,
        "pid": str(os.getpid()),
    }
    return MlflowClient(tracking_uri).create_run(experiment_id, run_name=sweep_dir, tags=tags).info.run_id


def newest_run(tracking_uri: str, experiment_id: str, filter_string: str) -> Any | None:
    """The most recently started run matching an MLflow search filter, if any."""
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(tracking_uri).search_runs(
        [experiment_id], filter_string, order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0] if runs else None


def sweep_parent(tracking_uri: str, experiment_id: str, sweep_dir: str) -> str | None:
    """The run id of the newest parent run of this sweep directory, if any."""
    query = f"tags.kind = '{SWEEP_TAG}' and tags.sweep = '{_quote(sweep_dir)}'"
    run = newest_run(tracking_uri, experiment_id, query)
    return run.info.run_id if run else None


def children(tracking_uri: str, experiment_id: str, parent_id: str) -> list[dict[str, str]]:
    """Name, status and error of every child run of a sweep's parent."""
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(tracking_uri).search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=50000
    )
    return [
        {"name": r.info.run_name, "status": r.info.status, "error": r.data.tags.get("error", "")}
        for r in runs
    ]


def close_sweep(tracking_uri: str, experiment_name: str, sweep_dir: str) -> tuple[list[dict[str, str]], int]:
    """End the sweep's parent run: FAILED with the count of failed children, else FINISHED.
    Returns the failed children and the number of children."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name)
    parent = sweep_parent(tracking_uri, exp.experiment_id, sweep_dir) if exp else None
    if parent is None:
        return [], 0
    runs = children(tracking_uri, exp.experiment_id, parent)
    failed = [r for r in runs if r["status"] != "FINISHED"]
    client.set_tag(parent, "children", str(len(runs)))
    client.set_tag(parent, "failed_children", str(len(failed)))
    client.set_terminated(parent, "FAILED" if failed else "FINISHED")
    return failed, len(runs)


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process of this project (a reused pid of another program is not)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return b"mnist_pruning" in cmdline or b"joblib" in cmdline or b"submitit" in cmdline


def close_orphans(tracking_uri: str, experiment_id: str) -> int:
    """Mark KILLED the RUNNING runs of this host whose process is gone (killed mid-training), so
    they are not left RUNNING forever. Runs of other hosts are left alone; the report ignores
    every run that is not FINISHED and says how many it left out."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=50000)
    closed = 0
    for run in running:
        tags = run.data.tags
        if tags.get("host") != HOST or not tags.get("pid", "").isdigit():
            continue
        pid = int(tags["pid"])
        if pid != os.getpid() and not _alive(pid):
            client.set_tag(run.info.run_id, "error", f"process {pid} on {HOST} ended without closing the run")
            client.set_terminated(run.info.run_id, "KILLED")
            closed += 1
    if closed:
        log.warning("marked %d orphaned RUNNING runs KILLED (their process was gone)", closed)
    return closed


def finished_run(tracking_uri: str, experiment_id: str, cfg_hash: str) -> Any | None:
    """The newest FINISHED run of this setting + seed, if any (for resume)."""
    query = f"tags.config_hash = '{cfg_hash}' and attributes.status = 'FINISHED'"
    return newest_run(tracking_uri, experiment_id, query)
