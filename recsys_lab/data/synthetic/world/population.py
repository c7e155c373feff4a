"""The world's population: who exists when (:class:`Population`), the planted parameters of ads,
categories, domains and user attributes (:class:`Effects`), and the users simulated together
(:class:`Users`, a shard or the calibration pilot) with their targeting profile.

Every field is indexed by a global id with row 0 as padding (id 0 = missing), so the vocabulary
of a field is its number of values + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recsys_lab.data.synthetic.world.spec import (
    NUM_AGES,
    NUM_GENDERS,
    NUM_HOURS,
    STREAM_MODEL,
    STREAM_POPULATION,
    STREAM_USERS,
    WorldSpec,
)

_CROSS_RANK = 4
_MAX_AGE_DAYS = 365
_AGE_SHARE = np.array([3, 6, 8, 7, 5, 4, 3, 2.0])  # relative share of each age bucket


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

    @staticmethod
    def draw(spec: WorldSpec) -> Population:
        """The population of ``spec`` (its own random stream)."""
        rng = spec.rng(STREAM_POPULATION)
        user_join, user_leave = _presence(
            rng, spec, spec.num_users, spec.new_users_per_day, spec.user_churn_rate
        )
        ages, genders, regions = user_attributes(rng, spec.total_users, spec.num_regions)
        item_join, item_leave = _presence(
            rng, spec, spec.num_items, spec.new_items_per_day, spec.item_churn_rate
        )
        ni = spec.total_items
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


def user_attributes(rng: np.random.Generator, n: int, num_regions: int) -> tuple[np.ndarray, ...]:
    """Age (1..8), gender (1..2) and region (1..num_regions, Zipf) of ``n`` users, int64 ``[n]`` each."""
    ages = rng.choice(NUM_AGES, size=n, p=_AGE_SHARE / _AGE_SHARE.sum()) + 1
    genders = rng.integers(1, NUM_GENDERS + 1, size=n)
    regions = rng.choice(num_regions, size=n, p=_zipf_weights(num_regions, 1.0)) + 1
    return ages, genders, regions


def _presence(
    rng: np.random.Generator, spec: WorldSpec, initial: int, per_day: int, churn: float
) -> tuple[np.ndarray, np.ndarray]:
    """Join and leave days (int32 ``[N + 1]``, row 0 padding) of ``initial`` entities present at
    day 0 and ``per_day`` joining on each later day. Those present at day 0 joined before it; the
    remaining lifetime of every entity is Geometric(churn)."""
    horizon = spec.num_days + 1
    total = initial + per_day * (spec.num_days - 1)
    join = np.zeros(total + 1, np.int32)
    join[1 : initial + 1] = _joined_before(rng, initial, churn)
    join[initial + 1 :] = np.repeat(np.arange(1, spec.num_days), per_day)
    leave = np.zeros(total + 1, np.int32)
    start = np.maximum(join[1:], 0)
    leave[1:] = np.minimum(start + _lifetimes(rng, total, churn, horizon), horizon)
    return join, leave


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


@dataclass
class Effects:
    """The planted parameters (one random stream), indexed by global id, row 0 padding.

    Ads (``I = total_items``): ``item_latent`` float64 ``[I + 1, k]`` (around its category's
    ``category_centroid`` ``[C + 1, k]``), first-order effects ``item_first``, ``category_first``,
    ``domain_first``, ``position_first``, ``hour_first``; conversion effects ``item_conv``,
    ``domain_conv``; retention quality ``item_retention``; ``log_popularity`` float32
    ``[days, I + 1]`` (a Zipf base plus a daily random walk). User attributes: ``age_first``,
    ``gender_first``, ``region_first``, ``age_retention``; rank-R attribute x category crosses
    ``cross_age`` ``[V_a, R]``, ``cross_gender``, ``cross_region`` against ``cross_category``
    ``[C + 1, 3R]``. Tabulated: ``item_static_first`` / ``item_static_conv`` ``[I + 1]`` (ad +
    its category + its domain), ``item_latent32``, and the ads sorted by category
    (``by_category`` ``[I]``, ``category_start`` ``[C + 2]``; category 0 is empty).
    """

    category_centroid: np.ndarray
    item_latent: np.ndarray
    item_first: np.ndarray
    category_first: np.ndarray
    domain_first: np.ndarray
    position_first: np.ndarray
    hour_first: np.ndarray
    age_first: np.ndarray
    gender_first: np.ndarray
    region_first: np.ndarray
    cross_age: np.ndarray
    cross_gender: np.ndarray
    cross_region: np.ndarray
    cross_category: np.ndarray
    item_conv: np.ndarray
    domain_conv: np.ndarray
    item_retention: np.ndarray
    age_retention: np.ndarray
    log_popularity: np.ndarray
    item_static_first: np.ndarray
    item_static_conv: np.ndarray
    item_latent32: np.ndarray
    by_category: np.ndarray
    category_start: np.ndarray

    @staticmethod
    def draw(spec: WorldSpec, pop: Population) -> Effects:
        """The planted parameters of ``spec`` over ``pop`` (the order of the draws is the data)."""
        rng = spec.rng(STREAM_MODEL)
        k, c, d, ni = spec.latent_dim, spec.num_categories, spec.num_domains, spec.total_items
        # Ads: latent vectors around their category's centroid; effects.
        centroid = rng.standard_normal((c + 1, k)) / math.sqrt(k)
        item_latent = 0.8 * centroid[pop.item_category] + 0.6 * rng.standard_normal((ni + 1, k)) / math.sqrt(
            k
        )
        item_latent[0] = 0.0
        item_first = rng.standard_normal(ni + 1)
        category_first = 0.7 * rng.standard_normal(c + 1)
        domain_first = 0.7 * rng.standard_normal(d + 1)
        position_first = np.concatenate([[0.0], -0.35 * np.log(np.arange(1, spec.num_positions + 1))])
        phase = rng.uniform(0, 2 * math.pi)
        hour_first = np.concatenate([[0.0], 0.3 * np.sin(2 * math.pi * np.arange(NUM_HOURS) / 24 + phase)])
        age_first = 0.5 * rng.standard_normal(NUM_AGES + 1)
        gender_first = 0.3 * rng.standard_normal(NUM_GENDERS + 1)
        region_first = 0.5 * rng.standard_normal(spec.num_regions + 1)
        # Attribute x category crosses, rank R each: user side [V_a, R], category side [C + 1, R].
        r = _CROSS_RANK
        cross_age = rng.standard_normal((NUM_AGES + 1, r))
        cross_gender = rng.standard_normal((NUM_GENDERS + 1, r))
        cross_region = rng.standard_normal((spec.num_regions + 1, r))
        cross_category = rng.standard_normal((c + 1, 3 * r)) / math.sqrt(3 * r)
        # Conversion and retention effects
        item_conv = rng.standard_normal(ni + 1)
        domain_conv = 0.5 * rng.standard_normal(d + 1)
        item_retention = rng.standard_normal(ni + 1)
        age_retention = 0.5 * rng.standard_normal(NUM_AGES + 1)
        # Popularity: Zipf base over a random rank order, plus a daily random walk. [days, I + 1]
        base = -spec.popularity_skew * np.log(rng.permutation(ni) + 1.0)
        steps = rng.standard_normal((spec.num_days, ni)) * spec.popularity_drift
        steps[0] = 0.0
        log_popularity = np.zeros((spec.num_days, ni + 1), np.float32)
        log_popularity[:, 1:] = base[None, :] + np.cumsum(steps, 0)
        counts = np.bincount(pop.item_category[1:], minlength=c + 1)  # [C + 1]
        return Effects(
            category_centroid=centroid,
            item_latent=item_latent,
            item_first=item_first,
            category_first=category_first,
            domain_first=domain_first,
            position_first=position_first,
            hour_first=hour_first,
            age_first=age_first,
            gender_first=gender_first,
            region_first=region_first,
            cross_age=cross_age,
            cross_gender=cross_gender,
            cross_region=cross_region,
            cross_category=cross_category,
            item_conv=item_conv,
            domain_conv=domain_conv,
            item_retention=item_retention,
            age_retention=age_retention,
            log_popularity=log_popularity,
            # Per-ad sums of the first-order terms (ad, its category, its domain), tabulated.
            item_static_first=item_first + category_first[pop.item_category] + domain_first[pop.item_domain],
            item_static_conv=item_conv + domain_conv[pop.item_domain],
            item_latent32=item_latent.astype(np.float32),
            by_category=(np.argsort(pop.item_category[1:], kind="stable") + 1).astype(np.int32),
            category_start=np.concatenate([[0], np.cumsum(counts)]),
        )


@dataclass
class Users:
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

    @staticmethod
    def draw(
        spec: WorldSpec,
        effects: Effects,
        category_domain: np.ndarray,
        rng: np.random.Generator,
        gid: np.ndarray,
        join: np.ndarray,
        leave: np.ndarray,
        age: np.ndarray,
        gender: np.ndarray,
        region: np.ndarray,
    ) -> Users:
        """Users ``gid`` (``[n]`` each: ids, presence, attributes) with their own draws from ``rng``."""
        n, k = gid.size, spec.latent_dim
        latent = rng.standard_normal((n, k)) / math.sqrt(k)
        s = spec.activity_sigma
        activity = spec.events_per_visit * np.exp(s * rng.standard_normal(n) - s * s / 2)
        first = (
            rng.standard_normal(n)
            + effects.age_first[age]
            + effects.gender_first[gender]
            + effects.region_first[region]
        )
        cross = np.concatenate(
            [effects.cross_age[age], effects.cross_gender[gender], effects.cross_region[region]], axis=1
        )  # [n, 3R]
        domain_bias = 0.7 * rng.standard_normal((n, spec.num_domains + 1))
        conv_bias = rng.standard_normal(n)
        taste_noise = rng.gumbel(size=(n, spec.num_categories))
        ret_bias = effects.age_retention[age] + 0.5 * rng.standard_normal(n)
        return Users(
            gid=gid,
            join=join.astype(np.int32),
            leave=leave.astype(np.int32),
            age=age.astype(np.int64),
            latent=latent,
            activity=activity,
            click_first=first,
            category_cross=(cross @ effects.cross_category.T + domain_bias[:, category_domain]).astype(
                np.float32
            ),
            conv_bias=conv_bias,
            favorites=np.zeros((n, spec.favorite_categories), np.int16),
            taste_noise=taste_noise,
            ret_bias=ret_bias,
        )

    @staticmethod
    def of_shard(spec: WorldSpec, effects: Effects, pop: Population, shard: int) -> Users:
        """The users of ``shard`` (their own random stream)."""
        gid = shard_ids(spec, shard)
        return Users.draw(
            spec,
            effects,
            pop.category_domain,
            spec.rng(STREAM_USERS, shard),
            gid,
            pop.user_join[gid],
            pop.user_leave[gid],
            pop.user_age[gid].astype(np.int64),
            pop.user_gender[gid].astype(np.int64),
            pop.user_region[gid].astype(np.int64),
        )


def shard_ids(spec: WorldSpec, shard: int) -> np.ndarray:
    """Global ids (int32) of the users of ``shard``."""
    if not 0 <= shard < spec.num_shards:
        raise ValueError(f"synthetic world: shard={shard} is out of range [0, {spec.num_shards})")
    lo = shard * spec.users_per_shard + 1
    return np.arange(lo, min(lo + spec.users_per_shard, spec.total_users + 1), dtype=np.int32)


def favorites(spec: WorldSpec, effects: Effects, latent: np.ndarray, taste_noise: np.ndarray) -> np.ndarray:
    """The targeting profile: top-F categories of ``3 √k ⟨u, μ_c⟩ + γ_uc`` (γ a fixed per-user
    Gumbel taste), int16 ``[n, F]``. Recomputed whenever interests drift."""
    f, c = spec.favorite_categories, spec.num_categories
    if f >= c:
        return np.tile(np.arange(1, c + 1, dtype=np.int16), (latent.shape[0], 1))
    score = 3.0 * math.sqrt(spec.latent_dim) * (latent @ effects.category_centroid[1:].T) + taste_noise
    return (np.argpartition(-score, f - 1, axis=1)[:, :f] + 1).astype(np.int16)
