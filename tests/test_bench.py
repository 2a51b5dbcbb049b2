"""The benchmark script in its tiny mode, so that it cannot rot."""

import importlib.util
import json

from conftest import REPO


def test_bench_tiny_runs_and_writes_every_measure(tmp_path, mnist_root, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--root", str(mnist_root), "--out", str(out)])
    results = json.loads(out.read_text())
    t = results["training"]
    for key in ("images_per_s_project", "images_per_s_plain", "images_per_s_pil_dataloader"):
        assert t[key] > 0
    assert [r["k"] for r in results["kmeans"]] == [10, 50]
    assert all(0.9 < r["inertia_vs_sklearn"] < 1.1 for r in results["kmeans"])
    assert set(results["warm_selection"]["warm_select_seconds"]) == {"nearest", "furthest", "cluster_random"}
    assert results["sweep"]["sweep_runs"] == 2 and results["sweep"]["parallel_speedup"] > 0
