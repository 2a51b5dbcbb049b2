"""Nothing lost, nothing wrong: bad input, failed and killed jobs, resume, concurrent writers."""

import multiprocessing as mp
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from mlflow.artifacts import download_artifacts

from conftest import run_train, search_runs
from mnist_pruning.data import MNIST_MD5

FAST = ["train.steps=20", "train.warmup_steps=5"]


def one_error_line(res) -> str:
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_unknown_selector_and_embedding_list_the_valid_names(tmp_path, cold_env):
    res = run_train(["-m", "selector=nearest,nearst"], tmp_path, cold_env)
    assert res.returncode == 2
    line = one_error_line(res)
    assert "selector='nearst'" in line
    assert "nearest, probcover, random, search, search_first, typical, uncertainty" in line
    res = run_train(["embedding=pcaa"], tmp_path, cold_env)
    assert res.returncode == 2 and "autoencoder, classifier, contrastive, pca, pixels" in one_error_line(res)
    assert not (tmp_path / "mlflow.db").exists()


def test_wrong_type_names_the_key_and_value(tmp_path, run_env):
    for args in (["k=abc"], ["-m", "selector=random", "k=10,abc"]):
        res = run_train(args, tmp_path, run_env)
        assert res.returncode == 2
        assert "k='abc' is not allowed: an integer" in one_error_line(res)


def test_unreachable_tracking_server_fails_fast_with_the_uri(tmp_path, run_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    uri = f"http://127.0.0.1:{port}"
    for args in (["selector=random", "k=10"], ["-m", "selector=random", "k=10,20"]):
        res = run_train(args, tmp_path, {**run_env, "MLFLOW_TRACKING_URI": uri})
        assert res.returncode == 2
        line = one_error_line(res)
        assert uri in line and "unreachable" in line
        assert "selected" not in res.stdout + res.stderr  # no work was done


def test_corrupt_idx_file_is_named(tmp_path, run_env, mnist_root):
    root = tmp_path / "mnist"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_MD5:
        (raw / name).symlink_to(Path(mnist_root) / "MNIST" / "raw" / name)
    bad = raw / "train-labels-idx1-ubyte"
    data = bad.read_bytes()
    bad.unlink()
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one flipped bit
    res = run_train([f"data.root={root}", "data.download=false", *FAST], tmp_path, run_env)
    assert res.returncode == 2
    line = one_error_line(res)
    assert "train-labels-idx1-ubyte" in line and "corrupt" in line and str(root) in line


def test_resume_runs_only_what_is_missing(tmp_path, run_env):
    base = ["selector=random", "k=30", *FAST]
    assert run_train(["-m", *base, "seed=0,1"], tmp_path, run_env).returncode == 0
    first = search_runs(tmp_path).set_index("params.seed")["run_id"].to_dict()
    res = run_train(["-m", *base, "seed=0,1,2", "resume=true"], tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = search_runs(tmp_path)
    assert len(runs) == 3 and set(runs["status"]) == {"FINISHED"}
    after = runs.set_index("params.seed")["run_id"].to_dict()
    assert after["0"] == first["0"] and after["1"] == first["1"]
    assert "already FINISHED" in res.stdout + res.stderr


def wait_for(predicate, cwd: Path, timeout: float = 300, every: float = 0.5) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(every)
    log = cwd / "train.log"
    raise AssertionError(
        f"timed out; statuses {statuses(cwd)}; log: {log.read_text()[-3000:] if log.exists() else ''}"
    )


def statuses(tmp_path) -> list[str]:
    """Training runs' statuses (not a sweep's parent run) read straight from the SQLite file,
    read-only: opening it through MLflow while the sweep creates it would race the sweep's
    schema creation."""
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return []
    query = (
        "SELECT r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "AND t.key = 'kind' AND t.value = 'train' ORDER BY r.start_time"
    )
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return [row[0] for row in con.execute(query)]
    except sqlite3.Error:
        return []


def start_train(args, cwd, env) -> subprocess.Popen:
    log = open(cwd / "train.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_pruning.train", *args],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_sweep_killed_halfway_then_resumed_ends_with_one_finished_run_each(tmp_path, run_env):
    args = ["-m", "selector=random", "k=30", "train.steps=600", "seed=0,1,2,3"]
    proc = start_train(args, tmp_path, run_env)
    wait_for(lambda: (s := statuses(tmp_path)).count("FINISHED") >= 1 and "RUNNING" in s, tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "RUNNING" in statuses(tmp_path)  # the job killed mid-training
    res = run_train([*args, "resume=true"], tmp_path, run_env)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = search_runs(tmp_path)
    finished = runs[runs["status"] == "FINISHED"]
    assert sorted(finished["params.seed"]) == ["0", "1", "2", "3"]  # exactly one each
    assert "RUNNING" not in set(runs["status"])
    killed = runs[runs["status"] == "KILLED"]
    assert len(killed) >= 1 and killed["tags.error"].str.contains("ended without closing").all()


def test_sigterm_marks_the_run_killed(tmp_path, run_env):
    proc = start_train(["selector=random", "k=30", "train.steps=100000"], tmp_path, run_env)
    wait_for(lambda: statuses(tmp_path) == ["RUNNING"], tmp_path)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) != 0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError((tmp_path / "train.log").read_text()[-3000:]) from None
    runs = search_runs(tmp_path)
    why = f"{list(runs.get('tags.error', []))}\n{(tmp_path / 'train.log').read_text()[-3000:]}"
    assert list(runs["status"]) == ["KILLED"], why


def _log_runs(uri: str, worker: int, n_runs: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mnist-pruning").experiment_id
    for i in range(n_runs):
        run = client.create_run(exp, run_name=f"w{worker}-{i}")
        for step in range(10):
            client.log_metric(run.info.run_id, "m", step, step=step)
        client.log_param(run.info.run_id, "worker", worker)
        client.set_terminated(run.info.run_id)


def test_four_concurrent_writers_to_one_sqlite_store_lose_nothing(tmp_path, empty_store):
    from mlflow.tracking import MlflowClient

    from mnist_pruning.tracking import ensure_experiment

    uri = empty_store(tmp_path / "mlflow.db")
    ensure_experiment(uri, "mnist-pruning", str(tmp_path / "mlruns"))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_log_runs, args=(uri, w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("mnist-pruning").experiment_id], max_results=1000
    )
    assert len(runs) == 40 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(len(client.get_metric_history(r.info.run_id, "m")) == 10 for r in runs)


def test_same_seed_same_indices_and_accuracy(tmp_path, run_env):
    args = ["selector=cluster_random", "k=40", *FAST]
    for _ in range(2):
        assert run_train(args, tmp_path, run_env).returncode == 0
    runs = search_runs(tmp_path)
    a, b = (
        np.load(download_artifacts(run_id=r, artifact_path="selected_indices.npy")) for r in runs["run_id"]
    )
    assert np.array_equal(a, b)
    assert runs["metrics.test_acc"].nunique() == 1
