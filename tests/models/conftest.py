"""Shared fixtures of the model tests: a tiny schema, a tiny seeded batch, a planted task, and
helpers that count FLOPs, check gradients and check learning."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Feature, Schema
from recsys_lab.layers.embedding import EmbeddingFactory, FullEmbedding
from recsys_lab.models.base import CTRModel

VOCAB_SIZES = (5, 10, 20, 50)
NUM_NUMERIC = 3
EMBED_DIM = 8


def make_schema() -> Schema:
    cats = [Feature(f"c{i}", "categorical", vocab_size=v) for i, v in enumerate(VOCAB_SIZES)]
    nums = [Feature(f"n{i}", "numeric") for i in range(NUM_NUMERIC)]
    return Schema(features=(*cats, *nums))


def make_batch(size: int, seed: int) -> Batch:
    """Ids uniform in each field's vocabulary (0 included), standard-normal numerics, random clicks."""
    g = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(0, v, (size,), generator=g) for v in VOCAB_SIZES], dim=1)
    dense = torch.randn(size, NUM_NUMERIC, generator=g)
    click = torch.randint(0, 2, (size,), generator=g).float()
    return Batch(dense=dense, sparse=sparse, labels={"click": click})


@pytest.fixture
def schema() -> Schema:
    """4 categorical fields (vocab 5, 10, 20, 50) and 3 numeric fields."""
    return make_schema()


@pytest.fixture
def batch() -> Batch:
    """16 samples, generator seed 0."""
    return make_batch(16, seed=0)


@pytest.fixture
def embedding() -> EmbeddingFactory:
    """Full tables of width 8 with dense gradients (so plain Adam trains everything)."""
    return functools.partial(FullEmbedding, dim=EMBED_DIM, sparse_grad=False)


def make_planted(size: int, seed: int) -> Batch:
    """A batch whose click is a deterministic, linearly separable function of two fields and one
    numeric feature: ``click = [s0(id0) + s1(id1) + x0 > 0]``, with random signs s fixed once
    (seed 2) so every call draws from the same task."""
    b = make_batch(size, seed=seed)
    g = torch.Generator().manual_seed(2)
    s0 = torch.randint(0, 2, (VOCAB_SIZES[0],), generator=g).float() * 2 - 1
    s1 = torch.randint(0, 2, (VOCAB_SIZES[1],), generator=g).float() * 2 - 1
    score = s0[b.sparse[:, 0]] + s1[b.sparse[:, 1]] + b.dense[:, 0]
    b.labels["click"] = (score > 0).float()
    return b


