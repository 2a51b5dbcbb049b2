"""Tune the training recipe for one subset size on the validation split, with Optuna.

    python -m mnist_pruning.tune k=100
    python -m mnist_pruning.tune k=20 tune.trials=30 'tune.only=[train.steps,train.lr]'
    python -m mnist_pruning.tune +experiment=tune_full resume=true   # goes on where it stopped

A small driver rather than Hydra's Optuna sweeper: that plugin pins optuna < 3, a 2021 release,
while this one uses the Optuna the environment has. Each trial runs `tune.seeds` ordinary
training runs (MLflow experiment `tuning`, tagged with the study and trial), scored by their
median `val_acc` on images held out of the selection pool; the test set is never evaluated.
The best settings are printed as YAML, ready for a regime of conf/train/default.yaml.
"""

from __future__ import annotations

import copy
import logging
import statistics
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_pruning import tracking
from mnist_pruning.config import CONF_DIR, ConfigError, RegimeConfig, SearchDim, register_configs
from mnist_pruning.train import USER_ERRORS, final_accuracy, finished_before, run
from mnist_pruning.validation import schema_type, validate

log = logging.getLogger(__name__)
register_configs()

RunFn = Callable[[DictConfig, str, dict[str, str]], float]


def suggest(trial: Any, key: str, dim: DictConfig) -> Any:
    """One value of the search space entry `key` for this trial."""
    d = {**SearchDim().__dict__, **OmegaConf.to_container(dim)}
    if d["choices"] is not None:
        return trial.suggest_categorical(key, list(d["choices"]))
    if d["low"] is None or d["high"] is None or d["low"] > d["high"]:
        raise ConfigError(f"tune.space.{key}={d} is not allowed: needs low <= high, or choices")
    if schema_type(key) is int:
        return trial.suggest_int(key, int(d["low"]), int(d["high"]), step=int(d["step"] or 1), log=d["log"])
    return trial.suggest_float(key, d["low"], d["high"], step=d["step"], log=d["log"])


def space(cfg: DictConfig) -> dict[str, DictConfig]:
    """The dimensions to tune, by dotted key (`train.lr`): all of tune.space, or tune.only."""
    dims = {f"{section}.{key}": dim for section, keys in cfg.tune.space.items() for key, dim in keys.items()}
    if cfg.tune.only is None:
        return dims
    unknown = [k for k in cfg.tune.only if k not in dims]
    if unknown:
        raise ConfigError(f"tune.only={unknown[0]!r} is not allowed: one of {', '.join(dims)} (tune.space)")
    return {k: dims[k] for k in cfg.tune.only}


def check(cfg: DictConfig) -> dict[str, DictConfig]:
    """Bad study settings as one line, before any training; the dimensions to tune."""
    t = cfg.tune
    if t is None:
        raise ConfigError("tune: missing; run `python -m mnist_pruning.tune`, which reads conf/tune.yaml")
    if cfg.data.validation_size <= 0:
        raise ConfigError(
            f"data.validation_size={cfg.data.validation_size} is not allowed: tuning needs a validation "
            "split (an integer > 0), it never scores on the test set"
        )
    if t.trials < 1 or t.seeds < 1:
        raise ConfigError(f"tune.trials={t.trials}, tune.seeds={t.seeds}: both must be integers >= 1")
    if t.startup_trials < 1:
        raise ConfigError(f"tune.startup_trials={t.startup_trials} is not allowed: an integer >= 1")
    dims = space(cfg)
    for key in dims:
        if OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            raise ConfigError(f"tune.space.{key} is not a key of the training config (e.g. train.lr)")
    validate(cfg)
    return dims


def study(cfg: DictConfig, experiment_id: str, run_one: RunFn = run) -> Any:
    """Run the Optuna study of `cfg.tune`; every trial's runs go through `run_one`."""
    import optuna

    dims = check(cfg)
    t = cfg.tune
    name = f"tune-{tracking.run_name(cfg)}"
    base = copy.deepcopy(cfg)
    with open_dict(base):
        base.tune = None  # a trial's runs are plain training runs
        base.pop("hydra", None)  # composed with return_hydra_config (tests)

    def run_or_reuse(run_cfg: DictConfig, tags: dict[str, str]) -> float:
        """A trial's run, or with resume=true its FINISHED run read back: the sampler is seeded,
        so a study started again proposes the same trials in the same order and goes on where it
        stopped, losing at most its unfinished runs."""
        done = finished_before(run_cfg, experiment_id)
        return final_accuracy(done) if done is not None else run_one(run_cfg, experiment_id, tags)

    def objective(trial: optuna.Trial) -> float:
        values = {key: suggest(trial, key, dim) for key, dim in dims.items()}
        scores = []
        for seed in range(t.seeds):
            run_cfg = copy.deepcopy(base)
            for key, value in values.items():
                OmegaConf.update(run_cfg, key, value, merge=False)
            run_cfg.seed = seed
            tags = {"sweep": name, "job_num": str(trial.number), "tune_study": name}
            tags["tune_trial"] = str(trial.number)
            scores.append(run_or_reuse(run_cfg, tags))
        score = statistics.median(scores)
        log.info("trial %d: median val_acc %.4f with %s", trial.number, score, values)
        return score

    sampler = optuna.samplers.TPESampler(seed=t.sampler_seed, n_startup_trials=t.startup_trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(direction="maximize", sampler=sampler, study_name=name)
    if t.enqueue_regime:  # the incumbent first; the sampler's draws follow as they would without it
        s.enqueue_trial({key: OmegaConf.select(base, key) for key in dims})
    s.optimize(objective, n_trials=t.trials)
    return s


def best_yaml(s: Any, cfg: DictConfig) -> str:
    """The best trial's settings as a whole regime block of conf/train/default.yaml: every regime
    setting as the trials ran it (including ones fixed on the command line), the tuned ones replaced."""
    best = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in s.best_params.items()}
    regime = {key: cfg.train[key] for key in RegimeConfig.__dataclass_fields__}
    regime |= {k.removeprefix("train."): v for k, v in best.items() if k.startswith("train.")}
    others = {k: v for k, v in best.items() if not k.startswith("train.")}
    head = (
        f"# best of {len(s.trials)} trials for k={cfg.k} ({cfg.selector.name}"
        f"{', balanced' if cfg.selector.balance else ''}): median val_acc {s.best_value:.4f} "
        f"over {cfg.tune.seeds} seeds\n"
    )
    text = OmegaConf.to_yaml(OmegaConf.create({"regimes": {cfg.train.regime: regime}}))
    if others:
        text += "# not train.* settings:\n" + OmegaConf.to_yaml(OmegaConf.create(others))
    return head + text


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="tune")
def main(cfg: DictConfig) -> None:
    try:
        check(cfg)  # before the store is opened
        m = cfg.mlflow
        experiment_id = tracking.ensure_experiment(m.tracking_uri, m.experiment_name, m.artifact_root)
        s = study(cfg, experiment_id)
    except USER_ERRORS as e:
        log.error("%s", e)
        sys.exit(2)
    print(best_yaml(s, cfg))
    log.info("output dir %s", HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
