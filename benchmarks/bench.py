"""Measure what makes a sweep fast, as ratios within one run of this script.

    python benchmarks/bench.py                 # everything: hours on 2 cores (the proxy part 3-4 h)
    python benchmarks/bench.py --tiny          # seconds: checks that the script still works
    python benchmarks/bench.py --only proxy    # one part, merged into an existing --out file;
                                               # the proxy part resumes from its ledger

Prints a table and writes JSON (--out, default benchmarks/results.json). The parts, each in a
module beside this script:
- loops (training_bench.py): training images/s, the project's loop (channels_last) vs a plain
  PyTorch loop (NCHW) over the same in-memory tensors vs the original harness's DataLoader over
  PIL images; what augmentation costs on top of a step; the entrypoint run as a user runs it
  (a single run, no thread override: its `torch_threads` and rate beside the plain loop's);
  k-means cold fits against scikit-learn's KMeans (n_init=1); warm selection of the cluster
  rules (k-means cached);
- sweeps (sweep_bench.py): per-run overhead outside training, cold and warm; an 8-run sweep, one
  job at a time (`hydra/launcher=basic`) vs the default launcher (as many jobs as cores and
  memory allow); from it the projected wall time of `+experiment=frontier`;
- selection (selection_bench.py): cold and warm selection time of hybrid, herding, facility
  location, EL2N, forgetting and the classifier embedding, facility location's peak memory;
- newer (selection_bench.py): the same for probcover, ccs, moderate, grand and uncertainty at
  k = 10,000, and the contrastive embedding's fit;
- proxy (proxy_bench.py): the search's proxies (the first generation's and recipes of their
  own) and the cheap screens of `mnist_pruning.screens` (RBF and NTK kernel ridge regression,
  1-nearest-neighbour) at k = 10 and 20: seconds per evaluation and fidelity to the full
  recipe's held-out accuracy over mixed subsets, within strong alike ones, and on pairs one swap
  apart, beside the full recipe's own noise;
- sizes (training_bench.py): seconds per 1,000 steps of the recipe at each large-end size and
  full data, and `+experiment=large_end` projected from them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from common import REPO, config  # noqa: E402, F401  (config: for tests and interactive use)
from proxy_bench import LEDGER, bench_proxy, proxy_table  # noqa: E402
from selection_bench import (  # noqa: E402
    NEWER_METHODS,
    bench_contrastive_fit,
    bench_facility_location_memory,
    bench_kmeans,
    bench_methods,
    bench_warm_selection,
)
from sweep_bench import bench_overhead_and_parallel, experiment_jobs, job_steps, projected_wall  # noqa: E402, F401
from training_bench import bench_entrypoint, bench_sizes, bench_training  # noqa: E402

from mnist_pruning.data import load_mnist  # noqa: E402
from mnist_pruning.embed import pca  # noqa: E402


def methods_table(rows: list[dict]) -> list[str]:
    return [
        f"| selection, {r['method']}, k={r['k']:,}: cold / warm | {r['cold_seconds']:.1f} s / "
        f"{r['warm_seconds']:.2f} s |"
        for r in rows
    ]


def bench_loops(root: str, tiny: bool) -> dict:
    """Training throughput, k-means against scikit-learn's, warm selection of the cluster rules."""
    data = load_mnist(root)
    x = pca(data.train_flat(), 50)
    labels = data.train_labels.numpy()
    out: dict = {"tiny": tiny, "threads": torch.get_num_threads()}
    out["training"] = bench_training(root, 20 if tiny else 1000, chunk=10 if tiny else 50)
    out["single_run"] = bench_entrypoint(root, 20 if tiny else 1000)
    if tiny:
        sub = np.random.default_rng(0).choice(len(x), 2000, replace=False)
        out["kmeans"] = bench_kmeans(x[sub], [10, 50])
    else:
        out["kmeans"] = bench_kmeans(x, [100, 1200, 10_000])
    with tempfile.TemporaryDirectory() as cache_dir:
        xs = x[:2000] if tiny else x
        out["warm_selection"] = bench_warm_selection(xs, labels[: len(xs)], 50 if tiny else 10_000, cache_dir)
    return out


