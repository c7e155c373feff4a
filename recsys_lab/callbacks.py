"""Lightning callbacks used by the default callback config."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.runners.threads import CpuLoad, available_cpus, threads_for

log = logging.getLogger(__name__)


class Throughput(L.Callback):
    """Measures training samples per second over the training batches (data loading included,
    validation excluded) and logs ``train/samples_per_s`` at each epoch end."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._epoch_start = 0.0
        self._last_batch_end = 0.0
        self._epoch_samples = 0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._epoch_samples = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: Batch, batch_idx: int
    ) -> None:
        self._epoch_samples += len(batch)
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.samples += self._epoch_samples
        self.seconds += self._last_batch_end - self._epoch_start
        if self.seconds > 0:
            pl_module.log("train/samples_per_s", self.samples_per_s)

    def state_dict(self) -> dict[str, float]:
        return {"samples": self.samples, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.samples = int(state_dict["samples"])
        self.seconds = float(state_dict["seconds"])


class DivergenceError(RuntimeError):
    """Training blew up: the loss rose far above its starting level or a weight became non-finite."""


def _batch_loss(outputs: object) -> float | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return float(loss.detach())
    return None


class DivergenceGuard(L.Callback):
    """Stops a run whose training diverges, naming the step, the loss and what to try.

    The reference level is the lowest loss of the first ``warmup_steps`` batches (the untrained
    model's loss, before any blow-up; within those batches, the lowest so far). From the second
    batch on, an exponential moving average of the batch loss (weight ``ema`` on the newest) above
    ``factor`` times the reference stops the run, and so do non-finite parameters, checked every
    ``check_params_every`` steps. The guard's state travels in
    checkpoints, so a resumed run keeps its reference. Disable with ``callbacks.divergence=null``.
    """

    def __init__(
        self, factor: float = 10.0, warmup_steps: int = 20, ema: float = 0.1, check_params_every: int = 100
    ) -> None:
        if factor <= 1 or warmup_steps < 1 or not 0 < ema <= 1 or check_params_every < 1:
            raise ValueError(
                "DivergenceGuard needs factor > 1, warmup_steps >= 1, 0 < ema <= 1, check_params_every >= 1"
            )
        self.factor = factor
        self.warmup_steps = warmup_steps
        self.ema_weight = ema
        self.check_params_every = check_params_every
        self.steps = 0
        self.reference = math.inf
        self.smoothed: float | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: Batch, batch_idx: int
    ) -> None:
        loss = _batch_loss(outputs)
        if loss is None:
            return
        self.steps += 1
        if not math.isfinite(loss):
            self._stop(trainer, f"the training loss is {loss}")
        self.smoothed = (
            loss if self.smoothed is None else self.ema_weight * loss + (1 - self.ema_weight) * self.smoothed
        )
        if self.steps <= self.warmup_steps:
            self.reference = min(self.reference, loss)
        if self.steps > 1 and self.reference > 0 and self.smoothed > self.factor * self.reference:
            self._stop(
                trainer,
                f"the smoothed training loss {self.smoothed:.4g} is {self.smoothed / self.reference:.3g}× its "
                f"starting level {self.reference:.4g} (limit {self.factor:g}×)",
            )
        if self.steps % self.check_params_every == 0:
            bad = next((n for n, p in pl_module.named_parameters() if not torch.isfinite(p).all()), None)
            if bad is not None:
                self._stop(trainer, f"parameter {bad} holds NaN or infinite values")

    def _stop(self, trainer: L.Trainer, what: str) -> None:
        raise DivergenceError(
            f"Training diverged at global step {trainer.global_step} (epoch {trainer.current_epoch}): {what}. "
            "Try a lower learning rate (task.optimizer.lr, task.sparse_optimizer.lr), gradient clipping "
            "(task.max_grad_norm=1.0), or a warm-up schedule; to train on regardless, disable this check "
            "with callbacks.divergence=null."
        )

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "reference": self.reference, "smoothed": self.smoothed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = int(state_dict["steps"])
        self.reference = float(state_dict["reference"])
        self.smoothed = state_dict["smoothed"]


class StepCheckpoint(L.Callback):
    """Writes ``last.ckpt`` during an epoch, every ``every_n_steps`` steps or ``every_minutes``
    minutes (whichever comes first; None turns either off), so a killed run loses minutes, not an
    epoch. The datamodules' loaders save their position in the epoch, so a run resumed from such a
    checkpoint continues from the exact next batch. The epoch-end ``last.ckpt`` of
    ``ModelCheckpoint`` (same file) is left to that callback.
    """

    def __init__(
        self, dirpath: str, every_n_steps: int | None = None, every_minutes: float | None = 10.0
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or null, got {every_n_steps}")
        if every_minutes is not None and every_minutes <= 0:
            raise ValueError(f"every_minutes must be > 0 or null, got {every_minutes}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.every_s = None if every_minutes is None else every_minutes * 60.0
        self._last_save = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: Batch, batch_idx: int
    ) -> None:
        if trainer.sanity_checking or batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's end is checkpointed by ModelCheckpoint after validation
        due_steps = self.every_n_steps is not None and trainer.global_step % self.every_n_steps == 0
        due_time = self.every_s is not None and time.monotonic() - self._last_save >= self.every_s
        if due_steps or due_time:
            trainer.save_checkpoint(self.path)
            self._last_save = time.monotonic()


class RngState(L.Callback):
    """Saves the Python, NumPy and torch random states in checkpoints and restores them on resume,
    so dropout, sampled negatives and the like continue exactly as in an uninterrupted run."""

    def state_dict(self) -> dict[str, Any]:
        # Plain types and tensors only, so checkpoints still load with torch.load(weights_only=True).
        _, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": pos,
                "has_gauss": has_gauss,
                "gauss": gauss,
            },
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        n = state_dict["numpy"]
        np.random.set_state(
            (
                "MT19937",
                n["keys"].numpy().astype(np.uint32),
                int(n["pos"]),
                int(n["has_gauss"]),
                float(n["gauss"]),
            )
        )
        torch.set_rng_state(state_dict["torch"])


class AdaptiveThreads(L.Callback):
    """Re-chooses torch's intra-op threads every ``every_s`` seconds of training from the load other
    processes put on the machine meanwhile (:func:`~recsys_lab.runners.threads.threads_for`), so a
    run started on an idle machine does not collapse when something else starts beside it. Does
    nothing when ``num_threads`` is fixed (not None). ``jobs``: runs sharing the machine by design.
    """

    def __init__(self, num_threads: int | None = None, jobs: int = 1, every_s: float = 30.0) -> None:
        self.fixed = num_threads
        self.jobs = jobs
        self.every_s = every_s
        self._load: CpuLoad | None = None
        self._last = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.fixed:
            self._load, self._last = CpuLoad(), time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: Batch, batch_idx: int
    ) -> None:
        if self._load is None or time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        threads = threads_for(available_cpus(), self.jobs, self._load.other_busy())
        if threads != torch.get_num_threads():
            log.info(
                "torch threads %d -> %d (load of other processes changed)", torch.get_num_threads(), threads
            )
            torch.set_num_threads(threads)
