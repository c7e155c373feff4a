"""ExFM distillation (CTRTask with ExFMDistillation): the four ablations' losses, masking of missing FM predictions, the adapter."""

import functools

import pytest
import torch
import torch.nn.functional as F

from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.models.exfm import ExFMModel
from recsys_lab.objectives.distill import ExFMDistillation
from recsys_lab.tasks.ctr import CTRTask
from tests.helpers import LinearModel, tiny_batch, tiny_schema

EMB = functools.partial(FullEmbedding, dim=4, sparse_grad=False)
ADAM = functools.partial(torch.optim.Adam, lr=1e-2)


def make_task(distill: str, aux_head: bool = True, **kwargs) -> CTRTask:
    torch.manual_seed(0)
    model = ExFMModel(tiny_schema(), EMB, hidden_units=[8], aux_head=aux_head)
    return CTRTask(model, ADAM, objective=ExFMDistillation(distill, **kwargs))


def with_teacher(n: int = 64, nan_rows: int = 0):
    batch = tiny_batch(n)
    t = torch.rand(n, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    t[:nan_rows] = float("nan")
    batch.teacher = {"fm": t}
    return batch


def test_none_ignores_the_teacher_and_serving_distils_into_the_serving_head() -> None:
    batch = with_teacher()
    none = make_task("none", aux_head=False)
    y = batch.labels["click"]
    torch.testing.assert_close(none.loss(batch), F.binary_cross_entropy_with_logits(none.model(batch), y))
    task = make_task("serving", aux_head=False, alpha=2.0, weight=0.5)
    s = task.model(batch)
    soft = (2.0 * batch.teacher["fm"]).clamp(max=1.0)
    expected = F.binary_cross_entropy_with_logits(s, y) + 0.5 * F.binary_cross_entropy_with_logits(s, soft)
    torch.testing.assert_close(task.loss(batch), expected)


def test_aux_distillation_never_reaches_the_serving_head() -> None:
    task = make_task("aux", weight=3.0)
    grads = []
    for scale in (0.2, 0.9):  # two different FM labels
        batch = with_teacher()
        batch.teacher["fm"] = torch.full((len(batch),), scale)
        task.model.zero_grad()
        task.loss(batch).backward()
        grads.append(
            (task.model.serving_head.weight.grad.clone(), task.model.aux_head.linear.weight.grad.clone())
        )
    torch.testing.assert_close(grads[0][0], grads[1][0])  # serving head: same gradient
    assert not torch.allclose(grads[0][1], grads[1][1])  # aux head: follows the FM label


def test_missing_predictions_get_no_distillation_loss() -> None:
    task = make_task("aux")
    batch = with_teacher(nan_rows=10)
    s, a = task.model.forward_heads(batch)
    y, t = batch.labels["click"], batch.teacher["fm"][10:]
    expected = F.binary_cross_entropy_with_logits(s, y) + F.binary_cross_entropy_with_logits(a[10:], t)
    torch.testing.assert_close(task.loss(batch), expected)


def test_adapter_updates_first_and_learns_a_recalibration() -> None:
    task = make_task("aux_adapter", adapter_lr=1e-1)
    before = [p.detach().clone() for p in task.objective.adapter.parameters()]
    task.loss(with_teacher())
    assert any(
        not torch.equal(a, b) for a, b in zip(before, task.objective.adapter.parameters(), strict=True)
    )
    with torch.no_grad():
        task.loss(with_teacher())  # no gradients: no adapter step
    # A stale FM that under-predicts by a constant factor: the adapter learns to undo it.
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        p = torch.rand(256, generator=g) * 0.8 + 0.1
        y = torch.bernoulli(p, generator=g)
        task.objective.adapter_step((p / 3).clamp(1e-6, 1), y, torch.ones(256, dtype=torch.bool))
    p = torch.tensor([0.2, 0.5, 0.8])
    with torch.no_grad():
        recalibrated = torch.sigmoid(task.objective.adapter_logits(p / 3))
    torch.testing.assert_close(recalibrated, p, atol=0.08, rtol=0)


def test_bad_configs_fail_loudly() -> None:
    with pytest.raises(ValueError, match="distill"):
        make_task("everything")
    with pytest.raises(ValueError, match="auxiliary head"):
        CTRTask(LinearModel(tiny_schema()), ADAM, objective=ExFMDistillation("aux"))
    with pytest.raises(ValueError, match="teacher_path"):
        make_task("aux").loss(tiny_batch())


def test_adapter_and_its_optimiser_state_travel_in_the_task_state_dict() -> None:
    task = make_task("aux_adapter")
    task.loss(with_teacher())  # one adapter step: its optimiser now has state
    state = task.state_dict()
    assert {k for k in state if not k.startswith("model.")} >= {
        "objective.adapter.net.0.weight",
        "objective._extra_state",
    }
    fresh = make_task("aux_adapter")
    fresh.load_state_dict(state)
    step = fresh.objective.adapter_optimizer.state_dict()["state"][0]["step"]
    assert float(step) == 1.0
    for a, b in zip(task.objective.adapter.parameters(), fresh.objective.adapter.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_checkpoints_of_the_former_exfm_task_still_load() -> None:
    """Before objectives were modules the adapter sat at ``adapter.*`` and its optimiser beside the
    state_dict: CTRTask.on_load_checkpoint maps them to ``objective.*``."""
    task = make_task("aux_adapter")
    task.loss(with_teacher())
    state = task.state_dict()
    old = {k.removeprefix("objective."): v for k, v in state.items() if k != "objective._extra_state"}
    checkpoint = {"state_dict": old, "adapter_optimizer": state["objective._extra_state"]}
    fresh = make_task("aux_adapter")
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])
    assert fresh.objective.adapter_optimizer.state_dict()["state"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
