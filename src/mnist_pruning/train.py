"""The Hydra entrypoint: compose -> data -> embedding -> selection -> training -> tracking.

python -m mnist_pruning.train selector=nearest k=600 seed=0
python -m mnist_pruning.train -m selector=nearest,furthest,random k=600,1200 seed=0,1,2,3,4
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_pruning import tracking
from mnist_pruning.cache import Arrays, Cache, array_digest
from mnist_pruning.cluster import VERSION as KMEANS_VERSION
from mnist_pruning.cluster import KMeansFit, kmeans
from mnist_pruning.config import CONF_DIR, ConfigError, fit_seed, register_configs
from mnist_pruning.data import DataError, Mnist, load_mnist, raw_dir, split_pool
from mnist_pruning.embed import POOLED, SEEDED, SUPERVISED, embed
from mnist_pruning.progress import mark_job, parallel_jobs
from mnist_pruning.proxy import ProxySettings, make_proxy, proxy_seeds
from mnist_pruning.scores import ScoreSettings, fit_models, models_from_arrays, models_to_arrays, pool_scores
from mnist_pruning.selectors import EMBEDDING_FREE, SCORED_SELECTORS, Options, SearchOptions, select
from mnist_pruning.training import Recipe, normalize, resolve_device, train
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


def embedding_of(cfg: DictConfig, data: Mnist, pool: np.ndarray, cache: Cache) -> np.ndarray:
    """The embedding of all 60k training images (never the test images), cached; a supervised
    one (classifier) is fitted on the selection pool's images and labels only. A learned fit
    follows the run's seed unless `embedding.seed` fixes it; pca and pixels are one fit."""
    settings = OmegaConf.to_container(cfg.embedding, resolve=True)
    if cfg.embedding.name in SEEDED:
        settings["seed"] = fit_seed(settings["seed"], cfg.seed)
    else:
        del settings["seed"]
    key = {"data": data.fingerprint, **settings}
    fit: dict = {}
    if cfg.embedding.name in POOLED:
        key["rows"] = array_digest(pool)
        fit = (
            {"labels": data.train_labels.numpy(), "rows": pool}
            if cfg.embedding.name in SUPERVISED
            else {"rows": pool}
        )
    arrays = cache.get("embedding", key, lambda: {"x": embed(data.train_flat(), **settings, **fit)})
    return arrays["x"]


def scores_of(cfg: DictConfig, data: Mnist, pool: np.ndarray, cache: Cache, kind: str) -> np.ndarray:
    """The selector's per-image scores of the pool (el2n, forgetting), from trainings on the pool
    only, cached: every run with the same pool, score settings and seed shares them (the run's
    seed unless `selector.score.seed` fixes one)."""
    settings = OmegaConf.to_container(cfg.selector.score, resolve=True)
    settings = ScoreSettings(**{**settings, "seed": fit_seed(settings["seed"], cfg.seed)})
    key = {"data": data.fingerprint, "kind": kind, "rows": array_digest(pool), **settings.__dict__}

    def trained(x: torch.Tensor, y: torch.Tensor) -> list:
        """The score trainings every score but forgetting is read from, cached once for all."""
        parts = {k: v for k, v in key.items() if k != "kind"}
        return models_from_arrays(
            cache.get("score-models", parts, lambda: models_to_arrays(fit_models(x, y, settings)))
        )

    def compute() -> Arrays:
        s = pool_scores(
            kind, data.train_images, data.train_labels, pool, settings, cfg.data.mean, cfg.data.std, trained
        )
        return {"scores": s}

    return cache.get("scores", key, compute)["scores"]


def cached_kmeans(cache: Cache, max_iter: int, tol: float, x: np.ndarray, n: int, seed: int) -> KMeansFit:
    """k-means keyed by the points themselves: nearest, furthest and cluster_random share fits."""
    parts = {"x": array_digest(x), "clusters": n, "seed": seed, "max_iter": max_iter, "tol": tol}
    parts["algorithm"] = KMEANS_VERSION

    def fit() -> Arrays:
        f = kmeans(x, n, seed, max_iter=max_iter, tol=tol)
        return {"centroids": f.centroids, "assignments": f.assignments, "distances": f.distances}

    a = cache.get("kmeans", parts, fit)
    inertia = float(np.sum(a["distances"].astype(np.float64) ** 2))
    return KMeansFit(a["centroids"], a["assignments"], a["distances"], inertia)


def threads_per_job(threads: int | None, hydra_cfg: DictConfig) -> int:
    """`threads` if set; else the CPUs a submitit job was given, or the cores shared out over the
    jobs joblib runs at once (n_jobs -1 meaning one per core; 0, the parallel launcher's default,
    as many as cores and memory allow), so that jobs x threads <= cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads:
        return threads
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


def recipe_of(cfg: DictConfig) -> Recipe:
    t = cfg.train
    return Recipe(**{f: t[f] for f in Recipe.__dataclass_fields__})


def search_split(cfg: DictConfig, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pool, holdout): a search's held-out split, carved out of the selection pool before
    anything else sees it (in random order, so its first `eval_size` rows are a random sample);
    the whole pool and no holdout for every other selector."""
    if cfg.selector.name != "search":
        return pool, np.empty(0, dtype=np.int64)
    s = cfg.selector.search
    perm = np.random.default_rng(fit_seed(s.holdout_seed, cfg.seed)).permutation(len(pool))
    return np.sort(pool[perm[s.holdout :]]), pool[perm[: s.holdout]]


