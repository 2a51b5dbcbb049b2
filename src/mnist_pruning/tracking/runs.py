"""The life cycle of one training run: params and tags in, FINISHED, FAILED or KILLED out, and
the subset it trained on as a dataset and artifacts."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mnist_pruning.tracking.identity import HOST, clusters_rule, config_hash, git_commit, run_name, run_params

SUBSET_TAG = "subset"  # the digest of the sorted kept indices


def cause_of(error: BaseException) -> BaseException:
    """The error behind OmegaConf's wrapping: a resolver that raises (the regime of a size no
    regime covers) comes out as an InterpolationResolutionError raised while handling the real
    one (OmegaConf drops `__cause__` unless OC_CAUSE is set, so follow the context too)."""
    from omegaconf.errors import OmegaConfBaseException

    seen: set[int] = set()
    while isinstance(error, OmegaConfBaseException) and id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return error


def one_line(error: BaseException) -> str:
    error = cause_of(error)
    text = str(error).strip().replace("\n", " ")
    return f"{type(error).__name__}: {text}"[:500]


def interrupted(error: BaseException) -> bool:
    """Whether `error` is an interrupt (Ctrl-C, or SIGTERM's KeyboardInterrupt) or was raised
    because of one: Python 3.11 wraps a KeyboardInterrupt that lands in a `__set_name__` (as when
    the first optimizer of a process imports torch._dynamo) in a RuntimeError."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _created_with(cfg: DictConfig, tags: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The name and the tags a run is created with: the job's own (sweep, parent run, job number)
    and where it runs, none of which needs the config resolved, so nothing here can fail and a
    run is tied to its sweep before anything else happens. A name that cannot be resolved (a bad
    value it interpolates) falls back to the job number."""
    try:
        name = run_name(cfg)
    except Exception:
        name = f"job{tags.get('job_num', '0')}"
    base = {**tags, "kind": "train", "git_commit": git_commit(), "host": HOST, "pid": str(os.getpid())}
    return name, base


@contextmanager
def mlflow_run(
    cfg: DictConfig,
    experiment_id: str,
    tags: dict[str, str],
    check: Callable[[DictConfig], None] | None = None,
) -> Iterator[Any]:
    """One MLflow run, created with the job's tags; then `check` (the config's ranges, before
    anything resolves it for logging) and the resolved config as params. KILLED if the body is
    interrupted, FAILED if anything raises, its error (unwrapped) in the `error` tag."""
    import mlflow

    name, base = _created_with(cfg, tags)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=base)
    try:
        if check is not None:
            check(cfg)
        params = run_params(cfg)
        params.update(selector=cfg.selector.name, embedding=cfg.embedding.name)
        mlflow.log_params({k: "None" if v is None else v for k, v in params.items()})
        mlflow.set_tags({"config_hash": config_hash(cfg), "clusters": clusters_rule(cfg)})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        yield run
    except BaseException as e:
        mlflow.set_tag("error", "KeyboardInterrupt" if isinstance(e, KeyboardInterrupt) else one_line(e))
        mlflow.end_run(status="KILLED" if interrupted(e) else "FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def record_failure(cfg: DictConfig, experiment_id: str, tags: dict[str, str], error: BaseException) -> str:
    """A FAILED run for a job that failed before its run began (its config could not be checked
    or hashed for resume), tied to its sweep like any other, so the sweep's parent counts it."""
    import mlflow

    name, base = _created_with(cfg, tags)
    base["error"] = one_line(error)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=base)
    mlflow.end_run(status="FAILED")
    return run.info.run_id


def log_selection(
    indices: np.ndarray, images: np.ndarray, labels: np.ndarray, title: str, source: str
) -> None:
    """The kept subset as an MLflow dataset (context `train`) whose digest is that of its sorted
    indices, so two runs that trained on the same images show the same dataset in the UI; and
    selected_indices.npy (int64 indices into the 60k training set) and selected_images.png, a
    montage of what was kept, so selectors can be compared side by side. The digest is also the
    run's `subset` tag."""
    import mlflow

    from mnist_pruning.cache import array_digest
    from mnist_pruning.figures import save_montage

    kept = np.sort(np.asarray(indices, dtype=np.int64))
    digest = array_digest(kept)[:16]
    mlflow.set_tag(SUBSET_TAG, digest)  # the report counts distinct subsets per setting by it
    with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways" (all local)
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(
            kept,
            source=source,
            targets=np.asarray(labels)[kept],
            name=f"mnist-train-{len(kept)}",
            digest=digest,
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


def log_search(path: np.ndarray, seconds: float, draws: int, stages: dict[str, float] | None = None) -> None:
    """A search's path as metrics, by evaluation: each candidate's proxy score (`search_proxy`)
    and the best so far (`search_best`); then the base subset's score (the first draw), the
    best draw's, the final one, the evaluations, the swaps kept and the seconds; with a screen
    or a shortlist, their evaluations and seconds (`screen_evaluations`, `shortlist_seconds`...)."""
    import mlflow

    if stages:
        mlflow.log_metrics(stages)

    best = -np.inf
    for n, score, kept in np.asarray(path, dtype=float).reshape(-1, 3):
        best = max(best, score) if kept else best
        mlflow.log_metrics({"search_proxy": score, "search_best": best}, step=int(n))
    if len(path) == 0:  # evaluations=0: the base's subset, never scored
        mlflow.log_metrics({"search_evaluations": 0, "search_seconds": seconds})
        return
    path = np.asarray(path, dtype=float).reshape(-1, 3)
    drawn = path[:draws]
    mlflow.log_metrics(
        {
            "search_base_score": path[0, 1],
            "search_draw_score": drawn[:, 1].max(),
            "search_final_score": best,
            "search_evaluations": len(path),
            "search_swaps_kept": int(path[draws:, 2].sum()),
            "search_seconds": seconds,
        }
    )
