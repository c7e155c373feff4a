"""OCARM's claim at convergence (issue 13): the distilled student beats the plain student when the
onboarding engagement is predictable from the observable features, and not when it is noise.

``pipeline=ocarm`` per (ρ, seed) on ``data.preset=retention`` with
``data.world.engagement_correlation=ρ`` (ρ = 0: the engagement the content reveals is independent
of everything observable, the control; ρ > 0: partly predictable) and ``data.world.seed=seed`` (a
new world and test set per seed, so the t-interval over seeds includes test-sampling noise). Every
trained stage — the teacher (validated with its content, ``data.privileged_val=true``), the plain
student, the distilled students — stops early on validation LogLoss (patience 1, ``--max-epochs``
cap; the best epoch is tested). ``--variants`` picks the distilled students: ``mse`` (the
pipeline's default: λ·MSE(P·r_s, r_t), λ = ``--rep-weight``) and ``cosine`` (λ·(1 − cos)), each
against the same plain student.

Per (ρ, seed): the three retention oracles on the test rows (full information = the true
probability; observables only = its expectation over the engagement; neither = the base rate,
AUC 0.5), the teacher with its content and served without it (naive), the students' test AUC, and
a paired bootstrap over test rows of ``AUC_distilled − AUC_plain``
(``recsys_lab.metrics.bootstrap_interval``); over seeds, 95% t-intervals.

    python scripts/claims_ocarm.py                    # run what is missing (resumable), write the section
    python scripts/claims_ocarm.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from scripts.claims_page import write_section  # noqa: E402
from scripts.claims_runs import (  # noqa: E402
    EARLY_STOP,
    command_line,
    fmt_interval,
    t_interval,
    test_predictions,
)

TITLE = "OCARM at convergence"
TRAINED = ("teacher", "student", "student_distill")  # pipeline=ocarm's training stages
# Distilled variant -> (stage, label, distance).
VARIANTS = {
    "mse": ("student_distill", "distilled, λ·MSE (the pipeline's default)", "mse"),
    "cosine": ("student_distill_cosine", "distilled, λ·(1 − cos)", "cosine"),
}


def pipeline_dir(args: argparse.Namespace, rho: float, seed: int) -> Path:
    return args.out / f"rho{rho:g}" / f"seed{seed}"


def stages(args: argparse.Namespace) -> list[str]:
    return ["teacher", "teacher_log", "student", *(VARIANTS[v][0] for v in args.variants)]


def run_one(args: argparse.Namespace, rho: float, seed: int) -> None:
    """``pipeline=ocarm`` for (ρ, seed), early stopping on every trained stage; resumable (the
    pipeline skips finished stages). Adds the wall time of this invocation to ``wall_s.txt``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from recsys_lab.runners.pipeline import run_pipeline
    from recsys_lab.runners.stage import CONFIG_DIR

    pdir = pipeline_dir(args, rho, seed)
    if all((pdir / s / "metrics.json").is_file() for s in stages(args)):
        return
    common = [
        "data.preset=retention",
        f"data.world.seed={seed}",
        f"data.world.engagement_correlation={rho}",
        f"data.val_days={args.val_days}",
        f"data.test_days={args.test_days}",
        f"data.batch_size={args.batch_size}",
        f"seed={seed}",
        "logger=none",
        "callbacks.rich_progress_bar=null",
        "num_threads=1",
        "print_table=false",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="pipeline",
            overrides=[
                "pipeline=ocarm",
                f"pipeline.rep_weight={args.rep_weight}",
                f"pipeline_dir={pdir}",
                f"overrides=[{','.join(repr(o) for o in common)}]",
            ],
        )
        budget = [
            *EARLY_STOP,
            f"trainer.max_epochs={args.max_epochs}",
            f"task.optimizer.lr={args.lr}",
            f"task.sparse_optimizer.lr={args.lr}",
        ]
        by_name = {s.name: s for s in cfg.pipeline.stages}
        for name in TRAINED:
            by_name[name].overrides.extend(budget)
        base = OmegaConf.to_container(by_name["student_distill"], resolve=False)
        for v in args.variants:
            stage, _, distance = VARIANTS[v]
            if stage != "student_distill":  # another alignment, against the same teacher and plain student
                extra = {**base, "name": stage}
                extra["overrides"] = [*base["overrides"], f"task.objective.distance={distance}"]
                cfg.pipeline.stages.append(extra)
        t0 = time.time()
        run_pipeline(cfg)
    wall = pdir / "wall_s.txt"
    before = float(wall.read_text()) if wall.is_file() else 0.0
    wall.write_text(f"{before + time.time() - t0:.1f}\n")
    print(f"ocarm rho={rho:g} seed={seed}: {time.time() - t0:.0f}s", flush=True)


