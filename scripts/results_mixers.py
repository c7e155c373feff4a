"""Token mixers and APG: run the comparison (optional) and write docs/results/mixers.md (+ PNG).

Three studies, each run ``--seeds`` times through ``recsys_lab.runners.train.run`` (in one process):

1. **matched** — DCNv2, RankMixer, UniMixer, UniMixing-Lite and the FM block at matched dense
   parameter counts (each family's width is searched so ``num_params(embedding=False)`` is within
   10 % of DCNv2's), on ``data=synthetic`` and ``data=synthetic_criteo``.
2. **scaling** — the four mixer families at four sizes (dense-parameter targets ``--scales`` ×
   DCNv2's count) on ``data=synthetic``; a power law ``gap(x) = a·x^(-b) + c`` is fitted per family
   to the gap to the oracle AUC (a grid over c, least squares on the log scale for a and b; numpy
   only — no scipy, and not ``recsys_lab.scaling``), and plotted.
3. **apg** — DNN static vs DNN with APG (self-wise and group-wise on the user field).

Every run writes ``metrics.json`` under ``--runs-dir``; a run whose ``metrics.json`` exists is not
repeated (the study resumes). ``--report-only`` skips running and only reads what is there.

Default (reduced) settings fit ~20 minutes on a busy 2-core CPU; the full-size settings are
``--num-train 0 --batch-size 0 --epochs 3`` (0 = the dataset config's own row counts and batch size).

    .venv/bin/python scripts/results_mixers.py                     # run what is missing + report
    .venv/bin/python scripts/results_mixers.py --report-only       # report from existing runs
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAMILIES = ["dcnv2", "rankmixer", "unimixer", "unimixer_lite", "fm_block"]
MIXERS = FAMILIES[1:]
LABEL = {
    "dcnv2": "DCNv2",
    "rankmixer": "RankMixer",
    "unimixer": "UniMixer",
    "unimixer_lite": "UniMixing-Lite",
    "fm_block": "FM block",
    "dnn": "DNN (static)",
    "dnn_apg_self": "DNN + APG (self)",
    "dnn_apg_group": "DNN + APG (group: user)",
}
DATASETS = ["synthetic", "synthetic_criteo"]
# The DCNv2 reference whose dense parameter count the other families match.
DCN_REF = ["model.num_cross_layers=1", "model.hidden_units=[128,64]"]
TOKENS = 4  # T of every mixer family
LAYERS = 2
APG = "{condition:%s,rank:16,overparam:64,hypernet_hidden:32,group_fields:[user]}"


# -- width matching ------------------------------------------------------------------------------


@functools.cache
def _schema(data: str) -> Any:
    """The dataset's schema (built without generating rows)."""
    from hydra import compose
    from hydra.utils import instantiate

    cfg = compose(
        "train", overrides=[f"data={data}", "data.num_train=16", "data.num_val=16", "data.num_test=16"]
    )
    dm = instantiate(cfg.data)
    dm.setup()
    # Dense parameter counts do not depend on vocabularies: tiny tables make the width search fast.
    feats = tuple(
        dataclasses.replace(f, vocab_size=2) if f.kind == "categorical" else f for f in dm.schema.features
    )
    return dataclasses.replace(dm.schema, features=feats)


@functools.cache
def _model_config(family: str) -> Any:
    from hydra import compose

    return compose("train", overrides=[f"model={family}"])


