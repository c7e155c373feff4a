"""ExFMModel: serving and auxiliary heads on one backbone, the auxiliary gradient scale, history."""

import functools

import pytest
import torch
import torch.nn.functional as F

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.data.synthetic.seq_datamodule import SyntheticSeqDataModule
from recsys_lab.layers.embedding import EmbeddingFactory, FullEmbedding
from recsys_lab.layers.heads import scale_grad
from recsys_lab.models.exfm import ExFMModel


@pytest.fixture(scope="module")
def world_batch() -> tuple[Schema, Batch]:
    dm = SyntheticSeqDataModule(preset="tiny", max_history=16, batch_size=64)
    dm.setup()
    return dm.schema, next(iter(dm.train_dataloader()))


def _backbone_grad(model: ExFMModel, batch: Batch, target: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    _, aux = model.forward_heads(batch)
    F.binary_cross_entropy_with_logits(aux, target).backward()
    return model.backbone.net[0].weight.grad.clone()


def test_scale_grad_is_identity_forward_and_scales_backward() -> None:
    x = torch.randn(5, requires_grad=True)
    y = scale_grad(x, 0.25)
    torch.testing.assert_close(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5,), 0.25))


def test_aux_gradient_into_backbone_is_scaled_by_beta(schema, embedding, batch) -> None:
    torch.manual_seed(0)
    model = ExFMModel(schema, embedding, hidden_units=[8], beta=1.0)
    target = torch.rand(len(batch))
    full = _backbone_grad(model, batch, target)
    head_full = model.aux_head.linear.weight.grad.clone()
    for beta in (0.5, 0.0):
        model.aux_head.beta = beta
        scaled = _backbone_grad(model, batch, target)
        torch.testing.assert_close(scaled, beta * full)
        # The head's own weights keep their full gradient.
        torch.testing.assert_close(model.aux_head.linear.weight.grad, head_full)
    assert full.abs().sum() > 0


def test_serving_head_is_independent_of_aux_head(schema, embedding, batch) -> None:
    torch.manual_seed(0)
    model = ExFMModel(schema, embedding, hidden_units=[8]).eval()
    serving, aux = model.forward_heads(batch)
    torch.testing.assert_close(model(batch), serving)
    with torch.no_grad():
        model.aux_head.linear.weight.add_(1.0)
    torch.testing.assert_close(model(batch), serving)  # changing the aux head leaves serving alone
    assert not torch.allclose(model.forward_heads(batch)[1], aux)
    assert ExFMModel(schema, embedding, aux_head=False).forward_heads(batch)[1] is None


def test_flops_match_flop_counter(schema, embedding, batch, flops_of) -> None:
    model = ExFMModel(schema, embedding, hidden_units=[16, 8]).eval()
    assert model.flops_per_example() == flops_of(model, batch)


def test_gradients_and_learning(schema, embedding, batch, check_gradients, learns) -> None:
    torch.manual_seed(0)
    check_gradients(ExFMModel(schema, embedding, aux_head=False), batch)
    learns(ExFMModel(schema, embedding, hidden_units=[32, 16]))


def test_history_is_read_and_changes_the_prediction(world_batch) -> None:
    schema, batch = world_batch
    torch.manual_seed(0)
    emb = functools.partial(FullEmbedding, dim=8, sparse_grad=False)
    model = ExFMModel(schema, emb, hidden_units=[16], history=None).eval()  # None: schema has sequences
    assert model.history is not None
    base = model(batch)
    h = batch.history
    shuffled = Batch(
        **{**batch.__dict__, "history": type(h)(h.values.flip(0), h.actions, h.timestamps, h.offsets)}
    )
    assert not torch.allclose(model(shuffled), base)
    no_history = Batch(**{**batch.__dict__, "history": None})
    with pytest.raises(ValueError, match="max_history"):
        model(no_history)


def test_bad_config_fails_loudly(schema: Schema, embedding: EmbeddingFactory) -> None:
    with pytest.raises(ValueError, match="hidden layer"):
        ExFMModel(schema, embedding, hidden_units=[])
    with pytest.raises(ValueError, match="beta"):
        ExFMModel(schema, embedding, beta=-1.0)
    with pytest.raises(ValueError, match="sequence features"):
        ExFMModel(schema, embedding, history=True)


def test_config(config_matches) -> None:
    config_matches(ExFMModel, "exfm_vm")
