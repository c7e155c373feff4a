"""``python -m recsys_lab.train``: one training run composed by Hydra and run by Lightning.

``build(cfg)`` makes the datamodule, model and task of a composed config (with a warm start from
``init.checkpoint``); ``run(cfg)`` is the reusable core (pipelines call it for each stage); ``main`` is the Hydra entry,
which returns the metric named by ``optimized_metric`` so sweepers can optimise it.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys_lab.callbacks import Throughput
from recsys_lab.data.datamodule import DataModule
from recsys_lab.data.schema import Schema
from recsys_lab.models.base import CTRModel
from recsys_lab.runners import stage
from recsys_lab.runners.checkpoint import load_embedding_tables, load_model_weights
from recsys_lab.runners.stage import CONFIG_DIR

Metrics = dict[str, Any]
log = logging.getLogger(__name__)

# Keys that may differ between a run and its resumption without changing what it computes.
_RESUME_KEYS = ("resume", "ckpt_path", "num_threads", "print_table")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


def build_model(cfg: DictConfig, schema: Schema) -> CTRModel:
    """The model of ``cfg.model`` with the embedding of ``cfg.embedding``, built from ``schema``."""
    # _partial_ then call: Hydra would turn the Schema dataclass into a DictConfig if passed as a kwarg.
    model_factory = instantiate(cfg.model, _partial_=True)
    try:
        return model_factory(schema=schema, embedding=instantiate(cfg.embedding))
    except TypeError as err:
        raise TypeError(
            f"{err} — check the `model.*` keys of your config/overrides against the constructor of "
            f"{cfg.model._target_}."
        ) from err


def build(cfg: DictConfig) -> tuple[DataModule, CTRModel, L.LightningModule]:
    """Instantiate the datamodule (set up), the model and the task from a composed config."""
    datamodule: DataModule = instantiate(cfg.data)
    datamodule.setup()
    model = build_model(cfg, datamodule.schema)
    if cfg.init.checkpoint:
        scope = cfg.init.get("scope", "tables")
        if scope == "tables":
            load_embedding_tables(model, cfg.init.checkpoint)
        elif scope == "model":
            load_model_weights(model, cfg.init.checkpoint)
        else:
            raise ValueError(f"init.scope must be `tables` or `model`, got {scope!r}")
    task = instantiate(cfg.task, model=model)
    check_packing_fits(datamodule, model, task)
    return datamodule, model, task


def check_packing_fits(datamodule: DataModule, model: CTRModel, task: L.LightningModule) -> None:
    """``data.packing=user`` feeds segments whose history events are the training examples; refuse
    a model, objective or schedule that would score only the candidates (most examples dropped)."""
    if getattr(datamodule, "packing", "sample") != "user":
        return
    objective = getattr(task, "objective", None)
    fix = "use model=grab task=grab (e.g. experiment=grab_packed), or data.packing=sample"
    if objective is None or not objective.trains_every_event(model):
        raise ValueError(
            f"data.packing=user packs each user's training events into segments where only the last event is "
            f"a candidate; model {type(model).__name__} with objective {type(objective).__name__} scores "
            f"candidates only, so it would silently drop most training examples. {fix[0].upper() + fix[1:]}"
        )
    if getattr(objective, "packing", "user") != "user":
        raise ValueError(
            f"data.packing=user but task.objective.packing={objective.packing!r}: the loss must average over "
            "every event of the packed segments; leave task.objective.packing at its default (the data's)"
        )
    schedule = getattr(task, "schedule", None)
    if schedule is not None and schedule.freezes_dense:
        raise ValueError(
            f"data.packing=user with task.schedule {schedule!r}: STS's sparse steps train on the candidates "
            "only, which are 1 in K + 1 events of packed data; use model.sts=off with data.packing=user"
        )
    kept = getattr(getattr(model, "tokenizer", None), "max_history", None)
    given = getattr(datamodule, "max_history", None)
    if kept is not None and (given is None or given > kept):
        raise ValueError(
            f"data.packing=user: model.max_history={kept} keeps fewer events than the data's segments hold "
            f"(data.max_history={given}), so the rest would never be trained; set model.max_history=null "
            "or equal to data.max_history"
        )


def run(cfg: DictConfig) -> Metrics:
    """Train, then validate and test the best checkpoint; write ``metrics.json``; return it.

    With ``resume=<run dir>`` (the run's own folder, ``paths.output_dir``) training continues from
    that run's ``checkpoints/last.ckpt`` and ends with the metrics of an uninterrupted run.
    """
    output_dir = Path(cfg.paths.output_dir)
    with stage.run_lock(output_dir, "run"):
        return _run(cfg, output_dir)


def _resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint to start from: ``ckpt_path``, or with ``resume=`` the run's ``last.ckpt``."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path} does not exist. To continue a run, use resume=<its run folder>."
        )
    if not cfg.get("resume"):
        return ckpt_path
    if Path(cfg.resume).resolve() != output_dir.resolve():
        raise ValueError(
            f"resume={cfg.resume} but this run writes to {output_dir}: resume= continues a run in its own "
            f"folder. Use `python -m recsys_lab.train resume={cfg.resume}`, which sets the folder."
        )
    _warn_if_config_changed(cfg, output_dir / stage.CONFIG_FILE)
    last = output_dir / "checkpoints" / "last.ckpt"
    if ckpt_path:
        return ckpt_path
    if last.is_file():
        log.info("Resuming %s from %s", output_dir, last)
        return str(last)
    log.info("Resuming %s: no checkpoint was written yet, so training starts from the beginning", output_dir)
    return None


def _csv_curve_to_keep(loggers: list[Any], ckpt_path: str | None) -> dict[int, list[dict[str, str]]]:
    """The learning curve a resumed run keeps: each CSV logger's rows up to its checkpoint.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so without this a
    resumed run's curve would begin at the resume point. Rows are logged at the count of batches that
    stepped, S; a checkpoint is written before its batch's row (and before S counts that batch), and
    the resumed run logs from step S + 1 on. So rows with step <= S are kept and later ones, logged
    before the kill, are dropped: the resumed run logs those steps again. So are rows of a later
    epoch than the checkpoint's, i.e. the final validation and test rows that a run killed after
    training wrote at the last step. Rows reach the file as they are logged (conf/logger/csv.yaml
    flushes every step). Returns ``{id(logger): rows}``, each row without its empty cells.
    """
    files = {
        id(lg): Path(lg.log_dir) / "metrics.csv"
        for lg in loggers
        if isinstance(lg, L.pytorch.loggers.CSVLogger)
    }
    if not ckpt_path or not any(f.is_file() for f in files.values()):
        return {}
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    loop = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    stepped, epoch = int(loop.get("_batches_that_stepped", ckpt["global_step"])), int(ckpt["epoch"])
    kept: dict[int, list[dict[str, str]]] = {}
    for key, file in files.items():
        if file.is_file():
            with file.open(newline="") as f:
                rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
            kept[key] = [r for r in rows if int(r["step"]) <= stepped and int(r.get("epoch", 0)) <= epoch]
    return kept


def _warn_if_config_changed(cfg: DictConfig, saved_file: Path) -> None:
    """Warn when a resumed run's config differs from the one it started with (new overrides)."""
    if not saved_file.is_file():
        return
    saved = _flat(OmegaConf.to_container(OmegaConf.load(saved_file), resolve=False))
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    changed = sorted(
        k for k in set(saved) | set(now) if k.split(".")[0] not in _RESUME_KEYS and saved.get(k) != now.get(k)
    )
    if changed:
        log.warning(
            "Resuming with a config that differs from the run's own in %s: the result will not equal an "
            "uninterrupted run of the original config.",
            ", ".join(changed[:10]),
        )


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _run(cfg: DictConfig, output_dir: Path) -> Metrics:
    ckpt_path = _resume_checkpoint(cfg, output_dir)
    stage.begin(cfg, output_dir)

    datamodule, model, task = build(cfg)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    kept = _csv_curve_to_keep(loggers, ckpt_path) if cfg.get("resume") else {}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        if id(lg) in kept:  # after log_hyperparams, whose new writer deleted the old file
            lg.experiment.metrics[:0] = kept[id(lg)]

    trainer.fit(
        task,
        train_dataloaders=datamodule.train_dataloader(),
        val_dataloaders=datamodule.val_dataloader(),
        ckpt_path=ckpt_path,
    )

    # Evaluate the best checkpoint by the monitored metric (the in-memory weights if none was written).
    ckpt_cb = trainer.checkpoint_callback
    best = getattr(ckpt_cb, "best_model_path", "") or None
    metrics: Metrics = {
        "model": type(model).__name__,
        "data": datamodule.name,
        "seed": int(cfg.seed),
    }
    metrics.update(
        trainer.validate(task, dataloaders=datamodule.val_dataloader(), ckpt_path=best, verbose=False)[0]
    )
    if cfg.get("test", True):
        metrics.update(
            trainer.test(task, dataloaders=datamodule.test_dataloader(), ckpt_path=best, verbose=False)[0]
        )
    for split in ("val", "test"):
        metrics.update({f"{split}/{k}": v for k, v in datamodule.oracle_metrics(split).items()})
    throughput = next((c for c in callbacks if isinstance(c, Throughput)), None)
    metrics.update(
        {
            "params/embedding": model.num_params(embedding=True, dense=False),
            "params/dense": model.num_params(embedding=False, dense=True),
            "flops/per_example": model.flops_per_example(),
            "train/samples_per_s": throughput.samples_per_s if throughput else float("nan"),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "best_checkpoint": best or "",
            "output_dir": str(output_dir),
        }
    )
    # Embeddings that keep fewer values than their parameters (AMTL) report the exact count.
    stored = [m.stored_values() for m in model.modules() if callable(getattr(m, "stored_values", None))]
    if stored:
        metrics["params/embedding_stored"] = int(sum(stored))
    metrics = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
    if trainer.is_global_zero:  # under DDP every rank holds the same (gathered) metrics
        stage.write_metrics(output_dir, metrics)
    if trainer.is_global_zero and cfg.get("print_table", True):
        stage.print_metrics_table(metrics, title=f"{metrics['model']} on {metrics['data']} — {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("WANDB_MODE", "offline")
    stage.route_framework_logs()
    metrics = run(cfg)
    value = metrics.get(cfg.get("optimized_metric") or "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def main() -> None:
    """``python -m recsys_lab.train`` / ``recsys-train``; ``resume=<run dir>`` continues that run."""
    stage.apply_resume_argv("hydra.run.dir")
    try:
        stage.check_moved_keys(sys.argv[1:])
    except stage.MovedKeyError as err:
        sys.exit(f"Error: {err}")
    _main()


if __name__ == "__main__":
    main()