def _dense_params(family: str, schema: Any, overrides: list[str]) -> int:
    """Dense parameters of ``model=<family>`` with ``model.<key>=<value>`` overrides."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = _model_config(family)
    kwargs = {}
    for o in overrides:
        key, value = o.split("=", 1)
        kwargs[key.removeprefix("model.")] = OmegaConf.create({"v": value}).v if value.isdigit() else value
    if "hidden_units" in kwargs:
        kwargs["hidden_units"] = [int(v) for v in str(kwargs["hidden_units"]).strip("[]").split(",")]
    kwargs = {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in kwargs.items()}
    model = instantiate(cfg.model, _partial_=True, **kwargs)(
        schema=schema, embedding=instantiate(cfg.embedding)
    )
    return model.num_params(embedding=False)


def mixer_overrides(dim: int, hidden: int) -> list[str]:
    return [
        f"model.num_tokens={TOKENS}",
        f"model.dim={dim}",
        f"model.num_layers={LAYERS}",
        f"model.ffn_hidden={hidden}",
    ]


WIDTH_CACHE: dict[str, list[int]] = {}  # "family/data/target" -> [dim, hidden, params], saved in runs-dir


def matched_width(family: str, data: str, target: int) -> tuple[int, int, int]:
    """:func:`search_width`, remembered in ``<runs-dir>/widths.json`` (the search is slow on a busy CPU)."""
    key = f"{family}/{data}/{target}"
    if key not in WIDTH_CACHE:
        WIDTH_CACHE[key] = list(search_width(family, data, target))
    dim, hidden, n = WIDTH_CACHE[key]
    return dim, hidden, n


def search_width(family: str, data: str, target: int) -> tuple[int, int, int]:
    """``(dim, ffn_hidden, dense params)`` closest to ``target``: for each width D (a multiple of
    4) the FFN hidden width (a multiple of 4 in [D, 4D]) that hits the target is solved from two
    counts (parameters are affine in it); among those within 10 %, the one with hidden closest to 2·D."""
    schema = _schema(data)
    best: tuple[float, int, int, int] | None = None
    for dim in range(16, 1025, 4):
        p8 = _dense_params(family, schema, mixer_overrides(dim, 8))
        if p8 > 1.1 * target:
            break
        slope = (_dense_params(family, schema, mixer_overrides(dim, 16)) - p8) / 8
        hidden = max(dim, min(4 * dim, 4 * round(((target - p8) / slope + 8) / 4)))
        n = _dense_params(family, schema, mixer_overrides(dim, hidden))
        if abs(n - target) <= 0.1 * target:
            score = abs(math.log(hidden / (2 * dim)))
            if best is None or score < best[0]:
                best = (score, dim, hidden, n)
    if best is None:
        raise RuntimeError(f"no width of {family} on {data} has {target} dense parameters within 10 %")
    return best[1], best[2], best[3]


# -- running -------------------------------------------------------------------------------------


def run_one(out: Path, overrides: list[str]) -> dict[str, Any]:
    """One training run (skipped if ``out/metrics.json`` exists)."""
    from hydra import compose
    from omegaconf import open_dict

    from recsys_lab.runners.train import run

    done = out / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    # Several workers may share the plan (`--workers`): a lock file claims a run; a lock whose
    # process is gone is stale and taken over.
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or "0"), 0)
            return {}  # another live worker has it
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    start = time.perf_counter()
    try:
        metrics = run(cfg)
    finally:
        lock.unlink(missing_ok=True)
    print(
        f"  {out.relative_to(out.parents[2])}: test/auc={metrics['test/auc']:.4f} "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return metrics


def common(args: argparse.Namespace, data: str, seed: int) -> list[str]:
    o = [
        f"data={data}",
        f"seed={seed}",
        f"trainer.max_epochs={args.epochs}",
        "logger=none",
        "print_table=false",
        "callbacks.rich_progress_bar=null",
        "+trainer.enable_progress_bar=false",
        # One epoch: the last weights are the best; no checkpoint writes and reloads.
        "callbacks.model_checkpoint=null",
        f"num_threads={args.threads}",
    ]
    if args.batch_size:
        o.append(f"data.batch_size={args.batch_size}")
    if args.num_train:
        o += [
            f"data.num_train={args.num_train}",
            f"data.num_val={args.num_eval}",
            f"data.num_test={args.num_eval}",
        ]
    return o


LOGIT_LR_SCALE = 10.0  # set from --logit-lr-scale in main()


def family_overrides(family: str, width: tuple[int, int] | None) -> list[str]:
    if family == "dcnv2" or width is None:
        return ["model=dcnv2", *DCN_REF]
    o = [f"model={family}", *mixer_overrides(*width)]
    if family in ("unimixer", "unimixer_lite"):
        o.append("callbacks=mixer")  # temperature annealing 1.0 -> 0.05
    if family == "unimixer":
        o.append(f"model.logit_lr_scale={LOGIT_LR_SCALE}")
    return o


def mixing_movement(metrics: dict[str, Any]) -> dict[str, float] | None:
    """How far a UniMixer run's global mixing moved from its initialisation, read from its best
    checkpoint (mean over layers of :meth:`UniMixing.movement`); None for other runs or checkpoints
    written before the initial logits were stored."""
    from recsys_lab.layers.mixing import UniMixing
    from recsys_lab.runners.checkpoint import load_state_dict

    ckpt = metrics.get("best_checkpoint")
    if not ckpt or not Path(ckpt).is_file():
        return None
    state = load_state_dict(ckpt)
    scale = float(metrics.get("logit_lr_scale", LOGIT_LR_SCALE))
    found = []
    for key, start in state.items():
        if not key.endswith(".initial_global_logits"):
            continue
        theta = state[key.replace(".initial_global_logits", ".global_logits")]
        n = theta.shape[0]
        m = UniMixing(1, n, 1, logit_lr_scale=scale)  # N blocks of size 1: the shapes of G only
        m.global_logits.data.copy_(theta)
        m.initial_global_logits.copy_(start)
        found.append(m.movement())
    if not found:
        return None
    return {k: sum(f[k] for f in found) / len(found) for k in found[0]}


def plan(args: argparse.Namespace) -> list[tuple[str, str, str, str, int, list[str]]]:
    """(study, data, family, size label, seed, overrides) of every run."""
    runs = []
    seeds = list(range(args.seeds))
    targets = {data: _dense_params("dcnv2", _schema(data), DCN_REF) for data in DATASETS}
    for data in DATASETS:
        for family in FAMILIES:
            width = None if family == "dcnv2" else matched_width(family, data, targets[data])[:2]
            for seed in seeds:
                o = common(args, data, seed) + family_overrides(family, width)
                runs.append(("matched", data, family, "1x", seed, o))
    for scale in args.scales:
        for family in MIXERS:
            width = matched_width(family, "synthetic", int(targets["synthetic"] * scale))[:2]
            for seed in seeds[: args.scaling_seeds]:
                size = f"{scale:g}x"
                study = "matched" if scale == 1 else "scaling"  # the 1x point is the matched run
                o = common(args, "synthetic", seed) + family_overrides(family, width)
                runs.append((study, "synthetic", family, size, seed, o))
    for name, extra in (
        ("dnn", []),
        ("dnn_apg_self", [f"model.apg={APG % 'self'}"]),
        ("dnn_apg_group", [f"model.apg={APG % 'group'}"]),
    ):
        for seed in seeds:
            o = [*common(args, "synthetic", seed), "model=dnn", "model.hidden_units=[128,64]", *extra]
            runs.append(("apg", "synthetic", name, "1x", seed, o))
    # De-duplicate (the scaling study's 1x point is the matched study's run).
    seen, unique = set(), []
    for r in runs:
        key = (r[1], r[2], r[3], r[4])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def run_dir(args: argparse.Namespace, data: str, family: str, size: str, seed: int) -> Path:
    return Path(args.runs_dir) / data / f"{family}_{size}" / f"seed{seed}"


# -- report --------------------------------------------------------------------------------------


def fit_power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``y ≈ a·x^(-b) + c`` with ``0 <= c < min(y)``: for each c on a grid, least squares of
    ``log(y - c)`` on ``log x`` gives a and b; keep the c with the smallest squared error in y."""
    best = (math.nan, math.nan, math.nan, math.inf)
    for c in np.linspace(0.0, float(y.min()) * 0.999, 200):
        slope, intercept = np.polyfit(np.log(x), np.log(y - c), 1)
        a, b = math.exp(intercept), -slope
        sse = float(((a * x ** (-b) + c - y) ** 2).sum())
        if sse < best[3]:
            best = (a, b, float(c), sse)
    return best[0], best[1], best[2]


