"""The temperature-annealing callback of UniMixer-style mixers (Sinkhorn temperature 1.0 -> 0.05)."""

from __future__ import annotations

import math
from typing import Literal, get_args

import lightning as L

from recsys_lab.layers.mixing import AnnealedMixer
from recsys_lab.layers.mlp import check_choice

Schedule = Literal["exponential", "linear"]


def annealed_temperature(progress: float, start: float, end: float, schedule: Schedule) -> float:
    """Temperature at ``progress`` in [0, 1] (clamped): geometric (``start·(end/start)^p``) or linear."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "exponential":
        return start * math.exp(p * math.log(end / start))
    return start + p * (end - start)


class TemperatureAnnealing(L.Callback):
    """Sets the temperature of every :class:`~recsys_lab.layers.mixing.AnnealedMixer` in the model
    before each training batch, from ``start`` at step 0 to ``end`` at the last step of training
    (``total_steps``, or the trainer's ``estimated_stepping_batches`` when None), and logs it as
    ``train/temperature``. Models without such mixers are left alone.

    The temperature is a function of ``global_step`` only, so a resumed run continues the schedule.

    Args:
        start: initial temperature.
        end: final temperature.
        schedule: ``"exponential"`` (geometric) or ``"linear"``.
        total_steps: steps over which to anneal; None = the whole run.
    """

    def __init__(
        self,
        start: float = 1.0,
        end: float = 0.05,
        schedule: Schedule = "exponential",
        total_steps: int | None = None,
    ) -> None:
        check_choice("annealing schedule", schedule, get_args(Schedule))
        if start <= 0 or end <= 0:
            raise ValueError(f"annealing temperatures must be > 0, got start={start}, end={end}")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"annealing total_steps must be >= 1 or null, got {total_steps}")
        self.start, self.end, self.schedule, self.total_steps = start, end, schedule, total_steps
        self.temperature = start

    def _total(self, trainer: L.Trainer) -> int:
        if self.total_steps is not None:
            return self.total_steps
        total = trainer.estimated_stepping_batches
        return max(int(total), 1) if math.isfinite(total) else 1

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        mixers = [m for m in pl_module.modules() if isinstance(m, AnnealedMixer)]
        if not mixers:
            return
        total = self._total(trainer)
        progress = trainer.global_step / max(total - 1, 1)
        self.temperature = annealed_temperature(progress, self.start, self.end, self.schedule)
        for m in mixers:
            m.set_temperature(self.temperature)
        pl_module.log("train/temperature", self.temperature, on_step=True, on_epoch=False)
