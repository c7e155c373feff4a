"""OCARM objectives (CTRTask with OCARMAlignment / OCARMTeacherBCE): the student's distillation losses and its refusal of privileged data."""

import functools

import pytest
import torch
import torch.nn.functional as F

from recsys_lab.data.batch import Jagged
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.models.ocarm_student import OCARMStudent
from recsys_lab.objectives.distill import OCARMAlignment, OCARMTeacherBCE, PrivilegedBatchError
from recsys_lab.tasks.ctr import CTRTask
from tests.helpers import LinearModel, tiny_batch, tiny_schema

EMB = functools.partial(FullEmbedding, dim=4, sparse_grad=False)
ADAM = functools.partial(torch.optim.Adam, lr=1e-2)


def batch_with_teacher(n: int = 32, dim: int = 6):
    batch = tiny_batch(n)
    g = torch.Generator().manual_seed(3)
    batch.labels["retention"] = batch.labels["click"]
    batch.teacher = {"rep": torch.randn(n, dim, generator=g), "prob": torch.rand(n, generator=g)}
    return batch


def make_task(label: str = "retention", teacher_dim: int = 6, **kwargs) -> CTRTask:
    torch.manual_seed(0)
    model = OCARMStudent(tiny_schema(), EMB, hidden_units=[8], teacher_dim=teacher_dim)
    return CTRTask(model, ADAM, label=label, objective=OCARMAlignment(**kwargs))


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_student_loss_is_bce_plus_distillation(distance) -> None:
    task = make_task(rep_weight=0.7, distance=distance, pred_weight=0.3)
    batch = batch_with_teacher()
    rep, logits = task.model.forward_rep(batch)
    proj, t = task.model.project(rep), batch.teacher["rep"]
    d = ((proj - t) ** 2).mean(-1) if distance == "mse" else 1 - F.cosine_similarity(proj, t, dim=-1)
    y = batch.labels["retention"]
    expected = (
        F.binary_cross_entropy_with_logits(logits, y)
        + 0.7 * d.mean()
        + 0.3 * F.binary_cross_entropy_with_logits(logits, batch.teacher["prob"])
    )
    torch.testing.assert_close(task.loss(batch), expected)
    plain = make_task(rep_weight=0.0)
    torch.testing.assert_close(plain.loss(batch), F.binary_cross_entropy_with_logits(logits, y))


def test_distillation_pulls_the_projection_to_the_teacher() -> None:
    task = make_task(rep_weight=10.0)
    batch = batch_with_teacher()
    opt = torch.optim.Adam(task.parameters(), lr=3e-2)

    def gap() -> float:
        with torch.no_grad():
            return float(
                ((task.model.project(task.model.forward_rep(batch)[0]) - batch.teacher["rep"]) ** 2).mean()
            )

    start = gap()
    for _ in range(60):
        opt.zero_grad()
        task.loss(batch).backward()
        opt.step()
    assert gap() < 0.5 * start


def test_student_task_refuses_privileged_batches() -> None:
    task = make_task()
    batch = batch_with_teacher()
    batch.privileged = {
        "onboarding": Jagged(
            torch.zeros(0, 3, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(33, dtype=torch.long),
        )
    }
    with pytest.raises(PrivilegedBatchError):
        task.loss(batch)
    with pytest.raises(PrivilegedBatchError):
        task._eval_step(batch, task.val_metrics)


def test_errors_speak() -> None:
    with pytest.raises(ValueError, match="teacher_path"):
        make_task(rep_weight=1.0, label="click").loss(tiny_batch())
    task = make_task(teacher_dim=5)
    b = batch_with_teacher()
    with pytest.raises(ValueError, match="teacher_dim"):
        task.loss(b)
    with pytest.raises(ValueError, match="distance"):
        make_task(distance="l1")
    teacher = CTRTask(LinearModel(tiny_schema()), ADAM, objective=OCARMTeacherBCE())
    with pytest.raises(ValueError, match="privileged=true"):
        teacher.loss(tiny_batch())


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
