"""Run the scaling studies at a reduced size and write one page, ``docs/results/scaling.md`` (+ PNGs).

``python scripts/results_scaling.py`` runs every study of :data:`STUDIES` (``--all``, the default)
at its reduced size and writes one section per study that has finished points; ``--study NAME``
(repeatable) runs only those, and the page still gets a section for every other study already
measured under ``--runs-dir``. Each study keeps its own folder ``<runs-dir>/results_<study>``;
finished points are not re-run (delete the folder to start over). ``--report-only`` trains
nothing and only rebuilds the page from the points already there.

Reductions (each can be changed by a flag; ``--full`` drops them all and runs the studies as their
configs stand, with the full grids):

- tabular studies (``data=synthetic``): ``data.num_train``/``num_val``/``num_test`` and
  ``trainer.max_epochs`` (``--num-train``, ``--num-eval``, ``--epochs``; default per study);
- sequence studies (``data=synthetic_seq``): the small world with fewer users
  (``data.preset=small data.world.num_users=--users``, so the whole validation and test days are
  evaluated and the oracle in ``metrics.json`` is for exactly the rows tested), ``--steps``
  optimiser steps of ``--batch-size`` samples, the batched padded attention kernel (same maths
  as the reference kernel, faster on CPU), and a smaller grid (:data:`STUDIES` ``reduced_grid``;
  ``--full-grid`` keeps the config's grid with the other reductions).

``--full`` writes into ``results_<study>_full`` so that reduced points are never taken for full ones.

Every invocation that trains points adds its wall time to ``<runs-dir>/results_<study>/timing.json``;
each point's own wall time goes to its ``wall.json``; the settings used go to ``settings.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recsys_lab.runners.stage import CONFIG_DIR  # noqa: E402
from recsys_lab.runners.study import run_study  # noqa: E402
from recsys_lab.scaling.fit import PowerLawFit  # noqa: E402

Row = dict[str, Any]


@dataclass(frozen=True)
class StudySpec:
    """How one study is reduced and written up."""

    title: str
    kind: str  # tabular | sequence
    num_train: int = 100_000  # tabular: training rows of the reduced run
    num_eval: int = 50_000  # tabular: validation and test rows each
    epochs: int = 1  # tabular
    steps: int = 100  # sequence: optimiser steps
    # Extra overrides of every point, in the reduced AND the full run (part of the method).
    always: tuple[str, ...] = ()
    # family -> {grid key: values} replacing the config's grid in the reduced run only.
    reduced_grid: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


STUDIES: dict[str, StudySpec] = {
    "dcnv2_width": StudySpec(
        title="DCNv2 over width",
        kind="tabular",
        notes=(
            "`params/dense` includes the cross network (a constant ~80k parameters here), which makes "
            "the fitted exponent against it steep. Read the fit against width growth with that "
            "offset in mind.",
        ),
    ),
    "mixers_params": StudySpec(
        title="UniMixer vs RankMixer vs DCNv2 over parameters",
        kind="tabular",
        num_train=200_000,
        notes=(
            "The study config selects `callbacks=mixer`: it anneals UniMixer's Sinkhorn "
            "temperature 1.0 → 0.05 as METHODS.md specifies and as docs/results/mixers.md ran it, "
            "and leaves models without such mixers (RankMixer, DCNv2) alone.",
            "The mixers' FFN hidden size is fixed at 128 by the study config, so their dense "
            "parameters grow with D through the tokenizer projections, the mixing and the FFN "
            "input/output widths.",
        ),
    ),
    "grab_history": StudySpec(
        title="GRAB over history length",
        kind="sequence",
        reduced_grid={"grab": {"data.max_history": [8, 16, 32, 64, 128]}},
        notes=(
            "Every point gets the same number of steps and samples whatever its history length, "
            "so this compares equal sample budgets (not equal compute), far from convergence.",
            "`flops/*` are counted at K (`model.max_history` defaults to `data.max_history`), "
            "the cap, not the mean history length; users with shorter histories cost less.",
        ),
    ),
    "hstu_grab_compute": StudySpec(
        title="HSTU vs GRAB over training compute",
        kind="sequence",
        reduced_grid={
            "hstu": {"model.dim": [32, 64], "model.num_layers": [1, 2]},
            "grab": {"model.dim": [32, 64], "model.num_layers": [1, 2]},
        },
        notes=(
            "With the same number of steps and batch size for every point, `flops/train` is "
            "`flops/per_example` times a constant (3 · steps · batch), so both fits have the same "
            "exponent: compute grows here only through model size, not through more data.",
        ),
    ),
}


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path, REPO)
    except ValueError:
        return str(path)


def study_settings(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The overrides, reduced grid and flags for study ``name`` under these arguments."""
    spec = STUDIES[name]
    extra = [f"num_threads={args.threads}", *spec.always]
    flags: list[str] = []
    grid = None
    if not args.full:
        if spec.kind == "tabular":
            num_train = args.num_train or spec.num_train
            num_eval = args.num_eval or spec.num_eval
            epochs = args.epochs or spec.epochs
            extra += [
                f"data.num_train={num_train}",
                f"data.num_val={num_eval}",
                f"data.num_test={num_eval}",
                f"trainer.max_epochs={epochs}",
            ]
            if args.num_train and args.num_train != spec.num_train:
                flags.append(f"--num-train {num_train}")
            if args.num_eval and args.num_eval != spec.num_eval:
                flags.append(f"--num-eval {num_eval}")
            if args.epochs and args.epochs != spec.epochs:
                flags.append(f"--epochs {epochs}")
        else:
            steps = args.steps or spec.steps
            extra += [
                "data.preset=small",
                f"data.world.num_users={args.users}",
                f"data.batch_size={args.batch_size}",
                f"data.eval_batch_size={args.eval_batch_size}",
                "trainer.max_epochs=1",
                f"++trainer.max_steps={steps}",
                "model.kernel=padded",
                "callbacks.rich_progress_bar=null",
            ]
            if args.steps and args.steps != spec.steps:
                flags.append(f"--steps {steps}")
            for flag, value, default in (
                ("--users", args.users, 2000),
                ("--batch-size", args.batch_size, 256),
                ("--eval-batch-size", args.eval_batch_size, 2048),
            ):
                if value != default:
                    flags.append(f"{flag} {value}")
        grid = None if args.full_grid else (spec.reduced_grid or None)
        if args.full_grid and spec.reduced_grid:
            flags.append("--full-grid")
    if args.threads != 2:
        flags.append(f"--threads {args.threads}")
    command = "python scripts/results_scaling.py --study " + name + (" --full" if args.full else "")
    command += "".join(f" {f}" for f in flags)
    return {"study": name, "full": bool(args.full), "overrides": extra, "grid": grid, "command": command}


