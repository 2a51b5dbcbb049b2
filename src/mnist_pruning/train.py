"""The Hydra entrypoint: compose -> data -> embedding -> selection -> training -> tracking.

python -m mnist_pruning.train selector=nearest k=600 seed=0
python -m mnist_pruning.train -m selector=nearest,furthest,random k=600,1200 seed=0,1,2,3,4
"""

from __future__ import annotations

import contextlib
import logging
import resource
import signal
import sys
import threading
import time
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_pruning import progress, tracking
from mnist_pruning.cache import Cache
from mnist_pruning.config import CONF_DIR, ConfigError, register_configs
from mnist_pruning.data import DataError, load_mnist, raw_dir, split_pool
from mnist_pruning.model import build_model
from mnist_pruning.progress import mark_job, parallel_jobs
from mnist_pruning.subset import recipe_of, search_split, subset_of
from mnist_pruning.training import normalize, resolve_device, train
from mnist_pruning.validation import check_choices, user_conf_dirs, validate

log = logging.getLogger(__name__)
register_configs()

# errors whose message is the whole story: shown as one line, no traceback
USER_ERRORS = (ConfigError, DataError, tracking.TrackingError)

# set by SIGTERM: the interrupt the handler raises is lost when it lands in a weakref callback
# or a __del__ (Python prints "Exception ignored" and goes on), so training also polls this
STOP = threading.Event()


@lru_cache(maxsize=4)
def get_cache(root: str, enabled: bool) -> Cache:
    """One cache per process, so a sequential multirun also reuses what it holds in memory."""
    return Cache(root, enabled)


