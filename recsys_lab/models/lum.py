"""LUM — large user model (Alibaba, arXiv 2502.08309): a causal transformer over ``<condition, item>``
token pairs of a user's behaviour history, queried for the user's interest under conditions.

Each history event j becomes two tokens: a *condition* token ``c_j`` (context known before the
item: here the event's category and domain — never its action or any label) and an *item* token
``i_j`` (the item, plus the action the user took on it, which is known once the item token is
read). The sequence ``c_1, i_1, c_2, i_2, ..., c_L, i_L`` is read causally; the output at ``c_j``
predicts the item ``i_j`` (pre-training: :mod:`recsys_lab.objectives.info_nce`).

Knowledge querying appends Q query-condition tokens after the history: each sees the whole history
and itself, never another query. The queries are one per value of ``query_feature`` (e.g. one per
domain, the other condition fields left empty) plus one *target* query whose condition is the
candidate's own (category, domain). Their outputs are the user's interests under those conditions;
with the candidate's LUM item embedding and the cosines between them they are the features a
downstream CTR model reads (:mod:`recsys_lab.runners.lum_features`).

``forward(batch)`` returns the cosine between the target query's output and the candidate's item
embedding: LUM's zero-shot matching score, a click logit up to scale (so LUM is a valid
:class:`CTRModel` and its ``val/auc`` during pre-training measures how well the interests rank
clicks).

Everything a sample's features depend on comes from that sample's ``Batch.history`` (strictly
earlier events of its user, oldest first), truncated to the last ``max_history`` events.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_lab.data.batch import Batch
from recsys_lab.data.schema import Feature, FeatureKind, Schema
from recsys_lab.layers.embedding import EmbeddingFactory
from recsys_lab.layers.transformer import TransformerBlock
from recsys_lab.models.base import CTRModel


class LUM(CTRModel):
    """The LUM user model (see the module docstring).

    Args:
        schema: dataset schema with sequence features (``Batch.history`` columns) and the
            candidate's categorical features.
        embedding: factory for the token embedding tables (item, condition fields, action).
        dim: transformer width D.
        num_layers, num_heads, ffn_mult, dropout: transformer blocks.
        max_history: L, the most recent events read per sample.
        item_feature: the sequence feature that is the item.
        condition_features: sequence features forming the condition token (known before the item).
        candidate_item_feature: the categorical feature of the candidate's item.
        candidate_condition_features: the candidate's categorical features matching
            ``condition_features`` one to one (the target query's condition).
        query_feature: one group query per id ``1..vocab-1`` of this condition feature.
        condition_dropout: during training, blank each condition field other than
            ``query_feature`` with this probability, so queries with blank fields are in-distribution.
    """

    def __init__(
        self,
        schema: Schema,
        embedding: EmbeddingFactory,
        dim: int = 32,
        num_layers: int = 2,
        num_heads: int = 2,
        ffn_mult: int = 2,
        dropout: float = 0.0,
        max_history: int = 32,
        item_feature: str = "hist_ad",
        condition_features: Sequence[str] = ("hist_category", "hist_domain"),
        candidate_item_feature: str = "ad",
        candidate_condition_features: Sequence[str] = ("category", "domain"),
        query_feature: str = "hist_domain",
        condition_dropout: float = 0.25,
    ) -> None:
        super().__init__(schema)
        seq = [f.name for f in schema.sequence]
        cats = [f.name for f in schema.categorical]
        condition_features, candidate_condition_features = (
            list(condition_features),
            list(candidate_condition_features),
        )
        missing = [n for n in (item_feature, *condition_features) if n not in seq]
        if missing:
            raise ValueError(
                f"LUM reads behaviour histories: sequence features {missing} are not in the schema "
                f"(sequence features: {seq}). Use data with histories, e.g. data=synthetic_seq, or set "
                "model.item_feature / model.condition_features."
            )
        missing = [n for n in (candidate_item_feature, *candidate_condition_features) if n not in cats]
        if missing:
            raise ValueError(
                f"LUM: candidate features {missing} are not categorical features of the schema ({cats})"
            )
        if len(candidate_condition_features) != len(condition_features) or not condition_features:
            raise ValueError(
                "LUM: model.candidate_condition_features must match model.condition_features one to one "
                f"(got {candidate_condition_features} for {condition_features})"
            )
        if query_feature not in condition_features:
            raise ValueError(
                f"LUM: query_feature={query_feature!r} must be one of condition_features {condition_features}"
            )
        if max_history < 1:
            raise ValueError(f"LUM: max_history={max_history} must be >= 1")
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"LUM: condition_dropout={condition_dropout} must be in [0, 1)")
        self.dim, self.max_history, self.condition_dropout = dim, max_history, condition_dropout
        self.item_col = seq.index(item_feature)
        self.condition_cols = [seq.index(n) for n in condition_features]
        self.candidate_item_col = cats.index(candidate_item_feature)
        self.candidate_condition_cols = [cats.index(n) for n in candidate_condition_features]
        self.query_slot = condition_features.index(query_feature)
        self.num_conditions = len(condition_features)
        self.num_group_queries = schema[query_feature].vocab_size - 1
        self.num_queries = self.num_group_queries + 1  # + the target query
        num_actions = 2 ** max(len(schema.action_names), 1)
        # Token fields as one categorical schema: item, the condition fields, the action bitmask.
        self.token_schema = Schema(
            features=(
                Feature("lum_item", FeatureKind.CATEGORICAL, schema[item_feature].vocab_size),
                *(
                    Feature(f"lum_{n}", FeatureKind.CATEGORICAL, schema[n].vocab_size)
                    for n in condition_features
                ),
                Feature("lum_action", FeatureKind.CATEGORICAL, num_actions),
            )
        )
        self.embedding = embedding(self.token_schema)
        emb_dim = int(self.embedding.dim)
        self.emb_dim = emb_dim
        self.condition_proj = nn.Linear(self.num_conditions * emb_dim, dim)
        self.item_proj = nn.Linear(2 * emb_dim, dim)  # item + action
        self.position = nn.Embedding(max_history + 1, dim)  # recency: 0 = a query, 1 = the latest event
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, ffn_mult, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, dim)  # condition / query outputs
        self.item_head = nn.Linear(emb_dim, dim)  # item embeddings in the same space
        # Group-query conditions [G, C]: id g in the query slot, other condition fields blank.
        groups = torch.zeros(self.num_group_queries, self.num_conditions, dtype=torch.long)
        groups[:, self.query_slot] = torch.arange(1, self.num_group_queries + 1)
        self.register_buffer("group_conditions", groups, persistent=False)

    # -- tokens --------------------------------------------------------------------------------
    def _embed(self, ids: Tensor) -> Tensor:
        """Token-field ids ``[..., F]`` (item, conditions, action) -> ``[..., F, E]``."""
        shape = ids.shape
        return self.embedding(ids.reshape(-1, shape[-1])).view(*shape, self.emb_dim)

    def condition_tokens(self, conditions: Tensor) -> Tensor:
        """Condition ids ``[..., C]`` -> condition tokens ``[..., D]`` (no position)."""
        ids = F.pad(conditions, (1, 1))  # [..., 1 + C + 1]: blank item and action
        e = self._embed(ids)[..., 1:-1, :]  # [..., C, E]
        return self.condition_proj(e.flatten(-2))

    def item_embedding(self, items: Tensor) -> Tensor:
        """LUM item embeddings (the InfoNCE targets): item ids ``[...]`` -> ``[..., D]``."""
        ids = F.pad(items[..., None], (0, self.num_conditions + 1))  # [..., F]
        return self.item_head(self._embed(ids)[..., 0, :])

    def history(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The last ``max_history`` events, right-padded: ``(items [B, L], conditions [B, L, C],
        actions [B, L], mask [B, L])``, oldest first."""
        if batch.history is None:
            raise ValueError("LUM needs Batch.history: use data with histories (data.max_history > 0)")
        values, actions, _, mask = batch.history.to_padded(self.max_history)  # [B, L, E], [B, L], [B, L]
        return values[..., self.item_col], values[..., self.condition_cols], actions, mask

    # -- the transformer -----------------------------------------------------------------------
    def encode(
        self,
        items: Tensor,
        conditions: Tensor,
        actions: Tensor,
        mask: Tensor,
        queries: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Read ``c_1, i_1, ..., c_L, i_L`` then the query tokens.

        Args:
            items: int64 ``[B, L]``; conditions: int64 ``[B, L, C]``; actions: int64 ``[B, L]``.
            mask: bool ``[B, L]``, a prefix per row (right padding).
            queries: int64 ``[B, Q, C]`` query conditions, or None.
        Returns:
            ``(h [B, L, D], q [B, Q, D])``: the head outputs at the condition positions (each
            predicts the item after it) and at the query tokens (``Q = 0`` without queries).
        """
        b, length = items.shape
        if self.training and self.condition_dropout > 0:
            drop = torch.rand(conditions.shape, device=conditions.device) < self.condition_dropout
            drop[..., self.query_slot] = False
            conditions = conditions.masked_fill(drop, 0)
        lengths = mask.sum(1)  # [B]
        recency = (lengths[:, None] - torch.arange(length, device=items.device)).clamp(
            0, self.max_history
        )  # [B, L]
        pos = self.position(recency)  # [B, L, D]
        c_tok = self.condition_tokens(conditions) + pos  # [B, L, D]
        ids = torch.cat([items[..., None], torch.zeros_like(conditions), actions[..., None]], dim=-1)
        e = self._embed(ids)  # [B, L, F, E]
        i_tok = self.item_proj(torch.cat([e[..., 0, :], e[..., -1, :]], dim=-1)) + pos  # [B, L, D]
        x = torch.stack([c_tok, i_tok], dim=2).reshape(b, 2 * length, self.dim)  # c1, i1, c2, i2, ...
        nq = 0 if queries is None else queries.shape[1]
        if nq:
            assert queries is not None
            q_tok = self.condition_tokens(queries) + self.position.weight[0]  # [B, Q, D]
            x = torch.cat([x, q_tok], dim=1)  # [B, 2L + Q, D]
        attn = self.attention_mask(mask, nq)
        for block in self.blocks:
            x = block(x, attn)
        out = self.head(self.final_norm(x))  # [B, T, D]
        return out[:, 0 : 2 * length : 2], out[:, 2 * length :]

    @staticmethod
    def attention_mask(mask: Tensor, num_queries: int) -> Tensor:
        """bool ``[B, 2L + Q, 2L + Q]`` (row reads column): history tokens read earlier valid tokens
        and themselves; each query reads every valid history token and itself only; padding reads
        only itself."""
        b, length = mask.shape
        t = 2 * length + num_queries
        valid = mask.repeat_interleave(2, dim=1)  # [B, 2L]
        dev = mask.device
        attn = torch.zeros(b, t, t, dtype=torch.bool, device=dev)
        causal = torch.ones(2 * length, 2 * length, dtype=torch.bool, device=dev).tril()
        attn[:, : 2 * length, : 2 * length] = causal & valid[:, None, :] & valid[:, :, None]
        attn[:, 2 * length :, : 2 * length] = valid[:, None, :]
        return attn | torch.eye(t, dtype=torch.bool, device=dev)

    # -- knowledge querying --------------------------------------------------------------------
    def query_conditions(self, batch: Batch) -> Tensor:
        """int64 ``[B, Q, C]``: the G group queries, then the candidate's own condition."""
        b = len(batch)
        target = batch.sparse[:, self.candidate_condition_cols]  # [B, C]
        groups = self.group_conditions.expand(b, -1, -1)  # [B, G, C]
        return torch.cat([groups, target[:, None]], dim=1)

    def interests(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(queries [B, Q, D], item [B, D])``: the query outputs (last = target query) and the
        candidate's LUM item embedding."""
        items, conditions, actions, mask = self.history(batch)
        _, q = self.encode(items, conditions, actions, mask, self.query_conditions(batch))
        return q, self.item_embedding(batch.sparse[:, self.candidate_item_col])

    def features(self, batch: Batch) -> Tensor:
        """Downstream features ``[B, Q·D + D + Q]``: the query outputs, the candidate's item
        embedding, and the interest-matching cosines ``cos(query_q, item)``."""
        q, item = self.interests(batch)
        sims = F.cosine_similarity(q, item[:, None, :], dim=-1)  # [B, Q]
        return torch.cat([q.flatten(1), item, sims], dim=1)

    def feature_names(self) -> list[str]:
        """Names of the columns of :meth:`features`."""
        names = [f"lum_q{g}_{k}" for g in range(self.num_queries) for k in range(self.dim)]
        names += [f"lum_item_{k}" for k in range(self.dim)]
        return names + [f"lum_sim{g}" for g in range(self.num_queries)]

    def forward(self, batch: Batch) -> Tensor:
        """Zero-shot matching score ``[B]``: cos(target query output, candidate item embedding)."""
        q, item = self.interests(batch)
        return F.cosine_similarity(q[:, -1], item, dim=-1)

    def flops_per_example(self) -> int:
        """Forward FLOPs of :meth:`forward`. Histories are always padded to ``L = max_history``,
        so the cost does not depend on their lengths: ``T = 2L + Q`` tokens, and attention counted
        as its dense products ``2·2·T·T·D`` per layer (``scaled_dot_product_attention``; the CPU
        fused kernel is counted by :func:`recsys_lab.scaling.counting.measured_flops`)."""
        length, nq, d, e = self.max_history, self.num_queries, self.dim, self.emb_dim
        t = 2 * length + nq
        flops = 2 * (length + nq) * self.num_conditions * e * d  # condition projections
        flops += 2 * length * 2 * e * d  # item projections
        flops += sum(block.flops(t) for block in self.blocks)  # type: ignore[operator]
        flops += 2 * t * d * d  # head
        return flops + 2 * e * d  # candidate item head
