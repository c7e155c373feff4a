"""Field embeddings backed by TorchRec's ``EmbeddingBagCollection``, shardable over ranks.

One TorchRec table per categorical field (``vocab_f x D``); each sample has one id per field, so a
sum-pooled bag of one id is that id's row. Without a process group the collection runs as a plain
module (the same maths as :class:`~recsys_lab.layers.embedding.FullEmbedding`): sparse gradients,
trained by the task's sparse optimiser, all-reduced by DDP like any table.

Under a process group of more than one rank, :meth:`TorchRecEmbedding.shard` (called by the task's
``configure_model``, before DDP wraps the model) places the tables on ranks with TorchRec's planner
(``DistributedModelParallel``): each rank stores only its shards, and lookups travel by
all-to-all. The sharded tables are then trained by TorchRec's fused optimiser inside the backward
pass (``optimizer``/``lr`` below), with the gradient averaged over ranks as DDP does for dense
weights. The sharded collection is owned by TorchRec, so it is kept *outside* this module's
parameter tree: DDP does not all-reduce it, the task's optimisers do not see it, and its state
goes through this module's state dict as full tables:

* ``state_dict()`` of a sharded module is a collective (every rank calls it, as Lightning's
  checkpointing does): rank 0 receives the full ``[vocab_f, D]`` tables under the *unsharded*
  keys, plus the fused optimiser's state under ``fused_optimizer.*``. A checkpoint written on
  several ranks therefore loads into an unsharded model (one process, evaluation, serving), and
  vice versa. The full tables must fit in rank 0's host memory when a checkpoint is written.
* ``load_state_dict`` on a sharded module copies each rank's part of the full tables (and of the
  optimiser state) into its shards.

TorchRec is an optional extra (``pip install recsys_lab[torchrec]``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import FieldEmbedding

log = logging.getLogger(__name__)

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
        shard: whether :meth:`shard` may shard the tables (the task's ``configure_model`` calls it
            when there is more than one rank); ``False`` keeps them whole everywhere.
        sharding_type: how TorchRec splits the tables: ``table_wise`` (whole tables per rank),
            ``row_wise`` or ``column_wise``.
        optimizer: TorchRec's fused optimiser for the sharded tables (``adam`` needs a GPU; the
            CPU kernels offer ``sgd``, ``adagrad`` and ``rowwise_adagrad``).
        lr: its learning rate.
    """

    def __init__(
        self,
        schema: Schema,
        dim: int = 16,
        init_std: float = 1e-2,
        shard: bool = True,
        sharding_type: Literal["table_wise", "row_wise", "column_wise"] = "table_wise",
        optimizer: FusedOptimizer = "rowwise_adagrad",
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
        self.collection: nn.Module | None = torchrec.EmbeddingBagCollection(
            tables=tables, device=torch.device("cpu")
        )
        with torch.no_grad():
            for weight in self.collection.parameters():
                weight.normal_(0.0, init_std)
        for bag in self.collection.embedding_bags.values():  # type: ignore[union-attr]
            bag.sparse = True  # sparse gradients: only looked-up rows (for SparseAdam)
        # The DistributedModelParallel after shard(), in a list so that nn.Module does not register
        # it (see the module docstring); empty while unsharded.
        self._sharded: list[nn.Module] = []
        self.shard_device = torch.device("cpu")
        self.register_state_dict_post_hook(_full_tables_state_dict)

    @property
    def is_sharded(self) -> bool:
        return bool(self._sharded)

    @property
    def sharded_collection(self) -> nn.Module:
        """TorchRec's ``DistributedModelParallel`` holding this rank's shards (after :meth:`shard`)."""
        if not self._sharded:
            raise RuntimeError("this TorchRecEmbedding is not sharded")
        return self._sharded[0]

    def tables(self) -> list[Tensor]:
        """The unsharded tables, one ``[vocab_f, D]`` per field (field order)."""
        if self.is_sharded:
            raise RuntimeError("tables() reads the unsharded tables; this module is sharded")
        bags = self.collection.embedding_bags  # type: ignore[union-attr]
        return [bags[f"t_{name}"].weight for name in self.feature_names]

    def fused_table_values(self) -> int:
        """Values of the sharded tables (over all ranks), which live outside ``parameters()``."""
        return self.dim * sum(max(rows, 1) for rows in self.rows_per_field) if self.is_sharded else 0

    def num_stored_values(self) -> int:
        return self.fused_table_values() or super().num_stored_values()

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
        collection = self._sharded[0] if self._sharded else self.collection
        pooled = collection(self._kjt(ids))
        if hasattr(pooled, "wait"):  # sharded modules return an awaitable
            pooled = pooled.wait()
        by_feature = pooled.to_dict()  # name -> [B, D]; sharded outputs need not keep the field order
        return torch.stack([by_feature[name] for name in self.feature_names], dim=1)  # [B, F, D]

    def shard(self, device: torch.device | None = None) -> None:
        """Shard the tables over the default process group's ranks with TorchRec's planner.

        The unsharded weights of every rank must be equal beforehand (same seed); each rank then
        keeps its own shards, on ``device`` (default: where the tables are now). Optimised by
        TorchRec's fused ``optimizer`` from here on.
        """
        if self.is_sharded or not self.shard_when_distributed:
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

        device = device or next(self.collection.parameters()).device
        if self.optimizer == "adam" and device.type != "cuda":
            raise ValueError(
                "embedding.optimizer=adam: FBGEMM's fused Adam runs on GPUs only. On CPU ranks use "
                "embedding.optimizer=rowwise_adagrad (the default), adagrad or sgd."
            )
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
        full = {k: v.detach().clone() for k, v in self.collection.state_dict().items()}
        sharded = DistributedModelParallel(
            self.collection, env=env, device=device, plan=plan, sharders=[sharder], init_data_parallel=False
        )
        _copy_into_shards(sharded.state_dict(), full)  # every rank's shards from the common weights
        self.collection = None  # the unsharded tables are no longer used
        self._sharded.append(sharded)
        self.shard_device = device
        local = sum(s.tensor.numel() for v in sharded.state_dict().values() for s in v.local_shards())
        log.info(
            "TorchRec: %d tables (%d values) sharded %s over %d ranks; rank %d holds %d values, trained "
            "by fused %s (lr %g)",
            self.num_fields,
            self.fused_table_values(),
            self.sharding_type,
            env.world_size,
            dist.get_rank(),
            local,
            self.optimizer,
            self.lr,
        )

    # -- state dict: full tables in, full tables out -------------------------------------------
    def _table_key(self, name: str) -> str:
        return f"collection.embedding_bags.t_{name}.weight"

    def _fused_state(self) -> dict[str, Any]:
        """``"<table>.<state>"`` -> this rank's ShardedTensor of the fused optimiser's state."""
        state = self.sharded_collection.fused_optimizer.state_dict()["state"]  # type: ignore[operator]
        return {k: v for per_param in state.values() for k, v in per_param.items()}

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        optim = {k: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix + "fused_optimizer.")}
        if self.is_sharded:
            tables = {}
            for name in self.feature_names:
                key = prefix + self._table_key(name)
                if key in state_dict:
                    tables[self._table_key(name)] = state_dict.pop(key)
                else:
                    missing_keys.append(key)
            if tables:
                _copy_into_shards(self.sharded_collection.state_dict(), tables)
            if optim:  # absent from checkpoints of unsharded runs: the fused state starts fresh
                states = {prefix + "fused_optimizer." + k: v for k, v in self._fused_state().items()}
                _copy_into_shards(states, optim, require_all=False)  # a rank holds some tables
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def _full_tables_state_dict(
    module: TorchRecEmbedding, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any]
) -> None:
    """State-dict hook of a sharded module: gather the full tables and fused optimiser state to
    rank 0 (a collective: every rank must call ``state_dict()``), under the unsharded keys."""
    if not module.is_sharded:
        return
    by_table = {
        k.split("embedding_bags.", 1)[-1]: v for k, v in module.sharded_collection.state_dict().items()
    }
    local = {module._table_key(name): by_table[f"t_{name}.weight"] for name in module.feature_names}
    # A rank's fused optimiser lists only the tables it holds, so gather them by a global key list.
    local.update({"fused_optimizer." + k: v for k, v in module._fused_state().items()})
    for key, full in _reduce_to_rank0(local, module.shard_device).items():
        state_dict[prefix + key] = full


