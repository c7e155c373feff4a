"""GRAB's history claim at convergence (issue 13): test AUC of packed GRAB (CamA) against the history
length K, beside the oracle's AUC at the same K on the same rows (the effect available).

World: ``data.preset=long_history`` (the planted click logit reads history scales reaching back
~512 events; the oracle's AUC rises with every doubling up to 512, docs/synthetic_world.md), shrunk
to ``--users`` users so that the runs fit the budget. Model: ``model=grab task=grab`` with CamA,
``data.packing=user`` (each user's training events tiled into segments of K events + a candidate,
every event a training example once per epoch), ``data.batch_size = --events-per-batch // (K + 1)``
segments (about the same events per step, and so the same steps per epoch, at every K),
``model.num_positions = K + 2``. Early stopping on validation LogLoss (patience 1, the first
``--val-rows`` validation rows, ``--max-epochs`` cap). Each seed draws a new world (and test set).

Test: ``--test-rows`` exposures drawn at random from the test day (the same rows for every K of a
seed), scored by each run's best checkpoint; the oracle at K is the world's planted probability
computed from each row's latest K events only (``scripts/oracle_curves.py: truncated_oracle``).
Intervals: per seed, paired bootstraps over the test rows (``recsys_lab.metrics.bootstrap_interval``)
of each doubling's gain and of the slope against log2 K; over seeds, 95% t-intervals (each seed a
new world and test set, so they include test-sampling noise).

    python scripts/claims_grab.py                    # run what is missing (resumable), write the section
    python scripts/claims_grab.py --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from scripts.claims_page import write_section  # noqa: E402
from scripts.claims_runs import (  # noqa: E402
    EARLY_STOP,
    command_line,
    curve,
    fmt_interval,
    record_command,
    recorded_command,
    t_interval,
    train,
    wall_s,
)

TITLE = "GRAB history length"


def overrides(args: argparse.Namespace, seed: int, k: int) -> list[str]:
    eval_batch = min(args.val_rows, max(16, args.events_per_batch // (k + 2)))
    return [
        "data=synthetic_seq",
        "data.preset=long_history",
        f"data.world.seed={seed}",
        f"data.world.num_users={args.users}",
        f"data.max_history={k}",
        "data.packing=user",
        f"data.batch_size={max(1, args.events_per_batch // (k + 1))}",
        f"data.eval_batch_size={eval_batch}",
        f"trainer.limit_val_batches={math.ceil(args.val_rows / eval_batch)}",
        "trainer.limit_test_batches=1",
        "model=grab",
        "task=grab",
        "model.kernel=padded",
        f"model.num_positions={k + 2}",
        f"seed={seed}",
        f"trainer.max_epochs={args.max_epochs}",
        *EARLY_STOP,
        "logger=csv",
        *args.extra,
    ]


def test_rows(args: argparse.Namespace, dm: Any) -> Any:
    """Sample positions of ``--test-rows`` random test-day exposures (seeded by the world), sorted."""
    import numpy as np

    lo, hi = dm.split_range("test")
    rng = np.random.default_rng(dm.spec.seed)
    return np.sort(rng.choice(np.arange(lo, hi), size=min(args.test_rows, hi - lo), replace=False))


def score(args: argparse.Namespace, run_dir: Path, k: int) -> dict:
    """The best checkpoint's probabilities on the seed's test rows, their labels, and the oracle's
    probabilities at K and with the whole history; cached in ``test_rows.pt``."""
    import torch
    from omegaconf import OmegaConf

    from recsys_lab.runners.checkpoint import load_state_dict
    from recsys_lab.runners.train import build
    from scripts.oracle_curves import truncated_oracle

    cache = run_dir / "test_rows.pt"
    if cache.is_file():
        return torch.load(cache)
    dm, model, _ = build(OmegaConf.load(run_dir / "config.yaml"))
    state = load_state_dict(run_dir / "checkpoints" / "best.ckpt")
    model.load_state_dict({n[len("model.") :]: v for n, v in state.items() if n.startswith("model.")})
    model.eval()
    rows = test_rows(args, dm)
    probs, labels = [], []
    with torch.no_grad():
        for start in range(0, rows.size, 64):
            batch = dm.samples.batch(rows[start : start + 64])
            probs.append(torch.sigmoid(model(batch)).double())
            labels.append(batch.labels["click"].double())
    log_rows = dm.samples.columns.log_row[rows]
    out = {
        "probs": torch.cat(probs),
        "labels": torch.cat(labels),
        "oracle_k": torch.from_numpy(truncated_oracle(dm.world, dm.samples.log, log_rows, k)),
        "oracle_all": torch.from_numpy(dm.samples.columns.extras["true_prob"][rows]).double(),
    }
    torch.save(out, cache)
    return out


def slope(ks: list[int], aucs: list[float]) -> float:
    """Least-squares slope of AUC against log2 K (AUC per doubling)."""
    x = [math.log2(k) for k in ks]
    mx, my = sum(x) / len(x), sum(aucs) / len(aucs)
    return sum((a - mx) * (b - my) for a, b in zip(x, aucs)) / sum((a - mx) ** 2 for a in x)


def report(args: argparse.Namespace) -> list[str]:
    import torch

    from recsys_lab.metrics import auc, bootstrap_interval

    per_seed: dict[int, dict[int, dict]] = {}
    walls, epochs, capped, curves = [], {}, 0, {}
    for seed in args.seeds:
        for k in args.ks:
            d = args.out / f"k{k}" / f"seed{seed}"
            if not (d / "metrics.json").is_file():
                continue
            m = json.loads((d / "metrics.json").read_text())
            s = score(args, d, k)
            per_seed.setdefault(seed, {})[k] = {**s, "metrics": m}
            walls.append(wall_s(d) or float("nan"))
            epochs[(seed, k)] = m.get("epochs")
            capped += int(m.get("epochs", 0) >= args.max_epochs)
            curves[(seed, k)] = curve(d, m.get("epochs", args.max_epochs))
    complete = {s: r for s, r in per_seed.items() if all(k in r for k in args.ks)} if len(args.ks) > 1 else {}
    lines = [
        "Claim (GRAB paper): quality rises monotonically, roughly linearly in log sequence length. "
        f"World: `data.preset=long_history` with `data.world.num_users={args.users}` (the oracle's AUC "
        "rises with every doubling of the visible history up to 512 events), packed GRAB (CamA, "
        f"`data.packing=user`, about {args.events_per_batch:,} events per batch), early stopping on "
        f"validation LogLoss (first {args.val_rows:,} validation rows, patience 1, cap "
        f"{args.max_epochs} epochs). Test: {args.test_rows:,} random test-day exposures per seed "
        "(the same rows at every K); the oracle column is the planted probability computed from the "
        f"latest K events only, on the same rows. Seeds {args.seeds} (each a new world). Command:",
        "",
        f"    {args.command}",
        "",
        "| K | seeds | GRAB test AUC per seed | GRAB mean [t 95%] | oracle AUC at K, mean | gap to oracle at K | "
        "epochs run (per seed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in args.ks:
        rs = [(s, r[k]) for s, r in per_seed.items() if k in r]
        if not rs:
            lines.append(f"| {k} | 0 | not run | – | – | – | – |")
            continue
        a = [auc(r["probs"], r["labels"]) for _, r in rs]
        o = [auc(r["oracle_k"], r["labels"]) for _, r in rs]
        m, lo, hi = t_interval(a)
        lines.append(
            f"| {k} | {len(rs)} | {', '.join(f'{x:.4f}' for x in a)} | {m:.4f} [{lo:.4f}, {hi:.4f}] | "
            f"{sum(o) / len(o):.4f} | {sum(oo - x for oo, x in zip(o, a)) / len(a):+.4f} | "
            f"{', '.join(str(epochs[(s, k)]) for s, _ in rs)} |"
        )
    if per_seed:
        oall = [auc(r["oracle_all"], r["labels"]) for rr in per_seed.values() for r in rr.values()][:1]
        lines += [
            "",
            f"Oracle with the whole history on the same rows (seed {min(per_seed)}): {oall[0]:.4f}.",
        ]
    # gains per doubling (paired over rows within a seed) and slopes per seed
    summary: dict = {"ks": args.ks, "seeds": sorted(complete)}
    if complete:
        lines += [
            "",
            "Gain per step of K (same rows, paired): per seed the point and the 95% paired bootstrap "
            "over test rows; then the mean over seeds with its t-interval. Oracle gains on the same rows "
            "beside them.",
            "",
            "| step | GRAB gain per seed [bootstrap 95%] | GRAB mean [t 95%] | oracle gain, mean |",
            "|---|---|---|---|",
        ]
        gains = []
        for k0, k1 in zip(args.ks, args.ks[1:]):
            cells, g, og = [], [], []
            for s, r in sorted(complete.items()):
                y = r[k0]["labels"]
                if not torch.equal(y, r[k1]["labels"]):
                    raise RuntimeError(f"seed {s}: test labels differ between K={k0} and K={k1}")
                lo_b, hi_b = bootstrap_interval(
                    auc, r[k1]["probs"], y, baseline=r[k0]["probs"], replicates=args.resamples
                )
                d = auc(r[k1]["probs"], y) - auc(r[k0]["probs"], y)
                g.append(d)
                og.append(auc(r[k1]["oracle_k"], y) - auc(r[k0]["oracle_k"], y))
                cells.append(f"{d:+.4f} [{lo_b:+.4f}, {hi_b:+.4f}]")
            m, lo, hi = t_interval(g)
            gains.append({"step": [k0, k1], "mean": m, "low": lo, "high": hi, "oracle": sum(og) / len(og)})
            lines.append(
                f"| {k0} → {k1} | {'; '.join(cells)} | {fmt_interval(m, lo, hi)} | {sum(og) / len(og):+.4f} |"
            )
        slopes, oslopes = [], []
        for _, r in sorted(complete.items()):
            y = r[args.ks[0]]["labels"]
            slopes.append(slope(args.ks, [auc(r[k]["probs"], y) for k in args.ks]))
            oslopes.append(slope(args.ks, [auc(r[k]["oracle_k"], y) for k in args.ks]))
        sm, slo, shi = t_interval(slopes)
        om = sum(oslopes) / len(oslopes)
        rising = all(gn["low"] > 0 for gn in gains)
        falling = any(gn["high"] < 0 for gn in gains)
        if len(complete) < 2:
            verdict = "one seed: no interval"
        elif rising and slo > 0:
            verdict = "reproduced"
        elif falling or shi < 0:
            verdict = "contradicted"
        else:
            verdict = "not reproduced"
        summary.update(
            gains=gains,
            slope={"mean": sm, "low": slo, "high": shi, "n": len(slopes)},
            oracle_slope=om,
            verdict=verdict,
        )
        lines += [
            "",
            f"Slope of test AUC against log2 K (least squares over K = {args.ks}, per seed, then mean and "
            f"t-interval over seeds): GRAB {fmt_interval(sm, slo, shi)} per doubling; the oracle's on the same "
            f"rows {om:+.4f}.",
        ]
        means = {
            k: sum(auc(r[k]["probs"], r[k]["labels"]) for r in complete.values()) / len(complete)
            for k in args.ks
        }
        peak = max(means, key=means.get)
        if peak != args.ks[-1]:
            low_ks = [k for k in args.ks if k <= peak]
            up = t_interval(
                [
                    slope(low_ks, [auc(r[k]["probs"], r[k]["labels"]) for k in low_ks])
                    for r in complete.values()
                ]
            )
            o_up = [
                slope(low_ks, [auc(r[k]["oracle_k"], r[k]["labels"]) for k in low_ks])
                for r in complete.values()
            ]
            lines += [
                "",
                f"GRAB's mean test AUC peaks at K = {peak} ({means[peak]:.4f}) and is {means[args.ks[-1]]:.4f} at "
                f"K = {args.ks[-1]}; the oracle's mean gain is {'' if all(g['oracle'] > 0 for g in gains) else 'not '}"
                f"above 0 at every step. Slope up to the peak (K ≤ {peak}), same "
                f"method: GRAB {fmt_interval(*up)} per doubling, the oracle's {sum(o_up) / len(o_up):+.4f}.",
            ]
            summary["peak"] = {"k": peak, "auc": means[peak]}
    if complete:
        top = args.ks[-1]
        best = [min(pts, key=lambda e: e[1])[0] + 1 for (s_, k), pts in curves.items() if k == top and pts]
        lines += [
            "",
            "Reading: GRAB recovers "
            + ", ".join(
                (
                    f"{gn['mean'] / gn['oracle']:.0%} of the oracle's gain at {gn['step'][0]} → {gn['step'][1]}"
                    if gn["mean"] >= 0
                    else f"a loss of {-gn['mean']:.4f} at {gn['step'][0]} → {gn['step'][1]}, where the oracle "
                    f"gains {gn['oracle']:+.4f}"
                )
                for gn in gains
                if gn["oracle"] > 0
            )
            + f". At K = {top} the best validation epoch was {best} (1-based) and the runs stopped after "
            f"{[epochs[(s_, top)] for s_ in sorted(complete)]} epochs; the validation set behind early "
            f"stopping ({args.val_rows} rows) is small, so stopping short is a candidate explanation of the "
            "last step, which the check below (if run) tests.",
        ]
    if args.check is not None:
        lines += check_lines(args)
    w = [x for x in walls if not math.isnan(x)]
    lines += [
        "",
        f"Wall time: {sum(w) / 60:.0f} min over {len(w)} runs (shared 2-core CPU, one thread each, at most two "
        f"at a time; scoring the test rows not included); runs that hit the epoch cap: {capped}.",
        "",
        "Validation LogLoss per epoch (learning curves; the best epoch is the tested checkpoint):",
        "",
    ]
    for (s, k), pts in sorted(curves.items(), key=lambda x: (x[0][1], x[0][0])):
        lines.append(f"- K={k}, seed {s}: " + ", ".join(f"{v:.4f}" for _, v in pts))
    if "verdict" in summary:
        lines += ["", verdict_text(summary)]
    from recsys_lab.runners.stage import write_json_atomic

    write_json_atomic(args.out / "summary.json", summary)
    return lines


def check_lines(args: argparse.Namespace) -> list[str]:
    """A diagnostic invocation of this script (``--check <its --out>``): its runs beside the study's
    run of the same seed and K, on the same test rows."""
    import torch

    from recsys_lab.metrics import auc, bootstrap_interval

    out = []
    command = recorded_command(args.check)
    for d in sorted(args.check.glob("k*/seed*")):
        if not (d / "test_rows.pt").is_file():
            continue
        k, seed = int(d.parent.name[1:]), int(d.name[4:])
        c = torch.load(d / "test_rows.pt")
        m = json.loads((d / "metrics.json").read_text())
        pts = curve(d, m.get("epochs", 0))
        main = args.out / d.parent.name / d.name / "test_rows.pt"
        study = json.loads((main.parent / "metrics.json").read_text()) if main.is_file() else {}
        study_pts = curve(main.parent, study.get("epochs", 0))
        text = (
            f"Check (K = {k}, seed {seed}; `{command}`): test AUC {auc(c['probs'], c['labels']):.4f} after "
            f"{m.get('epochs')} epochs (validation LogLoss per epoch {', '.join(f'{v:.4f}' for _, v in pts)})"
        )
        if main.is_file():
            r = torch.load(main)
            if torch.equal(r["labels"], c["labels"]):
                lo, hi = bootstrap_interval(
                    auc, c["probs"], c["labels"], baseline=r["probs"], replicates=args.resamples
                )
                text += (
                    f"; the study's early-stopped run on the same rows {auc(r['probs'], r['labels']):.4f}, "
                    f"paired difference [{lo:+.4f}, {hi:+.4f}]"
                )
            if pts and study_pts:
                b_check = min(pts, key=lambda e: e[1])[0] + 1
                b_study = min(study_pts, key=lambda e: e[1])[0] + 1
                text += f". Best validation epoch: {b_check} here, {b_study} in the study's run" + (
                    "; the validation LogLoss only rises after it, so the model over-fits from there on "
                    "rather than being stopped short by a noisy validation set"
                    if b_check == b_study
                    and all(b[1] >= a[1] for a, b in zip(pts[b_check - 1 :], pts[b_check:]))
                    else ""
                )
        out += ["", text + "."]
    return out


def verdict_text(s: dict) -> str:
    g = "; ".join(
        f"{a}→{b}: {x['mean']:+.4f} [{x['low']:+.4f}, {x['high']:+.4f}]"
        for (a, b), x in ((gn["step"], gn) for gn in s["gains"])
    )
    return (
        f"**Verdict: {s['verdict']}** ({len(s['seeds'])} seeds). Reproduced needs every step's gain "
        "interval over seeds above 0 and a positive slope interval; contradicted, a step whose "
        f"interval lies below 0 (or a negative slope). Gains per step: {g}."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--events-per-batch", type=int, default=2048)
    ap.add_argument("--val-rows", type=int, default=256)
    ap.add_argument("--test-rows", type=int, default=1500)
    ap.add_argument("--max-epochs", type=int, default=6)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "claims" / "grab")
    ap.add_argument(
        "--check", type=Path, default=None, help="--out of a diagnostic invocation to report beside"
    )
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    args.command = command_line("claims_grab.py")
    if not args.report_only:
        record_command(args.out, args.command)
        for seed in args.seeds:
            for k in args.ks:
                d = args.out / f"k{k}" / f"seed{seed}"
                train(d, overrides(args, seed, k))
                if (d / "metrics.json").is_file():
                    score(args, d, k)
    write_section(TITLE, report(args))


if __name__ == "__main__":
    main()
