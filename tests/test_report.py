"""The report on a temporary store filled with runs of known accuracies."""

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from PIL import Image

from mnist_pruning import report
from mnist_pruning.config import ReportConfig
from mnist_pruning.figures import montage_grid, save_montage

EXP = "report-test"


def add_run(
    client,
    exp_id,
    selector,
    k,
    seed,
    acc,
    status="FINISHED",
    clusters=None,
    indices=None,
    metric="test_acc",
    steps="50",
    regime=None,
    keep=None,
    clusters_rule=None,
    extra=None,
    subset=None,
):
    params = {
        "selector": selector,
        "selector.name": selector,
        "k": str(k),
        "seed": str(seed),
        "selector.clusters": str(clusters if clusters is not None else (k if selector != "random" else None)),
        "selector.balance": "False",
        "embedding": "pca",
        "embedding.name": "pca",
        "embedding.dims": "50",
        "pca_dims": "50",
        "train.steps": steps,
        "mlflow.tracking_uri": "ignored",
    }
    if metric == "val_acc":  # a tuning run: images held out of the pool for validation
        params["data.validation_size"] = "10000"
    if regime is not None:
        params["train.regime"] = regime
    if keep is not None:
        params["selector.keep"] = keep
    params.update(extra or {})
    run = client.create_run(exp_id, run_name=f"{selector}-k{k}-s{seed}", tags={"kind": "train"})
    rid = run.info.run_id
    for key, value in params.items():
        client.log_param(rid, key, value)
    client.set_tag(rid, "config_hash", f"{selector}-{k}-{seed}-{clusters}-{metric}-{steps}-{keep}-{extra}")
    if clusters_rule is not None:
        client.set_tag(rid, "clusters", clusters_rule)
    if subset is not None:
        client.set_tag(rid, "subset", subset)
    for key, value in {
        metric: acc,
        "train_size": k,
        "select_seconds": 0.5,
        "train_seconds": 10.0,
    }.items():
        client.log_metric(rid, key, value)
    if indices is not None:
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "selected_indices.npy", np.asarray(indices, dtype=np.int64))
            client.log_artifact(rid, str(Path(tmp) / "selected_indices.npy"))
    client.set_terminated(rid, status)
    return rid


@pytest.fixture
def store(tmp_path, empty_store):
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP, artifact_location=(tmp_path / "mlruns").as_uri())
    rng = np.random.default_rng(0)
    for seed, acc in enumerate([0.80, 0.82, 0.84, 0.86, 0.88]):
        add_run(client, exp_id, "random", 100, seed, acc, indices=rng.choice(60000, 100, replace=False))
    for seed, acc in enumerate([0.90, 0.93, 0.96, 0.97, 0.99]):
        add_run(client, exp_id, "random", 200, seed, acc)
    for seed, acc in enumerate([0.95, 0.96, 0.97]):
        add_run(client, exp_id, "nearest", 100, seed, acc, indices=rng.choice(60000, 100, replace=False))
    again = rng.choice(60000, 100, replace=False)
    add_run(client, exp_id, "random", 100, 0, 0.81, indices=again)  # the same setting + seed, newer
    add_run(client, exp_id, "random", 100, 5, 0.10, status="FAILED")
    return uri, tmp_path


def test_medians_counts_flags_and_smallest_k(store):
    uri, _ = store
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    assert runs.left_out == 1 and runs.duplicates == 1 and len(runs.finished) == 13
    s = report.summarize(runs.finished).set_index(["selector", "k"])
    r100 = s.loc[("random", 100)]
    assert r100["seeds"] == 5 and r100["median_acc"] == pytest.approx(0.84)
    assert r100["min_acc"] == pytest.approx(0.81) and r100["max_acc"] == pytest.approx(0.88)
    assert r100["iqr_acc"] == pytest.approx(0.04) and not r100["few_seeds"]
    assert s.loc[("random", 200), "median_acc"] == pytest.approx(0.96)
    n100 = s.loc[("nearest", 100)]
    assert n100["seeds"] == 3 and n100["few_seeds"] and n100["median_acc"] == pytest.approx(0.96)
    assert n100["clusters"] == "k"
    answer = report.smallest_k(report.summarize(runs.finished), 0.95).set_index("curve")
    assert answer.loc["random", "smallest_k"] == 200
    expected = 100 * 2 ** ((0.95 - 0.84) / (0.96 - 0.84))
    assert answer.loc["random", "interpolated_k"] == pytest.approx(expected, abs=0.1)
    assert answer.loc["nearest pca50", "smallest_k"] == 100
    assert pd.isna(answer.loc["nearest pca50", "interpolated_k"])
    assert pd.isna(report.smallest_k(report.summarize(runs.finished), 0.999)["smallest_k"]).all()