def loops_table(results: dict) -> list[str]:
    t, n = results["training"], results["threads"]
    lines = [
        f"| training images/s, project loop (augment off) | {t['images_per_s_project']:,.0f} |",
        f"| training images/s, plain in-memory loop | {t['images_per_s_plain']:,.0f} |",
        f"| training images/s, PIL DataLoader pipeline | {t['images_per_s_pil_dataloader']:,.0f} |",
        f"| project vs plain loop | {t['project_vs_plain']:.2f}x |",
        f"| project vs PIL DataLoader | {t['project_vs_pil']:.2f}x |",
        f"| augmentation share of a step | {100 * t['augment_share_of_step']:.0f}% |",
        f"| training images/s, project loop on 1 thread | {t['images_per_s_project_1_thread']:,.0f} |",
        f"| one job on {n} threads vs 1 thread | {t['all_threads_vs_1_thread']:.2f}x |",
        f"| bound on the {n}-job speed-up ({n} x 1-thread rate / {n}-thread rate) "
        f"| {t['parallel_speedup_bound']:.2f}x |",
    ]
    if "single_run" in results:
        r = results["single_run"]
        lines += [
            f"| a single run as a user starts it (`{r['command']}`): torch threads of {r['cores']} cores "
            f"| {r['torch_threads']} |",
            f"| training images/s, that run / the plain loop around it | {r['images_per_s_run']:,.0f} / "
            f"{r['images_per_s_plain']:,.0f} = {r['run_vs_plain']:.2f}x |",
        ]
    for r in results["kmeans"]:
        lines.append(
            f"| k-means cold fit, k={r['k']:,} (scikit-learn's) | {r['seconds']:.1f} s "
            f"({r['sklearn_seconds']:.1f} s), inertia {r['inertia_vs_sklearn']:.4f}x scikit-learn's |"
        )
    w = results["warm_selection"]
    slowest = max(w["warm_select_seconds"].values())
    return lines + [f"| warm selection, k={w['k']:,}, slowest cluster selector | {slowest:.2f} s |"]


def bench_sweeps(root: str, tiny: bool) -> dict:
    """A sweep one job at a time against the default launcher, and the frontier projected."""
    sample_steps = 5 if tiny else 1500
    sweep = bench_overhead_and_parallel(root, sample_steps, 2 if tiny else 8, 20 if tiny else 1000, tiny)
    sweep["sample_steps"] = sample_steps
    return {"sweep": sweep, "projection": projected_wall("frontier", sweep)}


def sweeps_table(results: dict) -> list[str]:
    o, p = results["sweep"], results["projection"]
    seq, par = o["sweep_sequential_seconds"], o["sweep_default_seconds"]
    return [
        "| per-run overhead outside training, cold (new process, empty cache) "
        f"| {o['cold_overhead_seconds']:.1f} s |",
        "| per-run overhead outside training, warm (in a multirun) "
        f"| {o['warm_overhead_seconds_median']:.2f} s |",
        f"| {o['sweep_runs']}-run sweep, sequential / the default launcher ({o['default_jobs']} jobs) "
        f"| {seq:.0f} s / {par:.0f} s = {o['parallel_speedup']:.2f}x |",
        f"| cached one-step run (`train.steps=1`), wall time | {o['one_step_run_wall_seconds']:.1f} s |",
        f"| `+experiment={p['experiment']}` projected on {p['jobs']} jobs ({p['runs']} runs, "
        f"{p['steps']:,} steps) | {p['minutes']:.0f} min |",
    ]


