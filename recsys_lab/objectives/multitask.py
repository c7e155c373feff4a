"""Multi-label binary cross-entropy: one BCE per label, weighted and summed.

B = batch size. Each label's logits and 0/1 targets are ``[B]``; a target that is NaN is a
missing label and does not count (e.g. a conversion label not yet known).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiTaskBCE(nn.Module):
    """``loss = Σ_t w_t · BCE(logits_t, y_t)``, each BCE a mean over the samples whose label is known.

    Args:
        labels: the labels, primary first.
        weights: label -> weight (labels not named weigh 1.0).
    """

    def __init__(self, labels: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.labels = tuple(labels)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"MultiTaskBCE needs distinct labels, got {list(labels)}")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.labels))
        if unknown:
            raise ValueError(
                f"task.label_weights names {unknown}, which are not labels of the model ({list(self.labels)})"
            )
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"task.label_weights must be >= 0, got {weights}")
        self.weights = {label: float(weights.get(label, 1.0)) for label in self.labels}

    def forward(
        self, logits: Mapping[str, Tensor], targets: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``logits`` and ``targets``: label -> ``[B]``. Returns the weighted total and each label's BCE."""
        missing = [label for label in self.labels if label not in targets]
        if missing:
            raise ValueError(
                f"The model predicts {list(self.labels)} but the batch has no label {missing} (it has "
                f"{sorted(targets)}). Use data with these labels (data=synthetic_seq has click and "
                "conversion; data=tabular reads data.labels) or set model.labels to the data's labels."
            )
        parts: dict[str, Tensor] = {}
        total = torch.zeros((), device=next(iter(logits.values())).device)
        for label in self.labels:
            y = targets[label].to(logits[label].dtype)
            known = ~torch.isnan(y)
            if bool(((y[known] != 0) & (y[known] != 1)).any()):
                raise ValueError(
                    f"Label {label!r} holds values other than 0 and 1 (e.g. {y[known].unique()[:5].tolist()}); "
                    "a BCE objective needs 0/1 labels. Leave it out of model.labels."
                )
            parts[label] = (
                F.binary_cross_entropy_with_logits(logits[label][known], y[known])
                if bool(known.any())
                else logits[label].sum() * 0.0  # keeps the graph (and DDP) happy with no known label
            )
            total = total + self.weights[label] * parts[label]
        return total, parts
