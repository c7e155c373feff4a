"""The world's specification: every knob (:class:`WorldSpec`), the named presets
(:data:`WORLD_PRESETS`), the constants of the timeline and of the action bits, and the random
streams (each part of the world draws from its own ``SeedSequence(seed, spawn_key=(stream, ...))``,
so the output depends on the spec and nothing else).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

DAY = 86_400
"""Seconds per day: event ``ts`` is in seconds since the world's start; day ``d`` is
``[d · DAY, (d + 1) · DAY)``."""
EXPOSURE, CLICK, CONVERSION = 1, 2, 4
"""Action bits of ``EventLog.action`` and ``Jagged.actions``: a click is ``3``, a conversion ``7``."""
ACTION_NAMES = ("exposure", "click", "conversion")
NUM_AGES, NUM_GENDERS, NUM_HOURS = 8, 2, 24

# Random streams: the first element of a SeedSequence spawn key.
STREAM_MODEL, STREAM_POPULATION, STREAM_PILOT, STREAM_USERS, STREAM_DAYS, STREAM_CONTENT = range(6)
STREAM_ENGAGEMENT = 6  # the engagement direction (its own stream: the other draws do not move)
LAZY_RANGE = 80.0  # max log-magnitude of the (float32) lazy history state before renormalising


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
            growth < LAZY_RANGE,
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

    def rng(self, *key: int) -> np.random.Generator:
        """The random stream ``key`` (e.g. ``(STREAM_DAYS, shard, day)``) of this world's seed."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

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
