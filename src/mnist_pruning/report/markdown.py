"""The report as markdown: the summary table, the answers, a comparison with another study, and
the blocks of a results file (RESULTS.md) the tables are written into."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mnist_pruning.report.runs import ReportError, Runs, setting_text
from mnist_pruning.report.summary import DEFAULT_MODEL, PROTOCOLS, curve_name, near_full, usual_values


def comparison_markdown(table: pd.DataFrame, reference_name: str, metric: str, min_seeds: int) -> str:
    """The comparison as a table: a row per curve, a column per k, each cell 'ours / theirs';
    ours marked * when the summary flagged it (fewer than `min_seeds` seeds: a sweep still running)."""
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
            if pd.isna(r["median_acc"]):
                ours = "not run"
            else:
                ours = f"{100 * r['median_acc']:.1f}" + ("*" if r["few_seeds"] else "")
            cells.append(f"{ours} / {100 * r['reference']:.1f}")
        lines.append(f"| {curve} | " + " | ".join(cells) + " |")
    note = f"Each cell: this study's median {metric} / {reference_name}'s, in percent"
    note += f"; * fewer than {min_seeds} seeds." if table["few_seeds"].eq(True).any() else "."
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
    archived: pd.Series | None = None,
) -> str:
    """The table, the answers and the notes; `archived`: per runs.csv file, the runs taken from it."""
    usual = usual_values(setting_text(runs.finished))
    # the network's column only where another than LeNet-5 was trained: earlier reports read alike
    models = summary["model"] if "model" in summary else pd.Series(DEFAULT_MODEL, index=summary.index)
    show_model = bool((models != DEFAULT_MODEL).any())
    lines = [
        f"| selector | embedding | clusters | balanced | k | regime | {'model | ' if show_model else ''}"
        f"seeds | subsets | median {metric} | IQR | min | max | select s | train s |",
        "| --- | --- | --- | --- | ---: | --- |"
        + (" --- |" if show_model else "")
        + " ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (_, r), model in zip(summary.iterrows(), models, strict=True):
        seeds = f"{r['seeds']}*" if r["few_seeds"] else str(r["seeds"])
        sel = f"{r['selector']} ({r['other']})" if r["other"] else r["selector"]
        subsets = "-" if pd.isna(r["subsets"]) else str(int(r["subsets"]))
        lines.append(
            f"| {sel} | {r['embedding']} | {r['clusters']} | {'yes' if r['balance'] else 'no'} | {r['k']} "
            f"| {r['regime']} | {f'{model} | ' if show_model else ''}{seeds} | {subsets} "
            f"| {r['median_acc']:.4f} | {r['iqr_acc']:.4f} | {r['min_acc']:.4f} "
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
    notes = [f"{int(summary['seeds'].sum())} finished runs"]
    for path, n in (archived if archived is not None else pd.Series(dtype=int)).items():
        notes.append(f"{n} of them read from {path} (runs the store lacks)")
    notes.append(subsets_note(summary))
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
    if runs.superseded:
        notes.append(f"{runs.superseded} runs of a superseded regime left out (latest_regime=true)")
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n"


def trained_by(rows: pd.DataFrame) -> pd.Series:
    """What trained a run, as the network table's columns name it: `mlp, dc_protocol`, or
    `lenet5, regimes` under the study's size regimes."""
    recipe = np.where(rows["regime"].isin(PROTOCOLS), rows["regime"], "regimes")
    return rows["model"].fillna(DEFAULT_MODEL) + ", " + pd.Series(recipe, index=rows.index)


NETWORK_ORDER = ("lenet5, regimes", "lenet5, dc_protocol", "mlp, dc_protocol", "convnet3, dc_protocol")


