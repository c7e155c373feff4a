"""One-pass prequential training over the days of a stream (a pipeline stage runner).

``run(cfg)`` trains one model per vertical (``streaming.verticals``: domain ids, one vertical
model each; null = one model on ``data.domains``) over the stream of ``data=synthetic_stream``:
for each prequential pair ``(d, d + 1)`` of the last ``streaming.last_days`` days (null = all),
it trains one pass on day ``d`` and then evaluates on day ``d + 1`` — which the model has not
seen. Each batch is one :meth:`CTRTask.train_batch <recsys_lab.tasks.ctr.CTRTask.train_batch>`,
the task's own training step (objective, clipping, every optimiser), with plain optimisers and no
Lightning trainer: a day is the unit of work, not an epoch. The settings are
:class:`StreamingSettings` (``+streaming.*``; a misspelt key is an error).

Outputs in ``paths.output_dir``: ``metrics_by_day.csv`` (one row per vertical and evaluation
day: AUC, LogLoss, NE, GAUC, calibration, and the day's oracle AUC/LogLoss), ``metrics_by_day.png``
(NE and AUC over days, one line per vertical), and ``metrics.json`` (means over days and
verticals as ``stream/<metric>``, the last day's mean as ``test/<metric>``, per vertical
``<vm>/<metric>``, plus parameter and FLOP counts).

Resumable: after each day, ``<vm>/checkpoints/last.ckpt`` holds the task's state (weights and the
objective's own state, e.g. ExFM's adapter and its optimiser), optimiser states, RNG state and the
rows so far (written atomically), and ``checkpoints/last.ckpt`` of the
stage records the progress, so the pipeline resumes an interrupted stage (``ckpt_path`` set):
finished verticals are read back, the interrupted one continues after its last finished day, and
the final metrics equal those of an uninterrupted run.
"""

from __future__ import annotations

import copy
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, open_dict

from recsys_lab.metrics import CTRMetrics
from recsys_lab.runners import stage
from recsys_lab.runners.stage import write_json_atomic

if TYPE_CHECKING:
    from recsys_lab.tasks.ctr import CTRTask

METRICS = ("auc", "logloss", "ne", "gauc", "calibration")
COLUMNS = ("vertical", "train_day", "day", "rows", *METRICS, "oracle_auc", "oracle_logloss")


def _after_day(vertical: str, index: int) -> None:
    """Called after each day's checkpoint is written (tests patch it to simulate a crash)."""


@dataclass
class StreamingSettings:
    """``+streaming.*``: the runner's settings.

    Attributes:
        verticals: domain ids, one vertical model each (null = one model on ``data.domains``).
        last_days: stream only the last this many days (null = all; at least 2).
        save_predictions: also write each evaluation day's serving predictions to
            ``<vm>/predictions/day<d>.pt`` (``probs`` and ``labels``, float64 ``[rows]``), for
            paired bootstraps over the stream's rows.
    """

    verticals: list[int] | None = None
    last_days: int | None = None
    save_predictions: bool = False


def settings(cfg: DictConfig) -> StreamingSettings:
    """The ``streaming`` node of ``cfg`` as :class:`StreamingSettings`; an unknown or mistyped key
    raises :class:`~recsys_lab.runners.stage.OptionsError` naming it and the known ones."""
    return stage.options(cfg, "streaming", StreamingSettings, "streaming")


def _optimizers(task: CTRTask) -> list[torch.optim.Optimizer]:
    if task.scheduler_factory is not None:
        raise ValueError("The streaming runner does not step LR schedulers: set task.scheduler=null")
    out = task.configure_optimizers()
    return list(out[0] if isinstance(out, tuple) else out)


