"""Shared fixtures: the real MNIST (../shared/data or MNIST_DATA_DIR), temporary MLflow stores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, give each worker its own share of the cores (the jobs it starts inherit
    it, and train.py sizes torch's threads from it), so that workers x threads <= cores as in a
    parallel sweep; oversubscribed torch threads would make the parallel run slower than a serial one."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if workers < 2 or not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= workers:  # fewer cores than workers: they share them all
        os.sched_setaffinity(0, cores[int(worker[2:]) :: workers])
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(cores) // workers))


def _mnist_root() -> Path | None:
    for root in (os.environ.get("MNIST_DATA_DIR"), SHARED_DATA):
        if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return Path(root).resolve()
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = _mnist_root()
    if root is None:
        pytest.skip("real MNIST not found: set MNIST_DATA_DIR to a folder holding MNIST/raw")
    return root


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so the PCA of the 60k images is computed once for all tests."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _tracking_uri_restored():
    """`mlflow.set_tracking_uri` (as `search_runs` calls it) also sets MLFLOW_TRACKING_URI for the
    whole process: give the next test the URI this one started with, not this one's store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(before)


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store, migrated once per test process: MLflow's schema migrations cost
    seconds a fresh file, and most tests need a store, not its creation (the tests of a fresh
    store's creation, two processes opening one path at once, open their own)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def empty_store(store_template: Path):
    """`empty_store(path)`: a copy of the empty store at `path`; returns its URI."""

    def copy(path: Path) -> str:
        shutil.copyfile(store_template, path)
        return f"sqlite:///{path}"

    return copy


@pytest.fixture
def cold_env(tmp_path: Path, mnist_root: Path, shared_cache: Path) -> dict[str, str]:
    """The entrypoint's environment with no store yet at its URI: for the checks that bad input
    fails before the store is opened."""
    env = dict(os.environ)
    env.update(
        MNIST_DATA_DIR=str(mnist_root),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db",
        MNIST_PRUNING_CACHE=str(shared_cache),
        HYDRA_FULL_ERROR="0",
    )
    return env


@pytest.fixture
def run_env(cold_env: dict[str, str], tmp_path: Path, empty_store) -> dict[str, str]:
    """`cold_env` with an empty store at its URI."""
    empty_store(tmp_path / "mlflow.db")
    return cold_env


def run_train(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600):
    """Run the real entrypoint as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "mnist_pruning.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def search_runs(tmp_path: Path, experiment: str = "mnist-pruning", kind: str | None = "train"):
    """The runs of `kind` (training runs; `sweep` for sweeps' parent runs; None for all)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=[experiment])
    if kind is None or runs.empty:
        return runs
    return runs[runs["tags.kind"] == kind].reset_index(drop=True)


@pytest.fixture
def make_cfg():
    """compose(config, overrides) through Hydra's compose API, as the entrypoint composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mnist_pruning.config import CONF_DIR

    def make(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    yield make
    GlobalHydra.instance().clear()