def test_write_report_files_and_mlflow_run(store, tmp_path, mnist_root, capsys):
    uri, _ = store
    out = tmp_path / "reports"
    cfg = OmegaConf.merge(
        OmegaConf.structured(ReportConfig),
        {
            "mlflow": {
                "tracking_uri": uri,
                "experiment_name": EXP,
                "artifact_root": str(tmp_path / "mlruns"),
            },
            "data": {"root": str(mnist_root), "verify": True},
            "metric": "test_acc",
            "target_acc": 0.95,
            "out_dir": str(out),
            "montage_k": None,
            "min_seeds": 5,
            "results_file": None,
        },
    )
    report.write_report(cfg)
    assert "| random | - | - | no | 100 | - | 5 | - | 0.8400 |" in capsys.readouterr().out
    csv = pd.read_csv(out / "summary.csv")
    assert len(csv) == 3
    per_run = pd.read_csv(out / "runs.csv")  # the 13 runs behind the medians, newest of a seed
    assert len(per_run) == 13 and per_run["run_id"].is_unique
    r100 = per_run[(per_run["selector"] == "random") & (per_run["k"] == 100)]
    assert sorted(r100["test_acc"]) == pytest.approx([0.81, 0.82, 0.84, 0.86, 0.88])
    medians = csv.set_index(["selector", "k"])["median_acc"]
    assert r100["test_acc"].median() == pytest.approx(medians.loc[("random", 100)])
    for name in ("accuracy_vs_size.png", "time_vs_size.png", "selected_examples.png"):
        with Image.open(out / name) as img:
            img.verify()
    assert "Smallest k" in (out / "summary.md").read_text()
    reports = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name(EXP).experiment_id], "tags.kind = 'report'"
    )
    assert len(reports) == 1
    names = {a.path for a in MlflowClient(uri).list_artifacts(reports[0].info.run_id)}
    assert {"summary.csv", "summary.md", "accuracy_vs_size.png"} <= names
    # a second report does not count the first report run as a training run
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    assert len(runs.finished) == 13


def report_cfg(uri, tmp_path, out, **extra):
    """A report config on the test store, as the entrypoint composes it."""
    mlflow = {"tracking_uri": uri, "experiment_name": EXP, "artifact_root": str(tmp_path / "mlruns")}
    return OmegaConf.merge(
        OmegaConf.structured(ReportConfig),
        {"mlflow": mlflow, "out_dir": str(out), "data": {"root": "nowhere"}},
        extra,
    )


def test_archived_runs_count_where_the_store_lacks_them(store, tmp_path):
    uri, _ = store
    first = tmp_path / "first"
    report.write_report(report_cfg(uri, tmp_path, first))  # 13 runs: its runs.csv is the record
    # a new machine: a fresh store with the last two seeds of nearest and one seed again
    new_uri = f"sqlite:///{tmp_path}/new.db"
    client = MlflowClient(new_uri)
    exp_id = client.create_experiment(EXP, artifact_location=(tmp_path / "mlruns2").as_uri())
    for seed, acc in [(3, 0.98), (4, 0.99)]:
        add_run(client, exp_id, "nearest", 100, seed, acc)
    add_run(client, exp_id, "random", 100, 1, 0.50)  # the same config hash as an archived run
    out = tmp_path / "second"
    report.write_report(report_cfg(new_uri, tmp_path, out, archive=[str(first / "runs.csv")]))
    s = pd.read_csv(out / "summary.csv").set_index(["selector", "k"])
    assert s.loc[("nearest", 100), "seeds"] == 5 and not s.loc[("nearest", 100), "few_seeds"]
    assert s.loc[("nearest", 100), "median_acc"] == pytest.approx(0.97)  # 0.95 0.96 0.97 0.98 0.99
    assert s.loc[("random", 200), "seeds"] == 5 and s.loc[("random", 200), "median_acc"] == pytest.approx(
        0.96
    )
    # the store wins: random k=100 seed 1 is 0.50 (store), not 0.82 (archive); seed 0 the newer 0.81
    r100 = pd.read_csv(out / "runs.csv").query("selector == 'random' and k == 100").set_index("seed")
    assert r100["test_acc"].to_dict() == pytest.approx({0: 0.81, 1: 0.50, 2: 0.84, 3: 0.86, 4: 0.88})
    assert len(pd.read_csv(out / "runs.csv")) == 15  # 12 archived + 3 from the store
    assert "12 of them read from" in (out / "summary.md").read_text()
    # the merged runs.csv is itself an archive: a store with nothing in it reports the same
    empty = f"sqlite:///{tmp_path}/empty.db"
    third = tmp_path / "third"
    report.write_report(report_cfg(empty, tmp_path, third, archive=[str(out / "runs.csv")]))
    again = pd.read_csv(third / "summary.csv")
    pd.testing.assert_frame_equal(again, pd.read_csv(out / "summary.csv"))


def test_an_archive_written_before_the_subset_tag_counts_with_subsets_unknown(store, tmp_path):
    uri, _ = store
    report.write_report(report_cfg(uri, tmp_path, tmp_path / "first"))
    old = tmp_path / "old_runs.csv"
    pd.read_csv(tmp_path / "first" / "runs.csv").drop(columns="subset").to_csv(old, index=False)
    out = tmp_path / "out"
    report.write_report(report_cfg(f"sqlite:///{tmp_path}/empty.db", tmp_path, out, archive=[str(old)]))
    s = pd.read_csv(out / "summary.csv").set_index(["selector", "k"])
    assert s.loc[("random", 100), "seeds"] == 5 and s.loc[("random", 100), "median_acc"] == pytest.approx(
        0.84
    )
    assert s["subsets"].isna().all()


