"""Post-hoc report: medians across seeds, the smallest k reaching the target, tables and plots.

    python -m mnist_pruning.report
    python -m mnist_pruning.report target_acc=0.95 out_dir=reports/small

Reads the finished runs of the experiment the train entrypoint writes to, keeps the newest run of
each setting + seed (a re-run sweep never double counts), and writes summary.csv, summary.md
and the plots to `out_dir`, and as artifacts of a report run in MLflow.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mnist_pruning import figures, tracking
from mnist_pruning.config import CONF_DIR, register_configs
from mnist_pruning.selectors import EMBEDDING_FREE, SCORED_SELECTORS

log = logging.getLogger(__name__)
register_configs()

REPORT_TAG = "report"
METRICS = ("test_acc", "val_acc")  # final accuracies: test, or validation for tuning runs
# settings shown in their own columns; every other setting that varies goes to `other`
MAIN = ("selector", "embedding", "clusters", "balance", "k", "regime")
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
        "k",
        "train.regime",
    )
}


class ReportError(RuntimeError):
    """Nothing to report on; the message says why."""


@dataclass(frozen=True)
class Runs:
    finished: pd.DataFrame  # the newest FINISHED run of each setting + seed
    left_out: int  # FAILED, KILLED or RUNNING runs
    duplicates: int  # older FINISHED runs of a setting + seed that was run again


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


def latest_finished(df: pd.DataFrame) -> Runs:
    """Keep FINISHED runs; of several for one setting + seed, the newest."""
    if df.empty:
        return Runs(df, 0, 0)
    done = df[df["status"] == "FINISHED"].copy()
    left_out = len(df) - len(done)
    if "tags.config_hash" in done:
        identity = done["tags.config_hash"].fillna("")
    else:
        identity = pd.Series("", index=done.index)
    fallback = as_text(done[[*setting_columns(done), "params.seed"]]).agg("|".join, axis=1)
    done["_identity"] = identity.where(identity != "", fallback)
    done = done.sort_values("start_time").drop_duplicates("_identity", keep="last")
    duplicates = int((df["status"] == "FINISHED").sum()) - len(done)
    return Runs(done.drop(columns="_identity"), left_out, duplicates)


def _describe(df: pd.DataFrame) -> pd.DataFrame:
    """Readable setting columns: selector, embedding, clusters, balance, k."""
    text = as_text(df.filter(like="params."))
    out = pd.DataFrame(index=df.index)

    def p(key: str) -> pd.Series:
        return text.get(f"params.{key}", pd.Series("None", index=df.index))

    name = p("selector.name")
    scored = name.isin(sorted(SCORED_SELECTORS))
    out["selector"] = name.where(~scored, name + "-" + p("selector.keep"))
    dims = p("embedding.dims")
    embedding = p("embedding.name") + dims.where(dims != "None", "")
    out["embedding"] = embedding.where(~name.isin(sorted(EMBEDDING_FREE)), "-")
    clusters, k = p("selector.clusters"), p("k")
    out["clusters"] = np.where(clusters == "None", "-", np.where(clusters == k, "k", clusters))
    if "tags.clusters" in df:  # how the count follows k ('k/2'), logged since hybrid's default
        out["clusters"] = df["tags.clusters"].fillna(pd.Series(out["clusters"], index=df.index))
    out["balance"] = p("selector.balance").str.lower().eq("true")
    full = out["selector"] == "full"
    train_size = df.get("metrics.train_size", pd.Series(np.nan, index=df.index))
    out["k"] = np.where(full, train_size.fillna(0), pd.to_numeric(k, errors="coerce")).astype(int)
    out["regime"] = p("train.regime").replace("None", "-")
    return out


def usual_values(text: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per further setting (param column) that varies between runs, its most common value: of
    the embedding's own settings per embedding (the classifier's epochs are not the
    autoencoder's), of a selector's own per selector (forgetting's score epochs are not el2n's),
    of the rest per recipe regime (a regime's own steps are not an exception).
    Keyed 'regime <name>', 'embedding <name>' and 'selector <name>'."""
    varying = [c for c in text.columns if c not in MAIN_PARAMS and text[c].nunique() > 1]
    own = {by: [c for c in varying if c.startswith(f"params.{by}.")] for by in ("embedding", "selector")}
    rest = [c for c in varying if not any(c in cols for cols in own.values())]
    usual = {}
    for by, cols in (("regime", rest), *own.items()):
        groups = text.get(f"params.{_GROUP_PARAM[by]}", pd.Series("-", index=text.index))
        for name, part in text.groupby(groups):
            usual[f"{by} {name}"] = {c: part[c].mode().iloc[0] for c in cols}
    return usual


_GROUP_PARAM = {"regime": "train.regime", "embedding": "embedding.name", "selector": "selector.name"}


