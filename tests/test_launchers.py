"""The same sweep through other engines: submitit's local executor and an MLflow server."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_train, search_runs

FAST = ["train.steps=20", "train.warmup_steps=5"]


def test_two_jobs_through_submitit_local(tmp_path, run_env):
    res = run_train(
        ["-m", "hydra/launcher=local", "selector=random,nearest", "k=50", *FAST], tmp_path, run_env
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    runs = search_runs(tmp_path)
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["params.selector"]) == ["nearest", "random"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """An `mlflow server` on a free loopback port, stopped at the end of the test."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_runs_log_to_an_http_tracking_server(tmp_path, cold_env, mlflow_server):
    env = {**cold_env, "MLFLOW_TRACKING_URI": mlflow_server}
    res = run_train(["-m", "selector=random,nearest", "k=50", *FAST], tmp_path, env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("mnist-pruning")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'train'")
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'sweep'")
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.params["selector"] for r in runs} == {"random", "nearest"}
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"selected_indices.npy", "selected_images.png", "config.yaml"} <= names
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
