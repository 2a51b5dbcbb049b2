"""Typed schema of the config in `conf/`, and the checks Hydra's types cannot express.

The dataclasses are registered in Hydra's ConfigStore so that a misspelt key or a value of the
wrong type fails when the config is composed, before any data is read. `validate` then checks
ranges and names, so that bad input is a one-line error before any expensive work.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from mnist_pruning.data import N_PIXELS, N_TRAIN

# conf/ of the checkout (the package is installed editable); absolute, so that the entrypoint
# finds it however it was imported (as __main__, or by name in a launcher's worker)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class ConfigError(ValueError):
    """A config value out of its allowed range; the message is one line for the user."""


@dataclass
class DataConfig:
    root: str = "${oc.env:MNIST_DATA_DIR,data}"
    download: bool = True
    verify: bool = True
    # images held out of the selection pool to tune the recipe on, never the test set
    validation_size: int = 0
    validation_seed: int = 0
    # the usual MNIST normalisation; fixed so that it does not depend on the subset
    mean: float = 0.1307
    std: float = 0.3081


@dataclass
class EmbeddingConfig:
    name: str = MISSING
    dims: int | None = None
    # autoencoder training (ignored by pca and pixels)
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0


@dataclass
class SelectorConfig:
    name: str = MISSING
    clusters: int | None = None
    balance: bool = False
    neighbors: int = 20  # typical: neighbours of the typicality score


@dataclass
class KMeansConfig:
    max_iter: int = 100
    tol: float = 1e-4


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 100
    augment: bool = False
    aug_rotate: float = 10.0
    aug_translate: float = 0.1
    aug_scale: float = 0.1
    eval_every: int = 0
    eval_batch_size: int = 2000
    log_every: int = 500


@dataclass
class CacheConfig:
    dir: str = "${oc.env:MNIST_PRUNING_CACHE,.cache}"
    enabled: bool = True


@dataclass
class MlflowConfig:
    tracking_uri: str = "${oc.env:MLFLOW_TRACKING_URI,sqlite:///mlflow.db}"
    experiment_name: str = "mnist-pruning"
    artifact_root: str = "mlruns"


@dataclass
class Config:
    defaults: list[Any] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    k: int = 1000
    pca_dims: int | None = 50
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    resume: bool = False  # skip a setting + seed that already has a FINISHED run


@dataclass
class ReportConfig:
    defaults: list[Any] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    metric: str = "test_acc"  # test_acc, or val_acc for tuning runs (a validation split)
    target_acc: float = 0.95
    out_dir: str = "reports"
    montage_k: int | None = None  # k of the selected_examples.png rows; None: the smallest k run
    min_seeds: int = 5  # groups with fewer seeds are flagged
    results_file: str | None = None  # a markdown file whose report:<out_dir name> block gets the tables


def register_configs() -> None:
    """Make the schemas available to the defaults lists of `conf/`."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="selector", name="base_selector", node=SelectorConfig)
    cs.store(group="embedding", name="base_embedding", node=EmbeddingConfig)
    cs.store(group="train", name="base_train", node=TrainConfig)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="mlflow", name="base_mlflow", node=MlflowConfig)
    cs.store(name="base_report", node=ReportConfig)


DEVICES = ("auto", "cpu", "cuda")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _schema_type(key: str) -> type | None:
    """The declared type of a dotted key of the schema (None: not a plain typed field)."""
    node: Any = Config
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
    args = [a for a in typing.get_args(node) if a is not type(None)]
    node = args[0] if len(args) == 1 else node
    return node if node in (int, float, bool) else None


def _parses_as(value: str, kind: type) -> bool:
    if value in ("null", "None") or value.startswith("$"):
        return True
    if kind is bool:
        return value.lower() in ("true", "false")
    try:
        kind(value)
    except ValueError:
        return False
    return kind is not int or float(value).is_integer()


def check_choices(overrides: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Unknown options of a config group (`selector=nearst`, also inside a sweep list) and values
    of the wrong type (`k=abc`), as one line naming the key and what is allowed, before Hydra
    composes anything."""
    names = {int: "an integer", float: "a number", bool: "true or false"}
    for arg in overrides:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or any(c in value for c in "()[]{}*"):
            continue
        kind = _schema_type(key)
        if kind is not None:
            for item in value.split(","):
                if not _parses_as(item.strip(), kind):
                    raise ConfigError(f"{key}={item.strip()!r} is not allowed: {names[kind]}")
        group = conf_dir / key
        if "/" in key or not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in value.split(","):
            if choice.strip() not in options:
                raise ConfigError(f"{key}={choice.strip()!r} is not allowed: one of {', '.join(options)}")


def validate(cfg: DictConfig) -> None:
    """Check names and ranges; raise ConfigError with a one-line message on the first problem."""
    from mnist_pruning.embed import EMBEDDINGS
    from mnist_pruning.selectors import CLUSTER_SELECTORS, SELECTORS

    names = ", ".join(sorted(SELECTORS))
    _check(cfg.selector.name in SELECTORS, "selector", cfg.selector.name, f"one of {names}")
    emb_names = ", ".join(sorted(EMBEDDINGS))
    _check(cfg.embedding.name in EMBEDDINGS, "embedding", cfg.embedding.name, f"one of {emb_names}")

    pool = N_TRAIN - cfg.data.validation_size
    _check(
        0 <= cfg.data.validation_size < N_TRAIN,
        "data.validation_size",
        cfg.data.validation_size,
        f"an integer from 0 to {N_TRAIN - 1}",
    )
    if cfg.selector.name != "full":
        _check(1 <= cfg.k <= pool, "k", cfg.k, f"an integer from 1 to {pool} (the selection pool)")
    _check(
        cfg.pca_dims is None or 1 <= cfg.pca_dims <= N_PIXELS,
        "pca_dims",
        cfg.pca_dims,
        f"null (raw pixels) or an integer from 1 to {N_PIXELS}",
    )
    dims = cfg.embedding.dims
    _check(
        dims is None or 1 <= dims <= N_PIXELS,
        "embedding.dims",
        dims,
        f"null or an integer from 1 to {N_PIXELS}",
    )
    if cfg.selector.name in CLUSTER_SELECTORS:
        c = cfg.selector.clusters
        _check(
            c is not None and 1 <= c <= min(cfg.k, pool),
            "selector.clusters",
            c,
            f"an integer from 1 to k={cfg.k} (at least one kept image per cluster)",
        )
    t = cfg.train
    _check(t.steps >= 1, "train.steps", t.steps, "an integer >= 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    _check(t.lr > 0, "train.lr", t.lr, "a number > 0")
    _check(0 <= t.momentum < 1, "train.momentum", t.momentum, "a number in [0, 1)")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "a number >= 0")
    _check(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "an integer >= 0")
    _check(t.eval_every >= 0, "train.eval_every", t.eval_every, "0 (off) or an integer >= 1")
    _check(t.eval_batch_size >= 1, "train.eval_batch_size", t.eval_batch_size, "an integer >= 1")
    _check(cfg.kmeans.max_iter >= 1, "kmeans.max_iter", cfg.kmeans.max_iter, "an integer >= 1")
    _check(cfg.device in DEVICES, "device", cfg.device, f"one of {', '.join(DEVICES)}")
    _check(
        cfg.threads is None or cfg.threads >= 1,
        "threads",
        cfg.threads,
        "null (torch's default) or an integer >= 1",
    )
    _check(cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
