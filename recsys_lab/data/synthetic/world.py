"""The synthetic world: users and ads on a timeline of days, with behaviour sequences, action
types, churn, drift, several domains, onboarding content and retention — and the true probability
of every label.

The planted model is written out in ``docs/synthetic_world.md``; in short, exposure ``e`` of user
``u`` to ad ``i`` (category ``c``, domain ``k``) at time ``t`` is clicked with probability
``σ(τ · z_click)`` where

    z_click = b + g_1 · first(u, i, context) + g_2 · cross(u, i) + g_3 · ⟨u(t), v_i⟩
                + g_4 · novelty(age of i) + cap · tanh((g_5 · H_cat(u, c, t) + g_6 · H_item(u, i, t)) / cap)

    H_cat(u, c, t)  = Σ_j w(a_j) · κ(r_j) · exp(-(t - t_j) / T) · [c_j = c]
    H_item(u, i, t) = Σ_j w(a_j) · κ(r_j) · exp(-(t - t_j) / T) · ⟨v_{i_j}, v_i⟩
    κ(r) = Σ_m α_m ρ_m^r,   ρ_m = 1 - 1 / d_m,   α_m ∝ (1 - ρ_m) d_m^γ,   κ(0) = 1

over the user's earlier events ``j`` (``r_j`` = how many events lie between ``j`` and ``e``;
``a_j`` its action: exposure, click or conversion; ``w`` = ``action_weights``), and ``τ`` the
noise temperature. A click converts with probability ``σ(τ · z_conv)`` built the same way; a
conversion triggers onboarding and retention (:mod:`.onboarding`). Every gain ``g`` is calibrated
on a pilot simulation so that the component's standard deviation over exposures is the configured
scale, and every bias so that the mean probability is the configured base rate.

Generation runs user shard by user shard (``users_per_shard`` users each, all days), vectorised
over the shard's users: a Python loop runs over days and over the position of an event within its
user's day, never over events. The history sums are kept as lazily-decayed per-(user, category,
scale) and per-(user, scale) states, so each event costs O(scales · latent_dim), whatever the
history length. A shard's events are returned sorted by (user, time) as an :class:`EventLog`.
Shard ``s`` uses the random streams ``SeedSequence(seed, spawn_key=(stream, s, day))``, so the
output depends on ``seed``, the spec (``users_per_shard`` included) and nothing else — not on the
number of worker processes or the order shards are made in.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from recsys_lab.data.synthetic.onboarding import (
    ContentCatalogue,
    Onboarding,
    gaussian_expected_sigmoid,
    sigmoid,
)

DAY = 86_400
"""Seconds per day: event ``ts`` is in seconds since the world's start; day ``d`` is
``[d · DAY, (d + 1) · DAY)``."""
EXPOSURE, CLICK, CONVERSION = 1, 2, 4
"""Action bits of ``EventLog.action`` and ``Jagged.actions``: a click is ``3``, a conversion ``7``."""
ACTION_NAMES = ("exposure", "click", "conversion")
NUM_AGES, NUM_GENDERS, NUM_HOURS = 8, 2, 24

_STREAM_MODEL, _STREAM_POPULATION, _STREAM_PILOT, _STREAM_USERS, _STREAM_DAYS, _STREAM_CONTENT = range(6)
_STREAM_ENGAGEMENT = 6  # the engagement direction (its own stream: the other draws do not move)
_CROSS_RANK = 4
_GUIDE_BITS = 16
_CALIBRATION_PASSES = 3
_MAX_AGE_DAYS = 365
_PILOT_KEYS = (
    "first",
    "cross",
    "interest",
    "novelty",
    "h_cat",
    "h_item",
    "conv_first",
    "ret_observable",
    "clicked",
)
_PROFILE_REFRESH_DAYS = 7
_LEVEL_ACTION = np.array([EXPOSURE, EXPOSURE | CLICK, EXPOSURE | CLICK | CONVERSION], np.uint8)
_LAZY_RANGE = 80.0  # max log-magnitude of the (float32) lazy history state before renormalising


# ------------------------------------------------------------------------------------------------
# Spec and presets
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldSpec:
    """Every knob of the world. The defaults are the ``small`` preset; see :data:`WORLD_PRESETS`.

    Population: ``num_users`` users and ``num_items`` ads exist on day 0; every later day
    ``round(num_users · user_arrival_rate)`` users and ``round(num_items · item_arrival_rate)`` ads
    join, and each user (ad) present on a day leaves before the next with probability
    ``user_churn_rate`` (``item_churn_rate``). Ads belong to ``num_domains`` verticals (shares
    ``∝ rank^-domain_skew``) and ``num_categories`` categories (each inside one domain).

    Activity: a present user visits on a day with probability ``visit_rate`` and then sees
    ``1 + Poisson(events_per_visit · activity - 1)`` ads (capped at ``max_events_per_day``;
    ``activity`` is log-normal with mean 1 and log-sd ``activity_sigma``). An exposure is targeted
    with probability ``targeting`` (an ad of one of the user's ``favorite_categories`` categories,
    by popularity) and otherwise drawn by popularity alone (Zipf ``popularity_skew``).

    Drift: log-popularity of each ad walks with daily sd ``popularity_drift``; user interests
    ``u ← sqrt(1 - η²) u + η ξ`` daily with ``η = interest_drift``.

    History: ``history_depths`` (mean depths ``d_m`` of the geometric depth kernels),
    ``history_mass_exponent`` (γ: scale m carries a share ∝ ``d_m^γ`` of the history's weight, so
    larger γ makes old events matter more), ``history_decay_days`` (time constant T), ``action_weights`` (w for exposure, click, conversion), ``history_cap``
    (the most the history can add to or take from a logit: the evidence saturates as
    ``cap · tanh(evidence / cap)``).

    Scales: the standard deviation (over exposures) of each logit component; ``base_*`` the mean
    probabilities; ``noise`` the sd of unobservable per-event logit noise, folded into the true
    probability as the temperature ``τ = 1 / sqrt(1 + π noise² / 8)``.

    Generation: ``users_per_shard`` users per shard (the data depend on it), and the pilot
    simulation that calibrates the gains (``calibration_users`` users, ``calibration_days`` days).
    """

    seed: int = 0
    # population and catalogue
    num_users: int = 10_000
    num_items: int = 4_000
    num_days: int = 21
    num_domains: int = 4
    num_categories: int = 64
    num_regions: int = 32
    num_positions: int = 5
    latent_dim: int = 16
    domain_skew: float = 1.0
    popularity_skew: float = 1.1
    # activity and targeting
    visit_rate: float = 0.6
    events_per_visit: float = 8.0
    activity_sigma: float = 0.75
    max_events_per_day: int = 64
    targeting: float = 0.6
    favorite_categories: int = 3
    # churn and drift
    user_arrival_rate: float = 0.02
    user_churn_rate: float = 0.02
    item_arrival_rate: float = 0.04
    item_churn_rate: float = 0.04
    popularity_drift: float = 0.15
    interest_drift: float = 0.15
    # history effect
    history_depths: tuple[float, ...] = (2.0, 8.0, 32.0, 128.0)
    history_decay_days: float = 14.0
    history_mass_exponent: float = 0.75
    action_weights: tuple[float, float, float] = (0.1, 1.0, 3.0)
    # click logit
    base_ctr: float = 0.08
    first_order_scale: float = 0.7
    cross_scale: float = 0.4
    interest_scale: float = 0.6
    novelty_scale: float = 0.2
    novelty_days: float = 3.0
    history_category_scale: float = 0.6
    history_item_scale: float = 0.4
    history_cap: float = 3.0
    noise: float = 0.0
    # conversion (given a click)
    base_cvr: float = 0.12
    conversion_first_order_scale: float = 0.6
    conversion_interest_scale: float = 0.4
    conversion_history_scale: float = 0.6
    # onboarding and retention
    retention_days: int = 7
    base_retention: float = 0.35
    retention_content_scale: float = 1.5
    retention_observable_scale: float = 0.4
    engagement_correlation: float = 0.0
    content_per_domain: int = 64
    content_themes: int = 8
    max_sessions: int = 4
    max_session_items: int = 6
    content_tilt: float = 1.5
    # generation
    users_per_shard: int = 8192
    calibration_users: int = 2000
    calibration_days: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "history_depths", tuple(float(x) for x in self.history_depths))
        object.__setattr__(self, "action_weights", tuple(float(x) for x in self.action_weights))
        for name in (
            "num_users",
            "num_items",
            "num_days",
            "num_domains",
            "num_regions",
            "num_positions",
            "latent_dim",
            "max_events_per_day",
            "favorite_categories",
            "retention_days",
            "content_per_domain",
            "content_themes",
            "max_sessions",
            "max_session_items",
            "users_per_shard",
            "calibration_users",
            "calibration_days",
        ):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        _check(
            self.num_categories >= self.num_domains,
            "num_categories",
            self.num_categories,
            f"must be >= num_domains={self.num_domains} (every domain needs a category)",
        )
        for name in ("visit_rate", "targeting"):
            _check(0 <= getattr(self, name) <= 1, name, getattr(self, name), "must be in [0, 1]")
        for name in ("user_churn_rate", "item_churn_rate"):
            _check(0 <= getattr(self, name) < 1, name, getattr(self, name), "must be in [0, 1)")
        for name in ("base_ctr", "base_cvr", "base_retention"):
            _check(0 < getattr(self, name) < 1, name, getattr(self, name), "must be in (0, 1)")
        _check(self.events_per_visit >= 1, "events_per_visit", self.events_per_visit, "must be >= 1")
        for name in (
            "domain_skew",
            "popularity_skew",
            "activity_sigma",
            "user_arrival_rate",
            "item_arrival_rate",
            "popularity_drift",
            "noise",
            "first_order_scale",
            "cross_scale",
            "interest_scale",
            "novelty_scale",
            "history_category_scale",
            "history_item_scale",
            "history_cap",
            "history_mass_exponent",
            "conversion_first_order_scale",
            "conversion_interest_scale",
            "conversion_history_scale",
            "retention_content_scale",
            "retention_observable_scale",
            "content_tilt",
        ):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        _check(0 <= self.interest_drift <= 1, "interest_drift", self.interest_drift, "must be in [0, 1]")
        _check(
            0 <= self.engagement_correlation <= 1,
            "engagement_correlation",
            self.engagement_correlation,
            "must be in [0, 1] (the correlation of onboarding engagement with its observable signal)",
        )
        _check(self.novelty_days > 0, "novelty_days", self.novelty_days, "must be > 0")
        _check(self.history_decay_days > 0, "history_decay_days", self.history_decay_days, "must be > 0")
        _check(len(self.action_weights) == 3, "action_weights", self.action_weights, "needs 3 weights")
        _check(
            self.favorite_categories <= self.num_categories,
            "favorite_categories",
            self.favorite_categories,
            f"must be <= num_categories={self.num_categories}",
        )
        _check(
            len(self.history_depths) >= 1 and min(self.history_depths) >= 1.25,
            "history_depths",
            self.history_depths,
            "needs at least one mean depth, each >= 1.25 (the depth kernel is geometric: "
            "ρ = 1 - 1/depth must be >= 0.2)",
        )
        # The lazy history state grows by ρ^-1 per event between renormalisations and must stay in
        # float32 range over one day.
        rho = 1.0 - 1.0 / min(self.history_depths)
        growth = -(self.max_events_per_day + 1) * math.log(rho) + 2.0 / self.history_decay_days
        _check(
            growth < _LAZY_RANGE,
            "max_events_per_day",
            self.max_events_per_day,
            f"is too large for the shortest history depth {min(self.history_depths)} (float32 range); "
            "lower it or raise the depth",
        )

    # -- derived sizes ----------------------------------------------------------------------------
    @property
    def new_users_per_day(self) -> int:
        return round(self.num_users * self.user_arrival_rate)

    @property
    def new_items_per_day(self) -> int:
        return round(self.num_items * self.item_arrival_rate)

    @property
    def total_users(self) -> int:
        """Users who ever exist; user ids are ``1..total_users`` in order of joining."""
        return self.num_users + self.new_users_per_day * (self.num_days - 1)

    @property
    def total_items(self) -> int:
        """Ads that ever exist; ad ids are ``1..total_items`` in order of joining."""
        return self.num_items + self.new_items_per_day * (self.num_days - 1)

    @property
    def num_shards(self) -> int:
        return -(-self.total_users // self.users_per_shard)

    @property
    def temperature(self) -> float:
        """``τ``: the noise folded into the true probability (probit approximation of E_ε σ(z + ε))."""
        return 1.0 / math.sqrt(1.0 + math.pi * self.noise**2 / 8.0)

    def expected_events(self) -> float:
        """Approximate number of exposures of the whole world (for sizing)."""
        per_visit = self.events_per_visit  # 1 + Poisson(λ - 1) has mean λ (before the cap)
        user_days = 0.0
        survive = 1.0 - self.user_churn_rate
        for d in range(self.num_days):
            user_days += self.num_users * survive**d
            for j in range(1, d + 1):
                user_days += self.new_users_per_day * survive ** (d - j)
        return user_days * self.visit_rate * per_visit

    @classmethod
    def preset(cls, name: str) -> WorldSpec:
        """The named preset (``tiny``, ``small`` or ``large``)."""
        if name not in WORLD_PRESETS:
            raise ValueError(
                f"synthetic world: preset={name!r} is unknown; use one of {sorted(WORLD_PRESETS)}"
            )
        return cls(**WORLD_PRESETS[name])

    @classmethod
    def from_preset(cls, name: str, overrides: dict[str, Any] | None = None) -> WorldSpec:
        """The named preset with some fields replaced; an unknown field name raises ValueError."""
        spec = cls.preset(name)
        if not overrides:
            return spec
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"synthetic world: unknown knob(s) {unknown}; the knobs are {sorted(known)} "
                "(see docs/synthetic_world.md)"
            )
        return replace(
            spec,
            **{
                k: (tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
                for k, v in overrides.items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


WORLD_PRESETS: dict[str, dict[str, Any]] = {
    # CI: ~30k exposures, generated in well under a second.
    "tiny": {
        "num_users": 1_000,
        "num_items": 400,
        "num_days": 8,
        "num_domains": 3,
        "num_categories": 16,
        "num_regions": 8,
        "latent_dim": 8,
        "events_per_visit": 6.0,
        "max_events_per_day": 32,
        "history_depths": (2.0, 8.0, 32.0),
        "content_per_domain": 32,
        "content_themes": 4,
        "users_per_shard": 1024,
        "calibration_users": 1500,
        "calibration_days": 6,
    },
    # The claim experiments: ~1M exposures over 21 days, ~8.5k conversions.
    "small": {},
    # OCARM: onboarding engagement partly predictable before conversion (engagement_correlation)
    # and more conversions (base_cvr), so that 3 test days hold > 10k retention rows
    # (data.rows=conversions data.test_days=3 data.val_days=2). ~4M exposures.
    "retention": {
        "num_users": 40_000,
        "base_cvr": 0.3,
        "engagement_correlation": 0.6,
    },
    # GRAB: a history effect that reaches back ~1000 events (depth scales up to 1024, mass on the
    # deep ones, slow time decay) among heavy users (~600 events by the last day). ~1.5M exposures.
    "long_history": {
        "num_users": 2_500,
        "num_days": 28,
        "visit_rate": 0.9,
        "events_per_visit": 24.0,
        "max_events_per_day": 96,
        "history_depths": (4.0, 32.0, 256.0, 1024.0),
        "history_mass_exponent": 1.5,
        "history_decay_days": 60.0,
        "history_category_scale": 1.0,
        "history_item_scale": 0.6,
        "history_cap": 4.0,
        "users_per_shard": 2_500,
    },
    # ~40M exposures over 42 days, 8 domains: generation takes under a minute with 2 workers.
    "large": {
        "num_users": 200_000,
        "num_items": 40_000,
        "num_days": 42,
        "num_domains": 8,
        "num_categories": 256,
        "num_regions": 64,
        "content_per_domain": 128,
        "users_per_shard": 16_384,
    },
}


def _check(ok: bool, name: str, value: object, what: str) -> None:
    if not ok:
        raise ValueError(f"synthetic world: {name}={value!r} {what}")


# ------------------------------------------------------------------------------------------------
# Output: one shard's events
# ------------------------------------------------------------------------------------------------


@dataclass
class EventLog:
    """Exposures of a set of users sorted by (user, time), with the outcome of each and its true
    probabilities; plus the conversions' retention and onboarding content.

    Per exposure (E rows): ``user`` int32, ``item`` int32, ``category`` int16, ``domain`` int8,
    ``position`` int8, ``ts`` int64 (seconds, strictly increasing within a user), ``action`` uint8
    (bit 0 exposure, bit 1 click, bit 2 conversion), ``p_click`` float32 (true click probability),
    ``p_cvr`` float32 (true conversion probability given a click), ``logit_parts`` float32 ``[E, 3]``
    (the click logit before the temperature: its static part incl. bias, and the linear history
    evidence ``g_5 H_cat`` and ``g_6 H_item``; the logit is
    ``static + saturate(g_5 H_cat + g_6 H_item, history_cap)``), ``conversion`` int32 (row in the
    conversion table, -1 if none).

    Per conversion (C rows, in exposure order): ``conv_event`` int64 (its exposure row),
    ``p_retention`` float32 (true), ``p_retention_observable`` float32 (best from observables),
    ``retained`` uint8, and ``onboarding`` (:class:`Onboarding` with C + 1 offsets).
    """

    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    domain: np.ndarray
    position: np.ndarray
    ts: np.ndarray
    action: np.ndarray
    p_click: np.ndarray
    p_cvr: np.ndarray
    logit_parts: np.ndarray
    conversion: np.ndarray
    conv_event: np.ndarray
    p_retention: np.ndarray
    p_retention_observable: np.ndarray
    retained: np.ndarray
    onboarding: Onboarding = field(default_factory=Onboarding.empty)

    _EVENT_COLUMNS = (
        "user",
        "item",
        "category",
        "domain",
        "position",
        "ts",
        "action",
        "p_click",
        "p_cvr",
        "logit_parts",
        "conversion",
    )
    _CONVERSION_COLUMNS = ("conv_event", "p_retention", "p_retention_observable", "retained")

    def __len__(self) -> int:
        return self.user.shape[0]

    @property
    def num_conversions(self) -> int:
        return self.conv_event.shape[0]

    @property
    def day(self) -> np.ndarray:
        """int64 ``[E]`` day of each exposure."""
        return self.ts // DAY

    def nbytes(self) -> int:
        cols = [getattr(self, c) for c in (*self._EVENT_COLUMNS, *self._CONVERSION_COLUMNS)]
        ob = self.onboarding
        return sum(c.nbytes for c in cols) + sum(
            a.nbytes for a in (ob.offsets, ob.content, ob.theme, ob.session, ob.ts)
        )

    @staticmethod
    def concat(logs: list[EventLog]) -> EventLog:
        """Concatenate logs of disjoint, increasing user ranges (e.g. shards in order)."""
        if len(logs) == 1:
            return logs[0]
        shift = np.cumsum([0] + [len(x) for x in logs[:-1]])
        cshift = np.cumsum([0] + [x.num_conversions for x in logs[:-1]])
        cols = {c: np.concatenate([getattr(x, c) for x in logs]) for c in EventLog._EVENT_COLUMNS}
        cols["conversion"] = np.concatenate(
            [np.where(x.conversion >= 0, x.conversion + s, -1).astype(np.int32) for x, s in zip(logs, cshift)]
        )
        conv = {c: np.concatenate([getattr(x, c) for x in logs]) for c in EventLog._CONVERSION_COLUMNS}
        conv["conv_event"] = np.concatenate([x.conv_event + s for x, s in zip(logs, shift)])
        return EventLog(**cols, **conv, onboarding=Onboarding.concat([x.onboarding for x in logs]))


# ------------------------------------------------------------------------------------------------
# Entities
# ------------------------------------------------------------------------------------------------


@dataclass
class Population:
    """Who exists when, and the categorical attributes of users and ads (index = global id; row 0
    is padding).

    Users: ``user_join``, ``user_leave`` (int32 days: present on ``join <= d < leave``),
    ``user_age`` (1..8), ``user_gender`` (1..2), ``user_region`` (1..num_regions).
    Ads: ``item_join``, ``item_leave``, ``item_category`` (1..C), ``item_domain`` (1..D).
    ``category_domain`` int8 ``[C + 1]``: the domain of each category.
    """

    user_join: np.ndarray
    user_leave: np.ndarray
    user_age: np.ndarray
    user_gender: np.ndarray
    user_region: np.ndarray
    item_join: np.ndarray
    item_leave: np.ndarray
    item_category: np.ndarray
    item_domain: np.ndarray
    category_domain: np.ndarray


def _lifetimes(rng: np.random.Generator, n: int, churn: float, horizon: int) -> np.ndarray:
    """Days present, Geometric(churn) on {1, 2, ...}; ``horizon`` (never leaves) when churn is 0."""
    if churn <= 0:
        return np.full(n, horizon, np.int64)
    return np.minimum(rng.geometric(churn, size=n), horizon)


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** (-exponent)
    return w / w.sum()


def _joined_before(rng: np.random.Generator, n: int, churn: float) -> np.ndarray:
    """Join days (<= 0) of the ``n`` entities present at day 0: steady-state ages of a population
    with Geometric(churn) lifetimes, capped at a year."""
    p = max(churn, 1.0 / _MAX_AGE_DAYS)
    return -np.minimum(rng.geometric(p, size=n) - 1, _MAX_AGE_DAYS)


def _build_population(spec: WorldSpec, rng: np.random.Generator) -> Population:
    horizon = spec.num_days + 1
    nu, ni = spec.total_users, spec.total_items
    # Users present at day 0 joined before it; their remaining lifetime is again Geometric(churn).
    user_join = np.zeros(nu + 1, np.int32)
    user_join[1 : spec.num_users + 1] = _joined_before(rng, spec.num_users, spec.user_churn_rate)
    user_join[spec.num_users + 1 :] = np.repeat(np.arange(1, spec.num_days), spec.new_users_per_day)
    user_leave = np.zeros(nu + 1, np.int32)
    user_start = np.maximum(user_join[1:], 0)
    user_leave[1:] = np.minimum(user_start + _lifetimes(rng, nu, spec.user_churn_rate, horizon), horizon)
    ages = rng.choice(NUM_AGES, size=nu, p=_normalise(np.array([3, 6, 8, 7, 5, 4, 3, 2.0]))) + 1
    genders = rng.integers(1, NUM_GENDERS + 1, size=nu)
    regions = rng.choice(spec.num_regions, size=nu, p=_zipf_weights(spec.num_regions, 1.0)) + 1

    item_join = np.zeros(ni + 1, np.int32)
    item_join[1 : spec.num_items + 1] = _joined_before(rng, spec.num_items, spec.item_churn_rate)
    item_join[spec.num_items + 1 :] = np.repeat(np.arange(1, spec.num_days), spec.new_items_per_day)
    item_leave = np.zeros(ni + 1, np.int32)
    item_start = np.maximum(item_join[1:], 0)
    item_leave[1:] = np.minimum(item_start + _lifetimes(rng, ni, spec.item_churn_rate, horizon), horizon)
    # Categories are split among domains by share (each domain gets >= 1); ads pick a category
    # by its share (domain share x Zipf within the domain).
    share = _zipf_weights(spec.num_domains, spec.domain_skew)
    per_domain = np.maximum(1, np.floor(share * spec.num_categories).astype(np.int64))
    while per_domain.sum() < spec.num_categories:
        per_domain[np.argmax(share * spec.num_categories - per_domain)] += 1
    while per_domain.sum() > spec.num_categories:
        per_domain[np.argmax(per_domain)] -= 1
    category_domain = np.zeros(spec.num_categories + 1, np.int8)
    category_domain[1:] = np.repeat(np.arange(1, spec.num_domains + 1), per_domain)
    cat_weight = np.concatenate([share[d] * _zipf_weights(int(n), 0.8) for d, n in enumerate(per_domain)])
    item_category = np.zeros(ni + 1, np.int16)
    item_category[1:] = rng.choice(spec.num_categories, size=ni, p=cat_weight / cat_weight.sum()) + 1
    return Population(
        user_join=user_join,
        user_leave=user_leave,
        user_age=np.concatenate([[0], ages]).astype(np.int8),
        user_gender=np.concatenate([[0], genders]).astype(np.int8),
        user_region=np.concatenate([[0], regions]).astype(np.int16),
        item_join=item_join,
        item_leave=item_leave,
        item_category=item_category,
        item_domain=category_domain[item_category],
        category_domain=category_domain,
    )


def _normalise(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


@dataclass
class Gains:
    """Calibrated gains and biases of the planted logits (see the module docstring)."""

    click_bias: float = 0.0
    click_first: float = 1.0
    click_cross: float = 1.0
    click_interest: float = 1.0
    click_novelty: float = 1.0
    click_hist_cat: float = 0.0
    click_hist_item: float = 0.0
    conv_bias: float = 0.0
    conv_first: float = 1.0
    conv_interest: float = 1.0
    conv_hist: float = 0.0
    ret_bias: float = 0.0
    ret_observable: float = 1.0


@dataclass
class _Users:
    """A set of users simulated together (a shard, or the pilot). Index = local row."""

    gid: np.ndarray  # int32 [n] global ids (0 for pilot users)
    join: np.ndarray  # int32 [n]
    leave: np.ndarray  # int32 [n]
    age: np.ndarray  # int [n]
    latent: np.ndarray  # float64 [n, k], drifts daily
    activity: np.ndarray  # float64 [n] mean exposures per visit
    click_first: np.ndarray  # float64 [n] user part of the first-order click term (attrs incl.)
    category_cross: np.ndarray  # float32 [n, C + 1]: ⟨attribute factors, category factors⟩ + user x domain
    conv_bias: np.ndarray  # float64 [n] user part of the first-order conversion term
    favorites: np.ndarray  # int16 [n, F] favourite categories (the targeting profile)
    taste_noise: np.ndarray  # float64 [n, C] fixed Gumbel taste behind the favourites
    ret_bias: np.ndarray  # float64 [n] user part of the observable retention term


class _DaySampler:
    """Draws the ads of one day's exposures: by popularity, or within a category by popularity."""

    def __init__(self, items_by_category: np.ndarray, weight: np.ndarray, category_start: np.ndarray) -> None:
        total = weight.sum()
        cdf = np.cumsum(weight) / total  # [I] over items_by_category
        cdf[-1] = 1.0
        self.cdf = cdf
        self.items = items_by_category
        edges = np.concatenate([[0.0], cdf])
        self.cat_lo = edges[category_start[:-1]]  # [C + 1] mass before category c
        self.cat_hi = edges[category_start[1:]]  # [C + 1] mass up to the end of category c
        k = 1 << _GUIDE_BITS
        e = np.searchsorted(cdf, np.arange(k + 1) / k, side="right")
        self.guide = np.where(e[:-1] == e[1:], e[:-1], -1).astype(np.int64)

    def sample(self, u: np.ndarray) -> np.ndarray:
        """Ad ids for points ``u`` in [0, 1) of the popularity CDF (float64 ``[n]``)."""
        pos = self.guide.take((u * (1 << _GUIDE_BITS)).astype(np.intp))
        open_ = np.flatnonzero(pos < 0)
        pos[open_] = np.searchsorted(self.cdf, u[open_], side="right")
        np.minimum(pos, self.cdf.size - 1, out=pos)
        return self.items.take(pos)


