"""The synthetic tabular dataset: determinism, planted structure, oracle metrics, loaders, config."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import FeatureKind, FeatureRole
from recsys_lab.data.synthetic import PlantedModel, SyntheticDataModule, SyntheticTabularSpec
from recsys_lab.metrics import auc, logloss

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"
SMALL = {"num_train": 20_000, "num_val": 5_000, "num_test": 5_000, "chunk_size": 4096, "batch_size": 1000}


@pytest.fixture(scope="module")
def dm() -> SyntheticDataModule:
    module = SyntheticDataModule(seed=3, **SMALL)
    module.setup()
    return module


def _arrays(module: SyntheticDataModule, split: str) -> list[np.ndarray]:
    t = module.split(split)
    return [t.sparse.numpy(), t.dense.numpy(), t.labels["click"].numpy(), t.extras["true_prob"].numpy()]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


# -- determinism ---------------------------------------------------------------------------------
def test_same_seed_gives_identical_splits(dm):
    again = SyntheticDataModule(seed=3, **SMALL, generation_threads=1)  # threads must not matter
    for split in ("train", "val", "test"):
        assert _same(_arrays(dm, split), _arrays(again, split)), split


def test_different_seed_gives_different_data(dm):
    other = SyntheticDataModule(seed=4, **SMALL)
    assert not np.array_equal(dm.split("val").sparse.numpy(), other.split("val").sparse.numpy())
    assert not np.array_equal(
        dm.split("val").extras["true_prob"].numpy(), other.split("val").extras["true_prob"].numpy()
    )


def test_each_chunk_size_is_deterministic_and_splits_are_independent():
    spec = SyntheticTabularSpec(seed=1, num_categorical=5, num_numeric=3, max_vocab=500)
    model = PlantedModel(spec)
    for chunk in (1000, 3333):
        a = model.generate("train", 10_000, chunk_size=chunk, num_threads=2)
        b = PlantedModel(spec).generate("train", 10_000, chunk_size=chunk, num_threads=1)
        assert np.array_equal(a.sparse, b.sparse) and np.array_equal(a.true_prob, b.true_prob)
        assert np.array_equal(a.click, b.click) and np.array_equal(a.dense, b.dense)
    # A longer split extends a shorter one by whole chunks, and splits use separate streams.
    short = model.generate("train", 2000, chunk_size=1000)
    long = model.generate("train", 10_000, chunk_size=1000)
    assert np.array_equal(short.sparse, long.sparse[:2000])
    assert np.array_equal(short.true_prob, long.true_prob[:2000])
    assert not np.array_equal(model.generate("val", 2000, 1000).sparse, short.sparse)


# -- values -------------------------------------------------------------------------------------
def test_schema_and_value_ranges(dm):
    schema = dm.schema
    spec = dm.spec
    names = [f.name for f in schema.features]
    assert names == ["user"] + [f"c{i}" for i in range(1, spec.num_categorical)] + [
        f"n{j}" for j in range(1, spec.num_numeric + 1)
    ]
    assert schema.user_feature().name == "user" and schema["user"].role is FeatureRole.USER
    assert schema["user"].vocab_size == spec.num_users + 1
    assert schema.num_numeric == spec.num_numeric and schema["n1"].kind is FeatureKind.NUMERIC
    assert schema.labels == ("click",)
    vocab = schema.vocab_sizes
    assert vocab[1] == spec.min_vocab and vocab[-1] == spec.max_vocab
    for split in ("train", "val", "test"):
        t = dm.split(split)
        sparse = t.sparse.numpy()
        assert sparse.dtype == np.int32 and sparse.shape == (dm.sizes[split], len(vocab))
        assert (sparse >= 1).all(), "missing_rate=0: no id 0"
        assert (sparse < np.array(vocab)).all()
        assert torch.equal(t.user, t.sparse[:, 0])
        dense = t.dense.numpy()
        assert dense.dtype == np.float32 and np.isfinite(dense).all()
        np.testing.assert_allclose(dense.mean(0), 0, atol=0.05)
        np.testing.assert_allclose(dense.std(0), 1, atol=0.05)
        assert set(np.unique(t.labels["click"].numpy())) <= {0.0, 1.0}


def test_missing_rate_puts_id_zero():
    spec = SyntheticTabularSpec(
        seed=0, num_categorical=4, num_numeric=1, max_vocab=100, num_crosses=2, missing_rate=0.1
    )
    t = PlantedModel(spec).generate("train", 20_000)
    assert (t.sparse == 0).mean() == pytest.approx(0.1, abs=0.01)


def test_zipf_skew(dm):
    """The top 1% of a 10k-value field's ids cover most rows; ids are spread over the vocabulary."""
    col = dm.split("train").sparse[:, -1].numpy()
    vocab = dm.schema.vocab_sizes[-1]
    counts = np.sort(np.bincount(col, minlength=vocab))[::-1]
    assert counts[: vocab // 100].sum() / col.size > 0.5
    assert len(np.unique(col)) > 1000
    top = np.argmax(np.bincount(col))
    assert top != 1, "frequency ranks are permuted, so the most frequent id is not simply 1"


def test_true_prob_matches_planted_model_and_labels(dm):
    t = dm.split("train")
    prob = t.extras["true_prob"].numpy()
    recomputed = dm.planted_model.true_prob(t.sparse.numpy(), t.dense.numpy())
    np.testing.assert_allclose(prob, recomputed, rtol=1e-5, atol=1e-7)
    n = len(prob)
    assert prob.mean() == pytest.approx(dm.spec.base_rate, abs=0.01)
    assert t.labels["click"].numpy().mean() == pytest.approx(prob.mean(), abs=4 * np.sqrt(0.25 / n))


@pytest.mark.parametrize("base_rate", [0.03, 0.6])
def test_bias_hits_the_base_rate(base_rate):
    spec = SyntheticTabularSpec(seed=2, num_categorical=6, num_numeric=2, max_vocab=300, base_rate=base_rate)
    assert PlantedModel(spec).generate("val", 20_000).true_prob.mean() == pytest.approx(base_rate, rel=0.05)


def test_oracle_metrics(dm):
    for split in ("train", "val", "test"):
        t = dm.split(split)
        got = dm.oracle_metrics(split)
        assert got["oracle_auc"] == auc(t.extras["true_prob"], t.labels["click"])
        assert got["oracle_logloss"] == logloss(t.extras["true_prob"], t.labels["click"])
        assert 0.7 < got["oracle_auc"] < 0.9
        assert got["oracle_logloss"] < 0.5  # base-rate entropy at 0.25 is 0.562


def test_planted_components_have_their_scales_and_crosses_matter(dm):
    t = dm.split("train")
    sparse, dense, click = t.sparse.numpy(), t.dense.numpy(), t.labels["click"]
    model = dm.planted_model
    first, cross, dense_term = model.logit_parts(sparse, dense)
    spec = dm.spec
    assert first.std() == pytest.approx(spec.first_order_scale, rel=0.15)
    assert cross.std() == pytest.approx(spec.cross_scale, rel=0.15)
    assert dense_term.std() == pytest.approx(spec.dense_scale, rel=0.15)
    logit = model.logit(sparse, dense)
    assert np.var(logit - first) > 0.5 * np.var(logit) * (spec.cross_scale**2 / (1 + spec.cross_scale**2))
    # Dropping the crosses costs the oracle real AUC: a first-order (+ dense) model stays well below.
    sig = lambda z: torch.from_numpy(1 / (1 + np.exp(-(model.bias + z))))  # noqa: E731
    assert auc(sig(first + cross + dense_term), click) - auc(sig(first + dense_term), click) > 0.02
    # The dense term is genuinely nonlinear: a linear fit leaves a good part of it unexplained.
    x = np.c_[dense, np.ones(len(dense))]
    coef, *_ = np.linalg.lstsq(x, dense_term, rcond=None)
    assert np.var(dense_term - x @ coef) > 0.1 * np.var(dense_term)


def test_instance_term_gives_each_value_its_own_numeric_weights_and_leaves_the_rows():
    knobs = dict(seed=2, num_categorical=5, num_numeric=3, num_users=50, max_vocab=100, num_crosses=4)
    plain = PlantedModel(SyntheticTabularSpec(**knobs))
    model = PlantedModel(SyntheticTabularSpec(**knobs, instance_scale=1.0, instance_field="c1"))
    a, b = plain.generate("val", 20_000), model.generate("val", 20_000)
    # the same features; the planted probability gains the term (drawn from its own seed stream)
    assert np.array_equal(a.sparse, b.sparse) and np.array_equal(a.dense, b.dense)
    assert not plain.instance_term(a.sparse, a.dense).any()
    assert not np.allclose(a.true_prob, b.true_prob)
    term = model.instance_term(b.sparse, b.dense)
    assert term.std() == pytest.approx(1.0, rel=0.1)
    assert np.allclose(
        model.logit(b.sparse, b.dense), model.bias + sum(model.logit_parts(b.sparse, b.dense)) + term
    )
    # each value of c1 has its own weights on the numeric features: linear in z with its own slope
    q = model.instance_w
    assert q is not None and q.shape == (model.spec.field_vocab_sizes[1], 3)
    rows = b.sparse[:, 1] == b.sparse[0, 1]
    assert np.allclose(term[rows], b.dense[rows].astype(np.float64) @ q[b.sparse[0, 1]])
    top = np.bincount(b.sparse[:, 1]).argsort()[-2:]
    assert abs(q[top[0]] @ q[top[1]]) < 0.99 * np.linalg.norm(q[top[0]]) * np.linalg.norm(q[top[1]])


def test_cross_is_an_interaction():
    """On the most frequent values, a planted cross is not a sum of per-field effects."""
    spec = SyntheticTabularSpec(seed=5, num_categorical=3, num_numeric=0, max_vocab=50, num_crosses=1)
    model = PlantedModel(spec)
    (a, b), u, v = model.cross_pairs[0], model.cross_u[0], model.cross_v[0]
    ids_a, ids_b = model.fields[a].rank_to_id[:8], model.fields[b].rank_to_id[:8]
    table = u[:, ids_a].T @ v[:, ids_b]  # [8, 8] cross effect of the head values
    centred = table - table.mean(0) - table.mean(1, keepdims=True) + table.mean()
    assert np.abs(centred).max() > 0.1 * np.abs(table).max()


# -- loaders ------------------------------------------------------------------------------------
def test_train_loader_batches_cover_every_row_once_and_reshuffle(dm):
    loader = dm.train_dataloader()
    n, f, d = dm.sizes["train"], dm.spec.num_categorical, dm.spec.num_numeric
    batches = list(loader)
    assert all(isinstance(b, Batch) for b in batches)
    assert len(batches) == -(-n // dm.batch_size)  # drop_last=False
    b0 = batches[0]
    assert b0.sparse.shape == (dm.batch_size, f) and b0.sparse.dtype == torch.int64
    assert b0.dense.shape == (dm.batch_size, d) and b0.dense.dtype == torch.float32
    assert b0.labels["click"].shape == (dm.batch_size,) and torch.equal(b0.user, b0.sparse[:, 0])
    assert b0.extras["true_prob"].shape == (dm.batch_size,)
    sampler = loader.sampler
    sampler.set_epoch(0)
    rows0 = torch.cat(list(sampler))
    assert torch.equal(torch.sort(rows0).values, torch.arange(n))
    sampler.set_epoch(1)
    rows1 = torch.cat(list(sampler))
    assert torch.equal(torch.sort(rows1).values, torch.arange(n))
    assert not torch.equal(rows0, rows1)
    # The batches really are the table rows: same multiset of true probabilities.
    seen = torch.cat([b.extras["true_prob"] for b in batches])
    assert torch.equal(torch.sort(seen).values, torch.sort(dm.split("train").extras["true_prob"]).values)


def test_eval_loaders_are_in_order(dm):
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        t = dm.split(split)
        batches = list(loader)
        assert torch.equal(torch.cat([b.sparse for b in batches]), t.sparse.long())
        assert torch.equal(torch.cat([b.labels["click"] for b in batches]), t.labels["click"])


def test_setup_is_idempotent(dm):
    before = dm.split("train")
    dm.setup()
    assert dm.split("train") is before


# -- arguments and config -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_val": 0}, "num_val"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"zipf_exponent": 0.0}, "zipf_exponent"),
        ({"tail_decay": -0.5}, "tail_decay"),
        ({"min_vocab": 1}, "min_vocab"),
        ({"max_vocab": 5}, "max_vocab"),
        ({"num_categorical": 3, "vocab_sizes": [10, 1]}, "vocab_sizes"),
        ({"num_categorical": 3, "vocab_sizes": [10]}, "vocab_sizes"),
        ({"num_categorical": 0}, "num_categorical"),
        ({"num_users": 0}, "num_users"),
        ({"num_categorical": 3, "num_crosses": 4}, "num_crosses"),
        ({"cross_rank": 0}, "cross_rank"),
        ({"cross_scale": -1.0}, "cross_scale"),
        ({"base_rate": 1.0}, "base_rate"),
        ({"missing_rate": 1.0}, "missing_rate"),
        ({"generation_threads": 0}, "generation_threads"),
        ({"instance_scale": -1.0}, "instance_scale"),
        ({"instance_scale": 1.0, "num_numeric": 0}, "instance_scale"),
        ({"instance_field": "c99"}, "instance_field"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SyntheticDataModule(**kwargs)


def test_unknown_split_is_an_error(dm):
    with pytest.raises(ValueError, match="split"):
        dm.oracle_metrics("dev")


@pytest.mark.parametrize("config", ["synthetic", "synthetic_criteo"])
def test_hydra_configs_set_every_argument_and_instantiate(config):
    data = OmegaConf.load(CONF / f"{config}.yaml")
    params = set(inspect.signature(SyntheticDataModule.__init__).parameters) - {"self"}
    assert set(data) - {"_target_"} == params, "every constructor argument is explicit in the config"
    cfg = OmegaConf.create({"seed": 7, "data": data})
    cfg.data.num_train, cfg.data.num_val, cfg.data.num_test = 2000, 500, 500
    module = instantiate(cfg.data)
    assert isinstance(module, SyntheticDataModule) and module.spec.seed == 7
    module.setup()
    assert 0.6 < module.oracle_metrics("val")["oracle_auc"] < 0.95


def test_default_config_is_the_documented_shape():
    data = OmegaConf.load(CONF / "synthetic.yaml")
    assert 10 <= data.num_categorical <= 20 and 5 <= data.num_numeric <= 13
    criteo = OmegaConf.load(CONF / "synthetic_criteo.yaml")
    assert criteo.num_categorical == 26 and criteo.num_numeric == 13 and criteo.max_vocab == 100_000