def assert_learns_planted_task(model: CTRModel, steps: int = 100) -> None:
    """Full-batch Adam on 512 planted samples: the training loss falls by more than half and the
    model classifies 512 fresh samples of the same task with accuracy > 0.9."""
    train, test = make_planted(512, seed=1), make_planted(512, seed=3)
    losses = train_losses(model, train, steps=steps)
    assert losses[-1] < 0.5 * losses[0], losses[:: steps // 10]
    model.eval()
    with torch.no_grad():
        accuracy = ((model(test) > 0).float() == test.labels["click"]).float().mean().item()
    assert accuracy > 0.9, accuracy


def assert_config_defaults(cls: type[CTRModel], name: str) -> DictConfig:
    """``conf/model/<name>.yaml`` targets ``cls`` and sets every hyperparameter (and neither schema
    nor embedding) to the constructor's default; returns the config."""
    path = Path(__file__).parents[2] / "conf" / "model" / f"{name}.yaml"
    cfg = OmegaConf.load(path)
    assert path.read_text().startswith("# "), "the config starts with a one-line comment"
    assert cfg._target_ == f"{cls.__module__}.{cls.__name__}"
    params = dict(inspect.signature(cls.__init__).parameters)
    for skip in ("self", "schema", "embedding"):
        params.pop(skip)
    keys = set(cfg) - {"_target_"}
    assert keys == set(params), f"config keys {sorted(keys)} != constructor hyperparameters {sorted(params)}"
    for key, p in params.items():
        value = OmegaConf.to_object(cfg)[key]
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        assert value == default, f"{name}.yaml sets {key}={value!r}, the constructor default is {default!r}"
    return cfg


def assert_config_matches_constructor(cls: type[CTRModel], name: str) -> None:
    """:func:`assert_config_defaults`, and the config instantiates on the tiny schema."""
    cfg = assert_config_defaults(cls, name)
    # Hydra turns a dataclass passed as a kwarg into a DictConfig, so the Schema must reach the
    # constructor either through a partial or with _convert_="object" (which rebuilds the dataclass).
    schema, embedding = make_schema(), functools.partial(FullEmbedding, dim=EMBED_DIM)
    built = [
        hydra.utils.instantiate(cfg, _partial_=True)(schema=schema, embedding=embedding),
        hydra.utils.instantiate(cfg, schema=schema, embedding=embedding, _convert_="object"),
    ]
    for model in built:
        assert isinstance(model, cls)
        assert model.schema == schema
        assert model(make_batch(4, seed=0)).shape == (4,)


def counted_flops_per_example(model: CTRModel, batch: Batch) -> float:
    """FLOPs FlopCounterMode counts for one forward on ``batch``, divided by the batch size."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(batch)
    return counter.get_total_flops() / len(batch)


def assert_all_parameters_get_gradients(model: CTRModel, batch: Batch) -> None:
    model.train()
    model.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.labels["click"])
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, f"zero gradient at {name}"


def train_losses(model: CTRModel, batch: Batch, steps: int = 100, lr: float = 1e-2) -> list[float]:
    """Full-batch Adam on ``batch``; the loss before each step. Runs on one thread: the models are
    tiny, and intra-op threads only add contention on a busy 2-core machine."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.labels["click"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    return losses


@pytest.fixture
def learns() -> Callable[[CTRModel], None]:
    return assert_learns_planted_task


@pytest.fixture
def config_matches() -> Callable[[type[CTRModel], str], None]:
    return assert_config_matches_constructor


@pytest.fixture
def flops_of() -> Callable[[CTRModel, Batch], float]:
    return counted_flops_per_example


@pytest.fixture
def check_gradients() -> Callable[[CTRModel, Batch], None]:
    return assert_all_parameters_get_gradients


# -- multi-task models ---------------------------------------------------------------------------


def make_two_label_planted(size: int, seed: int) -> Batch:
    """:func:`make_planted` plus a ``conversion`` label that is a click *and* a second planted rule
    ``s2(id2) + x1 > 0`` (the click -> conversion funnel: conversion implies click)."""
    b = make_planted(size, seed)
    g = torch.Generator().manual_seed(5)
    s2 = torch.randint(0, 2, (VOCAB_SIZES[2],), generator=g).float() * 2 - 1
    converts = (s2[b.sparse[:, 2]] + b.dense[:, 1]) > 0
    b.labels["conversion"] = (converts & (b.labels["click"] > 0)).float()
    return b


def assert_learns_two_labels(model, steps: int = 150, min_accuracy: float = 0.85) -> None:
    """Full-batch Adam with :class:`~recsys_lab.objectives.multitask.MultiTaskBCE` on 512 samples of
    :func:`make_two_label_planted`: the loss falls by more than half and both labels are classified
    on 512 fresh samples with accuracy > ``min_accuracy`` (always guessing 0 scores about 0.5 on
    click and 0.75 on conversion)."""
    from recsys_lab.objectives.multitask import MultiTaskBCE

    train, test = make_two_label_planted(512, seed=1), make_two_label_planted(512, seed=3)
    objective = MultiTaskBCE(model.labels)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            loss, _ = objective(model.forward_tasks(train), train.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.5 * losses[0], losses[:: steps // 10]
    model.eval()
    with torch.no_grad():
        logits = model.forward_tasks(test)
    for label in model.labels:
        accuracy = ((logits[label] > 0).float() == test.labels[label]).float().mean().item()
        assert accuracy > min_accuracy, (label, accuracy)


def assert_every_parameter_learns_from_both_labels(model) -> None:
    """The two-label loss reaches every parameter with a finite, non-zero gradient."""
    from recsys_lab.objectives.multitask import MultiTaskBCE

    batch = make_two_label_planted(64, seed=0)
    model.train()
    model.zero_grad()
    loss, _ = MultiTaskBCE(model.labels)(model.forward_tasks(batch), batch.labels)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


@pytest.fixture
def two_label_batch() -> Batch:
    return make_two_label_planted(16, seed=0)
