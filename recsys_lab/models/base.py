"""Base class of every CTR model: forward on a Batch, plus cost accounting."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory, FieldEmbedding
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.ffn import FFNKind
from recsys_lab.layers.mixing import TokenMixerNetwork
from recsys_lab.layers.norms import NormKind


class CTRModel(nn.Module, ABC):
    """A ranking model. Subclasses build themselves from the schema and implement ``forward``.

    ``forward(batch) -> logits [B]`` for the ``click`` label. Parameters that live in
    :class:`FieldEmbedding` modules count as *embedding* parameters (optimised by the sparse
    optimiser); all others are *dense*.
    """

    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.schema = schema

    @abstractmethod
    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""

    # -- parameter groups ----------------------------------------------------------------------
    def embedding_parameters(self) -> list[nn.Parameter]:
        seen: set[int] = set()
        out: list[nn.Parameter] = []
        for m in self.modules():
            if isinstance(m, FieldEmbedding):
                dense = {id(p) for p in m.dense_parameters()}
                for p in m.parameters():
                    if id(p) not in seen and id(p) not in dense:
                        seen.add(id(p))
                        out.append(p)
        return out

    def dense_parameters(self) -> list[nn.Parameter]:
        emb = {id(p) for p in self.embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in emb]

    def num_params(self, embedding: bool = True, dense: bool = True) -> int:
        """Number of parameters: embedding tables, dense weights, or both."""
        total = 0
        if embedding:
            total += sum(p.numel() for p in self.embedding_parameters())
            total += sum(m.fused_table_values() for m in self.modules() if isinstance(m, FieldEmbedding))
        if dense:
            total += sum(p.numel() for p in self.dense_parameters())
        return total

    @abstractmethod
    def flops_per_example(self) -> int:
        """Forward matmul FLOPs per example (2·m·n·k per matmul, as ``torch.utils.flop_counter``
        counts them). Element-wise ops and embedding lookups are not counted."""


class MultiTaskModel(CTRModel):
    """A model with one logit per label (multi-task heads: shared-bottom, MMoE, PLE, ESMM).

    :meth:`forward_tasks` returns every label's logits; ``forward`` returns the first label's, so
    everything that scores one label (evaluation, export, FLOP counting) works unchanged. The task
    (:class:`~recsys_lab.tasks.ctr.CTRTask`) trains and evaluates every label in :attr:`labels`.

    Args:
        schema: the dataset schema.
        labels: the labels to predict (``Batch.labels`` keys), the primary one first.
    """

    def __init__(self, schema: Schema, labels: Sequence[str]) -> None:
        super().__init__(schema)
        self.labels = tuple(str(label) for label in labels)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(
                f"{type(self).__name__}: model.labels={list(labels)} must be distinct label names, e.g. "
                "[click, conversion]"
            )

    @abstractmethod
    def forward_tasks(self, batch: Batch) -> dict[str, Tensor]:
        """Label -> logits ``[B]``, for every label of :attr:`labels`."""

    def forward(self, batch: Batch) -> Tensor:
        """Logits ``[B]`` of the first label."""
        return self.forward_tasks(batch)[self.labels[0]]


class TokenMixerModel(CTRModel):
    """The RankMixer family (RankMixer, UniMixer, UniMixer-Lite, FM block): feature tokens, then a
    :class:`~recsys_lab.layers.mixing.TokenMixerNetwork` whose layers differ only in their token
    mixer. ``logit = head(mean_t(Blocks(Tokenize([e_1; ...; e_F; x_1 v_1; ...]))))``.

    A subclass lists its own typed arguments and passes ``mixer``, which builds one layer's mixer
    (called ``num_layers`` times, after the encoder, so seeded initialisation is reproducible).

    Args:
        schema: the dataset schema.
        embedding: factory for the categorical embedding (the ``embedding`` config group).
        num_tokens: T, tokens after the tokenizer (<= fields + numeric features).
        dim: D, token width.
        num_layers: number of (mixing, FFN) blocks.
        ffn_hidden: hidden width of each per-token FFN.
        ffn: ``"swiglu"`` or ``"gelu"``.
        norm: ``"siamese"`` or ``"post"``.
        mixer: builds one token mixer ``[B, T, D]`` -> ``[B, T, D]`` with ``flops_per_example()``.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        num_tokens: int,
        dim: int,
        num_layers: int,
        ffn_hidden: int,
        ffn: FFNKind,
        norm: NormKind,
        mixer: Callable[[], nn.Module],
    ) -> None:
        super().__init__(schema)
        self.encoder = FeatureEncoder(schema, embedding, numeric_tokens=True)
        mixers = [mixer() for _ in range(num_layers)]
        self.net = TokenMixerNetwork(
            self.encoder.num_tokens, self.encoder.dim, num_tokens, dim, mixers, ffn_hidden, ffn, norm
        )

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]``."""
        tokens = self.encoder.tokens(self.encoder.embed(batch), self.encoder.numeric(batch))  # [B, n, E]
        return self.net(tokens)

    def flops_per_example(self) -> int:
        return self.net.flops_per_example()