def _usual_for(usual: dict[str, dict[str, str]], row: pd.Series) -> dict[str, str]:
    """The usual values that apply to one run: its regime's, its embedding's and its selector's."""
    keys = [f"{by} {row.get(f'params.{param}', '-')}" for by, param in _GROUP_PARAM.items()]
    return {c: v for key in keys for c, v in usual.get(key, {}).items()}


def annotate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: readable setting columns, `other` (its further settings that differ from the
    most common value, e.g. a second recipe tried on full data only), its curve (the setting
    with k free) and `setting` (the full setting, for grouping seeds)."""
    text = as_text(runs[setting_columns(runs)])
    out = _describe(runs)
    usual = usual_values(text)

    def other(row: pd.Series) -> str:
        typical = _usual_for(usual, row)
        return " ".join(f"{c.removeprefix('params.')}={row[c]}" for c, v in typical.items() if row[c] != v)

    out["other"] = text.apply(other, axis=1) if len(text) else ""
    out["curve"] = out.apply(curve_name, axis=1)
    out["setting"] = text.agg("|".join, axis=1)
    return out


def summarize(runs: pd.DataFrame, min_seeds: int = 5, metric: str = "test_acc") -> pd.DataFrame:
    """One row per setting: quantiles of `metric` over seeds, seed count, median timings."""
    if runs.empty:
        raise ReportError("no FINISHED runs to summarize")
    described = annotate(runs)
    rows = []
    for _, idx in described.groupby("setting").groups.items():
        part = runs.loc[idx]
        acc = part[f"metrics.{metric}"].astype(float)
        first = described.loc[idx[0]]
        q1, q3 = acc.quantile(0.25), acc.quantile(0.75)
        rows.append(
            {
                **{c: first[c] for c in (*MAIN, "other", "curve")},
                "seeds": len(part),
                "median_acc": acc.median(),
                "min_acc": acc.min(),
                "max_acc": acc.max(),
                "q1_acc": q1,
                "q3_acc": q3,
                "iqr_acc": q3 - q1,
                "median_select_seconds": part["metrics.select_seconds"].median(),
                "median_train_seconds": part["metrics.train_seconds"].median(),
                "few_seeds": len(part) < min_seeds,
            }
        )
    return pd.DataFrame(rows).sort_values(["curve", "k"]).reset_index(drop=True)


def per_run(runs: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per run behind the medians (its setting, seed and accuracy, its run id and
    config hash): what a median was taken of, kept beside the summary outside the store."""
    described = annotate(runs)
    out = described[[*MAIN, "other", "curve"]].assign(
        seed=runs["params.seed"].astype(int),
        **{metric: runs[f"metrics.{metric}"].astype(float)},
        select_seconds=runs["metrics.select_seconds"],
        train_seconds=runs["metrics.train_seconds"],
        run_id=runs["run_id"],
        config_hash=runs.get("tags.config_hash"),
    )
    return out.sort_values(["curve", "k", "seed"]).reset_index(drop=True)


def curve_name(row: pd.Series) -> str:
    """A curve is a setting with k free: selector, embedding, clusters, balance, other."""
    parts = [row["selector"]] + ([row["embedding"]] if row["embedding"] != "-" else [])
    if row["clusters"] not in ("-", "k"):
        c = row["clusters"]
        parts.append(f"c{c}" if c.isdigit() else f"c={c}")  # c50, or c=k/2 (two per cluster)
    if row["balance"]:
        parts.append("balanced")
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
    ours[["median_acc", "seeds"]] = summary[["median_acc", "seeds"]]
    clash = ours.duplicated(keys, keep=False)
    if clash.any():
        raise ReportError(f"reference: several settings match {keys}; report one experiment or sweep")
    ref = as_text(reference[keys]).assign(reference=reference["median_acc"].astype(float))
    out = ref.merge(ours[[*keys, "median_acc", "seeds"]], how="left", on=keys)
    return out.assign(difference=out["median_acc"] - out["reference"])


def comparison_markdown(table: pd.DataFrame, reference_name: str, metric: str) -> str:
    """The comparison as a table: a row per curve, a column per k, each cell 'ours / theirs'."""
    clusters = table.get("clusters", pd.Series("-", index=table.index))
    table = table.assign(curve=table["selector"] + np.where(clusters == "-", "", " c" + clusters))
    ks = list(dict.fromkeys(table["k"]))
    lines = [
        "| curve | " + " | ".join(f"k = {k}" for k in ks) + " |",
        "| --- |" + " ---: |" * len(ks),
    ]
    for curve, part in table.groupby("curve", sort=False):
        cells = []
        for k in ks:
            row = part[part["k"] == k]
            if row.empty:
                cells.append("")
                continue
            r = row.iloc[0]
            ours = "not run" if pd.isna(r["median_acc"]) else f"{100 * r['median_acc']:.1f}"
            cells.append(f"{ours} / {100 * r['reference']:.1f}")
        lines.append(f"| {curve} | " + " | ".join(cells) + " |")
    note = f"Each cell: this study's median {metric} / {reference_name}'s, in percent."
    return "\n".join(lines) + "\n\n" + note + "\n"


