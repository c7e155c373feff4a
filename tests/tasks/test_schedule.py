"""GRAB's STS schedule as an object, and CTRTask.train_batch (the one training step) outside
Lightning, as the streaming runner calls it."""

import functools

import pytest
import torch

from recsys_lab.objectives.base import Loss, Objective
from recsys_lab.tasks.ctr import CTRTask, NonFiniteLossError
from recsys_lab.tasks.schedule import PACKED, SPARSE, STS
from tests.helpers import LinearModel, tiny_batch, tiny_schema

ADAM = functools.partial(torch.optim.Adam, lr=1e-2)
SPARSE_ADAM = functools.partial(torch.optim.SparseAdam, lr=1e-2)


@pytest.mark.parametrize(
    ("mode", "kinds"),
    [
        ("off", "pppppp"),
        ("alternating", "pspsps"),
        ("two_stage", "ppppss"),  # round(0.7 * 6) = 4 packed steps
    ],
)
def test_sts_batch_kinds(mode, kinds) -> None:
    sts = STS(mode, stage1_fraction=0.7)
    sts.start(6)
    assert "".join(sts.batch_kind(s)[0] for s in range(6)) == kinds
    assert sts.freezes_dense == (mode != "off")


def test_sts_errors_speak() -> None:
    with pytest.raises(ValueError, match="off, two_stage or alternating"):
        STS("both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stage1_fraction"):
        STS("two_stage", stage1_fraction=1.5)
    sts = STS("two_stage")
    sts.start(None)  # e.g. a stream: no number of steps
    with pytest.raises(ValueError, match="max_steps"):
        sts.batch_kind(0)
    sts.start(float("inf"))
    with pytest.raises(ValueError, match="unknown"):
        sts.batch_kind(0)


class CountingBCE(Objective):
    """BCE that counts which of its losses the task asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = {PACKED: 0, SPARSE: 0}

    def forward(self, model, batch) -> Loss:  # type: ignore[no-untyped-def]
        self.calls[PACKED] += 1
        return super().candidate_loss(model, batch)

    def candidate_loss(self, model, batch) -> Loss:  # type: ignore[no-untyped-def]
        self.calls[SPARSE] += 1
        return super().candidate_loss(model, batch)


def test_train_batch_with_plain_optimisers_follows_the_schedule() -> None:
    torch.manual_seed(0)
    model = LinearModel(tiny_schema())
    task = CTRTask(
        model, ADAM, sparse_optimizer=SPARSE_ADAM, objective=CountingBCE(), schedule=STS("alternating")
    )
    optimizers = task.configure_optimizers()
    assert len(optimizers) == 2
    batch = tiny_batch()
    for step in range(4):
        dense = model.linear.weight.detach().clone()
        table = model.embedding.table.weight.detach().clone()
        _, kind = task.train_batch(batch, optimizers, step)
        assert kind == (PACKED if step % 2 == 0 else SPARSE)
        assert torch.equal(dense, model.linear.weight) == (kind == SPARSE)  # dense frozen in sparse steps
        assert not torch.equal(table, model.embedding.table.weight)  # tables train every step
    assert task.objective.calls == {PACKED: 2, SPARSE: 2}


def test_train_batch_names_the_step_of_a_non_finite_loss() -> None:
    task = CTRTask(LinearModel(tiny_schema(), nan_from_step=0), ADAM, sparse_optimizer=SPARSE_ADAM)
    with pytest.raises(NonFiniteLossError, match=r"global step 7 \(vm1, day 3\)"):
        task.train_batch(tiny_batch(), task.configure_optimizers(), 7, where="vm1, day 3")


def test_task_refuses_contradictory_settings() -> None:
    with pytest.raises(ValueError, match="sparse_optimizer"):
        CTRTask(LinearModel(tiny_schema()), ADAM, schedule=STS("two_stage"))
    with pytest.raises(ValueError, match="label_weights"):
        CTRTask(LinearModel(tiny_schema()), ADAM, label_weights={"click": 2.0}, objective=CountingBCE())