@pytest.mark.parametrize(
    ("archive", "sweep", "message"),
    [
        (["missing/runs.csv"], None, "archive=missing/runs.csv: no such file"),
        (["summary"], None, "no column seed"),
        (["first/runs.csv"], "multirun/x", "archive= with sweep="),
    ],
)
def test_a_bad_archive_fails_before_any_work(store, tmp_path, archive, sweep, message):
    uri, _ = store
    report.write_report(report_cfg(uri, tmp_path, tmp_path / "first"))
    pd.read_csv(tmp_path / "first" / "summary.csv").to_csv(tmp_path / "summary", index=False)
    out = tmp_path / "out"
    paths = [str(tmp_path / a) if a != "missing/runs.csv" else a for a in archive]
    with pytest.raises(report.ReportError, match=message):
        report.write_report(report_cfg(uri, tmp_path, out, archive=paths, sweep=sweep))
    assert not out.exists()


def test_montage_shows_exactly_the_kept_images(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(40, 28, 28), dtype=np.uint8)
    labels = np.arange(40) % 4
    kept = np.array([3, 7, 8, 12, 13, 22, 31])
    picture, shown, counts = montage_grid(images, labels, kept)
    assert sorted(shown[shown >= 0]) == sorted(kept)
    assert counts.tolist()[:4] == [2, 1, 1, 3]
    for (row, col), i in np.ndenumerate(shown):
        tile = picture[row * 28 : (row + 1) * 28, col * 28 : (col + 1) * 28]
        assert np.array_equal(tile, images[i]) if i >= 0 else not tile.any()
    assert sorted(save_montage(tmp_path / "m.png", images, labels, kept, "t")) == sorted(kept)
    with Image.open(tmp_path / "m.png") as img:
        img.verify()
    # more than ten of a class: the row shows the first ten, nothing else
    many = np.arange(0, 40, 4)[:10].tolist() + [1]
    _, shown, _ = montage_grid(images, labels, np.array(many + [0]), per_class=10)
    assert set(shown[shown >= 0]) <= set(many)


def test_empty_experiment_is_a_clear_message(tmp_path):
    env_uri = f"sqlite:///{tmp_path}/empty.db"
    MlflowClient(env_uri).create_experiment("mnist-pruning", artifact_location=(tmp_path / "a").as_uri())
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_pruning.report",
            f"mlflow.tracking_uri={env_uri}",
            f"out_dir={tmp_path}/r",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 1
    assert "no FINISHED runs" in res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_interpolation_is_on_log_k():
    summary = pd.DataFrame({"selector": "random", "curve": "c", "k": [10, 1000], "median_acc": [0.5, 1.0]})
    answer = report.smallest_k(summary, 0.75)
    assert answer.iloc[0]["interpolated_k"] == pytest.approx(100.0)
    assert math.isclose(answer.iloc[0]["smallest_k"], 1000)


def test_tuning_runs_and_test_runs_never_mix(store):
    uri, _ = store
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(EXP).experiment_id
    for seed, acc in enumerate([0.70, 0.75, 0.90]):
        add_run(client, exp_id, "random", 100, seed, acc, metric="val_acc")
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    assert len(runs.finished) == 16
    val = report.summarize(report.with_metric(runs, "val_acc").finished, metric="val_acc")
    assert len(val) == 1 and val.iloc[0]["seeds"] == 3 and val.iloc[0]["median_acc"] == pytest.approx(0.75)
    test = report.summarize(report.with_metric(runs, "test_acc").finished).set_index(["selector", "k"])
    assert test.loc[("random", 100), "median_acc"] == pytest.approx(0.84)  # the val runs left out
    with pytest.raises(report.ReportError, match="no FINISHED run logged 'loss'"):
        report.with_metric(runs, "loss")


