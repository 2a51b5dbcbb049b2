"""The entrypoint end to end, as a user runs it: real MNIST, a temporary MLflow store."""

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.artifacts import download_artifacts

from conftest import run_train, search_runs

FAST = ["train.steps=20", "train.warmup_steps=5"]


def test_single_run_lands_in_mlflow_with_params_metrics_artifacts(tmp_path, run_env):
    res = run_train(["selector=nearest", "k=100", *FAST], tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = search_runs(tmp_path)
    assert len(runs) == 1
    r = runs.iloc[0]
    assert r["status"] == "FINISHED"
    assert r["tags.mlflow.runName"] == "nearest-k100-pca50-s0"
    assert r["params.selector"] == "nearest" and r["params.k"] == "100"
    assert r["params.pca_dims"] == "50" and r["params.seed"] == "0"
    assert r["params.selector.clusters"] == "100" and r["params.train.steps"] == "20"
    assert r["params.train.regime"] == "small"  # k = 100; the regime's own settings are logged
    assert r["params.train.elastic_alpha"] == "34.0" and r["params.train.label_smoothing"] == "0.1"
    assert not any(c.startswith("params.train.regimes") for c in r.index)  # the table is not
    for key in ("train.lr", "train.batch_size", "train.weight_decay", "train.augment"):
        assert f"params.{key}" in r
    assert 0.0 <= r["metrics.test_acc"] <= 1.0
    assert r["metrics.train_size"] == 100
    assert r["metrics.select_seconds"] > 0 and r["metrics.train_seconds"] > 0
    assert r["tags.git_commit"] and r["tags.sweep"] and len(r["tags.config_hash"]) == 16
    idx = np.load(download_artifacts(run_id=r.run_id, artifact_path="selected_indices.npy"))
    assert idx.dtype == np.int64 and len(idx) == 100 and len(np.unique(idx)) == 100
    assert idx.min() >= 0 and idx.max() < 60000
    cfg_text = Path(download_artifacts(run_id=r.run_id, artifact_path="config.yaml")).read_text()
    assert "name: nearest" in cfg_text and "k: 100" in cfg_text
    assert (tmp_path / "mlruns").is_dir()  # artifacts under mlruns/ beside the store


def test_tuning_run_is_scored_on_validation_and_never_sees_the_test_set(tmp_path, run_env):
    res = run_train(["selector=random", "k=50", "data.validation_size=5000", *FAST], tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    r = search_runs(tmp_path).iloc[0]
    assert 0.0 <= r["metrics.val_acc"] <= 1.0
    assert "metrics.test_acc" not in r or np.isnan(r["metrics.test_acc"])
    assert "val_acc" in res.stdout + res.stderr and "test_acc" not in res.stdout + res.stderr


def test_two_job_multirun_records_two_runs(tmp_path, run_env):
    res = run_train(["-m", "selector=random,nearest", "k=50", *FAST], tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = search_runs(tmp_path)
    assert sorted(runs["params.selector"]) == ["nearest", "random"]
    assert set(runs["status"]) == {"FINISHED"}
    assert runs["tags.sweep"].nunique() == 1
    assert set(runs["metrics.train_size"]) == {50}


def test_failing_job_is_recorded_failed_and_the_sweep_goes_on(tmp_path, run_env):
    res = run_train(["-m", "selector=random", "k=0,50", *FAST], tmp_path, run_env)
    assert res.returncode != 0
    assert "1 of 2 runs of this sweep failed" in res.stdout + res.stderr
    runs = search_runs(tmp_path).set_index("tags.mlflow.runName")
    assert runs.loc["random-k50-s0", "status"] == "FINISHED"
    assert runs.loc["random-k0-s0", "status"] == "FAILED"
    assert "k=0" in runs.loc["random-k0-s0", "tags.error"]
    # checked before its params were logged: the job's overrides say what it was
    assert runs.loc["random-k0-s0", "tags.overrides"].split() == ["selector=random", "k=0", *FAST]


def test_bad_input_is_one_line_and_records_nothing(tmp_path, cold_env):
    res = run_train(["k=0"], tmp_path, cold_env)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() + res.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "k=0" in errors[0] and "from 1 to 60000" in errors[0]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "mlflow.db").exists() or search_runs(tmp_path).empty


def test_run_that_raises_is_marked_failed(tmp_path, run_env):
    res = run_train(["data.root=nowhere", "data.download=false", *FAST], tmp_path, run_env)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    runs = search_runs(tmp_path)
    assert list(runs["status"]) == ["FAILED"]
    assert "missing" in runs.iloc[0]["tags.error"]


def test_two_job_joblib_multirun_loses_nothing(tmp_path, run_env):
    args = [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "selector=random,nearest",
        "k=50",
        *FAST,
    ]
    res = run_train(args, tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = search_runs(tmp_path)
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["params.selector"]) == ["nearest", "random"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
def test_a_short_job_trains_on_cuda(tmp_path, run_env):
    res = run_train(["device=cuda", "selector=nearest", "k=100", "train.steps=20"], tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    r = search_runs(tmp_path).iloc[0]
    assert r["status"] == "FINISHED" and r["params.device"] == "cuda" and 0 <= r["metrics.test_acc"] <= 1


def test_model_scored_selectors_and_the_classifier_embedding_run_from_the_command_line(tmp_path, run_env):
    quick = ["selector.score.epochs=2", "selector.score.inits=1", "embedding.epochs=1", *FAST]
    for args in (
        ["selector=el2n", "selector.keep=hard", "k=50"],
        ["selector=forgetting", "selector.balance=true", "k=50"],
        ["selector=nearest", "embedding=classifier", "k=50"],
    ):
        res = run_train([*args, *quick], tmp_path, run_env)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    runs = search_runs(tmp_path)
    assert set(runs["status"]) == {"FINISHED"} and set(runs["metrics.train_size"]) == {50}
    assert set(runs["params.selector.name"]) == {"el2n", "forgetting", "nearest"}


def test_a_selector_that_ignores_the_embedding_computes_none(tmp_path, run_env):
    """random (like full, el2n, forgetting) is given no embedding: its run leaves no embedding in
    an empty cache, while a nearest run computes and caches its PCA."""
    env = {**run_env, "MNIST_PRUNING_CACHE": str(tmp_path / "own-cache")}
    res = run_train(["selector=random", "k=30", *FAST], tmp_path, env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert not (tmp_path / "own-cache" / "embedding").exists()
    res = run_train(["selector=nearest", "k=30", *FAST], tmp_path, env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert list((tmp_path / "own-cache" / "embedding").glob("*.npz"))
