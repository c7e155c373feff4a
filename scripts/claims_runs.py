"""Shared pieces of the convergence studies (``scripts/claims_*.py``): one resumable training run
through the public ``recsys_lab.train`` API with early stopping on validation LogLoss, its test
predictions (the best checkpoint re-scored, cached), bootstrap intervals over test rows and
t-intervals over seeds."""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Early stopping on validation LogLoss; the best checkpoint (tested) is the lowest validation
# LogLoss. max_epochs is each study's budget cap: a run that stops at the cap did not converge,
# which the study's report states (`stopped_by_cap`).
EARLY_STOP = [
    "callbacks=early_stopping",
    "callbacks.early_stopping.monitor=val/logloss",
    "callbacks.early_stopping.mode=min",
    "callbacks.early_stopping.patience=1",
    "callbacks.early_stopping.min_delta=0.0001",
    "callbacks.model_checkpoint.monitor=val/logloss",
    "callbacks.model_checkpoint.mode=min",
    "callbacks.rich_progress_bar=null",
    "logger=none",
    "print_table=false",
    "num_threads=1",
]
# Two-sided 95% Student t quantiles by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def synthetic_overrides(args: argparse.Namespace, seed: int, data: list[str], model: list[str]) -> list[str]:
    """A study run on ``data=synthetic`` (plus the ``data`` overrides) with ``args``' rows, batch
    size and epoch cap, the ``model`` overrides, ``seed`` and early stopping (:data:`EARLY_STOP`)."""
    return [
        "data=synthetic",
        *data,
        f"data.num_train={args.num_train}",
        f"data.num_val={args.num_eval}",
        f"data.num_test={args.num_eval}",
        f"data.batch_size={args.batch_size}",
        *model,
        f"seed={seed}",
        f"trainer.max_epochs={args.max_epochs}",
        *EARLY_STOP,
    ]


def command_line(script: str) -> str:
    """The command that reproduces this invocation's runs (``--report-only`` and ``--out <dir>``,
    where the outputs live, left out)."""
    args, kept = sys.argv[1:], []
    skip = False
    for a in args:
        if skip or a == "--report-only" or a.startswith("--out="):
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        kept.append(a)
    return " ".join(["python", f"scripts/{script}", *kept])


def record_command(out: Path, command: str) -> None:
    """Write a study invocation's command line to ``<out>/command.txt`` (read back by
    :func:`recorded_command` when another invocation reports it beside its own)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(command + "\n")


def recorded_command(out: Path) -> str:
    """The command line :func:`record_command` wrote for ``out`` (``?`` if none)."""
    file = out / "command.txt"
    return file.read_text().strip() if file.is_file() else "?"


def train(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """Train one run into ``run_dir`` (skipped when its ``metrics.json`` exists; continued from
    ``checkpoints/last.ckpt`` when a previous attempt was interrupted; skipped, returning ``{}``,
    while another process of a parallel invocation holds the run's folder). Writes ``wall_s.txt``."""
    from hydra import compose, initialize_config_dir

    from recsys_lab.runners.stage import CONFIG_DIR, RunLockedError
    from recsys_lab.runners.train import run

    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    extra = [f"paths.output_dir={run_dir}"]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        extra.append(f"resume={run_dir}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *extra])
    t0 = time.time()
    try:
        metrics = dict(run(cfg))
    except RunLockedError as e:  # a parallel invocation of the study is training this run
        print(f"skipped (running elsewhere): {e}", flush=True)
        return {}
    wall = time.time() - t0
    (run_dir / "wall_s.txt").write_text(f"{wall:.1f}\n")
    print(f"[{wall:7.1f}s] {run_dir}: test/auc={metrics.get('test/auc'):.4f}", flush=True)
    return metrics


def wall_s(run_dir: Path) -> float | None:
    f = run_dir / "wall_s.txt"
    return float(f.read_text()) if f.is_file() else None


def test_predictions(run_dir: Path) -> tuple[Any, Any]:
    """(probs ``[n]``, labels ``[n]``) of the run's best checkpoint on its test split, cached in
    ``test_predictions.pt``."""
    import torch

    cache = run_dir / "test_predictions.pt"
    if cache.is_file():
        d = torch.load(cache)
        return d["probs"], d["labels"]
    from scripts.results_embeddings import _score_test

    probs, labels = _score_test(run_dir)
    torch.save({"probs": probs.double(), "labels": labels.double()}, cache)
    return probs.double(), labels.double()


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high), 95% Student t over seeds (a point for one value)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, m, m
    half = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def verdict(low: float, high: float, n: int) -> str:
    """The claims table's verdict on a gain's 95% interval over ``n`` seeds."""
    if n < 2:
        return "one seed: no interval"
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "not reproduced (interval contains 0)"


def fmt_interval(m: float, lo: float, hi: float, digits: int = 4) -> str:
    return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def curve(run_dir: Path, epochs: int) -> list[tuple[int, float]]:
    """(epoch, validation LogLoss) of the training epochs from the run's CSV log (the re-validation
    of the best checkpoint after fitting is logged with epoch = ``epochs`` and left out)."""
    f = run_dir / "csv" / "metrics.csv"
    if not f.is_file():
        return []
    out = {}
    with f.open() as fh:
        for r in csv.DictReader(fh):
            if r.get("val/logloss") and r.get("epoch") and int(float(r["epoch"])) < epochs:
                out[int(float(r["epoch"]))] = float(r["val/logloss"])
    return sorted(out.items())
