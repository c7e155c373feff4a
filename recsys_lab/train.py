"""``python -m recsys_lab.train``: one training run composed by Hydra and run by Lightning.

``run(cfg)`` is the reusable core (pipelines call it for each stage); ``main`` is the Hydra entry,
which returns the metric named by ``optimized_metric`` so sweepers can optimise it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recsys_lab.callbacks import Throughput
from recsys_lab.checkpoint import load_embedding_tables
from recsys_lab.data.datamodule import DataModule
from recsys_lab.data.schema import Schema
from recsys_lab.models.base import CTRModel
from recsys_lab.utils import print_metrics_table, write_json_atomic

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

Metrics = dict[str, Any]


def _mkdir(path: str) -> str:
    """``${recsys_lab.mkdir:<dir>}``: create ``dir`` and return it (e.g. for a sqlite file's folder
    that must exist before the Optuna sweeper opens its storage; see conf/sweep/optuna.yaml)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


if not OmegaConf.has_resolver("recsys_lab.mkdir"):
    OmegaConf.register_new_resolver("recsys_lab.mkdir", _mkdir)


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
        load_embedding_tables(model, cfg.init.checkpoint)
    task = instantiate(cfg.task, model=model)
    return datamodule, model, task


def run(cfg: DictConfig) -> Metrics:
    """Train, then validate and test the best checkpoint; write ``metrics.json``; return it."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The resolved config, beside the run's outputs (pipeline stages have no .hydra/ folder).
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    # Adam's second-moment state of rarely-updated weights decays into denormal floats, which
    # make CPU arithmetic many times slower; flushing them to zero changes no result that matters.
    torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))

    datamodule, model, task = build(cfg)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path} does not exist; give the last.ckpt of the run to resume."
        )
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
        write_json_atomic(output_dir / "metrics.json", metrics)
    if trainer.is_global_zero and cfg.get("print_table", True):
        print_metrics_table(metrics, title=f"{metrics['model']} on {metrics['data']} — {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("WANDB_MODE", "offline")
    metrics = run(cfg)
    value = metrics.get(cfg.get("optimized_metric") or "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


if __name__ == "__main__":
    main()
