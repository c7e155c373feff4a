"""Field embeddings backed by TorchRec's ``EmbeddingBagCollection``, shardable over ranks.

One TorchRec table per categorical field (``vocab_f x D``); each sample has one id per field, so a
sum-pooled bag of one id is that id's row. Without a process group the collection runs as a plain
module (the same maths as :class:`~recsys_lab.layers.embedding.FullEmbedding`). With one,
:meth:`TorchRecEmbedding.shard` places the tables on ranks with TorchRec's planner
(``DistributedModelParallel``): each rank stores only its tables, and lookups travel by
all-to-all. Sharded tables are optimised by TorchRec's fused optimiser inside the backward pass
(``optimizer``/``lr`` below), not by the task's sparse optimiser; their gradient is the mean over
ranks, as DDP's is for dense weights.

Unsharded, the bags emit sparse gradients (the task's SparseAdam trains them, and under
``trainer=ddp`` DDP all-reduces them like any table). The Lightning task does not call
:meth:`shard` yet (sharded tables would also need DDP to skip them and sharded checkpoints);
see docs/scaling.md.

TorchRec is an optional extra (``pip install recsys_lab[torchrec]``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import FieldEmbedding

FusedOptimizer = Literal["sgd", "adagrad", "rowwise_adagrad", "adam"]


def _torchrec() -> Any:
    try:
        import torchrec
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "embedding=torchrec_sharded needs TorchRec: `pip install 'recsys_lab[torchrec]'` (torchrec and "
            "fbgemm-gpu, or fbgemm-gpu-cpu on CPU-only machines), or use embedding=full."
        ) from err
    return torchrec


class TorchRecEmbedding(FieldEmbedding):
    """Categorical ids ``[B, F]`` -> ``[B, F, D]`` through an ``EmbeddingBagCollection``.

    Args:
        schema: the dataset schema (one table per categorical field, ``vocab_size`` rows).
        dim: D, the embedding width.
        init_std: standard deviation of the normal initialisation.
        shard: whether :meth:`shard` may shard the tables (a training loop that owns the process
            group calls it); ``False`` keeps them whole everywhere.
        sharding_type: how TorchRec splits the tables: ``table_wise`` (whole tables per rank),
            ``row_wise`` or ``column_wise``.
        optimizer: TorchRec's fused optimiser for the sharded tables.
        lr: its learning rate.
    """

    def __init__(
        self,
        schema: Schema,
        dim: int = 16,
        init_std: float = 1e-2,
        shard: bool = True,
        sharding_type: Literal["table_wise", "row_wise", "column_wise"] = "table_wise",
        optimizer: FusedOptimizer = "adam",
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        torchrec = _torchrec()
        if dim < 1:
            raise ValueError(f"embedding dim must be >= 1, got {dim}")
        if optimizer not in ("sgd", "adagrad", "rowwise_adagrad", "adam"):
            raise ValueError(
                f"embedding.optimizer must be sgd, adagrad, rowwise_adagrad or adam, got {optimizer!r}"
            )
        fields = [f for f in schema.features if f.kind == "categorical"]
        if not fields:
            raise ValueError("TorchRecEmbedding needs at least one categorical field in the schema")
        self.num_fields = len(fields)
        self.dim = dim
        self.feature_names = [f.name for f in fields]
        self.rows_per_field = [int(f.vocab_size) for f in fields]
        self.shard_when_distributed = shard
        if sharding_type not in ("table_wise", "row_wise", "column_wise"):
            raise ValueError(
                f"embedding.sharding_type must be table_wise, row_wise or column_wise, got {sharding_type!r}"
            )
        self.sharding_type = sharding_type
        self.optimizer = optimizer
        self.lr = lr
        tables = [
            torchrec.EmbeddingBagConfig(
                name=f"t_{name}",
                embedding_dim=dim,
                num_embeddings=max(rows, 1),
                feature_names=[name],
                pooling=torchrec.PoolingType.SUM,
            )
            for name, rows in zip(self.feature_names, self.rows_per_field, strict=True)
        ]
        self.collection: nn.Module = torchrec.EmbeddingBagCollection(
            tables=tables, device=torch.device("cpu")
        )
        with torch.no_grad():
            for weight in self.collection.parameters():
                weight.normal_(0.0, init_std)
        for bag in self.collection.embedding_bags.values():  # type: ignore[union-attr]
            bag.sparse = True  # sparse gradients: only looked-up rows (for SparseAdam)
        self.is_sharded = False

    def tables(self) -> list[Tensor]:
        """The unsharded tables, one ``[vocab_f, D]`` per field (field order)."""
        if self.is_sharded:
            raise RuntimeError("tables() reads the unsharded tables; this module is sharded")
        bags = self.collection.embedding_bags  # type: ignore[union-attr]
        return [bags[f"t_{name}"].weight for name in self.feature_names]

    def _kjt(self, ids: Tensor) -> Any:
        """ids int64 ``[B, F]`` -> a KeyedJaggedTensor with one id per (field, sample)."""
        torchrec = _torchrec()
        batch = ids.shape[0]
        return torchrec.KeyedJaggedTensor(
            keys=self.feature_names,
            values=ids.t().reshape(-1),  # field-major: [F * B]
            lengths=torch.ones(self.num_fields * batch, dtype=torch.int32, device=ids.device),
        )

    def forward(self, ids: Tensor) -> Tensor:
        """``ids`` int64 ``[B, F]`` -> float ``[B, F, D]``."""
        if ids.dim() != 2 or ids.shape[1] != self.num_fields:
            raise ValueError(f"TorchRecEmbedding expects ids [B, {self.num_fields}], got {tuple(ids.shape)}")
        pooled = self.collection(self._kjt(ids))
        if hasattr(pooled, "wait"):  # sharded modules return an awaitable
            pooled = pooled.wait()
        by_feature = pooled.to_dict()  # name -> [B, D]; sharded outputs need not keep the field order
        return torch.stack([by_feature[name] for name in self.feature_names], dim=1)  # [B, F, D]

    def shard(self) -> None:
        """Shard the tables over the default process group's ranks with TorchRec's planner.

        The unsharded weights of every rank must be equal beforehand (same seed); each rank then
        keeps its own shards. Optimised by TorchRec's fused ``optimizer`` from here on.
        """
        if self.is_sharded:
            return
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "TorchRecEmbedding.shard() needs an initialised torch.distributed process group"
            )
        from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
        from torchrec.distributed.model_parallel import DistributedModelParallel
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
        from torchrec.distributed.types import ShardingEnv

        try:
            from fbgemm_gpu.split_embedding_configs import EmbOptimType
        except ImportError as err:  # pragma: no cover
            raise ImportError("sharded TorchRec tables need fbgemm-gpu (or fbgemm-gpu-cpu)") from err

        device = next(self.collection.parameters()).device
        kind = {
            "sgd": EmbOptimType.EXACT_SGD,
            "adagrad": EmbOptimType.EXACT_ADAGRAD,
            "rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
            "adam": EmbOptimType.ADAM,
        }[self.optimizer]
        sharder = EmbeddingBagCollectionSharder(fused_params={"optimizer": kind, "learning_rate": self.lr})
        env = ShardingEnv.from_process_group(dist.group.WORLD)
        topology = Topology(world_size=env.world_size, compute_device=device.type)
        # Table-wise: each table lives whole on one rank (the planner would replicate small tables).
        constraints = {
            f"t_{name}": ParameterConstraints(sharding_types=[self.sharding_type])
            for name in self.feature_names
        }
        planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
        plan = planner.collective_plan(self.collection, [sharder], dist.group.WORLD)
        state = {k: v.detach().clone() for k, v in self.collection.state_dict().items()}
        sharded = DistributedModelParallel(
            self.collection, env=env, device=device, plan=plan, sharders=[sharder], init_data_parallel=False
        )
        _copy_into_shards(sharded, state)  # every rank's shards from the common unsharded weights
        self.collection = sharded
        self.is_sharded = True


def _copy_into_shards(sharded: nn.Module, full: dict[str, Tensor]) -> None:
    """Write the unsharded tables ``full`` (name -> ``[rows, D]``) into this rank's shards."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    by_suffix = {k.split("embedding_bags.", 1)[-1]: v for k, v in full.items()}
    copied = 0
    with torch.no_grad():
        for key, value in sharded.state_dict().items():
            source = by_suffix.get(key.split("embedding_bags.", 1)[-1])
            if source is None:
                continue
            if isinstance(value, ShardedTensor):
                for shard in value.local_shards():
                    r0, c0 = shard.metadata.shard_offsets
                    rows, cols = shard.metadata.shard_sizes
                    shard.tensor.copy_(source[r0 : r0 + rows, c0 : c0 + cols])
            else:
                value.copy_(source)
            copied += 1
    if copied != len(full):
        raise RuntimeError(
            f"sharded TorchRec tables: copied {copied} of {len(full)} tables; state-dict keys changed?"
        )
