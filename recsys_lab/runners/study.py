"""``python -m recsys_lab.scaling study=<name> [mode=run|report|commands] [overrides=[...]]``.

Scaling studies: a grid of training runs, their ``metrics.json`` collected, power laws fitted.

A study (``conf/study/<name>.yaml``) names model *families*; each family has the overrides that
select it and a grid (``key: [values]``, cartesian product) over width, depth, history length or
data size. Every point of the grid is one ``recsys_lab.train`` run in
``<out_dir>/points/<point id>/``. A point is finished iff its ``metrics.json`` exists, so a study
that is run again trains only the missing points (an interrupted study resumes).

The report reads every finished point, derives the x axes (parameters, FLOPs, training compute,
history length), fits ``L(x) = a·x^(−b) + c`` per family (:mod:`recsys_lab.scaling.fit`), and
writes ``table.md``, ``table.csv``, ``fits.csv`` and one log-log PNG per x axis.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from omegaconf import DictConfig, ListConfig, OmegaConf

from recsys_lab.data.datamodule import train_batch_size
from recsys_lab.runners.stage import CONFIG_DIR, apply_resume_argv, route_framework_logs, run_lock
from recsys_lab.scaling.fit import PowerLawFit, fit_power_law

Row = dict[str, Any]
TRAINING_FLOPS_PER_FORWARD = 3  # forward + backward ≈ 3 forwards (backward = 2 matmuls per matmul)


@dataclass(frozen=True)
class Point:
    """One run of a study: ``family``, the overrides that make it, its readable id, and the hash of
    its whole composed train config (all overrides included; see :func:`fingerprinted`)."""

    family: str
    overrides: tuple[str, ...]
    point_id: str
    config_hash: str = ""

    @property
    def dir_name(self) -> str:
        """The point's folder: ``<id>-<config hash>``, so a point trained with other overrides (or
        other config files) is never mistaken for this one."""
        return f"{self.point_id}-{self.config_hash}" if self.config_hash else self.point_id


def _value_str(v: Any) -> str:
    if isinstance(v, (ListConfig, list, tuple)):
        return "[" + ",".join(_value_str(x) for x in v) + "]"
    if v is None:
        return "null"
    return str(v)


def _slug(family: str, overrides: Iterable[str]) -> str:
    parts = [family]
    for o in overrides:
        key, _, value = o.partition("=")
        value = value.replace("[", "").replace("]", "").replace(" ", "").replace(",", "x")  # [64,32] -> 64x32
        parts.append(f"{key.split('.')[-1]}-{value}")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts)).strip("_")
    if len(slug) > 100:
        digest = hashlib.sha1("|".join([family, *overrides]).encode()).hexdigest()[:8]
        slug = f"{slug[:90]}_{digest}"
    return slug


def points(study: DictConfig) -> list[Point]:
    """Every point of the study: families in order, then the grid's cartesian product, then seeds."""
    if not study.get("families"):
        raise ValueError(
            f"study {study.get('name')!r} has no families: add study.families.<name>.overrides/grid"
        )
    seeds = list(study.get("seeds") or [None])
    out: list[Point] = []
    for family, spec in study.families.items():
        unknown = set(spec) - {"overrides", "grid"}
        if unknown:
            raise ValueError(
                f"study {study.name}: family {family} has unknown keys {sorted(unknown)}; "
                "a family has only `overrides` (a list) and `grid` (key: [values])"
            )
        grid = spec.get("grid") or {}
        keys = list(grid)
        for key in keys:
            if not isinstance(grid[key], ListConfig) or len(grid[key]) == 0:
                raise ValueError(
                    f"study {study.name}: grid {family}.{key} must be a non-empty list of values"
                )
        for combo in itertools.product(*(grid[k] for k in keys)):
            grid_overrides = tuple(f"{k}={_value_str(v)}" for k, v in zip(keys, combo, strict=True))
            for seed in seeds:
                seed_override = () if seed is None else (f"seed={seed}",)
                ident = _slug(family, grid_overrides + seed_override)
                overrides = (
                    *study.get("overrides", []),
                    *spec.get("overrides", []),
                    *grid_overrides,
                    *seed_override,
                )
                out.append(Point(str(family), tuple(overrides), ident))
    ids = [p.point_id for p in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"study {study.name}: two points share an id (repeated grid values?): {ids}")
    return out


