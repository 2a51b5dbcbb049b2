"""The benchmark script in its tiny mode, so that it cannot rot."""

import importlib.util
import json

import pytest
import torch

from conftest import REPO


@pytest.fixture(scope="module")
def bench():
    """benchmarks/bench.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_tiny_runs_and_writes_every_measure(bench, tmp_path, mnist_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--root", str(mnist_root), "--out", str(out)])
    results = json.loads(out.read_text())
    t = results["training"]
    for key in ("plain", "pil_dataloader", "project", "project_augment", "project_1_thread"):
        assert t[f"images_per_s_{key}"] > 0
    assert results["threads"] == torch.get_num_threads()  # the 1-thread loop gave the threads back
    assert t["parallel_speedup_bound"] == pytest.approx(results["threads"] / t["all_threads_vs_1_thread"])
    single = results["single_run"]  # the entrypoint as a user starts it: every core, no override
    assert "threads" not in single["command"] and single["torch_threads"] == single["cores"]
    assert single["images_per_s_run"] > 0 and single["run_vs_plain"] > 0
    assert [r["k"] for r in results["kmeans"]] == [10, 50]
    assert all(0.9 < r["inertia_vs_sklearn"] < 1.1 for r in results["kmeans"])
    assert set(results["warm_selection"]["warm_select_seconds"]) == {"nearest", "furthest", "cluster_random"}
    assert results["sweep"]["sweep_runs"] == 2 and results["sweep"]["parallel_speedup"] > 0
    assert results["sweep"]["one_step_run_wall_seconds"] > 0
    p = results["projection"]
    assert p["experiment"] == "frontier" and p["runs"] == len(bench.experiment_jobs("frontier")) > 100
    assert p["minutes"] > 0
    methods = {r["method"] for r in results["methods"]}
    assert {"hybrid", "herding", "facility_location", "el2n", "forgetting"} <= methods
    assert all(r["cold_seconds"] > 0 and r["warm_seconds"] > 0 for r in results["methods"])
    assert results["facility_location"]["peak_gib"] > 0
    newer = results["newer"]
    assert [r["method"] for r in newer["methods"]] == list(bench.NEWER_METHODS)
    assert all(r["k"] == 20 and r["cold_seconds"] > 0 and r["warm_seconds"] > 0 for r in newer["methods"])
    assert newer["contrastive"]["pool"] == 2000 and newer["contrastive"]["epochs"] == 1
    assert newer["contrastive"]["cold_seconds"] > newer["contrastive"]["warm_seconds"]  # the fit was cached
    sizes = results["sizes"]
    assert [r["size"] for r in sizes["sizes"]] == [1000, 1500, 2000, 3000, 5000, 10000, "full"]
    assert all(r["seconds_per_1000_steps"] > 0 for r in sizes["sizes"]) and sizes["large_end_runs"] == 245
    assert sizes["large_end_training_hours"] > 0
    (proxy,) = results["proxy"]["sizes"]
    assert (proxy["k"], proxy["mixed"], proxy["group"], proxy["pairs"]) == (10, 4, 3, 4)
    names = [r["proxy"] for r in proxy["proxies"]]
    assert names == [
        "the full recipe: one training vs the mean of the others",
        "5 x 1",
        "5 x 1, lenet5 + mlp",
        "rbf-krr on pca50",
        "1-nn on pca50",
        "ntk-krr, lenet5 at init x 1",
    ]
    assert all(r["seconds_per_evaluation"] > 0 for r in proxy["proxies"][1:])
    assert all(0 <= r["pair_agreement"] <= 1 for r in proxy["proxies"])


def test_one_part_is_merged_into_the_results_file(bench, tmp_path, mnist_root):
    """`--only PART` measures that part and keeps what the file held of the others."""
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"training": {"kept": 1}, "sizes": {"stale": 1}}))
    bench.main(["--tiny", "--only", "sizes", "--root", str(mnist_root), "--out", str(out)])
    written = json.loads(out.read_text())
    assert set(written) == {"training", "sizes"} and written["training"] == {"kept": 1}
    assert "stale" not in written["sizes"] and written["sizes"]["large_end_runs"] == 245


def test_projected_steps_are_the_composed_configs_steps(bench):
    """The projection's shortcut (size and train.* overrides on one composed config) gives each
    job the steps a run of that job composes to: one job per size and the full-data job."""
    jobs, steps = bench.experiment_jobs("frontier"), bench.job_steps("frontier")
    firsts = {}
    for job, n in zip(jobs, steps, strict=True):
        size = next(o for o in job if o.startswith(("k=", "selector=full")))
        firsts.setdefault(size if "selector=full" not in job else "full", (job, n))
    assert len(firsts) == 9 and len({n for _, n in firsts.values()}) > 1  # several regimes
    for job, n in firsts.values():
        assert bench.config(job).train.steps == n


def test_the_proxy_bench_resumes_from_its_ledger(tmp_path, mnist_root, monkeypatch):
    """A stopped proxy bench loses nothing: what it trained and scored is in the ledger, and a
    second run trains nothing again and reads the same figures back. The k given (`--sizes`)
    is measured alone."""
    import sys

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sys.modules.pop("proxy_bench", None)
    import proxy_bench

    trained = []
    real = proxy_bench.truths_of

    def counting(ledger, jobs, *args):
        trained.append(sum(ledger.get(f"{args[1]}/{proxy_bench.digest(r)}/{s}") is None for r, s in jobs))
        return real(ledger, jobs, *args)

    monkeypatch.setattr(proxy_bench, "truths_of", counting)
    ledger = tmp_path / "ledger.json"
    first = proxy_bench.bench_proxy(str(mnist_root), True, 1, ledger, [20])
    entries = json.loads(ledger.read_text())
    second = proxy_bench.bench_proxy(str(mnist_root), True, 1, ledger, [20])
    assert [s["k"] for s in first["sizes"]] == [20]
    n_subsets = 4 + 3 + 4  # mixed, group, pairs at --tiny
    assert trained == [n_subsets * 2, 0]  # two truth seeds a subset, none trained the second time
    assert len(entries) == n_subsets * 2 + 2 * n_subsets  # the trainings, two proxies' scores
    for a, b in zip(first["sizes"][0]["proxies"], second["sizes"][0]["proxies"], strict=True):
        for key in ("spearman_mixed", "spearman_group", "pair_agreement"):
            assert a[key] == pytest.approx(b[key], nan_ok=True)  # nan where --tiny's scores tie


def test_two_benches_sharing_a_ledger_keep_each_others_entries(tmp_path, monkeypatch):
    """`--sizes 10` beside `--sizes 20`: each write merges into the file, so neither erases what
    the other wrote after it started."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import proxy_bench

    path = tmp_path / "ledger.json"
    one, two = proxy_bench.Ledger(path), proxy_bench.Ledger(path)
    one.put("a", [1.0])
    two.put("b", [2.0])
    one.put("c", [3.0])
    assert json.loads(path.read_text()) == {"a": [1.0], "b": [2.0], "c": [3.0]}
    assert proxy_bench.Ledger(path).get("b") == [2.0]
