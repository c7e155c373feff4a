"""Distillation objectives: ExFM (a vertical model taught by a foundation model's logged
predictions) and OCARM (a retention teacher with onboarding content, and its student).

**ExFM** (``task=exfm_student``). ``Batch.teacher[teacher_key]`` holds the foundation model's
prediction ``ŷ_FM`` for each example (written by the data augmentation stage; NaN where none was
logged — those rows get no distillation loss). ``distill`` picks the ablation:

- ``none``: BCE(serving, y) — no foundation model.
- ``serving``: BCE(serving, y) + w·BCE(serving, min(α·ŷ_FM, 1)) — distillation into the serving head.
- ``aux``: BCE(serving, y) + w·BCE(aux, min(α·ŷ_FM, 1)) — the auxiliary head (its gradient into
  the backbone is scaled by ``model.beta``); the serving head never sees the FM label.
- ``aux_adapter``: ``aux`` plus the student adapter: a tiny MLP maps logit(ŷ_FM) to a recalibrated
  prediction trained on the fresh true labels; each training step first updates the adapter (its
  own Adam optimiser), then the VM, whose auxiliary head also fits the adapter's stop-gradient
  output with weight ``adapter_weight``. The adapter and its optimiser's state are the objective's
  state (``objective.adapter.*``, ``objective._extra_state``), so they checkpoint with the task.

**OCARM** (``task=ocarm_teacher`` / ``ocarm_student``). The teacher trains with BCE on
``retention`` from batches that carry ``Batch.privileged`` (``data.privileged=true``); its
evaluation batches have none. The student's data never carry onboarding content: the frozen
teacher's representation and prediction reach it as ``Batch.teacher["rep"]`` ``[B, Ht]`` and
``Batch.teacher["prob"]`` ``[B]``:
``loss = BCE(student, y) + λ·dist(P·r_s, r_t) + μ·BCE(student, p_t)``, ``dist`` = MSE or 1 − cosine.
The student's objective refuses any training or evaluation batch with privileged data.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.layers.mlp import MLP
from recsys_lab.models.base import CTRModel
from recsys_lab.objectives.base import Loss, Objective
from recsys_lab.objectives.bce import BCE

DISTILL_MODES = ("none", "serving", "aux", "aux_adapter")
_EPS = 1e-6


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values [B]`` over the rows where ``mask [B]`` is set (0 when none is)."""
    m = mask.float()
    return (values * m).sum() / m.sum().clamp(min=1.0)