SEARCH_VERSION = 1  # bump when the search's rule changes: cached searches are then redone


def search_options(
    cfg: DictConfig, data: Mnist, pool: np.ndarray, holdout: np.ndarray, path: list, device: torch.device
) -> SearchOptions:
    """The search's settings and its proxy, built here (the selector knows no training loop):
    short trainings of the run's recipe on the pool rows of a candidate, scored on the holdout."""
    s = cfg.selector.search
    settings = ProxySettings(**OmegaConf.to_container(s.proxy, resolve=True))
    proxy, _ = make_proxy(
        data.train_images,
        data.train_labels,
        pool,
        holdout,
        recipe_of(cfg),
        settings,
        proxy_seeds(cfg.seed, settings.seeds),
        cfg.data.mean,
        cfg.data.std,
        device,
    )
    return SearchOptions(
        proxy=proxy,
        draws=s.draws,
        evaluations=s.evaluations,
        candidates=s.candidates,
        width=s.width,
        trace=lambda n, score, kept: path.append((n, score, float(kept))),
    )


def subset_of(
    cfg: DictConfig,
    data: Mnist,
    pool: np.ndarray,
    cache: Cache,
    holdout: np.ndarray | None = None,
    device: torch.device | None = None,
    found: dict | None = None,
) -> np.ndarray:
    """The kept indices into the training set: embedding or scores of the pool, then the selector;
    everything random behind them follows `cfg.seed` (unless the config fixes a fit's seed). A
    search also gets its proxy on `holdout` and puts its `path` (rows of evaluation, score, kept)
    and `seconds` into `found`; a finished search is cached by everything it depends on."""
    labels = data.train_labels.numpy()
    sel = cfg.selector
    rule = sel.base if sel.name == "search" else sel.name  # what ranks images: a search's base
    kind = {"uncertainty": sel.get("measure"), "ccs": sel.get("difficulty")}.get(rule) or rule
    # a selector that ignores the embedding is given none: a random run trains no autoencoder
    free = sel.name in EMBEDDING_FREE
    x = np.empty((len(labels), 0), np.float32) if free else embedding_of(cfg, data, pool, cache)
    options = Options(
        clusters=sel.get("clusters"),
        balance=sel.balance,
        neighbors=sel.neighbors,
        easy_fraction=sel.easy_fraction,
        keep=sel.keep,
        scores=scores_of(cfg, data, pool, cache, kind) if rule in SCORED_SELECTORS else None,
        prune_hard=sel.get("prune_hard", 0.1),
        strata=sel.get("strata", 50),
        delta=sel.get("delta"),
        purity=sel.get("purity", 0.95),
        kmeans=partial(cached_kmeans, cache, cfg.kmeans.max_iter, cfg.kmeans.tol),
        base=sel.get("base") or "herding",
    )
    if sel.name != "search":
        return pool[select(sel.name, x[pool], labels[pool], cfg.k, cfg.seed, options)]

    path: list[tuple[int, float, float]] = []
    device = device or torch.device("cpu")
    holdout = np.empty(0, dtype=np.int64) if holdout is None else holdout

    def run_search() -> Arrays:
        start = time.perf_counter()
        opts = replace(options, search=search_options(cfg, data, pool, holdout, path, device))
        picked = select(sel.name, x[pool], labels[pool], cfg.k, cfg.seed, opts)
        seconds = np.array([time.perf_counter() - start])
        return {"indices": pool[picked], "path": np.asarray(path, float).reshape(-1, 3), "seconds": seconds}

    key = {
        "data": data.fingerprint,
        "pool": array_digest(pool),
        "holdout": array_digest(holdout),
        "x": array_digest(x[pool]),
        "scores": None if options.scores is None else array_digest(options.scores),
        "k": cfg.k,
        "seed": cfg.seed,
        "selector": OmegaConf.to_container(sel, resolve=True),
        "recipe": recipe_of(cfg).__dict__,
        "version": SEARCH_VERSION,
    }
    done = cache.get("search", key, run_search)
    if found is not None:
        found.update(path=done["path"], seconds=float(done["seconds"][0]))
    return done["indices"]


def run(cfg: DictConfig, experiment_id: str, tags: dict[str, str]) -> float:
    """One experiment: select k training images, train LeNet-5 on them, log everything."""
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
            tracking.log_search(found["path"], found["seconds"], cfg.selector.search.draws)
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
        if cfg.resume:
            validate(cfg)  # the config hash resolves every value: check them first
            done = tracking.finished_run(m.tracking_uri, experiment_id, tracking.config_hash(cfg))
            if done is not None:
                log.info("resume: %s already FINISHED as run %s", tracking.run_name(cfg), done.info.run_id)
                outcome["status"] = "skipped"
                return done.data.metrics.get("test_acc", done.data.metrics.get("val_acc"))
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
