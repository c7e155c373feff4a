"""APG against its static twin at convergence (issue 13), on a world whose right weights differ from
instance to instance.

World: ``data=synthetic`` with ``data.instance_scale`` > 0: every value of ``data.instance_field``
(the user) owns its own weights ``q[user]`` on the numeric features, a logit term ``⟨z, q[user]⟩``
of that standard deviation beside the usual first-order, cross and dense terms
(``recsys_lab/data/synthetic/tabular.py``; the planted claim test's mechanism,
``tests/claims/test_apg_claim.py``, in the full world). ``instance_scale = 0`` (the default world)
is the control. Models: the DNN of ``scripts/results_mixers.py``'s APG rows (hidden ``--hidden``),
static, against the same DNN whose hidden layers are APG layers conditioned on the user's embedding
(``model.apg`` group-wise, rank 16, over-parameterisation 64 merged for serving, hyper-network 32):
the static twin has the same widths and reads the same user embedding, as in the planted test.
Early stopping on validation LogLoss (patience 1, ``--max-epochs`` cap); each seed draws a new world
and test set, so the t-interval over seeds includes test-sampling noise. Per seed, a paired bootstrap
over the test rows of ``AUC_APG − AUC_static`` (``recsys_lab.metrics.bootstrap_interval``).
Beside it, on the same rows: the oracle, and the oracle without the instance-specific term (what is
left to a predictor blind to per-user weights). Serving cost: FLOPs per example (the merged APG) and
dense parameters, in training and merged for serving.

    python scripts/claims_apg.py                       # run what is missing (resumable), write the section
    python scripts/claims_apg.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from scripts.claims_page import write_section  # noqa: E402
from scripts.claims_runs import (  # noqa: E402
    command_line,
    curve,
    fmt_interval,
    record_command,
    recorded_command,
    synthetic_overrides,
    t_interval,
    test_predictions,
    train,
    verdict,
    wall_s,
)

TITLE = "APG vs its static twin"
VARIANTS = ("static", "apg")
# scripts/results_mixers.py's group-wise APG, conditioned on --field
APG = "{condition:group,rank:16,overparam:64,hypernet_hidden:32,group_fields:[%s]}"


def run_dir(args: argparse.Namespace, scale: float, variant: str, seed: int) -> Path:
    return args.out / f"instance{scale:g}" / variant / f"seed{seed}"


def overrides(args: argparse.Namespace, scale: float, variant: str, seed: int) -> list[str]:
    data = [f"data.instance_scale={scale:g}", f"data.instance_field={args.field}"]
    model = ["model=dnn", f"model.hidden_units=[{','.join(str(h) for h in args.hidden)}]"]
    if variant == "apg":
        model.append(f"model.apg={APG % args.field}")
    return [*synthetic_overrides(args, seed, data, model), "logger=csv"]


def oracles(run: Path) -> dict[str, float]:
    """Test AUC of the planted probability and of the same without the instance-specific term
    (the run's own data config), cached in ``oracles.json`` beside the run."""
    import numpy as np
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from recsys_lab.metrics import auc

    cache = run / "oracles.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    dm = instantiate(OmegaConf.load(run / "config.yaml").data)
    test, planted = dm.split("test"), dm.planted_model
    sparse, dense = test.sparse.numpy(), test.dense.numpy()
    z = planted.logit(sparse, dense) - planted.instance_term(sparse, dense)
    y = test.labels["click"].double()
    out = {
        "oracle": auc(test.extras["true_prob"].double(), y),
        "no_instance": auc(torch.from_numpy(1 / (1 + np.exp(-z))), y),
    }
    cache.write_text(json.dumps(out))
    return out


def serving_params(run: Path) -> int:
    """Dense parameters of the run's model with its APG factors merged for serving."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from recsys_lab.layers.apg import merge_apg
    from recsys_lab.runners.train import build_model

    cfg = OmegaConf.load(run / "config.yaml")
    model = merge_apg(build_model(cfg, instantiate(cfg.data).schema))
    return int(model.num_params(embedding=False, dense=True))


def study(args: argparse.Namespace, scale: float) -> dict | None:
    """Per seed (both variants finished): AUCs, the paired bootstrap of the gain, the oracles; and
    the t-interval over seeds."""
    import torch

    from recsys_lab.metrics import auc, bootstrap_interval

    seeds = []
    for s in args.seeds:
        dirs = {v: run_dir(args, scale, v, s) for v in VARIANTS}
        if not all((d / "metrics.json").is_file() for d in dirs.values()):
            continue
        preds = {v: test_predictions(d) for v, d in dirs.items()}
        y = preds["static"][1]
        if not torch.equal(y, preds["apg"][1]):
            raise RuntimeError(f"instance_scale={scale:g}, seed {s}: the two variants' test labels differ")
        a = {v: auc(p, y) for v, (p, _) in preds.items()}
        lo, hi = bootstrap_interval(
            auc, preds["apg"][0], y, baseline=preds["static"][0], replicates=args.resamples
        )
        metrics = {v: json.loads((d / "metrics.json").read_text()) for v, d in dirs.items()}
        seeds.append(
            {
                "seed": s,
                "auc": a,
                "delta": a["apg"] - a["static"],
                "bootstrap": (lo, hi),
                "oracles": oracles(dirs["static"]),
                "epochs": {v: m.get("epochs") for v, m in metrics.items()},
                "curves": {v: curve(d, metrics[v].get("epochs", args.max_epochs)) for v, d in dirs.items()},
                "wall": sum(wall_s(d) or 0.0 for d in dirs.values()),
                "metrics": metrics,
                "dirs": dirs,
            }
        )
    if not seeds:
        return None
    m, lo, hi = t_interval([r["delta"] for r in seeds])
    gap = t_interval([r["oracles"]["oracle"] - r["oracles"]["no_instance"] for r in seeds])
    share = {
        v: t_interval(
            [
                (r["auc"][v] - r["oracles"]["no_instance"])
                / (r["oracles"]["oracle"] - r["oracles"]["no_instance"])
                for r in seeds
            ]
        )
        if all(r["oracles"]["oracle"] - r["oracles"]["no_instance"] > 0.005 for r in seeds)
        else None
        for v in VARIANTS
    }
    return {"seeds": seeds, "mean": m, "low": lo, "high": hi, "n": len(seeds), "gap": gap, "share": share}


def report(args: argparse.Namespace) -> list[str]:
    lines = [
        "Claim (APG paper): generating instance-specific weights (APG) beats the static twin at equal "
        "serving cost. World: `data=synthetic` with `data.instance_scale=S` (a knob added for this study; "
        "0, the default, leaves every row unchanged): each user owns its own "
        "weights on the 6 numeric features, a logit term of sd S beside the first-order (sd 1.0), cross "
        "(0.8) and dense (0.6) terms; S = 0 is the default world (control). "
        f"{args.num_train:,} training rows, {args.num_eval:,} validation and test rows, batch "
        f"{args.batch_size}. DNN hidden {list(args.hidden)}, static, against the same DNN with APG hidden "
        f"layers conditioned on the `{args.field}` embedding (rank 16, over-parameterisation 64 merged for "
        "serving, hyper-network 32; the static twin reads the same embedding). Early stopping on "
        f"validation LogLoss (patience 1, cap {args.max_epochs} epochs). Seeds {args.seeds} (each a new "
        "world). Command:",
        "",
        f"    {args.command}",
        "",
    ]
    summary: dict = {}
    cost_done, walls = False, []
    for scale in args.scales:
        r = study(args, scale)
        name = f"S = {scale:g}" + (" (control)" if scale == 0 else "")
        if r is None:
            lines += [f"{name}: not run yet.", ""]
            continue
        walls += [x["wall"] for x in r["seeds"]]
        lines += [
            f"**{name}.** Δ = APG − static, paired bootstrap 95% over the test rows; *oracle without "
            "the per-user term*: the planted probability with the instance-specific term removed.",
            "",
            "| seed | static AUC | APG AUC | Δ [bootstrap 95%] | oracle | oracle without the per-user term | "
            "epochs run (static, APG) |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in r["seeds"]:
            lo_b, hi_b = x["bootstrap"]
            lines.append(
                f"| {x['seed']} | {x['auc']['static']:.4f} | {x['auc']['apg']:.4f} | {x['delta']:+.4f} "
                f"[{lo_b:+.4f}, {hi_b:+.4f}] | {x['oracles']['oracle']:.4f} | "
                f"{x['oracles']['no_instance']:.4f} | {x['epochs']['static']}, {x['epochs']['apg']} |"
            )
        v = verdict(r["low"], r["high"], r["n"])
        above = sum(x["bootstrap"][0] > 0 for x in r["seeds"])
        below = sum(x["bootstrap"][1] < 0 for x in r["seeds"])
        lines += [
            "",
            f"ΔAUC over seeds: {fmt_interval(r['mean'], r['low'], r['high'])} (95% t, n = {r['n']}) — "
            f"**{v}**; per-seed bootstrap above 0 in {above} of {r['n']}, below 0 in {below}. The per-user "
            f"term is worth {fmt_interval(*r['gap'])} oracle AUC.",
            "",
        ]
        if r["share"]["static"] is not None:
            lines += [
                "Share of that worth each model recovers, (AUC − oracle without the term) / (oracle − oracle "
                "without the term), mean [95% t]: "
                + "; ".join(f"{var} {fmt_interval(*r['share'][var], digits=2)}" for var in VARIANTS)
                + ". (Above 0: the model beats the planted probability without the per-user term, so it "
                "uses part of the per-user weights.)",
                "",
            ]
        lines += [
            f"Validation LogLoss per epoch (S = {scale:g}): "
            + "; ".join(
                f"{var} seed {x['seed']}: " + ", ".join(f"{p:.4f}" for _, p in x["curves"][var])
                for x in r["seeds"]
                for var in VARIANTS
            ),
            "",
        ]
        summary[f"{scale:g}"] = {
            "mean": r["mean"],
            "low": r["low"],
            "high": r["high"],
            "n": r["n"],
            "verdict": v,
            "gap": list(r["gap"]),
        }
        if not cost_done:
            x = r["seeds"][0]
            cost = {
                var: {
                    "flops": int(x["metrics"][var].get("flops/per_example", 0)),
                    "train_params": int(x["metrics"][var].get("params/dense", 0)),
                    "serving_params": serving_params(x["dirs"][var]),
                }
                for var in VARIANTS
            }
            summary["cost"] = cost
            lines += [
                "Serving cost (the merged APG; counted by the framework, `flops/per_example` and dense "
                "parameters):",
                "",
                "| model | FLOPs/example (serving) | dense params (training) | dense params (serving, merged) |",
                "|---|---|---|---|",
                *(
                    f"| {var} | {c['flops']:,} | {c['train_params']:,} | {c['serving_params']:,} |"
                    for var, c in cost.items()
                ),
                "",
                f"APG's serving FLOPs are {cost['apg']['flops'] / cost['static']['flops']:.2f}× the static "
                "twin's (measured latency, which counts the hyper-network's extra kernels, is on "
                "[mixers.md](mixers.md#serving-cost-measured)).",
                "",
            ]
            cost_done = True
    lines += beside_lines(args.beside)
    lines.append(
        f"Wall time: {sum(walls) / 60:.0f} min over {2 * len(walls)} runs (shared 2-core CPU, one thread each)."
    )
    from recsys_lab.runners.stage import write_json_atomic

    summary["main"] = f"{args.scales[0]:g}"
    write_json_atomic(args.out / "summary.json", summary)
    return lines


def beside_lines(outs: list[Path]) -> list[str]:
    """One line per other invocation of this script (its ``--out``: ``command.txt`` and
    ``summary.json``), e.g. the same study on more rows, reported beside the headline."""
    lines = []
    for out in outs:
        f = out / "summary.json"
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        command = recorded_command(out)
        cells = [
            f"S = {key}: {fmt_interval(x['mean'], x['low'], x['high'])} (95% t, n = {x['n']}) — {x['verdict']}"
            for key, x in r.items()
            if isinstance(x, dict) and "verdict" in x
        ]
        lines += [f"The same study, `{command}`: ΔAUC APG − static " + "; ".join(cells) + ".", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[1.0, 0.0],
        help="data.instance_scale of each world; the first is the study's, 0 the control",
    )
    ap.add_argument("--field", default="user", help="data.instance_field and APG's group field")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--num-train", type=int, default=100_000)
    ap.add_argument("--num-eval", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--max-epochs", type=int, default=20)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "claims" / "apg")
    ap.add_argument(
        "--beside", type=Path, nargs="*", default=[], help="--out of other invocations to report beside"
    )
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    args.command = command_line("claims_apg.py")
    if not args.report_only:
        record_command(args.out, args.command)
        for scale in args.scales:
            for s in args.seeds:
                for v in VARIANTS:
                    train(run_dir(args, scale, v, s), overrides(args, scale, v, s))
    write_section(TITLE, report(args))


if __name__ == "__main__":
    main()
