"""GRAB's every-event loss (``task=grab``; METHODS.md, "GRAB").

``loss = BCE(candidates) + event_weight · BCE(history events)``: each history event's own click is
predicted from the tokens before it (GRAB keeps every token's own action out of its prediction; see
``recsys_lab/models/grab.py``), so one packed batch carries many training examples per user besides
its candidates. A model without every-event outputs (not GRAB) trains on its candidates only.
The sequence-then-sparse schedule that alternates these packed batches with candidate-only ones is
:class:`recsys_lab.tasks.schedule.STS`.
"""

from __future__ import annotations

import warnings

import torch.nn.functional as F

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel
from recsys_lab.models.grab import GRAB
from recsys_lab.objectives.base import Loss, Objective


class EveryEventBCE(Objective):
    """Args:
    event_weight: weight of the history events' BCE (0 = candidates only).
    """

    def __init__(self, event_weight: float = 1.0) -> None:
        super().__init__()
        if event_weight < 0:
            raise ValueError(f"task.objective.event_weight must be >= 0, got {event_weight}")
        self.event_weight = float(event_weight)

    def bind(self, model: CTRModel, label: str) -> None:
        super().bind(model, label)
        if not isinstance(model, GRAB):
            warnings.warn(
                f"task=grab with model {type(model).__name__}: no every-event outputs, so it trains on the "
                "candidates only (use model=grab for the every-event loss and STS)",
                stacklevel=2,
            )

    def forward(self, model: CTRModel, batch: Batch) -> Loss:
        y = batch.labels[self.label]
        if not isinstance(model, GRAB):
            loss = F.binary_cross_entropy_with_logits(model(batch), y)
            return Loss(loss, logs={"candidate_loss": loss.detach()})
        out = model.forward_events(batch)
        cand = F.binary_cross_entropy_with_logits(out.candidate_logits, y)
        logs = {"candidate_loss": cand.detach()}
        loss = cand
        if out.event_logits.numel() > 0 and self.event_weight > 0:
            events = F.binary_cross_entropy_with_logits(out.event_logits, out.event_labels)
            loss = loss + self.event_weight * events
            logs["event_loss"] = events.detach()
        return Loss(loss, logs=logs)
