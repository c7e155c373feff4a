"""AMTL — adaptively-masked twins layer (Yan et al., CIKM 2021, arXiv 2108.11513).

Behind a full embedding table of maximum width d, each feature value i gets a width k_i from its
frequency. Two MLP branches (the "twins": one for frequent, one for rare values) map the value's
frequency features to logits over widths 1..d, mixed with weight ``α_i`` (the normalised
frequency: ``log(1 + c_i) / log(1 + max_c)``)::

    logits = α · MLP_freq(x) + (1 − α) · MLP_rare(x)         [.., d]
    p      = softmax(logits / T)
    soft_j = P(k ≥ j) = Σ_{m ≥ j} p_m                       (reverse cumulative sum)
    hard_j = 1[j ≤ argmax p + 1]                            (a prefix of ones)
    mask   = hard + soft − stopgrad(soft)                    (straight-through)
    e_i    = table[i] ⊙ mask

Frequencies are counted online: the ``counts`` buffer adds every looked-up row while training (it
is saved in checkpoints). The frequency features are ``[α, log(1 + c) / 10, one-hot(field)]``.

``width_penalty`` λ (default 0, the paper's setting) adds ``λ · E[Σ_j soft_j / d]`` (the expected
kept fraction of the looked-up rows) to the training objective through the gradient only — the
CTR task's loss value is unchanged — to trade quality for fewer stored values.

Table gradients stay sparse (the table is an ``nn.Embedding``); the MLPs are
:meth:`dense_parameters`, so they go to the dense optimiser and warm starts copy only the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_lab.data.schema import Schema
from recsys_lab.layers.embedding import FullEmbedding
from recsys_lab.layers.mlp import MLP


class _AddPenaltyGrad(torch.autograd.Function):
    """Identity on ``out``; backward adds the gradient of ``weight · mean(soft)`` to ``soft``."""

    @staticmethod
    def forward(ctx, out: Tensor, soft: Tensor, weight: float) -> Tensor:  # type: ignore[override]
        ctx.weight = weight
        ctx.save_for_backward(soft)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        (soft,) = ctx.saved_tensors
        return grad, torch.full_like(soft, ctx.weight / soft.numel()), None


def masks_from_logits(logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """``[..., d]`` width logits -> ``(hard, soft)`` masks ``[..., d]``.

    ``soft_j = P(k ≥ j)`` under ``softmax(logits / T)``; ``hard`` keeps the first ``argmax + 1``
    dimensions."""
    p = torch.softmax(logits / temperature, dim=-1)  # [..., d]; p_j = P(k = j + 1)
    soft = p.flip(-1).cumsum(-1).flip(-1)  # [..., d] reverse cumulative sum
    k = p.argmax(-1, keepdim=True) + 1  # [..., 1] kept width
    j = torch.arange(1, logits.shape[-1] + 1, device=logits.device)
    hard = (j <= k).to(soft.dtype)  # [..., d] prefix of ones
    return hard, soft


class AMTLEmbedding(FullEmbedding):
    """A full table ``[V, d]`` whose rows are masked to a learned, frequency-dependent width.

    ``[B, F]`` ids -> ``[B, F, d]`` (dimensions beyond a value's width are zero).

    Args:
        schema: the dataset schema.
        dim: d, the maximum width.
        hidden_units: hidden widths of each twin MLP.
        temperature: T of the width softmax.
        width_penalty: λ, weight of the expected kept fraction (gradient-only; 0 = off).
        init_full_width: start every value at full width (the last logit gets a head start), so a
            warm-started model begins where the trained one was.
        sparse_grad, init_std: see :class:`~recsys_lab.layers.embedding.FullEmbedding`.
    """

    def __init__(
        self,
        schema: Schema,
        dim: int = 16,
        hidden_units: Sequence[int] = (32,),
        temperature: float = 1.0,
        width_penalty: float = 0.0,
        init_full_width: bool = True,
        sparse_grad: bool = True,
        init_std: float = 1e-2,
    ) -> None:
        super().__init__(schema, dim=dim, sparse_grad=sparse_grad, init_std=init_std)
        if temperature <= 0:
            raise ValueError(f"amtl temperature must be > 0, got {temperature}")
        if width_penalty < 0:
            raise ValueError(f"amtl width_penalty must be >= 0, got {width_penalty}")
        self.temperature = temperature
        self.width_penalty = width_penalty
        in_features = 2 + self.num_fields
        self.frequent = MLP(in_features, list(hidden_units), dim)  # logits over widths 1..d
        self.rare = MLP(in_features, list(hidden_units), dim)
        if init_full_width:
            for branch in (self.frequent, self.rare):
                last = [m for m in branch.modules() if isinstance(m, nn.Linear)][-1]
                with torch.no_grad():
                    last.weight.zero_()  # logits = bias at the start: argmax = d, by a small margin
                    last.bias.copy_(torch.linspace(0.0, 0.25, dim))
        self.register_buffer("counts", torch.zeros(self.table.num_embeddings))
        field_of_row = torch.repeat_interleave(
            torch.arange(self.num_fields), torch.tensor(self.rows_per_field, dtype=torch.long)
        )
        self.register_buffer("field_of_row", field_of_row, persistent=False)

    def dense_parameters(self) -> list[nn.Parameter]:
        return [*self.frequent.parameters(), *self.rare.parameters()]

    # -- masks ---------------------------------------------------------------------------------
    def width_logits(self, rows: Tensor) -> Tensor:
        """int64 ``[...]`` table rows -> width logits ``[..., d]`` (the twins mixed by α)."""
        c = self.counts[rows]  # [...]
        alpha = torch.log1p(c) / math.log1p(max(float(self.counts.max()), 1.0))  # [...] in [0, 1]
        x = torch.cat(
            [
                alpha.unsqueeze(-1),
                (torch.log1p(c) / 10.0).unsqueeze(-1),
                F.one_hot(self.field_of_row[rows], self.num_fields).to(c.dtype),
            ],
            dim=-1,
        )  # [..., 2 + F]
        a = alpha.unsqueeze(-1)
        return a * self.frequent(x) + (1 - a) * self.rare(x)  # [..., d]

    def forward(self, ids: Tensor) -> Tensor:
        """``ids`` int64 ``[B, F]`` -> ``[B, F, d]``."""
        rows = self.rows(ids)  # [B, F]
        if self.training:
            with torch.no_grad():
                self.counts.index_add_(0, rows.flatten(), torch.ones(rows.numel(), device=rows.device))
        hard, soft = masks_from_logits(self.width_logits(rows), self.temperature)  # [B, F, d]
        mask = hard + soft - soft.detach()  # straight-through: values of hard, gradient of soft
        out = self.table(rows) * mask
        if self.training and self.width_penalty > 0 and torch.is_grad_enabled():
            out = _AddPenaltyGrad.apply(out, soft, self.width_penalty)
        return out

    # -- storage -------------------------------------------------------------------------------
    @torch.no_grad()
    def kept_widths(self, chunk: int = 65536) -> Tensor:
        """int64 ``[V]``: the kept width (hard mask length) of every row of the table."""
        out = []
        for start in range(0, self.table.num_embeddings, chunk):
            rows = torch.arange(
                start, min(start + chunk, self.table.num_embeddings), device=self.counts.device
            )
            out.append(self.width_logits(rows).argmax(-1) + 1)
        return torch.cat(out)

    def stored_values(self) -> int:
        """Exact number of embedding values kept for serving: Σ over the vocabulary of kept widths."""
        return int(self.kept_widths().sum())

    def num_stored_values(self) -> int:
        return self.stored_values() + sum(p.numel() for p in self.dense_parameters())