def _with_grid(cfg: DictConfig, grid: dict[str, dict[str, list[Any]]] | None) -> None:
    if not grid:
        return
    with open_dict(cfg):
        for family, keys in grid.items():
            cfg.study.families[family].grid = OmegaConf.create(keys)


def _timed_train() -> Callable[[DictConfig], Any]:
    from recsys_lab.runners.train import run as train

    def timed(cfg: DictConfig) -> Any:
        start = time.time()
        metrics = train(cfg)
        wall = {"wall_s": time.time() - start, "loadavg_1min_end": os.getloadavg()[0]}
        (Path(cfg.paths.output_dir) / "wall.json").write_text(json.dumps(wall))
        return metrics

    return timed


def run_one(name: str, settings: dict[str, Any], out: Path, report_only: bool) -> dict[str, Any]:
    """Run (or only report) one study into ``out``; returns run_study's result."""
    quoted = ",".join(f"'{e}'" for e in settings["overrides"])
    overrides = [f"study={name}", f"out_dir={out}", f"overrides=[{quoted}]"]
    overrides.append("mode=report" if report_only else "mode=run")
    load_start = os.getloadavg()[0]
    start = time.time()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="scaling", overrides=overrides)
        _with_grid(cfg, settings["grid"])
        result = run_study(cfg, train=None if report_only else _timed_train())
    wall = time.time() - start
    out.mkdir(parents=True, exist_ok=True)
    timing_file = out / "timing.json"
    timing = (
        json.loads(timing_file.read_text()) if timing_file.is_file() else {"wall_s": 0.0, "points_trained": 0}
    )
    if result["trained"]:  # wall times of the invocations that trained points add up
        timing["wall_s"] = float(timing["wall_s"]) + wall
        timing["points_trained"] = int(timing["points_trained"]) + len(result["trained"])
        timing.setdefault("loadavg_1min", []).append([round(load_start, 1), round(os.getloadavg()[0], 1)])
        timing_file.write_text(json.dumps(timing))
    settings_file = out / "settings.json"
    if result["trained"] or not settings_file.is_file():
        settings_file.write_text(json.dumps({**settings, "out_dir": _rel(out)}, indent=2))
    result["timing"] = timing
    result["y"] = str(cfg.study.y)
    result["out"] = out
    result["settings"] = json.loads(settings_file.read_text())
    return result


