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
from recsys_lab.data.packing import Packing, check_packing
from recsys_lab.models.base import CTRModel
from recsys_lab.models.grab import GRAB
from recsys_lab.objectives.base import Loss, Objective


class EveryEventBCE(Objective):
    """Args:
    event_weight: weight w of a history event's BCE relative to a candidate's (0 = candidates only).
    packing: the training data's ``data.packing`` (``conf/task/grab.yaml`` reads it):

        - ``sample``: ``mean BCE(candidates) + w · mean BCE(history events)`` (each sample's
          history overlaps other samples', so the events' mean is one term beside the candidates');
        - ``user``: every event of a packed segment is a distinct training example and the
          candidate is just its last event, so the loss is the weighted mean over all of them,
          ``(Σ BCE(candidates) + w · Σ BCE(history events)) / (B + w · M)``: with w = 1 each event
          and candidate weighs the same.
    """

    def __init__(self, event_weight: float = 1.0, packing: Packing = "sample") -> None:
        super().__init__()
        if event_weight < 0:
            raise ValueError(f"task.objective.event_weight must be >= 0, got {event_weight}")
        self.event_weight = float(event_weight)
        self.packing = check_packing(packing, "task.objective (EveryEventBCE)")

    def trains_every_event(self, model: CTRModel) -> bool:
        return isinstance(model, GRAB) and self.event_weight > 0

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
        if self.packing == "user":
            cand_sum = F.binary_cross_entropy_with_logits(out.candidate_logits, y, reduction="sum")
            event_sum = F.binary_cross_entropy_with_logits(
                out.event_logits, out.event_labels, reduction="sum"
            )
            m = out.event_logits.numel()
            loss = (cand_sum + self.event_weight * event_sum) / (y.numel() + self.event_weight * m)
            if m > 0:
                logs["event_loss"] = (event_sum / m).detach()
            return Loss(loss, logs=logs)
        if out.event_logits.numel() > 0 and self.event_weight > 0:
            events = F.binary_cross_entropy_with_logits(out.event_logits, out.event_labels)
            loss = loss + self.event_weight * events
            logs["event_loss"] = events.detach()
        return Loss(loss, logs=logs)
