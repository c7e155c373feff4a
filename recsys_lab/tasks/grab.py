"""GRABTask: the every-event loss and sequence-then-sparse (STS) training of GRAB.

**Every-event loss.** ``loss = BCE(candidates) + event_weight · BCE(history events)``: each
history event's own click is predicted from the tokens before it (GRAB keeps every token's own
action out of its prediction; see ``recsys_lab/models/grab.py``), so one packed batch carries
many training examples per user besides its candidates.

**STS** (``model.sts``; METHODS.md, "GRAB"). Two batch kinds:

- *packed*: the every-event loss above; dense and embedding optimisers both step;
- *sparse*: the candidates' BCE only (each sample one independent example, batches shuffled
  across users by the loader); only the embedding optimiser steps, the dense (transformer)
  parameters stay frozen.

``off``: packed batches only. ``two_stage``: the first ``sts_stage1_fraction`` of the run's
optimiser steps (``trainer.estimated_stepping_batches``: epochs × batches, or ``max_steps``) are
packed, the rest sparse. ``alternating``: even global steps packed, odd steps sparse. Every batch
is one global step in all modes, so a resumed run picks up the same schedule.

Works with any :class:`CTRModel`: a model without every-event outputs (not GRAB) trains on its
candidates only.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel
from recsys_lab.models.grab import GRAB
from recsys_lab.tasks.ctr import CTRTask, NonFiniteLossError, OptimizerFactory, SchedulerFactory

PACKED, SPARSE = "packed", "sparse"


class GRABTask(CTRTask):
    """Args (beyond :class:`CTRTask`'s):
    event_weight: weight of the history events' BCE (0 = candidates only).
    sts_stage1_fraction: share of the run's steps in stage 1 under ``model.sts=two_stage``.
    """

    def __init__(
        self,
        model: CTRModel,
        optimizer: OptimizerFactory,
        sparse_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label: str = "click",
        max_grad_norm: float | None = None,
        gauc: bool = True,
        event_weight: float = 1.0,
        sts_stage1_fraction: float = 0.5,
    ) -> None:
        super().__init__(
            model, optimizer, sparse_optimizer, scheduler, scheduler_interval, label, max_grad_norm, gauc
        )
        if event_weight < 0:
            raise ValueError(f"task.event_weight must be >= 0, got {event_weight}")
        if not 0.0 <= sts_stage1_fraction <= 1.0:
            raise ValueError(f"task.sts_stage1_fraction must be in [0, 1], got {sts_stage1_fraction}")
        self.event_weight = float(event_weight)
        self.sts_stage1_fraction = float(sts_stage1_fraction)
        self.sts = model.sts if isinstance(model, GRAB) else "off"
        if not isinstance(model, GRAB):
            warnings.warn(
                f"task=grab with model {type(model).__name__}: no every-event outputs, so it trains on the "
                "candidates only (use model=grab for the every-event loss and STS)",
                stacklevel=2,
            )
        if self.sts != "off" and sparse_optimizer is None:
            raise ValueError(
                f"model.sts={self.sts} trains the embedding tables with their own optimiser: set "
                "task.sparse_optimizer (e.g. SparseAdam, the default) instead of null"
            )

    # -- losses --------------------------------------------------------------------------------
    def packed_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """The every-event loss and its parts."""
        y = batch.labels[self.label]
        if not isinstance(self.model, GRAB):
            loss = F.binary_cross_entropy_with_logits(self.model(batch), y)
            return loss, {"candidate_loss": loss.detach()}
        out = self.model.forward_events(batch)
        cand = F.binary_cross_entropy_with_logits(out.candidate_logits, y)
        parts = {"candidate_loss": cand.detach()}
        loss = cand
        if out.event_logits.numel() > 0 and self.event_weight > 0:
            events = F.binary_cross_entropy_with_logits(out.event_logits, out.event_labels)
            loss = loss + self.event_weight * events
            parts["event_loss"] = events.detach()
        return loss, parts

    def loss(self, batch: Batch) -> Tensor:
        return self.packed_loss(batch)[0]

    def sparse_loss(self, batch: Batch) -> Tensor:
        """Candidates only: each sample is one independent event."""
        return F.binary_cross_entropy_with_logits(self.model(batch), batch.labels[self.label])

    # -- STS schedule ---------------------------------------------------------------------------
    def stage1_steps(self) -> int:
        return round(self.sts_stage1_fraction * float(self.trainer.estimated_stepping_batches))

    def batch_kind(self, step: int) -> str:
        """``packed`` or ``sparse`` for global step ``step`` under ``model.sts``."""
        if self.sts == "two_stage":
            return PACKED if step < self.stage1_steps() else SPARSE
        if self.sts == "alternating":
            return PACKED if step % 2 == 0 else SPARSE
        return PACKED

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        kind = self.batch_kind(self.global_step)
        parts: dict[str, Tensor] = {}
        if kind == PACKED:
            loss, parts = self.packed_loss(batch)
        else:
            loss = self.sparse_loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"Training loss is {loss.item()} at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}, {kind} batch). Try a lower task.optimizer.lr, "
                "task.max_grad_norm=1.0, or check the data for NaN/inf values."
            )
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if kind == SPARSE:
            # Dense parameters are frozen in sparse batches: drop their gradients so the dense
            # optimiser's step (which drives global_step) changes nothing.
            optimizers[0].zero_grad(set_to_none=True)
        elif self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.dense_parameters(), self.max_grad_norm)
        optimizers[0].step()
        for opt in optimizers[1:]:
            opt.optimizer.step()  # the raw optimiser: one batch = one global step
        if self.scheduler_factory is not None and self.scheduler_interval == "step":
            self.lr_schedulers().step()
        n = len(batch)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        for name, value in parts.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=n)
        self.log("train/sts_sparse", float(kind == SPARSE), on_step=True, on_epoch=False, batch_size=n)
        return loss
