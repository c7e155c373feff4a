"""``recsys-eval`` / ``python -m recsys_lab.evaluate``: a trained checkpoint scored on any data.

Rows come from the data config given (``data=...``; the training run's by default) and are
encoded with the TRAINING run's preprocessing:

- the training data itself (same files, same preprocessing config): its cached splits;
- other raw files of a tabular dataset (Criteo, Avazu, ``data=tabular``): streamed through
  :func:`~recsys_lab.data.preprocess.encode.encode_blocks` with the run's vocabularies and
  transforms — either every row of ``data.path`` (``rows=all``, e.g. the next day's log) or the
  rows the data config's split rules assign to each evaluated split;
- a file of MovieLens ratings (``data.path=<ratings file>``, in the training layout): every row,
  streamed through :class:`~recsys_lab.data.preprocess.encode.MovieLensEncoder` (histories from
  the training data, as recsys-predict builds them), reported as ``test/*``;
- generated data (synthetic configs): its splits, when its schema is the run's.

The run folder (``runs/eval/<time>/``) gets ``config.yaml`` and ``metrics.json`` with the keys of
training (``val/*``, ``test/*``, oracle metrics on synthetic data, parameter and FLOP counts,
``model``, ``data``, ``seed``) plus ``eval/*`` (what was read), and the training table is printed.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, IterableDataset

from recsys_lab.data.batch import Batch
from recsys_lab.data.cached import CachedDataModule, TabularDataModule
from recsys_lab.data.datamodule import DataModule
from recsys_lab.data.movielens import MovieLensDataModule
from recsys_lab.data.preprocess.badrows import BadRowReport
from recsys_lab.data.preprocess.encode import EncodedBlock, MovieLensEncoder, TabularEncoder, encode_blocks
from recsys_lab.data.preprocess.errors import DataError
from recsys_lab.data.preprocess.split import SPLITS
from recsys_lab.runners import stage
from recsys_lab.runners.common import TrainedRun, load_trained
from recsys_lab.runners.stage import CONFIG_DIR

log = logging.getLogger(__name__)

Metrics = dict[str, Any]


class _BlockBatches(IterableDataset):
    """Batches of at most ``batch_size`` rows cut from a stream of encoded blocks."""

    def __init__(self, blocks: Callable[[], Iterator[EncodedBlock]], batch_size: int) -> None:
        self.blocks = blocks
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[Batch]:
        for block in self.blocks():
            n = len(block.rows)
            for lo in range(0, n, self.batch_size):
                yield block.rows.batch(lo, min(n, lo + self.batch_size))


def _loader(dataset: IterableDataset) -> DataLoader:
    return DataLoader(dataset, batch_size=None, collate_fn=lambda b: b)


def eval_data_config(cfg: DictConfig, run: TrainedRun) -> DictConfig:
    """The data config to evaluate on: the one given, the run's with the given keys (``+data.path=``),
    or the run's."""
    given = cfg.get("data")
    if given and "_target_" in given:
        return given
    merged = OmegaConf.merge(run.cfg.data, given or {})
    assert isinstance(merged, DictConfig)
    if (
        given
        and "path" in given
        and merged.get("split") == "files"
        and Path(str(given.path)).expanduser().is_file()
    ):
        merged.split = (
            "random"  # one file (rows=all): the run's split=files needs a folder of train/valid/test
        )
    return merged


def _same_schema(run: TrainedRun, data: DataModule) -> None:
    want, got = run.data.schema, data.schema
    if want.features != got.features:
        raise DataError(
            f"data={data.name} has a schema other than the one {run.ckpt_path} was trained on "
            f"({len(got.features)} features vs {len(want.features)}; the first difference: "
            f"{next((f'{a} vs {b}' for a, b in zip(got.features, want.features) if a != b), 'count')}). "
            "Evaluate on data with the training run's features and vocabulary sizes."
        )


class Evaluation:
    """The rows of one evaluation: a loader per split name, oracle metrics and what was read."""

    def __init__(self) -> None:
        self.loaders: dict[str, DataLoader] = {}
        self.oracle: Metrics = {}
        self.reports: list[tuple[BadRowReport, float]] = []
        self.info: Metrics = {}


