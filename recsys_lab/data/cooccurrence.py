"""Co-occurrence statistics of feature-value pairs, for PCF-GNN and its exact-table baseline.

For chosen field pairs (a, b), every training sample joins its value of field a with its value of
field b. Per distinct pair we keep impressions and clicks, and the smoothed pair CTR::

    ctr(u, v) = (clicks + α · prior) / (impressions + α)

with ``prior`` the training click rate. Everything is computed from the **training split only**;
a pair never seen in training looks up to ``prior`` in the exact table.

Nodes are feature values in the global row space of a full embedding table (``offset_f + id``);
edges are the distinct pairs, one edge type per field pair.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from recsys_lab.data.schema import Schema


@dataclass
class PairTable:
    """The distinct pairs of one field pair (a, b), sorted by key ``id_a · V_b + id_b``.

    Attributes:
        field_a, field_b: categorical field indices (a < b not required).
        vocab_b: V_b, to form keys.
        keys: int64 ``[P]`` sorted keys.
        impressions, clicks: float32 ``[P]``.
    """

    field_a: int
    field_b: int
    vocab_b: int
    keys: Tensor
    impressions: Tensor
    clicks: Tensor

    def __len__(self) -> int:
        return self.keys.numel()

    def sample_keys(self, sparse: Tensor) -> Tensor:
        """int64 ``[N]`` keys of the samples' (a, b) values; ``sparse`` ``[N, F]``."""
        return sparse[:, self.field_a].long() * self.vocab_b + sparse[:, self.field_b].long()

    def ids(self) -> tuple[Tensor, Tensor]:
        """Field-local ids ``([P], [P])`` of the pairs' a and b values."""
        return self.keys // self.vocab_b, self.keys % self.vocab_b

    def find(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """``keys`` ``[N]`` -> ``(index [N] into the table, found [N] bool)``."""
        if len(self) == 0:
            return torch.zeros_like(keys), torch.zeros_like(keys, dtype=torch.bool)
        idx = torch.searchsorted(self.keys, keys).clamp(max=len(self) - 1)
        return idx, self.keys[idx] == keys


@dataclass
class CooccurrenceStats:
    """Pair statistics of the training split for chosen field pairs.

    Attributes:
        schema: the dataset schema (field names and vocabularies).
        tables: one :class:`PairTable` per chosen field pair.
        alpha: α of the smoothing. prior: the training click rate.
    """

    schema: Schema
    tables: list[PairTable]
    alpha: float
    prior: float

    @property
    def field_pairs(self) -> list[tuple[int, int]]:
        return [(t.field_a, t.field_b) for t in self.tables]

    def pair_names(self) -> list[str]:
        names = [f.name for f in self.schema.categorical]
        return [f"{names[a]}_x_{names[b]}" for a, b in self.field_pairs]

    @property
    def num_entries(self) -> int:
        """Distinct pairs stored by the exact table (one smoothed CTR each)."""
        return sum(len(t) for t in self.tables)

    def smoothed(self, clicks: Tensor, impressions: Tensor) -> Tensor:
        return (clicks + self.alpha * self.prior) / (impressions + self.alpha)

    def lookup(self, sparse: Tensor, clicks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The exact table's smoothed CTR of each sample's chosen pairs.

        Args:
            sparse: int ``[N, F]`` samples.
            clicks: float ``[N]``, only for the *training* samples themselves: each sample's own
                click and impression are left out (leave-one-out), so a training feature never
                contains its own label; a pair seen only once then looks up to the prior, like an
                unseen pair at test time.

        Returns:
            ``(ctr float32 [N, P], seen bool [N, P])``; ``seen`` = the pair occurs in training
            (apart from the sample itself when leaving one out).
        """
        ctrs, seens = [], []
        for t in self.tables:
            idx, found = t.find(t.sample_keys(sparse))
            imp = torch.where(found, t.impressions[idx], torch.zeros(()))
            clk = torch.where(found, t.clicks[idx], torch.zeros(()))
            if clicks is not None:
                imp = (imp - 1).clamp(min=0)
                clk = (clk - clicks.float()).clamp(min=0)
            ctrs.append(self.smoothed(clk, imp))
            seens.append(imp > 0)
        n = sparse.shape[0]
        if not ctrs:
            return torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.bool)
        return torch.stack(ctrs, 1).float(), torch.stack(seens, 1)

    def edges(self) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
        """Edges for the GNN, in the global node space (``offset_f + id``).

        Returns ``(src [P_k] per pair type, dst [P_k] per pair type, label [E], weight [E])`` with
        E = Σ P_k in pair-type order; label = the smoothed CTR, weight = sqrt(impressions)."""
        offsets = torch.tensor([0, *itertools.accumulate(self.schema.vocab_sizes)][:-1], dtype=torch.long)
        src, dst, labels, weights = [], [], [], []
        for t in self.tables:
            a, b = t.ids()
            src.append(a + offsets[t.field_a])
            dst.append(b + offsets[t.field_b])
            labels.append(self.smoothed(t.clicks, t.impressions))
            weights.append(t.impressions.sqrt())
        return src, dst, torch.cat(labels).float(), torch.cat(weights).float()


def pair_table(sparse: Tensor, clicks: Tensor, field_a: int, field_b: int, vocab_b: int) -> PairTable:
    """Count impressions and clicks per distinct (a, b) value pair of ``sparse`` ``[N, F]``."""
    keys = sparse[:, field_a].long() * vocab_b + sparse[:, field_b].long()
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    imp = torch.bincount(inverse, minlength=uniq.numel()).float()
    clk = torch.bincount(inverse, weights=clicks.double(), minlength=uniq.numel()).float()
    return PairTable(field_a, field_b, vocab_b, uniq, imp, clk)


def resolve_field_pairs(schema: Schema, field_pairs: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """Names ``[[a, b], ...]`` -> categorical field indices, with a clear error for bad names."""
    out = []
    for pair in field_pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"pcf field_pairs entries must be two different field names, got {list(pair)}")
        try:
            out.append((schema.categorical_index(pair[0]), schema.categorical_index(pair[1])))
        except (KeyError, ValueError) as err:
            names = [f.name for f in schema.categorical]
            raise ValueError(
                f"pcf field_pairs: {list(pair)} names an unknown field; fields are {names}"
            ) from err
    return out


def select_field_pairs(
    sparse: Tensor, clicks: Tensor, schema: Schema, num_pairs: int, alpha: float, max_rows: int = 200_000
) -> list[tuple[int, int]]:
    """The ``num_pairs`` field pairs whose pair CTR most improves on their fields' own CTRs.

    Score of (a, b): leave-one-out log-likelihood of the smoothed pair CTR minus the better of the
    two single-field smoothed CTRs, on the first ``max_rows`` training rows (training data only).
    """
    sparse, clicks = sparse[:max_rows].long(), clicks[:max_rows].double()
    prior = float(clicks.mean())

    def loo_loglik(keys: Tensor) -> float:
        uniq, inv = torch.unique(keys, return_inverse=True)
        imp = torch.bincount(inv, minlength=uniq.numel()).double()[inv] - 1
        clk = torch.bincount(inv, weights=clicks, minlength=uniq.numel())[inv] - clicks
        q = ((clk + alpha * prior) / (imp + alpha)).clamp(1e-6, 1 - 1e-6)
        return float((clicks * q.log() + (1 - clicks) * (1 - q).log()).mean())

    vocab = schema.vocab_sizes
    single = [loo_loglik(sparse[:, f]) for f in range(len(vocab))]
    scores = []
    for a, b in itertools.combinations(range(len(vocab)), 2):
        gain = loo_loglik(sparse[:, a] * vocab[b] + sparse[:, b]) - max(single[a], single[b])
        scores.append((gain, a, b))
    scores.sort(reverse=True)
    return [(a, b) for _, a, b in scores[:num_pairs]]


def build_cooccurrence(
    sparse: Tensor, clicks: Tensor, schema: Schema, field_pairs: Sequence[tuple[int, int]], alpha: float
) -> CooccurrenceStats:
    """Pair statistics of the training samples ``sparse`` ``[N, F]`` / ``clicks`` ``[N]``."""
    if alpha <= 0:
        raise ValueError(f"pcf alpha (smoothing strength) must be > 0, got {alpha}")
    if sparse.shape[0] == 0:
        raise ValueError("pcf: the training split is empty; cannot build the co-occurrence graph")
    vocab = schema.vocab_sizes
    tables = [pair_table(sparse, clicks, a, b, vocab[b]) for a, b in field_pairs]
    return CooccurrenceStats(schema, tables, float(alpha), float(clicks.float().mean()))
