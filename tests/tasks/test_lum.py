"""LUM pre-training: InfoNCE against a brute-force computation, false-negative masking, learning a
planted next-item rule, and the task's errors."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.objectives.info_nce import InfoNCE, info_nce
from recsys_lab.tasks.ctr import CTRTask
from tests.models.test_lum import ITEMS, lum_batch, make_lum


def brute_force_info_nce(h, pos_emb, pos_ids, neg_emb, neg_ids, tau):
    losses, aucs = [], []
    for i in range(h.shape[0]):
        s_pos = torch.dot(h[i], pos_emb[i]).item() / (h[i].norm() * pos_emb[i].norm()).item() / tau
        s_neg = [
            torch.dot(h[i], neg_emb[k]).item() / (h[i].norm() * neg_emb[k].norm()).item() / tau
            for k in range(neg_emb.shape[0])
            if neg_ids[k] != pos_ids[i]  # a negative with the positive's item is not a negative
        ]
        denom = math.exp(s_pos) + sum(math.exp(s) for s in s_neg)
        losses.append(-math.log(math.exp(s_pos) / denom))
        aucs.append(sum(s < s_pos for s in s_neg) / max(len(s_neg), 1))
    return sum(losses) / len(losses), sum(aucs) / len(aucs)


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_info_nce_matches_brute_force(tau):
    g = torch.Generator().manual_seed(0)
    n, m, d = 7, 11, 5
    h, pos_emb, neg_emb = (
        torch.randn(n, d, generator=g),
        torch.randn(n, d, generator=g),
        torch.randn(m, d, generator=g),
    )
    pos_ids = torch.tensor([1, 2, 3, 2, 5, 6, 1])
    neg_ids = torch.tensor([2, 9, 1, 4, 6, 2, 8, 7, 3, 10, 5])  # many collide with positives
    loss, auc = info_nce(h, pos_emb, pos_ids, neg_emb, neg_ids, tau)
    ref_loss, ref_auc = brute_force_info_nce(h, pos_emb, pos_ids, neg_emb, neg_ids, tau)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    assert auc.item() == pytest.approx(ref_auc, abs=1e-6)
    # Without the masking the loss would differ: the collisions are real false negatives.
    unmasked, _ = info_nce(h, pos_emb, pos_ids, neg_emb, neg_ids + 100, tau)
    assert abs(unmasked.item() - ref_loss) > 1e-3


def test_in_batch_negatives_include_the_positive_itself_and_it_is_masked():
    """With in-batch negatives every row's own target is among the candidates; the mask removes it,
    so a perfect model's loss goes to 0 rather than log 2."""
    emb = torch.eye(4) * 10
    ids = torch.arange(1, 5)
    loss, auc = info_nce(emb, emb, ids, emb, ids, temperature=0.01)
    assert loss.item() < 1e-6 and auc.item() == 1.0


def task_for(model, **kw) -> CTRTask:
    args = dict(num_sampled_negatives=16, num_in_batch_negatives=-1, temperature=0.1)
    args.update(kw)
    return CTRTask(
        model,
        optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
        sparse_optimizer=None,
        objective=InfoNCE(**args),
    )


def planted_batch(size: int, length: int, seed: int) -> Batch:
    """The item of an event is a fixed function of its condition: item = 1 + (3·category + domain) mod 29."""
    b = lum_batch([length] * size, seed=seed)
    v = b.history.values.clone()
    v[:, 0] = 1 + (3 * v[:, 1] + v[:, 2]) % (ITEMS - 1)
    h = b.history
    return Batch(b.dense, b.sparse, b.labels, history=Jagged(v, h.actions, h.timestamps, h.offsets))


def test_pretraining_learns_a_planted_next_item_rule():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: intra-op threads only add contention
    model = make_lum(num_layers=1, max_history=8).train()
    task = task_for(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train, test = planted_batch(16, 8, seed=1), planted_batch(16, 8, seed=2)
    first = None
    for _ in range(40):
        loss, _ = task.objective.infonce(model, train)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        test_loss, test_auc = task.objective.infonce(model, test, generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(threads)
    assert test_loss.item() < 0.5 * first
    assert test_auc.item() > 0.95  # chance: 0.5


def test_task_errors():
    from recsys_lab.models.dnn import DNN
    from tests.models.conftest import make_schema

    dnn = DNN(make_schema(), functools.partial(FullEmbedding, dim=4))
    with pytest.raises(TypeError, match="model=lum"):
        task_for(dnn)
    with pytest.raises(ValueError, match="temperature"):
        task_for(make_lum(), temperature=0.0)


def test_a_batch_without_history_gives_a_zero_loss_with_a_graph():
    task = task_for(make_lum())
    loss, auc = task.objective.infonce(task.model, lum_batch([0, 0]))
    assert loss.item() == 0.0 and auc.item() == 0.5