def test_oracles(pdir: Path) -> dict[str, Any]:
    """Labels and the two oracle probabilities of the test rows (cached in ``test_oracles.pt``),
    from the world of the pipeline's plain-student stage, in the test loader's order."""
    import torch

    cache = pdir / "test_oracles.pt"
    if cache.is_file():
        return torch.load(cache)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(pdir / "student" / "config.yaml")
    dm = instantiate(cfg.data)
    dm.setup()
    lo, hi = dm.split_range("test")
    c = dm.samples.columns
    out = {
        "labels": torch.from_numpy(c.labels["retention"][lo:hi]).double(),
        "full": torch.from_numpy(c.extras["true_prob_retention"][lo:hi]).double(),
        "observables": torch.from_numpy(c.extras["observable_prob_retention"][lo:hi]).double(),
    }
    torch.save(out, cache)
    return out


def measure(args: argparse.Namespace, rho: float, seed: int) -> dict[str, Any] | None:
    """Everything the report needs of one finished pipeline (None while unfinished)."""
    import torch

    from recsys_lab.metrics import auc, bootstrap_interval, logloss

    pdir = pipeline_dir(args, rho, seed)
    if not all((pdir / s / "metrics.json").is_file() for s in stages(args)):
        return None
    m = {s: json.loads((pdir / s / "metrics.json").read_text()) for s in stages(args)}
    o = test_oracles(pdir)
    y = o["labels"]
    preds = {}
    for s in ("student", *(VARIANTS[v][0] for v in args.variants)):
        p, labels = test_predictions(pdir / s)
        if not torch.equal(labels, y):
            raise RuntimeError(f"{pdir / s}: its test labels are not the world's test rows in order")
        preds[s] = p
    log = m["teacher_log"]
    r: dict[str, Any] = {
        "rows": int(y.numel()),
        "full": auc(o["full"], y),
        "observables": auc(o["observables"], y),
        "full_logloss": logloss(o["full"], y),
        "observables_logloss": logloss(o["observables"], y),
        "neither_logloss": logloss(torch.full_like(y, float(y.mean())), y),
        "teacher": log["teacher/test_auc"],
        "teacher_logloss": log["teacher/test_logloss"],
        "naive": log["naive/test_auc"],
        "teacher_val_auc": m["teacher"]["val/auc"],
        "epochs": {s: m[s].get("epochs") for s in (*TRAINED, *(VARIANTS[v][0] for v in args.variants))},
        "wall_s": float((pdir / "wall_s.txt").read_text()) if (pdir / "wall_s.txt").is_file() else None,
    }
    # The stage metrics' own oracle must be the one recomputed here (same rows, same order).
    if abs(r["full"] - log["test/oracle_auc"]) > 1e-6:
        raise RuntimeError(
            f"{pdir}: the oracle AUC {r['full']} differs from the run's {log['test/oracle_auc']}"
        )
    for s, p in preds.items():
        r[s] = auc(p, y)
        r[f"{s}_logloss"] = logloss(p, y)
    for v in args.variants:
        s = VARIANTS[v][0]
        lo, hi = bootstrap_interval(auc, preds[s], y, baseline=preds["student"], replicates=args.resamples)
        r[f"delta_{v}"] = (r[s] - r["student"], lo, hi)
    r["obs_gap"] = bootstrap_interval(auc, o["full"], y, baseline=o["observables"], replicates=args.resamples)
    return r


