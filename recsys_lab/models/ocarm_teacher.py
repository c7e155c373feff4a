"""OCARM teacher: retention from the observable features fused with the onboarding content.

The onboarding content (``Batch.privileged["onboarding"]``: content id, theme, session, time) is
encoded hierarchically: attention pooling over the items of each session, then over the sessions,
each session carrying an order embedding (its 1-based index) and a time embedding (days since the
first onboarding event, bucketed). The observable side is the same as the student's: field
embeddings, numeric features and an attention-pooled behaviour history. Both are fused by an MLP
into the representation ``r [B, H]`` that the student distils, and a linear head gives the logit.

Training only: a batch without onboarding content (validation, test, serving) gets an all-zero
content vector — that is how a model "trained with leaked features and served without them" is
evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.features import FeatureEncoder
from recsys_lab.layers.mlp import MLP, Activation
from recsys_lab.layers.pooling import AttentionPooling, HistoryPooling, group_positions
from recsys_lab.models.base import CTRModel

_DAY = 86_400


class OCARMTeacher(CTRModel):
    """``r = MLP([obs; content; has_content])``, ``logit = w·r``.

    Args:
        schema: the dataset schema (observable features).
        embedding: factory for the categorical embedding.
        hidden_units: fusion MLP widths; H = the last (the distilled representation's width).
        content_dim: C, width of the content item, session and user-content vectors.
        content_vocab, theme_vocab: sizes of the content-id and theme tables (ids must be smaller:
            the world has ``num_domains · content_per_domain + 1`` and ``num_domains ·
            content_themes + 1``).
        max_sessions: S, sessions per conversion (``max_sessions`` of the world).
        time_buckets: day buckets of the session-time embedding (day ``k`` -> bucket ``min(k, T-1)``).
        history: pool ``Batch.history`` on the observable side; None = when the schema has sequences.
        history_dim, max_history: width and length of the history pooling.
        activation, dropout: of the fusion MLP.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        hidden_units: Sequence[int] = (64, 32),
        content_dim: int = 16,
        content_vocab: int = 1025,
        theme_vocab: int = 129,
        max_sessions: int = 8,
        time_buckets: int = 16,
        history: bool | None = None,
        history_dim: int = 16,
        max_history: int = 64,
        activation: Activation = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(schema)
        if len(hidden_units) == 0:
            raise ValueError("OCARMTeacher needs at least one hidden layer: set model.hidden_units")
        for name, value in (
            ("content_vocab", content_vocab),
            ("theme_vocab", theme_vocab),
            ("max_sessions", max_sessions),
            ("time_buckets", time_buckets),
        ):
            if value < 1:
                raise ValueError(f"OCARMTeacher: {name}={value} must be >= 1")
        self.encoder = FeatureEncoder(schema, embedding)
        use_history = bool(schema.sequence) if history is None else history
        self.history = HistoryPooling(schema, history_dim, 0, max_history) if use_history else None
        obs_dim = self.encoder.flat_dim + (history_dim if use_history else 0)
        self.content_vocab, self.theme_vocab, self.max_sessions = content_vocab, theme_vocab, max_sessions
        self.time_buckets, self.content_dim = time_buckets, content_dim
        self.content = nn.Embedding(content_vocab, content_dim)
        self.theme = nn.Embedding(theme_vocab, content_dim)
        self.session_order = nn.Embedding(max_sessions + 1, content_dim)
        self.session_time = nn.Embedding(time_buckets, content_dim)
        for table in (self.content, self.theme, self.session_order, self.session_time):
            nn.init.normal_(table.weight, std=0.05)
        self.item_pool = AttentionPooling(content_dim)  # items within a session
        self.session_pool = AttentionPooling(content_dim, query_dim=obs_dim)  # sessions, queried by obs
        self.fusion = MLP(obs_dim + content_dim + 1, hidden_units, None, activation, dropout)
        self.rep_dim = self.fusion.out_features
        self.head = nn.Linear(self.rep_dim, 1)

    def observable(self, batch: Batch) -> Tensor:
        """Observable input ``[B, Do]`` (fields, numerics, pooled history)."""
        x = self.encoder(batch)  # [B, F·D + Dn]
        if self.history is not None:
            x = torch.cat([x, self.history(batch.history)], dim=1)
        return x

    def encode_content(self, onboarding: Jagged, obs: Tensor) -> Tensor:
        """Hierarchical content vector ``[B, C]`` (zeros for samples without content)."""
        b = onboarding.batch_size
        values = onboarding.values  # [N, 3] content, theme, session
        if values.shape[0] and (
            int(values[:, 0].max()) >= self.content_vocab
            or int(values[:, 1].max()) >= self.theme_vocab
            or int(values[:, 2].max()) > self.max_sessions
        ):
            raise ValueError(
                f"Onboarding ids exceed the teacher's tables (content < {self.content_vocab}, theme < "
                f"{self.theme_vocab}, session <= {self.max_sessions}); raise model.content_vocab / "
                "model.theme_vocab / model.max_sessions to the world's sizes"
            )
        s_max = self.max_sessions
        seg = onboarding.segment_ids()  # [N] sample of each event
        session = values[:, 2].clamp(min=1) - 1  # [N] 0-based
        key = seg * s_max + session
        order = torch.argsort(key, stable=True)
        key, seg, session, values = key[order], seg[order], session[order], values[order]
        ts = onboarding.timestamps[order]
        pos = group_positions(key)  # [N] item index within its (sample, session)
        n_items = int(pos.max()) + 1 if pos.numel() else 1
        items = self.content(values[:, 0]) + self.theme(values[:, 1])  # [N, C]
        padded = items.new_zeros(b, s_max, n_items, self.content_dim)  # [B, S, I, C]
        mask = torch.zeros(b, s_max, n_items, dtype=torch.bool, device=items.device)
        padded[seg, session, pos] = items
        mask[seg, session, pos] = True
        sessions = self.item_pool(padded, mask)  # [B, S, C]
        # Session time: days from the sample's first onboarding event to the session's first item.
        first_ts = torch.full((b,), torch.iinfo(torch.long).max, dtype=torch.long, device=ts.device)
        first_ts = first_ts.scatter_reduce(0, seg, ts, "amin")
        big = torch.iinfo(torch.long).max
        session_ts = torch.full((b * s_max,), big, dtype=torch.long, device=ts.device)
        session_ts = session_ts.scatter_reduce(0, key, ts, "amin").view(b, s_max)  # first item's time
        session_ts = torch.where(session_ts == big, first_ts[:, None], session_ts)
        days = ((session_ts - first_ts[:, None]) // _DAY).clamp(0, self.time_buckets - 1)  # [B, S]
        smask = mask.any(-1)  # [B, S]
        order_ids = torch.arange(1, s_max + 1, device=ts.device).expand(b, s_max)
        sessions = sessions + (self.session_order(order_ids) + self.session_time(days)) * smask[..., None]
        return self.session_pool(sessions, smask, obs)  # [B, C]

    def forward_rep(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(representation [B, H], logits [B])``; content from ``batch.privileged`` if present."""
        obs = self.observable(batch)
        onboarding = (batch.privileged or {}).get("onboarding")
        if onboarding is None:
            content = obs.new_zeros(obs.shape[0], self.content_dim)
            has = obs.new_zeros(obs.shape[0], 1)
        else:
            content = self.encode_content(onboarding, obs)
            has = (onboarding.lengths() > 0).to(obs.dtype)[:, None]
        rep = self.fusion(torch.cat([obs, content, has], dim=1))  # [B, H]
        return rep, self.head(rep).squeeze(-1)

    def forward(self, batch: Batch) -> Tensor:
        """Retention logits ``[B]``."""
        return self.forward_rep(batch)[1]

    def flops_per_example(self, items_per_session: int = 0) -> int:
        """Per sample: history pooling (over ``max_history`` padded events), fusion MLP and head.

        The content encoder runs only on training batches with onboarding content (evaluation and
        serving batches have none, and skip it). ``items_per_session = I > 0`` adds it for content
        padded to ``[max_sessions, I]`` items: item pooling over ``S·I`` items and session pooling
        (queried by the observable input) over ``S`` sessions. Default 0: the content-free path.
        """
        flops = self.fusion.flops_per_example() + 2 * self.rep_dim
        if items_per_session > 0:
            flops += self.max_sessions * self.item_pool.flops_per_example(items_per_session)
            flops += self.session_pool.flops_per_example(self.max_sessions)
        if self.history is not None:
            flops += self.history.flops_per_example()
        return flops
