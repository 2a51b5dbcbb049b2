"""selector=fixed: a subset chosen elsewhere (a file, a run) trains exactly those images, under
any model; each bad input is one line before any training."""

import numpy as np
import pytest
from mlflow.artifacts import download_artifacts

from conftest import run_train, search_runs

FAST = ["train.steps=5", "train.warmup_steps=1"]


def _kept(run_id: str) -> np.ndarray:
    return np.load(download_artifacts(run_id=run_id, artifact_path="selected_indices.npy"))


def test_a_file_of_indices_trains_exactly_those_images_under_another_model(tmp_path, run_env):
    chosen = np.array([59999, 3, 17, 40000, 123, 5, 77, 1000, 2500, 31337])
    (tmp_path / "mine.txt").write_text("\n".join(map(str, chosen)))
    np.save(tmp_path / "mine.npy", chosen)
    for path, model in (("mine.txt", "mlp"), ("mine.npy", "lenet5")):
        res = run_train(
            ["selector=fixed", f"selector.indices={path}", "k=10", f"model={model}", *FAST], tmp_path, run_env
        )
        assert res.returncode == 0, res.stderr[-3000:]
    runs = search_runs(tmp_path).sort_values("start_time")
    assert list(runs["params.model.name"]) == ["mlp", "lenet5"]
    for run_id in runs["run_id"]:
        assert np.array_equal(_kept(run_id), np.sort(chosen))
    assert runs["tags.subset"].nunique() == 1 and set(runs["metrics.train_size"]) == {10}


def test_a_run_id_trains_that_runs_subset(tmp_path, run_env):
    res = run_train(["selector=random", "k=20", "seed=4", *FAST], tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    source = search_runs(tmp_path).iloc[0]
    # ConvNet-3 end to end, narrow: at width 128 its test-set evaluation is most of this test
    args = ["selector=fixed", f"selector.run={source.run_id}", "k=20", "model=convnet3", "model.width=16"]
    res = run_train([*args, "train.steps=2", "train.warmup_steps=1", "train.batch_size=8"], tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = search_runs(tmp_path)
    fixed = runs[runs["params.selector.name"] == "fixed"].iloc[0]
    assert np.array_equal(_kept(fixed.run_id), _kept(source.run_id))
    assert fixed["tags.subset"] == source["tags.subset"] and fixed["params.model.name"] == "convnet3"
    assert fixed["tags.mlflow.runName"] == "fixed-k20-convnet3-s0"
    # by name: the latest finished run of that name in that experiment
    import mlflow

    experiment = mlflow.MlflowClient(run_env["MLFLOW_TRACKING_URI"]).get_experiment(source.experiment_id).name
    named = ["selector=fixed", f"selector.run={experiment}/random-k20-s4", "k=20", "model=mlp", *FAST]
    res = run_train(named, tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    mlp = search_runs(tmp_path).query("`params.model.name` == 'mlp'").iloc[0]
    assert np.array_equal(_kept(mlp.run_id), _kept(source.run_id))
    res = run_train(["selector=fixed", f"selector.run={experiment}/random-k20-s9", "k=20"], tmp_path, run_env)
    assert res.returncode == 2 and "no finished run named 'random-k20-s9'" in res.stderr + res.stdout


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("1 2 2 3", ["k=4"], "selector.indices=bad.txt: 1 duplicate indices"),
        ("1 2 60000", ["k=3"], "index 60000 is out of range (0 to 59999)"),
        ("1 2 -1", ["k=3"], "index -1 is out of range"),
        ("1 2 3", ["k=4"], "holds 3 indices but k=4: set k=3"),
        ("1 2.5 3", ["k=3"], "not integers"),
        ("a b", ["k=2"], "not a .npy or text file of integers"),
        (None, ["k=3"], "selector.indices=bad.txt: no such file"),
        ("1 2 3", ["k=3", "selector.run=abc"], "exactly one of selector.indices"),
    ],
)
def test_bad_indices_are_one_line_errors_before_any_training(tmp_path, cold_env, content, args, message):
    if content is not None:
        (tmp_path / "bad.txt").write_text(content)
    res = run_train(["selector=fixed", "selector.indices=bad.txt", *args], tmp_path, cold_env)
    assert res.returncode == 2, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert message in out and "Traceback" not in out
    assert len([line for line in out.splitlines() if message in line]) == 1
    assert "test_acc" not in out and not (tmp_path / "mlflow.db").exists()  # before the store, data, training


def test_indices_in_the_validation_split_and_runs_without_the_artifact_fail_in_one_line(tmp_path, run_env):
    from mnist_pruning.data import N_TRAIN, split_pool

    val = split_pool(N_TRAIN, 5000, 0)[1]
    (tmp_path / "val.txt").write_text(" ".join(map(str, val[:3])))
    res = run_train(
        ["selector=fixed", "selector.indices=val.txt", "k=3", "data.validation_size=5000"], tmp_path, run_env
    )
    assert res.returncode == 2 and "lie in the validation split" in res.stderr + res.stdout

    res = run_train(["selector=fixed", "selector.run=0123456789abcdef", "k=3"], tmp_path, run_env)
    assert res.returncode == 2 and "selector.run=0123456789abcdef: no such run" in res.stderr + res.stdout
    import mlflow

    mlflow.set_tracking_uri(run_env["MLFLOW_TRACKING_URI"])
    with mlflow.start_run() as bare:  # a run that logged no subset
        pass
    res = run_train(["selector=fixed", f"selector.run={bare.info.run_id}", "k=3"], tmp_path, run_env)
    assert res.returncode == 2 and "has no selected_indices.npy artifact" in res.stderr + res.stdout