def answer_table(answer: pd.DataFrame) -> list[str]:
    lines = ["| curve | k run | smallest k | interpolated k |", "| --- | --- | ---: | ---: |"]
    for _, r in answer.iterrows():
        k = "not reached" if pd.isna(r["smallest_k"]) else str(int(r["smallest_k"]))
        ik = "-" if pd.isna(r["interpolated_k"]) else f"{r['interpolated_k']:g}"
        lines.append(f"| {r['curve']} | {r['k_values']} | {k} | {ik} |")
    return lines


def markdown(
    summary: pd.DataFrame,
    answer: pd.DataFrame,
    target: float,
    runs: Runs,
    min_seeds: int,
    metric: str,
    gap: float | None = None,
) -> str:
    usual = usual_values(as_text(runs.finished[setting_columns(runs.finished)]))
    lines = [
        f"| selector | embedding | clusters | balanced | k | regime | seeds | median {metric} | IQR | min "
        "| max | select s | train s |",
        "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for _, r in summary.iterrows():
        seeds = f"{r['seeds']}*" if r["few_seeds"] else str(r["seeds"])
        sel = f"{r['selector']} ({r['other']})" if r["other"] else r["selector"]
        lines.append(
            f"| {sel} | {r['embedding']} | {r['clusters']} | {'yes' if r['balance'] else 'no'} | {r['k']} "
            f"| {r['regime']} | {seeds} | {r['median_acc']:.4f} | {r['iqr_acc']:.4f} | {r['min_acc']:.4f} "
            f"| {r['max_acc']:.4f} | {r['median_select_seconds']:.2f} | {r['median_train_seconds']:.1f} |"
        )
    lines += ["", f"Smallest k whose median {metric} reaches {target:g}:", ""]
    lines += answer_table(answer)
    if gap is not None:
        reference, near = near_full(summary, gap)
        if reference is not None and not near.empty:
            lines += [
                "",
                f"Smallest k whose median {metric} is within {gap:g} of full data's "
                f"({reference:.4f}), i.e. reaches {reference - gap:.4f}:",
                "",
            ]
            lines += answer_table(near)
    notes = [f"{len(runs.finished)} finished runs"]
    alike: dict[tuple[str, str], list[str]] = {}  # groups with the same usual values: one note
    for group, values in usual.items():
        if values:
            by, name = group.split(" ", 1)
            shown = " ".join(f"{c.removeprefix('params.')}={v}" for c, v in values.items())
            alike.setdefault((by, shown), []).append(name)
    for (by, shown), names in alike.items():
        notes.append(f"settings not shown in brackets ({by} {', '.join(names)}): {shown}")
    if (summary["few_seeds"]).any():
        notes.append(f"* fewer than {min_seeds} seeds")
    if runs.left_out:
        notes.append(f"{runs.left_out} failed, killed or running runs left out")
    if runs.duplicates:
        notes.append(f"{runs.duplicates} older duplicate runs left out")
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n"


def with_metric(runs: Runs, metric: str) -> Runs:
    """Only the runs that logged `metric`: tuning runs have val_acc and no test_acc, and the
    other way round, so the two never mix in one table."""
    col = f"metrics.{metric}"
    if col not in runs.finished or runs.finished[col].isna().all():
        raise ReportError(f"no FINISHED run logged {metric!r} (metric: {', '.join(METRICS)})")
    has = runs.finished[col].notna()
    if not has.all():
        log.info("%d runs without %s left out (tuning or test runs of another kind)", (~has).sum(), metric)
    return Runs(runs.finished[has], runs.left_out, runs.duplicates)


def example_rows(runs: pd.DataFrame, montage_k: int | None) -> list[tuple[str, np.ndarray]]:
    """For selected_examples.png: per curve, the kept indices of its lowest-seed run at montage_k."""
    from mlflow.artifacts import download_artifacts

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per run otherwise

    described = annotate(runs)
    described = described[described["selector"] != "full"]
    if described.empty:
        return []
    k = montage_k if montage_k is not None else int(described["k"].min())
    at_k = described[described["k"] == k].assign(seed=runs["params.seed"].astype(int))
    rows = []
    for name, part in at_k.groupby("curve", sort=True):
        run_id = runs.loc[part.sort_values("seed").index[0], "run_id"]
        try:
            path = download_artifacts(run_id=run_id, artifact_path="selected_indices.npy")
        except Exception as e:
            log.warning("no selected_indices.npy for run %s (%s)", run_id, tracking.one_line(e))
            continue
        rows.append((f"{name} (k={k})", np.load(path)))
    return rows


def write_report(cfg: DictConfig) -> Path:
    if cfg.metric not in METRICS:
        raise ReportError(f"metric={cfg.metric!r}: must be one of {', '.join(METRICS)}")
    if cfg.results_file:  # check the markers before any work
        block_of(Path(cfg.results_file), Path(cfg.out_dir).name)
    if cfg.reference and not Path(cfg.reference).is_file():
        raise ReportError(f"reference={cfg.reference}: no such file (a CSV of selector, k, median_acc)")
    m = cfg.mlflow
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = latest_finished(fetch_runs(m.tracking_uri, m.experiment_name, cfg.sweep))
    if runs.left_out:
        log.warning("%d FAILED, KILLED or RUNNING runs are left out of the report", runs.left_out)
    if runs.finished.empty:
        raise ReportError(f"experiment {m.experiment_name!r} at {m.tracking_uri} has no FINISHED runs")
    runs = with_metric(runs, cfg.metric)
    summary = summarize(runs.finished, cfg.min_seeds, cfg.metric)
    answer = smallest_k(summary, cfg.target_acc)
    summary.to_csv(out / "summary.csv", index=False)
    per_run(runs.finished, cfg.metric).to_csv(out / "runs.csv", index=False)
    answer.to_csv(out / "smallest_k.csv", index=False)
    md = markdown(summary, answer, cfg.target_acc, runs, cfg.min_seeds, cfg.metric, cfg.near_full)
    if cfg.reference:
        table = compare(summary, pd.read_csv(cfg.reference, dtype=str))
        table.to_csv(out / "comparison.csv", index=False)
        md += "\n" + comparison_markdown(table, Path(cfg.reference).stem, cfg.metric)
    (out / "summary.md").write_text(md)
    print(md)
    if cfg.results_file:
        fill_block(Path(cfg.results_file), out.name, md)
        log.info("tables written into %s (block report:%s)", cfg.results_file, out.name)

    curves = summary[summary["selector"] != "full"]
    full = summary[summary["selector"] == "full"]
    reference = float(full["median_acc"].max()) if not full.empty else None
    figures.save_curves(
        out / "accuracy_vs_size.png",
        curves,
        "median_acc",
        f"median {cfg.metric}",
        band=("min_acc", "max_acc"),
        target=cfg.target_acc,
        reference=reference,
        zoom=(cfg.target_acc - 0.1, 1.0),
    )
    timed = curves.assign(seconds=curves["median_select_seconds"] + curves["median_train_seconds"])
    figures.save_curves(out / "time_vs_size.png", timed, "seconds", "median seconds (select + train)")
    try:
        from mnist_pruning.data import load_mnist

        data = load_mnist(cfg.data.root, download=False, verify=cfg.data.verify)
        rows = example_rows(runs.finished, cfg.montage_k)
        if rows:
            figures.save_examples(out / "selected_examples.png", rows, data.train_images.numpy())
    except Exception as e:  # the tables are the report; the montage is a bonus
        log.warning("selected_examples.png skipped: %s", tracking.one_line(e))
    log_report(cfg, out)
    return out


def block_of(path: Path, name: str) -> tuple[str, str, str]:
    """The document, and the markers of the block `name` the report writes into."""
    begin, end = f"<!-- report:{name} -->", f"<!-- /report:{name} -->"
    doc = path.read_text() if path.exists() else ""
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise ReportError(f"results_file={path}: needs one line {begin!r} and one later line {end!r}")
    return doc, begin, end


def fill_block(path: Path, name: str, text: str) -> None:
    """Write `text` between the `<!-- report:name -->` and `<!-- /report:name -->` lines of a
    markdown file, leaving the rest alone: RESULTS.md quotes the report, never a hand copy."""
    doc, begin, end = block_of(path, name)
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")


def log_report(cfg: DictConfig, out: Path) -> None:
    """The report's files as artifacts of a run of its own, beside the runs it summarizes."""
    import mlflow

    m = cfg.mlflow
    experiment_id = tracking.ensure_experiment(m.tracking_uri, m.experiment_name, m.artifact_root)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"report-{out.name}", tags={"kind": REPORT_TAG}
    ):
        mlflow.log_params({"target_acc": cfg.target_acc, "out_dir": str(out)})
        mlflow.log_artifacts(str(out))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="report")
def main(cfg: DictConfig) -> None:
    try:
        out = write_report(cfg)
    except (ReportError, tracking.TrackingError) as e:
        log.error("%s", e)
        sys.exit(1)
    log.info("report written to %s", out)


if __name__ == "__main__":
    main()