# -- the page ---------------------------------------------------------------------------------


def _fits(result: dict[str, Any], x_key: str) -> dict[str, PowerLawFit | str]:
    return result["fits"].get(x_key, {})


def _b(fit: PowerLawFit | str | None) -> str:
    if isinstance(fit, PowerLawFit):
        return f"b = {fit.b:.3g} [{fit.b_ci[0]:.3g}, {fit.b_ci[1]:.3g}]"
    return f"no fit ({fit})" if fit else "no fit"


def _family_rows(rows: list[Row], family: str, x_key: str, y_key: str) -> list[tuple[float, float]]:
    pts = [(r.get(x_key), r.get(y_key)) for r in rows if r["family"] == family]
    return sorted((float(x), float(y)) for x, y in pts if x is not None and y is not None)


def _span(rows: list[Row], family: str, x_key: str, y_key: str) -> str:
    pts = _family_rows(rows, family, x_key, y_key)
    if len(pts) < 2 or pts[0][0] <= 0:
        return ""
    return f"{len(pts)} points over {math.log10(pts[-1][0] / pts[0][0]):.2f} decades of `{x_key}`."


def _claims_mixers(result: dict[str, Any], y: str) -> list[str]:
    fits = _fits(result, "params/dense")
    uni, rank = fits.get("unimixer"), fits.get("rankmixer")
    lines = [
        "Paper claim (METHODS.md, UniMixer): at equal parameters UniMixer ≥ RankMixer, and UniMixer's "
        "quality-vs-parameters curve has the steeper power-law exponent.",
        f"- Fitted exponents against `params/dense`: UniMixer {_b(uni)}, RankMixer {_b(rank)}, "
        f"DCNv2 {_b(fits.get('dcnv2'))}.",
    ]
    if isinstance(uni, PowerLawFit) and isinstance(rank, PowerLawFit):
        steeper = uni.b > rank.b
        overlap = uni.b_ci[0] <= rank.b_ci[1] and rank.b_ci[0] <= uni.b_ci[1]
        verdict = (
            "UniMixer's fitted exponent is steeper"
            if steeper
            else "UniMixer's fitted exponent is NOT steeper"
        )
        verdict += " (the 95% intervals overlap, so the tiny run cannot tell them apart)." if overlap else "."
        lines.append(f"- **Steeper exponent: {verdict}**")
    else:
        lines.append("- **Steeper exponent: not tested** (a family has no fit).")
    rows = result["rows"]
    u, r = (
        _family_rows(rows, "unimixer", "params/dense", y),
        _family_rows(rows, "rankmixer", "params/dense", y),
    )
    if u and r and len(u) == len(r):
        wins = sum(a[1] <= b[1] for a, b in zip(u, r, strict=True))
        lines.append(
            f"- **Equal parameters: UniMixer's {y} is lower than or equal to RankMixer's at {wins} of {len(u)} "
            "widths** (same D; their dense parameter counts differ by a few per cent — see the table). "
            + (
                "The claim UniMixer ≥ RankMixer holds here."
                if wins == len(u)
                else "The claim does not hold at every width here."
            )
        )
    return lines


