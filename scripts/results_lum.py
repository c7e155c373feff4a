"""LUM + DCNv2 against DCNv2 and HSTU on the synthetic world: run, then write docs/results/lum.md.

    # 1. run every method x seed in-process (pipeline=lum, and recsys_lab.train for the baselines)
    python scripts/results_lum.py run --out runs/results_lum --seeds 0 1 2
    # 2. read the metrics.json files and write the page
    python scripts/results_lum.py report --out runs/results_lum

Methods: ``LUM + DCNv2`` (pipeline=lum: pre-train, features, DCNv2 with them), ``DCNv2`` (the same
DCNv2 on the same data without LUM features), ``HSTU`` (``model=hstu`` end to end, when
``conf/model/hstu.yaml`` exists), and ``LUM zero-shot`` (stage 1's own matching score, for
reference). All on ``data=synthetic_seq data.preset=small``.

Reduced by default to fit a contended 2-core CPU (every reduction is a flag; the page states the
values used): the world has ``--num-users`` users on day 0 instead of the preset's 10,000
(``--num-users 0`` keeps the preset), LUM pre-trains for ``--pretrain-steps`` steps, the CTR
models train ``--epochs`` epochs (``--ctr-steps`` caps the steps, 0 = no cap), LUM and HSTU read
the last ``--history`` events. Full-size settings: ``--num-users 0 --pretrain-steps 0 --epochs 3
--ctr-steps 0 --history 64``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("LUM + DCNv2", "DCNv2", "HSTU", "LUM zero-shot")
METRICS = ("test/auc", "test/logloss", "test/gauc")


def world(args: argparse.Namespace, prefix: str = "data") -> list[str]:
    users = [f"{prefix}.world.num_users={args.num_users}"] if args.num_users > 0 else []
    return [f"{prefix}.preset={args.preset}", *users]


def common(args: argparse.Namespace, seed: int) -> list[str]:
    return [
        f"seed={seed}",
        "logger=none",
        "print_table=false",
        "callbacks.rich_progress_bar=null",
        f"num_threads={args.threads}",
    ]


def ctr_limits(args: argparse.Namespace) -> list[str]:
    steps = [f"++trainer.max_steps={args.ctr_steps}"] if args.ctr_steps > 0 else []
    return [f"trainer.max_epochs={args.epochs}", *steps]


def run_all(args: argparse.Namespace) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from recsys_lab.runners.pipeline import run_pipeline
    from recsys_lab.runners.train import CONFIG_DIR, run

    os.environ.setdefault("WANDB_MODE", "offline")
    out = Path(args.out).resolve()
    have_hstu = (ROOT / "conf" / "model" / "hstu.yaml").is_file()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for seed in args.seeds:
            t0 = time.time()
            pipe_dir = out / f"lum_seed{seed}"
            cfg = compose(
                config_name="pipeline",
                overrides=["pipeline=lum", f"pipeline_dir={pipe_dir}", f"paths.log_dir={out}"],
            )
            pretrain = [
                *world(args),
                f"data.max_history={args.history}",
                f"model.max_history={args.history}",
                f"data.batch_size={args.pretrain_batch_size}",
                "data.eval_batch_size=2048",
                "trainer.max_epochs=1",
                f"trainer.limit_val_batches={args.pretrain_eval_batches}",
                f"trainer.limit_test_batches={args.pretrain_eval_batches}",
            ]
            if args.pretrain_steps > 0:
                pretrain.append(f"++trainer.max_steps={args.pretrain_steps}")
            with open_dict(cfg):
                cfg.overrides = common(args, seed)
                cfg.pipeline.stages[0].overrides.extend(pretrain)
                cfg.pipeline.stages[1].overrides.extend(
                    [*world(args), f"data.max_history={args.history}", "data.eval_batch_size=4096"]
                )
                cfg.pipeline.stages[2].overrides.extend(
                    [*world(args, "data.inner"), "data.inner.max_history=0", *ctr_limits(args)]
                )
            run_pipeline(cfg)
            print(f"seed {seed}: LUM pipeline {time.time() - t0:.0f} s", flush=True)
            baselines = {"DCNv2": ["model=dcnv2", "data.max_history=0"]}  # it reads no history
            if have_hstu:
                baselines["HSTU"] = ["model=hstu", "model.kernel=padded", f"data.max_history={args.history}"]
            for name, overrides in baselines.items():
                t0 = time.time()
                run_cfg = compose(
                    config_name="train",
                    overrides=[
                        "data=synthetic_seq",
                        *world(args),
                        *overrides,
                        *common(args, seed),
                        *ctr_limits(args),
                        f"paths.output_dir={out / name.lower()}_seed{seed}",
                    ],
                )
                run(run_cfg)
                print(f"seed {seed}: {name} {time.time() - t0:.0f} s", flush=True)
    GlobalHydra.instance().clear()
    (out / "settings.json").write_text(json.dumps(vars(args), indent=2))


def collect(out: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {m: [] for m in METHODS}
    for f in sorted(out.glob("lum_seed*/ctr/metrics.json")):
        found["LUM + DCNv2"].append(json.loads(f.read_text()))
    for f in sorted(out.glob("lum_seed*/pretrain/metrics.json")):
        found["LUM zero-shot"].append(json.loads(f.read_text()))
    for name in ("DCNv2", "HSTU"):
        for f in sorted(out.glob(f"{name.lower()}_seed*/metrics.json")):
            found[name].append(json.loads(f.read_text()))
    return found


def _rows(out: Path) -> dict[str, int] | None:
    metas = sorted(out.glob("lum_seed*/features/lum_features.json"))
    return json.loads(metas[0].read_text())["rows"] if metas else None


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    settings = (
        json.loads((out / "settings.json").read_text()) if (out / "settings.json").is_file() else vars(args)
    )
    found = collect(out)
    have_hstu = (ROOT / "conf" / "model" / "hstu.yaml").is_file()
    lines = [
        "# LUM: results on the synthetic world",
        "",
        "Generated by `scripts/results_lum.py` from the runs' `metrics.json` files; do not edit by hand.",
        "",
        "## Setting",
        "",
        f"- data: `data=synthetic_seq data.preset={settings['preset']}`"
        + (
            f" with `data.world.num_users={settings['num_users']}` (day-0 users; the preset has 10,000), "
            "every other knob the preset's"
            if settings["num_users"] > 0
            else " (unchanged)"
        ),
        f"- seeds: {settings['seeds']} (model initialisation and shuffling; the world is the same)",
        *(
            [f"- samples (train / val / test): {rows['train']:,} / {rows['val']:,} / {rows['test']:,}"]
            if (rows := _rows(out))
            else []
        ),
        f"- LUM (stage 1): `model=lum` defaults (dim 32, 2 layers, 2 heads), `model.max_history={settings['history']}`, "
        f"InfoNCE with τ = 0.07, 256 in-batch + 256 sampled negatives, "
        f"{settings['pretrain_steps'] or 'one epoch of'} steps of {settings['pretrain_batch_size']} samples' histories, "
        f"evaluated on {settings['pretrain_eval_batches']} batches of 2048",
        "- LUM features (stage 2): query outputs for one group query per domain + the candidate's own "
        "(category, domain), the candidate's LUM item embedding, and the cosines between them — from each "
        "sample's own earlier history only",
        f"- CTR models: `trainer.max_epochs={settings['epochs']}`"
        + (f", at most {settings['ctr_steps']} steps" if settings["ctr_steps"] > 0 else "")
        + ", default batch size (1024), default optimisers; DCNv2 with the `model=dcnv2` defaults in both rows",
        f"- HSTU: `model=hstu model.kernel=padded data.max_history={settings['history']}`"
        + ("" if have_hstu else " — **not run: conf/model/hstu.yaml did not exist**"),
        f"- CPU, {settings['threads']} thread(s) per run, on a 2-core machine shared with other jobs",
        "",
        "Command:",
        "",
        "```bash",
        "python scripts/results_lum.py run --out "
        + f"{settings['out']} --seeds {' '.join(map(str, settings['seeds']))} --num-users {settings['num_users']} "
        + f"--pretrain-steps {settings['pretrain_steps']} --epochs {settings['epochs']} --ctr-steps {settings['ctr_steps']} "
        + f"--history {settings['history']} --threads {settings['threads']}",
        f"python scripts/results_lum.py report --out {settings['out']}",
        "```",
        "",
        "## Test metrics (mean ± std over seeds)",
        "",
        "| method | runs | test AUC | test LogLoss | test GAUC | oracle test AUC |",
        "|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        runs = found[name]
        if not runs:
            lines.append(f"| {name} | 0 | not run | | | |")
            continue
        cells = [mean_std([float(r[k]) for r in runs if k in r]) for k in METRICS]
        if name == "LUM zero-shot":
            cells[1] = "– (a cosine, not a probability)"
        oracle = mean_std([float(r["test/oracle_auc"]) for r in runs])
        lines.append(f"| {name} | {len(runs)} | {' | '.join(cells)} | {oracle} |")
    lum = found["LUM + DCNv2"]
    for other in ("DCNv2", "HSTU"):
        if lum and found[other]:
            d = statistics.mean(r["test/auc"] for r in lum) - statistics.mean(
                r["test/auc"] for r in found[other]
            )
            lines += ["", f"Mean test AUC of LUM + DCNv2 minus {other}: {d:+.4f}."]
    lines += [
        "",
        "Test AUC per seed:",
        "",
        "| method | " + " | ".join(f"seed {s}" for s in settings["seeds"]) + " |",
    ]
    lines.append("|---|" + "---|" * len(settings["seeds"]))
    for name in METHODS:
        by_seed = {int(r["seed"]): float(r["test/auc"]) for r in found[name]}
        cells = [f"{by_seed[s]:.4f}" if s in by_seed else "–" for s in settings["seeds"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    pre = found["LUM zero-shot"]
    if pre:
        ret = [float(r["test/retrieval_auc"]) for r in pre if "test/retrieval_auc" in r]
        lines += [
            "",
            f"LUM pre-training, next-item retrieval AUC on test histories (positive vs. negatives): {mean_std(ret)}.",
        ]
    lines += [
        "",
        "## Reading",
        "",
        "The claim (METHODS.md) is that a DLRM with LUM features beats the same DLRM without them and beats "
        "end-to-end HSTU. The rows above are what this reduced setting measured; with few pre-training steps "
        "and one epoch the comparison is indicative only. `LUM zero-shot` is stage 1's matching score "
        "cos(target query, candidate item) used directly as a click score, for reference: the pre-training "
        "target is the next *exposed* item (every history event), not the next click, so this score "
        "measures how expected an exposure is rather than how likely a click; the downstream DCNv2 learns "
        "how to use the features.",
        "",
    ]
    page = Path(args.page)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    print(page.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["run", "report", "all"])
    p.add_argument("--out", default="runs/results_lum")
    p.add_argument("--page", default=str(ROOT / "docs" / "results" / "lum.md"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", default="small")
    p.add_argument("--num-users", type=int, default=1500)
    p.add_argument("--pretrain-steps", type=int, default=150)
    p.add_argument("--pretrain-batch-size", type=int, default=256)
    p.add_argument("--pretrain-eval-batches", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--ctr-steps", type=int, default=0)
    p.add_argument("--history", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.action in ("run", "all"):
        run_all(args)
    if args.action in ("report", "all"):
        report(args)


if __name__ == "__main__":
    main()