def test_results_block_is_replaced_and_nothing_else(tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text(
        "intro\n<!-- report:a -->\nold a\n<!-- /report:a -->\n"
        "mid\n<!-- report:b -->\nold b\n<!-- /report:b -->\n"
    )
    report.fill_block(doc, "a", "| new | table |\n")
    assert doc.read_text() == (
        "intro\n<!-- report:a -->\n| new | table |\n<!-- /report:a -->\nmid\n"
        "<!-- report:b -->\nold b\n<!-- /report:b -->\n"
    )
    with pytest.raises(report.ReportError, match="report:c"):
        report.fill_block(doc, "c", "x")


def test_a_setting_tried_on_one_curve_only_names_just_that_curve(store):
    uri, _ = store
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(EXP).experiment_id
    for seed in range(5):
        add_run(client, exp_id, "full", 60000, seed, 0.99, steps="300")
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    s = report.summarize(runs.finished)
    assert set(s["curve"]) == {"random", "nearest pca50", "full train.steps=300"}
    assert set(s["other"]) == {"", "train.steps=300"}
    md = report.markdown(s, report.smallest_k(s, 0.95), 0.95, runs, 5, "test_acc")
    assert "settings not shown in brackets (regime -): train.steps=50" in md


def test_a_regime_s_own_settings_are_its_usual_values_and_the_curve_spans_regimes(tmp_path, empty_store):
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):
        add_run(client, exp_id, "random", 20, seed, 0.80, steps="4000", regime="tiny")
        add_run(client, exp_id, "random", 200, seed, 0.95, steps="3000", regime="small")
    add_run(client, exp_id, "random", 200, 5, 0.96, steps="100", regime="small")
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    s = report.summarize(runs.finished)
    plain = s[s["other"] == ""]
    assert plain["regime"].tolist() == ["tiny", "small"] and plain["k"].tolist() == [20, 200]
    assert set(s["curve"]) == {"random", "random train.steps=100"}
    md = report.markdown(s, report.smallest_k(s, 0.95), 0.95, runs, 5, "test_acc")
    assert "| random | - | - | no | 20 | tiny | 5 | - | 0.8000 |" in md
    assert "(regime small): train.steps=3000" in md and "(regime tiny): train.steps=4000" in md


def test_latest_regime_keeps_the_regime_a_setting_ran_in_last(tmp_path, empty_store):
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):  # the first sweep: large at both sizes
        add_run(client, exp_id, "random", 2000, seed, 0.990, steps="8000", regime="large")
        add_run(client, exp_id, "random", 3000, seed, 0.980 + 0.001 * seed, steps="8000", regime="large")
    for seed in range(3):  # run again after the bounds moved: 3,000 is xlarge now
        add_run(client, exp_id, "random", 3000, seed, 0.990 + 0.001 * seed, steps="12000", regime="xlarge")
    add_run(client, exp_id, "random", 3000, 0, 0.90, steps="300", regime="dc_protocol")  # a curve of its own
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    both = report.summarize(runs.finished)
    assert sorted(both.loc[both["k"] == 3000, "regime"]) == ["dc_protocol", "large", "xlarge"]

    kept = report.latest_regime(runs)
    assert kept.superseded == 5 and len(kept.finished) == 5 + 3 + 1
    s = report.summarize(kept.finished).set_index(["k", "regime"])
    assert set(s.index) == {(2000, "large"), (3000, "xlarge"), (3000, "dc_protocol")}
    assert s.loc[(3000, "xlarge"), "seeds"] == 3 and s.loc[(3000, "xlarge"), "median_acc"] == pytest.approx(
        0.991
    )
    md = report.markdown(
        report.summarize(kept.finished), report.smallest_k(s.reset_index(), 0.95), 0.95, kept, 3, "test_acc"
    )
    assert "5 runs of a superseded regime left out (latest_regime=true)" in md

    add_run(client, exp_id, "random", 3000, 4, 0.985, steps="8000", regime="large")  # large again, newest
    again = report.latest_regime(report.latest_finished(report.fetch_runs(uri, EXP)))
    s = report.summarize(again.finished)
    assert sorted(s.loc[s["k"] == 3000, "regime"]) == ["dc_protocol", "large"] and again.superseded == 3


def test_near_full_answer_and_the_scored_selectors_keep_in_their_name(tmp_path, empty_store):
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):
        add_run(client, exp_id, "full", 60000, seed, 0.990 + 0.001 * seed, keep="easy")  # median 0.992
        for k, easy, hard in [(3000, 0.985, 0.980), (10000, 0.988, 0.9895), (30000, 0.990, 0.9925)]:
            add_run(client, exp_id, "el2n", k, seed, easy, keep="easy")
            add_run(client, exp_id, "el2n", k, seed, hard, keep="hard")
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    s = report.summarize(runs.finished)
    assert set(s["selector"]) == {"full", "el2n-easy", "el2n-hard"} and set(s["other"]) == {""}
    reference, near = report.near_full(s, 0.003)
    assert reference == pytest.approx(0.992)
    near = near.set_index("curve")
    assert near.loc["el2n-easy", "smallest_k"] == 30000  # 0.988 < 0.989 <= 0.990
    assert near.loc["el2n-hard", "smallest_k"] == 10000
    md = report.markdown(s, report.smallest_k(s, 0.95), 0.95, runs, 5, "test_acc", gap=0.003)
    assert "within 0.003 of full data's (0.9920), i.e. reaches 0.9890" in md
    assert "| el2n-hard | 3000,10000,30000 | 10000 |" in md
    assert report.near_full(s[s["selector"] != "full"], 0.003)[0] is None


