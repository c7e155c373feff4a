"""Behaviour sequences as tokens: event embeddings, packing a Batch into jagged segments, and the
event tokenizer shared by the sequence rankers (HSTU, GRAB) and the target-attention model (DIN).

B = samples (one segment each), N = tokens of the packed batch, E = event columns of
``Batch.history.values``, D = embedding width, d = model width.

**Event fields.** A sequence feature ``hist_<x>`` (e.g. ``hist_ad``) is an event column; the
candidate's value of that column is the sample's categorical feature ``<x>`` (``ad``) when the
schema has one (0 = missing otherwise). History events and candidates are embedded by the *same*
tables (one ``FieldEmbedding`` built by the ``embedding`` factory over the event columns), so a
candidate and a past event of the same ad share a vector.

**Packing.** Sample b becomes the segment ``[sink?, h_1 .. h_L, candidate]``: an optional per-user
sink token, its history events oldest first (the latest ``max_history``), then its candidate.
``num_candidates[b] = 1``. Timestamps: history events keep theirs; the candidate gets the sample's
own time (``Batch.extras["timestamp"]`` when the data provide it, otherwise one second after the
last history event); the sink gets the segment's first timestamp. The packed layout is what the
jagged attention ops in :mod:`recsys_lab.kernels` take.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.schema import Feature, FeatureKind, FeatureRole, Schema
from recsys_lab.kernels import time_bucket as time_gap_bucket
from recsys_lab.layers.embedding import EmbeddingFactory, FieldEmbedding
from recsys_lab.layers.features import FeatureEncoder

log = logging.getLogger(__name__)

HISTORY_PREFIX = "hist_"

SINK, HISTORY, CANDIDATE = 0, 1, 2
"""Token kinds of a packed sequence."""


def event_schema(schema: Schema) -> tuple[Schema, list[int | None]]:
    """The event columns as a schema of categorical features, and for each one the column of
    ``Batch.sparse`` holding the candidate's value (``hist_ad`` -> ``ad``), or None.

    Returns ``(Schema, candidate_columns)``; the schema is empty when the data have no history.
    """
    features: list[Feature] = []
    columns: list[int | None] = []
    cat_names = [f.name for f in schema.categorical]
    for f in schema.sequence:
        features.append(Feature(f.name, FeatureKind.CATEGORICAL, f.vocab_size, f.role))
        base = f.name.removeprefix(HISTORY_PREFIX)
        columns.append(cat_names.index(base) if base in cat_names and base != f.name else None)
    return Schema(features=tuple(features), action_names=schema.action_names), columns


def candidate_timestamps(batch: Batch) -> Tensor:
    """int64 ``[B]``: each sample's own time. ``Batch.extras["timestamp"]`` when present (the
    synthetic world provides it; see docs/synthetic_world.md), else one second after the sample's
    last history event (0 without history)."""
    ts = batch.extras.get("timestamp") if batch.extras else None
    if ts is not None:
        return ts.to(torch.long)
    b = batch.size
    out = torch.zeros(b, dtype=torch.long, device=batch.sparse.device)
    h = batch.history
    if h is not None and h.num_events > 0:
        lengths = h.lengths()
        has = lengths > 0
        last = h.timestamps[(h.offsets[1:] - 1).clamp(min=0)]
        out = torch.where(has, last + 1, out)
    return out


@dataclass
class PackedSequence:
    """A batch packed into one jagged token sequence (see the module docstring).

    Attributes:
        offsets: int64 ``[B + 1]``; segment b owns tokens ``offsets[b]:offsets[b+1]``.
        timestamps: int64 ``[N]``, non-decreasing within a segment.
        actions: int64 ``[N]`` action bitmask of history tokens; 0 for the sink and candidates.
        num_candidates: int64 ``[B]`` (the last tokens of each segment).
        kind: int64 ``[N]``: ``SINK``, ``HISTORY`` or ``CANDIDATE``.
        segment: int64 ``[N]``: the sample each token belongs to.
        source: int64 ``[N]``: for history tokens the row of ``Batch.history`` (else -1).
        position: int64 ``[N]``: index of the token within its segment.
    """

    offsets: Tensor
    timestamps: Tensor
    actions: Tensor
    num_candidates: Tensor
    kind: Tensor
    segment: Tensor
    source: Tensor
    position: Tensor

    @property
    def num_tokens(self) -> int:
        return self.timestamps.numel()

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    def candidate_rows(self) -> Tensor:
        """int64 ``[B·K]`` token rows of the candidates, segment order."""
        return torch.nonzero(self.kind == CANDIDATE).squeeze(1)

    def history_rows(self) -> Tensor:
        """int64 ``[M]`` token rows of the history events."""
        return torch.nonzero(self.kind == HISTORY).squeeze(1)


def empty_history(batch_size: int, num_columns: int, device: torch.device | str) -> Jagged:
    """A ``Jagged`` with ``batch_size`` empty samples."""
    z = torch.zeros(0, dtype=torch.long, device=device)
    return Jagged(
        torch.zeros(0, num_columns, dtype=torch.long, device=device),
        z,
        z.clone(),
        torch.zeros(batch_size + 1, dtype=torch.long, device=device),
    )


def pack(history: Jagged, cand_ts: Tensor, sink: bool, max_history: int | None = None) -> PackedSequence:
    """Pack ``[sink?, history (latest max_history, oldest first), candidate]`` per sample.

    Args:
        history: the batch's histories, B samples.
        cand_ts: int64 ``[B]`` the candidates' timestamps.
        sink: put a sink token first in every segment.
        max_history: keep each sample's latest events only (None = all).
    """
    device = cand_ts.device
    b = history.batch_size
    lengths = history.lengths()  # [B]
    kept = lengths if max_history is None else lengths.clamp(max=max_history)
    first_kept = history.offsets[1:] - kept  # [B] history row of each sample's first kept event
    s = int(sink)
    seg_len = kept + s + 1  # [B]
    offsets = torch.zeros(b + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(seg_len, 0)
    n = int(offsets[-1])
    segment = torch.repeat_interleave(torch.arange(b, device=device), seg_len)  # [N]
    position = torch.arange(n, device=device) - offsets[:-1][segment]  # [N]
    kind = torch.full((n,), HISTORY, dtype=torch.long, device=device)
    kind[offsets[1:] - 1] = CANDIDATE
    if sink:
        kind[offsets[:-1]] = SINK
    is_hist = kind == HISTORY
    source = torch.full((n,), -1, dtype=torch.long, device=device)
    source[is_hist] = (first_kept[segment] + position - s)[is_hist]
    timestamps = torch.zeros(n, dtype=torch.long, device=device)
    actions = torch.zeros(n, dtype=torch.long, device=device)
    if history.num_events > 0:
        timestamps[is_hist] = history.timestamps[source[is_hist]]
        actions[is_hist] = history.actions[source[is_hist]]
    timestamps[offsets[1:] - 1] = cand_ts
    if sink:
        # The sink takes the segment's first timestamp (its first event, or the candidate's).
        first_ts = torch.where(kept > 0, timestamps[(offsets[:-1] + 1).clamp(max=max(n - 1, 0))], cand_ts)
        timestamps[offsets[:-1]] = first_ts
    return PackedSequence(
        offsets=offsets,
        timestamps=timestamps,
        actions=actions,
        num_candidates=torch.ones(b, dtype=torch.long, device=device),
        kind=kind,
        segment=segment,
        source=source,
        position=position,
    )


class EventEmbedding(nn.Module):
    """Embeds event columns of history events and of candidates with one shared table.

    ``history(values [N, E]) -> [N, E, D]``; ``candidates(sparse [B, F]) -> [B, E, D]``.

    Args:
        schema: the dataset schema (its ``sequence`` features are the event columns).
        embedding: factory ``schema -> FieldEmbedding`` (the ``embedding`` config group).

    Attributes:
        num_columns: E (0 when the schema has no sequence features). dim: D.
    """

    def __init__(self, schema: Schema, embedding: EmbeddingFactory) -> None:
        super().__init__()
        self.event_schema, columns = event_schema(schema)
        self.num_columns = len(columns)
        self.table: FieldEmbedding | None = None
        self.dim = 0
        if self.num_columns > 0:
            self.table = embedding(self.event_schema)
            self.dim = self.table.dim
        idx = [c if c is not None else -1 for c in columns]
        self.register_buffer("candidate_columns", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.register_buffer(
            "vocab_sizes", torch.tensor(self.event_schema.vocab_sizes, dtype=torch.long), persistent=False
        )

    def history(self, values: Tensor) -> Tensor:
        """int64 ``[N, E]`` -> ``[N, E, D]``."""
        if self.table is None:
            raise RuntimeError("EventEmbedding.history: the schema has no sequence (event) features")
        if values.shape[1] != self.num_columns:
            raise ValueError(
                f"Batch.history.values has {values.shape[1]} columns but the schema has "
                f"{self.num_columns} sequence features; the data and the model must use the same schema"
            )
        return self.table(values)

    def candidate_ids(self, sparse: Tensor) -> Tensor:
        """int64 ``[B, F]`` -> ``[B, E]``: the candidates' event-column ids (0 where the sample has
        no matching field or the id is outside the event column's vocabulary)."""
        cols = self.candidate_columns.clamp(min=0)
        ids = sparse[:, cols]  # [B, E]
        ok = (self.candidate_columns >= 0) & (ids < self.vocab_sizes)
        return torch.where(ok, ids, torch.zeros_like(ids))

    def candidates(self, sparse: Tensor) -> Tensor:
        """int64 ``[B, F]`` -> ``[B, E, D]``."""
        if self.table is None:
            raise RuntimeError("EventEmbedding.candidates: the schema has no sequence (event) features")
        return self.table(self.candidate_ids(sparse))


