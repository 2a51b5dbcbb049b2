"""Measure what makes a sweep fast, as ratios within one run of this script.

    python benchmarks/bench.py                 # the full measurement (about 25 minutes on 2 cores)
    python benchmarks/bench.py --tiny          # seconds: checks that the script still works

Prints a table and writes JSON (--out, default benchmarks/results.json):
- training images/s: the project's loop (channels_last) vs a plain PyTorch loop (NCHW) over the
  same in-memory tensors vs the original harness's DataLoader over PIL images with per-image
  transforms; and what augmentation (affine + elastic) costs on top of a step;
- k-means cold fit time and inertia, this project's vs scikit-learn's KMeans (n_init=1);
- warm selection time (k-means fit cached); cold and warm selection time of each newer method
  (hybrid, herding, facility location, EL2N, forgetting, the classifier embedding), and facility
  location's peak memory at k = 10,000;
- per-run overhead outside training (run wall time minus train_seconds), cold and warm, and the
  wall time of a cached one-step run;
- an 8-run sweep, sequential vs the default launcher (parallel: as many jobs as cores and
  memory allow), and from it the projected wall time of `+experiment=frontier` on this machine;
- the search's proxy: seconds per evaluation and fidelity (Spearman rank correlation between
  the proxy's score and the full recipe's held-out accuracy over 24 subsets of k = 20) for a few
  proxy settings (`--only proxy` measures just this, about 45 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnist_pruning_sweeper.grid_sweeper import expand
from mnist_pruning.cache import Cache
from mnist_pruning.cluster import kmeans
from mnist_pruning.config import CONF_DIR
from mnist_pruning.data import load_mnist
from mnist_pruning.embed import pca
from mnist_pruning.model import LeNet5
from mnist_pruning.progress import parallel_jobs
from mnist_pruning.selectors import SCORED_SELECTORS, Options, select
from mnist_pruning.subset import cached_kmeans, embedding_of, recipe_of, scores_of
from mnist_pruning.training import Recipe, normalize, train

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from proxy_bench import bench_proxy, proxy_table  # noqa: E402

MEAN, STD = 0.1307, 0.3081


def config(overrides: list[str]) -> DictConfig:
    """The training config as a run would compose it (conf/ is the single source of settings)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def recipe(steps: int, augment: bool) -> Recipe:
    """The recipe of a k = 100 run (affine + elastic maps when augmenting), for `steps` steps."""
    cfg = config(["k=100", f"train.steps={steps}", f"train.augment={augment}", "train.log_every=0"])
    return recipe_of(cfg)


class ProjectLoop:
    """The project's `training.train`, run a chunk of steps per call (its own timer)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, augment: bool) -> None:
        self.x, self.y, self.augment = x, y, augment

    def run(self, steps: int) -> float:
        res = train(self.x, self.y, {}, recipe(steps, self.augment), seed=0, device=torch.device("cpu"))
        return res.train_seconds


class OneThread:
    """A loop run on one thread: what each of the jobs of a 2-job sweep on 2 cores gets."""

    def __init__(self, loop: ProjectLoop) -> None:
        self.loop = loop

    def run(self, steps: int) -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.loop.run(steps)
        finally:
            torch.set_num_threads(threads)


class PlainLoop:
    """The textbook loop over in-memory tensors: the reference the project's loop must match."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.x, self.y = x, y
        self.model = LeNet5()
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
        )
        self.perm = torch.randperm(len(x))
        self.step = 0

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            idx = self.perm[(self.step * 128) % (len(self.x) - 128) :][:128]
            loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step += 1
        return time.perf_counter() - start


class PilLoaderLoop(PlainLoop):
    """The original harness: torchvision's MNIST as PIL images, per-image transforms, DataLoader."""

    def __init__(self, root: str) -> None:
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms

        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
        dataset = datasets.MNIST(root, train=True, transform=tf)
        super().__init__(torch.empty(0), torch.empty(0))
        self.loader = DataLoader(dataset, batch_size=128, shuffle=True, drop_last=True)
        self.batches = iter(self.loader)

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            try:
                xb, yb = next(self.batches)
            except StopIteration:
                self.batches = iter(self.loader)
                xb, yb = next(self.batches)
            loss = F.cross_entropy(self.model(xb), yb)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return time.perf_counter() - start