@dataclass
class _Day:
    """One simulated day of a set of users, in step-major order (all first events, then all
    second events, ...)."""

    local: np.ndarray  # int64 [E] user row
    rank: np.ndarray  # int64 [E] index of the event in its user's whole history
    item: np.ndarray
    category: np.ndarray
    domain: np.ndarray
    position: np.ndarray
    ts: np.ndarray
    action: np.ndarray
    p_click: np.ndarray
    p_cvr: np.ndarray
    parts: np.ndarray  # float32 [E, 3]
    raw: dict[str, np.ndarray] | None  # pilot only: raw components
    conv_rows: np.ndarray  # int64 [Cv] day rows that converted (in step order)
    conv_past: np.ndarray  # int64 [Cv] the user's conversions before this one
    conv_latent: np.ndarray  # float64 [Cv, k] the user's interests at the conversion


@dataclass
class _ShardState:
    """What a simulation carries from day to day for its users (index = local row)."""

    cat: np.ndarray  # float32 [n, C + 1, M] lazily-decayed H_cat per (category, scale)
    item: np.ndarray  # float32 [n, M, k] lazily-decayed Σ_j w κ e^{-Δ/T} v_j per scale
    count: np.ndarray  # int64 [n] events so far
    ref_count: np.ndarray  # int64 [n] event count of the state's reference frame
    ref_day: np.ndarray  # int64 [n] day whose start is the frame's reference time
    conv_count: np.ndarray  # int64 [n] conversions so far
    drift_day: np.ndarray  # int64 [n] day at which the user's interests are current
    profile_day: np.ndarray  # int64 [n] day the favourites were last derived from the interests
    latent32: np.ndarray  # float32 [n, k] copy of the interests for per-event dot products

    @staticmethod
    def start(users: _Users, spec: WorldSpec, scales: int) -> _ShardState:
        n = users.gid.size
        drift_day = np.maximum(users.join.astype(np.int64), 0)  # interests as drawn: day max(join, 0)
        return _ShardState(
            cat=np.zeros((n, spec.num_categories + 1, scales), np.float32),
            item=np.zeros((n, scales, spec.latent_dim), np.float32),
            count=np.zeros(n, np.int64),
            ref_count=np.zeros(n, np.int64),
            ref_day=np.zeros(n, np.int64),
            conv_count=np.zeros(n, np.int64),
            drift_day=drift_day,
            profile_day=drift_day.copy(),
            latent32=users.latent.astype(np.float32),
        )