def plan(cfg: DictConfig, run: TrainedRun, data_cfg: DictConfig) -> tuple[DataModule, Evaluation]:
    """Instantiate the evaluation data and decide which rows to read and how."""
    data: DataModule = instantiate(data_cfg)
    splits = list(cfg.get("eval_splits") or ["test"])
    unknown = [s for s in splits if s not in ("val", "test")]
    if unknown:
        raise ValueError(f"eval_splits={splits}: {unknown} cannot be evaluated; use val and/or test")
    rows = str(cfg.get("rows", "auto"))
    if rows not in ("auto", "all", "splits"):
        raise ValueError(f"rows={rows!r} must be auto, all or splits")
    ev = Evaluation()
    trained = run.data
    if (isinstance(data, CachedDataModule) or isinstance(trained, CachedDataModule)) and type(
        data
    ) is not type(trained):
        raise DataError(
            f"{run.ckpt_path} was trained on {trained.name} data; data={data.name} is another dataset with other "
            f"features. Evaluate on {trained.name} data (data={trained.name} data.path=...)."
        )
    if isinstance(data, TabularDataModule) and isinstance(trained, TabularDataModule):
        files = data.input_files()
        read_by_run = {i["path"] for i in trained.manifest.get("inputs", [])}
        if rows == "auto":
            new_file = data.path.is_file() and str(data.path.resolve()) not in read_by_run
            rows = "all" if new_file else "splits"
        assert trained.cache_path is not None
        same_cache = rows == "splits" and data.cache_folder(files) == trained.cache_path
        ev.info = {"eval/rows": rows, "eval/files": ", ".join(str(f) for f in files)}
        if same_cache:
            data.open_cache(trained.cache_path)
            for s in splits:
                ev.loaders[s] = _split_loader(data, s)
            ev.info["eval/encoding"] = "training cache"
            return data, ev
        encoder = TabularEncoder(trained.spec(), trained.cache_path, trained.history_limit())
        sources = data.sources(files)
        rules = data.split_rules(sources) if rows == "splits" else None
        targets = splits if rows == "splits" else ["test"]
        for s in targets:
            report = BadRowReport(data.name)
            code = SPLITS.index(s)

            def blocks(report: BadRowReport = report, code: int = code) -> Iterator[EncodedBlock]:
                for si, src in enumerate(sources):
                    split = None if rules is None else (si, rules[si], code)
                    yield from encode_blocks(
                        encoder, src, report, max_lines=data.max_rows_per_file, split=split
                    )

            ev.loaders[s] = _loader(_BlockBatches(blocks, int(cfg.batch_size)))
            ev.reports.append((report, data.max_bad_fraction))
        ev.info["eval/encoding"] = "training vocabularies"
        return data, ev
    if (
        isinstance(data, MovieLensDataModule)
        and isinstance(trained, MovieLensDataModule)
        and data.path.is_file()
    ):
        if rows == "splits":
            raise ValueError(
                f"data.path={data.path} is a file of ratings: its rows are evaluated all together (rows=all); "
                "the split of a MovieLens folder is evaluated from that folder."
            )
        encoder = MovieLensEncoder(trained)
        if "rating" not in encoder.layout(data.path).read:
            raise DataError(
                f"{data.path} has no rating column: recsys-eval needs labelled rows (recsys-predict scores these)."
            )
        report = BadRowReport(data.name)
        ev.loaders["test"] = _loader(
            _BlockBatches(
                lambda: encoder.blocks(data.path, report, max_lines=data.max_rows_per_file),
                int(cfg.batch_size),
            )
        )
        ev.reports.append((report, data.max_bad_fraction))
        ev.info = {"eval/rows": "all", "eval/files": str(data.path), "eval/encoding": "training vocabularies"}
        return data, ev
    if rows == "all":
        raise ValueError(
            f"rows=all reads every row of a raw file; data={data.name} is not a tabular log (Criteo, Avazu). "
            "Use rows=splits."
        )
    if isinstance(data, CachedDataModule):
        assert isinstance(trained, CachedDataModule)
        if data.cache_folder() != trained.cache_path:
            raise DataError(
                f"{data.name} data can be evaluated with the run's own files and preprocessing only: encoding "
                "other files with the training vocabularies is implemented for the tabular logs (Criteo, Avazu). "
                f"The run read {trained.manifest.get('inputs')}."
            )
        data.open_cache(trained.cache_path)
    else:
        data.setup()
        _same_schema(run, data)
    for s in splits:
        ev.loaders[s] = _split_loader(data, s)
        ev.oracle.update({f"{s}/{k}": v for k, v in data.oracle_metrics(s).items()})
    ev.info = {"eval/rows": "splits", "eval/encoding": "data config"}
    return data, ev


def _split_loader(data: DataModule, split: str) -> DataLoader:
    return {"train": data.train_dataloader, "val": data.val_dataloader, "test": data.test_dataloader}[split]()


def evaluate(cfg: DictConfig) -> Metrics:
    """Evaluate ``cfg.ckpt_path`` as configured; write ``metrics.json``; return the metrics."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stage.set_threads(cfg)
    run = load_trained(cfg.ckpt_path)
    with open_dict(cfg):
        if cfg.get("seed") is None:
            cfg.seed = run.cfg.seed  # data configs read ${seed}: the run's world by default
    data_cfg = eval_data_config(cfg, run)
    with open_dict(cfg):
        cfg.data = data_cfg
    stage.write_config(cfg, output_dir)
    data, ev = plan(cfg, run, data_cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False
    )
    metrics: Metrics = {
        "model": type(run.model).__name__,
        "data": data.name,
        "seed": int(cfg.seed),
        "ckpt_path": str(run.ckpt_path),
        "train_run": str(run.run_dir),
    }
    for split, loader in ev.loaders.items():
        fn = trainer.validate if split == "val" else trainer.test
        metrics.update(fn(run.task, dataloaders=loader, verbose=False)[0])
    for report, max_bad in ev.reports:
        report.log()
        report.check(max_bad)
    if ev.reports:
        metrics["eval/rows_read"] = sum(r.rows_read for r, _ in ev.reports)
        metrics["eval/bad_rows"] = sum(r.bad_rows for r, _ in ev.reports)
    metrics.update(ev.oracle)
    metrics.update(ev.info)
    metrics.update(
        {
            "params/embedding": run.model.num_params(embedding=True, dense=False),
            "params/dense": run.model.num_params(embedding=False, dense=True),
            "flops/per_example": run.model.flops_per_example(),
            "output_dir": str(output_dir),
        }
    )
    metrics = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
    stage.write_metrics(output_dir, metrics)
    if cfg.get("print_table", True):
        stage.print_metrics_table(
            metrics, title=f"{metrics['model']} ({run.ckpt_path}) on {metrics['data']} — {output_dir}"
        )
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> float | None:
    stage.route_framework_logs()
    os.environ.setdefault("WANDB_MODE", "offline")
    value = evaluate(cfg).get("test/auc")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
