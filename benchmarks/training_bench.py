"""Training throughput: the project's loop against a plain one and the original harness's."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from common import MEAN, STD, config

from mnist_pruning.data import load_mnist
from mnist_pruning.model import LeNet5
from mnist_pruning.progress import cores
from mnist_pruning.subset import recipe_of
from mnist_pruning.training import Recipe, normalize, train


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


def bench_entrypoint(root: str, steps: int) -> dict:
    """The entrypoint as a user starts it: a single run on full data, augmentation off, no thread
    override, in a fresh store, against the plain loop on this process's threads timed just
    before and just after it (the same steps each). A run that trains on fewer threads than the
    machine has (a sweep's share leaking into a single run) shows here as its `torch_threads`
    and a ratio well under the loops' own."""
    import mlflow

    data = load_mnist(root)
    plain = PlainLoop(normalize(data.train_images, MEAN, STD), data.train_labels)
    plain.run(5)  # warm-up
    before = plain.run(steps)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = dict(
            os.environ, MNIST_DATA_DIR=root, MLFLOW_TRACKING_URI=uri, MNIST_PRUNING_CACHE=f"{tmp}/cache"
        )
        args = ["selector=full", f"train.steps={steps}", "train.augment=false", "seed=0"]
        start = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "mnist_pruning.train", *args],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if res.returncode != 0:
            raise RuntimeError(f"the single run failed: {res.stderr[-2000:]}")
        mlflow.set_tracking_uri(uri)
        run = mlflow.search_runs(experiment_names=["mnist-pruning"]).iloc[0]
    after = plain.run(steps)
    plain_rate = 2 * steps * 128 / (before + after)
    run_rate = steps * 128 / float(run["metrics.train_seconds"])
    return {
        "command": "python -m mnist_pruning.train " + " ".join(args),
        "steps": steps,
        "torch_threads": int(run["tags.torch_threads"]),
        "cores": cores(),
        "train_seconds": float(run["metrics.train_seconds"]),
        "wall_seconds": wall,
        "images_per_s_run": run_rate,
        "images_per_s_plain": plain_rate,
        "run_vs_plain": run_rate / plain_rate,
    }


LARGE_END_SIZES = (1000, 1500, 2000, 3000, 5000, 10000)


def bench_sizes(root: str, steps: int) -> dict:
    """The large end's budget: seconds per 1,000 steps of the recipe each size falls in (its
    regime's maps; a step is a batch of 128 whatever the size, so only the recipe differs), on
    every thread, and full data's; `+experiment=large_end` projected from them (on one job at a
    time, every core)."""
    from sweep_bench import experiment_jobs, job_steps

    data = load_mnist(root)
    x, y = normalize(data.train_images, MEAN, STD), data.train_labels
    rows = []
    for size in (*LARGE_END_SIZES, "full"):
        cfg = config(["selector=full"] if size == "full" else [f"k={size}"])
        recipe = replace(recipe_of(cfg), steps=steps, warmup_steps=min(cfg.train.warmup_steps, steps // 10))
        n = len(x) if size == "full" else size
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]
        res = train(x[idx], y[idx], {}, recipe, 0, torch.device("cpu"), progress=False)
        per_1000 = res.train_seconds * 1000 / steps
        rows.append({"size": size, "regime": cfg.train.regime, "seconds_per_1000_steps": per_1000})
    rate = {str(r["size"]): r["seconds_per_1000_steps"] for r in rows}
    jobs = experiment_jobs("large_end")
    sizes = [next((o.split("=")[1] for o in job if o.startswith("k=")), "full") for job in jobs]
    seconds = sum(s / 1000 * rate[z] for s, z in zip(job_steps("large_end"), sizes, strict=True))
    return {
        "steps_timed": steps,
        "threads": torch.get_num_threads(),
        "sizes": rows,
        "large_end_runs": len(jobs),
        "large_end_training_hours": seconds / 3600,
    }