def config_hash(point: Point, extra: Iterable[str] = ()) -> str:
    """12 hex digits of SHA-256 over the point's resolved train config (needs an initialised Hydra).
    The output folder is replaced by a placeholder, so the hash depends on what is trained only."""
    cfg = compose(config_name="train", overrides=[*point.overrides, *extra, "paths.output_dir=POINT_DIR"])
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:12]


def fingerprinted(study: DictConfig, extra: Iterable[str] = ()) -> list[Point]:
    """:func:`points` with each point's :func:`config_hash` filled in (needs an initialised Hydra)."""
    extra = tuple(extra)
    return [replace(p, config_hash=config_hash(p, extra)) for p in points(study)]


def point_dir(out_dir: Path, point: Point) -> Path:
    return out_dir / "points" / point.dir_name


def is_finished(out_dir: Path, point: Point) -> bool:
    """A point is finished iff its ``metrics.json`` exists (it is written last, atomically)."""
    return (point_dir(out_dir, point) / "metrics.json").is_file()


def compose_point(point: Point, out_dir: Path, extra: Iterable[str] = ()) -> DictConfig:
    """The point's train config (needs an initialised Hydra, e.g. inside the scaling entry)."""
    overrides = [*point.overrides, *extra, f"paths.output_dir={point_dir(out_dir, point).resolve()}"]
    return compose(config_name="train", overrides=overrides)


def point_command(point: Point, out_dir: Path, extra: Iterable[str] = ()) -> str:
    """A shell command that trains the point on its own (for a cluster or a parallel launcher)."""
    quoted = [f"'{o}'" for o in (*point.overrides, *extra)]
    return " ".join(
        ["python -m recsys_lab.train", *quoted, f"hydra.run.dir={point_dir(out_dir, point).resolve()}"]
    )


def run_points(
    study: DictConfig,
    out_dir: Path,
    extra: Iterable[str] = (),
    train: Callable[[DictConfig], Any] | None = None,
) -> list[Point]:
    """Train every unfinished point in order; returns the points trained by this call."""
    if train is None:
        from recsys_lab.runners.train import run as train  # Lightning is imported only to train

    extra = tuple(extra)
    trained: list[Point] = []
    todo = [p for p in fingerprinted(study, extra) if not is_finished(out_dir, p)]
    for i, point in enumerate(todo):
        print(f"[study {study.name}] point {i + 1}/{len(todo)}: {point.dir_name}", flush=True)
        train(compose_point(point, out_dir, extra))
        trained.append(point)
    return trained


# -- collecting -----------------------------------------------------------------------------


def _derived(metrics: Row, config: DictConfig | None) -> Row:
    """x axes every study can use, computed from a run's metrics and resolved config."""
    row: Row = {}
    emb, dense = metrics.get("params/embedding"), metrics.get("params/dense")
    if emb is not None and dense is not None:
        row["params/total"] = emb + dense
    if "test/logloss" in metrics and "test/oracle_logloss" in metrics:
        row["test/excess_logloss"] = metrics["test/logloss"] - metrics["test/oracle_logloss"]
    if config is not None:
        batch_size = OmegaConf.select(config, "data.batch_size")
        if batch_size:  # the batches the run trained on (data.size=tiny|fast_dev_run caps them)
            batch_size = train_batch_size(
                int(batch_size), OmegaConf.select(config, "data.size", default="full")
            )
        if batch_size and "global_step" in metrics:
            world = int(OmegaConf.select(config, "trainer.devices", default=1) or 1)
            world *= int(OmegaConf.select(config, "trainer.num_nodes", default=1) or 1)
            row["data/train_examples"] = int(metrics["global_step"]) * int(batch_size) * max(world, 1)
            if "flops/per_example" in metrics:
                row["flops/train"] = (
                    TRAINING_FLOPS_PER_FORWARD
                    * float(metrics["flops/per_example"])
                    * row["data/train_examples"]
                )
        history = OmegaConf.select(config, "data.max_history")
        if history is not None:
            row["data/max_history"] = int(history)
    return row