def paired(results: dict, data: str, a: str, b: str) -> str:
    """``A − B: mean Δ (A wins k/n seeds)`` over the seeds both have."""
    ra = {m["seed"]: m["test/auc"] for m in results.get((data, a, "1x"), [])}
    rb = {m["seed"]: m["test/auc"] for m in results.get((data, b, "1x"), [])}
    seeds = sorted(set(ra) & set(rb))
    if not seeds:
        return f"{LABEL[a]} − {LABEL[b]}: –"
    d = [ra[k] - rb[k] for k in seeds]
    return f"{LABEL[a]} − {LABEL[b]} {np.mean(d):+.4f} (wins {sum(x > 0 for x in d)}/{len(d)})"


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    arr = np.array(values)
    return f"{arr.mean():.4f} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.4f}"


def report(args: argparse.Namespace, runs: list, elapsed: float | None) -> None:
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for _study, data, family, size, seed, _o in runs:
        f = run_dir(args, data, family, size, seed) / "metrics.json"
        if f.is_file():
            results[(data, family, size)].append(json.loads(f.read_text()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Token mixers and APG — results",
        "",
        "Generated by `scripts/results_mixers.py` (do not edit by hand). Command:",
        "",
        "```",
        f".venv/bin/python scripts/results_mixers.py {' '.join(a for a in sys.argv[1:] if a != '--report-only')}".rstrip(),
        "```",
        "",
        f"Settings: {args.seeds} seeds (scaling study: {args.scaling_seeds}); "
        + (
            f"**reduced data**: {args.num_train} training rows, {args.num_eval} validation and test rows "
            if args.num_train
            else "the dataset configs' row counts "
        )
        + f"per dataset, {args.epochs} epoch(s), "
        + (f"batch size {args.batch_size}, " if args.batch_size else "the data configs' batch sizes, ")
        + "CPU. "
        "The full-size settings are `--num-train 0 --batch-size 0 --epochs 3` (hours on 2 cores). "
        f"Mixers: T = {TOKENS} tokens, {LAYERS} blocks, FFN hidden = 2·D, SwiGLU; UniMixer-style "
        "models anneal the Sinkhorn temperature 1.0 → 0.05 (`callbacks=mixer`). DCNv2 reference: "
        f"`{' '.join(DCN_REF)}`. Embedding tables are identical across families (full, D = 16). "
        "Mean ± standard deviation over seeds. Gap = oracle AUC − test AUC (the oracle uses the "
        "true click probabilities of the synthetic world).",
        "",
    ]
    timing = Path(args.runs_dir) / "timing.json"
    if elapsed is not None:
        timing.write_text(json.dumps({"wall_s": elapsed, "workers": args.workers, "runs": len(runs)}))
    if timing.is_file():
        t = json.loads(timing.read_text())
        lines += [
            f"Wall time of the last invocation that ran: {t['wall_s'] / 60:.1f} min for {t['runs']} planned runs "
            f"({t['workers']} worker processes, {args.threads} torch thread each) on a shared, busy 2-core machine.",
            "",
        ]
    lines += ["## AUC at matched dense parameters", ""]
    for data in DATASETS:
        lines += [
            f"### data={data}",
            "",
            "| family | width D | dense params | FLOPs/example | test AUC | gap to oracle | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for family in FAMILIES:
            ms = results.get((data, family, "1x"), [])
            if not ms:
                lines.append(f"| {LABEL[family]} | – | – | – | not run | – | 0 |")
                continue
            width = "–" if family == "dcnv2" else str(_width_of(ms[0]))
            lines.append(
                f"| {LABEL[family]} | {width} | {int(ms[0]['params/dense']):,} | {int(ms[0]['flops/per_example']):,} | "
                f"{mean_std([m['test/auc'] for m in ms])} | "
                f"{mean_std([m['test/oracle_auc'] - m['test/auc'] for m in ms])} | {len(ms)} |"
            )
        means = {
            f: np.mean([m["test/auc"] for m in results[(data, f, "1x")]])
            for f in FAMILIES
            if results.get((data, f, "1x"))
        }
        order = " > ".join(LABEL[f] for f in sorted(means, key=means.get, reverse=True))
        lines += ["", f"Ranking by mean test AUC: {order}."]
        pairs = [("unimixer", "rankmixer"), ("rankmixer", "fm_block"), ("unimixer_lite", "unimixer")]
        pairs += [(f, "dcnv2") for f in MIXERS]
        lines += [
            "",
            "Paired by seed (same data, A − B in test AUC): "
            + "; ".join(paired(results, data, a, b) for a, b in pairs)
            + ".",
        ]
        lines.append("")
    # scaling
    lines += [
        "## AUC against dense parameters (data=synthetic)",
        "",
        "Power law fitted to the gap to the oracle: `gap(N) = a·N^(-b) + c` (N = dense parameters; "
        "grid over c, log-scale least squares for a and b; 4 points and 3 parameters per family, so "
        "the exponents are indicative only — no confidence intervals). Every point here is seed 0 "
        "(`--scaling-seeds`), the 1x point included.",
        "",
        "| family | sizes (dense params → test AUC) | a | b (exponent) | c |",
        "|---|---|---|---|---|",
    ]
    curves = {}
    for family in MIXERS:
        pts = []
        for scale in args.scales:
            ms = [
                m
                for m in results.get(("synthetic", family, f"{scale:g}x"), [])
                if m["seed"] < args.scaling_seeds
            ]
            if ms:
                pts.append(
                    (
                        float(ms[0]["params/dense"]),
                        float(np.mean([m["test/auc"] for m in ms])),
                        float(np.mean([m["test/oracle_auc"] - m["test/auc"] for m in ms])),
                    )
                )
        pts.sort()
        if len(pts) >= 3 and all(p[2] > 0 for p in pts):
            a, b, c = fit_power_law(np.array([p[0] for p in pts]), np.array([p[2] for p in pts]))
            fit = f"{a:.3g} | {b:.3f} | {c:.4f}"
        else:
            a = b = c = math.nan
            fit = "– | – | –"
        curves[family] = (pts, (a, b, c))
        sizes = ", ".join(f"{int(n):,} → {auc:.4f}" for n, auc, _ in pts) or "not run"
        lines.append(f"| {LABEL[family]} | {sizes} | {fit} |")
    png = out.with_name("mixers_scaling.png")
    if _plot(curves, png):
        lines += ["", f"![gap to oracle against dense parameters]({png.name})", ""]
    # APG
    lines += [
        "",
        "## APG against its static twin (DNN, hidden [128, 64], data=synthetic)",
        "",
        "APG: rank K = 16, over-parameterisation P = 64 (merged for serving), hyper-network hidden 32. "
        "FLOPs/example is the serving (merged) cost; APG's layers are rank-K factorised, so it is close to "
        "but not equal to the static twin's (read the column). Training parameters include the unmerged "
        "factors and the hyper-networks.",
        "",
        "| model | dense params (training) | FLOPs/example | test AUC | gap to oracle | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("dnn", "dnn_apg_self", "dnn_apg_group"):
        ms = results.get(("synthetic", name, "1x"), [])
        if not ms:
            lines.append(f"| {LABEL[name]} | – | – | not run | – | 0 |")
            continue
        lines.append(
            f"| {LABEL[name]} | {int(ms[0]['params/dense']):,} | {int(ms[0]['flops/per_example']):,} | "
            f"{mean_std([m['test/auc'] for m in ms])} | {mean_std([m['test/oracle_auc'] - m['test/auc'] for m in ms])} | {len(ms)} |"
        )
    lines += [
        "",
        "Paired by seed: "
        + "; ".join(paired(results, "synthetic", a, "dnn") for a in ("dnn_apg_self", "dnn_apg_group"))
        + ".",
    ]
    lines += [
        "",
        "## How far UniMixer's mixing moved",
        "",
        f"Mixing logits at {LOGIT_LR_SCALE:g}× the shared learning rate (`model.logit_lr_scale`). "
        "`moved` = mean |Δ logit| of the global mixing G from its initialisation, in units of the "
        "initial logits' sd; `changed` = fraction of blocks whose argmax destination changed (mean "
        "over layers, then over seeds). Near 0 means the learned mixing stayed a random fixed mixing.",
        "",
        "| data | size | moved | changed | seeds |",
        "|---|---|---|---|---|",
    ]
    for (data, family, size), ms in sorted(results.items()):
        if family != "unimixer":
            continue
        mv = [x for x in (mixing_movement(m) for m in ms) if x]
        if mv:
            lines.append(
                f"| {data} | {size} | {mean_std([x['moved'] for x in mv])} | "
                f"{mean_std([x['destinations_changed'] for x in mv])} | {len(mv)} |"
            )
        else:
            lines.append(
                f"| {data} | {size} | not recorded (no checkpoint with the initial logits) | – | 0 |"
            )
    runs_dir = Path(args.runs_dir).resolve()
    shown = runs_dir.relative_to(REPO) if runs_dir.is_relative_to(REPO) else runs_dir
    lines += [
        "",
        f"Raw `metrics.json` files: `{shown}/<data>/<family>_<size>/seed<k>/` (the page can be rebuilt "
        "from them with `--report-only`). A seed sets both the generated data and the initialisation, "
        "so the gap to the oracle is the fairer comparison across seeds.",
        "",
    ]
    serving = out.with_name("mixers_serving.md")  # measured by scripts/bench_serve.py --write-docs
    if serving.is_file():
        lines += [serving.read_text().rstrip("\n"), ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


def _width_of(metrics: dict[str, Any]) -> int | str:
    cfg = Path(metrics.get("output_dir", "")) / "config.yaml"
    if cfg.is_file():
        for line in cfg.read_text().splitlines():
            if line.startswith("  dim:"):
                return int(line.split(":")[1])
    return "?"


def _plot(curves: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not any(pts for pts, _ in curves.values()):
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for family, (pts, (a, b, c)) in curves.items():
        if not pts:
            continue
        x = np.array([p[0] for p in pts])
        y = np.array([p[2] for p in pts])
        (line,) = ax.plot(
            x, y, "o", label=f"{LABEL[family]} (b={b:.2f})" if not math.isnan(b) else LABEL[family]
        )
        if not math.isnan(b):
            xs = np.geomspace(x.min(), x.max(), 50)
            ax.plot(xs, a * xs ** (-b) + c, "-", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("dense parameters")
    ax.set_ylabel("oracle AUC − test AUC")
    ax.set_title("data=synthetic: gap to the oracle against size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs-dir", default=str(REPO / "runs" / "results_mixers"))
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "mixers.md"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--scaling-seeds", type=int, default=1, help="seeds of the extra scaling sizes")
    p.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--num-train", type=int, default=20000, help="training rows per dataset; 0 = the config's")
    p.add_argument("--num-eval", type=int, default=10000, help="validation and test rows (with --num-train)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--logit-lr-scale",
        type=float,
        default=10.0,
        help="UniMixer: learning-rate multiplier of the mixing logits (model.logit_lr_scale)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="training batch size; 0 = the config's")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--workers", type=int, default=2, help="runs in parallel (processes sharing the plan)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plan", action="store_true", help="print the planned runs and widths, run nothing")
    args = p.parse_args()
    global LOGIT_LR_SCALE
    LOGIT_LR_SCALE = args.logit_lr_scale
    os.environ.setdefault("WANDB_MODE", "offline")

    from hydra import initialize_config_dir

    from recsys_lab.runners.stage import CONFIG_DIR

    start = time.perf_counter()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cache = Path(args.runs_dir) / "widths.json"
        if cache.is_file():
            WIDTH_CACHE.update(json.loads(cache.read_text()))
        runs = plan(args)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(WIDTH_CACHE, indent=1))
        if args.plan:
            for _study, data, family, size, seed, overrides in runs:
                dims = [o for o in overrides if o.startswith(("model.dim=", "model.ffn_hidden="))]
                print(data, family, size, seed, *dims)
            return
        if not args.report_only:
            print(f"{len(runs)} runs planned, {args.workers} worker(s)", flush=True)
            helpers = [
                subprocess.Popen([sys.executable, __file__, "--worker", *sys.argv[1:]])
                for _ in range(0 if args.worker else args.workers - 1)
            ]
            for _study, data, family, size, seed, overrides in runs:
                run_one(run_dir(args, data, family, size, seed), overrides)
            for h in helpers:
                h.wait()
            if args.worker:
                return
    report(args, runs, None if args.report_only else time.perf_counter() - start)


if __name__ == "__main__":
    main()
