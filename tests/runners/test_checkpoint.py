from functools import partial

import pytest
import torch

from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.runners.checkpoint import load_embedding_tables
from tests.helpers import LinearModel, tiny_schema


def test_embedding_tables_are_copied_and_nothing_else(tmp_path):
    source = LinearModel(tiny_schema())
    torch.nn.init.normal_(source.embedding.table.weight)
    path = tmp_path / "a.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    target = LinearModel(tiny_schema())
    linear_before = target.linear.weight.detach().clone()
    copied = load_embedding_tables(target, path)
    assert copied == ["embedding.table.weight"]
    assert torch.equal(target.embedding.table.weight, source.embedding.table.weight)
    assert torch.equal(target.linear.weight, linear_before)


def test_shape_mismatch_and_missing_file_are_clear(tmp_path):
    path = tmp_path / "a.ckpt"
    torch.save({"state_dict": {"model.embedding.table.weight": torch.zeros(3, 1)}}, path)
    with pytest.raises(ValueError, match="checkpoint shape"):
        load_embedding_tables(LinearModel(tiny_schema()), path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_embedding_tables(LinearModel(tiny_schema()), tmp_path / "nope.ckpt")
    assert partial(FullEmbedding, dim=2)(tiny_schema()).dim == 2


def test_whole_model_warm_start_copies_every_shared_weight(tmp_path):
    """load_model_weights copies the dense layers too (AMTL's warm start of issue 13); weights the
    checkpoint lacks (here: AMTL's width MLPs) stay as initialised."""
    from recsys_lab.layers.amtl import AMTLEmbedding
    from recsys_lab.models.dnn import DNN
    from recsys_lab.runners.checkpoint import load_model_weights

    torch.manual_seed(0)
    source = DNN(tiny_schema(), partial(FullEmbedding, dim=4, sparse_grad=False), hidden_units=[8])
    for p in source.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "full.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    target = DNN(tiny_schema(), partial(AMTLEmbedding, dim=4, sparse_grad=False), hidden_units=[8])
    twins = [p.detach().clone() for p in target.encoder.embedding.dense_parameters()]
    copied = load_model_weights(target, path)
    shared = dict(source.named_parameters())
    for name, p in target.named_parameters():
        if name in shared:
            assert name in copied and torch.equal(p, shared[name]), name
    assert all(
        torch.equal(a, b) for a, b in zip(twins, target.encoder.embedding.dense_parameters(), strict=True)
    )
    assert any(n.startswith("mlp") for n in copied)  # the dense layers, not just the table
    with pytest.raises(ValueError, match="none of"):
        torch.save({"state_dict": {"other.x": torch.zeros(1)}}, tmp_path / "x.ckpt")
        load_model_weights(target, tmp_path / "x.ckpt")


@pytest.mark.usefixtures("hydra_ctx")
def test_init_scope_model_warm_starts_every_layer(tmp_path):
    from recsys_lab.runners.train import build, run
    from tests.conftest import compose_train

    common = ("debug=tiny", "model=dnn", "model.hidden_units=[8]", "logger=none", "num_threads=1")
    first = run(compose_train(tmp_path / "a", *common))
    ckpt = first["best_checkpoint"]
    for scope, dense_equal in (("model", True), ("tables", False)):
        cfg = compose_train(tmp_path / scope, *common, f"init.checkpoint={ckpt}", f"init.scope={scope}")
        _, model, _ = build(cfg)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        dense = [n for n in model.state_dict() if "embedding" not in n]
        same = all(torch.equal(model.state_dict()[n], state[f"model.{n}"]) for n in dense)
        assert same is dense_equal, scope
