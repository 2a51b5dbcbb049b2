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
from omegaconf import MISSING, DictConfig, OmegaConf

from mnist_pruning.data import N_PIXELS, N_TRAIN


def _conf_dir() -> Path:
    """The Hydra configs: the checkout's top-level conf/ when running from a checkout (an
    editable install), else the copy a wheel installs as the package mnist_pruning.conf.
    Absolute, so the entrypoint finds it however it was imported (as __main__, or by name in a
    launcher's worker)."""
    here = Path(__file__).resolve().parent
    checkout = here.parents[1] / "conf"
    if (checkout / "config.yaml").is_file() and (here.parents[1] / "pyproject.toml").is_file():
        return checkout
    return here / "conf"


CONF_DIR = _conf_dir()


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
    # autoencoder / classifier training (ignored by pca and pixels)
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    momentum: float = 0.9  # classifier (SGD)
    weight_decay: float = 5e-4  # classifier
    seed: int = 0


@dataclass
class ScoreConfig:
    """The short LeNet-5 trainings on the pool that score images (el2n, forgetting)."""

    epochs: int = 4
    inits: int = 4
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0


@dataclass
class SelectorConfig:
    name: str = MISSING
    clusters: int | None = None
    balance: bool = False
    neighbors: int = 20  # typical: typicality neighbours; facility_location: similarity graph
    easy_fraction: float = 0.5  # hybrid: share of each cluster taken nearest its centroid
    keep: str = "easy"  # el2n, forgetting: easy (lowest scores) or hard (highest)
    score: ScoreConfig = field(default_factory=ScoreConfig)


@dataclass
class KMeansConfig:
    max_iter: int = 100
    tol: float = 1e-4


@dataclass
class RegimeConfig:
    """The recipe settings that depend on the size of the training subset (conf/train)."""

    steps: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    augment: bool = MISSING
    aug_rotate: float = MISSING
    aug_translate: float = MISSING
    aug_scale: float = MISSING
    elastic_alpha: float = MISSING
    elastic_sigma: float = MISSING
    label_smoothing: float = MISSING


@dataclass
class TrainConfig:
    # the regime of a run: the smallest `regime_bounds` entry >= its training-set size
    regime: str = "${size_regime:${selector.name},${k},${data.validation_size},${train.regime_bounds}}"
    regime_bounds: dict[str, int] = field(default_factory=dict)
    regimes: dict[str, RegimeConfig] = field(default_factory=dict)
    steps: int = "${train.regimes.${train.regime}.steps}"  # type: ignore[assignment]
    batch_size: int = 128
    lr: float = "${train.regimes.${train.regime}.lr}"  # type: ignore[assignment]
    momentum: float = 0.9
    weight_decay: float = "${train.regimes.${train.regime}.weight_decay}"  # type: ignore[assignment]
    warmup_steps: int = 100
    augment: bool = "${train.regimes.${train.regime}.augment}"  # type: ignore[assignment]
    aug_rotate: float = "${train.regimes.${train.regime}.aug_rotate}"  # type: ignore[assignment]
    aug_translate: float = "${train.regimes.${train.regime}.aug_translate}"  # type: ignore[assignment]
    aug_scale: float = "${train.regimes.${train.regime}.aug_scale}"  # type: ignore[assignment]
    elastic_alpha: float = "${train.regimes.${train.regime}.elastic_alpha}"  # type: ignore[assignment]
    elastic_sigma: float = "${train.regimes.${train.regime}.elastic_sigma}"  # type: ignore[assignment]
    label_smoothing: float = "${train.regimes.${train.regime}.label_smoothing}"  # type: ignore[assignment]
    eval_every: int = 0
    eval_batch_size: int = 2000
    log_every: int = 500


def training_size(selector: str, k: int, validation_size: int) -> int:
    """Images a run trains on: k, or the whole selection pool for selector=full."""
    return N_TRAIN - validation_size if selector == "full" else k


