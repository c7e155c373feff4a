"""AMTL: prefix hard masks, straight-through gradients to both twins, exact stored-value count,
sparse tables with dense MLPs, and warm start of the table from a full-table checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from recsys_lab.layers.amtl import AMTLEmbedding, masks_from_logits
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.models.dnn import DNN
from recsys_lab.runners.checkpoint import load_embedding_tables
from tests.helpers import tiny_batch, tiny_schema


def test_hard_mask_is_a_prefix_and_soft_is_reverse_cdf():
    logits = torch.randn(500, 8) * 3
    hard, soft = masks_from_logits(logits, temperature=0.7)
    k = hard.sum(-1)
    assert torch.equal(k, (logits.argmax(-1) + 1).float())
    # prefix: ones then zeros, never a 0 followed by a 1
    assert bool((hard[:, 1:] <= hard[:, :-1]).all())
    p = torch.softmax(logits / 0.7, -1)
    assert torch.allclose(soft[:, 0], torch.ones(500), atol=1e-6)
    assert torch.allclose(soft[:, 3], p[:, 3:].sum(-1), atol=1e-6)
    assert bool((soft[:, 1:] <= soft[:, :-1] + 1e-6).all())


def _emb(**kw) -> AMTLEmbedding:
    torch.manual_seed(0)
    emb = AMTLEmbedding(tiny_schema(), dim=8, init_full_width=False, **kw)
    emb.counts.copy_(torch.randint(0, 50, emb.counts.shape).float())  # mixed frequencies: 0 < α < 1
    return emb


def test_forward_masks_rows_to_their_width():
    emb = _emb()
    emb.eval()
    ids = tiny_batch().sparse
    out = emb(ids)
    widths = emb.kept_widths()[emb.rows(ids)]  # [B, F]
    nonzero = (out != 0).sum(-1)
    assert torch.equal(nonzero, widths)  # table entries are non-zero almost surely
    assert widths.min() >= 1 and widths.max() <= 8 and widths.unique().numel() > 1


def test_gradients_reach_both_twins_and_the_table_is_sparse():
    emb = _emb()
    emb.train()
    out = emb(tiny_batch().sparse)
    (out * torch.randn_like(out)).sum().backward()
    for branch in (emb.frequent, emb.rare):
        grads = [p.grad for p in branch.parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
    assert emb.table.weight.grad.is_sparse


def test_width_penalty_pushes_towards_narrower_rows():
    grads = []
    for lam in (0.0, 10.0):
        emb = _emb(width_penalty=lam)
        emb.train()
        emb(tiny_batch().sparse).sum().mul(0).backward()  # task gradient zero: only the penalty
        grads.append(sum(float(p.grad.abs().sum()) for p in emb.dense_parameters() if p.grad is not None))
    assert grads[0] == 0 and grads[1] > 0


def test_counts_only_grow_in_training():
    emb = AMTLEmbedding(tiny_schema(), dim=4)
    ids = tiny_batch().sparse
    emb.eval()
    emb(ids)
    assert emb.counts.sum() == 0
    emb.train()
    emb(ids)
    assert emb.counts.sum() == ids.numel()
    assert emb.counts[emb.rows(ids[:1]).flatten()].min() >= 1


def test_stored_values_is_the_exact_sum_of_kept_widths():
    emb = _emb()
    widths = emb.kept_widths()
    assert widths.shape == (emb.table.num_embeddings,)
    assert emb.stored_values() == int(widths.sum()) < emb.table.weight.numel()
    full = AMTLEmbedding(tiny_schema(), dim=8)  # init_full_width: every row starts at width d
    assert full.stored_values() == full.table.weight.numel()


def test_mlps_are_dense_parameters_of_any_model():
    model = DNN(tiny_schema(), embedding=lambda s: AMTLEmbedding(s, dim=4), hidden_units=[8])
    emb = model.encoder.embedding
    assert model.embedding_parameters() == [emb.table.weight]
    dense_ids = {id(p) for p in model.dense_parameters()}
    assert all(id(p) in dense_ids for p in emb.dense_parameters())


def test_warm_start_copies_the_table_from_a_full_embedding_checkpoint(tmp_path):
    full = DNN(tiny_schema(), embedding=lambda s: FullEmbedding(s, dim=4), hidden_units=[8])
    torch.nn.init.normal_(full.encoder.embedding.table.weight)
    path = tmp_path / "full.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in full.state_dict().items()}}, path)
    amtl = DNN(tiny_schema(), embedding=lambda s: AMTLEmbedding(s, dim=4), hidden_units=[8])
    copied = load_embedding_tables(amtl, path)
    assert copied == ["encoder.embedding.table.weight"]
    assert torch.equal(amtl.encoder.embedding.table.weight, full.encoder.embedding.table.weight)
    # starting at full width, the warm-started embedding equals the trained table's
    amtl.eval()
    full.eval()
    ids = tiny_batch().sparse
    assert torch.allclose(amtl.encoder.embedding(ids), full.encoder.embedding(ids))


def test_bad_config_fails_loudly():
    with pytest.raises(ValueError, match="temperature"):
        AMTLEmbedding(tiny_schema(), temperature=0.0)


def test_train_run_reports_the_exact_stored_values(tmp_path, hydra_ctx):
    from recsys_lab.runners.train import run
    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, "embedding=amtl", "model=dnn", "debug=fast_dev_run", "print_table=false")
    metrics = run(cfg)
    assert 0 < metrics["params/embedding_stored"] <= metrics["params/embedding"]
    assert "params/embedding_stored" in json.loads((tmp_path / "run" / "metrics.json").read_text())
