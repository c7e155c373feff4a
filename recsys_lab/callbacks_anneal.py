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
    before each training batch, from ``start`` at step 0 to ``end`` at the last annealing step
    (``total_steps``; or the last step of the first ``total_epochs`` epochs; or, when both are None,
    of the whole run, the trainer's ``estimated_stepping_batches``), then holds ``end``; it logs it
    as ``train/temperature``. Models without such mixers are left alone.

    The temperature is a function of ``global_step`` only, so a resumed run continues the schedule.
    ``total_epochs`` makes the annealing end at an epoch boundary whatever the run's length, e.g.
    before an early-stopped or over-fitting run's best epoch (``scripts/claims_mixers.py``).

    Args:
        start: initial temperature.
        end: final temperature.
        schedule: ``"exponential"`` (geometric) or ``"linear"``.
        total_steps: steps over which to anneal; None = ``total_epochs`` or the whole run.
        total_epochs: epochs over which to anneal (steps = ceil(total_epochs × the run's steps /
            ``max_epochs``)); only when ``total_steps`` is None.
    """

    def __init__(
        self,
        start: float = 1.0,
        end: float = 0.05,
        schedule: Schedule = "exponential",
        total_steps: int | None = None,
        total_epochs: float | None = None,
    ) -> None:
        check_choice("annealing schedule", schedule, get_args(Schedule))
        if start <= 0 or end <= 0:
            raise ValueError(f"annealing temperatures must be > 0, got start={start}, end={end}")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"annealing total_steps must be >= 1 or null, got {total_steps}")
        if total_epochs is not None and (total_epochs <= 0 or total_steps is not None):
            raise ValueError(
                f"annealing total_epochs must be > 0 and total_steps null when it is set, got "
                f"total_epochs={total_epochs}, total_steps={total_steps}"
            )
        self.start, self.end, self.schedule, self.total_steps = start, end, schedule, total_steps
        self.total_epochs = total_epochs
        self.temperature = start

    def _total(self, trainer: L.Trainer) -> int:
        if self.total_steps is not None:
            return self.total_steps
        total = trainer.estimated_stepping_batches
        if self.total_epochs is not None:
            if not (math.isfinite(total) and trainer.max_epochs and trainer.max_epochs > 0):
                raise ValueError(
                    "annealing over total_epochs needs a run of known length (trainer.max_epochs > 0 "
                    "and a sized training dataloader); set callbacks.temperature_annealing.total_steps"
                )
            total = math.ceil(self.total_epochs * total / trainer.max_epochs)
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
