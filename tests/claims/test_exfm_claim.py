"""ExFM's defining effect: a vertical model (VM) that distils a foundation model's (FM's) logged
predictions through its auxiliary head beats the same VM without the FM — when the FM is strong
(trained on far more data than the VM). The control FM is weak (trained on as few rows as the VM):
its predictions carry little that the VM cannot learn itself, and the gain shrinks.

The models and the loss are the project's (:class:`ExFMModel`, :class:`ExFMDistillation` in a :class:`CTRTask` with
``distill=aux`` / ``none``); the FM's predictions play the DAS column ``Batch.teacher['fm']``."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.metrics import auc
from recsys_lab.models.exfm import ExFMModel
from recsys_lab.objectives.distill import ExFMDistillation
from recsys_lab.tasks.ctr import CTRTask

USERS, ITEMS, VM_ROWS, FM_ROWS, TEST, VM_BATCH = 300, 200, 2000, 40_000, 10_000, 32
SCHEMA = Schema(
    (Feature("user", "categorical", USERS, "user"), Feature("item", "categorical", ITEMS, "item"))
)
EMB = functools.partial(FullEmbedding, dim=8, sparse_grad=False)


def world(seed: int) -> tuple[Tensor, Tensor]:
    """``FM_ROWS + VM_ROWS + TEST`` rows of ids ``[n, 2]`` and clicks: logit = −1.5 + a[user] +
    b[item] + 1.2·<u[user], v[item]> (rank 4)."""
    g = torch.Generator().manual_seed(seed)
    n = FM_ROWS + VM_ROWS + TEST
    ids = torch.stack(
        [torch.randint(0, USERS, (n,), generator=g), torch.randint(0, ITEMS, (n,), generator=g)], 1
    )
    a, b = torch.randn(USERS, generator=g), torch.randn(ITEMS, generator=g)
    u, v = torch.randn(USERS, 4, generator=g), torch.randn(ITEMS, 4, generator=g)
    logit = -1.5 + a[ids[:, 0]] + b[ids[:, 1]] + 0.6 * (u[ids[:, 0]] * v[ids[:, 1]]).sum(1)
    return ids, torch.bernoulli(torch.sigmoid(logit), generator=g)


def batch(ids: Tensor, y: Tensor, fm: Tensor | None = None) -> Batch:
    teacher = None if fm is None else {"fm": fm}
    return Batch(dense=torch.zeros(len(ids), 0), sparse=ids, labels={"click": y}, teacher=teacher)


def vm_aucs(seed: int, strong_fm: bool) -> dict[str, float]:
    ids, y = world(seed)
    fm_rows = slice(0, FM_ROWS if strong_fm else VM_ROWS)
    test = slice(FM_ROWS + VM_ROWS, None)
    torch.manual_seed(seed)
    fm = ExFMModel(SCHEMA, EMB, hidden_units=[64, 32], aux_head=False)
    fm_batch = batch(ids[fm_rows], y[fm_rows])
    opt = torch.optim.Adam(fm.parameters(), lr=1e-2)
    for _ in range(200):  # full-batch
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(fm(fm_batch), y[fm_rows]).backward()
        opt.step()
    with torch.no_grad():
        fm_pred = torch.sigmoid(fm(batch(ids, y)))
    out = {"fm": auc(fm_pred[test], y[test])}
    for mode in ("none", "aux"):
        torch.manual_seed(seed)
        vm = ExFMModel(SCHEMA, EMB, hidden_units=[16], aux_head=True)
        task = CTRTask(vm, functools.partial(torch.optim.Adam, lr=1e-2), objective=ExFMDistillation(mode))
        opt = torch.optim.Adam(vm.parameters(), lr=1e-2)
        for start in range(FM_ROWS, FM_ROWS + VM_ROWS, VM_BATCH):  # one pass over the VM's stream
            rows = slice(start, start + VM_BATCH)
            opt.zero_grad()
            task.loss(batch(ids[rows], y[rows], fm_pred[rows])).backward()
            opt.step()
        with torch.no_grad():
            out[mode] = auc(torch.sigmoid(vm(batch(ids[test], y[test]))), y[test])
    return out


@pytest.mark.claim
def test_aux_head_distillation_beats_no_fm_when_the_fm_is_strong() -> None:
    strong = vm_aucs(seed=0, strong_fm=True)
    # Seeds 0-2 while writing this test: strong FM 0.750-0.767, VM alone 0.670-0.672, VM + aux head
    # +0.042 / +0.034 / +0.033; weak FM (0.633-0.637, below the VM alone) +0.014 / +0.002 / +0.016.
    # Training the VM for many full-batch epochs instead of one pass erases the gain (it over-fits).
    assert strong["fm"] > strong["none"] + 0.02, strong  # the premise: the FM beats the VM alone
    assert strong["aux"] > strong["none"] + 0.02, strong
    weak = vm_aucs(seed=0, strong_fm=False)
    assert strong["aux"] - strong["none"] > weak["aux"] - weak["none"] + 0.01, (strong, weak)