def test_a_selector_s_own_settings_are_its_usual_values(tmp_path, empty_store):
    """el2n and forgetting score with different defaults (epochs 3 and 10): neither is an
    exception because the other has more runs; a forgetting run off its own default is."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(3):
        for k in (20, 50):
            add_run(client, exp_id, "el2n", k, seed, 0.9, keep="easy", extra={"selector.score.epochs": "3"})
        add_run(
            client, exp_id, "forgetting", 20, seed, 0.8, keep="easy", extra={"selector.score.epochs": "10"}
        )
    add_run(client, exp_id, "forgetting", 20, 0, 0.7, keep="easy", extra={"selector.score.epochs": "20"})
    s = report.summarize(report.latest_finished(report.fetch_runs(uri, EXP)).finished, min_seeds=1)
    assert sorted(s["curve"]) == [
        "el2n-easy",
        "el2n-easy",
        "forgetting-easy",
        "forgetting-easy selector.score.epochs=20",
    ]


def test_comparison_with_another_study_matches_setting_by_setting(store):
    uri, _ = store
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    s = report.summarize(runs.finished, min_seeds=1)  # every setting counts as complete
    theirs = pd.DataFrame(
        {
            "selector": ["random", "random", "nearest", "random"],
            "clusters": ["-", "-", "k", "-"],
            "k": ["100", "200", "100", "60"],
            "median_acc": ["0.80", "0.97", "0.90", "0.5"],
        }
    )
    table = report.compare(s, theirs)
    assert table["median_acc"].tolist()[:3] == pytest.approx([0.84, 0.96, 0.96])
    assert pd.isna(table["median_acc"].iloc[3])  # a setting not run here
    assert table["difference"].tolist()[:3] == pytest.approx([0.04, -0.01, 0.06])
    md = report.comparison_markdown(table, "original", "test_acc", min_seeds=1)
    assert "| random | 84.0 / 80.0 | 96.0 / 97.0 | not run / 50.0 |" in md
    assert "| nearest ck | 96.0 / 90.0 |  |  |" in md
    assert "*" not in md
    more = int(table["seeds"].max()) + 1
    partial_table = report.compare(report.summarize(runs.finished, min_seeds=more), theirs)
    partial = report.comparison_markdown(partial_table, "original", "test_acc", min_seeds=more)
    assert "| random | 84.0* / 80.0 |" in partial and "* fewer than" in partial
    with pytest.raises(report.ReportError, match="needs the columns"):
        report.compare(s, theirs.drop(columns="k"))


def test_a_cluster_count_that_follows_k_is_one_curve(tmp_path, empty_store):
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for k in (50, 100):
        add_run(client, exp_id, "hybrid", k, 0, 0.9, clusters=k // 2, clusters_rule="k/2")
        add_run(client, exp_id, "hybrid", k, 0, 0.8, clusters=10, clusters_rule="10")
    s = report.summarize(report.latest_finished(report.fetch_runs(uri, EXP)).finished)
    assert sorted(s["clusters"]) == ["10", "10", "k/2", "k/2"]
    assert set(s["curve"]) == {"hybrid pca50 c=k/2", "hybrid pca50 c10"}


def test_a_selector_that_ignores_the_embedding_is_one_curve_whatever_the_embedding(tmp_path, empty_store):
    """`selector=random,nearest embedding=pca,autoencoder`: random trains on the same subsets
    under both embeddings, so it is one curve of 5 seeds (the newer run of each seed), while
    nearest, which uses the embedding, stays two curves."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    autoencoder = {"embedding": "autoencoder", "embedding.name": "autoencoder", "embedding.dims": "64"}
    autoencoder["embedding.epochs"] = "10"  # an embedding's own setting, which pca has not
    pca = {"embedding.seed": "None"}  # each run's own seed, as by default: no note
    autoencoder.update(pca)
    for extra, accs in (
        (pca, [0.80, 0.82, 0.84, 0.86, 0.88]),
        (autoencoder, [0.70, 0.72, 0.74, 0.76, 0.78]),
    ):
        for seed, acc in enumerate(accs):
            add_run(client, exp_id, "random", 100, seed, acc, extra=extra)
            add_run(client, exp_id, "nearest", 100, seed, acc + 0.1, extra=extra)
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    assert runs.duplicates == 5 and len(runs.finished) == 15
    s = report.summarize(runs.finished).set_index("curve")
    assert sorted(s.index) == ["nearest autoencoder64", "nearest pca50", "random"]
    assert s.loc["random", "seeds"] == 5 and s.loc["random", "median_acc"] == pytest.approx(0.74)
    assert s.loc["random", "embedding"] == "-" and s.loc["random", "other"] == ""
    assert s.loc["nearest pca50", "median_acc"] == pytest.approx(0.94)
    md = report.markdown(s.reset_index(), report.smallest_k(s.reset_index(), 0.95), 0.95, runs, 5, "test_acc")
    assert "(embedding autoencoder): embedding.epochs=10" in md and "(ignored)" not in md
    assert "embedding.seed" not in md


