"""Synthetic tabular CTR data with a planted model, so the best possible AUC/LogLoss is known.

Features of one row (F categorical fields, field 0 is the ``user``; D numeric fields):

* categorical ``x_f``: a Zipf-distributed frequency rank ``r ∈ {1..V_f-1}``, ``P(r) ∝ r^(-s)``
  (``s = zipf_exponent``), mapped to an id by a fixed random permutation of ``1..V_f-1``; with
  probability ``missing_rate`` the id is 0 (missing). Fields are independent.
* numeric ``z_j``: float32, standard normal for even ``j`` and a standardised log-normal
  ``(exp(σ·ε) - E) / SD`` (σ = 0.5) for odd ``j`` (0-based), so every column has mean 0 and
  variance 1.

The planted (true) model::

    logit(x) = b + Σ_f w_f[x_f]                                 first-order effects
                 + Σ_{(f,g) ∈ P} ⟨U_fg[x_f], V_fg[x_g]⟩          low-rank pairwise crosses
                 + a · tanh(z W + c)                            nonlinear dense term
                 + ⟨z, q[x_k]⟩                                  instance-specific weights (off by default)
    p(x) = sigmoid(logit(x)),     click ~ Bernoulli(p(x))

with ``w_f: [V_f]``, ``U_fg: [V_f, R]``, ``V_fg: [V_g, R]`` (R = ``cross_rank``), ``P`` a set of
``num_crosses`` distinct field pairs drawn at random, ``W: [D, H]``, ``c: [H]``, ``a: [H]``. The last term (``instance_scale > 0``) gives each value of
the field ``k = instance_field`` (e.g. each user) its own weights ``q[x_k]: [D]`` on the numeric
features (APG's premise: the right weights differ from instance to instance): a random unit
direction per value times ``rank(x_k)^(-t)``, drawn from its own seed stream so that every other
parameter and row is unchanged by it.

Parameters are drawn from ``seed``: ``w_f[v]`` and each row of ``U_fg[v]``, ``V_fg[v]`` are
``N(0, 1) · rank(v)^(-t)`` (``t = tail_decay``; the missing id counts as rank 1), so rare values
have weaker effects, as a well-regularised model would estimate them anyway; ``W ~ N(0, 4/D)``
(tanh saturates), ``c ~ N(0, 1/4)``, ``a ~ N(0, 1)``. Each component is then
rescaled so that its standard deviation over rows equals ``first_order_scale``, ``cross_scale``,
``dense_scale`` (and ``instance_scale``), its mean is folded into ``b``, and ``b`` is solved so that
``E[p] = base_rate``. These moments come from a fixed calibration sample of
:data:`CALIBRATION_ROWS` rows drawn from its own seed stream.

Rows of split ``s`` are generated in chunks of ``chunk_size`` rows; chunk ``k`` uses the random
stream ``SeedSequence(seed, spawn_key=(stream(s), k))``. For a given ``chunk_size`` the output is
therefore bit-identical across runs on one machine (numpy's SIMD exp/tanh may differ in the last
bit between CPU types) and independent of how chunks are scheduled over threads,
and a split never depends on the sizes of the other splits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from recsys_lab.data.schema import Feature, FeatureKind, FeatureRole, Schema

CALIBRATION_ROWS = 1 << 16
"""Rows of the calibration sample that fixes the component scales and the bias."""

_STREAM_MODEL = 0
_STREAM_CALIBRATION = 1
_STREAM_INSTANCE = 5  # the instance-specific weights: their own stream, so the rest is unchanged
SPLIT_STREAMS: dict[str, int] = {"train": 2, "val": 3, "test": 4}
"""Seed-stream index of each split (``SeedSequence(seed, spawn_key=(stream, chunk))``)."""

_LOGNORMAL_SIGMA = 0.5
_DENSE_GAIN = 2.0  # std of the hidden pre-activations: large enough for tanh to saturate
_GUIDE_BITS = 16  # inverse-CDF guide table of 2**16 buckets per field


@dataclass(frozen=True)
class SyntheticTabularSpec:
    """Shape and planted model of a synthetic tabular CTR dataset (see the module docstring).

    Args:
        seed: seeds the planted model and every row.
        num_categorical: categorical fields, the ``user`` field included (so >= 1).
        num_numeric: numeric fields (may be 0).
        num_users: distinct users; the ``user`` field has ``vocab_size = num_users + 1``.
        min_vocab, max_vocab: vocabulary sizes (id 0 included) of fields ``c1..c{F-1}``, spread
            log-uniformly from ``min_vocab`` to ``max_vocab`` in field order.
        vocab_sizes: explicit vocabulary sizes of ``c1..c{F-1}``; overrides min/max_vocab.
        zipf_exponent: ``s`` in ``P(rank r) ∝ r^(-s)`` for every categorical field.
        tail_decay: ``t``: effects of the value of frequency rank ``r`` have scale ``r^(-t)``
            (0 = every value's effect equally strong; larger = rare values matter less, which
            makes the optimum easier to approach with little data).
        missing_rate: probability that a categorical value is missing (id 0).
        num_crosses: planted pairwise crosses (distinct field pairs, the user field included).
        cross_rank: rank ``R`` of each planted cross.
        first_order_scale, cross_scale, dense_scale: standard deviation of each logit component.
        dense_hidden: hidden width ``H`` of the planted dense term.
        base_rate: target mean true click probability.
        instance_scale: standard deviation of the instance-specific term ``⟨z, q[x_k]⟩`` (0 = none;
            needs numeric fields).
        instance_field: the categorical field ``k`` whose values own the weights ``q`` (``user``,
            ``c1``, ...).
    """

    seed: int = 0
    num_categorical: int = 12
    num_numeric: int = 6
    num_users: int = 1000
    min_vocab: int = 10
    max_vocab: int = 5000
    vocab_sizes: tuple[int, ...] | None = None
    zipf_exponent: float = 1.4
    tail_decay: float = 1.0
    missing_rate: float = 0.0
    num_crosses: int = 8
    cross_rank: int = 1
    first_order_scale: float = 1.0
    cross_scale: float = 0.8
    dense_scale: float = 0.6
    dense_hidden: int = 16
    base_rate: float = 0.25
    instance_scale: float = 0.0
    instance_field: str = "user"

    def __post_init__(self) -> None:
        if self.vocab_sizes is not None:
            object.__setattr__(self, "vocab_sizes", tuple(int(v) for v in self.vocab_sizes))
        _check(
            self.num_categorical >= 1,
            "num_categorical",
            self.num_categorical,
            "must be >= 1 (the user field)",
        )
        _check(self.num_numeric >= 0, "num_numeric", self.num_numeric, "must be >= 0")
        _check(self.num_users >= 1, "num_users", self.num_users, "must be >= 1")
        if self.vocab_sizes is None:
            _check(
                self.min_vocab >= 2,
                "min_vocab",
                self.min_vocab,
                "must be >= 2 (id 0 is reserved for missing)",
            )
            _check(
                self.max_vocab >= self.min_vocab,
                "max_vocab",
                self.max_vocab,
                f"must be >= min_vocab={self.min_vocab}",
            )
        else:
            _check(
                len(self.vocab_sizes) == self.num_categorical - 1,
                "vocab_sizes",
                self.vocab_sizes,
                f"needs num_categorical - 1 = {self.num_categorical - 1} entries (fields c1..; the user "
                "field's size is num_users + 1)",
            )
            bad = [v for v in self.vocab_sizes if v < 2]
            _check(
                not bad,
                "vocab_sizes",
                self.vocab_sizes,
                "entries must be >= 2 (id 0 is reserved for missing)",
            )
        _check(
            self.zipf_exponent > 0,
            "zipf_exponent",
            self.zipf_exponent,
            "must be > 0 (1.0-1.5 is typical of CTR data)",
        )
        _check(self.tail_decay >= 0, "tail_decay", self.tail_decay, "must be >= 0 (0 = no decay)")
        _check(0 <= self.missing_rate < 1, "missing_rate", self.missing_rate, "must be in [0, 1)")
        max_pairs = self.num_categorical * (self.num_categorical - 1) // 2
        _check(
            0 <= self.num_crosses <= max_pairs,
            "num_crosses",
            self.num_crosses,
            f"must be in [0, {max_pairs}] (distinct pairs of {self.num_categorical} categorical fields)",
        )
        _check(self.cross_rank >= 1, "cross_rank", self.cross_rank, "must be >= 1")
        for name in ("first_order_scale", "cross_scale", "dense_scale"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        _check(self.dense_hidden >= 1, "dense_hidden", self.dense_hidden, "must be >= 1")
        _check(0 < self.base_rate < 1, "base_rate", self.base_rate, "must be in (0, 1)")
        _check(self.instance_scale >= 0, "instance_scale", self.instance_scale, "must be >= 0 (0 = none)")
        _check(
            self.instance_scale == 0 or self.num_numeric >= 1,
            "instance_scale",
            self.instance_scale,
            "needs num_numeric >= 1 (the instance-specific weights act on the numeric features)",
        )
        fields = ["user", *(f"c{i}" for i in range(1, self.num_categorical))]
        _check(
            self.instance_field in fields,
            "instance_field",
            self.instance_field,
            f"is not a categorical field; use one of user, c1 .. c{self.num_categorical - 1}",
        )

    @property
    def field_vocab_sizes(self) -> tuple[int, ...]:
        """Vocabulary size of every categorical field, user first (``Batch.sparse`` order)."""
        if self.vocab_sizes is not None:
            return (self.num_users + 1, *self.vocab_sizes)
        sizes = np.geomspace(self.min_vocab, self.max_vocab, self.num_categorical - 1)
        return (self.num_users + 1, *(round(float(v)) for v in sizes))

    def schema(self) -> Schema:
        """Features ``user, c1..c{F-1}, n1..n{D}``; label ``click``."""
        vocab = self.field_vocab_sizes
        features = [Feature("user", FeatureKind.CATEGORICAL, vocab[0], FeatureRole.USER)]
        features += [Feature(f"c{i}", FeatureKind.CATEGORICAL, v) for i, v in enumerate(vocab[1:], 1)]
        features += [Feature(f"n{j}", FeatureKind.NUMERIC) for j in range(1, self.num_numeric + 1)]
        return Schema(features=tuple(features), labels=("click",))


def _check(ok: bool, name: str, value: object, what: str) -> None:
    if not ok:
        raise ValueError(f"synthetic data: {name}={value!r} {what}")


@dataclass
class SyntheticTable:
    """One generated split as numpy columns (N rows, F categorical, D numeric fields).

    Attributes:
        sparse: int32 ``[N, F]`` field-local ids, user in column 0.
        dense: float32 ``[N, D]``.
        click: float32 ``[N]`` 0/1 labels.
        true_prob: float32 ``[N]`` the planted model's click probability.
    """

    sparse: np.ndarray
    dense: np.ndarray
    click: np.ndarray
    true_prob: np.ndarray

    def __len__(self) -> int:
        return self.sparse.shape[0]


class _ZipfField:
    """Inverse-CDF sampler of one field's ids (Zipf over frequency ranks, then a permutation)."""

    def __init__(self, vocab_size: int, exponent: float, rng: np.random.Generator) -> None:
        ranks = np.arange(1, vocab_size, dtype=np.float64)  # [V-1], rank 1 is the most frequent
        cdf = np.cumsum(ranks ** (-exponent))
        self.cdf = cdf / cdf[-1]  # [V-1], cdf[-1] == 1 exactly
        # Guide table over K buckets: bucket b covers u in [b/K, (b+1)/K). Where no CDF step falls
        # inside it, every u in it has the same rank and the table holds it; elsewhere -1 (search).
        # The result equals searchsorted(cdf, u, "right") exactly, several times faster.
        k = 1 << _GUIDE_BITS
        edges = np.searchsorted(self.cdf, np.arange(k + 1) / k, side="right")  # [K+1]
        self.guide = np.where(edges[:-1] == edges[1:], edges[:-1], -1).astype(np.int64)  # [K]
        # rank index (0-based) -> id in 1..V-1
        self.rank_to_id = (rng.permutation(vocab_size - 1) + 1).astype(np.int32)  # [V-1]

    def effect_scale(self, tail_decay: float) -> np.ndarray:
        """float64 ``[V]``: ``rank^(-tail_decay)`` per id (id 0, missing, counts as rank 1)."""
        scale = np.ones(len(self.rank_to_id) + 1)
        scale[self.rank_to_id] = np.arange(1, len(self.rank_to_id) + 1, dtype=np.float64) ** (-tail_decay)
        return scale

    def sample(self, u: np.ndarray) -> np.ndarray:
        """Ids (int32 ``[n]``) for uniforms ``u`` (float64 ``[n]`` in [0, 1))."""
        rank = self.guide.take((u * (1 << _GUIDE_BITS)).astype(np.intp))  # exact: K is a power of 2
        open_ = np.flatnonzero(rank < 0)
        rank[open_] = np.searchsorted(self.cdf, u[open_], side="right")  # < V-1 since u < 1
        return self.rank_to_id.take(rank)


