"""The tuner's studies as tables: a row per trial with the settings it tried, rounded, and the
median of its seeds. The summary table names each trial by every unrounded float it differs in;
a study is read by trial."""

from __future__ import annotations

import pandas as pd

STUDY_TAG = "tags.tune_study"
TRIAL_TAG = "tags.tune_trial"


def _short(value: str) -> str:
    """A param as the table shows it: a number to 3 significant figures, anything else as logged."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.3g}" if number != int(number) else f"{int(number)}"


def study_tables(runs: pd.DataFrame, metric: str) -> str:
    """Per study (runs tagged `tune_study`): its trials in the order they first ran, the
    `train.*` settings that vary across them, the seeds finished and the median `metric`; the
    best of the trials with the most seeds in bold. A trial is its settings, not its
    `tune_trial` tag: a study resumed with another start (tune.enqueue_regime) numbers the
    trials it reads back anew. Empty when no run belongs to a study."""
    if STUDY_TAG not in runs or runs[STUDY_TAG].isna().all():
        return ""
    col = f"metrics.{metric}"
    out = []
    for study, part in runs[runs[STUDY_TAG].notna()].groupby(STUDY_TAG, sort=True):
        params = [c for c in sorted(part) if c.startswith("params.train.") and part[c].nunique() > 1]
        part = part.assign(score=part[col].astype(float)).sort_values("start_time")
        groups = part.groupby(params, sort=False) if params else [((), part)]
        trials = [(key, g["score"]) for key, g in groups]
        most = max(len(scores) for _, scores in trials)
        best = max((scores.median(), i) for i, (_, scores) in enumerate(trials) if len(scores) == most)[1]
        header = [*(c.removeprefix("params.train.") for c in params), "seeds", f"median {metric}"]
        lines = [
            f"Study `{study}` ({len(trials)} trials, in the order they first ran; median {metric} "
            "over each trial's seeds):",
            "",
            "| " + " | ".join(header) + " |",
            "|" + " ---: |" * len(header),
        ]
        for i, (key, scores) in enumerate(trials):
            values = key if isinstance(key, tuple) else (key,)
            median = f"{scores.median():.4f}"
            cells = [*(_short(v) for v in values[: len(params)]), str(len(scores))]
            lines.append("| " + " | ".join([*cells, f"**{median}**" if i == best else median]) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)
