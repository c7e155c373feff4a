"""Multi-task heads on the synthetic world's click + conversion: run, then tabulate.

    # 1. one full run per model x seed (resumable: a run with a metrics.json is skipped)
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
    for seed in args.seeds:
        for model in args.models:
            out = args.out / f"{model}_s{seed}"
            if (out / "metrics.json").is_file():
                continue
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
            print(" ".join(command(model, seed, out)), flush=True)
            subprocess.run(command(model, seed, out), cwd=ROOT, env=env, check=True)


def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def report(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {}
    for path in sorted(args.out.glob("*_s*/metrics.json")):
        model = path.parent.name.rsplit("_s", 1)[0]
        runs.setdefault(model, []).append(json.loads(path.read_text()))
    header = "| model | seeds | " + " | ".join(f"{lb} AUC | {lb} LogLoss" for lb in LABELS) + " | samples/s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for model in [m for m in MODELS if m in runs] + sorted(set(runs) - set(MODELS)):
        ms = runs[model]
        cells = []
        for label in LABELS:
            cells += [mean_sd([m[f"test/{label}/{k}"] for m in ms]) for k in ("auc", "logloss")]
        speed = statistics.mean(m["train/samples_per_s"] for m in ms)
        print(f"| {model} | {len(ms)} | " + " | ".join(cells) + f" | {speed:,.0f} |")
    any_run = next(iter(runs.values()))[0] if runs else None
    if any_run:
        cells = [f"{any_run[f'test/{lb}/oracle_{k}']:.4f}" for lb in LABELS for k in ("auc", "logloss")]
        print("| oracle (true probabilities) | | " + " | ".join(cells) + " | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("run", "report"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "results_multitask")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    run(args) if args.step == "run" else report(args)


if __name__ == "__main__":
    main()
