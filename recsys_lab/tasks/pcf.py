"""PCF-GNN pre-training (the ``pcf`` stage of ``pipeline=pcf_gnn``).

:class:`PCFPretrainTask` pre-trains :class:`~recsys_lab.models.pcf_gnn.PCFGNN` on the co-occurrence
graph of the chosen field pairs, built from the **training split only** (MSE to the smoothed pair
CTR, weighted by sqrt(impressions)); :func:`pair_features` computes, for every train/val/test sample
and chosen pair, the GNN's predicted CTR (``gnn``), the exact statistics table's smoothed CTR
(``exact``; the prior for unseen pairs, leave-one-out on the training split) and whether the pair
was seen in training (``seen``). The stage runner :func:`recsys_lab.runners.pcf.pretrain_stage`
writes them to ``pair_features.pt``, which the CTR stages read with
:class:`~recsys_lab.data.pair_features.PairFeatureDataModule`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset

from recsys_lab.data.cooccurrence import (
    CooccurrenceStats,
    build_cooccurrence,
    resolve_field_pairs,
    select_field_pairs,
)
from recsys_lab.data.datamodule import EpochBatchSampler, TableSplit, batch_loader
from recsys_lab.models.pcf_gnn import PCFGNN

OptimizerFactory = Callable[..., Optimizer]


class PCFPretrainTask(L.LightningModule):
    """Fit the GNN's pair predictions to the smoothed pair CTRs of the training graph.

    Each step runs message passing over the whole graph, then scores a batch of edges:
    ``loss = Σ_e w_e (ctr̂_e − ctr_e)² / Σ_e w_e`` with ``w_e = sqrt(impressions_e)``.

    Args:
        model: the :class:`PCFGNN` (``model=pcf_gnn``).
        optimizer: partial optimiser for all of the model's parameters.
        field_pairs: ``[[field_a, field_b], ...]`` by name, or None to choose ``model.num_pairs``
            pairs from the training data (:func:`~recsys_lab.data.cooccurrence.select_field_pairs`).
        alpha: α of the smoothed CTR ``(clicks + α·prior) / (impressions + α)``.
        edge_batch_size: edges per training step.
    """

    def __init__(
        self,
        model: PCFGNN,
        optimizer: OptimizerFactory,
        field_pairs: Sequence[Sequence[str]] | None = None,
        alpha: float = 20.0,
        edge_batch_size: int = 2048,
    ) -> None:
        super().__init__()
        if not isinstance(model, PCFGNN):
            raise ValueError(f"task=pcf_pretrain trains model=pcf_gnn, got {type(model).__name__}")
        if field_pairs is not None and len(field_pairs) != model.num_pairs:
            raise ValueError(
                f"task.field_pairs lists {len(field_pairs)} pairs but model.num_pairs={model.num_pairs}; "
                "make them equal (or set task.field_pairs=null to choose pairs from the data)"
            )
        if alpha <= 0 or edge_batch_size < 1:
            raise ValueError(
                f"pcf_pretrain needs alpha > 0 and edge_batch_size >= 1, got {alpha}, {edge_batch_size}"
            )
        self.model = model
        self.optimizer_factory = optimizer
        self.field_pairs = None if field_pairs is None else [list(p) for p in field_pairs]
        self.alpha = alpha
        self.edge_batch_size = edge_batch_size
        self.stats: CooccurrenceStats | None = None

    # -- graph ---------------------------------------------------------------------------------
    def fit_graph(self, train: TableSplit) -> CooccurrenceStats:
        """Build the graph from the training split and hand its edges to the model."""
        schema, clicks = self.model.schema, train.labels["click"]
        if self.field_pairs is None:
            pairs = select_field_pairs(train.sparse, clicks, schema, self.model.num_pairs, self.alpha)
        else:
            pairs = resolve_field_pairs(schema, self.field_pairs)
        stats = build_cooccurrence(train.sparse, clicks, schema, pairs, self.alpha)
        src, dst, labels, weights = stats.edges()
        self.model.set_graph(pairs, src, dst)
        self.edge_u, self.edge_v = torch.cat(src), torch.cat(dst)
        self.edge_label, self.edge_weight = labels, weights
        self.stats = stats
        return stats

    def edge_loader(self, seed: int) -> DataLoader:
        """Shuffled batches of edge indices (int64 ``[b]``)."""
        n = self.edge_u.numel()
        sampler = EpochBatchSampler(n, self.edge_batch_size, shuffle=True, seed=seed)
        return batch_loader(_Indices(n), sampler)

    # -- training ------------------------------------------------------------------------------
    def loss(self, edges: Tensor) -> Tensor:
        states = self.model.node_states()  # [N, hidden]
        dev = states.device
        u, v = self.edge_u.to(dev)[edges], self.edge_v.to(dev)[edges]
        pred = torch.sigmoid(self.model.pair_logits(states, u, v))  # [b]
        w = self.edge_weight.to(dev)[edges]
        return (w * (pred - self.edge_label.to(dev)[edges]) ** 2).sum() / w.sum()

    def training_step(self, edges: Tensor, batch_idx: int) -> Tensor:
        if self.stats is None:
            raise RuntimeError("PCFPretrainTask.fit_graph(train_split) must run before training")
        loss = self.loss(edges)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, batch_size=edges.numel())
        return loss

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(list(self.model.parameters()))


class _Indices(Dataset[Tensor]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: Tensor) -> Tensor:  # type: ignore[override]
        return index


# -- features ----------------------------------------------------------------------------------
@torch.no_grad()
def pair_features(
    model: PCFGNN, stats: CooccurrenceStats, splits: dict[str, TableSplit], chunk: int = 65536
) -> dict[str, dict[str, Tensor]]:
    """Per split: ``gnn`` ``[N, P]`` predicted CTR, ``exact`` ``[N, P]`` looked-up smoothed CTR
    (leave-one-out on ``train``), ``seen`` ``[N, P]`` pair occurs in training."""
    model.eval()
    states = model.node_states()
    out: dict[str, dict[str, Tensor]] = {}
    for name, split in splits.items():
        sparse = split.sparse.long()
        gnn = torch.cat(
            [model.predict_pairs(sparse[i : i + chunk], states) for i in range(0, len(split), chunk)]
        )
        exact, seen = stats.lookup(sparse, split.labels["click"] if name == "train" else None)
        out[name] = {"gnn": gnn.float(), "exact": exact, "seen": seen}
    return out