def collect(study: DictConfig, out_dir: Path, extra: Iterable[str] = ()) -> tuple[list[Row], list[Point]]:
    """Rows of the finished points (metrics + derived axes + family, point) and the pending points:
    only points whose folder matches the config the study composes now (with ``extra``)."""
    rows: list[Row] = []
    pending: list[Point] = []
    for point in fingerprinted(study, extra):
        run_dir = point_dir(out_dir, point)
        metrics_file = run_dir / "metrics.json"
        if not metrics_file.is_file():
            pending.append(point)
            continue
        metrics = json.loads(metrics_file.read_text())
        config_file = run_dir / "config.yaml"
        config = OmegaConf.load(config_file) if config_file.is_file() else None
        row: Row = {"family": point.family, "point": point.dir_name, **metrics}
        row.update(_derived(metrics, config))  # type: ignore[arg-type]
        for key in study.get("config_columns", []) or []:
            row[f"config:{key}"] = None if config is None else _value_str(OmegaConf.select(config, key))
        rows.append(row)
    return rows, pending


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def fit_families(rows: list[Row], x_key: str, y_key: str) -> dict[str, PowerLawFit | str]:
    """A fit per family, or the reason there is none (too few points, a failed fit)."""
    out: dict[str, PowerLawFit | str] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        pts = [(r[x_key], r[y_key]) for r in rows if r["family"] == family]
        pts = [(x, y) for x, y in pts if _finite(x) and _finite(y) and x > 0]
        if len({x for x, _ in pts}) < 3:
            out[family] = f"{len(pts)} point(s): a fit needs 3 distinct x values"
            continue
        try:
            out[family] = fit_power_law([x for x, _ in pts], [y for _, y in pts])
        except (ValueError, FloatingPointError, ArithmeticError) as err:
            out[family] = f"fit failed: {err}"
    return out


# -- reporting ------------------------------------------------------------------------------

