"""TemperatureAnnealing: the schedule, and that it drives every annealed mixer of the model."""

import functools
from types import SimpleNamespace

import pytest
import torch

from recsys_lab.callbacks_anneal import TemperatureAnnealing, annealed_temperature
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.models.unimixer_lite import UniMixerLite
from tests.models.conftest import make_schema


def test_schedule_endpoints_and_shape() -> None:
    assert annealed_temperature(0.0, 1.0, 0.05, "exponential") == pytest.approx(1.0)
    assert annealed_temperature(1.0, 1.0, 0.05, "exponential") == pytest.approx(0.05)
    assert annealed_temperature(0.5, 1.0, 0.05, "exponential") == pytest.approx(0.05**0.5)
    assert annealed_temperature(0.5, 1.0, 0.05, "linear") == pytest.approx(0.525)
    assert annealed_temperature(3.0, 1.0, 0.05, "linear") == pytest.approx(0.05)  # clamped


class _Module(torch.nn.Module):
    """Stands in for the LightningModule: holds the model and records what is logged."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.logged: list[float] = []

    def log(self, name: str, value: float, **_: object) -> None:
        self.logged.append(value)


def test_callback_anneals_every_mixer_from_start_to_end() -> None:
    model = UniMixerLite(
        make_schema(), functools.partial(FullEmbedding, dim=8), num_tokens=4, dim=8, block_size=4
    )
    module = _Module(model)
    callback = TemperatureAnnealing(start=1.0, end=0.05, total_steps=None)
    trainer = SimpleNamespace(global_step=0, estimated_stepping_batches=11)
    seen = []
    for step in range(11):
        trainer.global_step = step
        callback.on_train_batch_start(trainer, module, None, step)  # type: ignore[arg-type]
        temps = {m.temperature.item() for m in model.net.mixers}
        assert len(temps) == 1  # every layer's mixer gets the same temperature
        seen.append(temps.pop())
    assert seen[0] == pytest.approx(1.0) and seen[-1] == pytest.approx(0.05)
    assert seen == sorted(seen, reverse=True)
    assert module.logged == pytest.approx(seen)
    # The temperature is a buffer: it is saved with the weights.
    assert model.state_dict()["net.mixers.0.temperature"].item() == pytest.approx(0.05)


def test_total_epochs_ends_the_annealing_at_that_epoch_and_holds_it() -> None:
    model = UniMixerLite(
        make_schema(), functools.partial(FullEmbedding, dim=8), num_tokens=4, dim=8, block_size=4
    )
    module = _Module(model)
    callback = TemperatureAnnealing(start=1.0, end=0.05, total_epochs=1)
    trainer = SimpleNamespace(global_step=0, estimated_stepping_batches=40, max_epochs=4)  # 10 steps/epoch
    for step in range(40):
        trainer.global_step = step
        callback.on_train_batch_start(trainer, module, None, step)  # type: ignore[arg-type]
    seen = module.logged
    assert seen[0] == pytest.approx(1.0)
    assert seen[8] > 0.05 and seen[9] == pytest.approx(0.05)  # the first epoch's last step reaches end
    assert seen[9:] == pytest.approx([0.05] * 31)  # then held
    with pytest.raises(ValueError, match="known length"):
        callback.on_train_batch_start(
            SimpleNamespace(global_step=0, estimated_stepping_batches=float("inf"), max_epochs=-1),  # type: ignore[arg-type]
            module,  # type: ignore[arg-type]
            None,
            0,
        )


def test_models_without_mixers_are_left_alone() -> None:
    module = _Module(torch.nn.Linear(2, 2))
    TemperatureAnnealing().on_train_batch_start(
        SimpleNamespace(global_step=3, estimated_stepping_batches=10),  # type: ignore[arg-type]
        module,  # type: ignore[arg-type]
        None,
        3,
    )
    assert module.logged == []


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="annealing schedule"):
        TemperatureAnnealing(schedule="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be > 0"):
        TemperatureAnnealing(end=0.0)
    with pytest.raises(ValueError, match="total_epochs"):
        TemperatureAnnealing(total_epochs=1, total_steps=10)
