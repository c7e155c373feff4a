"""The data augmentation system (DAS): log a trained model's predictions as a column of the data.

``run(cfg)`` is a pipeline stage runner. It rebuilds the model of a finished stage from its
checkpoint (``das.checkpoint``; the stage's config must name the same model and task), runs it
once over every example of the chosen days, and writes ``<output_dir>/<das.file>`` atomically
(temporary file, then rename): ``log_row`` (int64 ``[n]``, the world's event-log row, sorted —
the example's key) and one ``col_<name>`` per logged column. A datamodule with
``data.teacher_path=<file>`` reads the columns back into ``Batch.teacher`` (see
:class:`~recsys_lab.data.synthetic.seq_datamodule.LoggedTeacherSamples`). A re-run whose file
exists with the same settings (checkpoint, world, days) skips the work.

- ExFM: the foundation model's click probability, ``col_fm``, on the vertical models' days.
- OCARM: the frozen teacher's probability ``col_prob`` and representation ``col_rep [n, H]`` on
  every day, computed **with** the onboarding content (``das.privileged=true``). The runner also
  reports the teacher's test metrics with the content (``teacher/test_*``) and without it
  (``naive/test_*``: trained with leaked features, served without them).

The stage's settings (``+das.<key>=...``) are :class:`DASOptions`; a misspelt key is an error.

``train_foundation_model(cfg)`` is the ExFM stage-1 runner: :func:`recsys_lab.runners.train.run` with the
split set so that the FM trains on the days before ``t − δ`` (``t`` = first day of the last
``exfm.stream_days`` days, ``δ`` = ``exfm.delta``; :class:`FoundationModelOptions`): validation on
day ``t − δ − 1``, test from ``t − δ`` on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys_lab.data.datamodule import EpochBatchSampler
from recsys_lab.data.synthetic.seq_datamodule import WorldDataModule, sample_loader
from recsys_lab.metrics import CTRMetrics
from recsys_lab.runners import stage


@dataclass
class DASOptions:
    """Settings of the DAS stage (``+das.<key>=...``).

    Attributes:
        checkpoint: the finished stage's checkpoint whose predictions are logged (required).
        file: the output file's name in the stage folder.
        last_days: log only the last ``last_days`` days of samples (None: every day).
        privileged: give the model the privileged (training-only) features, and report the
            teacher's test metrics with and without them.
        key: the logged probability's column, ``col_<key>``.
        representation: also log the model's representation (``forward_rep``) as ``col_rep``.
    """

    checkpoint: str | None = None
    file: str = "teacher.npz"
    last_days: int | None = None
    privileged: bool = False
    key: str = "prob"
    representation: bool = False


@dataclass
class FoundationModelOptions:
    """Settings of the ExFM foundation-model stage (``+exfm.<key>=...``): the vertical models
    stream over the last ``stream_days`` days; the FM trains on the days before ``t − delta``."""

    stream_days: int | None = None
    delta: int | None = None


_DATA_KEYS = ("_target_", "preset", "world", "rows", "domains", "max_history", "warmup_days")


def _settings(cfg: DictConfig) -> dict[str, Any]:
    das = cfg.das
    ckpt = Path(str(das.checkpoint))
    stat = ckpt.stat()
    return {
        "checkpoint": str(ckpt),
        "checkpoint_size": stat.st_size,
        "checkpoint_mtime": stat.st_mtime_ns,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        # What the predictions depend on: the world and how samples are cut (not splits or batch sizes).
        "data": {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k in _DATA_KEYS},
        "das": OmegaConf.to_container(das, resolve=True),
    }


def _eval_metrics(task: Any, loader: Any, strip_privileged: bool) -> dict[str, float]:
    metrics = CTRMetrics(gauc=True)
    with torch.no_grad():
        for batch in loader:
            if strip_privileged:
                batch = batch.for_serving()
            metrics.update(task(batch), batch.labels[task.label], batch.user)
    return metrics.compute()


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write the logged-predictions file; return ``{"teacher_path": ..., metrics...}``."""
    from recsys_lab.runners.train import build  # heavy imports (Lightning) only when a stage runs

    das = stage.options(cfg, "das", DASOptions, "DAS")
    if not das.checkpoint:
        raise ValueError(
            "The DAS stage needs das.checkpoint (e.g. +das.checkpoint=${stage:fm,best_checkpoint})"
        )
    if not Path(das.checkpoint).is_file():
        raise FileNotFoundError(f"das.checkpoint={das.checkpoint} does not exist")
    out_dir = Path(cfg.paths.output_dir)
    stage.begin(cfg, out_dir)
    path = out_dir / das.file
    settings = _settings(cfg)
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    metrics_file = out_dir / stage.METRICS_FILE
    if path.is_file() and metrics_file.is_file():
        previous = json.loads(metrics_file.read_text())
        if previous.get("das_fingerprint") == fingerprint:
            return {**previous, "skipped": True}

    with open_dict(cfg):
        cfg.data.teacher_path = None  # the logged model never reads logged predictions
    datamodule, model, task = build(cfg)
    if not isinstance(datamodule, WorldDataModule):
        raise ValueError("The DAS stage runs on the synthetic world (data=synthetic_seq or synthetic_stream)")
    state = torch.load(das.checkpoint, map_location="cpu", weights_only=False)
    task.load_state_dict(state["state_dict"] if "state_dict" in state else state["task"])
    task.eval()
    samples = datamodule.samples
    days = list(datamodule.sample_days)
    first_day = days[-das.last_days] if das.last_days else days[0]
    lo, hi = samples.day_range(first_day)[0], len(samples)
    privileged, key, representation = das.privileged, das.key, das.representation
    loader = sample_loader(
        samples, lo, hi, EpochBatchSampler(hi - lo, datamodule.eval_batch_size, shuffle=False), privileged, 0
    )
    probs, reps = [], []
    with torch.no_grad():
        for batch in loader:
            if representation:
                rep, logits = model.forward_rep(batch)  # type: ignore[operator]
                reps.append(rep.float())
            else:
                logits = model(batch)
            probs.append(torch.sigmoid(logits).float())
    log_row = samples.columns.log_row[lo:hi]
    order = np.argsort(log_row, kind="stable")
    arrays = {"log_row": log_row[order].astype(np.int64), f"col_{key}": torch.cat(probs).numpy()[order]}
    if representation:
        arrays["col_rep"] = torch.cat(reps).numpy()[order]
    stage.savez_atomic(path, arrays)

    out: dict[str, Any] = {"teacher_path": str(path), "rows": int(hi - lo), "first_day": int(first_day)}
    if privileged:  # the teacher with and without its content, on the test split
        t_lo, t_hi = datamodule.split_range("test")
        for name, strip in (("teacher", False), ("naive", True)):
            sampler = EpochBatchSampler(t_hi - t_lo, datamodule.eval_batch_size, shuffle=False)
            test = sample_loader(samples, t_lo, t_hi, sampler, True, 0)
            out.update({f"{name}/test_{k}": v for k, v in _eval_metrics(task, test, strip).items()})
        out.update({f"test/{k}": v for k, v in datamodule.oracle_metrics("test").items()})
    out["das_fingerprint"] = fingerprint
    stage.write_metrics(out_dir, out)
    return out


def train_foundation_model(cfg: DictConfig) -> dict[str, Any]:
    """ExFM stage 1: :func:`recsys_lab.runners.train.run` on the days before ``t − δ`` (module
    docstring)."""
    from recsys_lab.runners.train import run as train_run

    ex = stage.options(cfg, "exfm", FoundationModelOptions, "ExFM foundation-model")
    if ex.stream_days is None or ex.delta is None:
        raise ValueError("The foundation-model stage needs exfm.stream_days and exfm.delta (+exfm.delta=1)")
    stream_days, delta = ex.stream_days, ex.delta
    if stream_days < 2 or delta < 0:
        raise ValueError(f"exfm.stream_days={stream_days} must be >= 2 and exfm.delta={delta} >= 0")
    with open_dict(cfg):
        cfg.data.val_days = 1
        cfg.data.test_days = stream_days + delta
        cfg.data.domains = None  # the FM sees every vertical
    return train_run(cfg)
