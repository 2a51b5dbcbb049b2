"""The life cycle of one training run: params and tags in, FINISHED, FAILED or KILLED out, and
the subset it trained on as a dataset and artifacts."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mnist_pruning.tracking.identity import HOST, clusters_rule, config_hash, flatten, git_commit, run_name

SUBSET_TAG = "subset"  # the digest of the sorted kept indices


def one_line(error: BaseException) -> str:
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


@contextmanager
def mlflow_run(cfg: DictConfig, experiment_id: str, tags: dict[str, str]) -> Iterator[Any]:
    """One MLflow run with the resolved config as params; KILLED if the body is interrupted,
    FAILED if it raises anything else."""
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
    except BaseException as e:
        mlflow.set_tag("error", "KeyboardInterrupt" if isinstance(e, KeyboardInterrupt) else one_line(e))
        mlflow.end_run(status="KILLED" if interrupted(e) else "FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


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
