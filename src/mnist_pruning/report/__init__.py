"""Post-hoc report: medians across seeds, the smallest k reaching the target, tables and plots.

    python -m mnist_pruning.report
    python -m mnist_pruning.report target_acc=0.95 out_dir=reports/small

Reads the finished runs of the experiment the train entrypoint writes to, keeps the newest run of
each setting + seed (a re-run sweep never double counts), and writes summary.csv, summary.md
and the plots to `out_dir`, and as artifacts of a report run in MLflow. One module per step:
`runs` (the store) -> `summary` (medians, answers) -> `markdown` (tables, results file) ->
`write` (the entrypoint that writes it all); `studies` reads the tuner's studies trial by trial;
`archive` reads a committed runs.csv back where the store that held its runs is gone.
"""

from mnist_pruning.report.archive import check_archive, merge, read_archive
from mnist_pruning.report.markdown import (
    answer_table,
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
    as_text,
    fetch_runs,
    latest_finished,
    latest_regime,
    setting_columns,
    setting_text,
    with_metric,
)
from mnist_pruning.report.studies import study_tables
from mnist_pruning.report.summary import (
    annotate,
    compare,
    curve_name,
    full_reference,
    near_full,
    per_run,
    smallest_k,
    summarize,
    summarize_rows,
    usual_values,
)
from mnist_pruning.report.write import example_rows, log_report, main, write_report, write_subsets

__all__ = [
    "METRICS",
    "REPORT_TAG",
    "ReportError",
    "Runs",
    "annotate",
    "answer_table",
    "check_archive",
    "as_text",
    "block_of",
    "compare",
    "comparison_markdown",
    "curve_name",
    "example_rows",
    "fetch_runs",
    "fill_block",
    "full_reference",
    "latest_finished",
    "latest_regime",
    "log_report",
    "main",
    "markdown",
    "merge",
    "near_full",
    "network_table",
    "paired_table",
    "per_run",
    "read_archive",
    "setting_columns",
    "setting_text",
    "smallest_k",
    "study_tables",
    "summarize",
    "summarize_rows",
    "usual_values",
    "with_metric",
    "write_report",
    "write_subsets",
]
