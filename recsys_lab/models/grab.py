"""GRAB: generative ranking with CamA (causal action-aware multi-channel attention).

Every user's events and candidate are packed into one jagged sequence ``[sink, events...,
candidate]``; CamA blocks read it; a shared head predicts every token's click from what precedes
it. :meth:`GRAB.forward` gives the candidates' logits (evaluation and serving);
:meth:`GRAB.forward_events` also gives every history event's logit and label for the every-event
loss of :class:`recsys_lab.objectives.every_event.EveryEventBCE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Schema
from recsys_lab.layers.attention import CamABlock
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.mlp import MLP, check_choice
from recsys_lab.layers.sequence import EventTokenizer, PackedSequence, event_labels, history_length
from recsys_lab.models.base import CTRModel

Channels = Literal["cama", "single"]
STS = Literal["off", "two_stage", "alternating"]


@dataclass
class EventOutputs:
    """Logits of a GRAB forward over all tokens.

    Attributes:
        candidate_logits: ``[B]``. event_logits: ``[M]`` one per history event token.
        event_labels: float ``[M]`` each event's own label (its action bit).
    """

    candidate_logits: Tensor
    event_logits: Tensor
    event_labels: Tensor


class GRAB(CTRModel):
    """GRAB ranking model (METHODS.md, "GRAB").

    Tokens: event content (shared event-column tables, LN, projection) + absolute position and
    time-gap embeddings; candidates add the sample's features; each segment starts with a sink
    (learned vector + user profile). **Decision (label leakage):** the residual stream is
    action-free; each block adds a learned action term to keys and values only
    (:class:`~recsys_lab.layers.attention.CamABlock`), so with strict timestamp causality no token
    ever sees its own action and every event's click is a fair target.

    Args:
        schema, embedding: dataset schema and embedding factory.
        dim: token width d.
        num_layers: CamA blocks.
        num_heads: heads per block (a multiple of the channel count).
        head_dim: per-head width.
        channels: ``cama`` = 1 content channel + one per action type of the data;
            ``single`` = content channel only (plain causal attention).
        ffn_hidden: FFN hidden width.
        num_experts: 0 = dense FFN; E > 0 = top-k mixture-of-experts FFN.
        top_k: experts per token.
        num_positions: absolute position embeddings (positions clipped).
        time_gap_buckets: log2 buckets of the gap to the previous token (0 = none).
        max_history: keep each sample's latest events (null = all the data gives).
        head_units: hidden widths of the shared logit head.
        dropout: dropout inside the blocks.
        event_label: the action whose bit is each history event's label (``click``).
        sts: sequence-then-sparse training, ``off`` | ``two_stage`` | ``alternating``: not used by
            the model; ``conf/task/grab.yaml`` reads it (``model.sts``) as the default of
            ``task.schedule.mode`` (:class:`recsys_lab.tasks.schedule.STS`; docs/sequence_models.md).
        kernel: attention implementation: ``reference`` | ``triton`` | ``flex``.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        head_dim: int = 16,
        channels: Channels = "cama",
        ffn_hidden: int = 128,
        num_experts: int = 0,
        top_k: int = 2,
        num_positions: int = 256,
        time_gap_buckets: int = 32,
        max_history: int | None = None,
        head_units: Sequence[int] = (64,),
        dropout: float = 0.0,
        event_label: str = "click",
        sts: STS = "off",
        kernel: str = "reference",
    ) -> None:
        super().__init__(schema)
        check_choice("model.channels", channels, ["cama", "single"])
        check_choice("model.sts", sts, ["off", "two_stage", "alternating"])
        if num_layers < 1:
            raise ValueError(f"GRAB needs model.num_layers >= 1, got {num_layers}")
        if num_experts < 0:
            raise ValueError(f"model.num_experts must be >= 0 (0 = dense FFN), got {num_experts}")
        self.channels = channels
        self.sts = sts
        self.event_label = event_label
        self.num_channels = 1 + len(schema.action_names) if channels == "cama" else 1
        self.tokenizer = EventTokenizer(
            schema,
            embedding,
            dim,
            actions_in_stream=False,
            sink=True,
            max_history=max_history,
            num_positions=num_positions,
            time_gap_buckets=time_gap_buckets,
        )
        self.blocks = nn.ModuleList(
            CamABlock(
                dim,
                num_heads,
                head_dim,
                self.num_channels,
                self.tokenizer.num_action_codes,
                ffn_hidden,
                num_experts,
                top_k,
                dropout,
                kernel,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = MLP(dim, head_units, 1, activation="silu")
        self._max_history = max_history

    def trunk(self, x: Tensor, packed: PackedSequence, action_codes: Tensor) -> Tensor:
        """Token content ``[N, d]`` -> final hidden states ``[N, d]``."""
        for block in self.blocks:
            x = block(x, packed, action_codes)
        return self.norm(x)

    def token_logits(self, batch: Batch) -> tuple[Tensor, PackedSequence]:
        """Logits of every token ``[N]`` and the packing."""
        packed = self.tokenizer.pack(batch)
        x = self.tokenizer(batch, packed)  # [N, d]
        h = self.trunk(x, packed, self.tokenizer.action_codes(packed))
        return self.head(h).squeeze(-1), packed

    def forward(self, batch: Batch) -> Tensor:
        """Click logits ``[B]`` of the candidates."""
        logits, packed = self.token_logits(batch)
        return logits[packed.candidate_rows()]

    def forward_events(self, batch: Batch) -> EventOutputs:
        """Candidate logits ``[B]`` plus every history event's logit and label ``[M]``."""
        logits, packed = self.token_logits(batch)
        hist = packed.history_rows()
        return EventOutputs(
            candidate_logits=logits[packed.candidate_rows()],
            event_logits=logits[hist],
            event_labels=event_labels(packed.actions[hist], self.schema, self.event_label),
        )

    def flops_per_example(self, history_len: int | None = None) -> int:
        """Per sample with ``history_len`` history events (None: ``max_history``, 64 if unbounded),
        i.e. ``T = L + 2`` tokens with the sink and the candidate: the tokenizer's projections, per
        token each block's projections, FFN and dense ``T × T`` attention (``q·kᵀ`` and ``p·v``,
        ``2·T·2·H·Dh`` per token, as the reference kernel's per-user matmuls), and the logit head,
        which runs on every token (the every-event loss reads them all)."""
        length = history_length(history_len, self._max_history) + 2
        per_token = (
            sum(block.flops_per_token(length) for block in self.blocks) + self.head.flops_per_example()
        )
        return int(self.tokenizer.flops_per_example(length) + length * per_token)
