"""PCF-GNN (Li et al., SIGIR 2021, arXiv 2105.07752): pre-trained explicit cross features.

A heterogeneous GNN over the co-occurrence graph of feature values predicts the smoothed CTR of a
pair of values from its two end nodes::

    h^0 = node embeddings (a full embedding table: one row per (field, value))
    h^l = HeteroMessagePassing(h^{l-1})                  l = 1..L (type-specific weights)
    ctr(u, v) = sigmoid( MLP([h_u; h_v; h_u ⊙ h_v]) )

It is pre-trained by :mod:`recsys_lab.tasks.pcf` (MSE to the smoothed pair CTR, weighted by
sqrt(impressions)); its predictions then feed a downstream CTR model as extra dense features, for
pairs never seen in training too. As a :class:`CTRModel` on its own, ``forward`` scores a sample
from its chosen pairs only: ``logit = Σ_p w_p · logit(ctr_p) + b``.

The graph (edges per relation) is set by :meth:`set_graph` and is not part of the state dict:
the pre-training stage builds it from the training split. Without a graph, node states are
computed without messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory, FullEmbedding, HashedEmbedding
from recsys_lab.layers.gnn import HeteroMessagePassing, inverse_degree
from recsys_lab.layers.mlp import MLP
from recsys_lab.models.base import CTRModel


class PCFGNN(CTRModel):
    """Args:
    schema: the dataset schema.
    embedding: node embedding factory; must be ``embedding=full`` (one row per value).
    num_pairs: P, the field pairs the model predicts (and 2P relations).
    num_layers: message-passing layers (1 or 2).
    hidden_dim: node state width after message passing.
    predictor_units: hidden widths of the pair predictor MLP.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        num_pairs: int = 4,
        num_layers: int = 2,
        hidden_dim: int = 16,
        predictor_units: Sequence[int] = (32,),
    ) -> None:
        super().__init__(schema)
        if num_layers not in (1, 2):
            raise ValueError(f"pcf_gnn num_layers must be 1 or 2, got {num_layers}")
        if schema.num_categorical < 2:
            raise ValueError("pcf_gnn needs at least two categorical fields to form pairs")
        if num_pairs < 1:
            raise ValueError(f"pcf_gnn num_pairs must be >= 1, got {num_pairs}")
        self.embedding = embedding(schema)
        if not isinstance(self.embedding, FullEmbedding) or isinstance(self.embedding, HashedEmbedding):
            raise ValueError(
                f"pcf_gnn needs one node vector per feature value: use embedding=full, not "
                f"{type(self.embedding).__name__}"
            )
        self.num_pairs = num_pairs
        self.num_nodes = self.embedding.table.num_embeddings
        sizes = self.embedding.rows_per_field
        widths = [self.embedding.dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(
            HeteroMessagePassing(sizes, 2 * num_pairs, a, b, activation=i < num_layers - 1)
            for i, (a, b) in enumerate(itertools.pairwise(widths))
        )
        self.predictor = MLP(3 * hidden_dim, list(predictor_units), 1)
        self.pair_weight = nn.Parameter(torch.ones(num_pairs))  # the CTRModel head only
        self.pair_bias = nn.Parameter(torch.zeros(()))
        default = list(itertools.combinations(range(schema.num_categorical), 2))[:num_pairs]
        self.field_pairs: list[tuple[int, int]] = default
        self._src: list[Tensor] = [torch.zeros(0, dtype=torch.long)] * (2 * num_pairs)
        self._dst: list[Tensor] = list(self._src)
        self._inv: list[Tensor] = [torch.zeros(self.num_nodes, 1)] * (2 * num_pairs)

    # -- graph ---------------------------------------------------------------------------------
    def set_graph(self, field_pairs: Sequence[tuple[int, int]], src: list[Tensor], dst: list[Tensor]) -> None:
        """Set the chosen pairs and their edges (global node rows, one tensor pair per field pair);
        each undirected edge becomes two relations (a -> b and b -> a)."""
        if len(field_pairs) != self.num_pairs or len(src) != self.num_pairs or len(dst) != self.num_pairs:
            raise ValueError(
                f"pcf_gnn was built for num_pairs={self.num_pairs} but got {len(field_pairs)} field pairs"
            )
        self.field_pairs = [tuple(p) for p in field_pairs]  # type: ignore[misc]
        device = self.pair_bias.device
        self._src = [t.to(device) for s, d in zip(src, dst, strict=True) for t in (s, d)]
        self._dst = [t.to(device) for s, d in zip(src, dst, strict=True) for t in (d, s)]
        self._inv = [inverse_degree(d, self.num_nodes) for d in self._dst]

    @property
    def num_edges(self) -> int:
        """Undirected edges in the graph."""
        return sum(s.numel() for s in self._src) // 2

    def node_rows(self, sparse: Tensor) -> Tensor:
        """int64 ``[B, F]`` field-local ids -> global node rows ``[B, F]``."""
        return self.embedding.rows(sparse.long())

    # -- forward -------------------------------------------------------------------------------
    def node_states(self) -> Tensor:
        """``[N, hidden]`` states of every node after message passing."""
        h = self.embedding.table.weight  # [N, D]: every node, a dense gradient
        for layer in self.layers:
            h = layer(h, self._src, self._dst, self._inv)
        return h

    def pair_logits(self, states: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Predicted pair-CTR logits ``[...]`` of node rows ``u``, ``v`` ``[...]``."""
        hu, hv = states[u], states[v]  # [..., hidden]
        return self.predictor(torch.cat([hu, hv, hu * hv], -1)).squeeze(-1)

    def predict_pairs(self, sparse: Tensor, states: Tensor | None = None) -> Tensor:
        """Predicted CTR ``[B, P]`` of every sample's chosen pairs; ``sparse`` ``[B, F]``."""
        states = self.node_states() if states is None else states
        rows = self.node_rows(sparse)
        a = torch.tensor([p[0] for p in self.field_pairs], device=rows.device)
        b = torch.tensor([p[1] for p in self.field_pairs], device=rows.device)
        return torch.sigmoid(self.pair_logits(states, rows[:, a], rows[:, b]))  # [B, P]

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]`` from the chosen pairs' predicted CTRs alone."""
        ctr = self.predict_pairs(batch.sparse).clamp(1e-6, 1 - 1e-6)
        return torch.logit(ctr) @ self.pair_weight + self.pair_bias

    def embedding_parameters(self) -> list[nn.Parameter]:
        """None: message passing reads every node each step, so the node table trains densely
        (with the dense optimiser) rather than row-sparsely."""
        return []

    def num_gnn_values(self) -> int:
        """Values stored to serve the pair predictions: the node vectors of the fields in chosen
        pairs (no other node is ever read), the GNN weights and the predictor."""
        fields = {f for pair in self.field_pairs for f in pair}
        nodes = sum(self.embedding.rows_per_field[f] for f in fields)
        skip = {id(self.pair_weight), id(self.pair_bias), id(self.embedding.table.weight)}
        weights = sum(p.numel() for p in self.parameters() if id(p) not in skip)
        return nodes * self.embedding.dim + weights

    def node_state_flops(self) -> int:
        """Matmul FLOPs of one :meth:`node_states` pass over all N nodes (relations with edges)."""
        relations = sum(int(s.numel() > 0) for s in self._src)
        return sum(layer.flops(self.num_nodes, relations) for layer in self.layers)

    def flops_per_example(self, batch_size: int | None = None) -> int:
        """Per sample: the pair predictor on its P pairs (``P · 2·Σ in·out`` of the MLP).

        Node states do not depend on the sample: serving computes them once per graph and reuses
        them, so by default (``batch_size=None``) they are not counted. :meth:`forward` recomputes
        them on every call; ``batch_size=B`` adds that message passing amortised over the batch,
        ``node_state_flops() / B``, i.e. what one forward costs per example. (The final
        ``[B, P] @ [P]`` mixing is a matrix-vector product that ``flop_counter`` does not count.)
        """
        flops = self.num_pairs * self.predictor.flops_per_example()
        if batch_size is not None:
            flops += self.node_state_flops() / batch_size
        return int(flops)
