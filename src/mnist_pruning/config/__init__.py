"""The config in `conf/`: where it lives, its typed schema (`schema.py`), the resolvers that pick
a recipe regime and derive sizes, and the error a bad value raises.

The dataclasses are registered in Hydra's ConfigStore so that a misspelt key or a value of the
wrong type fails when the config is composed, before any data is read; `validation` then checks
ranges and names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_pruning.config.schema import (
    CcsSelectorConfig,
    Config,
    ContrastiveEmbeddingConfig,
    ConvNetConfig,
    DataConfig,
    EmbeddingConfig,
    FixedSelectorConfig,
    MlflowConfig,
    MlpConfig,
    ModelConfig,
    ProbcoverSelectorConfig,
    RegimeConfig,
    ReportConfig,
    ScreenConfig,
    SearchConfig,
    SearchDim,
    SearchSelectorConfig,
    SelectorConfig,
    TrainConfig,
    UncertaintySelectorConfig,
)
from mnist_pruning.data import N_TRAIN


def _conf_dir() -> Path:
    """The Hydra configs: the checkout's top-level conf/ when running from a checkout (an
    editable install), else the copy a wheel installs as the package mnist_pruning.conf.
    Absolute, so the entrypoint finds it however it was imported (as __main__, or by name in a
    launcher's worker)."""
    package = Path(__file__).resolve().parents[1]  # src/mnist_pruning, or site-packages/mnist_pruning
    checkout = package.parents[1] / "conf"
    if (checkout / "config.yaml").is_file() and (package.parents[1] / "pyproject.toml").is_file():
        return checkout
    return package / "conf"


CONF_DIR = _conf_dir()


class ConfigError(ValueError):
    """A config value out of its allowed range; the message is one line for the user."""


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


def epoch_steps(epochs: int, selector: str, k: int, validation_size: int, batch_size: int) -> int:
    """The updates of an epoch schedule: epochs x ceil(size / batch_size) (the last batch of
    each pass partial), so that train.steps says how many a run made."""
    return int(epochs) * -(-training_size(selector, k, validation_size) // int(batch_size))


def fit_seed(explicit: int | None, run_seed: int) -> int:
    """The seed of a fit behind a run's subset (an embedding's, the score trainings'): the run's
    own, so that a seed repeats the whole method, unless the config fixes one fit for all runs."""
    return run_seed if explicit is None else int(explicit)


def per_cluster(k: int, images: int) -> int:
    """Clusters that give `images` images each out of k (at least one cluster): the default of a
    selector that keeps several images per cluster, e.g. hybrid's nearest and furthest."""
    return max(1, int(k) // int(images))


def embedding_config(root: DictConfig, name: str) -> DictConfig:
    """`root` with its embedding replaced by conf/embedding/NAME.yaml over its schema, resolved
    against `root` (a search's portfolio base on another embedding than the run's); a name with
    no file is a ConfigError."""
    path = CONF_DIR / "embedding" / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ConfigError(f"embedding {name!r} (in selector.search.bases) is unknown: one of {names}")
    node = OmegaConf.load(path)
    schema = {"base_contrastive": ContrastiveEmbeddingConfig}.get(
        node.pop("defaults", [None])[0], EmbeddingConfig
    )
    out = root.copy()
    with open_dict(out):
        out.embedding = OmegaConf.merge(OmegaConf.structured(schema), node)
    return out


__all__ = [
    "CONF_DIR",
    "Config",
    "ConfigError",
    "RegimeConfig",
    "ReportConfig",
    "ScreenConfig",
    "SearchConfig",
    "SearchDim",
    "TrainConfig",
    "embedding_config",
    "fit_seed",
    "register_configs",
]


def register_configs() -> None:
    """Make the schemas available to the defaults lists of `conf/`, and the regime resolver."""
    if not OmegaConf.has_resolver("size_regime"):
        OmegaConf.register_new_resolver("size_regime", size_regime)
    if not OmegaConf.has_resolver("epoch_steps"):
        OmegaConf.register_new_resolver("epoch_steps", epoch_steps)
    if not OmegaConf.has_resolver("per_cluster"):
        OmegaConf.register_new_resolver("per_cluster", per_cluster)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="selector", name="base_selector", node=SelectorConfig)
    cs.store(group="selector", name="base_search", node=SearchSelectorConfig)
    cs.store(group="selector", name="base_uncertainty", node=UncertaintySelectorConfig)
    cs.store(group="selector", name="base_ccs", node=CcsSelectorConfig)
    cs.store(group="selector", name="base_probcover", node=ProbcoverSelectorConfig)
    cs.store(group="selector", name="base_fixed", node=FixedSelectorConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="model", name="base_convnet", node=ConvNetConfig)
    cs.store(group="model", name="base_mlp", node=MlpConfig)
    cs.store(group="embedding", name="base_embedding", node=EmbeddingConfig)
    cs.store(group="embedding", name="base_contrastive", node=ContrastiveEmbeddingConfig)
    cs.store(group="train", name="base_train", node=TrainConfig)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="mlflow", name="base_mlflow", node=MlflowConfig)
    cs.store(name="base_report", node=ReportConfig)
