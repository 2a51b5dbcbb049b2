"""What the benchmark modules share: the config a run composes, and the data's normalisation."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from mnist_pruning.config import CONF_DIR, register_configs

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = 0.1307, 0.3081


def config(overrides: list[str]) -> DictConfig:
    """The training config as a run would compose it (conf/ is the single source of settings)."""
    register_configs()  # the typed schema conf/ builds on, as a run's entry point registers it
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)
