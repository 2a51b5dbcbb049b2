"""Committed runs.csv files as a source of runs: the per-run record a report keeps beside its
summary, read back where the store that held those runs is gone (a new machine, a lost
mlflow.db), so a study finished across machines is reported as one.

    python -m mnist_pruning.report ... 'archive=[results/baselines/runs.csv]'

An archived run counts only where the store holds no run of its config hash, nor of its setting
and seed (a newer run of it): the store always wins.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mnist_pruning.report.runs import ReportError
from mnist_pruning.report.summary import DEFAULT_MODEL, SETTING

# what runs.csv holds besides the metric (per_run's columns); reports written before the
# `subset` tag have no such column, and their runs count with their subsets unknown; before the
# `model` column every run trained LeNet-5
COLUMNS = (*SETTING, "seed", "select_seconds", "train_seconds", "run_id", "config_hash", "subset")
OPTIONAL = ("subset", "model")


def check_archive(paths: list[str], metric: str) -> None:
    """Each file exists and is a runs.csv of `metric`: before any work, a one-line error."""
    for path in paths:
        if not Path(path).is_file():
            raise ReportError(f"archive={path}: no such file (a runs.csv an earlier report wrote)")
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in (*COLUMNS, metric) if c not in header and c not in OPTIONAL]
        if missing:
            raise ReportError(
                f"archive={path}: no column {', '.join(missing)} (a runs.csv of metric={metric})"
            )


def read_archive(paths: list[str], metric: str) -> pd.DataFrame:
    """The archived runs, typed as per_run writes them; `archive` names each one's file."""
    parts = []
    for path in paths:
        part = pd.read_csv(path, dtype=str, keep_default_na=False)
        part = part.reindex(columns=[*COLUMNS, metric], fill_value="")
        parts.append(part.assign(archive=path))
    if not parts:
        return pd.DataFrame(columns=[*COLUMNS, metric, "archive"])
    rows = pd.concat(parts, ignore_index=True)
    rows["balance"] = rows["balance"] == "True"
    for col in ("k", "seed"):
        rows[col] = rows[col].astype(int)
    for col in (metric, "select_seconds", "train_seconds"):
        rows[col] = pd.to_numeric(rows[col])
    rows["subset"] = rows["subset"].replace("", None)
    rows["model"] = rows["model"].replace("", DEFAULT_MODEL)
    return rows


def merge(rows: pd.DataFrame, archived: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The store's per-run rows and the archived runs the store lacks (by config hash, then by
    setting + seed); an earlier file wins over a later one. Returns the rows and, per file, how
    many of its runs were taken."""
    both = pd.concat([rows.assign(archive=""), archived], ignore_index=True)
    known = both["config_hash"].fillna("")
    both = both[(known == "") | ~known.duplicated()]
    both = both[~both.duplicated([*SETTING, "seed"])]
    taken = both.loc[both["archive"] != "", "archive"].value_counts()
    merged = both.drop(columns="archive").sort_values(["curve", "k", "seed"])
    return merged.reset_index(drop=True), taken
