from functools import partial

import pytest
import torch

from recsys_lab.checkpoint import load_embedding_tables
from recsys_lab.layers.embedding import FullEmbedding
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
