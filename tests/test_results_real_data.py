"""scripts/results_real_data.py: the report from fake run outputs, the job list, skipping finished runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location(
        "results_real_data", ROOT / "scripts" / "results_real_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["results_real_data"] = module
    spec.loader.exec_module(module)
    return module


def fake_run(
    script, out: Path, group: str, variant: str, split: str, history, seed: int, signal: float,
    best: int | None = None, epochs: int = 4,
):  # fmt: skip
    """A finished run folder: predictions whose AUC grows with ``signal``, and its metrics; with
    ``best``, a CSV log of ``epochs`` epochs whose validation LogLoss is lowest at epoch ``best``."""
    import torch

    from recsys_lab.metrics import auc

    rng = np.random.default_rng(100 + seed)
    labels = (np.random.default_rng(0).random(400) < 0.4).astype(np.float32)  # same rows for every run
    probs = np.clip(0.5 + signal * (labels - 0.4) + 0.3 * rng.standard_normal(400), 0.01, 0.99).astype(
        np.float32
    )
    folder = script.run_dir(out, group, split, variant, history, seed)
    folder.mkdir(parents=True)
    np.savez_compressed(folder / "predictions.npz", probs=probs, labels=labels)
    a = auc(torch.from_numpy(probs), torch.from_numpy(labels))
    metrics = {
        "test/auc": a,
        "test/logloss": 0.6,
        "val/auc": a - 0.01,
        "epochs": epochs,
        "train/samples_per_s": 1000.0,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    meta = {"group": group, "variant": variant, "split": split, "history": history, "seed": seed,
            "overrides": ["data=movielens", *script.TABULAR.get(variant, script.SEQUENCE.get(variant, []))],
            "wall_s": 10.0, "test_rows": 400}  # fmt: skip
    if best is not None:
        meta |= {"best_epoch": best, "max_epochs": 10}
        write_csv_log(folder, [0.55 + abs(e - best) / 100 for e in range(1, epochs + 1)])
    (folder / "run.json").write_text(json.dumps(meta))
    return a


def test_report_tables_intervals_and_differences(script, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    aucs = {}
    for seed in (0, 1, 2):
        for variant, signal in (("DNN", 0.1), ("DCNv2", 0.3)):
            aucs[variant, seed] = fake_run(script, out, "tabular", variant, "random", None, seed, signal)
        fake_run(script, out, "sequence", "DCNv2", "random", None, seed, 0.3)
        fake_run(script, out, "sequence", "GRAB", "random", 50, seed, 0.6)
    for h, signal in ((8, 0.3), (32, 0.5), (128, 0.6)):
        fake_run(script, out, "history", "GRAB", "random", h, 0, signal)
    page = tmp_path / "page.md"
    monkeypatch.setattr(
        sys, "argv", ["x", "report", "--out", str(out), "--page", str(page), "--replicates", "200"]
    )
    script.main()
    text = page.read_text()
    dcn = [aucs["DCNv2", s] for s in (0, 1, 2)]
    row = next(line for line in text.splitlines() if line.startswith("| DCNv2 | 3 |"))
    assert f"{np.mean(dcn):.4f} ± {np.std(dcn, ddof=1):.4f}" in row
    lo, hi = (float(x) for x in row.split("[")[1].split("]")[0].split(","))
    assert lo < np.mean(dcn) < hi and hi - lo > 0.02  # 400 test rows: the interval holds row noise
    assert "FuxiCTR" in text and "MovieLens-1M (not run here)" in text
    diff = next(line for line in text.splitlines() if line.startswith("| GRAB | +"))
    lo, hi = (float(x) for x in diff.split("[")[1].split("]")[0].split(","))
    assert 0 < lo < hi  # GRAB's fake predictions are clearly better, on the same rows
    assert "per doubling" in text and "| 128 |" in text
    assert "tabular: DNN, random, seed 2" in text


def test_run_skips_finished_runs_and_lists_jobs(script, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    fake_run(script, out, "tabular", "DNN", "random", None, 0, 0.2)
    data = tmp_path / "ml"
    data.mkdir()
    argv = ["x", "run", "--data-path", str(data), "--out", str(out), "--groups", "tabular", "--splits", "random",
            "--seeds", "0", "--models", "dnn"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    script.main()  # the only job is finished: nothing is trained
    assert "skip tabular/random__dnn__hdefault__s0 (done)" in capsys.readouterr().out
    args = script.main.__globals__["argparse"].Namespace(
        groups=["tabular", "sequence", "history"], splits=["random", "time"], seeds=[0, 1], models=None,
        seq_splits=["time"], seq_seeds=[0], history=50, histories=[8, 256], history_models=["GRAB"], history_seeds=[0],
    )  # fmt: skip
    jobs = script.jobs(args)
    assert len(jobs) == 2 * 2 * len(script.TABULAR) + len(script.SEQUENCE) + 2
    assert ("sequence", "DCNv2", ["model=dcnv2"], "time", None, 0) in jobs  # no history for the baseline
    assert ("history", "GRAB", script.SEQUENCE["GRAB"], "time", 256, 0) in jobs


def test_ml_1m_layout_runs_and_reports(script, tmp_path, monkeypatch):
    """GroupLens' ML-1M files (ratings.dat, users.dat, movies.dat with ``::``): the script trains on
    them and the page names MovieLens-1M (tiny generated files; no MovieLens data in the repo)."""
    from tests.data.rawfiles import write_movielens

    folder = write_movielens(tmp_path / "ml-1m", "ml-1m")
    assert script.dataset_name(folder) == "MovieLens-1M"
    out = tmp_path / "runs"
    argv = ["x", "run", "--data-path", str(folder), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--groups", "tabular", "--splits", "time", "--seeds", "0", "--models", "dnn", "--extra", "debug=tiny"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    meta = json.loads((script.run_dir(out, "tabular", "time", "DNN", None, 0) / "run.json").read_text())
    assert meta["dataset"] == "MovieLens-1M" and meta["best_epoch"] >= 1
    page = tmp_path / "ml1m.md"
    monkeypatch.setattr(
        sys, "argv", ["x", "report", "--out", str(out), "--page", str(page), "--replicates", "50"]
    )
    script.main()
    text = page.read_text()
    assert "MovieLens-1M as a CTR task" in text and "## MovieLens-1M, per-user leave-last-out" in text
    assert "| DNN | 1 |" in text and "MovieLens-100K" not in text and "FuxiCTR" not in text


def test_tuning_picks_the_best_val_auc_and_the_tuned_section(script, tmp_path):
    out = tmp_path / "runs"
    fake_run(script, out, "tabular", "DCNv2", "time", None, 0, 0.3)  # the recipe's own run
    for i, name in enumerate(script.CANDIDATES):
        fake_run(script, out, "tuning", f"DCNv2, {name}", "time", None, 0, 0.1 + 0.2 * i)
    args = script.main.__globals__["argparse"].Namespace(
        groups=["tuned"], out=out, tune_seeds=[0], seeds=[0, 1]
    )
    last = list(script.CANDIDATES)[-1]  # the strongest signal, so the best val AUC
    jobs = script.jobs(args)
    assert len(jobs) == 2 * len(script.TUNED_MODELS)
    assert ("tuned", f"DNN, tuned ({last})", ["model=dnn", *script.CANDIDATES[last]], "time", None, 1) in jobs
    runs = script.load_runs(out)
    text = "\n".join(script.tuned_section(runs, script.Bootstrap(50)))
    assert "## Defaults against a tuned run (time split)" in text
    # the winner's own tuning run is the tuned DCNv2 of seed 0: defaults minus tuned is negative here
    assert f"| DCNv2, tuned ({last}) | 1 |" in text
    assert next(line for line in text.splitlines() if line.startswith(f"| DCNv2 | {last} | -"))
    # an identical finished run in another group counts as done
    assert tuple(
        json.loads((script.run_dir(out, "tabular", "time", "DCNv2", None, 0) / "run.json").read_text())[
            "overrides"
        ]
    ) in script.finished_runs(out)


def test_tuned_pick_and_two_tuned_settings_are_compared_apart(script, tmp_path):
    out = tmp_path / "runs"
    first, weak = list(script.CANDIDATES)[:2]
    for seed in (0, 1):
        fake_run(script, out, "tabular", "DCNv2", "time", None, seed, 0.3)
    fake_run(script, out, "tuning", f"DCNv2, {first}", "time", None, 0, 0.6)
    fake_run(script, out, "tuning", f"DCNv2, {weak}", "time", None, 0, 0.05)  # worse than the recipe
    ns = script.main.__globals__["argparse"].Namespace
    # --pick runs a setting picked elsewhere (an Optuna study's best trial), even one the recipe beats
    jobs = script.jobs(ns(groups=["tuned"], out=out, tune_seeds=[0], seeds=[1], models=["dcnv2"], pick=weak))
    assert jobs == [
        ("tuned", f"DCNv2, tuned ({weak})", ["model=dcnv2", *script.CANDIDATES[weak]], "time", None, 1)
    ]
    with pytest.raises(SystemExit, match="--pick 'nope'"):
        script.jobs(ns(groups=["tuned"], out=out, tune_seeds=[0], seeds=[1], pick="nope"))
    fake_run(script, out, "tuned", f"DCNv2, tuned ({first})", "time", None, 1, 0.6)
    fake_run(script, out, "tuned", f"DCNv2, tuned ({weak})", "time", None, 1, 0.05)
    text = "\n".join(script.tuned_section(script.load_runs(out), script.Bootstrap(50)))
    # each setting has its own rows (its seed-0 tuning run joins its seed 1), never pooled
    assert f"| DCNv2, tuned ({first}) | 2 |" in text
    assert f"| DCNv2, tuned ({weak}) | 2 |" in text
    assert next(line for line in text.splitlines() if line.startswith(f"| DCNv2 | {first} | -"))
    assert next(line for line in text.splitlines() if line.startswith(f"| DCNv2 | {weak} | +"))


def write_csv_log(folder: Path, val_logloss: list[float]) -> None:
    """A Lightning CSVLogger file: per epoch a step row, a validation row and a train-epoch row,
    then the final re-validation and test of the best checkpoint (logged at the next epoch index)."""
    cols = ["epoch", "step", "test/auc", "train/loss_epoch", "train/loss_step", "val/auc", "val/logloss"]
    rows = []
    for e, v in enumerate(val_logloss):
        rows += [[e, 10 * e + 5, "", "", 0.6, "", ""], [e, 10 * e + 9, "", "", "", 0.8 - v / 10, v],
                 [e, 10 * e + 9, "", 0.6 - e / 100, "", "", ""]]  # fmt: skip
    n = len(val_logloss)
    rows += [[n, 10 * n, "", "", "", 0.79, min(val_logloss)], [n, 10 * n, 0.77, "", "", "", ""]]
    (folder / "csv").mkdir()
    (folder / "csv" / "metrics.csv").write_text(
        "\n".join(",".join(map(str, r)) for r in [cols, *rows]) + "\n"
    )


def test_read_curve_skips_the_final_revalidation(script, tmp_path):
    write_csv_log(tmp_path, [0.56, 0.54, 0.55, 0.57])
    c = script.read_curve(tmp_path)
    assert [p["epoch"] for p in c] == [1, 2, 3, 4]
    assert [p["val/logloss"] for p in c] == [0.56, 0.54, 0.55, 0.57]
    assert c[3]["train/loss"] == pytest.approx(0.57)
    assert script.read_curve(tmp_path / "nothing") == []


def test_converged_group_jobs_and_section(script, tmp_path, monkeypatch):
    args = script.main.__globals__["argparse"].Namespace(
        groups=["converged"], seq_splits=["time"], histories=[8, 64], history_models=["DCNv2", "DIN"],
        history_seeds=[0, 1], extra=[],
    )  # fmt: skip
    jobs = script.jobs(args)
    assert ("converged", "DCNv2", ["model=dcnv2"], "time", None, 1) in jobs  # no history, once per seed
    assert ("converged", "DIN", script.SEQUENCE["DIN"], "time", 64, 0) in jobs and len(jobs) == 2 * 3
    args.history_models = ["GRAB-packed"]  # batch_size counts segments: 192 steps an epoch
    packed = {h: o for _, _, o, _, h, _ in script.jobs(args)}
    assert "data.packing=user" in packed[8] and "data.batch_size=72" in packed[8]
    assert (
        "data.batch_size=17" in packed[64]
        and packed[64][: len(script.SEQUENCE["GRAB"])] == script.SEQUENCE["GRAB"]
    )
    args.extra = ["trainer.max_epochs=2"]
    with pytest.raises(SystemExit, match="early stopping"):
        script.jobs(args)

    out = tmp_path / "runs"
    for seed in (0, 1, 2):
        fake_run(script, out, "converged", "DCNv2", "time", None, seed, 0.3, best=2, epochs=4)
        for h, signal in ((8, 0.5), (32, 0.4), (128, 0.3)):
            # the longest history runs all 10 epochs: not stopped early, best at the last one
            best, epochs = (10, 10) if h == 128 else (3, 5)
            fake_run(script, out, "converged", "DIN", "time", h, seed, signal, best=best, epochs=epochs)
    fake_run(script, out, "converged", "GRAB-packed", "time", 8, 0, 0.6, best=2, epochs=4)
    page = tmp_path / "page.md"
    argv = ["x", "report", "--out", str(out), "--page", str(page), "--replicates", "200", "--figures"]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    text = page.read_text()
    assert "(time split, trained to early stopping)" in text
    assert "| 128 | 10/10*, 10/10*, 10/10* |" in text and "| 8 | 3/5, 3/5, 3/5 | 2/4 |" in text
    assert "DCNv2: 2/4, 2/4, 2/4" in text and "GRAB-packed's samples/s count segments" in text
    assert (
        "Convergence: 10 of 13 runs stopped early" in text
        and "in 3 the tested checkpoint is the last" in text
    )
    # the learning curves: DCNv2's first seed, DIN at 8 and at 128 (bold: the tested epoch)
    assert "| DIN, h=8, seed 0 | 0.5700 | 0.5600 | **0.5500** | 0.5600 | 0.5700 |" in text
    assert (tmp_path / "page_curves_time.png").stat().st_size > 1000 and "(page_curves_time.png)" in text
    # the history helps less with every doubling here: a negative slope whose interval excludes 0
    slope = next(line for line in text.splitlines() if line.startswith("DIN: least-squares slope"))
    lo, hi = (float(x) for x in slope.split("[")[1].split("]")[0].split(","))
    assert lo < hi < 0
    row = next(
        line for line in text.splitlines() if line.startswith("| converged: DIN, time, h=128, seed 1 |")
    )
    assert row.endswith("| 10 | 10 | no | 10 |")