def network_table(rows: pd.DataFrame, metric: str, min_seeds: int) -> str:
    """Where subsets were trained under more than one network or recipe (`model=`,
    `train=dc_protocol`): per curve and k, the median under each side by side, and the distinct
    subsets all of them trained together, which equals the seeds where every network saw the
    same images (then what moves along a row is the network and recipe, not the images). A
    `selector=fixed` run that trained another run's subset (the same `subset` digest) shares
    that run's row."""
    r = rows[rows["selector"] != "full"].copy()
    if r.empty or "model" not in r:
        return ""
    # a train.* setting beside the recipe's (train.augmentation=dc) names the column, the rest the row
    tokens = r["other"].fillna("").str.split()
    trained_other = tokens.apply(lambda t: " ".join(x for x in t if x.startswith("train.")))
    r["other"] = tokens.apply(lambda t: " ".join(x for x in t if not x.startswith("train.")))
    r["trained"] = trained_by(r) + trained_other.apply(lambda t: f" ({t.replace('train.', '')})" if t else "")
    if r["trained"].nunique() < 2:
        return ""
    r["name"] = [curve_name(row) for _, row in r.assign(model=DEFAULT_MODEL, regime="-").iterrows()]
    # a transfer (selector=fixed) reads as the curve whose subset it trained: one row a search
    source = r[(r["selector"] != "fixed") & r["subset"].notna()].drop_duplicates("subset")
    source = source.set_index("subset")["name"]
    transfer = (r["selector"] == "fixed") & r["subset"].isin(source.index)
    r.loc[transfer, "name"] = r.loc[transfer, "subset"].map(source)
    present = set(r["trained"])
    columns = [c for c in NETWORK_ORDER if c in present] + sorted(present - set(NETWORK_ORDER))
    lines = [
        f"Median {metric} of the same subsets under each network and recipe (`regimes`: the study's "
        "size regimes; `dc_protocol`: the condensation benchmark's evaluation):",
        "",
        f"| curve | k | {' | '.join(columns)} | seeds | subsets |",
        "| --- | ---: |" + " ---: |" * len(columns) + " ---: | ---: |",
    ]
    for (name, k), part in r.groupby(["name", "k"], sort=True):
        by = part.groupby("trained")[metric]
        med, n = by.median(), by.size()
        cells = ["-" if c not in med else f"{med[c]:.4f}{'*' if n[c] < min_seeds else ''}" for c in columns]
        subsets = str(part["subset"].nunique()) if part["subset"].notna().all() else "-"
        lines.append(f"| {name} | {k} | {' | '.join(cells)} | {part['seed'].nunique()} | {subsets} |")
    return "\n".join(lines) + "\n"


PAIR_KEYS = ("selector", "embedding", "clusters", "balance", "k", "regime", "model", "seed")


def paired_table(rows: pd.DataFrame, base: str, metric: str) -> str:
    """Each setting against `base` (a setting's text in brackets: a run label such as `control`),
    seed by seed: a run and its base share the selector, embedding, k, network, recipe and seed
    (so, in search2, the same fit, holdout and pool), and the gain is the difference of the two.
    The median of the gains and how many are above zero say more than two medians side by side
    where the seeds' spread is wider than the gain."""
    r = rows[rows["selector"] != "full"]
    if not (r["other"] == base).any():
        shown = sorted(set(r["other"]) - {""})
        raise ReportError(f"paired={base!r}: no setting reads ({base}); in brackets here: {shown or 'none'}")
    keys = list(PAIR_KEYS)
    joined = r[r["other"] != base].merge(
        r.loc[r["other"] == base, [*keys, metric]], on=keys, suffixes=("", "_base")
    )
    if joined.empty:
        return ""
    joined["gain"] = (joined[metric] - joined[f"{metric}_base"]) * 100
    joined["network"] = trained_by(joined)
    lines = [
        f"{metric} against ({base}), seed by seed (the same selector, embedding, k, network, recipe "
        "and seed), in points:",
        "",
        "| setting | network | k | pairs | median gain | above | gains by seed |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    setting = joined["selector"] + " (" + joined["other"].where(joined["other"] != "", "-") + ")"
    for (name, network, k), part in joined.groupby([setting, "network", "k"], sort=True):
        part = part.sort_values("seed")
        gains = " / ".join(f"{g:+.2f}" for g in part["gain"])
        above = f"{int((part['gain'] > 0).sum())} of {len(part)}"
        lines.append(
            f"| {name} | {network} | {k} | {len(part)} | {part['gain'].median():+.2f} | {above} | {gains} |"
        )
    return "\n".join(lines) + "\n"


def subsets_note(summary: pd.DataFrame) -> str:
    """Per curve, whether its seeds drew distinct subsets: a median over seeds that trained on
    one subset measures training noise only, not the method's."""
    curves = summary[summary["selector"] != "full"]
    if curves.empty:
        return "subsets: full data only (one subset, the whole pool)"
    known = curves[curves["subsets"].notna()]
    if known.empty:
        return "subsets: not recorded (runs logged before the subset tag)"
    shared = []
    for curve, part in known.groupby("curve", sort=True):
        fewer = part[part["subsets"] < part["seeds"]]
        if not fewer.empty:
            cells = ", ".join(f"k = {r.k}: {int(r.subsets)} of {r.seeds}" for r in fewer.itertuples())
            shared.append(f"{curve} ({cells})")
    text = "subsets: the distinct subsets among a setting's seeds (the digests of their kept indices)"
    if not shared:
        return f"{text}; every seed of every setting drew a subset of its own"
    return f"{text}; seeds that shared subsets: {'; '.join(shared)}"


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