def verdict(predictable: tuple[float, float, float], noise: tuple[float, float, float], n: int) -> str:
    """Reproduced: the gain's t-interval lies above 0 at the informative ρ and not at ρ = 0;
    contradicted: it lies below 0 at the informative ρ; otherwise not reproduced."""
    if n < 2:
        return "one seed: no interval"
    if predictable[1] > 0:
        return "reproduced" if noise[1] <= 0 else "not reproduced (a gain in the control too)"
    if predictable[2] < 0:
        return "contradicted"
    return "not reproduced (interval contains 0)"


def report(args: argparse.Namespace) -> list[str]:
    informative = [r for r in args.rhos if r != 0]
    lines = [
        "Claim (OCARM paper; METHODS.md): a student that sees only observable, pre-conversion features "
        "and is aligned with a frozen teacher that saw the onboarding content beats the same student "
        "without the teacher; the paper reports consistent offline AUC/GAUC gains on its own data and "
        "gives no figure that carries over (neither METHODS.md nor the claims table has one), so the "
        "verdict is against no effect (0). On the synthetic world the content reveals the user's "
        "engagement ε; with `data.world.engagement_correlation` ρ, ε = ρ·s + √(1 − ρ²)·ξ where s is "
        "observable before the conversion. The claim should hold at ρ > 0 and not at ρ = 0 (the "
        "control: the teacher's extra knowledge is noise for any observable-only model).",
        "",
        f"Set-up: `data.preset=retention` (40k users, retention rows = conversions), ρ ∈ {args.rhos}, "
        f"{args.val_days} validation and {args.test_days} test days, a new world per seed "
        f"(`data.world.seed`), seeds {args.seeds}; batch {args.batch_size}, AdamW / row-wise Adam at "
        f"learning rate {args.lr:g}; every trained stage (the teacher validated **with** its "
        "content, `data.privileged_val=true`; the students) stops early on validation LogLoss "
        f"(patience 1, cap {args.max_epochs} epochs) and is tested at its best epoch; λ = "
        f"{args.rep_weight:g}, μ = 0. Command:",
        "",
        f"    {args.command}",
        "",
    ]
    results = {(rho, s): measure(args, rho, s) for rho in args.rhos for s in args.seeds}
    done = {k: v for k, v in results.items() if v is not None}
    if not done:
        return [*lines, "Not run yet."]
    rows = [
        ("full information (oracle)", "full"),
        ("teacher, with the content", "teacher"),
        ("observables only (oracle)", "observables"),
        ("plain student (no teacher)", "student"),
        *((VARIANTS[v][1], VARIANTS[v][0]) for v in args.variants),
        ("naive: teacher served without the content", "naive"),
    ]
    seeds_of = {rho: [s for s in args.seeds if (rho, s) in done] for rho in args.rhos}
    head = " | ".join(f"ρ = {rho:g} ({len(seeds_of[rho])} seeds)" for rho in args.rhos)
    lines += [
        "Test AUC (retention), mean [95% t over seeds]; *neither* (the base rate) is AUC 0.5:",
        "",
        f"| model | {head} |",
        "|---|" + "---|" * len(args.rhos),
    ]
    for label, key in rows:
        cells = []
        for rho in args.rhos:
            vals = [done[(rho, s)][key] for s in seeds_of[rho]]
            cells.append(fmt_interval(*t_interval(vals)) if vals else "–")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += [
        "",
        "Per seed (test rows; Δ = distilled − plain student, paired bootstrap 95% over the test rows):",
        "",
    ]
    dcols = " | ".join(f"Δ {v} [bootstrap]" for v in args.variants)
    lines += [
        f"| ρ | seed | test rows | oracle full / observables | teacher (val, test) | plain student | {dcols} | epochs teacher / plain / distilled |",
        "|---|---|---|---|---|---|" + "---|" * len(args.variants) + "---|",
    ]
    for (rho, s), r in done.items():
        ds = " | ".join(
            f"{r[f'delta_{v}'][0]:+.4f} [{r[f'delta_{v}'][1]:+.4f}, {r[f'delta_{v}'][2]:+.4f}]"
            for v in args.variants
        )
        ep = r["epochs"]
        dist_ep = ", ".join(str(ep.get(VARIANTS[v][0])) for v in args.variants)
        lines.append(
            f"| {rho:g} | {s} | {r['rows']:,} | {r['full']:.4f} / {r['observables']:.4f} | "
            f"{r['teacher_val_auc']:.4f}, {r['teacher']:.4f} | {r['student']:.4f} | {ds} | "
            f"{ep.get('teacher')} / {ep.get('student')} / {dist_ep} |"
        )
    summary: dict[str, Any] = {"rhos": {}, "informative": informative}
    lines += ["", "| comparison (paired by seed) | " + " | ".join(f"ρ = {rho:g}" for rho in args.rhos) + " |"]
    lines += ["|---|" + "---|" * len(args.rhos)]
    for v in args.variants:
        cells = []
        for rho in args.rhos:
            d = [done[(rho, s)][f"delta_{v}"][0] for s in seeds_of[rho]]
            if not d:
                cells.append("–")
                continue
            m, lo, hi = t_interval(d)
            above = sum(done[(rho, s)][f"delta_{v}"][1] > 0 for s in seeds_of[rho])
            cells.append(f"{fmt_interval(m, lo, hi)} ({len(d)}); bootstrap above 0 in {above}/{len(d)}")
            summary["rhos"].setdefault(f"{rho:g}", {})[v] = {
                "mean": m,
                "low": lo,
                "high": hi,
                "n": len(d),
                "seeds_above": above,
            }
        lines.append(f"| ΔAUC {VARIANTS[v][1]} − plain | {' | '.join(cells)} |")
    # Set-up checks: what the teacher learnt of the privileged gap, what room the student left.
    lines += ["", "Set-up checks (means over seeds):", ""]
    for rho in args.rhos:
        rs = [done[(rho, s)] for s in seeds_of[rho]]
        if not rs:
            continue
        share = t_interval([(r["teacher"] - r["observables"]) / (r["full"] - r["observables"]) for r in rs])
        room = t_interval([r["observables"] - r["student"] for r in rs])
        gap = t_interval([r["full"] - r["observables"] for r in rs])
        capped = sum(e == args.max_epochs for r in rs for e in r["epochs"].values())
        lines.append(
            f"- ρ = {rho:g}: privileged gap (full − observables oracle) {fmt_interval(*gap)}; the teacher "
            f"recovers {fmt_interval(*share, digits=2)} of it (teacher AUC with content − observables "
            f"oracle, over the gap); the plain student is {fmt_interval(*room)} AUC below the "
            f"observables-only oracle — the most any student, distilled or not, can gain; runs that hit "
            f"the {args.max_epochs}-epoch cap: {capped} of {sum(len(r['epochs']) for r in rs)}."
        )
    main = args.variants[0]
    for v in args.variants:
        if not informative:
            break
        for rho in informative:
            p, c = summary["rhos"].get(f"{rho:g}", {}).get(v), summary["rhos"].get("0", {}).get(v)
            if not p or not c:
                continue
            n = min(p["n"], c["n"])
            vd = verdict((p["mean"], p["low"], p["high"]), (c["mean"], c["low"], c["high"]), n)
            summary.setdefault("verdicts", {})[f"{v}@{rho:g}"] = vd
            if v == main and rho == informative[0]:
                summary.update(
                    {"verdict": vd, "variant": v, "rho": rho, "teacher": _teacher_summary(done, rho)}
                )
            lines += [
                "",
                f"- {VARIANTS[v][1]}: ΔAUC at ρ = {rho:g} {fmt_interval(p['mean'], p['low'], p['high'])}, at "
                f"ρ = 0 {fmt_interval(c['mean'], c['low'], c['high'])} — **{vd}**.",
            ]
    lines += reading(args, summary, done)
    lines += setup_checks(args)
    walls = [r["wall_s"] for r in done.values() if r["wall_s"]]
    lines += [
        "",
        f"Wall time: {sum(walls) / 60:.0f} min for {len(walls)} pipelines (world generation, teacher, "
        "teacher logging and the students; shared CPU, one thread, at most two processes).",
    ]
    from recsys_lab.runners.stage import write_json_atomic

    write_json_atomic(args.out / "summary.json", summary)
    return lines