def _reduce_to_rank0(local: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """Full tensors on rank 0 (``{}`` elsewhere) from every rank's ShardedTensors.

    Each rank fills its local shards into a zero tensor of the full size and the tensors are summed
    onto rank 0, one key at a time (keys and sizes are first agreed over all ranks, so a key that
    only some ranks hold is still gathered). Each element belongs to exactly one shard.
    """
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    sizes = {k: (tuple(v.size()), v.dtype) for k, v in local.items() if isinstance(v, ShardedTensor)}
    everyone: list[dict[str, Any]] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(everyone, sizes)
    agreed = {k: v for per_rank in everyone for k, v in per_rank.items()}
    rank0 = dist.get_rank() == 0
    out = {}
    for key in sorted(agreed):
        size, dtype = agreed[key]
        value = local.get(key)
        device = (
            value.local_shards()[0].tensor.device if value is not None and value.local_shards() else "cpu"
        )
        full = torch.zeros(size, dtype=dtype, device=device)
        if value is not None:
            for shard in value.local_shards():
                full[_window(shard)] = shard.tensor.detach()
        dist.reduce(full, dst=0, op=dist.ReduceOp.SUM)
        if rank0:
            out[key] = full.cpu()
    return out


def _window(shard: Any) -> tuple[slice, ...]:
    """The index window of a ShardedTensor's local shard in the full tensor."""
    meta = shard.metadata
    return tuple(slice(o, o + n) for o, n in zip(meta.shard_offsets, meta.shard_sizes, strict=True))


def _copy_into_shards(shards: dict[str, Any], full: dict[str, Tensor], require_all: bool = True) -> None:
    """Write full tensors (``full``: key -> ``[rows, ...]``) into this rank's parts of ``shards``
    (key -> ShardedTensor or plain tensor), matching keys by their part after ``embedding_bags.``
    or ``fused_optimizer.``; ``require_all``: every entry of ``full`` must have a match here."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    def short(key: str) -> str:
        return key.split("embedding_bags.", 1)[-1].split("fused_optimizer.", 1)[-1]

    by_key = {short(k): v for k, v in full.items()}
    copied = 0
    with torch.no_grad():
        for key, value in shards.items():
            source = by_key.get(short(key))
            if source is None:
                continue
            size = tuple(value.size()) if isinstance(value, ShardedTensor) else tuple(value.shape)
            if size != tuple(source.shape):
                raise ValueError(
                    f"TorchRec table {short(key)!r}: the checkpoint holds shape {tuple(source.shape)}, "
                    f"the model {size} (a different schema or embedding.dim?)"
                )
            if isinstance(value, ShardedTensor):
                for shard in value.local_shards():
                    shard.tensor.copy_(source[_window(shard)])
            else:
                value.copy_(source)
            copied += 1
    if require_all and copied != len(full):
        raise RuntimeError(
            f"sharded TorchRec tables: copied {copied} of {len(full)} tensors; state-dict keys changed?"
        )