def threads_per_job(threads: int | None, hydra_cfg: DictConfig) -> int:
    """`threads` if set. A single run (Hydra's RUN mode: no launcher starts it, so none runs
    beside it) gets every core, although the parallel launcher's config is composed there too.
    A multirun's job gets the CPUs submitit gave it, or the cores shared out over the jobs joblib
    runs at once (n_jobs -1 meaning one per core; 0, the parallel launcher's default, as many as
    cores and memory allow), so that jobs x threads <= cores."""
    cores = progress.cores()
    if threads:
        return threads
    if OmegaConf.select(hydra_cfg, "mode", default=None) != RunMode.MULTIRUN:  # None: compose's RUN
        return cores
    cpus = OmegaConf.select(hydra_cfg, "launcher.cpus_per_task", default=None)
    if cpus:
        return min(cpus, cores)
    n_jobs = OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=None)
    if n_jobs is None:
        return cores
    memory = OmegaConf.select(hydra_cfg, "launcher.job_memory_gib", default=None)
    if n_jobs == 0 and memory is None:  # joblib's own 0: not a bound
        return cores
    return max(1, cores // parallel_jobs(n_jobs, memory or 0))


def run(cfg: DictConfig, experiment_id: str, tags: dict[str, str]) -> float:
    """One experiment: select k training images, train the model (LeNet-5) on them, log everything."""
    import mlflow

    with tracking.mlflow_run(cfg, experiment_id, tags, check=validate):
        torch.set_num_threads(threads_per_job(cfg.threads, HydraConfig.get()))
        mlflow.set_tag("torch_threads", str(torch.get_num_threads()))
        device = resolve_device(cfg.device)
        stamps = Path(cfg.cache.dir) / "mnist-md5.json" if cfg.cache.enabled else None
        data = load_mnist(cfg.data.root, cfg.data.download, cfg.data.verify, stamp_file=stamps)
        cache = get_cache(cfg.cache.dir, cfg.cache.enabled)
        pool, val = split_pool(len(data.train_labels), cfg.data.validation_size, cfg.data.validation_seed)
        pool, holdout = search_split(cfg, pool)  # a search's own split, before anything sees the pool

        start = time.perf_counter()
        labels = data.train_labels.numpy()
        found: dict = {}
        indices = subset_of(cfg, data, pool, cache, holdout, device, found)
        select_seconds = time.perf_counter() - start
        tracking.log_selection(
            indices,
            data.train_images.numpy(),
            labels,
            f"{tracking.run_name(cfg)}: {len(indices)} images",
            source=str(raw_dir(cfg.data.root).resolve()),
        )
        mlflow.log_metrics({"train_size": len(indices), "select_seconds": select_seconds})
        if found:
            stages = {k: v for k, v in found.items() if k.startswith(("screen_", "shortlist_"))}
            tracking.log_search(found["path"], found["seconds"], cfg.selector.search.draws, stages)
        log.info("selected %d images in %.2fs", len(indices), select_seconds)

        mean, std = cfg.data.mean, cfg.data.std
        # a tuning run (a validation split) never sees the test set, so it cannot be tuned on it
        held_out = "val" if len(val) else "test"
        images, targets = (
            (data.train_images[val], data.train_labels[val])
            if len(val)
            else (data.test_images, data.test_labels)
        )
        evals = {held_out: (normalize(images, mean, std), targets)}
        result = train(
            normalize(data.train_images[indices], mean, std),
            data.train_labels[indices],
            evals,
            recipe_of(cfg),
            cfg.seed,
            device,
            on_eval=lambda step, m: mlflow.log_metrics({f"curve_{k}": v for k, v in m.items()}, step=step),
            should_stop=STOP.is_set,
            model=partial(build_model, **OmegaConf.to_container(cfg.model, resolve=True)),
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        # the process's peak so far (a joblib worker's over its jobs): README's memory rule
        mlflow.log_metrics({**result.metrics, "train_seconds": result.train_seconds, "peak_rss_mib": peak})
        acc = result.metrics[f"{held_out}_acc"]
        log.info("%s: %s_acc %.4f", tracking.run_name(cfg), held_out, acc)
        return acc


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's or kill's) ends the run like Ctrl-C: recorded KILLED, not RUNNING."""

    def handler(signum: int, frame: object) -> None:
        STOP.set()
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, handler)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Single run: a bad input exits 2 with one line. In a sweep, a failing job is recorded as a
    FAILED child of the sweep's parent (even one that fails before its run could start) and the
    sweep goes on; `tracking.StoreCallback` makes the sweep exit non-zero."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    job = hc.job.num if multirun else 0
    tags = {
        "sweep": hc.sweep.dir if multirun else hc.run.dir,
        "job_num": str(job),
        "output_dir": hc.runtime.output_dir,
        "overrides": " ".join(hc.overrides.task)[:5000],  # what the job was, even if it fails at once
    }
    _stop_on_sigterm()
    started = time.perf_counter()
    outcome = {"status": "failed"}
    try:
        return _job(cfg, hc, multirun, job, tags, outcome)
    finally:
        if multirun:  # the launching process counts these for its progress line
            mark_job(hc.runtime.output_dir, outcome["status"], time.perf_counter() - started)


def finished_before(cfg: DictConfig, experiment_id: str) -> Any | None:
    """With resume=true, a FINISHED run of this exact setting + seed (not to be trained again);
    None otherwise."""
    if not cfg.resume:
        return None
    validate(cfg)  # the config hash resolves every value: check them first
    done = tracking.finished_run(cfg.mlflow.tracking_uri, experiment_id, tracking.config_hash(cfg))
    if done is not None:
        log.info("resume: %s already FINISHED as run %s", tracking.run_name(cfg), done.info.run_id)
    return done


def final_accuracy(run: Any) -> float | None:
    """A finished run's result: test accuracy, or validation accuracy for a tuning run."""
    return run.data.metrics.get("test_acc", run.data.metrics.get("val_acc"))


def _job(
    cfg: DictConfig, hc: DictConfig, multirun: bool, job: int, tags: dict, outcome: dict
) -> float | None:
    """The body of `main`; `outcome["status"]` says how it ended (done, skipped, failed)."""
    experiment_id = None
    try:
        if not multirun:  # a sweep records the error in a FAILED run instead
            validate(cfg)
        m = cfg.mlflow
        experiment_id = tracking.ensure_experiment(m.tracking_uri, m.experiment_name, m.artifact_root)
        if not multirun:  # a sweep does this once, before its jobs start
            tracking.close_orphans(m.tracking_uri, experiment_id)
        else:  # a child of the sweep's parent run (StoreCallback opened it)
            parent = tracking.sweep_parent(m.tracking_uri, experiment_id, hc.sweep.dir)
            if parent is not None:
                tags["mlflow.parentRunId"] = parent
        done = finished_before(cfg, experiment_id)
        if done is not None:
            outcome["status"] = "skipped"
            return final_accuracy(done)
    except Exception as e:  # before the run began: in a sweep, a FAILED run says so
        if multirun and experiment_id is not None:
            try:
                tracking.record_failure(cfg, experiment_id, tags, e)
            except Exception as store_error:  # the store itself failed: say both in the log
                log.error("job %s: its failure was not recorded: %s", job, tracking.one_line(store_error))
        return _failed(e, multirun, job)
    try:
        acc = run(cfg, experiment_id, tags)
        outcome["status"] = "done"
        return acc
    except Exception as e:  # the run is recorded FAILED with its error
        return _failed(e, multirun, job)


def _failed(error: Exception, multirun: bool, job: int) -> None:
    """A user error (a bad value, even one raised inside an interpolation) is one line, exit 2
    for a single run; anything else is raised in a single run, logged with its traceback in a
    sweep, which goes on."""
    cause = tracking.cause_of(error)
    if isinstance(cause, USER_ERRORS):
        log.error("%s", cause)
        if not multirun:
            sys.exit(2)
        return None
    if not multirun:
        raise error
    log.exception("job %s failed; the sweep goes on", job)
    return None


if __name__ == "__main__":
    # run the task from the importable module, not __main__, so that launchers which pickle it
    # for other processes (joblib, submitit) find it by name there
    from mnist_pruning.train import main as task

    try:
        check_choices(sys.argv[1:], extra_dirs=user_conf_dirs(sys.argv[1:]))
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    task()