def test_a_run_label_names_its_setting_unless_it_names_several(tmp_path, empty_store):
    """search2's stages read by their labels (second, control) rather than the keys they differ
    by; a label given to two settings reads `label: keys` for each, so that they stay apart;
    runs without a label read as before."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):
        for label, evaluations in (("second", "300"), ("control", "0")):
            extra = {"mlflow.run_label": label, "selector.search.evaluations": evaluations}
            add_run(client, exp_id, "random", 20, seed, 0.9, extra=extra)
        for steps in ("200", "400"):  # one label, two settings
            add_run(client, exp_id, "random", 30, seed, 0.9, steps=steps, extra={"mlflow.run_label": "x"})
        add_run(client, exp_id, "random", 50, seed, 0.9, extra={"selector.search.evaluations": "60"})
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    s = report.summarize(runs.finished)
    assert sorted(s.loc[s["k"] == 20, "other"]) == ["control", "second"]
    assert sorted(s.loc[s["k"] == 30, "other"]) == ["x: train.steps=200", "x: train.steps=400"]
    assert s.loc[s["k"] == 50, "other"].tolist() == ["selector.search.evaluations=60"]
    assert (s["seeds"] == 5).all() and len(s) == 5


def test_the_report_counts_the_distinct_subsets_behind_a_median(tmp_path, empty_store):
    """Five seeds of random drew five subsets; five seeds of nearest on one fixed fit trained one
    subset five times: the subsets column says 5 and 1, and the note names the curve and k whose
    seeds shared a subset. Runs logged before the tag show '-'."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):
        add_run(client, exp_id, "random", 100, seed, 0.9, subset=f"r{seed}")
        add_run(client, exp_id, "nearest", 100, seed, 0.9, subset="one")
        add_run(client, exp_id, "nearest", 200, seed, 0.9, subset=f"n{seed % 2}")
        add_run(client, exp_id, "random", 200, seed, 0.9)  # before the subset tag
    runs = report.latest_finished(report.fetch_runs(uri, EXP))
    s = report.summarize(runs.finished).set_index(["curve", "k"])
    assert s.loc[("random", 100), "subsets"] == 5
    assert s.loc[("nearest pca50", 100), "subsets"] == 1
    assert s.loc[("nearest pca50", 200), "subsets"] == 2
    assert math.isnan(s.loc[("random", 200), "subsets"])
    md = report.markdown(s.reset_index(), report.smallest_k(s.reset_index(), 0.95), 0.95, runs, 5, "test_acc")
    assert "seeds that shared subsets: nearest pca50 (k = 100: 1 of 5, k = 200: 2 of 5)." in md
    rows = [line for line in md.splitlines() if line.startswith("| random | - |")]
    assert [r.split(" | ")[7] for r in rows] == ["5", "-"]
    per_run = report.per_run(runs.finished).set_index(["curve", "k", "seed"])
    assert per_run.loc[("nearest pca50", 100, 3), "subset"] == "one"
    from mnist_pruning.report.markdown import subsets_note

    distinct = s.reset_index()
    assert subsets_note(distinct[distinct["curve"] == "random"].iloc[:1]).endswith(
        "every seed of every setting drew a subset of its own"
    )
    only_full = subsets_note(distinct.assign(selector="full"))
    assert only_full == "subsets: full data only (one subset, the whole pool)"
    assert subsets_note(distinct.assign(subsets=math.nan)).endswith("(runs logged before the subset tag)")


