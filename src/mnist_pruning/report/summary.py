"""From runs to answers: readable settings, medians across seeds per setting, and the smallest k
that reaches a target (95%, or within a gap of full data), per curve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mnist_pruning.report.runs import (
    IGNORED,
    PROTOCOLS,
    ReportError,
    as_text,
    ignores_embedding,
    setting_text,
)
from mnist_pruning.selectors import SCORED_SELECTORS
from mnist_pruning.tracking import SUBSET_TAG

# settings shown in their own columns; every other setting that varies goes to `other`
MAIN = ("selector", "embedding", "clusters", "balance", "k", "regime", "model")
DEFAULT_MODEL = "lenet5"  # runs logged before there was a choice of network trained LeNet-5
SETTING = (*MAIN, "other", "curve")  # a setting, as a row of the report's table names it
MAIN_PARAMS = {
    f"params.{p}"
    for p in (
        "selector",
        "selector.name",
        "embedding",
        "embedding.name",
        "embedding.dims",
        "pca_dims",
        "selector.clusters",
        "selector.balance",
        "selector.keep",
        "selector.base",
        "selector.measure",
        "selector.difficulty",
        "k",
        "train.regime",
        "model.name",
    )
}


def _describe(df: pd.DataFrame) -> pd.DataFrame:
    """Readable setting columns: selector, embedding, clusters, balance, k."""
    text = as_text(df.filter(like="params."))
    out = pd.DataFrame(index=df.index)

    def p(key: str) -> pd.Series:
        return text.get(f"params.{key}", pd.Series("None", index=df.index))

    name = p("selector.name")
    searched = name == "search"  # named with its base: search-herding, search-el2n-easy
    rule = name.where(~searched, p("selector.base"))
    scored = rule.isin(sorted(SCORED_SELECTORS))
    keep = p("selector.keep").where(rule != "uncertainty", p("selector.measure") + "-" + p("selector.keep"))
    keep = keep.where(rule != "ccs", p("selector.difficulty"))  # ccs-forgetting: keep does not apply
    out["selector"] = rule.where(~scored, rule + "-" + keep)
    out["selector"] = out["selector"].where(~searched, "search-" + out["selector"])
    dims = p("embedding.dims")
    embedding = p("embedding.name") + dims.where(dims != "None", "")
    out["embedding"] = embedding.where(~ignores_embedding(df), "-")
    clusters, k = p("selector.clusters"), p("k")
    out["clusters"] = np.where(clusters == "None", "-", np.where(clusters == k, "k", clusters))
    if "tags.clusters" in df:  # how the count follows k ('k/2'), logged since hybrid's default
        out["clusters"] = df["tags.clusters"].fillna(pd.Series(out["clusters"], index=df.index))
    out["balance"] = p("selector.balance").str.lower().eq("true")
    full = out["selector"] == "full"
    train_size = df.get("metrics.train_size", pd.Series(np.nan, index=df.index))
    out["k"] = np.where(full, train_size.fillna(0), pd.to_numeric(k, errors="coerce")).astype(int)
    out["regime"] = p("train.regime").replace("None", "-")
    out["model"] = p("model.name").replace("None", DEFAULT_MODEL)
    return out


# the seeds of the fits behind a subset: None follows the run's seed; a number is one fit for all
FIT_SEEDS = ("params.embedding.seed", "params.selector.score.seed")


def usual_values(text: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per further setting (param column) that varies between runs, its most common value: of
    the embedding's own settings per embedding (the classifier's epochs are not the
    autoencoder's), of a selector's own per selector (forgetting's score epochs are not el2n's),
    of a network's own per network (ConvNet-3's width is not the MLP's), of the rest per recipe
    regime (a regime's own steps are not an exception). A fit's seed is usually None (the run's
    own): a fixed fit (`embedding.seed=0`) is always named.
    Keyed 'regime <name>', 'embedding <name>', 'selector <name>' and 'model <name>'."""
    varying = [c for c in text.columns if c not in MAIN_PARAMS and text[c][text[c] != IGNORED].nunique() > 1]
    fixed_fits = [c for c in FIT_SEEDS if c in text and (~text[c].isin(["None", IGNORED])).any()]
    varying += [c for c in fixed_fits if c not in varying]
    own = {
        by: [c for c in varying if c.startswith(f"params.{by}.")] for by in ("embedding", "selector", "model")
    }
    rest = [c for c in varying if not any(c in cols for cols in own.values())]
    usual = {}
    for by, cols in (("regime", rest), *own.items()):
        groups = text.get(f"params.{_GROUP_PARAM[by]}", pd.Series("-", index=text.index))
        for name, part in text.groupby(groups):
            if by == "embedding" and name == IGNORED:  # selectors that ignore the embedding
                continue
            # a fit's seed: usually the run's own (None); a fixed fit is always named
            usual[f"{by} {name}"] = {c: "None" if c in FIT_SEEDS else part[c].mode().iloc[0] for c in cols}
    return usual