class EventTokenizer(nn.Module):
    """Turns a Batch into packed tokens of width d for a jagged transformer.

    Token content (the residual stream's input), ``[N, d]``:

    - history event: ``Linear(LN([e_1; ..; e_E]))`` of its event-column embeddings, plus (when
      ``actions_in_stream``) an embedding of its action bitmask;
    - candidate: the same content projection of the candidate's event columns, plus a projection
      of all the sample's features (``Linear([all field embeddings; numeric])``: the context the
      history events do not have), plus (``actions_in_stream``) the learned placeholder action;
    - sink: a learned vector plus a projection of the sample's user-role fields (the profile every
      token can read);

    and for every token optional position and time-gap embeddings (the gap to the previous token of
    the segment, in ``log2`` buckets of seconds).

    ``action_codes(packed) -> [N]``: the integer action code of each token, the history bitmask,
    ``2^A`` (placeholder) for candidates and ``2^A + 1`` for the sink, for models that embed actions
    elsewhere (GRAB puts them into keys and values only).

    Args:
        schema, embedding: the dataset schema and the embedding factory.
        dim: d, the token width.
        actions_in_stream: add the action embedding to the token content (HSTU); GRAB keeps the
            stream action-free to avoid label leakage.
        sink: packing puts a sink token first in each segment.
        max_history: keep each sample's latest events (None = all the data gives).
        num_positions: position embeddings for positions ``0..num_positions-1`` (clipped); 0 = none.
        time_gap_buckets: number of time-gap buckets; 0 = none.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        dim: int,
        actions_in_stream: bool,
        sink: bool,
        max_history: int | None,
        num_positions: int,
        time_gap_buckets: int,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"token width (model.dim) must be >= 1, got {dim}")
        if max_history is not None and max_history < 0:
            raise ValueError(f"model.max_history must be >= 0 or null, got {max_history}")
        if num_positions < 0 or time_gap_buckets < 0:
            raise ValueError(
                f"num_positions and time_gap_buckets must be >= 0, got {num_positions}, {time_gap_buckets}"
            )
        longest = None if max_history is None else max_history + 1 + int(sink)  # events, candidate, sink
        if num_positions > 0 and longest is not None and longest > num_positions:
            log.warning(
                "model.num_positions=%d but segments hold up to %d tokens (max_history %d + candidate%s): "
                "the last %d positions share one position embedding. Set model.num_positions=%d to give each "
                "its own.",
                num_positions,
                longest,
                max_history,
                " + sink" if sink else "",
                longest - num_positions + 1,
                longest,
            )
        self.dim = dim
        self.sink = sink
        self.max_history = max_history
        self.actions_in_stream = actions_in_stream
        self.events = EventEmbedding(schema, embedding)
        e, d_emb = self.events.num_columns, self.events.dim
        self.content: nn.Module | None = None
        if e > 0:
            self.content = nn.Sequential(nn.LayerNorm(e * d_emb), nn.Linear(e * d_emb, dim))
        # Every feature of the sample, for the candidate token.
        self.context_encoder = FeatureEncoder(schema, embedding)
        self.context = nn.Linear(self.context_encoder.flat_dim, dim)
        self.user_columns = [j for j, f in enumerate(schema.categorical) if f.role is FeatureRole.USER]
        d_ctx = self.context_encoder.dim
        self.profile = nn.Linear(len(self.user_columns) * d_ctx, dim) if self.user_columns and sink else None
        self.sink_vector = nn.Parameter(torch.randn(dim) * 0.02) if sink else None
        self.num_actions = len(schema.action_names)
        self.num_action_codes = 2**self.num_actions + 2
        self.action_embedding = nn.Embedding(self.num_action_codes, dim) if actions_in_stream else None
        self.position_embedding = nn.Embedding(num_positions, dim) if num_positions > 0 else None
        self.time_gap_buckets = time_gap_buckets
        self.gap_embedding = nn.Embedding(time_gap_buckets, dim) if time_gap_buckets > 0 else None
        for emb in (self.action_embedding, self.position_embedding, self.gap_embedding):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)

    @property
    def placeholder_action(self) -> int:
        return 2**self.num_actions

    def pack(self, batch: Batch) -> PackedSequence:
        """Pack the batch (see :func:`pack`)."""
        history = batch.history
        if history is None:
            history = empty_history(batch.size, self.events.num_columns, batch.sparse.device)
        return pack(history, candidate_timestamps(batch), self.sink, self.max_history)

    def action_codes(self, packed: PackedSequence) -> Tensor:
        """int64 ``[N]``: history bitmask (< 2^A), placeholder 2^A for candidates, 2^A + 1 for sinks."""
        codes = packed.actions.clamp(min=0, max=self.placeholder_action - 1)
        codes = torch.where(packed.kind == CANDIDATE, torch.full_like(codes, self.placeholder_action), codes)
        return torch.where(packed.kind == SINK, torch.full_like(codes, self.placeholder_action + 1), codes)

    def forward(self, batch: Batch, packed: PackedSequence) -> Tensor:
        """Token content ``[N, d]`` of the packed batch."""
        n = packed.num_tokens
        x = torch.zeros(n, self.dim, device=batch.sparse.device)
        hist_rows, cand_rows = packed.history_rows(), packed.candidate_rows()
        fields = self.context_encoder.embed(batch)  # [B, F, D]
        dense = self.context_encoder.numeric(batch)  # [B, Dn]
        if self.content is not None:
            e = self.events
            cand = e.candidates(batch.sparse).flatten(1)  # [B, E·D]
            if hist_rows.numel() > 0 and batch.history is not None:
                hist = e.history(batch.history.values[packed.source[hist_rows]]).flatten(1)  # [M, E·D]
                x = x.index_put((hist_rows,), self.content(hist))
            x = x.index_put((cand_rows,), self.content(cand), accumulate=True)
        ctx = self.context(self.context_encoder.flatten(fields, dense))  # [B, d]
        x = x.index_put((cand_rows,), ctx, accumulate=True)
        if self.sink_vector is not None:
            sink_rows = packed.offsets[:-1]
            sink = self.sink_vector.expand(batch.size, -1)
            if self.profile is not None:
                sink = sink + self.profile(fields[:, self.user_columns].flatten(1))  # [B, d]
            x = x.index_put((sink_rows,), sink, accumulate=True)
        if self.action_embedding is not None:
            x = x + self.action_embedding(self.action_codes(packed))
        if self.position_embedding is not None:
            pos = packed.position.clamp(max=self.position_embedding.num_embeddings - 1)
            x = x + self.position_embedding(pos)
        if self.gap_embedding is not None:
            prev = torch.cat([packed.timestamps[:1], packed.timestamps[:-1]])
            gap = torch.where(packed.position > 0, packed.timestamps - prev, torch.zeros_like(prev))
            x = x + self.gap_embedding(time_gap_bucket(gap, self.time_gap_buckets))
        return x

    def flops_per_example(self, tokens_per_example: float) -> int:
        """Matmul FLOPs of the projections for one sample with ``tokens_per_example`` tokens."""
        flops = 2 * self.context.in_features * self.dim
        if self.content is not None:
            lin = self.content[1]
            flops += int(2 * lin.in_features * self.dim * (tokens_per_example - int(self.sink)))
        if self.profile is not None:
            flops += 2 * self.profile.in_features * self.dim
        return int(flops)


def history_length(history_len: int | None, max_history: int | None, unbounded: int = 64) -> int:
    """Events per sample a FLOP count assumes: ``history_len`` capped at ``max_history``, or
    ``max_history`` (``unbounded`` when that is None) when ``history_len`` is None."""
    if history_len is None:
        return unbounded if max_history is None else max_history
    return history_len if max_history is None else min(history_len, max_history)


def event_labels(actions: Tensor, schema: Schema, label: str) -> Tensor:
    """float ``[M]``: bit ``schema.action_names.index(label)`` of each event's action bitmask."""
    if label not in schema.action_names:
        raise ValueError(
            f"Every-event loss: the label {label!r} is not an action of the data "
            f"(schema.action_names = {list(schema.action_names)}); history events carry no such label"
        )
    bit = schema.action_names.index(label)
    return ((actions >> bit) & 1).float()
