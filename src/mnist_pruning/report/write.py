"""The report's entrypoint: runs -> summary -> csv, markdown and plots in `out_dir`, the tables
into a results file, and the files as artifacts of a report run in MLflow."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mnist_pruning import figures, tracking
from mnist_pruning.config import CONF_DIR, register_configs
from mnist_pruning.report.archive import COLUMNS, check_archive, merge, read_archive
from mnist_pruning.report.markdown import (
    block_of,
    comparison_markdown,
    fill_block,
    markdown,
    network_table,
    paired_table,
)
from mnist_pruning.report.runs import (
    METRICS,
    REPORT_TAG,
    ReportError,
    Runs,
    fetch_runs,
    latest_finished,
    latest_regime,
    with_metric,
)
from mnist_pruning.report.studies import study_tables
from mnist_pruning.report.summary import annotate, compare, per_run, smallest_k, summarize_rows

log = logging.getLogger(__name__)
register_configs()


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


def write_subsets(runs: pd.DataFrame, folder: Path) -> int:
    """Each distinct subset the runs trained, as `folder/<subset tag>.txt`: its indices into the
    60,000 training images, sorted, space-separated, what `selector=fixed selector.indices=`
    reads. So a study's subsets train again under another model or recipe on a machine without
    its store (a learned embedding's fit differs from machine to machine). A run whose
    `selected_indices.npy` does not give back its `subset` tag is an error, not a file."""
    from mlflow.artifacts import download_artifacts

    from mnist_pruning.cache import array_digest

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tags = runs.get(f"tags.{tracking.SUBSET_TAG}", pd.Series(dtype=object)).dropna()
    folder.mkdir(parents=True, exist_ok=True)
    for run_id, digest in zip(runs.loc[tags.index, "run_id"], tags, strict=True):
        kept = np.sort(np.load(download_artifacts(run_id=run_id, artifact_path="selected_indices.npy")))
        if array_digest(kept.astype(np.int64))[:16] != digest:
            raise ReportError(
                f"run {run_id}: its selected_indices.npy is not the subset {digest} it is tagged"
            )
        (folder / f"{digest}.txt").write_text(" ".join(map(str, kept)) + "\n")
    return tags.nunique()


def write_report(cfg: DictConfig) -> Path:
    if cfg.metric not in METRICS:
        raise ReportError(f"metric={cfg.metric!r}: must be one of {', '.join(METRICS)}")
    if cfg.results_file:  # check the markers before any work
        block_of(Path(cfg.results_file), Path(cfg.out_dir).name)
    if cfg.reference and not Path(cfg.reference).is_file():
        raise ReportError(f"reference={cfg.reference}: no such file (a CSV of selector, k, median_acc)")
    if cfg.archive and cfg.sweep:
        raise ReportError("archive= with sweep=: a runs.csv names no sweep; report one or the other")
    check_archive(list(cfg.archive), cfg.metric)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs, rows = store_rows(cfg)
    rows, taken = merge(rows, read_archive(list(cfg.archive), cfg.metric))
    for path, n in taken.items():
        log.info("%d runs from %s (runs the store lacks)", n, path)
    summary = summarize_rows(rows, cfg.min_seeds, cfg.metric)
    for (curve, k), part in summary.groupby(["curve", "k"]):
        if len(part) > 1:
            log.warning(
                "%s at k=%s ran under the regimes %s, a row each: the smallest-k tables read either; "
                "latest_regime=true keeps the newest",
                curve,
                k,
                ", ".join(part["regime"]),
            )
    answer = smallest_k(summary, cfg.target_acc)
    paired = paired_table(rows, cfg.paired, cfg.metric) if cfg.paired else ""  # a bad base: before any file
    summary.to_csv(out / "summary.csv", index=False)
    rows.to_csv(out / "runs.csv", index=False)
    answer.to_csv(out / "smallest_k.csv", index=False)
    md = markdown(summary, answer, cfg.target_acc, runs, cfg.min_seeds, cfg.metric, cfg.near_full, taken)
    networks = network_table(rows, cfg.metric, cfg.min_seeds)
    if networks:
        md += "\n" + networks
    if paired:
        md += "\n" + paired
    studies = study_tables(runs.finished, cfg.metric) if not runs.finished.empty else ""
    if studies:
        md += "\n" + studies
    if cfg.reference:
        table = compare(summary, pd.read_csv(cfg.reference, dtype=str))
        table.to_csv(out / "comparison.csv", index=False)
        md += "\n" + comparison_markdown(table, Path(cfg.reference).stem, cfg.metric, cfg.min_seeds)
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
        rows = example_rows(runs.finished, cfg.montage_k) if not runs.finished.empty else []
        if rows:
            figures.save_examples(out / "selected_examples.png", rows, data.train_images.numpy())
    except Exception as e:  # the tables are the report; the montage is a bonus
        log.warning("selected_examples.png skipped: %s", tracking.one_line(e))
    if cfg.subsets:
        n = write_subsets(runs.finished, out / "subsets")
        log.info("%d distinct subsets written to %s", n, out / "subsets")
    log_report(cfg, out)
    return out


def store_rows(cfg: DictConfig) -> tuple[Runs, pd.DataFrame]:
    """The store's finished runs of the experiment and their per-run rows; with `archive`, a
    store without the experiment (or its runs) is no error: the files may hold them all."""
    m = cfg.mlflow
    try:
        runs = latest_finished(fetch_runs(m.tracking_uri, m.experiment_name, cfg.sweep))
    except ReportError:
        if not cfg.archive:
            raise
        runs = Runs(pd.DataFrame(), 0, 0)
    if runs.left_out:
        log.warning("%d FAILED, KILLED or RUNNING runs are left out of the report", runs.left_out)
    if runs.finished.empty:
        if not cfg.archive:
            raise ReportError(f"experiment {m.experiment_name!r} at {m.tracking_uri} has no FINISHED runs")
        return runs, pd.DataFrame(columns=[*COLUMNS, cfg.metric])
    runs = with_metric(latest_regime(runs) if cfg.latest_regime else runs, cfg.metric)
    return runs, per_run(runs.finished, cfg.metric)


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
