"""Lightning callbacks used by the default callback config."""

from __future__ import annotations

import time

import lightning as L

from recsys_lab.data.batch import Batch


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