_GROUP_PARAM = {
    "regime": "train.regime",
    "embedding": "embedding.name",
    "selector": "selector.name",
    "model": "model.name",
}


def _usual_for(usual: dict[str, dict[str, str]], row: pd.Series) -> dict[str, str]:
    """The usual values that apply to one run: its regime's, its embedding's and its selector's."""
    keys = [f"{by} {row.get(f'params.{param}', '-')}" for by, param in _GROUP_PARAM.items()]
    return {c: v for key in keys for c, v in usual.get(key, {}).items()}


def annotate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: readable setting columns, `other` (its further settings that differ from the
    most common value, e.g. a second recipe tried on full data only) and its curve (the setting
    with k free); the seeds of a setting share all of SETTING."""
    text = setting_text(runs)
    out = _describe(runs)
    usual = usual_values(text)

    def other(row: pd.Series) -> str:
        typical = _usual_for(usual, row)
        return " ".join(f"{c.removeprefix('params.')}={row[c]}" for c, v in typical.items() if row[c] != v)

    out["other"] = text.apply(other, axis=1) if len(text) else ""
    out["other"] = labelled(out, runs)
    out["curve"] = out.apply(curve_name, axis=1)
    return out


LABEL = "params.mlflow.run_label"  # an experiment's own name for a setting (second, control)


def labelled(described: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    """`other` read as the run's `mlflow.run_label` where one is set: the experiment's name for
    a setting (search2's `second`) instead of the keys it differs by, which for a search stage
    or a transfer are a line long. Only where the label names one setting among its runs' main
    columns; where it names several, each reads `label: keys`, so two settings never read alike."""
    other = described["other"]
    if LABEL not in runs:
        return other
    label = as_text(runs[[LABEL]])[LABEL]
    has = label != "None"
    if not has.any():
        return other
    keys = described[list(MAIN)].astype(str).agg("|".join, axis=1) + "|" + label
    one = other.groupby(keys).transform("nunique") == 1
    named = label.where(one | (other == ""), label + ": " + other)
    return other.where(~has, named)


def summarize(runs: pd.DataFrame, min_seeds: int = 5, metric: str = "test_acc") -> pd.DataFrame:
    """One row per setting: quantiles of `metric` over seeds, seed count, median timings."""
    if runs.empty:
        raise ReportError("no FINISHED runs to summarize")
    return summarize_rows(per_run(runs, metric), min_seeds, metric)


def summarize_rows(rows: pd.DataFrame, min_seeds: int = 5, metric: str = "test_acc") -> pd.DataFrame:
    """summarize, from per-run rows (per_run's, or a committed runs.csv's): a setting is what a
    row of the table shows, so two settings never read alike."""
    if rows.empty:
        raise ReportError("no FINISHED runs to summarize")
    out = []
    for _, part in rows.groupby(list(SETTING), sort=False, dropna=False):
        acc = part[metric].astype(float)
        q1, q3 = acc.quantile(0.25), acc.quantile(0.75)
        out.append(
            {
                **{c: part[c].iloc[0] for c in SETTING},
                "seeds": len(part),
                "subsets": distinct_subsets(part["subset"]),
                "median_acc": acc.median(),
                "min_acc": acc.min(),
                "max_acc": acc.max(),
                "q1_acc": q1,
                "q3_acc": q3,
                "iqr_acc": q3 - q1,
                "median_select_seconds": part["select_seconds"].median(),
                "median_train_seconds": part["train_seconds"].median(),
                "few_seeds": len(part) < min_seeds,
            }
        )
    return pd.DataFrame(out).sort_values(["curve", "k"]).reset_index(drop=True)


def distinct_subsets(digests: pd.Series) -> float:
    """How many different subsets a setting's seeds trained on, by the runs' `subset` digests
    (5 of 5 seeds: the method was repeated; 1: one subset trained five times); NaN for runs
    logged before the tag."""
    return float(digests.nunique()) if digests.notna().all() else math.nan


def per_run(runs: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per run behind the medians (its setting, seed and accuracy, its run id and
    config hash): what a median was taken of, kept beside the summary outside the store."""
    described = annotate(runs)
    out = described[list(SETTING)].assign(
        seed=runs["params.seed"].astype(int),
        **{metric: runs[f"metrics.{metric}"].astype(float)},
        select_seconds=runs["metrics.select_seconds"],
        train_seconds=runs["metrics.train_seconds"],
        run_id=runs["run_id"],
        config_hash=runs.get("tags.config_hash"),
        subset=runs.get(f"tags.{SUBSET_TAG}"),
    )
    return out.sort_values(["curve", "k", "seed"]).reset_index(drop=True)


def curve_name(row: pd.Series) -> str:
    """A curve is a setting with k free: selector, embedding, clusters, balance, the network and
    a protocol if not the default, other."""
    parts = [row["selector"]] + ([row["embedding"]] if row["embedding"] != "-" else [])
    if row["clusters"] not in ("-", "k"):
        c = row["clusters"]
        parts.append(f"c{c}" if c.isdigit() else f"c={c}")  # c50, or c=k/2 (two per cluster)
    if row["balance"]:
        parts.append("balanced")
    if row.get("model", DEFAULT_MODEL) != DEFAULT_MODEL:
        parts.append(row["model"])
    if row.get("regime") in PROTOCOLS:
        parts.append(row["regime"])
    if row["other"]:
        parts.append(row["other"])
    return " ".join(parts)


def smallest_k(summary: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per curve: the smallest k whose median reaches `target`, and k interpolated on log k
    between that k and the next smaller k run (None where no smaller k was run)."""
    rows = []
    for name, part in summary[summary["selector"] != "full"].groupby("curve", sort=True):
        part = part.sort_values("k")
        reached = part[part["median_acc"] >= target]
        row = {"curve": name, "k_values": ",".join(str(k) for k in part["k"]), "smallest_k": None}
        row["interpolated_k"] = None
        if not reached.empty:
            hit = reached.iloc[0]
            row["smallest_k"] = int(hit["k"])
            below = part[part["k"] < hit["k"]]
            if not below.empty:
                lo = below.iloc[-1]
                frac = (target - lo["median_acc"]) / (hit["median_acc"] - lo["median_acc"])
                log_k = math.log(lo["k"]) + frac * (math.log(hit["k"]) - math.log(lo["k"]))
                row["interpolated_k"] = round(math.exp(log_k), 1)
        rows.append(row)
    return pd.DataFrame(rows, columns=["curve", "k_values", "smallest_k", "interpolated_k"])


def full_reference(summary: pd.DataFrame) -> float | None:
    """The full-data median the large end is measured against: that of the default full-data
    setting (no setting in brackets), else the best full-data setting; None without full runs."""
    full = summary[summary["selector"] == "full"]
    if full.empty:
        return None
    default = full[full["other"] == ""]
    return float((default if not default.empty else full)["median_acc"].max())


def near_full(summary: pd.DataFrame, gap: float) -> tuple[float | None, pd.DataFrame]:
    """Per curve, the smallest k whose median is within `gap` of the full-data median (the
    large-data answer: how much can be pruned without losing accuracy)."""
    reference = full_reference(summary)
    if reference is None:
        return None, pd.DataFrame(columns=["curve", "k_values", "smallest_k", "interpolated_k"])
    return reference, smallest_k(summary, reference - gap)


def compare(summary: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """This study's medians beside another study's, a row per row of `reference`: a table with
    `median_acc` and the setting columns it is matched on (selector and k, and any of embedding,
    clusters, balance; clusters '-' for none, k of full data 'full')."""
    keys = [c for c in ("selector", "embedding", "clusters", "balance", "k") if c in reference]
    if "selector" not in keys or "k" not in keys or "median_acc" not in reference:
        raise ReportError("reference: needs the columns selector, k and median_acc")
    ours = as_text(summary[["selector", "embedding", "clusters", "balance"]])
    ours["k"] = np.where(summary["selector"] == "full", "full", summary["k"].astype(str))
    ours[["median_acc", "seeds", "few_seeds"]] = summary[["median_acc", "seeds", "few_seeds"]]
    clash = ours.duplicated(keys, keep=False)
    if clash.any():
        raise ReportError(f"reference: several settings match {keys}; report one experiment or sweep")
    ref = as_text(reference[keys]).assign(reference=reference["median_acc"].astype(float))
    out = ref.merge(ours[[*keys, "median_acc", "seeds", "few_seeds"]], how="left", on=keys)
    return out.assign(difference=out["median_acc"] - out["reference"])