def size_regime(selector: str, k: int, validation_size: int, bounds: Any) -> str:
    """The regime whose bound is the smallest one >= the training-set size (conf/train)."""
    size = training_size(selector, k, validation_size)
    fitting = sorted((int(b), name) for name, b in dict(bounds).items() if int(b) >= size)
    if not fitting:
        raise ConfigError(
            f"train.regime_bounds={dict(bounds)} has no regime for a training set of {size} images: "
            f"give one a bound >= {size}"
        )
    return fitting[0][1]


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
class SearchDim:
    """One knob of a tuning study: a number in [low, high] (on a log scale with `log`, in steps
    of `step`), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


@dataclass
class TuneConfig:
    trials: int = 20
    seeds: int = 3  # runs per trial; a trial scores the median of their val_acc
    sampler_seed: int = 0
    # section -> key -> range, e.g. space.train.lr: a study tunes every key of it, or `keys`
    space: dict[str, dict[str, SearchDim]] = field(default_factory=dict)
    only: list[str] | None = None  # tune just these keys of the space


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
    tune: TuneConfig | None = None  # only in `python -m mnist_pruning.tune` (conf/tune.yaml)


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
    sweep: str | None = None  # only the runs of this sweep (its directory or parent run id)


def register_configs() -> None:
    """Make the schemas available to the defaults lists of `conf/`, and the regime resolver."""
    if not OmegaConf.has_resolver("size_regime"):
        OmegaConf.register_new_resolver("size_regime", size_regime)
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


def schema_type(key: str) -> type | None:
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


# launchers whose Hydra plugin comes with an extra of this package
LAUNCHER_PLUGINS = {"local": "hydra_submitit_launcher", "slurm": "hydra_submitit_launcher"}


def user_conf_dirs(argv: list[str]) -> list[Path]:
    """The folders a user added with --config-dir / -cd (their own experiment files, say)."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def check_launcher(choice: str) -> None:
    """A launcher whose plugin is not installed: one line naming the extra that brings it."""
    import importlib.util

    plugin = LAUNCHER_PLUGINS.get(choice)
    if plugin and importlib.util.find_spec(f"hydra_plugins.{plugin}") is None:
        raise ConfigError(
            f"hydra/launcher={choice} needs the submitit plugin: pip install 'mnist-pruning[cluster]' "
            "(hydra/launcher=joblib runs parallel jobs on this machine with the base install)"
        )


def check_choices(overrides: list[str], conf_dir: Path = CONF_DIR, extra_dirs: list[Path] = ()) -> None:
    """Unknown options of a config group (`selector=nearst`, also inside a sweep list), values
    of the wrong type (`k=abc`) and launchers whose plugin is missing, as one line naming the key
    and what is allowed, before Hydra composes anything. `extra_dirs` are --config-dir folders."""
    names = {int: "an integer", float: "a number", bool: "true or false"}
    for arg in overrides:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or any(c in value for c in "()[]{}*"):
            continue
        kind = schema_type(key)
        if kind is not None:
            for item in value.split(","):
                if not _parses_as(item.strip(), kind):
                    raise ConfigError(f"{key}={item.strip()!r} is not allowed: {names[kind]}")
        groups = [d / key for d in (conf_dir, *extra_dirs) if (d / key).is_dir()]
        if key == "hydra/launcher":
            for choice in value.split(","):
                check_launcher(choice.strip())
        if "/" in key or not groups:
            continue
        options = sorted({p.stem for g in groups for p in g.glob("*.yaml")})
        for choice in value.split(","):
            if choice.strip() not in options:
                raise ConfigError(f"{key}={choice.strip()!r} is not allowed: one of {', '.join(options)}")


def validate(cfg: DictConfig) -> None:
    """Check names and ranges; raise ConfigError with a one-line message on the first problem."""
    from mnist_pruning.embed import EMBEDDINGS
    from mnist_pruning.selectors import CLUSTER_SELECTORS, SCORED_SELECTORS, SELECTORS
    from mnist_pruning.selectors.scored import KEEP

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
    if cfg.embedding.name == "classifier":
        _check(dims in (None, 84), "embedding.dims", dims, "84 (LeNet-5's penultimate layer) or null")
    if cfg.selector.name in CLUSTER_SELECTORS:
        c = cfg.selector.clusters
        _check(
            c is not None and 1 <= c <= min(cfg.k, pool),
            "selector.clusters",
            c,
            f"an integer from 1 to k={cfg.k} (at least one kept image per cluster)",
        )
    sel = cfg.selector
    _check(sel.neighbors >= 1, "selector.neighbors", sel.neighbors, "an integer >= 1")
    _check(
        0 <= sel.easy_fraction <= 1, "selector.easy_fraction", sel.easy_fraction, "a number in [0, 1]"
    )
    if sel.name in SCORED_SELECTORS:
        _check(sel.keep in KEEP, "selector.keep", sel.keep, f"one of {', '.join(KEEP)}")
        least = 2 if sel.name == "forgetting" else 1  # an event needs two presentations
        _check(sel.score.epochs >= least, "selector.score.epochs", sel.score.epochs, f"an integer >= {least}")
        _check(sel.score.inits >= 1, "selector.score.inits", sel.score.inits, "an integer >= 1")
    t = cfg.train
    regimes = ", ".join(t.regimes)
    _check(t.regime in t.regimes, "train.regime", t.regime, f"one of {regimes} (conf/train)")
    _check(t.steps >= 1, "train.steps", t.steps, "an integer >= 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    _check(t.lr > 0, "train.lr", t.lr, "a number > 0")
    _check(0 <= t.momentum < 1, "train.momentum", t.momentum, "a number in [0, 1)")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "a number >= 0")
    _check(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "an integer >= 0")
    _check(t.elastic_alpha >= 0, "train.elastic_alpha", t.elastic_alpha, "a number >= 0 (0: off)")
    _check(t.elastic_sigma > 0, "train.elastic_sigma", t.elastic_sigma, "a number of pixels > 0")
    _check(
        0 <= t.label_smoothing < 1, "train.label_smoothing", t.label_smoothing, "a number in [0, 1)"
    )
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
