"""HSTU as a ranking model: packed ``[sink, history..., candidate]`` tokens through HSTU layers
(pointwise SiLU attention with relative position/time bias and gating); the candidate's output
gives the click logit."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.attention import HSTULayer
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.mlp import MLP
from recsys_lab.layers.sequence import EventTokenizer, PackedSequence, history_length
from recsys_lab.models.base import CTRModel


class HSTU(CTRModel):
    """HSTU ranking model (METHODS.md, "HSTU").

    Tokens (:class:`~recsys_lab.layers.sequence.EventTokenizer`): history events carry their action
    embedding in the stream (only candidates are scored, so this leaks nothing); the candidate gets
    the placeholder action plus all the sample's features. Attention is causal by position within
    each user's segment; candidates see the history and themselves, never each other.
    ``logit = MLP(LN(h_candidate))``.

    Args:
        schema, embedding: dataset schema and embedding factory.
        dim: token width d.
        num_layers: HSTU layers.
        num_heads: heads per layer.
        qk_dim, v_dim: per-head widths of Q/K and of V/U.
        num_positions: relative-position buckets of the attention bias (and absolute position
            embeddings of the tokens).
        time_buckets: log2 time buckets of the attention bias (and time-gap embeddings of tokens).
        max_history: keep each sample's latest events (null = all the data gives).
        sink: put a per-user sink token (learned vector + user-profile projection) first.
        head_units: hidden widths of the logit head.
        dropout: dropout inside the layers.
        kernel: attention implementation: ``reference`` | ``triton`` | ``flex``.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        qk_dim: int = 32,
        v_dim: int = 32,
        num_positions: int = 256,
        time_buckets: int = 32,
        max_history: int | None = None,
        sink: bool = True,
        head_units: Sequence[int] = (64,),
        dropout: float = 0.0,
        kernel: str = "reference",
    ) -> None:
        super().__init__(schema)
        if num_layers < 1:
            raise ValueError(f"HSTU needs model.num_layers >= 1, got {num_layers}")
        self.tokenizer = EventTokenizer(
            schema,
            embedding,
            dim,
            actions_in_stream=True,
            sink=sink,
            max_history=max_history,
            num_positions=num_positions,
            time_gap_buckets=time_buckets,
        )
        self.layers = nn.ModuleList(
            HSTULayer(dim, num_heads, qk_dim, v_dim, num_positions, time_buckets, dropout, kernel)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = MLP(dim, head_units, 1, activation="silu")
        self._max_history = max_history

    def trunk(self, x: Tensor, packed: PackedSequence) -> Tensor:
        """Token content ``[N, d]`` -> final hidden states ``[N, d]`` (after the last norm)."""
        for layer in self.layers:
            x = layer(x, packed)
        return self.norm(x)

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        packed = self.tokenizer.pack(batch)
        h = self.trunk(self.tokenizer(batch, packed), packed)  # [N, d]
        return self.head(h[packed.candidate_rows()]).squeeze(-1)

    def flops_per_example(self, history_len: int | None = None) -> int:
        """Per sample with ``history_len`` history events (None: ``max_history``, 64 if unbounded),
        i.e. ``T = L + 1 (+1 sink)`` tokens: the tokenizer's projections, per token each layer's
        projections and dense ``T × T`` attention (``q·kᵀ`` and ``A·v``, ``2·T·H·(Dqk + Dv)`` per
        token, as the reference kernel's per-user matmuls), and the head on the candidate only."""
        length = history_length(history_len, self._max_history) + 1 + int(self.tokenizer.sink)
        per_token = sum(layer.flops_per_token(length) for layer in self.layers)
        return int(
            self.tokenizer.flops_per_example(length) + length * per_token + self.head.flops_per_example()
        )