def test_a_fixed_fit_is_named_in_brackets_beside_the_refitted_curve(tmp_path, empty_store):
    """`embedding.seed=0` (one autoencoder fit for every seed, the frontier's second edition)
    beside the default (each seed its own fit): two curves, the fixed one named, never mixed;
    a report of fixed-fit runs only names it too."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    ae = {"embedding": "autoencoder", "embedding.name": "autoencoder", "embedding.dims": "64"}
    for seed in range(5):
        add_run(client, exp_id, "herding", 30, seed, 0.94, extra={**ae, "embedding.seed": "None"})
        add_run(client, exp_id, "herding", 30, seed, 0.95, extra={**ae, "embedding.seed": "0"})
    s = report.summarize(report.latest_finished(report.fetch_runs(uri, EXP)).finished)
    assert sorted(s["curve"]) == ["herding autoencoder64", "herding autoencoder64 embedding.seed=0"]
    assert s.set_index("curve")["seeds"].tolist() == [5, 5]

    only_fixed = tmp_path / "fixed"
    only_fixed.mkdir()
    uri = empty_store(only_fixed / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):
        add_run(client, exp_id, "herding", 30, seed, 0.95, extra={**ae, "embedding.seed": "0"})
    s = report.summarize(report.latest_finished(report.fetch_runs(uri, EXP)).finished)
    assert s["curve"].tolist() == ["herding autoencoder64 embedding.seed=0"]


def test_each_distinct_subset_is_written_as_the_text_selector_fixed_reads(tmp_path, empty_store):
    from mnist_pruning.cache import array_digest
    from mnist_pruning.fixed import _from_file

    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP, artifact_location=(tmp_path / "mlruns").as_uri())
    rng = np.random.default_rng(1)
    a, b = rng.choice(60000, 10, replace=False), rng.choice(60000, 20, replace=False)

    def digest(idx):
        return array_digest(np.sort(idx).astype(np.int64))[:16]

    # one subset trained twice (two networks), another once, and a run without a subset tag
    for seed, idx in [(0, a), (1, a), (2, b)]:
        add_run(client, exp_id, "random", len(idx), seed, 0.5, indices=idx, subset=digest(idx))
    add_run(client, exp_id, "random", 30, 0, 0.5, indices=rng.choice(60000, 30, replace=False))
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = report.latest_finished(report.fetch_runs(uri, EXP)).finished
    assert report.write_subsets(runs, tmp_path / "subsets") == 2
    files = sorted((tmp_path / "subsets").iterdir())
    assert [f.name for f in files] == sorted(f"{digest(i)}.txt" for i in (a, b))
    for idx in (a, b):
        assert np.array_equal(_from_file(str(tmp_path / "subsets" / f"{digest(idx)}.txt")), np.sort(idx))

    add_run(client, exp_id, "random", 10, 3, 0.5, indices=b[:10], subset=digest(a))  # a wrong tag
    runs = report.latest_finished(report.fetch_runs(uri, EXP)).finished
    with pytest.raises(report.ReportError, match="is not the subset"):
        report.write_subsets(runs, tmp_path / "again")


def test_the_same_subsets_under_each_network_side_by_side(tmp_path, empty_store):
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP, artifact_location=(tmp_path / "mlruns").as_uri())
    trained = [("lenet5", "tiny", 0.80), ("mlp", "dc_protocol", 0.60), ("convnet3", "dc_protocol", 0.70)]
    for model, regime, acc in trained:
        for seed in range(5):
            extra = {"model.name": model} if model != "lenet5" else {}
            add_run(
                client,
                exp_id,
                "random",
                10,
                seed,
                acc + seed / 100,
                regime=regime,
                subset=f"s{seed}",
                extra=extra,
            )
    # and under another augmentation of the protocol: a column of its own, not a row
    for seed in range(5):
        extra = {"model.name": "convnet3", "train.augmentation": "dc"}
        add_run(client, exp_id, "random", 10, seed, 0.6, regime="dc_protocol", subset=f"s{seed}", extra=extra)
    # ConvNet-3 at k = 20 on three seeds only, on subsets of its own
    for seed in range(3):
        add_run(
            client,
            exp_id,
            "random",
            20,
            seed,
            0.9,
            regime="dc_protocol",
            subset=f"t{seed}",
            extra={"model.name": "convnet3"},
        )
    rows = report.per_run(report.latest_finished(report.fetch_runs(uri, EXP)).finished, "test_acc")
    table = report.network_table(rows, "test_acc", 5)
    header = "| curve | k | lenet5, regimes | mlp, dc_protocol | convnet3, dc_protocol "
    assert header + "| convnet3, dc_protocol (augmentation=dc) | seeds | subsets |" in table
    assert (
        "| random | 10 | 0.8200 | 0.6200 | 0.7200 | 0.6000 | 5 | 5 |" in table
    )  # one subset a seed, all four
    assert "| random | 20 | - | - | 0.9000* | - | 3 | 3 |" in table
    # one network and recipe only: no such table
    assert report.network_table(rows[rows["model"] == "mlp"], "test_acc", 5) == ""
    # elsewhere a curve under the protocol is a curve of its own, not one with the size regimes'
    curves = set(rows["curve"])
    assert {"random", "random mlp dc_protocol", "random convnet3 dc_protocol"} <= curves
    assert "random convnet3 dc_protocol train.augmentation=dc" in curves


def test_the_seeds_of_a_transfer_by_run_name_are_one_curve(tmp_path, empty_store):
    """`selector=fixed selector.run=EXPERIMENT/NAME` names a source run per size and seed; the
    report reads the run's own k and seed in the name as {k} and {seed}, so five seeds of one
    source family are one setting, two families (a search and its control) two, and runs named
    by id stay apart."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):
        for k in (10, 20):  # the search's subsets at two sizes; its control's at one
            spec = f"search2/search-herding-k{k}-bal-ae64-s{seed}"
            add_run(client, exp_id, "fixed", k, seed, 0.9, extra={"selector.run": spec})
        spec = f"search2/search-herding-k10-bal-ae64-control-s{seed}"
        add_run(client, exp_id, "fixed", 10, seed, 0.8, extra={"selector.run": spec})
    add_run(client, exp_id, "fixed", 10, 0, 0.7, extra={"selector.run": "0123abcd"})
    s = report.summarize(report.latest_finished(report.fetch_runs(uri, EXP)).finished)
    rows = {(r.other, r.k): (r.seeds, r.median_acc) for r in s.itertuples()}
    assert rows == {  # the commonest source is the usual value, not named
        ("", 10): (5, pytest.approx(0.9)),
        ("", 20): (5, pytest.approx(0.9)),
        ("selector.run=search2/search-herding-k{k}-bal-ae64-control-s{seed}", 10): (5, pytest.approx(0.8)),
        ("selector.run=0123abcd", 10): (1, pytest.approx(0.7)),
    }


