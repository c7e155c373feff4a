"""RowWiseSparseAdam computes SparseAdam's update."""

import pytest
import torch
from torch import nn

from recsys_lab.tasks.optim import RowWiseSparseAdam


def _run(
    opt_cls: type[torch.optim.Optimizer], ids: list[torch.Tensor], **kw: object
) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    table = nn.Embedding(50, 8, sparse=True)
    opt = opt_cls(table.parameters(), lr=0.05, **kw)
    target = torch.randn(8)
    for batch in ids:
        opt.zero_grad()
        loss = ((table(batch) - target) ** 2).sum()
        loss.backward()
        opt.step()
    return table.weight.detach().clone(), opt.state[table.weight]


def test_matches_sparse_adam_with_repeated_rows():
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(0, 20, (64,), generator=g) for _ in range(6)]  # many duplicates per batch
    ref, ref_state = _run(torch.optim.SparseAdam, ids, betas=(0.8, 0.99))
    got, state = _run(RowWiseSparseAdam, ids, betas=(0.8, 0.99))
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        state["exp_avg"], ref_state["exp_avg"], rtol=1e-5, atol=1e-6
    )  # duplicate rows summed in another order
    torch.testing.assert_close(
        state["exp_avg_sq"], ref_state["exp_avg_sq"], rtol=1e-5, atol=1e-6
    )  # duplicate rows summed in another order
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[torch.cat(ids)] = False
    assert untouched.any() and (state["exp_avg"][untouched] == 0).all()  # lazy: only looked-up rows move


def test_rejects_dense_gradients():
    table = nn.Embedding(5, 3, sparse=False)
    opt = RowWiseSparseAdam(table.parameters())
    table(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients only"):
        opt.step()


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="lr"):
        RowWiseSparseAdam([nn.Parameter(torch.zeros(2, 2))], lr=0.0)


def test_weight_decay_is_an_l2_penalty_on_the_looked_up_rows_only():
    """weight_decay=w equals adding w/2·||looked-up rows||² to the loss (SparseAdam as reference)."""
    g = torch.Generator().manual_seed(2)
    ids = [torch.randint(0, 20, (16,), generator=g) for _ in range(5)]
    got, _ = _run(RowWiseSparseAdam, ids, weight_decay=0.3)
    torch.manual_seed(0)
    table = nn.Embedding(50, 8, sparse=True)
    init = table.weight.detach().clone()
    opt = torch.optim.SparseAdam(table.parameters(), lr=0.05)
    target = torch.randn(8)
    for batch in ids:
        opt.zero_grad()
        rows = torch.unique(batch)
        loss = ((table(batch) - target) ** 2).sum() + 0.15 * (table(rows) ** 2).sum()
        loss.backward()
        opt.step()
    torch.testing.assert_close(got, table.weight.detach(), rtol=1e-5, atol=1e-6)
    never = torch.ones(50, dtype=torch.bool)
    never[torch.cat(ids)] = False
    assert torch.equal(got[never], init[never])  # rows never looked up do not decay
    plain, _ = _run(RowWiseSparseAdam, ids)
    assert not torch.allclose(plain, got)
