"""MLflow: a sweep is one parent run, subsets are datasets, and a fresh store is never raced."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_train, search_runs
from mnist_pruning import report

FAST = ["train.steps=10", "train.warmup_steps=2"]


def test_a_sweep_is_one_parent_run_with_its_jobs_as_children(tmp_path, run_env):
    sweep_dir = tmp_path / "multirun" / "s1"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    res = run_train([*args, "selector=random", "k=50", "seed=0,1", "train.steps=10,11"], tmp_path, run_env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    parents = search_runs(tmp_path, kind="sweep")
    p = parents.iloc[0]
    assert p["status"] == "FINISHED" and p["tags.mlflow.runName"] == str(sweep_dir)
    assert p["tags.children"] == "4" and p["tags.failed_children"] == "0"
    assert "seed=0,1" in p["tags.overrides"]
    runs = search_runs(tmp_path)
    assert len(runs) == 4 and set(runs["tags.mlflow.parentRunId"]) == {p["run_id"]}

    # the subset is a dataset: same images, same digest; other images, another digest
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    digests = {}
    for _, r in runs.iterrows():
        (inp,) = client.get_run(r["run_id"]).inputs.dataset_inputs
        assert [t.value for t in inp.tags if t.key == "mlflow.data.context"] == ["train"]
        digests.setdefault(r["params.seed"], set()).add(inp.dataset.digest)
    assert len(digests["0"]) == 1 and len(digests["1"]) == 1 and digests["0"] != digests["1"]

    # a second sweep with a failing job: its parent ends FAILED with the count; the report
    # selects one sweep's runs by its directory or its parent's run id
    bad_dir = tmp_path / "multirun" / "s2"
    res = run_train(
        ["-m", f"hydra.sweep.dir={bad_dir}", "selector=nearest", "k=50", "selector.clusters=10,100", *FAST],
        tmp_path,
        run_env,
    )
    assert res.returncode == 1
    failed = search_runs(tmp_path, kind="sweep").set_index("tags.sweep").loc[str(bad_dir)]
    assert failed["status"] == "FAILED" and failed["tags.failed_children"] == "1"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert len(report.fetch_runs(uri, "mnist-pruning", str(sweep_dir))) == 4
    assert len(report.fetch_runs(uri, "mnist-pruning", failed["run_id"])) == 2
    assert len(report.fetch_runs(uri, "mnist-pruning")) == 6


def test_a_sweep_and_the_report_started_at_once_on_a_fresh_store_never_corrupt_it(tmp_path, run_env):
    race_a_sweep_and_the_report(tmp_path, run_env, trials=2)


@pytest.mark.slow
def test_twenty_races_of_a_sweep_and_the_report_never_corrupt_the_store(tmp_path, run_env):
    """The same race, more often (`python -m pytest -m slow`): a rare interleaving shows up here."""
    race_a_sweep_and_the_report(tmp_path, run_env, trials=20)


def race_a_sweep_and_the_report(tmp_path, run_env, trials: int) -> None:
    """A sweep and the report started together on a fresh store path, `trials` times."""
    for trial in range(trials):
        cwd = tmp_path / f"t{trial}"
        cwd.mkdir()
        env = {**run_env, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
        pipes = {"cwd": cwd, "env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        train = ["-m", "selector=random", "k=20", "seed=0,1", "train.steps=2", "train.warmup_steps=1"]
        sweep = subprocess.Popen([sys.executable, "-m", "mnist_pruning.train", *train], **pipes)
        report_args = ["-m", "mnist_pruning.report", f"out_dir={cwd}/report"]
        rep = subprocess.Popen([sys.executable, *report_args], **pipes)
        out, _ = sweep.communicate(timeout=300)
        rep_out, _ = rep.communicate(timeout=300)
        assert sweep.returncode == 0, f"trial {trial}: {out[-2000:]}"
        assert "alembic" not in rep_out and "migration" not in rep_out.lower(), rep_out[-2000:]
        runs = search_runs(cwd)
        assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}, f"trial {trial}"


@pytest.mark.parametrize(
    "error, status",
    [
        (KeyboardInterrupt("signal 15"), "KILLED"),
        (RuntimeError("Error calling __set_name__"), "FAILED"),
        ("interrupt inside __set_name__", "KILLED"),
    ],
)
def test_an_interrupted_run_is_killed_even_when_python_wraps_the_interrupt(
    tmp_path, error, status, empty_store
):
    """SIGTERM's KeyboardInterrupt, landing while Python creates a class (torch imports
    torch._dynamo in the first optimizer), comes out as a RuntimeError: still KILLED, not FAILED."""
    import mlflow
    from hydra import compose, initialize_config_dir

    from mnist_pruning import tracking
    from mnist_pruning.config import CONF_DIR

    if error == "interrupt inside __set_name__":

        class Descriptor:
            def __set_name__(self, owner, name):
                raise KeyboardInterrupt("signal 15")

        try:
            type("Knobs", (), {"key": Descriptor()})
        except BaseException as e:  # the wrapped interrupt is what is tested
            error = e
        assert type(error) is RuntimeError or sys.version_info >= (3, 12)
    uri = empty_store(tmp_path / "mlflow.db")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["selector=random", "k=10"])
    exp = tracking.ensure_experiment(uri, "mnist-pruning", str(tmp_path / "mlruns"))
    with pytest.raises(type(error)), tracking.mlflow_run(cfg, exp, {}):
        raise error
    run = MlflowClient(uri).search_runs([exp])[0]
    assert run.info.status == status
    mlflow.set_tracking_uri(None)


def _sweep_with_a_bad_job(tmp_path, run_env, args):
    """A sweep on a fresh store: its exit code, its output, the parent run and the failed child."""
    res = run_train(["-m", *args, *FAST], tmp_path, run_env)
    (parent,) = search_runs(tmp_path, kind="sweep").to_dict("records")
    runs = search_runs(tmp_path)
    (failed,) = runs[runs["status"] == "FAILED"].to_dict("records")
    return res, parent, failed


def test_a_bad_value_in_a_sweep_fails_its_job_and_the_sweep(tmp_path, run_env):
    """`k=70000` in a sweep is one line naming the key, a FAILED child of the sweep's parent (tied
    to it before the config is resolved for logging), and the sweep exits non-zero."""
    res, parent, failed = _sweep_with_a_bad_job(tmp_path, run_env, ["selector=random", "k=100,70000,200"])
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert parent["status"] == "FAILED" and parent["tags.children"] == "3"
    assert parent["tags.failed_children"] == "1"
    assert failed["tags.mlflow.parentRunId"] == parent["run_id"]
    assert failed["tags.sweep"] == parent["tags.sweep"] and failed["tags.job_num"] == "1"
    assert failed["tags.error"] == (
        "ConfigError: k=70000 is not allowed: an integer from 1 to 60000 (the selection pool)"
    )
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if "[ERROR]" in line]
    assert errors[0].endswith("k=70000 is not allowed: an integer from 1 to 60000 (the selection pool)")


@pytest.mark.parametrize("resume", [False, True])
def test_an_error_inside_an_interpolation_is_its_cause_in_one_line(tmp_path, run_env, resume):
    """Full data with no regime bound that covers 60,000 images: the regime's resolver raises
    inside OmegaConf, which wraps it. The job's line and `error` tag give the resolver's message,
    with and without resume (which hashes the config before a run starts: a FAILED run is
    recorded for the job all the same)."""
    args = ["selector=full,random", "k=100", "train.regime_bounds.all=1000", f"resume={resume}"]
    res, parent, failed = _sweep_with_a_bad_job(tmp_path, run_env, args)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert parent["status"] == "FAILED" and parent["tags.children"] == "2"
    assert parent["tags.failed_children"] == "1"
    assert failed["tags.mlflow.parentRunId"] == parent["run_id"] and failed["tags.job_num"] == "0"
    assert failed["tags.mlflow.runName"] == "full-s0"
    assert failed["tags.error"].startswith("ConfigError: train.regime_bounds=")
    assert "no regime for a training set of 60000 images" in failed["tags.error"]
    assert "Traceback" not in out and "InterpolationResolutionError" not in out
