"""Every model's analytic cost against what torch counts.

The FLOP check runs over every ``conf/model/*.yaml`` present at collection time, on one batch of
``data=synthetic_seq`` (its batches carry sparse and dense features and a behaviour history, so
sequence and non-sequence models both run), every sample cut to the same history length.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel
from recsys_lab.runners.train import CONFIG_DIR, build
from recsys_lab.scaling.counting import (
    count,
    measured_flops,
    measured_flops_per_example,
    relative_flops_error,
)
from tests.conftest import compose_train

# Analytic counts may leave out small terms (a bias-free scalar product, a gate); 5% is the
# agreed tolerance between ``flops_per_example()`` and ``flop_counter`` on one batch.
FLOPS_RTOL = 0.05
# Every sample of the checked batch keeps exactly this many history events, so sequence models
# (cost linear or quadratic in the history length) are checked exactly at a known length.
HISTORY_LEN = 16
MODELS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))


def equal_history_batch(batch: Batch, length: int, size: int = 32) -> Batch:
    """Up to ``size`` samples of ``batch`` with at least ``length`` events, each truncated to its
    latest ``length`` (so every sample has exactly ``length``)."""
    assert batch.history is not None
    keep = torch.nonzero(batch.history.lengths() >= length).squeeze(1)[:size]
    assert keep.numel() >= 4, f"the batch has too few samples with {length} history events"
    picked = batch.select(keep)
    return replace(picked, history=picked.history.truncate(length))


def analytic_kwargs(model: CTRModel, batch: Batch) -> dict[str, int]:
    """The batch's shape for ``flops_per_example``: ``history_len`` for sequence models, and
    ``batch_size`` for models whose forward carries a per-batch cost (PCF-GNN's message passing)."""
    params = inspect.signature(model.flops_per_example).parameters
    known = {"history_len": HISTORY_LEN, "batch_size": len(batch)}
    return {k: v for k, v in known.items() if k in params}


@pytest.mark.usefixtures("hydra_ctx")
@pytest.mark.parametrize("model_name", MODELS)
def test_analytic_flops_match_flop_counter(tmp_path, model_name):
    cfg = compose_train(tmp_path, f"model={model_name}", "data=synthetic_seq", "debug=fast_dev_run")
    datamodule, model, _task = build(cfg)
    batch = equal_history_batch(next(iter(datamodule.train_dataloader())), HISTORY_LEN)
    assert bool((batch.history.lengths() == HISTORY_LEN).all())
    measured = measured_flops_per_example(model, batch)
    assert measured > 0, f"{model_name}: flop_counter counted no matmul at all"
    kwargs = analytic_kwargs(model, batch)
    err = relative_flops_error(model, batch, **kwargs)
    assert abs(err) <= FLOPS_RTOL, (
        f"{model_name}: flops_per_example({kwargs})={model.flops_per_example(**kwargs)} but "
        f"flop_counter measured {measured:.1f} per example on a batch of {len(batch)} ({err:+.1%})"
    )
    cost = count(model)
    assert cost.params_dense > 0
    # Tables trained row-sparsely count as embedding parameters; PCF-GNN trains its node table
    # densely (message passing reads every node), so it declares none and reports 0 here.
    assert cost.params_embedding == sum(p.numel() for p in model.embedding_parameters())
    assert cost.params_embedding > 0 or model_name == "pcf_gnn"
    assert cost.params_total == model.num_params()
    assert cost.as_metrics()["params/embedding"] == model.num_params(embedding=True, dense=False)


class _TwoLayer(CTRModel):
    """Embedding [B, 2, 4] -> flat [B, 8] -> Linear 8x16 -> Linear 16x1: 2·8·16 + 2·16 FLOPs."""

    def __init__(self) -> None:
        from tests.models.conftest import make_schema

        super().__init__(make_schema())
        from recsys_lab.layers.embedding import FullEmbedding

        self.emb = FullEmbedding(self.schema, dim=4)
        self.l1 = nn.Linear(4 * self.emb.num_fields, 16)
        self.l2 = nn.Linear(16, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(self.emb(batch.sparse).flatten(1)))).squeeze(-1)

    def flops_per_example(self) -> int:
        return 2 * self.l1.in_features * 16 + 2 * 16


def test_counting_on_a_hand_computed_model():
    from tests.models.conftest import make_batch

    model = _TwoLayer()
    batch = make_batch(10, seed=0)
    assert measured_flops(model, batch) == 10 * model.flops_per_example()
    assert relative_flops_error(model, batch) == 0.0
    cost = count(model)
    assert cost.params_embedding == model.emb.table.weight.numel()
    assert cost.params_dense == sum(p.numel() for p in (*model.l1.parameters(), *model.l2.parameters()))
    assert model.training  # the mode is restored


def test_a_wrong_analytic_count_is_caught():
    from tests.models.conftest import make_batch

    model = _TwoLayer()
    model.flops_per_example = lambda: 2 * model.l1.in_features * 16  # type: ignore[method-assign]
    assert relative_flops_error(model, make_batch(4, seed=1)) < -FLOPS_RTOL
