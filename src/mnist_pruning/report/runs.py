"""Reading the store: the finished training runs of an experiment, the newest of each setting + seed."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pandas as pd

from mnist_pruning import tracking
from mnist_pruning.selectors import EMBEDDING_FREE

log = logging.getLogger(__name__)

REPORT_TAG = "report"  # tags.kind of a report's own run
METRICS = ("test_acc", "val_acc")  # final accuracies: test, or validation for tuning runs
IGNORED = "(ignored)"  # an embedding param of a run whose selector ignores the embedding
# regimes that are a recipe of their own rather than a size's (conf/train/dc_protocol.yaml): a
# curve under one is another curve than under the size regimes
PROTOCOLS = ("dc_protocol",)


class ReportError(RuntimeError):
    """Nothing to report on; the message says why."""


@dataclass(frozen=True)
class Runs:
    finished: pd.DataFrame  # the newest FINISHED run of each setting + seed
    left_out: int  # FAILED, KILLED or RUNNING runs
    duplicates: int  # older FINISHED runs of a setting + seed that was run again
    superseded: int = 0  # FINISHED runs of a regime their setting ran again in since (latest_regime)


def fetch_runs(tracking_uri: str, experiment_name: str, sweep: str | None = None) -> pd.DataFrame:
    """Every training run of the experiment (report and sweep parent runs excluded), or with
    `sweep` only the children of that sweep (its directory or its parent run's id)."""
    import mlflow

    tracking.ready_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment_name) is None:
        raise ReportError(f"no experiment {experiment_name!r} at {tracking_uri}: run a sweep first")
    df = mlflow.search_runs(experiment_names=[experiment_name], max_results=100_000)
    kind = df["tags.kind"] if "tags.kind" in df else pd.Series("train", index=df.index)
    if sweep is not None:
        named = (df.get("tags.sweep") == sweep) | (df["run_id"] == sweep)
        parents = df[(kind == tracking.SWEEP_TAG) & named]
        if parents.empty:
            known = df.loc[kind == tracking.SWEEP_TAG, "tags.sweep"].head(5).tolist()
            raise ReportError(f"sweep={sweep!r}: no such sweep directory or parent run id (newest: {known})")
        df = df[df.get("tags.mlflow.parentRunId", pd.Series(None, index=df.index)).isin(parents["run_id"])]
        kind = kind[df.index]
    df = df[~kind.isin([REPORT_TAG, tracking.SWEEP_TAG])].dropna(axis=1, how="all")
    return df.reset_index(drop=True)


