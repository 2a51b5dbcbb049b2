"""Subsets chosen elsewhere (`selector=fixed`): indices into the 60,000 training images read from
a file (.npy, or whitespace-separated integers as text) or from an MLflow run's
`selected_indices.npy` (by id, or as EXPERIMENT/RUN_NAME: the latest finished run of that name),
checked before any data is read. So a subset chosen by another tool, or
by this one under LeNet-5, trains under any model and recipe."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mnist_pruning.config import ConfigError
from mnist_pruning.data import N_TRAIN, split_pool

ARTIFACT = "selected_indices.npy"  # what every training run logs (tracking.log_selection)


def _from_file(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"selector.indices={path}: no such file (a .npy or a text file of indices)")
    try:
        values = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p, ndmin=1)
    except (ValueError, OSError) as e:
        raise ConfigError(f"selector.indices={path}: not a .npy or text file of integers ({e})") from None
    return np.asarray(values)


def _named_run(client, spec: str, tracking_uri: str) -> str:
    """The id of the latest finished run named NAME in EXPERIMENT (`spec` EXPERIMENT/NAME): so
    an experiment's grid can name the runs whose subsets it trains before their ids exist."""
    experiment, _, name = spec.partition("/")
    found = client.get_experiment_by_name(experiment)
    runs = (
        []
        if found is None
        else client.search_runs(
            [found.experiment_id],
            f"tags.mlflow.runName = '{name}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )
    if not runs:
        raise ConfigError(f"selector.run={spec}: no finished run named {name!r} in experiment {experiment!r}")
    return runs[0].info.run_id


def _from_run(run_id: str, tracking_uri: str) -> np.ndarray:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri)
    if "/" in run_id:
        run_id = _named_run(client, run_id, tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"selector.run={run_id}: no such run at {tracking_uri}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, ARTIFACT, tmp)
        except (MlflowException, OSError):
            raise ConfigError(f"selector.run={run_id}: the run has no {ARTIFACT} artifact") from None
        return np.load(local, allow_pickle=False)


def given_indices(cfg: DictConfig) -> np.ndarray:
    """The subset of `selector.indices` or `selector.run`, sorted; a one-line ConfigError unless
    it is integers, unique, in range, in the selection pool (not the validation split) and k long."""
    sel = cfg.selector
    if (sel.indices is None) == (sel.run is None):
        raise ConfigError(
            "selector=fixed needs exactly one of selector.indices=PATH (.npy or text) or selector.run=RUN_ID"
        )
    key, source = ("selector.indices", sel.indices) if sel.indices is not None else ("selector.run", sel.run)
    raw = _from_file(sel.indices) if sel.indices is not None else _from_run(sel.run, cfg.mlflow.tracking_uri)
    raw = raw.reshape(-1)
    if raw.size and not (np.issubdtype(raw.dtype, np.integer) or np.all(np.mod(raw, 1) == 0)):
        raise ConfigError(f"{key}={source}: holds values that are not integers")
    idx = raw.astype(np.int64)
    if len(np.unique(idx)) != len(idx):
        raise ConfigError(
            f"{key}={source}: {len(idx) - len(np.unique(idx))} duplicate indices (each image once)"
        )
    bad = idx[(idx < 0) | (idx >= N_TRAIN)]
    if len(bad):
        raise ConfigError(f"{key}={source}: index {bad[0]} is out of range (0 to {N_TRAIN - 1})")
    pool = split_pool(N_TRAIN, cfg.data.validation_size, cfg.data.validation_seed)[0]
    outside = np.setdiff1d(idx, pool)
    if len(outside):
        raise ConfigError(
            f"{key}={source}: {len(outside)} indices (first {outside[0]}) lie in the validation split "
            f"(data.validation_size={cfg.data.validation_size}), not the selection pool"
        )
    if len(idx) != cfg.k:
        raise ConfigError(f"{key}={source}: holds {len(idx)} indices but k={cfg.k}: set k={len(idx)}")
    return np.sort(idx)