@dataclass
class _Exposures:
    """One day's exposures (step-major order) before their outcomes."""

    ts: np.ndarray  # int64 [E]
    item: np.ndarray  # int32 [E]
    category: np.ndarray  # int64 [E]
    domain: np.ndarray  # int64 [E]
    position: np.ndarray  # int64 [E]
    latent: np.ndarray  # float32 [E, k] the ads' vectors
    static: np.ndarray  # float64 [E] click logit without the history term
    conv_static: np.ndarray  # float64 [E] conversion logit without the history term
    raw: dict[str, np.ndarray]  # raw components (calibration)


@dataclass
class _Outcome:
    """One day's outcomes (step-major order)."""

    action: np.ndarray  # uint8 [E]
    p_click: np.ndarray  # float64 [E]
    p_cvr: np.ndarray  # float64 [E]
    h_cat: np.ndarray  # float32 [E] raw H_cat
    h_item: np.ndarray  # float32 [E] raw H_item
    conv_rows: np.ndarray  # int64 [Cv]
    conv_past: np.ndarray  # int64 [Cv]
    past_all: np.ndarray | None  # int64 [E] (pilot only) conversions before each event


# ------------------------------------------------------------------------------------------------
# The world
# ------------------------------------------------------------------------------------------------


class World:
    """A synthetic world built from a :class:`WorldSpec`: entities, planted model, calibrated gains.

    Use :meth:`generate` (all shards, streamed) or :meth:`generate_shard`; :meth:`history_sums`
    recomputes the planted history sums from an explicit (possibly truncated) history.
    """

    def __init__(self, spec: WorldSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_MODEL,)))
        self.population = _build_population(
            spec, np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_POPULATION,)))
        )
        pop = self.population
        k, c, d, ni = spec.latent_dim, spec.num_categories, spec.num_domains, spec.total_items
        # History kernel
        self.rho = 1.0 - 1.0 / np.asarray(spec.history_depths)  # [M]
        # κ(r) = Σ_m α_m ρ_m^r with α_m ∝ (1 - ρ_m) d_m^γ and κ(0) = 1: scale m carries a share
        # ∝ d_m^γ of the whole history's weight.
        self.alpha = (1.0 - self.rho) * np.asarray(spec.history_depths) ** spec.history_mass_exponent
        self.alpha /= self.alpha.sum()  # [M]
        self._log_rho_max = float((-np.log(self.rho)).max())  # fastest growth of the lazy state
        steps = np.arange(spec.max_events_per_day + 1, dtype=np.float64)
        self._rho_pow = self.rho[None, :] ** steps[:, None]  # [K + 1, M]
        self._rho_inv_pow = self.rho[None, :] ** -steps[:, None]  # [K + 1, M]
        self._rho_pow32 = self._rho_pow.astype(np.float32)
        self._rho_inv_pow32 = self._rho_inv_pow.astype(np.float32)
        self.action_weight = np.zeros(8)
        w_exp, w_click, w_conv = spec.action_weights
        self.action_weight[EXPOSURE] = w_exp  # indexed by the action bitmask
        self.action_weight[EXPOSURE | CLICK] = w_click
        self.action_weight[EXPOSURE | CLICK | CONVERSION] = w_conv
        self._level_weight32 = np.array([w_exp, w_click, w_conv], np.float32)  # by outcome level
        # Ads: latent vectors around their category's centroid; effects.
        centroid = rng.standard_normal((c + 1, k)) / math.sqrt(k)
        self.category_centroid = centroid
        self.item_latent = 0.8 * centroid[pop.item_category] + 0.6 * rng.standard_normal(
            (ni + 1, k)
        ) / math.sqrt(k)
        self.item_latent[0] = 0.0
        self._engagement_direction: np.ndarray | None = None  # see engagement_signal
        self.item_first = rng.standard_normal(ni + 1)
        self.category_first = 0.7 * rng.standard_normal(c + 1)
        self.domain_first = 0.7 * rng.standard_normal(d + 1)
        self.position_first = np.concatenate([[0.0], -0.35 * np.log(np.arange(1, spec.num_positions + 1))])
        phase = rng.uniform(0, 2 * math.pi)
        self.hour_first = np.concatenate(
            [[0.0], 0.3 * np.sin(2 * math.pi * np.arange(NUM_HOURS) / 24 + phase)]
        )
        self.age_first = 0.5 * rng.standard_normal(NUM_AGES + 1)
        self.gender_first = 0.3 * rng.standard_normal(NUM_GENDERS + 1)
        self.region_first = 0.5 * rng.standard_normal(spec.num_regions + 1)
        # Attribute x category crosses, rank R each: user side [V_a, R], category side [C + 1, R].
        r = _CROSS_RANK
        self.cross_age = rng.standard_normal((NUM_AGES + 1, r))
        self.cross_gender = rng.standard_normal((NUM_GENDERS + 1, r))
        self.cross_region = rng.standard_normal((spec.num_regions + 1, r))
        self.cross_category = rng.standard_normal((c + 1, 3 * r)) / math.sqrt(3 * r)
        # Conversion and retention effects
        self.item_conv = rng.standard_normal(ni + 1)
        self.domain_conv = 0.5 * rng.standard_normal(d + 1)
        # Per-ad sums of the first-order terms (ad, its category, its domain), tabulated.
        self.item_static_first = (
            self.item_first + self.category_first[pop.item_category] + self.domain_first[pop.item_domain]
        )
        self.item_static_conv = self.item_conv + self.domain_conv[pop.item_domain]
        self.item_latent32 = self.item_latent.astype(np.float32)
        self.item_retention = rng.standard_normal(ni + 1)
        self.age_retention = 0.5 * rng.standard_normal(NUM_AGES + 1)
        # Popularity: Zipf base over a random rank order, plus a daily random walk. [days, I + 1]
        base = -spec.popularity_skew * np.log(rng.permutation(ni) + 1.0)
        steps = rng.standard_normal((spec.num_days, ni)) * spec.popularity_drift
        steps[0] = 0.0
        self.log_popularity = np.zeros((spec.num_days, ni + 1), np.float32)
        self.log_popularity[:, 1:] = base[None, :] + np.cumsum(steps, 0)
        self._by_category = (np.argsort(pop.item_category[1:], kind="stable") + 1).astype(np.int32)
        counts = np.bincount(pop.item_category[1:], minlength=c + 1)  # [C + 1]
        self._category_start = np.concatenate([[0], np.cumsum(counts)])  # [C + 2], category 0 empty
        self._samplers: dict[int, _DaySampler] = {}
        self._lock = threading.Lock()
        self.content = ContentCatalogue(
            num_domains=d,
            content_per_domain=spec.content_per_domain,
            content_themes=spec.content_themes,
            latent_dim=k,
            max_sessions=spec.max_sessions,
            max_session_items=spec.max_session_items,
            content_tilt=spec.content_tilt,
            retention_days=spec.retention_days,
            rng=np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_CONTENT,))),
        )
        self.gains = Gains()
        self._calibrate()

    # -- entities ---------------------------------------------------------------------------------
    def sampler(self, day: int) -> _DaySampler:
        """The ad sampler of ``day`` (built once, thread-safe)."""
        s = self._samplers.get(day)
        if s is None:
            with self._lock:
                s = self._samplers.get(day)
                if s is None:
                    pop, items = self.population, self._by_category
                    alive = (pop.item_join[items] <= day) & (day < pop.item_leave[items])
                    weight = np.exp(self.log_popularity[day, items].astype(np.float64)) * alive
                    s = _DaySampler(items, weight, self._category_start)
                    self._samplers[day] = s
        return s

    def shard_users(self, shard: int) -> np.ndarray:
        """Global ids (int32) of the users of ``shard``."""
        if not 0 <= shard < self.spec.num_shards:
            raise ValueError(f"synthetic world: shard={shard} is out of range [0, {self.spec.num_shards})")
        lo = shard * self.spec.users_per_shard + 1
        return np.arange(lo, min(lo + self.spec.users_per_shard, self.spec.total_users + 1), dtype=np.int32)

    def _make_users(
        self,
        rng: np.random.Generator,
        gid: np.ndarray,
        join: np.ndarray,
        leave: np.ndarray,
        age: np.ndarray,
        gender: np.ndarray,
        region: np.ndarray,
    ) -> _Users:
        spec = self.spec
        n, k = gid.size, spec.latent_dim
        latent = rng.standard_normal((n, k)) / math.sqrt(k)
        s = spec.activity_sigma
        activity = spec.events_per_visit * np.exp(s * rng.standard_normal(n) - s * s / 2)
        first = (
            rng.standard_normal(n)
            + self.age_first[age]
            + self.gender_first[gender]
            + self.region_first[region]
        )
        cross = np.concatenate(
            [self.cross_age[age], self.cross_gender[gender], self.cross_region[region]], axis=1
        )  # [n, 3R]
        domain_bias = 0.7 * rng.standard_normal((n, spec.num_domains + 1))
        conv_bias = rng.standard_normal(n)
        taste_noise = rng.gumbel(size=(n, spec.num_categories))
        ret_bias = self.age_retention[age] + 0.5 * rng.standard_normal(n)
        return _Users(
            gid=gid,
            join=join.astype(np.int32),
            leave=leave.astype(np.int32),
            age=age.astype(np.int64),
            latent=latent,
            activity=activity,
            click_first=first,
            category_cross=(
                cross @ self.cross_category.T + domain_bias[:, self.population.category_domain]
            ).astype(np.float32),
            conv_bias=conv_bias,
            favorites=np.zeros((n, spec.favorite_categories), np.int16),
            taste_noise=taste_noise,
            ret_bias=ret_bias,
        )

    def _favorites(self, latent: np.ndarray, taste_noise: np.ndarray) -> np.ndarray:
        """The targeting profile: top-F categories of ``3 √k ⟨u, μ_c⟩ + γ_uc`` (γ a fixed per-user
        Gumbel taste), int16 ``[n, F]``. Recomputed whenever interests drift."""
        spec = self.spec
        f, c = spec.favorite_categories, spec.num_categories
        if f >= c:
            return np.tile(np.arange(1, c + 1, dtype=np.int16), (latent.shape[0], 1))
        score = 3.0 * math.sqrt(spec.latent_dim) * (latent @ self.category_centroid[1:].T) + taste_noise
        return (np.argpartition(-score, f - 1, axis=1)[:, :f] + 1).astype(np.int16)

    def _shard_users(self, shard: int) -> _Users:
        gid = self.shard_users(shard)
        pop = self.population
        rng = np.random.default_rng(np.random.SeedSequence(self.spec.seed, spawn_key=(_STREAM_USERS, shard)))
        return self._make_users(
            rng,
            gid,
            pop.user_join[gid],
            pop.user_leave[gid],
            pop.user_age[gid].astype(np.int64),
            pop.user_gender[gid].astype(np.int64),
            pop.user_region[gid].astype(np.int64),
        )

    # -- simulation -------------------------------------------------------------------------------
    def _simulate(self, users: _Users, days: int, stream: int, key: int, pilot: bool) -> list[_Day]:
        """Simulate ``users`` over days ``0..days-1``; one :class:`_Day` per day with visitors.

        ``pilot`` records the raw (un-gained) components for calibration.
        """
        spec = self.spec
        st = _ShardState.start(users, spec, self.rho.size)
        users.favorites = self._favorites(users.latent, users.taste_noise)
        out: list[_Day] = []
        for day in range(days):
            rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(stream, key, day)))
            present = np.flatnonzero((users.join <= day) & (day < users.leave))
            visitors = present[rng.random(present.size) < spec.visit_rate]
            lam = users.activity[visitors]
            n_ev = np.minimum(1 + rng.poisson(np.maximum(lam - 1.0, 0.0)), spec.max_events_per_day)
            order = np.argsort(-n_ev, kind="stable")
            act, n_ev = visitors[order], n_ev[order]  # today's users, by number of events, descending
            if act.size == 0:
                continue
            self._drift(users, st, act, day, rng)
            # Step-major layout: all users' 1st events, then the 2nd events of those with >= 2, ...
            # so the users of step s are the prefix act[:per_step[s]].
            steps = int(n_ev[0])
            per_step = np.searchsorted(-n_ev, -np.arange(steps), side="left")  # [K]
            starts = np.zeros(steps + 1, np.int64)
            np.cumsum(per_step, out=starts[1:])
            step = np.repeat(np.arange(steps), per_step)  # [E] position of the event in its user's day
            row = np.arange(int(starts[-1])) - starts[step]  # [E] the event's user, as an index into act
            ev = self._exposures(users, st, act, row, step, starts, day, rng)
            self._reframe(st, act, n_ev, day)
            outcome = self._history_steps(users, st, act, row, starts, ev, day, rng, pilot)
            rank = st.count[act[row]] + step
            st.count[act] += n_ev
            out.append(self._day_result(users, act[row], rank, ev, outcome, pilot))
        return out

    def _drift(
        self, users: _Users, st: _ShardState, act: np.ndarray, day: int, rng: np.random.Generator
    ) -> None:
        """Interest drift, applied lazily when a user shows up: ``gap`` daily AR(1) steps at once;
        the targeting profile (favourites) follows, refreshed weekly."""
        spec, k = self.spec, self.spec.latent_dim
        keep = math.sqrt(1.0 - spec.interest_drift**2)
        shrink = keep ** (day - st.drift_day[act]).astype(np.float64)
        noise = rng.standard_normal((act.size, k)) / math.sqrt(k)
        users.latent[act] = (
            shrink[:, None] * users.latent[act] + np.sqrt(1.0 - shrink * shrink)[:, None] * noise
        )
        st.latent32[act] = users.latent[act]
        st.drift_day[act] = day
        stale = act[day - st.profile_day[act] >= _PROFILE_REFRESH_DAYS]
        if stale.size:
            users.favorites[stale] = self._favorites(users.latent[stale], users.taste_noise[stale])
            st.profile_day[stale] = day

    def _exposures(
        self,
        users: _Users,
        st: _ShardState,
        act: np.ndarray,
        row: np.ndarray,
        step: np.ndarray,
        starts: np.ndarray,
        day: int,
        rng: np.random.Generator,
    ) -> _Exposures:
        """Times, ads and context of the day's exposures and their static logit parts."""
        spec, g, pop = self.spec, self.gains, self.population
        e, a, steps = row.size, act.size, starts.size - 1
        local = act[row]
        # Times: each user's n sorted uniforms -> strictly increasing seconds within the day.
        frac = np.sort(row + 0.999_999 * rng.random(e))  # grouped by user, ascending within
        srow = frac.astype(np.int64)
        within = np.arange(e) - np.searchsorted(srow, np.arange(a))[srow]
        u_time = np.empty(e)
        u_time[starts[within] + srow] = frac - srow  # back to step-major order
        sec = (u_time * (DAY - steps)).astype(np.int64) + step
        ts = day * DAY + sec
        # Ads: targeted (one of the user's favourite categories, by popularity) or by popularity.
        sampler = self.sampler(day)
        uu = rng.random(e)
        fav = users.favorites[local, rng.integers(0, spec.favorite_categories, size=e)]
        lo, hi = sampler.cat_lo[fav], sampler.cat_hi[fav]
        targeted = (rng.random(e) < spec.targeting) & (hi > lo)
        item = sampler.sample(np.where(targeted, np.minimum(lo + uu * (hi - lo), np.nextafter(hi, lo)), uu))
        cat = pop.item_category[item].astype(np.int64)
        position = rng.integers(1, spec.num_positions + 1, size=e)
        v32 = self.item_latent32[item]  # [E, k]
        # Static components (raw, before gains); per-ad and per-(user, category) parts are tabulated.
        first = (
            users.click_first[local]
            + self.item_static_first[item]
            + self.position_first[position]
            + self.hour_first[sec // 3600 + 1]
        )
        cross = users.category_cross[local, cat].astype(np.float64)  # attributes x category, user x domain
        interest = np.einsum("ek,ek->e", st.latent32[local], v32).astype(np.float64)
        age_days = (ts - pop.item_join[item].astype(np.int64) * DAY) * (1.0 / DAY)
        novelty = np.exp(age_days * (-1.0 / spec.novelty_days))
        conv_first = users.conv_bias[local] + self.item_static_conv[item]
        return _Exposures(
            ts=ts,
            item=item,
            category=cat,
            domain=pop.item_domain[item].astype(np.int64),
            position=position,
            latent=v32,
            static=g.click_bias
            + g.click_first * first
            + g.click_cross * cross
            + g.click_interest * interest
            + g.click_novelty * novelty,
            conv_static=g.conv_bias + g.conv_first * conv_first + g.conv_interest * interest,
            raw={
                "first": first,
                "cross": cross,
                "interest": interest,
                "novelty": novelty,
                "conv_first": conv_first,
            },
        )

    def _reframe(self, st: _ShardState, act: np.ndarray, n_ev: np.ndarray, day: int) -> None:
        """The lazy state holds each sum in a per-user frame (event count, day start): move the
        users whose frame would leave float32's range today to a fresh one."""
        decay_t = self.spec.history_decay_days
        since = st.count[act] - st.ref_count[act]
        far = (since + n_ev) * self._log_rho_max + (day + 1 - st.ref_day[act]) / decay_t > _LAZY_RANGE
        if far.any():
            mv = act[far]
            f = self.rho[None, :] ** since[far][:, None] * np.exp(-(day - st.ref_day[mv]) / decay_t)[:, None]
            st.cat[mv] *= f[:, None, :].astype(np.float32)
            st.item[mv] *= f[:, :, None].astype(np.float32)
            st.ref_count[mv] = st.count[mv]
            st.ref_day[mv] = day

    def _history_steps(
        self,
        users: _Users,
        st: _ShardState,
        act: np.ndarray,
        row: np.ndarray,
        starts: np.ndarray,
        ev: _Exposures,
        day: int,
        rng: np.random.Generator,
        pilot: bool,
    ) -> _Outcome:
        """Clicks and conversions: one vectorised step per position of an event in its user's day
        (step s's users are ``act[:A_s]``), each reading the history sums of the events before it
        and adding its own. Works on half-logits, ``σ(z) = (1 + tanh(z / 2)) / 2``."""
        spec, g = self.spec, self.gains
        e, a, m, c1 = row.size, act.size, self.rho.size, spec.num_categories + 1
        local = act[row]
        since = (st.count[act] - st.ref_count[act])[:, None]
        base = (self.alpha[None, :] * self.rho[None, :] ** since).astype(np.float32)  # [a, M] κ at step 0
        inv_base = (self.rho[None, :] ** -(since + 1.0)).astype(np.float32)  # [a, M] update at step 0
        # e^{-(t - t_ref)/T} of each event in its user's frame
        decay = np.exp(-((ev.ts - st.ref_day[local] * DAY) / DAY) / spec.history_decay_days).astype(
            np.float32
        )
        inv_decay = 1.0 / decay
        cap = spec.history_cap
        inv_cap = 1.0 / cap if cap > 0 else 0.0
        half = 0.5 * spec.temperature
        a_click, a_conv = half * cap, half * g.conv_hist * cap  # multiply tanh(evidence / cap)
        g_hc, g_hi = g.click_hist_cat, g.click_hist_item
        static_h = (half * ev.static).astype(np.float32)
        conv_h = (half * ev.conv_static).astype(np.float32)
        # u < σ(z) ⇔ 2u - 1 < tanh(z / 2)
        thr_click = (2.0 * rng.random(e) - 1.0).astype(np.float32)
        thr_conv = (2.0 * rng.random(e) - 1.0).astype(np.float32)
        h_cat = np.empty(e, np.float32)  # before the time decay (applied after the loop)
        h_item = np.empty(e, np.float32)
        t_click = np.empty(e, np.float32)  # tanh(z_click / 2)
        t_cvr = np.empty(e, np.float32)
        level = np.empty(e, np.uint8)  # 0 exposure, 1 click, 2 conversion
        conv_rows: list[np.ndarray] = []
        conv_past: list[np.ndarray] = []
        past_all = np.zeros(e, np.int64) if pilot else None
        # Compact copies of today's users' states, rows in act order (each step reads a prefix),
        # written back after the day.
        day_cat = st.cat[act].reshape(a * c1, m)  # [a · (C + 1), M]
        day_item = st.item[act]  # [a, M, k]
        slot = row * c1 + ev.category  # [E] row of the event's (user, category) in day_cat
        for s in range(starts.size - 1):
            lo, hi = int(starts[s]), int(starts[s + 1])
            na = hi - lo
            v_s = ev.latent[lo:hi]  # [A, k]
            q = base[:na] * self._rho_pow32[s]  # [A, M] kernel weights of the stored sums
            at = slot[lo:hi]
            x_cat = day_cat.take(at, axis=0)  # [A, M]: read once, written back below
            x_item = day_item[:na]  # [A, M, k] view
            hc = np.einsum("am,am->a", x_cat, q, out=h_cat[lo:hi])
            hv = np.einsum("am,am->a", np.einsum("amk,ak->am", x_item, v_s), q, out=h_item[lo:hi])
            sat = np.tanh((g_hc * hc + g_hi * hv) * (decay[lo:hi] * inv_cap))  # saturated history / cap
            tc = np.tanh(static_h[lo:hi] + a_click * sat, out=t_click[lo:hi])
            tv = np.tanh(conv_h[lo:hi] + a_conv * sat, out=t_cvr[lo:hi])
            clicked = thr_click[lo:hi] < tc
            converted = clicked & (thr_conv[lo:hi] < tv)
            lv = np.add(clicked.view(np.uint8), converted.view(np.uint8), out=level[lo:hi])
            if past_all is not None:
                past_all[lo:hi] = st.conv_count[act[:na]]
            if converted.any():
                j = np.flatnonzero(converted)
                conv_rows.append(lo + j)
                conv_past.append(st.conv_count[act[j]])
                st.conv_count[act[j]] += 1
            # Add the event: weight w(a) ρ^-(n - n_ref + 1) e^{+(t - t_ref)/T} in the user's frame.
            wgt = (self._level_weight32[lv] * inv_decay[lo:hi])[:, None] * (
                inv_base[:na] * self._rho_inv_pow32[s]
            )
            day_cat[at] = x_cat + wgt
            x_item += np.einsum("am,ak->amk", wgt, v_s)
        st.cat[act] = day_cat.reshape(a, c1, m)
        st.item[act] = day_item
        h_cat *= decay
        h_item *= decay
        rows = np.concatenate(conv_rows) if conv_rows else np.zeros(0, np.int64)
        return _Outcome(
            action=_LEVEL_ACTION[level],
            p_click=0.5 + 0.5 * t_click.astype(np.float64),
            p_cvr=0.5 + 0.5 * t_cvr.astype(np.float64),
            h_cat=h_cat,
            h_item=h_item,
            conv_rows=rows,
            conv_past=np.concatenate(conv_past) if conv_past else np.zeros(0, np.int64),
            past_all=past_all,
        )

    def _day_result(
        self, users: _Users, local: np.ndarray, rank: np.ndarray, ev: _Exposures, out: _Outcome, pilot: bool
    ) -> _Day:
        g = self.gains
        parts = np.stack([ev.static, g.click_hist_cat * out.h_cat, g.click_hist_item * out.h_item], 1)
        raw = None
        if pilot:
            assert out.past_all is not None
            raw = {
                **ev.raw,
                "h_cat": out.h_cat,
                "h_item": out.h_item,
                "ret_observable": self._retention_observable(
                    users.ret_bias[local], users.latent[local], ev.item, out.past_all
                ),
                "clicked": (out.action & CLICK) > 0,
            }
        return _Day(
            local=local,
            rank=rank,
            item=ev.item,
            category=ev.category,
            domain=ev.domain,
            position=ev.position,
            ts=ev.ts,
            action=out.action,
            p_click=out.p_click,
            p_cvr=out.p_cvr,
            parts=parts.astype(np.float32),
            raw=raw,
            conv_rows=out.conv_rows,
            conv_past=out.conv_past,
            conv_latent=users.latent[local[out.conv_rows]],
        )

    def _retention_observable(
        self, user_bias: np.ndarray, latent: np.ndarray, item: np.ndarray, past_conv: np.ndarray
    ) -> np.ndarray:
        """Raw observable part ``O`` of the retention logit (before its gain), float64 ``[n]``:
        the app's retention quality, the user's propensity (age and own), their past conversions
        and their interest in the app."""
        affinity = np.einsum("nk,nk->n", latent, self.item_latent[item]) * math.sqrt(self.spec.latent_dim)
        return self.item_retention[item] + user_bias + 0.5 * np.log1p(past_conv) + 0.5 * affinity

    # -- calibration ------------------------------------------------------------------------------
    def _pilot_users(self) -> _Users:
        spec = self.spec
        n = spec.calibration_users
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_PILOT,)))
        age = rng.choice(NUM_AGES, size=n, p=_normalise(np.array([3, 6, 8, 7, 5, 4, 3, 2.0]))) + 1
        gender = rng.integers(1, NUM_GENDERS + 1, size=n)
        region = rng.choice(spec.num_regions, size=n, p=_zipf_weights(spec.num_regions, 1.0)) + 1
        return self._make_users(
            rng,
            np.zeros(n, np.int32),
            np.zeros(n, np.int32),
            np.full(n, spec.num_days + 1, np.int32),
            age,
            gender,
            region,
        )

    def _calibrate(self) -> None:
        """Set every gain so its component has the configured sd, and every bias for its base rate.

        Static components are measured on the pilot's exposures (which do not depend on the gains);
        the history sums depend on past clicks, so the pilot is re-run with the updated gains
        (:data:`_CALIBRATION_PASSES` times) and the biases are solved on the last pass.
        """
        spec, g = self.spec, self.gains
        tau = spec.temperature
        days = min(spec.num_days, spec.calibration_days)
        g.click_bias = _logit(spec.base_ctr)
        g.conv_bias = _logit(spec.base_cvr)
        for _ in range(_CALIBRATION_PASSES):
            pilot = self._simulate(self._pilot_users(), days, _STREAM_PILOT, 0, pilot=True)
            mature = [d for d in pilot if int(d.ts[0]) // DAY >= days // 2 and d.raw]  # histories built up
            raw = {key: np.concatenate([d.raw[key] for d in mature]) for key in _PILOT_KEYS}
            if raw["first"].size < 100:
                raise ValueError(
                    "synthetic world: the calibration pilot produced fewer than 100 exposures; raise "
                    "calibration_users or calibration_days"
                )
            g.click_first = _gain(spec.first_order_scale, raw["first"])
            g.click_cross = _gain(spec.cross_scale, raw["cross"])
            g.click_interest = _gain(spec.interest_scale, raw["interest"])
            g.click_novelty = _gain(spec.novelty_scale, raw["novelty"])
            g.click_hist_cat = _gain(spec.history_category_scale, raw["h_cat"])
            g.click_hist_item = _gain(spec.history_item_scale, raw["h_item"])
            static = (
                g.click_first * raw["first"]
                + g.click_cross * raw["cross"]
                + g.click_interest * raw["interest"]
                + g.click_novelty * raw["novelty"]
            )
            hist = saturate(
                g.click_hist_cat * raw["h_cat"] + g.click_hist_item * raw["h_item"], spec.history_cap
            )
            g.click_bias = _solve_bias(tau * (static + hist), spec.base_ctr, tau)
            clicked = raw["clicked"]
            if clicked.sum() < 20:
                raise ValueError(
                    "synthetic world: the calibration pilot produced fewer than 20 clicks; raise "
                    "calibration_users, calibration_days or base_ctr"
                )
            g.conv_first = _gain(spec.conversion_first_order_scale, raw["conv_first"][clicked])
            g.conv_interest = _gain(spec.conversion_interest_scale, raw["interest"][clicked])
            g.conv_hist = _gain(spec.conversion_history_scale, hist[clicked])
            conv = (
                g.conv_first * raw["conv_first"] + g.conv_interest * raw["interest"] + g.conv_hist * hist
            )[clicked]
            g.conv_bias = _solve_bias(tau * conv, spec.base_cvr, tau)
        # Retention: the observable part on the pilot's clicks (converting users are clicking users).
        obs = raw["ret_observable"][clicked]
        g.ret_observable = _gain(spec.retention_observable_scale, obs)
        centred = g.ret_observable * obs
        lo, hi = -30.0, 30.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            p = gaussian_expected_sigmoid(mid + centred, spec.retention_content_scale, tau).mean()
            lo, hi = (mid, hi) if p < spec.base_retention else (lo, mid)
        g.ret_bias = 0.5 * (lo + hi)

    # -- generation -------------------------------------------------------------------------------
    def generate_shard(self, shard: int) -> EventLog:
        """All exposures of the users of ``shard`` over all days, sorted by (user, time)."""
        spec = self.spec
        users = self._shard_users(shard)
        days = self._simulate(users, spec.num_days, _STREAM_DAYS, shard, pilot=False)
        if not days:
            return _empty_log(spec)
        n_local = users.gid.size
        local = np.concatenate([d.local for d in days])
        rank = np.concatenate([d.rank for d in days])
        counts = np.bincount(local, minlength=n_local)
        start = np.zeros(n_local, np.int64)
        np.cumsum(counts[:-1], out=start[1:])
        dest = start[local] + rank  # sorted position of each event (user, then time)
        perm = np.empty_like(dest)
        perm[dest] = np.arange(dest.size)

        def col(name: str, dtype: type) -> np.ndarray:
            return np.concatenate([getattr(d, name) for d in days])[perm].astype(dtype, copy=False)

        action = col("action", np.uint8)
        # Conversions, in sorted-exposure order; their onboarding and retention.
        conv_rows_day = np.concatenate([d.conv_rows + o for d, o in zip(days, _offsets(days))])
        conv_past = np.concatenate([d.conv_past for d in days])
        conv_latent = np.concatenate([d.conv_latent for d in days], axis=0)
        conv_sorted = dest[conv_rows_day]
        order = np.argsort(conv_sorted, kind="stable")
        conv_event = conv_sorted[order]
        item = col("item", np.int32)
        ts = col("ts", np.int64)
        user_gid = users.gid[local[perm]]
        log = EventLog(
            user=user_gid.astype(np.int32),
            item=item,
            category=col("category", np.int16),
            domain=col("domain", np.int8),
            position=col("position", np.int8),
            ts=ts,
            action=action,
            p_click=col("p_click", np.float32),
            p_cvr=col("p_cvr", np.float32),
            logit_parts=np.concatenate([d.parts for d in days])[perm],
            conversion=np.full(dest.size, -1, np.int32),
            conv_event=conv_event,
            p_retention=np.zeros(0, np.float32),
            p_retention_observable=np.zeros(0, np.float32),
            retained=np.zeros(0, np.uint8),
        )
        log.conversion[conv_event] = np.arange(conv_event.size, dtype=np.int32)
        self._retention(log, users, local[perm][conv_event], conv_latent[order], conv_past[order], shard)
        return log

    def _retention(
        self,
        log: EventLog,
        users: _Users,
        local: np.ndarray,
        latent: np.ndarray,
        past_conv: np.ndarray,
        shard: int,
    ) -> None:
        """Fill the retention columns and the onboarding content of ``log``'s conversions."""
        spec, g = self.spec, self.gains
        rows = log.conv_event
        n = rows.size
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(_STREAM_CONTENT, shard)))
        item = log.item[rows].astype(np.int64)
        observable = self._retention_observable(users.ret_bias[local], latent, item, past_conv)
        mean = g.ret_bias + g.ret_observable * observable  # [n]
        taste = self.item_latent[item] + latent  # [n, k]: the converting ad's and the user's latents
        rho, scale = spec.engagement_correlation, spec.retention_content_scale
        engagement = rng.standard_normal(n)  # ε ~ N(0, 1) when rho = 0 (the default)
        if rho > 0:
            # ε = ρ s + sqrt(1 - ρ²) ξ, s the standardised projection of the taste on a fixed
            # direction: observable before the conversion (the ad, the user's behaviour).
            signal = self.engagement_signal(taste)
            engagement = rho * signal + math.sqrt(1.0 - rho**2) * engagement
            mean_observable = mean + scale * rho * signal
        else:
            mean_observable = mean
        tau = spec.temperature
        p_true = sigmoid(tau * (mean + scale * engagement))
        log.p_retention = p_true.astype(np.float32)
        log.p_retention_observable = gaussian_expected_sigmoid(
            mean_observable, scale * math.sqrt(1.0 - rho**2), tau
        ).astype(np.float32)
        log.retained = (rng.random(n) < p_true).astype(np.uint8)
        log.onboarding = self.content.simulate(rng, log.domain[rows], taste, engagement, log.ts[rows])

    def engagement_signal(self, taste: np.ndarray) -> np.ndarray:
        """The observable part of onboarding engagement: ``taste`` ``[n, k]`` (the converting ad's
        latent + the user's latent at conversion) projected on a fixed unit direction and divided
        by the projection's standard deviation over the population (ads' latents + users' latents,
        which are independent), so ``s`` has about unit variance. float64 ``[n]``."""
        if self._engagement_direction is None:
            rng = np.random.default_rng(
                np.random.SeedSequence(self.spec.seed, spawn_key=(_STREAM_ENGAGEMENT,))
            )
            w = rng.standard_normal(self.spec.latent_dim)
            w /= np.linalg.norm(w)
            # user latents are N(0, I / latent_dim): their projection has variance 1 / latent_dim
            sd = math.sqrt(float((self.item_latent[1:] @ w).var()) + 1.0 / self.spec.latent_dim)
            self._engagement_direction = w / max(sd, 1e-12)
        return taste @ self._engagement_direction

    def generate(self, workers: int = 1, shards: Sequence[int] | None = None) -> Iterator[EventLog]:
        """Yield the :class:`EventLog` of each shard (all by default) in order.

        Args:
            workers: processes generating shards in parallel (forked, so the world is shared, not
                copied); 1 generates in this process. The output does not depend on it. At most
                ``2 · workers`` finished shards wait to be consumed, so memory is bounded by the
                shard size, not the world's.
            shards: which shards.
        """
        todo = list(range(self.spec.num_shards)) if shards is None else list(shards)
        if workers <= 1 or len(todo) <= 1 or "fork" not in mp.get_all_start_methods():
            for s in todo:
                yield self.generate_shard(s)
            return
        global _FORKED_WORLD
        _FORKED_WORLD = self
        try:
            ctx = mp.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                pending: deque[Future[EventLog]] = deque()
                it = iter(todo)
                for s in it:
                    pending.append(pool.submit(_generate_in_worker, s))
                    if len(pending) >= 2 * workers:
                        break
                while pending:
                    done = pending.popleft().result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.append(pool.submit(_generate_in_worker, nxt))
                    yield done
        finally:
            _FORKED_WORLD = None

    def generate_all(self, workers: int = 1) -> EventLog:
        """The whole world's log (all shards concatenated: sorted by user, then time)."""
        return EventLog.concat(list(self.generate(workers)))

    # -- explicit history sums --------------------------------------------------------------------
    def history_sums(
        self,
        hist_item: np.ndarray,
        hist_category: np.ndarray,
        hist_action: np.ndarray,
        hist_ts: np.ndarray,
        offsets: np.ndarray,
        item: np.ndarray,
        ts: np.ndarray,
        actions: tuple[int, ...] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The raw history sums ``H_cat`` and ``H_item`` of samples from an explicit history.

        The generator keeps these sums in a lazily-decayed state; this recomputes them from the
        events themselves, so a history truncated to its last K events gives the planted signal a
        model reading K events could recover.

        Args:
            hist_item, hist_category, hist_action, hist_ts: ``[N]`` events, packed per sample
                (oldest first, all strictly before the sample), as in ``Jagged``.
            offsets: int ``[B + 1]``.
            item, ts: ``[B]`` the samples' ads and times.
            actions: if given, only events whose action value is in it count (e.g. ``(7,)``:
                conversions only).
        Returns:
            ``(H_cat, H_item)``, float64 ``[B]`` each (multiply by the gains for logit terms).
        """
        b = offsets.size - 1
        lengths = np.diff(offsets)
        seg = np.repeat(np.arange(b), lengths)
        depth = (offsets[1:][seg] - 1 - np.arange(offsets[-1])).astype(np.float64)  # r_j, 0 = latest
        kernel = (self.alpha[None, :] * self.rho[None, :] ** depth[:, None]).sum(1)  # [N]
        dt = (ts[seg] - hist_ts) / DAY
        w = (
            self.action_weight[hist_action.astype(np.int64)]
            * kernel
            * np.exp(-dt / self.spec.history_decay_days)
        )
        if actions is not None:
            w = w * np.isin(hist_action, actions)
        cat = self.population.item_category[item].astype(np.int64)
        same = hist_category.astype(np.int64) == cat[seg]
        h_cat = np.bincount(seg, weights=w * same, minlength=b)
        sim = np.einsum("nk,nk->n", self.item_latent[hist_item], self.item_latent[item][seg])
        h_item = np.bincount(seg, weights=w * sim, minlength=b)
        return h_cat, h_item


_FORKED_WORLD: World | None = None


def _generate_in_worker(shard: int) -> EventLog:
    """Entry of a forked generation process: the parent's world is inherited, not pickled."""
    assert _FORKED_WORLD is not None
    return _FORKED_WORLD.generate_shard(shard)


def saturate(evidence: np.ndarray, cap: float) -> np.ndarray:
    """The history term of the logit from its linear evidence: ``cap · tanh(evidence / cap)``."""
    if cap <= 0:
        return np.zeros_like(evidence)
    return cap * np.tanh(evidence / cap)


def _offsets(days: list[_Day]) -> list[int]:
    out, acc = [], 0
    for d in days:
        out.append(acc)
        acc += d.local.size
    return out


def _empty_log(spec: WorldSpec) -> EventLog:
    z = np.zeros(0)
    return EventLog(
        user=z.astype(np.int32),
        item=z.astype(np.int32),
        category=z.astype(np.int16),
        domain=z.astype(np.int8),
        position=z.astype(np.int8),
        ts=z.astype(np.int64),
        action=z.astype(np.uint8),
        p_click=z.astype(np.float32),
        p_cvr=z.astype(np.float32),
        logit_parts=np.zeros((0, 3), np.float32),
        conversion=z.astype(np.int32),
        conv_event=z.astype(np.int64),
        p_retention=z.astype(np.float32),
        p_retention_observable=z.astype(np.float32),
        retained=z.astype(np.uint8),
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _gain(scale: float, raw: np.ndarray) -> float:
    """Gain that gives ``raw`` the standard deviation ``scale`` (0 when it is constant)."""
    sd = float(np.std(raw))
    return scale / sd if sd > 1e-12 else 0.0


def _solve_bias(z: np.ndarray, target: float, tau: float) -> float:
    """``b`` with ``mean(σ(τ b + z)) = target`` (bisection; monotone in ``b``)."""
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if sigmoid(tau * mid + z).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