class PlantedModel:
    """The true model of a :class:`SyntheticTabularSpec`: feature samplers and the true logit."""

    def __init__(self, spec: SyntheticTabularSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_MODEL,)))
        vocab = spec.field_vocab_sizes
        f, d, h, r = len(vocab), spec.num_numeric, spec.dense_hidden, spec.cross_rank
        self.fields = [_ZipfField(v, spec.zipf_exponent, rng) for v in vocab]
        decay = [z.effect_scale(spec.tail_decay) for z in self.fields]  # [V_f] each
        # w_f: [V_f] each
        self.first_order = [rng.standard_normal(v) * dec for v, dec in zip(vocab, decay)]
        pairs = np.array([(a, b) for a in range(f) for b in range(a + 1, f)], dtype=np.int64).reshape(-1, 2)
        self.cross_pairs = pairs[
            np.sort(rng.choice(len(pairs), size=spec.num_crosses, replace=False))
        ]  # [P, 2]
        # Stored rank-major for fast gathers: U_fg^T [R, V_f], V_fg^T [R, V_g].
        self.cross_u = [rng.standard_normal((r, vocab[a])) * decay[a] for a, _ in self.cross_pairs]
        self.cross_v = [rng.standard_normal((r, vocab[b])) * decay[b] for _, b in self.cross_pairs]
        self.dense_w = rng.standard_normal((d, h)) * (_DENSE_GAIN / math.sqrt(max(d, 1)))  # W: [D, H]
        self.dense_c = rng.standard_normal(h) * 0.5  # c: [H]
        self.dense_a = rng.standard_normal(h)  # a: [H]
        # q: [V_k, D] instance-specific weights of the numeric features (None when off)
        self.instance_index = 0 if spec.instance_field == "user" else int(spec.instance_field[1:])
        self.instance_w: np.ndarray | None = None
        if spec.instance_scale > 0:
            irng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_INSTANCE,)))
            q = irng.standard_normal((vocab[self.instance_index], d))
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            self.instance_w = q * decay[self.instance_index][:, None]
        self.bias = 0.0
        self._calibrate()

    # -- calibration ---------------------------------------------------------------------------
    def _calibrate(self) -> None:
        """Rescale the components to their target std and solve the bias for ``base_rate``."""
        spec = self.spec
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_CALIBRATION,)))
        sparse, dense = self.sample_features(rng, CALIBRATION_ROWS)
        first, cross, dense_term = self.logit_parts(sparse, dense)

        def factor(part: np.ndarray, scale: float) -> float:
            sd = float(part.std())
            return scale / sd if sd > 0 else 0.0

        f1, f2, f3 = (
            factor(first, spec.first_order_scale),
            factor(cross, spec.cross_scale),
            factor(dense_term, spec.dense_scale),
        )
        self.first_order = [w * f1 for w in self.first_order]
        self.cross_u = [u * math.sqrt(f2) for u in self.cross_u]
        self.cross_v = [v * math.sqrt(f2) for v in self.cross_v]
        self.dense_a = self.dense_a * f3
        offset = -(f1 * first.mean() + f2 * cross.mean() + f3 * dense_term.mean())
        centred = f1 * first + f2 * cross + f3 * dense_term + offset  # [n], mean 0
        if self.instance_w is not None:
            inst = self.instance_term(sparse, dense)
            f4 = factor(inst, spec.instance_scale)
            self.instance_w = self.instance_w * f4
            offset -= f4 * inst.mean()
            centred = centred + f4 * (inst - inst.mean())
        self.bias = _solve_bias(centred, spec.base_rate) + offset

    # -- features and logits -------------------------------------------------------------------
    def sample_features(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` rows: (sparse int32 ``[n, F]``, dense float32 ``[n, D]``)."""
        sparse = np.empty((n, len(self.fields)), dtype=np.int32)
        self._sparse_into(rng, sparse)
        dense = np.empty((n, self.spec.num_numeric), dtype=np.float32)
        self._dense_into(rng, dense)
        return sparse, dense

    def _sparse_into(self, rng: np.random.Generator, sparse: np.ndarray) -> None:
        n = sparse.shape[0]
        for j, sampler in enumerate(self.fields):
            sparse[:, j] = sampler.sample(rng.random(n))
        if self.spec.missing_rate > 0:
            sparse[rng.random(sparse.shape) < self.spec.missing_rate] = 0

    def _dense_into(self, rng: np.random.Generator, dense: np.ndarray) -> None:
        z = rng.standard_normal(dense.shape)  # [n, D]
        s2 = _LOGNORMAL_SIGMA**2
        mean, sd = math.exp(s2 / 2), math.sqrt((math.exp(s2) - 1) * math.exp(s2))
        z[:, 1::2] = (np.exp(_LOGNORMAL_SIGMA * z[:, 1::2]) - mean) / sd
        dense[:] = z

    def logit_parts(self, sparse: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three components of the logit (bias excluded), float64 ``[n]`` each.

        Args:
            sparse: int ``[n, F]`` ids; dense: float ``[n, D]``.
        Returns:
            ``(first_order, crosses, dense_term)``.
        """
        n = sparse.shape[0]
        columns = [np.ascontiguousarray(sparse[:, j]) for j in range(sparse.shape[1])]  # F x [n]
        first = np.zeros(n)
        for ids, w in zip(columns, self.first_order):
            first += w.take(ids)
        cross = np.zeros(n)
        for (a, b), u, v in zip(self.cross_pairs, self.cross_u, self.cross_v):
            for r in range(u.shape[0]):  # ⟨U[x_a], V[x_b]⟩ one rank at a time
                cross += u[r].take(columns[a]) * v[r].take(columns[b])
        if dense.shape[1] > 0:
            # float32 on purpose: tanh in float64 costs more than the rest of a chunk together.
            pre = dense.astype(np.float32, copy=False) @ self.dense_w.astype(np.float32)  # [n, H]
            hidden = np.tanh(pre + self.dense_c.astype(np.float32))  # [n, H]
            dense_term = (hidden @ self.dense_a.astype(np.float32)).astype(np.float64)  # [n]
        else:
            dense_term = np.zeros(n)
        return first, cross, dense_term

    def instance_term(self, sparse: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """``⟨z, q[x_k]⟩``, float64 ``[n]`` (zeros when ``instance_scale`` is 0).

        Args:
            sparse: int ``[n, F]`` ids; dense: float ``[n, D]``.
        """
        if self.instance_w is None:
            return np.zeros(sparse.shape[0])
        q = self.instance_w[sparse[:, self.instance_index]]  # [n, D]
        return (dense.astype(np.float64) * q).sum(1)

    def logit(self, sparse: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """True logit, float64 ``[n]``."""
        first, cross, dense_term = self.logit_parts(sparse, dense)
        z = self.bias + first + cross + dense_term
        return z if self.instance_w is None else z + self.instance_term(sparse, dense)

    def true_prob(self, sparse: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """True click probability, float64 ``[n]``."""
        return _sigmoid(self.logit(sparse, dense))

    # -- splits --------------------------------------------------------------------------------
    def generate(
        self, split: str, num_rows: int, chunk_size: int = 100_000, num_threads: int | None = None
    ) -> SyntheticTable:
        """Generate ``num_rows`` rows of ``split`` chunk by chunk into preallocated arrays.

        Args:
            split: ``train``, ``val`` or ``test`` (selects the seed stream).
            num_rows: rows to generate (>= 0).
            chunk_size: rows per chunk; the output depends on it (and on nothing else).
            num_threads: worker threads (numpy releases the GIL); default ``min(4, cpu count)``.
        """
        if split not in SPLIT_STREAMS:
            raise ValueError(
                f"synthetic data: split={split!r} is unknown; use one of {sorted(SPLIT_STREAMS)}"
            )
        _check(num_rows >= 0, "num_rows", num_rows, "must be >= 0")
        _check(chunk_size >= 1, "chunk_size", chunk_size, "must be >= 1")
        f, d = len(self.fields), self.spec.num_numeric
        table = SyntheticTable(
            sparse=np.empty((num_rows, f), dtype=np.int32),
            dense=np.empty((num_rows, d), dtype=np.float32),
            click=np.empty(num_rows, dtype=np.float32),
            true_prob=np.empty(num_rows, dtype=np.float32),
        )
        stream = SPLIT_STREAMS[split]
        starts = list(range(0, num_rows, chunk_size))

        def fill(k: int) -> None:
            lo, hi = starts[k], min(starts[k] + chunk_size, num_rows)
            rng = np.random.default_rng(np.random.SeedSequence(self.spec.seed, spawn_key=(stream, k)))
            sparse, dense = table.sparse[lo:hi], table.dense[lo:hi]
            self._sparse_into(rng, sparse)
            self._dense_into(rng, dense)
            p = self.true_prob(sparse, dense)  # [n] float64
            table.click[lo:hi] = rng.random(hi - lo) < p
            table.true_prob[lo:hi] = p

        threads = num_threads if num_threads is not None else min(4, os.cpu_count() or 1)
        if threads <= 1 or len(starts) <= 1:
            for k in range(len(starts)):
                fill(k)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(fill, range(len(starts))))
        return table


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))


def _solve_bias(logits: np.ndarray, target: float) -> float:
    """``b`` with ``mean(sigmoid(b + logits)) = target``: Newton steps kept inside a shrinking bracket."""
    lo, hi = -40.0, 40.0
    b = math.log(target / (1 - target))
    for _ in range(100):
        p = _sigmoid(b + logits)
        err = float(p.mean()) - target
        if abs(err) < 1e-12:
            break
        lo, hi = (b, hi) if err < 0 else (lo, b)
        slope = float((p * (1 - p)).mean())
        b = b - err / slope if slope > 0 else 0.5 * (lo + hi)
        if not lo < b < hi:
            b = 0.5 * (lo + hi)
    return b


def generate_splits(
    spec: SyntheticTabularSpec,
    sizes: Sequence[tuple[str, int]],
    chunk_size: int = 100_000,
    num_threads: int | None = None,
) -> tuple[PlantedModel, dict[str, SyntheticTable]]:
    """Build the planted model of ``spec`` and generate each ``(split, num_rows)`` of ``sizes``."""
    model = PlantedModel(spec)
    return model, {name: model.generate(name, n, chunk_size, num_threads) for name, n in sizes}
