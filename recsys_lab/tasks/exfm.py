"""ExFMTask: a vertical model (VM) trained on the true label and on the FM's logged predictions.

``Batch.teacher[teacher_key]`` holds the foundation model's prediction ``ŷ_FM`` for each example
(written by the data augmentation stage, :mod:`recsys_lab.das`; NaN where none was logged — those
rows get no distillation loss). ``distill`` picks the ablation:

- ``none``: BCE(serving, y) — no foundation model.
- ``serving``: BCE(serving, y) + w·BCE(serving, min(α·ŷ_FM, 1)) — distillation into the serving head.
- ``aux``: BCE(serving, y) + w·BCE(aux, min(α·ŷ_FM, 1)) — the auxiliary head (its gradient into
  the backbone is scaled by ``model.beta``); the serving head never sees the FM label.
- ``aux_adapter``: ``aux`` plus the student adapter: a tiny MLP maps logit(ŷ_FM) to a recalibrated
  prediction trained on the fresh true labels; each training step first updates the adapter (its
  own Adam optimiser), then the VM, whose auxiliary head also fits the adapter's stop-gradient
  output with weight ``adapter_weight``.

Evaluation uses the serving head only (:meth:`CTRTask.forward`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_lab.data.batch import Batch
from recsys_lab.layers.mlp import MLP
from recsys_lab.models.base import CTRModel
from recsys_lab.tasks.ctr import CTRTask, OptimizerFactory, SchedulerFactory

DISTILL_MODES = ("none", "serving", "aux", "aux_adapter")
_EPS = 1e-6


class ExFMTask(CTRTask):
    """Args (beyond :class:`CTRTask`'s):
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
        model: CTRModel,
        optimizer: OptimizerFactory,
        sparse_optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label: str = "click",
        max_grad_norm: float | None = None,
        gauc: bool = True,
        distill: str = "aux",
        teacher_key: str = "fm",
        alpha: float = 1.0,
        weight: float = 1.0,
        adapter_hidden: int = 8,
        adapter_lr: float = 1e-2,
        adapter_weight: float = 1.0,
    ) -> None:
        super().__init__(
            model, optimizer, sparse_optimizer, scheduler, scheduler_interval, label, max_grad_norm, gauc
        )
        if distill not in DISTILL_MODES:
            raise ValueError(f"task.distill={distill!r} is unknown; use one of {list(DISTILL_MODES)}")
        if alpha <= 0 or weight < 0 or adapter_weight < 0:
            raise ValueError(
                f"task.alpha={alpha} must be > 0 and task.weight={weight}, task.adapter_weight="
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

    def check_model(self) -> None:
        """Fail early when the ablation needs an auxiliary head the model does not have."""
        if self.distill in ("aux", "aux_adapter") and getattr(self.model, "aux_head", None) is None:
            raise ValueError(
                f"task.distill={self.distill} needs a model with an auxiliary head (model=exfm_vm with "
                "model.aux_head=true); use task.distill=serving or none for other models"
            )

    def on_fit_start(self) -> None:
        self.check_model()

    def teacher_targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(ŷ_FM [B] with NaN -> 0, mask [B] bool of rows with a logged prediction)``."""
        if not batch.teacher or self.teacher_key not in batch.teacher:
            raise ValueError(
                f"task.distill={self.distill} needs Batch.teacher[{self.teacher_key!r}] (the FM's logged "
                "predictions): set data.teacher_path to the DAS stage's file"
            )
        t = batch.teacher[self.teacher_key].float()
        mask = torch.isfinite(t)
        return torch.nan_to_num(t, nan=0.0).clamp(_EPS, 1 - _EPS), mask

    def adapter_logits(self, t: Tensor) -> Tensor:
        """Student adapter: ``ŷ_FM [B]`` -> recalibrated logits ``[B]``."""
        assert self.adapter is not None
        return self.adapter(torch.logit(t).unsqueeze(-1)).squeeze(-1)

    def _adapter_step(self, t: Tensor, y: Tensor, mask: Tensor) -> None:
        """One update of the adapter on the fresh true labels (rows with a logged prediction)."""
        assert self.adapter_optimizer is not None
        if not bool(mask.any()):
            return
        with torch.enable_grad():
            loss = F.binary_cross_entropy_with_logits(self.adapter_logits(t[mask]), y[mask])
            self.adapter_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.adapter_optimizer.step()

    def loss(self, batch: Batch) -> Tensor:
        """The VM's training loss. With ``aux_adapter`` and gradients enabled, it first updates the
        adapter (one step), so the VM then distils the adapter's updated, stop-gradient output."""
        y = batch.labels[self.label]
        if self.distill == "none":
            return F.binary_cross_entropy_with_logits(self.model(batch), y)
        t, mask = self.teacher_targets(batch)
        soft = (self.alpha * t).clamp(max=1.0)
        m = mask.float()
        denom = m.sum().clamp(min=1.0)
        if self.distill == "serving":
            serving = self.model(batch)
            distill = (F.binary_cross_entropy_with_logits(serving, soft, reduction="none") * m).sum() / denom
            return F.binary_cross_entropy_with_logits(serving, y) + self.weight * distill
        self.check_model()
        serving, aux = self.model.forward_heads(batch)  # type: ignore[operator]
        loss = F.binary_cross_entropy_with_logits(serving, y)
        distill = (F.binary_cross_entropy_with_logits(aux, soft, reduction="none") * m).sum() / denom
        loss = loss + self.weight * distill
        if self.distill == "aux_adapter":
            if torch.is_grad_enabled():
                self._adapter_step(t, y, mask)
            with torch.no_grad():
                target = torch.sigmoid(self.adapter_logits(t))  # stop-gradient
            adapted = (F.binary_cross_entropy_with_logits(aux, target, reduction="none") * m).sum() / denom
            loss = loss + self.adapter_weight * adapted
        return loss

    # The adapter's optimiser is not Lightning's: keep its state in the checkpoint.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.adapter_optimizer is not None:
            checkpoint["adapter_optimizer"] = self.adapter_optimizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.adapter_optimizer is not None and "adapter_optimizer" in checkpoint:
            self.adapter_optimizer.load_state_dict(checkpoint["adapter_optimizer"])