def check_command(out: Path) -> str:
    """The command that ran a check's folder, from its runs' configs and the (ρ, seed) it holds."""
    from omegaconf import OmegaConf

    runs = sorted(out.glob("rho*/seed*/student_distill/config.yaml"))
    if not runs:
        return f"(no runs in {out})"
    cfg = OmegaConf.load(runs[0])
    rhos = sorted({float(r.parts[-4].removeprefix("rho")) for r in runs})
    seeds = sorted({int(r.parts[-3].removeprefix("seed")) for r in runs})
    cosine = all((r.parents[1] / VARIANTS["cosine"][0] / "metrics.json").is_file() for r in runs)
    try:
        shown = out.resolve().relative_to(ROOT.resolve())
    except ValueError:
        shown = out
    return (
        f"python scripts/claims_ocarm.py --rhos {' '.join(f'{r:g}' for r in rhos)} --seeds "
        f"{' '.join(map(str, seeds))} --lr {cfg.task.optimizer.lr:g} --rep-weight "
        f"{cfg.task.objective.rep_weight:g}{'' if cosine else ' --variants mse'} --out {shown}"
    )


def reading(args: argparse.Namespace, summary: dict[str, Any], done: dict) -> list[str]:
    """The reading of a claim that did not reproduce: what the set-up left for distillation."""
    if not str(summary.get("verdict", "")).startswith("not reproduced"):
        return []
    rho = summary["rho"]

    def mean(key: Any, at: float) -> float:
        rs = [r for (x, _), r in done.items() if x == at]
        return sum(key(r) for r in rs) / len(rs)

    share = {
        at: mean(lambda r: (r["teacher"] - r["observables"]) / (r["full"] - r["observables"]), at)
        for at in (rho, 0.0)
        if any(x == at for x, _ in done)
    }
    room = mean(lambda r: r["observables"] - r["student"], rho)
    # Patience 1: a run that stops before the cap ran one epoch past its best (1-based: epochs − 1).
    best = sorted({e - 1 for r in done.values() for e in r["epochs"].values() if e and e < args.max_epochs})
    return [
        "",
        f"Reading: the set-up left distillation something to pass on — the teacher, early-stopped on its "
        f"own validation loss with the content, recovers {share[rho]:.0%} of the privileged gap at ρ = "
        f"{rho:g}" + (f" ({share[0.0]:.0%} at ρ = 0)" if 0.0 in share else "") + ", and the plain student "
        f"sits {room:.3f} AUC below the observables-only oracle, the most a serving model can gain — yet "
        "aligning the student with the teacher moved its test AUC by no more than the test-sampling noise. "
        f"The tested (best) epoch of every run is its epoch {' or '.join(str(b) for b in best)}: validation "
        "LogLoss rises right after, so every model here is at its early-stopping optimum, not cut short "
        "by a budget. The planted claim test shows the mechanism with 1,000 training rows, where a dense "
        "teacher target is worth more than noisy binary labels; with the retention preset's tens of "
        "thousands of conversions, any gain of the default alignment is below what three worlds of "
        "~14.5k test rows resolve (the set-up checks below try a lower learning rate and λ = 10).",
    ]


