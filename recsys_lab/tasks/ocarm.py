"""OCARM tasks: the teacher (retention with onboarding content) and the distilled student.

The teacher trains with BCE on ``retention`` from batches that carry ``Batch.privileged``
(``data.privileged=true``); its evaluation batches have no content, so its validation and test
metrics are those of a model trained with leaked features and served without them. The frozen
teacher's representation and prediction are logged per example by :mod:`recsys_lab.das`
(``Batch.teacher["rep"]`` ``[B, Ht]`` and ``Batch.teacher["prob"]`` ``[B]``), so the student's
data never carry onboarding content:

``loss = BCE(student, y) + λ·dist(P·r_s, r_t) + μ·BCE(student, p_t)``, ``dist`` = MSE or 1 − cosine.

The student task refuses any batch with privileged data (a test checks it never gets one).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel
from recsys_lab.tasks.ctr import CTRTask, OptimizerFactory, SchedulerFactory


class OCARMTeacherTask(CTRTask):
    """:class:`CTRTask` on ``retention`` whose training batches must carry onboarding content."""

    def loss(self, batch: Batch) -> Tensor:
        if not batch.privileged or "onboarding" not in batch.privileged:
            raise ValueError(
                "The OCARM teacher trains on onboarding content but the batch has none: set "
                "data.privileged=true and data.rows=conversions"
            )
        return super().loss(batch)


class PrivilegedBatchError(RuntimeError):
    """The student was given a batch with privileged (training-only) data."""


class OCARMStudentTask(CTRTask):
    """Args (beyond :class:`CTRTask`'s):
    rep_weight: λ, weight of the representation distillation (0 = none).
    distance: ``mse`` or ``cosine`` (1 − cosine similarity).
    pred_weight: μ, weight of the BCE against the teacher's prediction (0 = none).
    """

    def __init__(
        self,
        model: CTRModel,
        optimizer: OptimizerFactory,
        sparse_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label: str = "retention",
        max_grad_norm: float | None = None,
        gauc: bool = True,
        rep_weight: float = 1.0,
        distance: str = "mse",
        pred_weight: float = 0.0,
    ) -> None:
        super().__init__(
            model, optimizer, sparse_optimizer, scheduler, scheduler_interval, label, max_grad_norm, gauc
        )
        if distance not in ("mse", "cosine"):
            raise ValueError(f"task.distance={distance!r} is unknown; use mse or cosine")
        if rep_weight < 0 or pred_weight < 0:
            raise ValueError(f"task.rep_weight={rep_weight} and task.pred_weight={pred_weight} must be >= 0")
        self.rep_weight, self.distance, self.pred_weight = float(rep_weight), distance, float(pred_weight)

    def _guard(self, batch: Batch) -> None:
        if batch.privileged is not None:
            raise PrivilegedBatchError(
                "The OCARM student received privileged (onboarding) data; its datamodule must use "
                "data.privileged=false — the teacher's knowledge reaches it only through Batch.teacher"
            )

    def loss(self, batch: Batch) -> Tensor:
        self._guard(batch)
        y = batch.labels[self.label]
        rep, logits = self.model.forward_rep(batch)  # type: ignore[operator]
        loss = F.binary_cross_entropy_with_logits(logits, y)
        if self.rep_weight == 0 and self.pred_weight == 0:
            return loss
        if not batch.teacher or "rep" not in batch.teacher or "prob" not in batch.teacher:
            raise ValueError(
                "Distillation (task.rep_weight or task.pred_weight > 0) needs Batch.teacher['rep'] and "
                "['prob']: set data.teacher_path to the teacher-logging stage's file"
            )
        t_rep, t_prob = batch.teacher["rep"].float(), batch.teacher["prob"].float()
        mask = torch.isfinite(t_prob)
        m = mask.float()
        denom = m.sum().clamp(min=1.0)
        if self.rep_weight > 0:
            proj = self.model.project(rep)  # type: ignore[operator]
            if proj.shape != t_rep.shape:
                raise ValueError(
                    f"The student's projection is {tuple(proj.shape)} but the teacher representation is "
                    f"{tuple(t_rep.shape)}: set model.teacher_dim to the teacher's last hidden width"
                )
            t_rep = torch.nan_to_num(t_rep)
            if self.distance == "mse":
                d = ((proj - t_rep) ** 2).mean(-1)
            else:
                d = 1 - F.cosine_similarity(proj, t_rep, dim=-1)
            loss = loss + self.rep_weight * (d * m).sum() / denom
        if self.pred_weight > 0:
            p = torch.nan_to_num(t_prob).clamp(0, 1)
            bce = F.binary_cross_entropy_with_logits(logits, p, reduction="none")
            loss = loss + self.pred_weight * (bce * m).sum() / denom
        return loss

    def _eval_step(self, batch: Batch, metrics) -> None:  # type: ignore[no-untyped-def]
        self._guard(batch)
        super()._eval_step(batch, metrics)
