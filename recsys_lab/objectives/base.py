"""The objective contract: a training loss of a :class:`~recsys_lab.models.base.CTRModel` on a
:class:`~recsys_lab.data.batch.Batch`, as a plain ``nn.Module`` (no Lightning).

:class:`~recsys_lab.tasks.ctr.CTRTask` owns the model, the optimisers and the metrics; it hands the
model and each batch to its objective. An objective may hold state of its own (ExFM's adapter and
its optimiser): it is part of the task's ``state_dict``, under ``objective.*``, so it checkpoints.

B = batch size. Every loss is a scalar; ``logs`` are detached scalars the task logs as
``train/<name>`` (``logs``: every step and per epoch; ``epoch_logs``: per epoch only).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel


@dataclass
class Loss:
    """A training loss and what to log beside it."""

    value: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)
    epoch_logs: dict[str, Tensor] = field(default_factory=dict)


class Objective(nn.Module, abc.ABC):
    """Base of every objective. Subclasses implement :meth:`forward`; the hooks have defaults.

    Hooks:
        bind: called once by the task with its model and label; check the model fits here.
        forward: the training loss of a (packed) batch.
        candidate_loss: the loss of a batch whose samples are independent examples (the *sparse*
            batches of GRAB's STS schedule): BCE of the model's logits by default.
        trains_every_event: whether the loss scores every history event (``data.packing=user``).
        eval_logs: extra ``<split>/<name>`` metrics of an evaluation batch (e.g. InfoNCE), and the
            place to refuse an evaluation batch the objective must never see.
    """

    label: str = "click"

    def bind(self, model: CTRModel, label: str) -> None:
        self.label = label

    @abc.abstractmethod
    def forward(self, model: CTRModel, batch: Batch) -> Loss:
        """The loss of ``model`` on ``batch`` (and what to log beside it)."""

    def trains_every_event(self, model: CTRModel) -> bool:
        """Whether the loss scores every history event of a batch, not only the candidates (packed
        training data, ``data.packing=user``, needs it)."""
        return False

    def candidate_loss(self, model: CTRModel, batch: Batch) -> Loss:
        return Loss(F.binary_cross_entropy_with_logits(model(batch), batch.labels[self.label]))

    def eval_logs(self, model: CTRModel, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return {}
