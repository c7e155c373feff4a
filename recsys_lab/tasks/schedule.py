"""Training schedules: which kind of batch each optimiser step is.

A schedule says, for global step ``step``, whether the batch is *packed* (the objective's full loss;
every optimiser steps) or *sparse* (the objective's :meth:`~recsys_lab.objectives.base.Objective.candidate_loss`,
each sample an independent example; only the embedding optimiser steps, the dense parameters stay
frozen). :class:`~recsys_lab.tasks.ctr.CTRTask` without a schedule trains on packed batches only.

:class:`STS` is GRAB's sequence-then-sparse training (METHODS.md, "GRAB"): ``off`` packed batches
only; ``two_stage`` the first ``stage1_fraction`` of the run's optimiser steps packed, the rest
sparse; ``alternating`` even global steps packed, odd steps sparse. Every batch is one global step in
all modes, so a resumed run picks up the same schedule.
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

PACKED, SPARSE = "packed", "sparse"
BatchKind = Literal["packed", "sparse"]
STSMode = Literal["off", "two_stage", "alternating"]


class Schedule(Protocol):
    """What :class:`~recsys_lab.tasks.ctr.CTRTask` asks of a schedule."""

    @property
    def freezes_dense(self) -> bool:
        """Whether some steps train the embedding tables alone (they need their own optimiser)."""
        ...

    def start(self, total_steps: float | None) -> None:
        """Called when training starts with the run's number of optimiser steps (None = unknown)."""
        ...

    def batch_kind(self, step: int) -> BatchKind:
        """``packed`` or ``sparse`` for global step ``step``."""
        ...


class STS:
    """Sequence-then-sparse schedule (``task.schedule``; ``mode`` defaults to ``model.sts``).

    Args:
        mode: ``off`` | ``two_stage`` | ``alternating``.
        stage1_fraction: share of the run's steps in stage 1 under ``two_stage``.
    """

    def __init__(self, mode: STSMode = "off", stage1_fraction: float = 0.5) -> None:
        if mode not in get_args(STSMode):
            raise ValueError(
                f"task.schedule.mode (model.sts)={mode!r} is unknown; use off, two_stage or alternating"
            )
        if not 0.0 <= stage1_fraction <= 1.0:
            raise ValueError(f"task.schedule.stage1_fraction must be in [0, 1], got {stage1_fraction}")
        self.mode = mode
        self.stage1_fraction = float(stage1_fraction)
        self.total_steps: float | None = None

    @property
    def freezes_dense(self) -> bool:
        return self.mode != "off"

    def start(self, total_steps: float | None) -> None:
        self.total_steps = total_steps

    def __repr__(self) -> str:
        return f"STS(mode={self.mode!r}, stage1_fraction={self.stage1_fraction})"

    def stage1_steps(self) -> int:
        if self.total_steps is None or self.total_steps == float("inf"):
            raise ValueError(
                "task.schedule.mode=two_stage splits the run's steps, but their number is unknown here: "
                "set trainer.max_steps or trainer.max_epochs, or use mode=alternating"
            )
        return round(self.stage1_fraction * float(self.total_steps))

    def batch_kind(self, step: int) -> BatchKind:
        if self.mode == "two_stage":
            return PACKED if step < self.stage1_steps() else SPARSE
        if self.mode == "alternating":
            return PACKED if step % 2 == 0 else SPARSE
        return PACKED
