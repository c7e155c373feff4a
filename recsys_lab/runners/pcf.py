"""The ``pcf`` stage of ``pipeline=pcf_gnn``: pre-train the pair-CTR GNN and write pair features.

:func:`pretrain_stage` builds the co-occurrence graph of the chosen field pairs from the **training
split only**, pre-trains :class:`~recsys_lab.models.pcf_gnn.PCFGNN` with
:class:`~recsys_lab.tasks.pcf.PCFPretrainTask`, then writes ``pair_features.pt`` atomically (the
pairs, the prior and :func:`~recsys_lab.tasks.pcf.pair_features` of every split) and
``metrics.json``. The CTR stages read the file with
:class:`~recsys_lab.data.pair_features.PairFeatureDataModule`. The stage has no settings of its own:
it reads ``task=pcf_pretrain`` and ``trainer.*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from recsys_lab.data.datamodule import SPLITS, TableSplit
from recsys_lab.runners import stage
from recsys_lab.runners.train import build
from recsys_lab.tasks.pcf import PCFPretrainTask, pair_features

FEATURES_FILE = "pair_features.pt"


def _split(datamodule: Any, name: str) -> TableSplit:
    if not callable(getattr(datamodule, "split", None)):
        raise ValueError(
            f"pipeline=pcf_gnn needs a datamodule with split(name) -> TableSplit (e.g. data=synthetic, "
            f"synthetic_criteo, or data=pair_features around them); {type(datamodule).__name__} has none"
        )
    return datamodule.split(name)


def pretrain_stage(cfg: DictConfig) -> dict[str, Any]:
    """Pipeline runner: build the graph, pre-train the GNN, write ``pair_features.pt``."""
    out_dir = Path(cfg.paths.output_dir)
    stage.begin(cfg, out_dir)
    datamodule, model, task = build(cfg)
    if not isinstance(task, PCFPretrainTask):
        raise ValueError(f"The pcf stage needs task=pcf_pretrain, got {cfg.task._target_}")
    splits = {name: _split(datamodule, name) for name in SPLITS}
    stats = task.fit_graph(splits["train"])
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False, limit_val_batches=0
    )
    trainer.fit(task, train_dataloaders=task.edge_loader(int(cfg.seed)))
    feats = pair_features(model, stats, splits)
    path = out_dir / FEATURES_FILE
    stage.torch_save_atomic(
        {
            "pairs": stats.pair_names(),
            "field_pairs": stats.field_pairs,
            "prior": stats.prior,
            "splits": feats,
        },
        path,
    )
    test = feats["test"]
    mse = {k: float(((test[k] - feats["test"]["exact"]) ** 2).mean()) for k in ("gnn",)}
    metrics = {
        "model": type(model).__name__,
        "data": datamodule.name,
        "seed": int(cfg.seed),
        "pairs": ",".join(stats.pair_names()),
        "storage/table_entries": stats.num_entries,
        "storage/gnn_values": model.num_gnn_values(),
        "graph/nodes": model.num_nodes,
        "graph/edges": model.num_edges,
        "test/unseen_pair_fraction": float((~test["seen"]).float().mean()),
        "test/gnn_vs_exact_mse": mse["gnn"],
        "train/final_loss": float(trainer.callback_metrics.get("train/loss_epoch", float("nan"))),
        "global_step": trainer.global_step,
        "features_file": str(path),
    }
    stage.write_metrics(out_dir, metrics)
    return metrics