def evaluate(task: CTRTask, loader: Any, keep: list[tuple[Any, Any]] | None = None) -> dict[str, float]:
    """:class:`CTRMetrics` of the task's predictions (serving path) over ``loader``; with ``keep``,
    each batch's ``(probs [B], labels [B])`` is appended to it."""
    metrics = CTRMetrics(gauc=True)
    task.eval()
    with torch.no_grad():
        for batch in loader:
            probs, labels = task(batch), batch.labels[task.label]
            metrics.update(probs, labels, batch.user)
            if keep is not None:
                keep.append((probs.detach().double(), labels.double()))
    return metrics.compute()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    ints = ("train_day", "day", "rows")
    return [
        {k: (v if k == "vertical" else int(v) if k in ints else float(v)) for k, v in r.items()} for r in rows
    ]


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with stage.atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def stream_vertical(
    cfg: DictConfig, vm_dir: Path, name: str, resume: bool, stage_ckpt: Path
) -> tuple[list, Any]:
    """Prequential pass of one vertical model; returns ``(rows, model)``."""
    import lightning as L

    from recsys_lab.data.synthetic.stream_datamodule import SyntheticStreamDataModule
    from recsys_lab.runners.train import build
    from recsys_lab.tasks.ctr import CTRTask

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule, model, task = build(cfg)
    if not isinstance(datamodule, SyntheticStreamDataModule):
        raise ValueError("The streaming runner needs data=synthetic_stream (days in order)")
    if not isinstance(task, CTRTask):
        raise ValueError(
            f"The streaming runner trains a CTRTask (task=ctr, exfm_student, ...), got {type(task).__name__}"
        )
    if task.schedule is not None:
        task.schedule.start(None)  # a stream has no fixed number of steps
    optimizers = _optimizers(task)
    pairs = datamodule.prequential_days()
    last_days, save_predictions = settings(cfg).last_days, settings(cfg).save_predictions
    if last_days:
        if int(last_days) < 2 or int(last_days) > len(datamodule.days):
            raise ValueError(
                f"streaming.last_days={last_days} must be in 2..{len(datamodule.days)} (the stream's days)"
            )
        first = datamodule.days[-int(last_days)]
        pairs = [(d, e) for d, e in pairs if d >= first]
    done_file = vm_dir / "metrics_by_day.csv"
    ckpt = vm_dir / "checkpoints" / "last.ckpt"
    if resume and done_file.is_file():
        return _read_rows(done_file), model
    rows: list[dict[str, Any]] = []
    start = step = 0
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        task.load_state_dict(state["task"])
        for opt, opt_state in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        torch.set_rng_state(state["rng"])
        rows, start, step = state["rows"], state["next"], state.get("step", 0)
    for i in range(start, len(pairs)):
        train_day, day = pairs[i]
        task.train()
        for batch in datamodule.day_dataloader(train_day, train=True):
            task.train_batch(batch, optimizers, step, where=f"{name}, training day {train_day}")
            step += 1
        kept: list[tuple[Any, Any]] | None = [] if save_predictions else None
        values = evaluate(task, datamodule.day_dataloader(day), kept)
        if kept is not None:
            stage.torch_save_atomic(
                {"probs": torch.cat([p for p, _ in kept]), "labels": torch.cat([y for _, y in kept])},
                vm_dir / "predictions" / f"day{day}.pt",
            )
        oracle = datamodule.day_oracle_metrics(day)
        lo, hi = datamodule.samples.day_range(day)
        rows.append(
            {
                "vertical": name,
                "train_day": train_day,
                "day": day,
                "rows": hi - lo,
                **values,
                "oracle_auc": oracle["oracle_auc"],
                "oracle_logloss": oracle["oracle_logloss"],
            }
        )
        state = {
            "task": task.state_dict(),
            "optimizers": [opt.state_dict() for opt in optimizers],
            "rng": torch.get_rng_state(),
            "rows": rows,
            "next": i + 1,
            "step": step,
        }
        stage.torch_save_atomic(state, ckpt)
        stage.torch_save_atomic({"vertical": name, "next": i + 1}, stage_ckpt)
        _after_day(name, i)
    _write_rows(done_file, rows)
    return rows, model


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in rows if not math.isnan(float(r[key]))]
    return sum(values) / len(values) if values else float("nan")


def plot_by_day(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """NE and AUC over evaluation days, one line per vertical."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for vertical in sorted({r["vertical"] for r in rows}):
        sub = [r for r in rows if r["vertical"] == vertical]
        for ax, key in zip(axes, ("ne", "auc"), strict=True):
            ax.plot([r["day"] for r in sub], [r[key] for r in sub], marker="o", label=vertical)
    for ax, key in zip(axes, ("normalised entropy (lower is better)", "AUC"), strict=True):
        ax.set_xlabel("evaluation day (trained on the day before)")
        ax.set_title(key)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Stream every vertical; write the per-day table, the plot and ``metrics.json``."""
    out_dir = Path(cfg.paths.output_dir)
    verticals = settings(cfg).verticals  # a misspelt setting fails before anything is written
    stage.begin(cfg, out_dir)
    resume = bool(cfg.get("ckpt_path"))
    stage_ckpt = out_dir / "checkpoints" / "last.ckpt"
    rows: list[dict[str, Any]] = []
    model = None
    for vertical in list(verticals) if verticals else [None]:
        vm_cfg = copy.deepcopy(cfg)
        name = "vm" if vertical is None else f"vm{int(vertical)}"
        if vertical is not None:
            with open_dict(vm_cfg):
                vm_cfg.data.domains = [int(vertical)]
        vm_rows, model = stream_vertical(vm_cfg, out_dir / name, name, resume, stage_ckpt)
        rows += vm_rows
    _write_rows(out_dir / "metrics_by_day.csv", rows)
    plot_by_day(rows, out_dir / "metrics_by_day.png", f"prequential metrics — {out_dir.name}")
    assert model is not None
    metrics: dict[str, Any] = {
        "model": type(model).__name__,
        "data": str(cfg.data._target_).split(".")[-1],
        "seed": int(cfg.seed),
        "verticals": len({r["vertical"] for r in rows}),
    }
    last_day = max(float(r["day"]) for r in rows)
    for key in (*METRICS, "oracle_auc", "oracle_logloss"):
        metrics[f"stream/{key}"] = _mean(rows, key)
        metrics[f"test/{key}"] = _mean([r for r in rows if float(r["day"]) == last_day], key)
    for vertical in sorted({r["vertical"] for r in rows}):
        for key in ("auc", "ne"):
            metrics[f"{vertical}/{key}"] = _mean([r for r in rows if r["vertical"] == vertical], key)
    metrics.update(
        {
            "params/embedding": model.num_params(embedding=True, dense=False),
            "params/dense": model.num_params(embedding=False, dense=True),
            "flops/per_example": model.flops_per_example(),
            "metrics_by_day": str(out_dir / "metrics_by_day.csv"),
            "output_dir": str(out_dir),
        }
    )
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics
