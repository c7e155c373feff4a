"""Binary cross-entropy on the task's label; every label of a multi-task model.

A :class:`~recsys_lab.models.base.MultiTaskModel` is trained on each label it predicts with
:class:`~recsys_lab.objectives.multitask.MultiTaskBCE` (``label_weights``); its per-label losses are
logged as ``train/<label>/loss``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel, MultiTaskModel
from recsys_lab.objectives.base import Loss, Objective
from recsys_lab.objectives.multitask import MultiTaskBCE


class BCE(Objective):
    """``BCE(model(batch) [B], labels[label] [B])``; for a multi-task model the weighted sum of
    each label's BCE.

    Args:
        label_weights: multi-task models: label -> loss weight (others weigh 1).
    """

    def __init__(self, label_weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.label_weights = dict(label_weights) if label_weights else None
        self.multitask: MultiTaskBCE | None = None

    def bind(self, model: CTRModel, label: str) -> None:
        super().bind(model, label)
        if isinstance(model, MultiTaskModel):
            self.multitask = MultiTaskBCE(model.labels, self.label_weights)
        elif self.label_weights:
            raise ValueError(
                f"task.label_weights={self.label_weights} needs a multi-task model (model=mmoe, ple, esmm, "
                f"shared_bottom); {type(model).__name__} predicts one label"
            )

    def forward(self, model: CTRModel, batch: Batch) -> Loss:
        if self.multitask is None:
            return Loss(F.binary_cross_entropy_with_logits(model(batch), batch.labels[self.label]))
        total, parts = self.multitask(model.forward_tasks(batch), batch.labels)  # type: ignore[operator]
        return Loss(total, epoch_logs={f"{name}/loss": v.detach() for name, v in parts.items()})
