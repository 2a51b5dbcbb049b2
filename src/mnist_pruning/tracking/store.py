"""The store and the experiment: reachable, created once, never migrated by two processes at once.

The SQLite store and the experiment are created once, before any job starts (`StoreCallback` on
multirun start), because parallel workers that create a fresh SQLite file at the same time
corrupt its schema.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or opened; one line, with the URI."""


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any training, when the tracking server does not answer."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as r:
                r.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}): start it, or set "
                f"MLFLOW_TRACKING_URI / mlflow.tracking_uri to a reachable one"
            ) from e
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.exists():
            raise TrackingError(f"MLflow store {uri}: folder {path.parent} does not exist")


_READY: set[str] = set()


def ready_store(tracking_uri: str) -> None:
    """Open a SQLite store first under one file lock beside it (`mlflow.db.lock`), so that the
    project's processes never run MLflow's schema creation at once: two processes opening a
    fresh path together both migrate it, and the store is corrupt. Whoever comes second waits,
    then finds the schema complete. Once per process and store; other stores need nothing."""
    if tracking_uri in _READY:
        return
    if tracking_uri.startswith("sqlite:///"):
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        path = Path(tracking_uri.removeprefix("sqlite:///"))
        with FileLock(f"{path}.lock"):
            MlflowClient(tracking_uri).search_experiments(max_results=1)
    _READY.add(tracking_uri)


def ensure_experiment(tracking_uri: str, experiment_name: str, artifact_root: str) -> str:
    """Create the store and the experiment if they are new; return the experiment id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    check_reachable(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        ready_store(tracking_uri)  # before any client: MlflowClient() opens the store at once
        client = MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(experiment_name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if not tracking_uri.startswith(("http://", "https://")):
            location = Path(artifact_root).expanduser().resolve().as_uri()
        return client.create_experiment(experiment_name, artifact_location=location)
    except TrackingError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrackingError(f"MLflow store {tracking_uri} cannot be used: {first}") from e