def _claims_history(result: dict[str, Any], y: str) -> list[str]:
    pts = _family_rows(result["rows"], "grab", "data/max_history", y)
    lines = [
        "Paper claim (METHODS.md, GRAB): quality rises monotonically, roughly linearly in log sequence "
        "length, as longer histories are used."
    ]
    if len(pts) < 2:
        return [*lines, "- Not tested: fewer than 2 finished points."]
    falls = sum(b[1] < a[1] for a, b in itertools.pairwise(pts))
    monotone = falls == len(pts) - 1
    first, last = pts[0], pts[-1]
    n = len(pts)
    lx = [math.log2(x) for x, _ in pts]
    mx, my = sum(lx) / n, sum(v for _, v in pts) / n
    slope = sum((a - mx) * (v - my) for a, (_, v) in zip(lx, pts, strict=True)) / sum(
        (a - mx) ** 2 for a in lx
    )
    lines += [
        f"- {y} goes from {first[1]:.4f} at K={first[0]:.0f} to {last[1]:.4f} at K={last[0]:.0f}; it falls at "
        f"{falls} of {len(pts) - 1} doublings; least-squares slope {slope:+.4f} per doubling of K.",
        "- test/auc by K: "
        + ", ".join(
            f"{x:.0f}: {a:.4f}"
            for x, a in _family_rows(result["rows"], "grab", "data/max_history", "test/auc")
        )
        + ".",
        f"- Power-law fit against K: {_b(_fits(result, 'data/max_history').get('grab'))}.",
        "- **Loss falls with history: "
        + (
            "yes, monotonically at every doubling."
            if monotone
            else (
                "on the whole (negative slope) but not monotonically."
                if slope < 0
                else "no: the loss does not fall with K here."
            )
        )
        + "**",
    ]
    return lines


def _claims_compute(result: dict[str, Any], y: str) -> list[str]:
    fits = _fits(result, "flops/train")
    rows = result["rows"]
    lines = [
        "Paper claims: HSTU's loss follows a power law in training compute (HSTU paper); GRAB (CamA, "
        "every-event loss) is the stronger sequence ranker (METHODS.md).",
        f"- Fitted exponents against `flops/train`: HSTU {_b(fits.get('hstu'))}, GRAB {_b(fits.get('grab'))}.",
    ]
    for family in ("hstu", "grab"):
        pts = _family_rows(rows, family, "flops/train", y)
        if len(pts) >= 2:
            best = min(pts, key=lambda p: p[1])
            lines.append(
                f"- {family.upper()}: {y} from {pts[0][1]:.4f} at the least compute ({pts[0][0]:.3g} FLOPs) to "
                f"{pts[-1][1]:.4f} at the most ({pts[-1][0]:.3g}); best {best[1]:.4f} at {best[0]:.3g}."
            )
    h = {r["point"].split("__", 1)[1]: r.get(y) for r in rows if r["family"] == "hstu"}
    g = {r["point"].split("__", 1)[1]: r.get(y) for r in rows if r["family"] == "grab"}
    same = [k for k in h if k in g and h[k] is not None and g[k] is not None]
    if same:
        wins = sum(g[k] < h[k] for k in same)
        lines.append(
            f"- **Same width and depth: GRAB's {y} is lower than HSTU's at {wins} of {len(same)} (D, layers) "
            "points.** (GRAB also learns from every history event's click, which HSTU's CTR task does not.)"
        )
    hstu_fit = fits.get("hstu")
    lines.append(
        "- **Loss as a power law of compute (HSTU): "
        + (
            "a decreasing power law fits (b > 0), "
            + (
                "its interval excludes 0."
                if hstu_fit.b_ci[0] > 0
                else "but its interval includes 0: not shown."
            )
            if isinstance(hstu_fit, PowerLawFit) and hstu_fit.b > 0
            else "not reproduced (no decreasing fit)."
        )
        + f"** {_span(rows, 'hstu', 'flops/train', y)} The paper's law spans several orders of magnitude "
        "of compute with enough data per model; this cannot test it, only exercise the machinery."
    )
    return lines


CLAIMS: dict[str, Callable[[dict[str, Any], str], list[str]]] = {
    "mixers_params": _claims_mixers,
    "grab_history": _claims_history,
    "hstu_grab_compute": _claims_compute,
}