def test_paired_gains_are_taken_seed_by_seed_against_the_base_label(tmp_path, empty_store):
    """A search and its control on the same seed pair up, under each network apart: the gains
    are the differences of the two runs of a seed (not of the medians), and a seed whose base
    is missing pairs with nothing. A base no setting reads is a one-line error naming what does."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    control = [0.90, 0.80, 0.95, 0.70, 0.85]
    search = [0.91, 0.83, 0.94, 0.80, 0.86]  # gains +1, +3, -1, +10, +1: median +1, four above
    for seed in range(5):
        for label, acc in (("control", control[seed]), ("second", search[seed])):
            extra = {
                "mlflow.run_label": label,
                "selector.search.evaluations": "0" if label == "control" else "300",
            }
            add_run(client, exp_id, "random", 20, seed, acc, extra=extra)
            mlp = {**extra, "model.name": "mlp"}
            if not (label == "control" and seed == 4):  # the MLP's control of seed 4 is missing
                add_run(
                    client,
                    exp_id,
                    "random",
                    20,
                    seed,
                    acc - 0.2 * (label == "control"),
                    regime="dc_protocol",
                    extra=mlp,
                )
    rows = report.per_run(report.latest_finished(report.fetch_runs(uri, EXP)).finished, "test_acc")
    table = report.paired_table(rows, "control", "test_acc")
    lenet = "| random (second) | lenet5, regimes | 20 | 5 | +1.00 | 4 of 5 |"
    assert f"{lenet} +1.00 / +3.00 / -1.00 / +10.00 / +1.00 |" in table
    mlp = "| random (second) | mlp, dc_protocol | 20 | 4 | +22.00 | 4 of 4 |"  # the control's 20 points lower
    assert f"{mlp} +21.00 / +23.00 / +19.00 / +30.00 |" in table
    assert "(control) |" not in table  # the base is not set against itself
    with pytest.raises(
        report.ReportError,
        match=r"paired='controls': no setting reads \(controls\); in brackets here: \['control', 'second'\]",
    ):
        report.paired_table(rows, "controls", "test_acc")


def test_a_transfer_shares_the_row_of_the_run_whose_subset_it_trained(tmp_path, empty_store):
    """search2 trains each search's subset again under the MLP (selector=fixed): the network table
    sets the MLP's median beside the search's own in one row, by the subset digest they share;
    a fixed run whose subset no run of the experiment made keeps a row of its own."""
    uri = empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXP)
    for seed in range(5):
        add_run(client, exp_id, "nearest", 20, seed, 0.93, subset=f"a{seed}")
        mlp = {"model.name": "mlp", "selector.run": f"exp/nearest-k20-s{seed}"}
        add_run(client, exp_id, "fixed", 20, seed, 0.75, regime="dc_protocol", subset=f"a{seed}", extra=mlp)
        other = {"model.name": "mlp", "selector.indices": "elsewhere.txt"}
        add_run(client, exp_id, "fixed", 20, seed, 0.70, regime="dc_protocol", subset=f"b{seed}", extra=other)
    rows = report.per_run(report.latest_finished(report.fetch_runs(uri, EXP)).finished, "test_acc")
    table = report.network_table(rows, "test_acc", 5)
    assert "| nearest pca50 | 20 | 0.9300 | 0.7500 | 5 | 5 |" in table
    assert sum(line.endswith("| 20 | - | 0.7000 | 5 | 5 |") for line in table.splitlines()) == 1


def test_a_study_reads_trial_by_trial_by_its_settings_and_the_best_full_trial_is_marked():
    """A row per trial in the order its first run started, the settings that vary, the seeds and
    the median; a trial read back under another tune_trial number is still one trial, and a
    one-seed trial above the rest is not called the best."""
    from mnist_pruning.report import study_tables

    def run(study, trial, steps, wd, seed, acc, start):
        return {
            "tags.tune_study": study,
            "tags.tune_trial": str(trial),
            "params.train.steps": str(steps),
            "params.train.weight_decay": str(wd),
            "params.train.lr": "0.05",
            "params.seed": str(seed),
            "metrics.val_acc": acc,
            "start_time": pd.Timestamp("2026-12-07") + pd.Timedelta(minutes=start),
        }

    runs = pd.DataFrame(
        [
            run("tune-a", 0, 8000, 0.0016409, 0, 0.985, 0),
            run("tune-a", 0, 8000, 0.0016409, 1, 0.987, 1),
            run("tune-a", 1, 8000, 0.0016409, 2, 0.986, 20),  # read back under trial 1 after a restart
            run("tune-a", 0, 3000, 0.0005, 0, 0.979, 10),
            run("tune-a", 0, 3000, 0.0005, 1, 0.980, 11),
            run("tune-a", 0, 3000, 0.0005, 2, 0.978, 12),
            run("tune-a", 2, 11000, 0.0006, 0, 0.990, 30),  # one seed so far
            {"metrics.val_acc": 0.5, "params.train.steps": "10", "start_time": pd.Timestamp("2026-12-01")},
        ]
    )
    text = study_tables(runs, "val_acc")
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[0] == "| steps | weight_decay | seeds | median val_acc |"
    assert lines[2:] == [
        "| 8000 | 0.00164 | 3 | **0.9860** |",
        "| 3000 | 0.0005 | 3 | 0.9790 |",
        "| 11000 | 0.0006 | 1 | 0.9900 |",
    ]
    assert "Study `tune-a` (3 trials" in text and text.count("Study `") == 1
    assert study_tables(runs.drop(columns="tags.tune_study"), "val_acc") == ""
