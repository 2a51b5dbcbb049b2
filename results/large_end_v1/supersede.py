"""Soft-delete the `large_end` runs at k > 2,000 trained in `large` once their cell (the same
params but `train.*` and the seed) has five finished runs in `xlarge`, so that the report reads
one regime per cell. Run from the repository root; a dry run unless --apply. A deleted run comes
back with `mlflow runs restore --run-id ID` (the ids are in runs.csv beside this file)."""

import sys
from collections import defaultdict

from mlflow.tracking import MlflowClient

client = MlflowClient("sqlite:///mlflow.db")
experiment = client.get_experiment_by_name("large_end")
runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'", max_results=5000)
cells = defaultdict(lambda: {"large": [], "xlarge": []})
for run in runs:
    p = run.data.params
    if p.get("train.regime") in ("large", "xlarge") and int(p.get("k", 0)) > 2000:
        key = tuple(sorted((a, b) for a, b in p.items() if not a.startswith("train.") and a != "seed"))
        cells[key][p["train.regime"]].append(run)
deleted = 0
for key, cell in cells.items():
    p = dict(key)
    seeds = {run.data.params["seed"] for run in cell["xlarge"]}
    done = len(seeds) >= 5 and cell["large"]
    print(
        f"{p['selector.name']} keep={p.get('selector.keep')} difficulty={p.get('selector.difficulty')} "
        f"k={p['k']}: large {len(cell['large'])}, xlarge {len(seeds)}{' -> delete large' if done else ''}"
    )
    if done and "--apply" in sys.argv:
        for run in cell["large"]:
            client.delete_run(run.info.run_id)
            deleted += 1
print("deleted", deleted)
