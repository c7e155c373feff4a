"""``data=synthetic``: the tabular synthetic dataset (:mod:`.tabular`) as a datamodule.

Splits are generated in memory on :meth:`SyntheticDataModule.setup` and served by
:meth:`~recsys_lab.data.datamodule.LoaderSpec.table`. Each split carries the planted model's click
probability as ``extras["true_prob"]`` (float32 ``[N]``), from which :meth:`oracle_metrics` gives
the best AUC and LogLoss any model can reach on that split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from recsys_lab.data.datamodule import (
    SPLITS,
    DataModule,
    DataSize,
    LoaderSpec,
    TableSplit,
    cap,
    check_size,
)
from recsys_lab.data.schema import Schema
from recsys_lab.data.synthetic.tabular import PlantedModel, SyntheticTable, SyntheticTabularSpec
from recsys_lab.metrics import auc, logloss


class SyntheticDataModule(DataModule):
    """Synthetic tabular CTR data with a known optimum.

    Args:
        seed: seeds the planted model, every row and the training shuffle.
        num_categorical .. instance_field: the planted model; see :class:`SyntheticTabularSpec`.
        num_train, num_val, num_test: rows per split.
        batch_size, eval_batch_size, num_workers: the :class:`LoaderSpec`.
        size: ``tiny`` caps the splits at 4096/1024/1024 rows and the batches at 256/1024,
            ``fast_dev_run`` at 512/256/256 rows and 128/256 (``full``: as given).
        chunk_size: rows generated per chunk; the data depend on it, so keep it fixed.
        generation_threads: threads generating chunks (None = up to 4 by CPU count); the data do
            not depend on it.
    """

    name = "synthetic"

    def __init__(
        self,
        seed: int = 0,
        num_categorical: int = 12,
        num_numeric: int = 6,
        num_users: int = 1000,
        min_vocab: int = 10,
        max_vocab: int = 5000,
        vocab_sizes: Sequence[int] | None = None,
        zipf_exponent: float = 1.4,
        tail_decay: float = 1.0,
        missing_rate: float = 0.0,
        num_crosses: int = 8,
        cross_rank: int = 1,
        first_order_scale: float = 1.0,
        cross_scale: float = 0.8,
        dense_scale: float = 0.6,
        dense_hidden: int = 16,
        base_rate: float = 0.25,
        instance_scale: float = 0.0,
        instance_field: str = "user",
        num_train: int = 500_000,
        num_val: int = 100_000,
        num_test: int = 100_000,
        batch_size: int = 1024,
        eval_batch_size: int = 16384,
        num_workers: int = 0,
        chunk_size: int = 100_000,
        generation_threads: int | None = None,
        size: DataSize = "full",
    ) -> None:
        self.spec = SyntheticTabularSpec(
            seed=seed,
            num_categorical=num_categorical,
            num_numeric=num_numeric,
            num_users=num_users,
            min_vocab=min_vocab,
            max_vocab=max_vocab,
            vocab_sizes=None if vocab_sizes is None else tuple(vocab_sizes),
            zipf_exponent=zipf_exponent,
            tail_decay=tail_decay,
            missing_rate=missing_rate,
            num_crosses=num_crosses,
            cross_rank=cross_rank,
            first_order_scale=first_order_scale,
            cross_scale=cross_scale,
            dense_scale=dense_scale,
            dense_hidden=dense_hidden,
            base_rate=base_rate,
            instance_scale=instance_scale,
            instance_field=instance_field,
        )
        for arg, value, low in (
            ("num_train", num_train, 1),
            ("num_val", num_val, 1),
            ("num_test", num_test, 1),
            ("chunk_size", chunk_size, 1),
        ):
            if value < low:
                raise ValueError(f"synthetic data: {arg}={value!r} must be >= {low}")
        if generation_threads is not None and generation_threads < 1:
            raise ValueError(
                f"synthetic data: generation_threads={generation_threads!r} must be >= 1 (or null for auto)"
            )
        self.size = check_size(size, "synthetic data")
        self.sizes = {
            "train": cap(num_train, size, 4096, 512),
            "val": cap(num_val, size, 1024, 256),
            "test": cap(num_test, size, 1024, 256),
        }
        self.loader = LoaderSpec(batch_size, eval_batch_size, num_workers).sized(size)
        self.batch_size = self.loader.batch_size
        self.eval_batch_size = self.loader.eval_batch_size
        self.num_workers = num_workers
        self.chunk_size = chunk_size
        self.generation_threads = generation_threads
        self._schema = self.spec.schema()
        self._model: PlantedModel | None = None
        self._splits: dict[str, TableSplit] = {}

    # -- DataModule ----------------------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        return self._schema

    def setup(self) -> None:
        """Generate the planted model and the three splits (once)."""
        if self._splits:
            return
        model = PlantedModel(self.spec)
        splits = {
            name: _to_table(model.generate(name, self.sizes[name], self.chunk_size, self.generation_threads))
            for name in SPLITS
        }
        self._model, self._splits = model, splits

    def train_dataloader(self) -> DataLoader:
        return self.loader.table(self.split("train"), train=True, seed=self.spec.seed)

    def val_dataloader(self) -> DataLoader:
        return self.loader.table(self.split("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader.table(self.split("test"), train=False)

    def oracle_metrics(self, split: str) -> dict[str, float]:
        """AUC and LogLoss of the true probabilities on ``split`` (``train``, ``val`` or ``test``)."""
        table = self.split(split)
        prob, click = table.extras["true_prob"], table.labels["click"]
        return {"oracle_auc": auc(prob, click), "oracle_logloss": logloss(prob, click)}

    # -- extras --------------------------------------------------------------------------------
    def split(self, name: str) -> TableSplit:
        """The generated split ``name`` (runs :meth:`setup` if needed)."""
        if name not in SPLITS:
            raise ValueError(f"synthetic data: split={name!r} is unknown; use one of {list(SPLITS)}")
        self.setup()
        return self._splits[name]

    @property
    def planted_model(self) -> PlantedModel:
        """The true model (runs :meth:`setup` if needed)."""
        self.setup()
        assert self._model is not None
        return self._model


def _to_table(t: SyntheticTable) -> TableSplit:
    """Wrap numpy columns as tensors without copying; ``user`` is a view of ``sparse[:, 0]``."""
    sparse = torch.from_numpy(t.sparse)  # int32 [N, F], widened per batch
    return TableSplit(
        dense=torch.from_numpy(t.dense),
        sparse=sparse,
        labels={"click": torch.from_numpy(t.click)},
        user=sparse[:, 0],
        extras={"true_prob": torch.from_numpy(t.true_prob)},
    )