class ExFMDistillation(Objective):
    """Args:
    distill: ``none`` | ``serving`` | ``aux`` | ``aux_adapter`` (see the module docstring).
    teacher_key: key of ``Batch.teacher`` with the FM's predictions.
    alpha: label scaling of the soft label ``min(alpha·ŷ_FM, 1)``.
    weight: w, the weight of the distillation loss.
    adapter_hidden: hidden width of the student adapter's MLP.
    adapter_lr: learning rate of the adapter's Adam optimiser.
    adapter_weight: weight of the adapter's target in the auxiliary loss.
    """

    def __init__(
        self,
        distill: str = "aux",
        teacher_key: str = "fm",
        alpha: float = 1.0,
        weight: float = 1.0,
        adapter_hidden: int = 8,
        adapter_lr: float = 1e-2,
        adapter_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if distill not in DISTILL_MODES:
            raise ValueError(
                f"task.objective.distill={distill!r} is unknown; use one of {list(DISTILL_MODES)}"
            )
        if alpha <= 0 or weight < 0 or adapter_weight < 0:
            raise ValueError(
                f"task.objective.alpha={alpha} must be > 0 and task.objective.weight={weight}, task.objective.adapter_weight="
                f"{adapter_weight} >= 0"
            )
        self.distill = distill
        self.teacher_key = teacher_key
        self.alpha, self.weight, self.adapter_weight = float(alpha), float(weight), float(adapter_weight)
        self.adapter: MLP | None = None
        self.adapter_optimizer: torch.optim.Optimizer | None = None
        if distill == "aux_adapter":
            self.adapter = MLP(1, [adapter_hidden], 1, "relu")
            self.adapter_optimizer = torch.optim.Adam(self.adapter.parameters(), lr=adapter_lr)

    def bind(self, model: CTRModel, label: str) -> None:
        """Fail early when the ablation needs an auxiliary head the model does not have."""
        super().bind(model, label)
        if self.distill in ("aux", "aux_adapter") and getattr(model, "aux_head", None) is None:
            raise ValueError(
                f"task.objective.distill={self.distill} needs a model with an auxiliary head (model=exfm_vm with "
                "model.aux_head=true); use task.objective.distill=serving or none for other models"
            )

    def teacher_targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(ŷ_FM [B] with NaN -> 0, mask [B] bool of rows with a logged prediction)``."""
        if not batch.teacher or self.teacher_key not in batch.teacher:
            raise ValueError(
                f"task.objective.distill={self.distill} needs Batch.teacher[{self.teacher_key!r}] (the FM's logged "
                "predictions): set data.teacher_path to the DAS stage's file"
            )
        t = batch.teacher[self.teacher_key].float()
        mask = torch.isfinite(t)
        return torch.nan_to_num(t, nan=0.0).clamp(_EPS, 1 - _EPS), mask

    def adapter_logits(self, t: Tensor) -> Tensor:
        """Student adapter: ``ŷ_FM [B]`` -> recalibrated logits ``[B]``."""
        assert self.adapter is not None
        return self.adapter(torch.logit(t).unsqueeze(-1)).squeeze(-1)

    def adapter_step(self, t: Tensor, y: Tensor, mask: Tensor) -> None:
        """One update of the adapter on the fresh true labels (rows with a logged prediction)."""
        assert self.adapter_optimizer is not None
        if not bool(mask.any()):
            return
        with torch.enable_grad():
            loss = F.binary_cross_entropy_with_logits(self.adapter_logits(t[mask]), y[mask])
            self.adapter_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.adapter_optimizer.step()

    def forward(self, model: CTRModel, batch: Batch) -> Loss:
        """The VM's training loss. With ``aux_adapter`` and gradients enabled, it first updates the
        adapter (one step), so the VM then distils the adapter's updated, stop-gradient output."""
        y = batch.labels[self.label]
        if self.distill == "none":
            return Loss(F.binary_cross_entropy_with_logits(model(batch), y))
        t, mask = self.teacher_targets(batch)
        soft = (self.alpha * t).clamp(max=1.0)
        if self.distill == "serving":
            serving = model(batch)
            distill = _masked_mean(F.binary_cross_entropy_with_logits(serving, soft, reduction="none"), mask)
            return Loss(F.binary_cross_entropy_with_logits(serving, y) + self.weight * distill)
        serving, aux = model.forward_heads(batch)  # type: ignore[operator]
        loss = F.binary_cross_entropy_with_logits(serving, y)
        distill = _masked_mean(F.binary_cross_entropy_with_logits(aux, soft, reduction="none"), mask)
        loss = loss + self.weight * distill
        if self.distill == "aux_adapter":
            if torch.is_grad_enabled():
                self.adapter_step(t, y, mask)
            with torch.no_grad():
                target = torch.sigmoid(self.adapter_logits(t))  # stop-gradient
            adapted = _masked_mean(F.binary_cross_entropy_with_logits(aux, target, reduction="none"), mask)
            loss = loss + self.adapter_weight * adapted
        return Loss(loss)

    # The adapter's optimiser is not the task's: its state travels in the objective's state_dict.
    def get_extra_state(self) -> Any:
        return None if self.adapter_optimizer is None else self.adapter_optimizer.state_dict()

    def set_extra_state(self, state: Any) -> None:
        if self.adapter_optimizer is not None and state is not None:
            self.adapter_optimizer.load_state_dict(state)


class OCARMTeacherBCE(BCE):
    """:class:`BCE` (on ``retention``) whose training batches must carry onboarding content."""

    def forward(self, model: CTRModel, batch: Batch) -> Loss:
        if not batch.privileged or "onboarding" not in batch.privileged:
            raise ValueError(
                "The OCARM teacher trains on onboarding content but the batch has none: set "
                "data.privileged=true and data.rows=conversions"
            )
        return super().forward(model, batch)


class PrivilegedBatchError(RuntimeError):
    """The student was given a batch with privileged (training-only) data."""


class OCARMAlignment(Objective):
    """The OCARM student's loss (see the module docstring).

    Args:
        rep_weight: λ, weight of the representation distillation (0 = none).
        distance: ``mse`` or ``cosine`` (1 − cosine similarity).
        pred_weight: μ, weight of the BCE against the teacher's prediction (0 = none).
    """

    def __init__(self, rep_weight: float = 1.0, distance: str = "mse", pred_weight: float = 0.0) -> None:
        super().__init__()
        if distance not in ("mse", "cosine"):
            raise ValueError(f"task.objective.distance={distance!r} is unknown; use mse or cosine")
        if rep_weight < 0 or pred_weight < 0:
            raise ValueError(
                f"task.objective.rep_weight={rep_weight} and task.objective.pred_weight={pred_weight} must be >= 0"
            )
        self.rep_weight, self.distance, self.pred_weight = float(rep_weight), distance, float(pred_weight)

    @staticmethod
    def guard(batch: Batch) -> None:
        if batch.privileged is not None:
            raise PrivilegedBatchError(
                "The OCARM student received privileged (onboarding) data; its datamodule must use "
                "data.privileged=false — the teacher's knowledge reaches it only through Batch.teacher"
            )

    def forward(self, model: CTRModel, batch: Batch) -> Loss:
        self.guard(batch)
        y = batch.labels[self.label]
        rep, logits = model.forward_rep(batch)  # type: ignore[operator]
        loss = F.binary_cross_entropy_with_logits(logits, y)
        if self.rep_weight == 0 and self.pred_weight == 0:
            return Loss(loss)
        if not batch.teacher or "rep" not in batch.teacher or "prob" not in batch.teacher:
            raise ValueError(
                "Distillation (task.objective.rep_weight or task.objective.pred_weight > 0) needs Batch.teacher['rep'] and "
                "['prob']: set data.teacher_path to the teacher-logging stage's file"
            )
        t_rep, t_prob = batch.teacher["rep"].float(), batch.teacher["prob"].float()
        mask = torch.isfinite(t_prob)
        if self.rep_weight > 0:
            proj = model.project(rep)  # type: ignore[operator]
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
            loss = loss + self.rep_weight * _masked_mean(d, mask)
        if self.pred_weight > 0:
            p = torch.nan_to_num(t_prob).clamp(0, 1)
            bce = F.binary_cross_entropy_with_logits(logits, p, reduction="none")
            loss = loss + self.pred_weight * _masked_mean(bce, mask)
        return Loss(loss)

    def eval_logs(self, model: CTRModel, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        self.guard(batch)
        return {}