TABLE_COLUMNS = (
    "family",
    "point",
    "params/embedding",
    "params/dense",
    "params/total",
    "flops/per_example",
    "flops/train",
    "data/max_history",
    "val/auc",
    "test/auc",
    "test/logloss",
    "test/excess_logloss",
    "test/gauc",
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        return f"{v:.4g}" if abs(v) >= 1e4 or abs(v) < 1e-3 else f"{v:.4f}"
    return "" if v is None else str(v)


def _columns(study: DictConfig, rows: list[Row]) -> list[str]:
    wanted = [*TABLE_COLUMNS, *(f"config:{k}" for k in study.get("config_columns", []) or [])]
    for key in (*study.x, study.y):
        if key not in wanted:
            wanted.append(key)
    return [c for c in wanted if any(c in r for r in rows)]


def _plot(
    study: DictConfig, rows: list[Row], x_key: str, fits: dict[str, PowerLawFit | str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, family in enumerate(dict.fromkeys(r["family"] for r in rows)):
        colour = colours[i % len(colours)]
        pts = [(r.get(x_key), r.get(study.y)) for r in rows if r["family"] == family]
        pts = sorted((x, y) for x, y in pts if _finite(x) and _finite(y) and x > 0 and y > 0)
        if not pts:
            continue
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        fit = fits.get(family)
        label = family
        if isinstance(fit, PowerLawFit):
            grid = np.logspace(np.log10(xs.min()), np.log10(xs.max()), 100)
            curve = fit(grid)
            keep = curve > 0
            ax.plot(grid[keep], curve[keep], "-", color=colour, alpha=0.8)
            label = f"{family}: b={fit.b:.2f}, c={fit.c:.4g}"
        ax.plot(xs, ys, "o", color=colour, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # ranges under a decade get labelled minor ticks, which collide unless turned and shrunk
    ax.tick_params(axis="both", which="both", labelsize=7)
    ax.tick_params(axis="x", which="both", labelrotation=35)
    ax.set_xlabel(x_key)
    ax.set_ylabel(study.y)
    ax.set_title(f"{study.name}: {study.y} vs {x_key}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _file_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")


def report(study: DictConfig, out_dir: Path, plots: bool = True, extra: Iterable[str] = ()) -> dict[str, Any]:
    """Collect, fit and write ``table.md``, ``table.csv``, ``fits.csv`` and the PNGs into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = tuple(extra)
    rows, pending = collect(study, out_dir, extra)
    used = {str(r["point"]) for r in rows}
    others = sorted(
        d.name
        for d in (out_dir / "points").glob("*")
        if d.is_dir() and d.name not in used and (d / "metrics.json").is_file()
    )
    columns = _columns(study, rows)
    with (out_dir / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    all_fits: dict[str, dict[str, PowerLawFit | str]] = {}
    fit_rows: list[Row] = []
    pngs: list[str] = []
    for x_key in study.x:
        fits = fit_families(rows, x_key, study.y)
        all_fits[x_key] = fits
        for family, fit in fits.items():
            if isinstance(fit, PowerLawFit):
                fit_rows.append(
                    {
                        "x": x_key,
                        "y": study.y,
                        "family": family,
                        "n": fit.n,
                        "a": fit.a,
                        "a_lo": fit.a_ci[0],
                        "a_hi": fit.a_ci[1],
                        "b": fit.b,
                        "b_lo": fit.b_ci[0],
                        "b_hi": fit.b_ci[1],
                        "c": fit.c,
                        "c_lo": fit.c_ci[0],
                        "c_hi": fit.c_ci[1],
                        "rss": fit.rss,
                    }
                )
            else:
                fit_rows.append({"x": x_key, "y": study.y, "family": family, "note": fit})
        if plots and rows:
            name = f"{_file_key(study.y)}_vs_{_file_key(x_key)}.png"
            _plot(study, rows, x_key, fits, out_dir / name)
            pngs.append(name)
    fit_columns = [
        "x",
        "y",
        "family",
        "n",
        "a",
        "a_lo",
        "a_hi",
        "b",
        "b_lo",
        "b_hi",
        "c",
        "c_lo",
        "c_hi",
        "rss",
        "note",
    ]
    with (out_dir / "fits.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fit_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(fit_rows)

    lines = [f"# Study `{study.name}`", ""]
    if study.get("description"):
        lines += [str(study.description).strip(), ""]
    lines += [f"{len(rows)} finished point(s), {len(pending)} pending.", ""]
    lines += [
        "Points are keyed by their whole composed train config (folder `<point>-<config hash>`); "
        f"extra overrides of this report: `{list(extra)}`.",
        "",
    ]
    if others:
        lines += [
            f"Not used: {len(others)} finished point folder(s) trained with other overrides or config "
            "files: " + ", ".join(others),
            "",
        ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    lines += ["", f"## Fits `{study.y} = a·x^(−b) + c` (95% intervals)", ""]
    lines += ["| x | family | a | b | c |", "|---|---|---|---|---|"]
    for x_key, fits in all_fits.items():
        for family, fit in fits.items():
            if isinstance(fit, PowerLawFit):
                a, b, c = (
                    f"{v:.4g} [{lo:.4g}, {hi:.4g}]"
                    for v, (lo, hi) in ((fit.a, fit.a_ci), (fit.b, fit.b_ci), (fit.c, fit.c_ci))
                )
                lines.append(f"| {x_key} | {family} | {a} | {b} | {c} |")
            else:
                lines.append(f"| {x_key} | {family} | {fit} | | |")
    if pending:
        lines += ["", "Pending points: " + ", ".join(p.dir_name for p in pending)]
    if pngs:
        lines += [""] + [f"![{p}]({p})" for p in pngs]
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    return {"rows": rows, "pending": pending, "fits": all_fits, "plots": pngs, "not_used": others}


def run_study(cfg: DictConfig, train: Callable[[DictConfig], Any] | None = None) -> dict[str, Any]:
    """The ``recsys_lab.scaling`` entry's work: ``mode=run`` (train what is missing, then report),
    ``report`` (only report) or ``commands`` (print a train command per unfinished point)."""
    out_dir = Path(cfg.out_dir)
    study = cfg.study
    extra = tuple(cfg.get("overrides") or ())
    mode = cfg.get("mode", "run")
    if mode not in ("run", "report", "commands"):
        raise ValueError(f"mode must be run, report or commands, got {mode!r}")
    if mode == "commands":
        todo = [p for p in fingerprinted(study, extra) if not is_finished(out_dir, p)]
        for point in todo:
            print(point_command(point, out_dir, extra))
        return {"commands": len(todo)}
    trained: list[Point] = []
    with run_lock(out_dir, "study"):
        if mode == "run":
            trained = run_points(study, out_dir, extra, train)
        result = report(study, out_dir, plots=bool(cfg.get("plots", True)), extra=extra)
    result["trained"] = trained
    print(f"[study {study.name}] trained {len(trained)} point(s); report in {out_dir / 'table.md'}")
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="scaling")
def _main(cfg: DictConfig) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    route_framework_logs()
    run_study(cfg)


def main() -> None:
    """``resume=<study dir>`` re-runs a study with the overrides it was started with."""
    apply_resume_argv("out_dir")
    _main()