def bench_training(root: str, steps: int, chunk: int) -> dict:
    """The loops take turns, `chunk` steps each, until each has done `steps`: the machine's
    slow and fast spells then fall on all of them alike, and the ratios compare like with like."""
    data = load_mnist(root)
    x, y = normalize(data.train_images, MEAN, STD), data.train_labels
    loops = {
        "project": ProjectLoop(x, y, augment=False),
        "plain": PlainLoop(x, y),
        "pil_dataloader": PilLoaderLoop(root),
        "project_augment": ProjectLoop(x, y, augment=True),
        "project_1_thread": OneThread(ProjectLoop(x, y, augment=False)),
    }
    for loop in loops.values():
        loop.run(5)  # warm-up
    seconds = dict.fromkeys(loops, 0.0)
    for _ in range(max(1, steps // chunk)):
        for name, loop in loops.items():
            seconds[name] += loop.run(chunk)
    done = max(1, steps // chunk) * chunk
    rate = {name: done * 128 / s for name, s in seconds.items()}
    return {
        **{f"images_per_s_{name}": r for name, r in rate.items()},
        "project_vs_plain": rate["project"] / rate["plain"],
        "project_vs_pil": rate["project"] / rate["pil_dataloader"],
        "augment_share_of_step": 1 - rate["project_augment"] / rate["project"],
        # a job on all cores vs on one: parallel jobs of one thread each can beat a sequential
        # sweep by at most cores / this (if nothing else is shared)
        "all_threads_vs_1_thread": rate["project"] / rate["project_1_thread"],
        "parallel_speedup_bound": torch.get_num_threads() * rate["project_1_thread"] / rate["project"],
        "steps_each": done,
    }


def bench_kmeans(x: np.ndarray, ks: list[int]) -> list[dict]:
    from sklearn.cluster import KMeans

    rows = []
    for k in ks:
        t = time.perf_counter()
        ours = kmeans(x, k, seed=0)
        ours_s = time.perf_counter() - t
        t = time.perf_counter()
        sk = KMeans(n_clusters=k, n_init=1, random_state=0).fit(x)
        sk_s = time.perf_counter() - t
        rows.append(
            {
                "k": k,
                "seconds": ours_s,
                "sklearn_seconds": sk_s,
                "inertia_vs_sklearn": ours.inertia / float(sk.inertia_),
            }
        )
    return rows


def bench_warm_selection(x: np.ndarray, labels: np.ndarray, k: int, cache_dir: str) -> dict:
    cache = Cache(cache_dir)
    options = Options(clusters=k, kmeans=lambda p, n, s: cached_kmeans(cache, 100, 1e-4, p, n, s))
    select("nearest", x, labels, k, 0, options)  # cold: fits and stores
    out = {}
    for name in ("nearest", "furthest", "cluster_random"):
        warm = Cache(cache_dir)  # a new process's view: read from disk
        opts = Options(clusters=k, kmeans=lambda p, n, s, c=warm: cached_kmeans(c, 100, 1e-4, p, n, s))
        t = time.perf_counter()
        select(name, x, labels, k, 0, opts)
        out[name] = time.perf_counter() - t
    return {"k": k, "warm_select_seconds": out}


def bench_methods(root: str, ks: list[int], cache_dir: str, tiny: bool) -> list[dict]:
    """Cold (an empty cache: k-means fits, score trainings, the classifier) and warm (a new
    process's view of that cache) selection time of the newer methods, on the 60k pool (a
    2,000-image pool if tiny). The PCA embedding is computed before the clock starts."""
    from mnist_pruning.train import get_cache

    data = load_mnist(root)
    pool = np.arange(2000 if tiny else len(data.train_labels))
    labels = data.train_labels.numpy()
    x_pca = pca(data.train_flat(), 50)
    quick = ["selector.score.epochs=2", "selector.score.inits=1", "embedding.epochs=1"] if tiny else []
    methods = {
        "hybrid": ["selector=hybrid"],
        "herding": ["selector=herding"],
        "facility_location": ["selector=facility_location"],
        "el2n": ["selector=el2n"],
        "forgetting": ["selector=forgetting"],
        "nearest on the classifier embedding": ["selector=nearest", "embedding=classifier"],
    }
    rows = []
    for name, overrides in methods.items():
        for k in ks:
            times = {}
            for phase in ("cold", "warm"):
                get_cache.cache_clear()  # a new process's view of the cache
                folder = f"{cache_dir}/{name.replace(' ', '_')}-{k}"
                cfg = config([*overrides, f"k={k}", f"cache.dir={folder}", *quick])
                cache = get_cache(cfg.cache.dir, True)
                start = time.perf_counter()
                x = embedding_of(cfg, data, pool, cache) if "classifier" in name else x_pca
                scored = cfg.selector.name in SCORED_SELECTORS
                scores = scores_of(cfg, data, pool, cache, cfg.selector.name) if scored else None
                opts = Options(
                    clusters=cfg.selector.get("clusters"),
                    neighbors=cfg.selector.neighbors,
                    scores=scores,
                    kmeans=lambda p, n, s, c=cache: cached_kmeans(c, 100, 1e-4, p, n, s),
                )
                select(cfg.selector.name, x[pool], labels[pool], k, 0, opts)
                times[phase] = time.perf_counter() - start
            rows.append({"method": name, "k": k, **{f"{p}_seconds": t for p, t in times.items()}})
    return rows


def bench_facility_location_memory(root: str, k: int, n: int) -> dict:
    """Facility location on the PCA-50 pool in a fresh process: its wall time and peak memory."""
    script = f"""
import resource, time, numpy as np
from mnist_pruning.data import load_mnist
from mnist_pruning.embed import pca
from mnist_pruning.selectors import select
d = load_mnist({root!r}); x = pca(d.train_flat()[:{n}], 50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); select("facility_location", x, d.train_labels.numpy()[:{n}], {k}, 0)
print(time.perf_counter() - t, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seconds, before_kb, peak_kb = res.stdout.split()[-3:]
    return {
        "k": k,
        "pool": n,
        "seconds": float(seconds),
        "peak_gib": int(peak_kb) / 2**20,
        "before_gib": int(before_kb) / 2**20,
    }


def sweep(args: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "mnist_pruning.train", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"sweep failed: {res.stdout[-2000:]}{res.stderr[-2000:]}")
    return time.perf_counter() - start


def runs_of(tracking_uri: str):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(experiment_names=["mnist-pruning"]).sort_values("start_time")


def bench_overhead_and_parallel(root: str, steps: int, n_runs: int, k: int, tiny: bool = False) -> dict:
    """Per-run overhead from the runs' own timestamps, and a sweep sequential vs the default
    launcher, which runs as many jobs as cores and memory allow (tiny:
    fewer warm jobs and one cached one-step run instead of the median of three)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, MNIST_DATA_DIR=root, MNIST_PRUNING_CACHE=str(tmp / "cache"))
        short = f"train.steps={max(1, steps // 10)}"

        # cold: a new process, nothing cached (MNIST parse, PCA, k-means fit, imports)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/cold.db"
        cold_wall = sweep(["selector=nearest", f"k={k}", short], env, tmp)
        cold = runs_of(env["MLFLOW_TRACKING_URI"]).iloc[0]

        # warm: a multirun whose embedding and k-means fit are cached; from one job's start to the
        # next, minus the training in between
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/warm.db"
        sweep(
            [
                "-m",
                "hydra/launcher=basic",  # one job after another: the gaps are the overhead
                "selector=nearest,furthest,cluster_random,random",
                f"k={k}",
                short,
                f"seed={0 if tiny else '0,1'}",
            ],
            env,
            tmp,
        )
        warm = runs_of(env["MLFLOW_TRACKING_URI"])
        starts = (warm["start_time"] - warm["start_time"].iloc[0]).dt.total_seconds().to_numpy()
        gaps = np.diff(starts) - warm["metrics.train_seconds"].to_numpy()[:-1]

        # the same sweep of random selections, one job at a time and by default (in parallel)
        common = ["selector=random", f"k={k}", f"train.steps={steps}", f"seed=range({n_runs})"]
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/seq.db"
        seq_wall = sweep(["-m", "hydra/launcher=basic", *common], env, tmp)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/par.db"
        par_wall = sweep(["-m", *common], env, tmp)
        par = runs_of(env["MLFLOW_TRACKING_URI"])
        par = par[par["tags.kind"] == "train"]
        assert (par["status"] == "FINISHED").sum() == n_runs

        # a cached one-step run: store, MNIST checks and embedding all there already
        one = ["selector=random", "k=100", "train.steps=1"]
        one_step = float(np.median([sweep(one, env, tmp) for _ in range(1 if tiny else 3)]))
    return {
        "cold_run_wall_seconds": cold_wall,
        "cold_overhead_seconds": cold_wall - float(cold["metrics.train_seconds"]),
        "one_step_run_wall_seconds": one_step,
        "parallel_seconds_per_step": float(np.median(par["metrics.train_seconds"])) / steps,
        "warm_overhead_seconds_median": float(np.median(gaps[1:])),  # the first job parses MNIST
        "sweep_runs": n_runs,
        "sweep_sequential_seconds": seq_wall,
        "sweep_default_seconds": par_wall,
        "default_jobs": parallel_jobs(0, 2.5),
        "parallel_speedup": seq_wall / par_wall,
    }


def experiment_jobs(name: str) -> list[list[str]]:
    """Every job's overrides of a named experiment (conf/experiment/NAME.yaml), as its sweep runs."""
    grids = OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml").hydra.sweeper.grids
    return [[*job, f"+experiment={name}"] for job in expand(OmegaConf.to_container(grids), [])]


def job_steps(name: str) -> list[int]:
    """Each job's training steps (its regime's, or its own train.steps), from one composed config:
    composing each of a frontier's 565 jobs takes minutes. A job's steps depend only on the
    training-set size (k, the selector being `full`, the validation split) and train.* keys, so
    those overrides are applied to a copy of the experiment's config and the rest left out."""
    base = config([f"+experiment={name}"])
    steps = []
    for job in experiment_jobs(name):
        cfg = copy.deepcopy(base)
        for override in job:
            key, value = override.split("=", 1)
            key = "selector.name" if key == "selector" else key
            if key in ("k", "selector.name") or key.startswith(("train.", "data.")):
                OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
        steps.append(cfg.train.steps)
    return steps


def projected_wall(name: str, sweep_result: dict, jobs_at_once: int | None = None) -> dict:
    """The sweep's wall time projected from the default launcher's sample: each run costs the
    sample's per-run overhead plus its own steps (its regime's) at the sample's seconds per step."""
    jobs_at_once = jobs_at_once or sweep_result.get("default_jobs", 2)
    s_step = sweep_result["parallel_seconds_per_step"]
    sample = sweep_result.get("sweep_default_seconds", sweep_result.get("sweep_parallel_2_jobs_seconds"))
    slot = sample * jobs_at_once / sweep_result["sweep_runs"]
    overhead = slot - s_step * sweep_result["sample_steps"]
    steps = job_steps(name)
    total = sum(overhead + s_step * n for n in steps) / jobs_at_once
    return {
        "experiment": name,
        "jobs": jobs_at_once,
        "runs": len(steps),
        "steps": int(sum(steps)),
        "minutes": total / 60,
        "overhead_seconds": overhead,
        "seconds_per_step": s_step,
    }


def table(results: dict) -> str:
    t, lines = results["training"], []
    lines += [
        "| measure | value |",
        "| --- | --- |",
        f"| training images/s, project loop (augment off) | {t['images_per_s_project']:,.0f} |",
        f"| training images/s, plain in-memory loop | {t['images_per_s_plain']:,.0f} |",
        f"| training images/s, PIL DataLoader pipeline | {t['images_per_s_pil_dataloader']:,.0f} |",
        f"| project vs plain loop | {t['project_vs_plain']:.2f}x |",
        f"| project vs PIL DataLoader | {t['project_vs_pil']:.2f}x |",
        f"| augmentation share of a step | {100 * t['augment_share_of_step']:.0f}% |",
        f"| training images/s, project loop on 1 thread | {t['images_per_s_project_1_thread']:,.0f} |",
        f"| one job on {results['threads']} threads vs 1 thread | {t['all_threads_vs_1_thread']:.2f}x |",
        f"| bound on the {results['threads']}-job speed-up ({results['threads']} x 1-thread rate / "
        f"{results['threads']}-thread rate) | {t['parallel_speedup_bound']:.2f}x |",
    ]
    for r in results["kmeans"]:
        lines.append(
            f"| k-means cold fit, k={r['k']:,} (scikit-learn's) | {r['seconds']:.1f} s "
            f"({r['sklearn_seconds']:.1f} s), inertia {r['inertia_vs_sklearn']:.4f}x scikit-learn's |"
        )
    w = results["warm_selection"]
    slowest = max(w["warm_select_seconds"].values())
    lines.append(f"| warm selection, k={w['k']:,}, slowest cluster selector | {slowest:.2f} s |")
    o = results["sweep"]
    seq, par = o["sweep_sequential_seconds"], o["sweep_default_seconds"]
    lines += [
        "| per-run overhead outside training, cold (new process, empty cache) "
        f"| {o['cold_overhead_seconds']:.1f} s |",
        "| per-run overhead outside training, warm (in a multirun) "
        f"| {o['warm_overhead_seconds_median']:.2f} s |",
        f"| {o['sweep_runs']}-run sweep, sequential / the default launcher ({o['default_jobs']} jobs) "
        f"| {seq:.0f} s / {par:.0f} s = {o['parallel_speedup']:.2f}x |",
        f"| cached one-step run (`train.steps=1`), wall time | {o['one_step_run_wall_seconds']:.1f} s |",
    ]
    p = results["projection"]
    lines.append(
        f"| `+experiment={p['experiment']}` projected on {p['jobs']} jobs ({p['runs']} runs, "
        f"{p['steps']:,} steps) | {p['minutes']:.0f} min |"
    )
    for r in results["methods"]:
        lines.append(
            f"| selection, {r['method']}, k={r['k']:,}: cold / warm | {r['cold_seconds']:.1f} s / "
            f"{r['warm_seconds']:.2f} s |"
        )
    f = results["facility_location"]
    lines.append(
        f"| facility location, k={f['k']:,} of {f['pool']:,}, fresh process: time, peak memory "
        f"| {f['seconds']:.1f} s, {f['peak_gib']:.2f} GiB |"
    )
    return "\n".join(lines + proxy_table(results["proxy"]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds, to check the script works")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.json"))
    parser.add_argument("--root", default=os.environ.get("MNIST_DATA_DIR", "data"))
    parser.add_argument("--only", choices=["proxy"], help="measure only this part (and merge it into --out)")
    a = parser.parse_args(argv)
    if a.only == "proxy":
        out = Path(a.out)
        results = json.loads(out.read_text()) if out.exists() else {}
        results["proxy"] = bench_proxy(a.root, a.tiny)
        print("\n".join(proxy_table(results["proxy"])))
        out.write_text(json.dumps(results, indent=2))
        return results

    steps = 20 if a.tiny else 1000
    data = load_mnist(a.root)
    x = pca(data.train_flat(), 50)
    labels = data.train_labels.numpy()
    results: dict = {"tiny": a.tiny, "threads": torch.get_num_threads()}
    results["training"] = bench_training(a.root, steps, chunk=10 if a.tiny else 50)
    if a.tiny:
        sub = np.random.default_rng(0).choice(len(x), 2000, replace=False)
        results["kmeans"] = bench_kmeans(x[sub], [10, 50])
    else:
        results["kmeans"] = bench_kmeans(x, [100, 1200, 10_000])
    with tempfile.TemporaryDirectory() as cache_dir:
        k = 50 if a.tiny else 10_000
        xs = x[:2000] if a.tiny else x
        results["warm_selection"] = bench_warm_selection(xs, labels[: len(xs)], k, cache_dir)
    sample_steps = 5 if a.tiny else 1500
    results["sweep"] = bench_overhead_and_parallel(
        a.root, steps=sample_steps, n_runs=2 if a.tiny else 8, k=20 if a.tiny else 1000, tiny=a.tiny
    )
    results["sweep"]["sample_steps"] = sample_steps
    results["projection"] = projected_wall("frontier", results["sweep"])
    with tempfile.TemporaryDirectory() as cache_dir:
        results["methods"] = bench_methods(a.root, [20] if a.tiny else [100, 10_000], cache_dir, a.tiny)
    results["facility_location"] = bench_facility_location_memory(
        a.root, k=50 if a.tiny else 10_000, n=2000 if a.tiny else 60_000
    )
    results["proxy"] = bench_proxy(a.root, a.tiny)
    print(table(results))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
