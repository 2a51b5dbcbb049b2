"""MLflow: the store, the experiment, and the life cycle of one run.

The SQLite store and the experiment are created once, before any job starts (`StoreCallback` on
multirun start), because parallel workers that create a fresh SQLite file at the same time
corrupt its schema.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_pruning.selectors import SCORED_SELECTORS

log = logging.getLogger(__name__)

# keys that say where or how a run executes, not what it computes: left out of the config hash
NON_SEMANTIC_KEYS = (
    "mlflow",
    "cache",
    "data.root",
    "data.download",
    "data.verify",
    "threads",
    "device",
    "train.log_every",
    "train.eval_every",
    "train.eval_batch_size",
    "resume",
)
# tables a run picks its values from: the picked values are logged and hashed, not the tables
TABLE_KEYS = ("train.regimes", "train.regime_bounds", "tune")
HOST = socket.gethostname()


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or opened; one line, with the URI."""


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}, over the resolved config, without the
    tables (TABLE_KEYS) whose picked values are keys of their own."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if _under(name, TABLE_KEYS):
            continue
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_hash(cfg: DictConfig) -> str:
    """Identifies a setting + seed: equal for two runs that must give the same result."""
    flat = {k: v for k, v in flatten(cfg).items() if not _under(k, NON_SEMANTIC_KEYS)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_name(cfg: DictConfig) -> str:
    """Say what the run is, e.g. nearest-k600-pca50-s0 or furthest-k600-c50-bal-ae64-s1."""
    sel = cfg.selector
    parts = [f"{sel.name}-{sel.keep}" if sel.name in SCORED_SELECTORS else sel.name]
    if sel.name != "full":
        parts.append(f"k{cfg.k}")
    if sel.get("clusters") is not None and sel.clusters != cfg.k:
        parts.append(f"c{sel.clusters}")
    if sel.get("balance"):
        parts.append("bal")
    emb = cfg.embedding
    short = {"autoencoder": "ae"}.get(emb.name, emb.name)
    parts.append(short if emb.dims is None else f"{short}{emb.dims}")
    parts.append(f"s{cfg.seed}")
    return "-".join(parts)


def clusters_rule(cfg: DictConfig) -> str:
    """How the cluster count follows k, for the report's curves: 'k', 'k/2' (hybrid's default),
    a fixed number, or '-' for a selector without clusters."""
    raw = OmegaConf.to_container(cfg.selector, resolve=False).get("clusters")
    if raw is None:
        return "-"
    text = str(raw).replace(" ", "")
    if text == "${k}":
        return "k"
    if text.startswith("${per_cluster:${k},") and text.endswith("}"):
        return f"k/{text.removeprefix('${per_cluster:${k},').removesuffix('}')}"
    return str(cfg.selector.clusters)


def git_commit() -> str:
    """The commit of this package's source tree, with '-dirty' if it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any training, when the tracking server does not answer."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as r:
                r.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}): start it, or set "
                f"MLFLOW_TRACKING_URI / mlflow.tracking_uri to a reachable one"
            ) from e
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.exists():
            raise TrackingError(f"MLflow store {uri}: folder {path.parent} does not exist")


_READY: set[str] = set()


def ready_store(tracking_uri: str) -> None:
    """Open a SQLite store first under one file lock beside it (`mlflow.db.lock`), so that the
    project's processes never run MLflow's schema creation at once: two processes opening a
    fresh path together both migrate it, and the store is corrupt. Whoever comes second waits,
    then finds the schema complete. Once per process and store; other stores need nothing."""
    if tracking_uri in _READY:
        return
    if tracking_uri.startswith("sqlite:///"):
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        path = Path(tracking_uri.removeprefix("sqlite:///"))
        with FileLock(f"{path}.lock"):
            MlflowClient(tracking_uri).search_experiments(max_results=1)
    _READY.add(tracking_uri)


def ensure_experiment(tracking_uri: str, experiment_name: str, artifact_root: str) -> str:
    """Create the store and the experiment if they are new; return the experiment id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    check_reachable(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        ready_store(tracking_uri)  # before any client: MlflowClient() opens the store at once
        client = MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(experiment_name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if not tracking_uri.startswith(("http://", "https://")):
            location = Path(artifact_root).expanduser().resolve().as_uri()
        return client.create_experiment(experiment_name, artifact_location=location)
    except TrackingError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrackingError(f"MLflow store {tracking_uri} cannot be used: {first}") from e


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


def one_line(error: BaseException) -> str:
    text = str(error).strip().replace("\n", " ")
    return f"{type(error).__name__}: {text}"[:500]


@contextmanager
def mlflow_run(cfg: DictConfig, experiment_id: str, tags: dict[str, str]) -> Iterator[Any]:
    """One MLflow run with the resolved config as params; FAILED or KILLED if the body raises."""
    import mlflow

    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name(cfg))
    try:
        params = flatten(cfg)
        params.update(selector=cfg.selector.name, embedding=cfg.embedding.name)
        mlflow.log_params({k: "None" if v is None else v for k, v in params.items()})
        mlflow.set_tags(
            {
                **tags,
                "kind": "train",
                "config_hash": config_hash(cfg),
                "clusters": clusters_rule(cfg),
                "git_commit": git_commit(),
                "host": HOST,
                "pid": str(os.getpid()),
            }
        )
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        yield run
    except KeyboardInterrupt:
        mlflow.set_tag("error", "KeyboardInterrupt")
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as e:
        mlflow.set_tag("error", one_line(e))
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def log_selection(
    indices: np.ndarray, images: np.ndarray, labels: np.ndarray, title: str, source: str
) -> None:
    """The kept subset as an MLflow dataset (context `train`) whose digest is that of its sorted
    indices, so two runs that trained on the same images show the same dataset in the UI; and
    selected_indices.npy (int64 indices into the 60k training set) and selected_images.png, a
    montage of what was kept, so selectors can be compared side by side."""
    import mlflow

    from mnist_pruning.cache import array_digest
    from mnist_pruning.figures import save_montage

    kept = np.sort(np.asarray(indices, dtype=np.int64))
    with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways" (all local)
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(
            kept,
            source=source,
            targets=np.asarray(labels)[kept],
            name=f"mnist-train-{len(kept)}",
            digest=array_digest(kept)[:16],
        )
    for attempt in range(3):
        try:
            mlflow.log_input(dataset, context="train")
            break
        except mlflow.exceptions.MlflowException:
            # two jobs logging the same new subset at once race on MLflow's unique dataset row;
            # the loser finds it on a second try
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "selected_indices.npy"
        np.save(path, np.asarray(indices, dtype=np.int64))
        save_montage(Path(tmp) / "selected_images.png", images, labels, indices, title)
        mlflow.log_artifacts(tmp)