def _settings_line(name: str, settings: dict[str, Any]) -> str:
    spec = STUDIES[name]
    if settings["full"]:
        return "the study's own sizes and grid (no reduction)."
    o = {k: v for k, v in (s.split("=", 1) for s in settings["overrides"])}
    if spec.kind == "tabular":
        text = (
            f"**reduced** for this 2-core shared CPU: data=synthetic with {int(o['data.num_train']):,} training "
            f"rows and {int(o['data.num_val']):,} validation/test rows, {o['trainer.max_epochs']} epoch(s), "
            f"batch 1024, seed 42, {o['num_threads']} threads."
        )
    else:
        steps = int(o["++trainer.max_steps"])
        batch = int(o["data.batch_size"])
        text = (
            f"**reduced** for this 2-core shared CPU: data=synthetic_seq on the small world with "
            f"{int(o['data.world.num_users']):,} users instead of 10,000 (21 days; the whole validation "
            f"day and test day are evaluated, and the oracle in `metrics.json` is for exactly those rows), "
            f"{steps} optimiser steps of {batch} samples ({steps * batch:,} training samples, a fraction of "
            f"one epoch), eval batch {o['data.eval_batch_size']}, `model.kernel=padded`, seed 42, "
            f"{o['num_threads']} threads."
        )
    if settings.get("grid"):
        grid = "; ".join(
            f"{fam}: " + ", ".join(f"`{k}` ∈ {json.dumps(v)}" for k, v in keys.items())
            for fam, keys in settings["grid"].items()
        )
        text += f" **Reduced grid** ({grid}) instead of the config's."
    elif spec.reduced_grid:
        text += " The config's full grid (`--full-grid`)."
    return (
        text
        + f" Full size: `python scripts/results_scaling.py --study {name} --full` (into `results_{name}_full/`)."
    )


def section(name: str, result: dict[str, Any], page_dir: Path, runs_dir: Path) -> list[str]:
    spec = STUDIES[name]
    settings, timing = result["settings"], result["timing"]
    out = result["out"]
    for png in result["plots"]:
        shutil.copyfile(out / png, page_dir / f"scaling_{name}_{png}")
    table = (out / "table.md").read_text().split("\n", 2)[2].rstrip("\n")  # without its title line
    table = table.replace("\n## Fits", "\n### Fits")
    for png in result["plots"]:
        table = table.replace(f"]({png})", f"](scaling_{name}_{png})")
    quoted = ",".join(f"'{e}'" for e in settings["overrides"])
    loads = timing.get("loadavg_1min")
    load_text = (
        "1-minute load average at start → end of each invocation: "
        + ", ".join(f"{a} → {b}" for a, b in loads)
        if loads
        else "other jobs kept its load average near 15, so this is several times an idle machine's time"
    )
    walls = []
    for row in result["rows"]:  # in the study's order
        wall_file = out / "points" / row["point"] / "wall.json"
        if wall_file.is_file():
            label = row["point"].split("__seed-")[0].replace("__", " ")
            walls.append(f"{label} {json.loads(wall_file.read_text())['wall_s']:.0f} s")
    lines = [
        f"## {spec.title} (`{name}`)",
        "",
        f"- Command: `{settings['command']}` (equivalently `python -m recsys_lab.scaling study={name} "
        f'out_dir={settings.get("out_dir", _rel(out))} "overrides=[{quoted}]"`'
        + (" with the reduced grid set on the study's families" if settings.get("grid") else "")
        + ").",
        f"- Study config: `conf/study/{name}.yaml` (model and data as listed there).",
        "- Settings: " + _settings_line(name, settings),
        f"- Wall time: {timing['wall_s']:.0f} s to train {timing['points_trained']} point(s), one at a time, "
        f"on the shared 2-core machine ({load_text}). Finished points are skipped on re-runs.",
    ]
    if walls:
        lines.append("- Per point (training + validation + test, in-process): " + "; ".join(walls) + ".")
    lines += [f"- {n}" for n in spec.notes]
    claims = CLAIMS.get(name)
    if claims and result["rows"]:
        lines += ["", "**What the tiny run does and does not reproduce.**", ""]
        lines += claims(result, str(result.get("y", "test/logloss")))
    lines += ["", table, ""]
    return lines