def as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Params as plain strings, a missing one as 'None' (pandas keeps NaN through astype(str))."""
    return df.astype(object).where(df.notna(), "None").astype(str)


def setting_columns(df: pd.DataFrame) -> list[str]:
    """The params that define a setting: all but the seed and where/how a run executed."""
    cols = []
    for col in df.columns:
        if not col.startswith("params."):
            continue
        key = col.removeprefix("params.")
        if key == "seed" or any(key == p or key.startswith(p + ".") for p in tracking.NON_SEMANTIC_KEYS):
            continue
        cols.append(col)
    return sorted(cols)


def ignores_embedding(df: pd.DataFrame) -> pd.Series:
    """Per run, whether its selector ignores the embedding (random, full, the scored ones)."""
    name = df.get("params.selector.name", pd.Series("None", index=df.index))
    return name.isin(sorted(EMBEDDING_FREE))


def source_pattern(spec: str, k: str, seed: str) -> str:
    """`selector.run=EXPERIMENT/NAME` names one source run per size and seed
    (search2/search-herding-k10-bal-ae64-s3): the run's own k and seed in it read as {k} and
    {seed}, so that the seeds and sizes of one transfer are one curve; a run id stays as it is."""
    if "/" not in spec:
        return spec
    spec = re.sub(rf"-s{re.escape(seed)}$", "-s{seed}", spec)
    return re.sub(rf"-k{re.escape(k)}-", "-k{k}-", spec)


def setting_text(df: pd.DataFrame) -> pd.DataFrame:
    """The setting columns as text, with the embedding's params IGNORED where the selector
    ignores the embedding: random swept over two embeddings is one setting, not two curves of
    the same name (and the same subsets twice). A key added after some runs were logged
    (tracking.LATER_KEYS) reads, where a run lacks it, as the value those runs had: the default."""
    cols = df[setting_columns(df)].copy()
    for key, default in tracking.LATER_KEYS.items():
        if f"params.{key}" in cols:
            cols[f"params.{key}"] = cols[f"params.{key}"].where(cols[f"params.{key}"].notna(), str(default))
    text = as_text(cols)
    if "params.selector.run" in text:  # the five seeds of a transfer read five runs: one setting
        own = as_text(df.reindex(columns=["params.k", "params.seed"]))
        text["params.selector.run"] = [
            source_pattern(spec, k, seed)
            for spec, k, seed in zip(
                text["params.selector.run"], own["params.k"], own["params.seed"], strict=True
            )
        ]
    embedding = [c for c in text if c == "params.pca_dims" or c.split(".")[1] == "embedding"]
    text.loc[ignores_embedding(df), embedding] = IGNORED
    return text


def latest_finished(df: pd.DataFrame) -> Runs:
    """Keep FINISHED runs; of several for one setting + seed, the newest. A run is identified by
    its config hash, except where the selector ignores the embedding, whose params (and so the
    hash) may differ without any difference in what was trained."""
    if df.empty:
        return Runs(df, 0, 0)
    done = df[df["status"] == "FINISHED"].copy()
    left_out = len(df) - len(done)
    if "tags.config_hash" in done:
        identity = done["tags.config_hash"].fillna("")
    else:
        identity = pd.Series("", index=done.index)
    by_params = setting_text(done).assign(seed=as_text(done[["params.seed"]])).agg("|".join, axis=1)
    done["_identity"] = identity.where((identity != "") & ~ignores_embedding(done), by_params)
    done = done.sort_values("start_time").drop_duplicates("_identity", keep="last")
    duplicates = int((df["status"] == "FINISHED").sum()) - len(done)
    return Runs(done.drop(columns="_identity"), left_out, duplicates)


def latest_regime(runs: Runs) -> Runs:
    """Where one setting (all but the recipe, `train.*`, and the seed) ran at one k under several
    size regimes, keep the runs of the regime its newest run used: a sweep run again after
    `train.regime_bounds` moved replaces the old regime's runs instead of standing beside them at
    the same k. A protocol (dc_protocol) is a curve of its own and never supersedes a regime."""
    done = runs.finished
    if done.empty or "params.train.regime" not in done:
        return runs
    text = setting_text(done)
    regime = text["params.train.regime"]
    cell = text[[c for c in text if not c.startswith("params.train.")]].agg("|".join, axis=1)
    cell = cell + "|" + regime.where(regime.isin(PROTOCOLS), "")
    newest = done["start_time"].groupby(cell).idxmax()  # each cell's newest run
    keep = regime == cell.map(regime[newest].set_axis(newest.index))
    superseded = int((~keep).sum())
    if superseded:
        log.info("latest_regime: %d runs of a regime their setting ran again in since left out", superseded)
    return Runs(done[keep], runs.left_out, runs.duplicates, runs.superseded + superseded)


def with_metric(runs: Runs, metric: str) -> Runs:
    """Only the runs that logged `metric`: tuning runs have val_acc and no test_acc, and the
    other way round, so the two never mix in one table."""
    col = f"metrics.{metric}"
    if col not in runs.finished or runs.finished[col].isna().all():
        raise ReportError(f"no FINISHED run logged {metric!r} (metric: {', '.join(METRICS)})")
    has = runs.finished[col].notna()
    if not has.all():
        log.info("%d runs without %s left out (tuning or test runs of another kind)", (~has).sum(), metric)
    return Runs(runs.finished[has], runs.left_out, runs.duplicates, runs.superseded)