def _teacher_summary(done: dict, rho: float) -> dict[str, float]:
    rs = [r for (x, _), r in done.items() if x == rho]
    return {
        "teacher": sum(r["teacher"] for r in rs) / len(rs),
        "full": sum(r["full"] for r in rs) / len(rs),
        "observables": sum(r["observables"] for r in rs) / len(rs),
    }


def setup_checks(args: argparse.Namespace) -> list[str]:
    """Rows of the set-up checks: this script's runs with other settings (``--checks DIR ...``,
    e.g. ``--lr`` or ``--rep-weight`` changed, each into its own ``--out``) beside the main runs of
    the same (ρ, seed). Models are compared on validation LogLoss (what early stopping selects on)
    and test AUC."""
    from omegaconf import OmegaConf

    need = ("teacher", "teacher_log", "student", "student_distill")
    rows = []
    for d in [args.out, *args.checks]:
        for rho in args.rhos:
            for s in args.seeds:
                pdir = d / f"rho{rho:g}" / f"seed{s}"
                if not all((pdir / x / "metrics.json").is_file() for x in need):
                    continue
                cfg = OmegaConf.load(pdir / "student_distill" / "config.yaml")
                m = {x: json.loads((pdir / x / "metrics.json").read_text()) for x in need}
                rows.append(
                    f"| {cfg.task.optimizer.lr:g} | {cfg.task.objective.rep_weight:g} | {rho:g} | {s} | "
                    f"{m['teacher']['val/logloss']:.4f} / {m['teacher_log']['teacher/test_auc']:.4f} | "
                    f"{m['student']['val/logloss']:.4f} / {m['student']['test/auc']:.4f} | "
                    f"{m['student_distill']['val/logloss']:.4f} / {m['student_distill']['test/auc']:.4f} | "
                    f"{m['student_distill']['test/auc'] - m['student']['test/auc']:+.4f} | "
                    f"{m['teacher']['epochs']} / {m['student']['epochs']} / {m['student_distill']['epochs']} |"
                )
    if not args.checks or not rows:
        return []
    walls = [float(w.read_text()) for c in args.checks for w in c.glob("rho*/seed*/wall_s.txt")]
    commands = [f"    {check_command(d)}" for d in args.checks]
    gains = []  # a check run at every ρ and seed: its own paired comparison and verdict
    for d in args.checks:
        sub = argparse.Namespace(**{**vars(args), "out": d, "variants": ["mse"]})
        done = {(rho, s): measure(sub, rho, s) for rho in args.rhos for s in args.seeds}
        if any(r is None for r in done.values()):
            continue
        cfg = OmegaConf.load(
            pipeline_dir(sub, args.rhos[0], args.seeds[0]) / "student_distill" / "config.yaml"
        )
        stats = {}
        for rho in args.rhos:
            d_ = [done[(rho, s)]["delta_mse"] for s in args.seeds]
            stats[rho] = (t_interval([x[0] for x in d_]), sum(x[1] > 0 for x in d_))
        cells = "; ".join(
            f"ρ = {rho:g}: {fmt_interval(*t)} ({len(args.seeds)}), bootstrap above 0 in {k}/{len(args.seeds)}"
            for rho, (t, k) in stats.items()
        )
        vds = [
            f"ρ = {rho:g}: {verdict(stats[rho][0], stats[0.0][0], len(args.seeds))}"
            for rho in args.rhos
            if rho != 0 and 0.0 in stats
        ]
        gains.append(
            f"- lr {cfg.task.optimizer.lr:g}, λ = {cfg.task.objective.rep_weight:g} (every ρ and seed): ΔAUC "
            f"distilled − plain {cells} — {'; '.join(vds) or 'no control'}."
        )
    return [
        "",
        "Set-up checks: the same pipeline with another learning rate (every trained stage) or λ, "
        "beside the main runs (first rows); validation LogLoss is what early stopping selects on; "
        "distilled = λ·MSE. Each check's command (its `--out` is read back with `--checks`):",
        "",
        *commands,
        "",
        "| lr | λ | ρ | seed | teacher val LogLoss / test AUC | plain val LogLoss / test AUC | "
        "distilled val LogLoss / test AUC | Δ test AUC | epochs teacher / plain / distilled |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        *(["", *gains] if gains else []),
        "",
        f"The checks took {sum(walls) / 60:.0f} min over {len(walls)} pipelines (not counted below).",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.6])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["mse", "cosine"])
    ap.add_argument("--rep-weight", type=float, default=1.0, help="λ of the distilled students")
    ap.add_argument("--max-epochs", type=int, default=30, help="epoch cap of every trained stage")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument(
        "--lr", type=float, default=1e-3, help="dense and sparse learning rate of every trained stage"
    )
    ap.add_argument("--val-days", type=int, default=2)
    ap.add_argument("--test-days", type=int, default=3)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "claims" / "ocarm")
    ap.add_argument(
        "--checks", type=Path, nargs="*", default=[], help="--out folders of set-up checks to report beside"
    )
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    args.command = command_line("claims_ocarm.py")
    if not args.report_only:
        for rho in args.rhos:
            for s in args.seeds:
                run_one(args, rho, s)
    write_section(TITLE, report(args))


if __name__ == "__main__":
    main()