def write_page(page: Path, results: dict[str, dict[str, Any]], runs_dir: Path) -> None:
    page.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Scaling studies at a tiny scale",
        "",
        "Generated by `scripts/results_scaling.py` from the points' `metrics.json`; do not edit by hand. "
        "The studies and their machinery: [docs/scaling.md](../scaling.md).",
        "",
        "- Fit: `L(x) = a·x^(−b) + c` by Levenberg-Marquardt on (log a, b, c); 95% intervals from the "
        "Jacobian covariance with Student's t (`recsys_lab/scaling/fit.py`). With one seed per point "
        "and a fraction of the data, the intervals only reflect the scatter of the points around the "
        "curve, not seed-to-seed variation. Read the fits as a demonstration of the machinery at a "
        "tiny scale, not as measured exponents of the models.",
        "- `test/excess_logloss` = test LogLoss − the oracle's (the synthetic data's true click "
        "probabilities) on the same rows.",
        "",
    ]
    for name in STUDIES:
        if name in results:
            lines += section(name, results[name], page.parent, runs_dir)
    missing = [n for n in STUDIES if n not in results]
    if missing:
        lines += ["Not run yet: " + ", ".join(f"`{n}`" for n in missing) + ".", ""]
    page.write_text("\n".join(lines).rstrip("\n") + "\n")


def _measured_dir(runs_dir: Path, name: str) -> Path | None:
    """The folder of a study measured before (reduced or ``--full``; the latest run's if both)."""
    dirs = [runs_dir / f"results_{name}{suffix}" for suffix in ("", "_full")]
    dirs = [d for d in dirs if (d / "points").is_dir()]
    if not dirs:
        return None
    return max(
        dirs, key=lambda d: (d / "settings.json").stat().st_mtime if (d / "settings.json").is_file() else 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", action="append", choices=list(STUDIES), help="repeatable; default --all")
    parser.add_argument("--all", action="store_true", help="every study (the default without --study)")
    parser.add_argument(
        "--runs-dir", default=str(REPO / "runs" / "studies"), help="results_<study>/ under it"
    )
    parser.add_argument("--page", default=str(REPO / "docs" / "results" / "scaling.md"))
    parser.add_argument("--num-train", type=int, default=0, help="tabular: training rows (0 = the study's)")
    parser.add_argument("--num-eval", type=int, default=0, help="tabular: validation and test rows each")
    parser.add_argument("--epochs", type=int, default=0, help="tabular: epochs (0 = the study's)")
    parser.add_argument("--steps", type=int, default=0, help="sequence: optimiser steps (0 = the study's)")
    parser.add_argument("--users", type=int, default=2000, help="sequence: users of the small world")
    parser.add_argument("--batch-size", type=int, default=256, help="sequence: training batch")
    parser.add_argument("--eval-batch-size", type=int, default=2048, help="sequence: eval batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="the studies' own sizes and grids (no reduction)")
    parser.add_argument(
        "--full-grid", action="store_true", help="the configs' grids with the other reductions kept"
    )
    parser.add_argument("--report-only", action="store_true", help="train nothing; rebuild the page")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")

    runs_dir = Path(args.runs_dir).resolve()
    selected = list(STUDIES) if args.all or not args.study else list(dict.fromkeys(args.study))
    results: dict[str, dict[str, Any]] = {}
    for name in STUDIES:
        out = runs_dir / (f"results_{name}" + ("_full" if args.full else ""))
        if name in selected:
            start = time.time()
            settings = study_settings(name, args)
            if args.report_only and (out / "settings.json").is_file():  # report what was measured
                settings = json.loads((out / "settings.json").read_text())
            results[name] = run_one(name, settings, out, args.report_only)
            print(
                f"[results_scaling] {name}: {len(results[name]['rows'])} points, {time.time() - start:.0f} s"
            )
        elif measured := _measured_dir(runs_dir, name):  # measured before: keep its section
            out = measured
            settings_file = out / "settings.json"
            settings = (
                json.loads(settings_file.read_text())
                if settings_file.is_file()
                else study_settings(name, args)
            )
            results[name] = run_one(name, settings, out, report_only=True)
        if name in results and not results[name]["rows"]:
            del results[name]
    write_page(Path(args.page), results, runs_dir)
    print(f"wrote {args.page} ({', '.join(results) or 'no studies'})")


if __name__ == "__main__":
    main()