def bench_selection(root: str, tiny: bool) -> dict:
    """The methods' selection cost, and facility location's memory at k = 10,000."""
    with tempfile.TemporaryDirectory() as cache_dir:
        methods = bench_methods(root, [20] if tiny else [100, 10_000], cache_dir, tiny)
    k, n = (50, 2000) if tiny else (10_000, 60_000)
    return {"methods": methods, "facility_location": bench_facility_location_memory(root, k, n)}


def selection_table(results: dict) -> list[str]:
    f = results["facility_location"]
    return methods_table(results["methods"]) + [
        f"| facility location, k={f['k']:,} of {f['pool']:,}, fresh process: time, peak memory "
        f"| {f['seconds']:.1f} s, {f['peak_gib']:.2f} GiB |"
    ]


def bench_newer(root: str, tiny: bool) -> dict:
    """The newer baselines' selection cost and the contrastive embedding's fit."""
    with tempfile.TemporaryDirectory() as cache_dir:
        methods = bench_methods(root, [20] if tiny else [10_000], cache_dir, tiny, NEWER_METHODS)
        contrastive = bench_contrastive_fit(root, cache_dir, tiny)
    return {"newer": {"methods": methods, "contrastive": contrastive}}


def newer_table(results: dict) -> list[str]:
    n = results["newer"]
    c = n["contrastive"]
    return methods_table(n["methods"]) + [
        f"| contrastive embedding, {c['epochs']} epochs on {c['pool']:,} images: fit / cached "
        f"| {c['cold_seconds']:.0f} s / {c['warm_seconds']:.2f} s |"
    ]


def bench_sizes_part(root: str, tiny: bool) -> dict:
    return {"sizes": bench_sizes(root, 5 if tiny else 300)}


def sizes_table(results: dict) -> list[str]:
    s = results["sizes"]
    lines = []
    for r in s["sizes"]:
        size = "full data" if r["size"] == "full" else f"size {r['size']:,}"
        lines.append(
            f"| training, {size} ({r['regime']} regime), {s['threads']} threads: seconds per 1,000 steps "
            f"| {r['seconds_per_1000_steps']:.1f} s |"
        )
    return lines + [
        f"| `+experiment=large_end` ({s['large_end_runs']} runs), training alone, one job at a time "
        f"| {s['large_end_training_hours']:.1f} h |"
    ]


def bench_proxy_part(root: str, tiny: bool, workers: int = 2, sizes: list[int] | None = None) -> dict:
    return {"proxy": bench_proxy(root, tiny, workers, None if tiny else LEDGER, sizes)}


# each part: what it measures (keys of the results) and its rows of the table, in table order
PARTS = {
    "loops": (bench_loops, loops_table),
    "sweeps": (bench_sweeps, sweeps_table),
    "selection": (bench_selection, selection_table),
    "newer": (bench_newer, newer_table),
    "proxy": (bench_proxy_part, lambda results: proxy_table(results["proxy"])),
    "sizes": (bench_sizes_part, sizes_table),
}


def table(results: dict) -> str:
    lines = ["| measure | value |", "| --- | --- |"]
    return "\n".join(lines + [row for _, rows in PARTS.values() for row in rows(results)])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds, to check the script works")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    parser.add_argument("--root", default=os.environ.get("MNIST_DATA_DIR", "data"))
    parser.add_argument("--only", choices=list(PARTS), help="measure only this part, merged into --out")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count(),
        help="processes for the proxy part's full-recipe trainings",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="the proxy part's k (default 10 and 20): one size's table alone"
    )
    a = parser.parse_args(argv)
    out = Path(a.out)
    results = json.loads(out.read_text()) if a.only and out.exists() else {}
    for name, (measure, rows) in PARTS.items():
        if a.only in (None, name):
            own = {"workers": a.workers, "sizes": a.sizes} if name == "proxy" else {}
            results.update(measure(a.root, a.tiny, **own))
            if a.only:
                print("\n".join(rows(results)))
    if not a.only:
        print(table(results))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
