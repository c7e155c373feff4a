"""Test helpers shared by several test files."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.models.base import CTRModel

CRASH_ENV = "RECSYS_LAB_TEST_CRASH_AT_EPOCH"
KILL_PHASES = ("train_batch", "validation", "test", "checkpoint")


class KillAt(L.Callback):
    """SIGKILLs its own process once, at a chosen point, like a machine that loses power.

    ``phase``: ``train_batch`` (after training step ``at``, counted over the run), ``validation``
    (in validation batch 0 of epoch ``at``), ``test`` (in the ``at``-th test batch), ``checkpoint``
    (while the ``at``-th checkpoint is being written). ``marker`` is created just before the kill,
    and its existence disarms the callback, so the resumed run (same config) goes through.
    """

    def __init__(self, phase: str, at: int, marker: str) -> None:
        if phase not in KILL_PHASES:
            raise ValueError(f"phase must be one of {KILL_PHASES}, got {phase!r}")
        self.phase, self.at, self.marker = phase, at, Path(marker)
        self._saves = 0

    def _kill(self) -> None:
        if self.marker.exists():
            return
        self.marker.write_text(self.phase)
        os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if self.phase == "train_batch" and trainer.global_step == self.at:
            self._kill()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        if self.phase == "validation" and trainer.current_epoch == self.at and not trainer.sanity_checking:
            self._kill()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        if self.phase == "test" and batch_idx == self.at:
            self._kill()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:  # type: ignore[no-untyped-def]
        self._saves += 1
        if self.phase == "checkpoint" and self._saves == self.at:
            self._kill()


class CrashAtEpochStart(L.Callback):
    """Raises at the start of epoch ``$RECSYS_LAB_TEST_CRASH_AT_EPOCH`` (the previous epoch's
    last.ckpt is written), simulating a killed run. Without the variable it does nothing."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        at = os.environ.get(CRASH_ENV)
        if at is not None and trainer.current_epoch == int(at):
            raise RuntimeError(f"simulated crash at the start of epoch {at}")


def tiny_schema() -> Schema:
    return Schema(
        (
            Feature("user", "categorical", 20, "user"),
            Feature("ad", "categorical", 10, "item"),
            Feature("x", "numeric"),
        )
    )


def tiny_batch(n: int = 64, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        dense=torch.randn(n, 1, generator=g),
        sparse=torch.stack(
            [torch.randint(0, 20, (n,), generator=g), torch.randint(0, 10, (n,), generator=g)], 1
        ),
        labels={"click": torch.randint(0, 2, (n,), generator=g).float()},
        user=torch.randint(0, 5, (n,), generator=g),
    )


class LinearModel(CTRModel):
    """Embedding sum + linear dense term: the smallest CTRModel, for task tests."""

    def __init__(self, schema: Schema, nan_from_step: int | None = None) -> None:
        super().__init__(schema)
        self.embedding = FullEmbedding(schema, dim=1)
        self.linear = nn.Linear(schema.num_numeric, 1)
        self.nan_from_step = nan_from_step
        self.calls = 0

    def forward(self, batch: Batch) -> Tensor:
        self.calls += 1
        out = self.embedding(batch.sparse).sum((1, 2)) + self.linear(batch.dense).squeeze(-1)
        if self.nan_from_step is not None and self.calls > self.nan_from_step:
            out = out * float("nan")
        return out

    def flops_per_example(self) -> int:
        return 2 * self.schema.num_numeric
