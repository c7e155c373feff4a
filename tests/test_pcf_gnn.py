"""PCF-GNN: co-occurrence statistics from the training split only, the GNN layer, pre-training,
predictions for unseen pairs, storage counts, the pair-feature datamodule and the pipeline."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch

from recsys_lab.data.batch import Batch
from recsys_lab.data.cooccurrence import build_cooccurrence, resolve_field_pairs, select_field_pairs
from recsys_lab.data.datamodule import TableSplit
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.layers.gnn import HeteroMessagePassing, inverse_degree
from recsys_lab.models.pcf_gnn import PCFGNN
from recsys_lab.runners.pipeline import run_pipeline
from recsys_lab.scaling.counting import measured_flops_per_example
from recsys_lab.tasks.pcf import PCFPretrainTask, pair_features
from tests.conftest import compose_train


def _schema() -> Schema:
    return Schema(
        (
            Feature("u", "categorical", 6, "user"),
            Feature("i", "categorical", 5, "item"),
            Feature("c", "categorical", 4),
        )
    )


def _split(sparse: list[list[int]], clicks: list[float]) -> TableSplit:
    s = torch.tensor(sparse)
    return TableSplit(dense=torch.zeros(len(s), 0), sparse=s, labels={"click": torch.tensor(clicks)})


# -- co-occurrence statistics ------------------------------------------------------------------
def test_smoothed_pair_ctr_counts_training_pairs():
    train = _split([[1, 1, 1], [1, 1, 2], [1, 2, 1], [2, 1, 3]], [1.0, 0.0, 1.0, 0.0])
    stats = build_cooccurrence(train.sparse, train.labels["click"], _schema(), [(0, 1)], alpha=2.0)
    assert stats.prior == 0.5 and stats.num_entries == 3  # (1,1) x2, (1,2), (2,1)
    ctr, seen = stats.lookup(torch.tensor([[1, 1, 0], [2, 1, 0], [3, 3, 0]]))
    assert ctr[:, 0].tolist() == pytest.approx([(1 + 1) / (2 + 2), (0 + 1) / (1 + 2), 0.5])
    assert seen[:, 0].tolist() == [True, True, False]  # unseen pair -> prior
    src, dst, labels, weights = stats.edges()
    assert src[0].tolist() == [1, 1, 2] and dst[0].tolist() == [6 + 1, 6 + 2, 6 + 1]  # global node rows
    assert weights.tolist() == pytest.approx([2**0.5, 1, 1])
    assert labels.tolist() == pytest.approx([0.5, (1 + 1) / 3, 1 / 3])


def test_training_lookups_leave_the_sample_out():
    train = _split([[1, 1, 1], [1, 1, 2], [2, 2, 1]], [1.0, 0.0, 1.0])
    stats = build_cooccurrence(train.sparse, train.labels["click"], _schema(), [(0, 1)], alpha=1.0)
    p = stats.prior
    ctr, seen = stats.lookup(train.sparse, train.labels["click"])
    assert ctr[:, 0].tolist() == pytest.approx([(0 + p) / 2, (1 + p) / 2, p])  # own click removed
    assert seen[:, 0].tolist() == [True, True, False]  # a pair seen once is "unseen" without itself


def test_labels_use_the_training_split_only(tmp_path, hydra_ctx):
    cfg = compose_train(
        tmp_path, "data=pair_features", "model=pcf_gnn", "task=pcf_pretrain", "debug=fast_dev_run"
    )
    from recsys_lab.runners.train import build

    dm, _model, task = build(cfg)
    train, test = dm.split("train"), dm.split("test")
    stats = task.fit_graph(train)
    # flipping every test label changes nothing in the graph or its labels
    before = stats.edges()[2].clone()
    test.labels["click"] = 1 - test.labels["click"]
    assert torch.equal(task.fit_graph(train).edges()[2], before)
    # every edge is a pair of training values; the prior is the training click rate
    keys = set(stats.tables[0].keys.tolist())
    t = stats.tables[0]
    assert keys == set(t.sample_keys(train.sparse.long()).tolist())
    assert stats.prior == pytest.approx(float(train.labels["click"].mean()))


def test_pair_selection_finds_a_planted_cross():
    g = torch.Generator().manual_seed(0)
    n = 20_000
    sparse = torch.randint(1, 4, (n, 3), generator=g)
    xor = (sparse[:, 0] % 2) ^ (sparse[:, 2] % 2)  # CTR depends on (u, c) jointly, on neither alone
    clicks = torch.bernoulli(0.2 + 0.6 * xor.float(), generator=g)
    assert select_field_pairs(sparse, clicks, _schema(), num_pairs=1, alpha=5.0) == [(0, 2)]
    assert resolve_field_pairs(_schema(), [["u", "c"]]) == [(0, 2)]
    with pytest.raises(ValueError, match="unknown field"):
        resolve_field_pairs(_schema(), [["u", "nope"]])


# -- GNN layer ---------------------------------------------------------------------------------
def test_message_passing_is_type_specific_mean_aggregation():
    layer = HeteroMessagePassing([2, 3], num_relations=1, in_dim=2, out_dim=2, activation=False)
    with torch.no_grad():
        layer.self_weight.copy_(torch.stack([torch.eye(2), 2 * torch.eye(2)]))
        layer.self_bias.zero_()
        layer.rel_weight.copy_(10 * torch.eye(2).unsqueeze(0))
    h = torch.arange(10.0).reshape(5, 2)
    src, dst = torch.tensor([0, 1]), torch.tensor([2, 2])  # both type-0 nodes -> node 2
    out = layer(h, [src], [dst], [inverse_degree(dst, 5)])
    expected = torch.cat([h[:2], 2 * h[2:]])
    expected[2] += 10 * h[:2].mean(0)
    assert torch.allclose(out, expected)


# -- model, pre-training, features -------------------------------------------------------------
@lru_cache(maxsize=1)
def _trained(tmp_seed: int = 0) -> tuple[PCFGNN, PCFPretrainTask, TableSplit]:
    torch.manual_seed(tmp_seed)
    g = torch.Generator().manual_seed(tmp_seed)
    n = 4000
    sparse = torch.stack(
        [
            torch.randint(1, 6, (n,), generator=g),
            torch.randint(1, 5, (n,), generator=g),
            torch.randint(1, 4, (n,), generator=g),
        ],
        1,
    )
    sparse[(sparse[:, 0] == 5) & (sparse[:, 1] == 4), 1] = 3  # pair (u=5, i=4) never occurs in training
    p = torch.sigmoid(((sparse[:, 0] % 2) * 2 - 1).float() * ((sparse[:, 1] % 2) * 2 - 1).float())
    train = _split(sparse.tolist(), torch.bernoulli(p, generator=g).tolist())
    model = PCFGNN(_schema(), lambda s: FullEmbedding(s, dim=8), num_pairs=1, hidden_dim=8)
    task = PCFPretrainTask(
        model, lambda ps: torch.optim.Adam(ps, lr=0.03), field_pairs=[["u", "i"]], alpha=5.0
    )
    task.fit_graph(train)
    opt = task.configure_optimizers()
    idx = torch.arange(task.edge_u.numel())
    for _ in range(120):
        opt.zero_grad()
        task.loss(idx).backward()
        opt.step()
    return model, task, train


def test_pretraining_fits_pair_ctrs_and_predicts_unseen_pairs():
    model, task, train = _trained()
    with torch.no_grad():
        initial = PCFPretrainTask(
            PCFGNN(_schema(), lambda s: FullEmbedding(s, dim=8), num_pairs=1, hidden_dim=8),
            lambda ps: torch.optim.Adam(ps),
            field_pairs=[["u", "i"]],
            alpha=5.0,
        )
        initial.fit_graph(train)
        idx = torch.arange(task.edge_u.numel())
        assert float(task.loss(idx)) < 0.3 * float(initial.loss(idx))
    stats = task.stats
    unseen = torch.tensor([[5, 4, 1]])
    feats = pair_features(model, stats, {"test": _split(unseen.tolist(), [0.0])})["test"]
    assert feats["seen"].tolist() == [[False]]
    assert float(feats["exact"][0, 0]) == pytest.approx(stats.prior)  # the table can only say "prior"
    pred = float(feats["gnn"][0, 0])
    assert 0 < pred < 1 and abs(pred - stats.prior) > 1e-3  # the GNN predicts something pair-specific


def test_storage_counts_nodes_of_paired_fields_and_weights():
    model, task, _ = _trained()
    weights = sum(p.numel() for n, p in model.named_parameters() if "table" not in n and "pair_" not in n)
    assert model.num_gnn_values() == (6 + 5) * 8 + weights  # fields u and i only; c is never read
    assert task.stats.num_entries == len(task.stats.tables[0]) <= 5 * 5
    assert model.embedding_parameters() == []  # the node table trains densely


def test_flops_count_the_predictor_and_optionally_the_message_passing():
    model, _, train = _trained()
    batch = Batch(
        dense=torch.zeros(16, 0), sparse=train.sparse[:16].long(), labels={"click": torch.zeros(16)}
    )
    # forward recomputes every node state: per example, that pass amortised over the batch
    assert measured_flops_per_example(model, batch) == model.flops_per_example(batch_size=16)
    # serving reuses the node states: the predictor on the P pairs alone
    assert model.flops_per_example() == model.num_pairs * model.predictor.flops_per_example()
    relations = 2 * model.num_pairs  # both directions of every chosen pair have edges
    assert model.node_state_flops() == 2 * (2 * model.num_nodes * 8 * 8 * (1 + relations))  # 2 layers


# -- the chained run ---------------------------------------------------------------------------
def test_pipeline_writes_features_and_ctr_stages_read_them(tmp_path, hydra_ctx):
    cfg = compose_train(
        tmp_path, "pipeline=pcf_gnn", 'overrides=["debug=fast_dev_run"]', config_name="pipeline"
    )
    results = {r.name: r for r in run_pipeline(cfg)}
    assert list(results) == ["pcf", "ctr_none", "ctr_exact", "ctr_gnn"]
    pcf = results["pcf"].outputs
    saved = torch.load(pcf["features_file"], weights_only=False)
    for split, n in (("train", 512), ("val", 256), ("test", 256)):
        for key in ("gnn", "exact", "seen"):
            assert saved["splits"][split][key].shape == (n, 4)
    assert pcf["storage/table_entries"] > 0 and pcf["storage/gnn_values"] > 0
    widths = {}
    for name in ("ctr_none", "ctr_exact", "ctr_gnn"):
        metrics = json.loads((tmp_path / "pipelines" / "pcf_gnn" / name / "metrics.json").read_text())
        cfg_text = (tmp_path / "pipelines" / "pcf_gnn" / name / "config.yaml").read_text()
        widths[name] = cfg_text
        assert 0 <= metrics["test/auc"] <= 1
    assert "columns: exact" in widths["ctr_exact"] and "columns: gnn" in widths["ctr_gnn"]


def test_pair_feature_datamodule_appends_centred_logit_columns_in_loader_order(tmp_path):
    from recsys_lab.data.pair_features import PairFeatureDataModule
    from recsys_lab.data.synthetic import SyntheticDataModule

    def inner() -> SyntheticDataModule:
        return SyntheticDataModule(num_train=64, num_val=32, num_test=32, batch_size=16, eval_batch_size=32)

    sizes = {"train": 64, "val": 32, "test": 32}
    g = torch.Generator().manual_seed(0)
    saved = {
        "pairs": ["c1_x_c2", "c3_x_c4"],
        "prior": 0.25,
        "splits": {
            s: {
                "gnn": torch.rand(n, 2, generator=g),
                "exact": torch.rand(n, 2, generator=g),
                "seen": torch.ones(n, 2, dtype=torch.bool),
            }
            for s, n in sizes.items()
        },
    }
    path = tmp_path / "pair_features.pt"
    torch.save(saved, path)
    plain, joined = inner(), PairFeatureDataModule(inner(), features_file=str(path), columns="exact")
    assert [f.name for f in joined.schema.features][-2:] == ["pcf_c1_x_c2", "pcf_c3_x_c4"]
    assert joined.schema.labels == plain.schema.labels and joined.name.endswith("+features")
    centre = torch.logit(torch.tensor(0.25))
    for got, want in zip(joined.train_dataloader(), plain.train_dataloader(), strict=True):
        width = want.dense.shape[1]  # same samples in the same shuffled order, two columns more
        assert got.dense.shape[1] == width + 2 and torch.equal(got.dense[:, :width], want.dense)
    test = torch.cat([b.dense[:, -2:] for b in joined.test_dataloader()])  # unshuffled: row order
    expected = torch.logit(saved["splits"]["test"]["exact"].clamp(1e-4, 1 - 1e-4)) - centre
    torch.testing.assert_close(test, expected)
    torch.testing.assert_close(joined.split("test").dense[:, -2:], expected)
    assert joined.seen("test").shape == (32, 2)
    assert PairFeatureDataModule(inner(), features_file=str(path), columns="none").schema == plain.schema
    short = PairFeatureDataModule(
        SyntheticDataModule(num_train=63, num_val=32, num_test=32), features_file=str(path)
    )
    with pytest.raises(ValueError, match="same data config and seed"):
        short.train_dataloader()
