"""Multi-task heads on the synthetic world's click + conversion: run, then tabulate.

    # 1. one full run per model x seed, and a single-task DNN per label (--baseline-seeds);
    #    resumable: a run with a metrics.json is skipped
    python scripts/results_multitask.py run --out runs/results_multitask --seeds 1 2 3
    # 2. mean ± sd over seeds of each label's test AUC / LogLoss, beside the oracle's
    python scripts/results_multitask.py report --out runs/results_multitask

Each run is ``python -m recsys_lab.train data=synthetic_seq data.max_history=0 model=<model>
seed=<seed> num_threads=1`` (preset small, 3 epochs, the models' default sizes); the multi-task
models do not read histories, so ``data.max_history=0`` only saves loading time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("shared_bottom", "mmoe", "ple", "esmm")
LABELS = ("click", "conversion")


def command(model: str, seed: int, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "recsys_lab.train", "data=synthetic_seq", "data.max_history=0", f"model={model}",
        f"seed={seed}", "num_threads=1", "logger=none", "callbacks.rich_progress_bar=null", "print_table=false",
        f"hydra.run.dir={out}",
    ]  # fmt: skip


def run(args: argparse.Namespace) -> None:
    jobs = [(m, s, args.out / f"{m}_s{s}", []) for s in args.seeds for m in args.models]
    # The single-task baseline: one DNN per label (run dnn_<label>_s<seed>).
    jobs += [
        ("dnn", s, args.out / f"dnn_{lb}_s{s}", [f"task.label={lb}"])
        for s in args.baseline_seeds
        for lb in LABELS
    ]
    for model, seed, out, extra in jobs:
        if (out / "metrics.json").is_file():
            continue
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        cmd = command(model, seed, out) + extra
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def hanley_mcneil_se(auc: float, positives: int, negatives: int) -> float:
    """Standard error of an AUC from the test set alone (Hanley & McNeil, 1982): the test-sampling
    noise the spread over seeds does not show."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    return (var / (positives * negatives)) ** 0.5


def test_counts() -> dict[str, tuple[int, int]]:
    """Label -> (positives, negatives) of the test split the runs use (the small world)."""
    sys.path.insert(0, str(ROOT))
    from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule

    dm = SyntheticSeqDataModule(preset="small", max_history=0)
    lo, hi = dm.split_range("test")
    out = {}
    for label in LABELS:
        positives = int(dm.samples.columns.labels[label][lo:hi].sum())
        out[label] = (positives, hi - lo - positives)
    return out


def report(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {}
    for path in sorted(args.out.glob("*_s*/metrics.json")):
        model = path.parent.name.rsplit("_s", 1)[0]
        runs.setdefault(model, []).append(json.loads(path.read_text()))
    header = "| model | seeds | " + " | ".join(f"{lb} AUC | {lb} LogLoss" for lb in LABELS) + " | samples/s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for model in [m for m in MODELS if m in runs]:
        ms = runs[model]
        cells = []
        for label in LABELS:
            cells += [mean_sd([m[f"test/{label}/{k}"] for m in ms]) for k in ("auc", "logloss")]
        speed = statistics.mean(m["train/samples_per_s"] for m in ms)
        print(f"| {model} | {len(ms)} | " + " | ".join(cells) + f" | {speed:,.0f} |")
    if all(f"dnn_{lb}" in runs for lb in LABELS):  # one single-task DNN per label
        cells = [
            mean_sd([m[f"test/{k}"] for m in runs[f"dnn_{lb}"]]) for lb in LABELS for k in ("auc", "logloss")
        ]
        seeds = "/".join(str(len(runs[f"dnn_{lb}"])) for lb in LABELS)
        speed = statistics.mean(m["train/samples_per_s"] for lb in LABELS for m in runs[f"dnn_{lb}"])
        print(
            f"| dnn, one single-task model per label | {seeds} | " + " | ".join(cells) + f" | {speed:,.0f} |"
        )
    runs = {m: v for m, v in runs.items() if m in MODELS}
    any_run = next(iter(runs.values()))[0] if runs else None
    if any_run:
        cells = [f"{any_run[f'test/{lb}/oracle_{k}']:.4f}" for lb in LABELS for k in ("auc", "logloss")]
        print("| oracle (true probabilities) | | " + " | ".join(cells) + " | |")
    counts = test_counts()
    print()
    print(
        "Test split: "
        + ", ".join(f"{lb}: {p:,} positives of {p + n:,}" for lb, (p, n) in counts.items())
        + ". Test-sampling standard error of the AUC (Hanley-McNeil), at the mean AUC: "
        + ", ".join(
            f"{model} {lb} ±{hanley_mcneil_se(statistics.mean(m[f'test/{lb}/auc'] for m in runs[model]), *counts[lb]):.4f}"
            for model in runs
            for lb in LABELS
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("run", "report"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "results_multitask")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--baseline-seeds", type=int, nargs="*", default=[1])
    args = parser.parse_args()
    run(args) if args.step == "run" else report(args)


if __name__ == "__main__":
    main()
