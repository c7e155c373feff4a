"""Sequence rankers on the synthetic world: run the comparison, then write docs/results/sequence.md.

Two steps (each can be run alone):

    # 1. train every variant x seed in-process (recsys_lab.runners.train.run), one metrics.json per run
    python scripts/results_sequence.py run --out runs/results_sequence --steps 150 --seeds 0 1 2
    # 2. read the metrics.json files and write the page + plot
    python scripts/results_sequence.py report --out runs/results_sequence

Variants: DNN (no history), DIN-style, HSTU, GRAB single channel, GRAB CamA, GRAB CamA + STS
(two_stage), all on ``data=synthetic_seq data.preset=small`` with ``data.max_history=--history``;
and GRAB CamA against ``data.max_history`` in ``--sweep``.

Reduced by default to fit a contended 2-core CPU: ``--steps`` optimiser steps of ``--batch-size``
samples (a fraction of one epoch of the ~800k training samples), validation on one batch, test on
the first ``--test-batches`` batches of ``--eval-batch-size`` rows of the test day. Because the
test rows are a subset, each run also writes ``oracle_subset.json``: the oracle AUC / LogLoss of
exactly the rows it was tested on, and the page's gaps use it. Full-size settings:
``--steps 0`` (= whole epochs, ``--epochs``) and ``--test-batches 0`` (the whole test day).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, list[str]] = {
    "DNN (no history)": ["model=dnn", "data.max_history=0"],
    "DIN-style": ["model=din"],
    "HSTU": ["model=hstu", "model.kernel=padded"],
    "GRAB single channel": ["model=grab", "task=grab", "model.channels=single", "model.kernel=padded"],
    "GRAB CamA": ["model=grab", "task=grab", "model.kernel=padded"],
    "GRAB CamA + STS (two_stage)": ["model=grab", "task=grab", "model.kernel=padded", "model.sts=two_stage"],
}
SWEEP_VARIANT = "GRAB CamA"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def common_overrides(args: argparse.Namespace) -> list[str]:
    steps = ["++trainer.max_steps=" + str(args.steps)] if args.steps > 0 else []
    limits = [f"trainer.limit_test_batches={args.test_batches}"] if args.test_batches > 0 else []
    return [
        "data=synthetic_seq",
        f"data.preset={args.preset}",
        f"data.batch_size={args.batch_size}",
        f"data.eval_batch_size={args.eval_batch_size}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.limit_val_batches={args.val_batches}",
        "logger=none",
        "print_table=false",
        f"num_threads={args.threads}",
        f"task.optimizer.lr={args.lr}",
        f"task.sparse_optimizer.lr={args.sparse_lr}",
        "callbacks.rich_progress_bar=null",
        *steps,
        *limits,
    ]


def run_one(
    out: Path, name: str, overrides: list[str], seed: int, history: int, args: argparse.Namespace
) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from recsys_lab.metrics import auc, logloss
    from recsys_lab.runners.train import CONFIG_DIR, run

    run_dir = out / f"{slug(name)}__h{history}__s{seed}"
    if (run_dir / "metrics.json").is_file() and (run_dir / "oracle_subset.json").is_file():
        print(f"skip {run_dir.name} (done)")
        return
    history_override = (
        [] if any(o.startswith("data.max_history") for o in overrides) else [f"data.max_history={history}"]
    )
    all_overrides = [
        *common_overrides(args),
        *overrides,
        *history_override,
        f"seed={seed}",
        "task_name=results_sequence",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=all_overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    t0 = time.time()
    metrics = run(cfg)
    wall = time.time() - t0
    # Oracle on exactly the test rows the run saw (the first limit_test_batches batches).
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup()
    probs, labels = [], []
    for i, batch in enumerate(datamodule.test_dataloader()):
        if args.test_batches > 0 and i >= args.test_batches:
            break
        probs.append(batch.extras["true_prob"])
        labels.append(batch.labels["click"])
    import torch

    p, y = torch.cat(probs).double(), torch.cat(labels).double()
    subset = {
        "rows": int(y.numel()),
        "oracle_auc": float(auc(p, y)),
        "oracle_logloss": float(logloss(p, y)),
        "variant": name,
        "history": history,
        "seed": seed,
        "wall_s": wall,
        "overrides": all_overrides,
    }
    (run_dir / "oracle_subset.json").write_text(json.dumps(subset, indent=2))
    print(
        f"{run_dir.name}: test/auc={metrics.get('test/auc'):.4f} oracle(subset)={subset['oracle_auc']:.4f} wall={wall:.0f}s"
    )


def cmd_run(args: argparse.Namespace) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for seed in args.seeds:
        for name, overrides in VARIANTS.items():
            if args.only and slug(name) not in args.only:
                continue
            jobs.append((name, overrides, seed, args.history))
    for seed in args.sweep_seeds:
        for h in args.sweep:
            jobs.append((SWEEP_VARIANT, VARIANTS[SWEEP_VARIANT], seed, h))
    seen = set()
    for name, overrides, seed, h in jobs:
        key = (name, seed, h)
        if key in seen:
            continue
        seen.add(key)
        run_one(out, name, overrides, seed, h, args)


def load_runs(out: Path) -> list[dict]:
    runs = []
    for sub in sorted(out.glob("*__h*__s*")):
        m, o = sub / "metrics.json", sub / "oracle_subset.json"
        if m.is_file() and o.is_file():
            runs.append({**json.loads(m.read_text()), "subset": json.loads(o.read_text())})
    return runs


def mean_std(xs: list[float]) -> str:
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def cmd_report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no finished runs under {out} (metrics.json + oracle_subset.json)")
    page = Path(args.page)
    page.parent.mkdir(parents=True, exist_ok=True)
    settings = runs[0]["subset"]["overrides"]
    lines = [
        "# Sequence rankers on the synthetic world (HSTU, GRAB, DIN-style)",
        "",
        "Generated by `scripts/results_sequence.py report` from the runs' `metrics.json` and",
        "`oracle_subset.json` files; do not edit by hand. Models and decisions: docs/sequence_models.md.",
        "",
        "## How these numbers were made",
        "",
        "```bash",
        args.command or "python scripts/results_sequence.py run ...",
        f"python scripts/results_sequence.py report --out {args.out}"
        + (f" --bench {args.bench}" if args.bench else ""),
        "```",
        "",
        "Settings of every run (Hydra overrides; variant-specific ones below):",
        "",
        "```",
        " ".join(o for o in settings if not o.startswith(("model", "task=", "seed=", "data.max_history"))),
        "```",
        "",
        "**Reduced** to fit a shared 2-core CPU: each run trains for the given number of optimiser steps",
        "(a small fraction of one epoch of the small world's ~807k training samples), validates on one",
        "batch, and tests on the first batches of the test day (the row count is in the tables). The",
        "oracle (the world's true click probability) is evaluated on exactly the same test rows, so the",
        "gap is like for like. The world (its seed) is the same in every run; `seed` changes the model's",
        "initialisation. Absolute AUCs are therefore far from converged: compare variants, not with",
        "published numbers. Every run gets the same number of steps whatever its history length, so",
        "the history sweep compares equal sample budgets, not equal compute, far from convergence;",
        "the claim (AUC rising with log history length) needs full epochs (`--steps 0`) to test.",
        "",
        f"{len(runs)} runs, {sum(r['subset']['wall_s'] for r in runs) / 60:.0f} minutes of wall time in all "
        "(two runs at a time on a shared 2-core machine; the per-run wall time includes evaluation).",
        "",
    ]
    # -- main table
    main_h = args.history
    lines += [f"## AUC and gap to the oracle (`data.max_history={main_h}`)", ""]
    lines += [
        "| model | seeds | test rows | test AUC | oracle AUC (same rows) | gap to oracle | test LogLoss | samples/s (train) | overrides |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    for name, overrides in VARIANTS.items():
        rs = [
            r
            for r in runs
            if r["subset"]["variant"] == name and (r["subset"]["history"] == main_h or name.startswith("DNN"))
        ]
        if not rs:
            continue
        aucs = [r["test/auc"] for r in rs]
        gaps = [r["subset"]["oracle_auc"] - r["test/auc"] for r in rs]
        lls = [r["test/logloss"] for r in rs]
        sps = [r["train/samples_per_s"] for r in rs if not math.isnan(r["train/samples_per_s"])]
        lines.append(
            f"| {name} | {len(rs)} | {rs[0]['subset']['rows']:,} | {mean_std(aucs)} | {rs[0]['subset']['oracle_auc']:.4f} | "
            f"{mean_std(gaps)} | {mean_std(lls)} | {statistics.mean(sps):,.0f} | `{' '.join(overrides)}` |"
            if sps
            else f"| {name} | {len(rs)} | {rs[0]['subset']['rows']:,} | {mean_std(aucs)} | {rs[0]['subset']['oracle_auc']:.4f} | "
            f"{mean_std(gaps)} | {mean_std(lls)} | — | `{' '.join(overrides)}` |"
        )

    # -- paired comparisons (same seed)
    def by_seed(name: str) -> dict[int, float]:
        return {
            r["seed"]: r["test/auc"]
            for r in runs
            if r["subset"]["variant"] == name and (r["subset"]["history"] == main_h or name.startswith("DNN"))
        }

    pairs = [
        ("GRAB CamA", "GRAB single channel"),
        ("GRAB CamA", "DNN (no history)"),
        ("GRAB CamA", "HSTU"),
        ("GRAB CamA", "DIN-style"),
        ("GRAB CamA + STS (two_stage)", "GRAB CamA"),
        ("DIN-style", "DNN (no history)"),
        ("HSTU", "DNN (no history)"),
    ]
    rows = []
    for a, b in pairs:
        sa, sb = by_seed(a), by_seed(b)
        common = sorted(set(sa) & set(sb))
        if common:
            rows.append(f"| {a} − {b} | {len(common)} | {mean_std([sa[k] - sb[k] for k in common])} |")
    if rows:
        lines += [
            "",
            "Paired differences of test AUC (same seed):",
            "",
            "| difference | seeds | ΔAUC |",
            "|---|---|---|",
            *rows,
        ]
    # -- sweep
    sweep = sorted({r["subset"]["history"] for r in runs if r["subset"]["variant"] == SWEEP_VARIANT})
    xs, ms, ss = [], [], []
    if len(sweep) > 1:
        lines += ["", f"## {SWEEP_VARIANT}: test AUC against `data.max_history`", ""]
        lines += [
            "| max_history | seeds | test AUC | gap to oracle | wall s per run |",
            "|---|---|---|---|---|",
        ]
        for h in sweep:
            rs = [r for r in runs if r["subset"]["variant"] == SWEEP_VARIANT and r["subset"]["history"] == h]
            aucs = [r["test/auc"] for r in rs]
            gaps = [r["subset"]["oracle_auc"] - r["test/auc"] for r in rs]
            walls = [r["subset"]["wall_s"] for r in rs]
            lines.append(
                f"| {h} | {len(rs)} | {mean_std(aucs)} | {mean_std(gaps)} | {statistics.mean(walls):.0f} |"
            )
            xs.append(h)
            ms.append(statistics.mean(aucs))
            ss.append(statistics.stdev(aucs) if len(aucs) > 1 else 0.0)
        if len(xs) > 2:
            lx = [math.log2(x) for x in xs]
            mx, my = statistics.mean(lx), statistics.mean(ms)
            slope = sum((a - mx) * (b - my) for a, b in zip(lx, ms)) / sum((a - mx) ** 2 for a in lx)
            lines += [
                "",
                f"Least-squares slope of the mean AUC against log2(max_history): {slope:+.4f} per doubling.",
            ]
        png = page.with_name(page.stem + "_history.png")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5, 3.2))
            ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("data.max_history (events)")
            ax.set_ylabel("test AUC")
            ax.set_title(f"{SWEEP_VARIANT} vs history length")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(png, dpi=120)
            lines += ["", f"![GRAB AUC against max_history]({png.name})"]
        except ImportError:
            lines += ["", "(matplotlib is not installed: no plot)"]
    bench = Path(args.bench) if args.bench else None
    if bench is not None and bench.is_file():
        lines += [
            "",
            "## Throughput and peak memory against history length",
            "",
            f"`{args.bench_command or 'python scripts/bench_sequence.py'}` (a bare training loop on random",
            "batches whose samples all have exactly L events; each row its own process):",
            "",
            bench.read_text().strip(),
        ]
    lines += [
        "",
        "## Per run",
        "",
        "| run | test AUC | oracle AUC (subset) | global steps | wall s |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        s = r["subset"]
        hist = "— (no history)" if s["variant"].startswith("DNN") else s["history"]
        lines.append(
            f"| {s['variant']}, h={hist}, seed {s['seed']} | {r['test/auc']:.4f} | {s['oracle_auc']:.4f} | "
            f"{int(r.get('global_step', 0))} | {s['wall_s']:.0f} |"
        )
    page.write_text("\n".join(lines) + "\n")
    print(f"wrote {page}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", default="runs/results_sequence")
    r.add_argument("--preset", default="small")
    r.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    r.add_argument("--history", type=int, default=32, help="data.max_history of the main table")
    r.add_argument("--sweep", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256])
    r.add_argument("--sweep-seeds", type=int, nargs="*", default=[0])
    r.add_argument("--only", nargs="*", default=None, help="variant slugs to run (default: all)")
    r.add_argument("--steps", type=int, default=60, help="optimiser steps per run; 0 = whole epochs")
    r.add_argument("--epochs", type=int, default=1)
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--eval-batch-size", type=int, default=2048)
    r.add_argument("--val-batches", type=int, default=1)
    r.add_argument("--test-batches", type=int, default=6, help="0 = the whole test day")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--lr", type=float, default=3e-3, help="dense optimiser (AdamW) learning rate")
    r.add_argument(
        "--sparse-lr", type=float, default=1e-2, help="embedding optimiser (SparseAdam) learning rate"
    )
    rep = sub.add_parser("report")
    rep.add_argument("--out", default="runs/results_sequence")
    rep.add_argument("--page", default=str(ROOT / "docs" / "results" / "sequence.md"))
    rep.add_argument("--history", type=int, default=32)
    rep.add_argument("--command", default="", help="the exact run command(s), printed on the page")
    rep.add_argument("--bench", default="", help="a bench_sequence.py output table to include")
    rep.add_argument("--bench-command", default="", help="the bench command, printed on the page")
    args = ap.parse_args()
    cmd_run(args) if args.cmd == "run" else cmd_report(args)


if __name__ == "__main__":
    main()
