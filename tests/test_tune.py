"""The Optuna study: its trials are training runs scored on the validation split only."""

import subprocess
import sys

import mlflow
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from mnist_pruning import tracking, tune
from mnist_pruning import train as train_module
from mnist_pruning.config import CONF_DIR, RegimeConfig
from mnist_pruning.data import load_mnist, split_pool
from mnist_pruning.training import normalize


def compose_tune(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("tune", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def tiny_study(mnist_root, shared_cache, tmp_path) -> list[str]:
    """A study of 10-step runs at k = 20 tuning the learning rate alone, in a store of its own."""
    return [
        f"data.root={mnist_root}",
        f"cache.dir={shared_cache}",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"mlflow.artifact_root={tmp_path}/mlruns",
        "k=20",
        "train.steps=10",
        "tune.only=[train.lr]",
    ]


def test_a_study_logs_each_trial_and_never_evaluates_the_test_images(
    mnist_root, shared_cache, tmp_path, monkeypatch, empty_store
):
    uri = empty_store(tmp_path / "mlflow.db")
    cfg = compose_tune([*tiny_study(mnist_root, shared_cache, tmp_path), "tune.trials=3", "tune.seeds=1"])
    seen = []
    real_train = train_module.train

    def spy(x, y, evals, *args, **kwargs):
        seen.append({name: images.clone() for name, (images, _) in evals.items()})
        return real_train(x, y, evals, *args, **kwargs)

    monkeypatch.setattr(train_module, "train", spy)
    exp = tracking.ensure_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_root)
    study = tune.study(cfg, exp)

    assert len(study.trials) == 3 and all(t.value is not None for t in study.trials)
    data = load_mnist(mnist_root)
    _, val = split_pool(60_000, 10_000, cfg.data.validation_seed)
    expected = normalize(data.train_images[val], cfg.data.mean, cfg.data.std)
    test = normalize(data.test_images, cfg.data.mean, cfg.data.std)
    assert [list(s) for s in seen] == [["val"]] * 3
    for s in seen:
        assert torch.equal(s["val"], expected) and not torch.equal(s["val"], test)

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tuning"])
    assert len(runs) == 3 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["tags.tune_trial"]) == ["0", "1", "2"]
    assert "metrics.test_acc" not in runs and runs["metrics.val_acc"].notna().all()
    by_trial = {int(r["tags.tune_trial"]): float(r["params.train.lr"]) for _, r in runs.iterrows()}
    assert by_trial == {t.number: t.params["train.lr"] for t in study.trials}
    text = tune.best_yaml(study, cfg)
    block = yaml.safe_load(text)["regimes"]["tiny"]
    assert block["lr"] == pytest.approx(study.best_params["train.lr"], rel=1e-3)
    assert block["steps"] == 10  # fixed on the command line, not the regime's 4,000: kept in the block
    assert set(block) == set(RegimeConfig.__dataclass_fields__)  # a whole regime, ready to paste


def test_tuning_without_a_validation_split_is_one_line(tmp_path, cold_env):
    out = subprocess.run(
        [sys.executable, "-m", "mnist_pruning.tune", "data.validation_size=0", "tune.trials=1"],
        cwd=tmp_path,
        env=cold_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    errors = [ln for ln in (out.stdout + out.stderr).splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "data.validation_size=0 is not allowed" in errors[0]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # checked before the store is opened


def test_a_study_started_again_with_resume_goes_on_where_it_stopped(
    mnist_root, shared_cache, tmp_path, empty_store
):
    """A stopped study loses nothing it finished: with resume=true the seeded sampler proposes
    the same trials, their runs are read back rather than trained again, and the study goes on
    with the trials it had not run; without resume every trial trains."""
    uri = empty_store(tmp_path / "mlflow.db")
    overrides = [*tiny_study(mnist_root, shared_cache, tmp_path), "tune.seeds=2"]
    trained = []

    def counting(run_cfg, experiment_id, tags):
        trained.append((tags["tune_trial"], run_cfg.seed))
        return train_module.run(run_cfg, experiment_id, tags)

    cfg = compose_tune([*overrides, "tune.trials=2", "resume=true"])
    exp = tracking.ensure_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_root)
    first = tune.study(cfg, exp, run_one=counting)
    assert trained == [("0", 0), ("0", 1), ("1", 0), ("1", 1)]
    trained.clear()
    again = tune.study(compose_tune([*overrides, "tune.trials=3", "resume=true"]), exp, run_one=counting)
    assert trained == [("2", 0), ("2", 1)]  # trials 0 and 1 read back
    assert [t.params for t in again.trials[:2]] == [t.params for t in first.trials]
    assert [t.value for t in again.trials[:2]] == [t.value for t in first.trials]
    trained.clear()
    tune.study(compose_tune([*overrides, "tune.trials=1"]), exp, run_one=counting)
    assert trained == [("0", 0), ("0", 1)]  # resume=false: trained again


def test_a_study_that_enqueues_the_regime_runs_it_first_and_then_the_draws_it_had(tmp_path, empty_store):
    """tune.enqueue_regime=true: trial 0 is the size's regime as it stands (k = 2,000 -> `large`),
    and the random start-up trials after it are the draws trials 0.. of the study without it
    made, so a study started without the option and resumed with it reads its runs back."""
    uri = empty_store(tmp_path / "mlflow.db")
    base = [
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        "k=2000",
        "tune.trials=4",
        "tune.seeds=1",
        "tune.only=[train.steps,train.weight_decay,train.aug_rotate]",
        "tune.space.train.steps={low:2000,high:12000,step:1000}",
    ]

    def fake(run_cfg, experiment_id, tags):  # no training: a score from the settings
        return run_cfg.train.steps / 1e5 + run_cfg.train.aug_rotate / 1e3

    cfg = compose_tune([*base, "tune.enqueue_regime=true", "tune.startup_trials=4"])
    exp = tracking.ensure_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_root)
    with_regime = tune.study(cfg, exp, run_one=fake)
    assert cfg.train.regime == "large"
    large = cfg.train.regimes.large
    assert with_regime.trials[0].params == {
        "train.steps": large.steps,
        "train.weight_decay": large.weight_decay,
        "train.aug_rotate": large.aug_rotate,
    }
    plain = tune.study(compose_tune(base), exp, run_one=fake)  # 10 start-up trials, all random
    # the enqueued trial counts as a start-up trial: trials 1-3 are random draws, as plain's 0-2
    assert [t.params for t in with_regime.trials[1:]] == [t.params for t in plain.trials[:3]]
    assert with_regime.sampler._n_startup_trials == 4


def test_a_study_with_no_start_up_trials_is_one_line(tmp_path, cold_env):
    out = subprocess.run(
        [sys.executable, "-m", "mnist_pruning.tune", "tune.startup_trials=0"],
        cwd=tmp_path,
        env=cold_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "tune.startup_trials=0 is not allowed" in out.stderr + out.stdout
    assert not (tmp_path / "mlflow.db").exists()
