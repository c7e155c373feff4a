"""Simulation: users' days of exposures, clicks and conversions (:class:`Simulator`), and the
retention and onboarding content of each conversion (:class:`Retention`).

A set of users (a shard, or the calibration pilot) is simulated over all days at once, vectorised
over its users: a Python loop runs over days and over the position of an event within its user's
day, never over events. The history sums are kept as lazily-decayed per-(user, category, scale) and
per-(user, scale) states, so each event costs O(scales · latent_dim), whatever the history length.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from recsys_lab.data.synthetic.onboarding import ContentCatalogue, gaussian_expected_sigmoid, sigmoid
from recsys_lab.data.synthetic.world.calibration import Gains
from recsys_lab.data.synthetic.world.events import EXPOSURE_DTYPES, EventLog
from recsys_lab.data.synthetic.world.population import Effects, Population, Users, favorites
from recsys_lab.data.synthetic.world.spec import (
    CLICK,
    CONVERSION,
    DAY,
    EXPOSURE,
    LAZY_RANGE,
    STREAM_CONTENT,
    STREAM_DAYS,
    STREAM_ENGAGEMENT,
    WorldSpec,
)

_GUIDE_BITS = 16
_PROFILE_REFRESH_DAYS = 7
_LEVEL_ACTION = np.array([EXPOSURE, EXPOSURE | CLICK, EXPOSURE | CLICK | CONVERSION], np.uint8)


@dataclass(frozen=True)
class HistoryKernel:
    """The depth kernel ``κ(r) = Σ_m α_m ρ_m^r`` and the action weights ``w(a)`` of the history sums.

    ``rho``, ``alpha`` float64 ``[M]`` (``α_m ∝ (1 - ρ_m) d_m^γ``, ``κ(0) = 1``: scale m carries a
    share ∝ ``d_m^γ`` of the whole history's weight); ``rho_pow32`` / ``rho_inv_pow32`` float32
    ``[K + 1, M]`` (``ρ^s`` and ``ρ^-s`` for the positions s of a day); ``action_weight`` float64
    ``[8]`` indexed by the action bitmask; ``level_weight32`` float32 ``[3]`` by outcome level
    (exposure, click, conversion); ``log_rho_max`` the fastest growth of the lazy state.
    """

    rho: np.ndarray
    alpha: np.ndarray
    log_rho_max: float
    rho_pow32: np.ndarray
    rho_inv_pow32: np.ndarray
    action_weight: np.ndarray
    level_weight32: np.ndarray

    @staticmethod
    def of(spec: WorldSpec) -> HistoryKernel:
        rho = 1.0 - 1.0 / np.asarray(spec.history_depths)  # [M]
        alpha = (1.0 - rho) * np.asarray(spec.history_depths) ** spec.history_mass_exponent
        alpha /= alpha.sum()  # [M]
        steps = np.arange(spec.max_events_per_day + 1, dtype=np.float64)
        action_weight = np.zeros(8)
        w_exp, w_click, w_conv = spec.action_weights
        action_weight[EXPOSURE] = w_exp  # indexed by the action bitmask
        action_weight[EXPOSURE | CLICK] = w_click
        action_weight[EXPOSURE | CLICK | CONVERSION] = w_conv
        return HistoryKernel(
            rho=rho,
            alpha=alpha,
            log_rho_max=float((-np.log(rho)).max()),
            rho_pow32=(rho[None, :] ** steps[:, None]).astype(np.float32),  # [K + 1, M]
            rho_inv_pow32=(rho[None, :] ** -steps[:, None]).astype(np.float32),  # [K + 1, M]
            action_weight=action_weight,
            level_weight32=np.array([w_exp, w_click, w_conv], np.float32),
        )


class AdSampler:
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

    day: int
    local: np.ndarray  # int64 [E] user row
    rank: np.ndarray  # int64 [E] index of the event in its user's whole history
    columns: dict[str, np.ndarray]  # [E] each: the exposure columns of EXPOSURE_DTYPES
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
    def start(users: Users, spec: WorldSpec, scales: int) -> _ShardState:
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
class _Layout:
    """A day's events in step-major order: all users' 1st events, then the 2nd events of those
    with >= 2, ..., so the users of step s are the prefix ``act[:A_s]``."""

    act: np.ndarray  # int64 [A] today's users (local rows), by number of events, descending
    row: np.ndarray  # int64 [E] the event's user, as an index into act
    step: np.ndarray  # int64 [E] position of the event in its user's day
    starts: np.ndarray  # int64 [K + 1] first event of each step


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


class ExposureDrawer:
    """Draws a day's exposures: times, ads (targeted or by popularity), context, and the static
    (history-free) parts of the click and conversion logits."""

    def __init__(self, spec: WorldSpec, pop: Population, effects: Effects, gains: Gains) -> None:
        self.spec, self.pop, self.effects, self.gains = spec, pop, effects, gains
        self._samplers: dict[int, AdSampler] = {}
        self._lock = threading.Lock()

    def sampler(self, day: int) -> AdSampler:
        """The ad sampler of ``day`` (built once, thread-safe)."""
        s = self._samplers.get(day)
        if s is None:
            with self._lock:
                s = self._samplers.get(day)
                if s is None:
                    pop, items = self.pop, self.effects.by_category
                    alive = (pop.item_join[items] <= day) & (day < pop.item_leave[items])
                    weight = np.exp(self.effects.log_popularity[day, items].astype(np.float64)) * alive
                    s = AdSampler(items, weight, self.effects.category_start)
                    self._samplers[day] = s
        return s

    def draw(
        self, users: Users, st: _ShardState, lay: _Layout, day: int, rng: np.random.Generator
    ) -> _Exposures:
        """Times, ads and context of the day's exposures and their static logit parts."""
        spec, g, pop = self.spec, self.gains, self.pop
        act, row, step, starts = lay.act, lay.row, lay.step, lay.starts
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
        v32 = self.effects.item_latent32[item]  # [E, k]
        # Static components (raw, before gains); per-ad and per-(user, category) parts are tabulated.
        first = (
            users.click_first[local]
            + self.effects.item_static_first[item]
            + self.effects.position_first[position]
            + self.effects.hour_first[sec // 3600 + 1]
        )
        cross = users.category_cross[local, cat].astype(np.float64)  # attributes x category, user x domain
        interest = np.einsum("ek,ek->e", st.latent32[local], v32).astype(np.float64)
        age_days = (ts - pop.item_join[item].astype(np.int64) * DAY) * (1.0 / DAY)
        novelty = np.exp(age_days * (-1.0 / spec.novelty_days))
        conv_first = users.conv_bias[local] + self.effects.item_static_conv[item]
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


class HistoryOutcomes:
    """Clicks and conversions of a day's exposures, from the history sums of the lazy state (which
    each event then joins)."""

    def __init__(self, spec: WorldSpec, kernel: HistoryKernel, gains: Gains) -> None:
        self.spec, self.kernel, self.gains = spec, kernel, gains

    def reframe(self, st: _ShardState, act: np.ndarray, n_ev: np.ndarray, day: int) -> None:
        """The lazy state holds each sum in a per-user frame (event count, day start): move the
        users whose frame would leave float32's range today to a fresh one."""
        decay_t = self.spec.history_decay_days
        since = st.count[act] - st.ref_count[act]
        far = (since + n_ev) * self.kernel.log_rho_max + (day + 1 - st.ref_day[act]) / decay_t > LAZY_RANGE
        if far.any():
            mv = act[far]
            f = (
                self.kernel.rho[None, :] ** since[far][:, None]
                * np.exp(-(day - st.ref_day[mv]) / decay_t)[:, None]
            )
            st.cat[mv] *= f[:, None, :].astype(np.float32)
            st.item[mv] *= f[:, :, None].astype(np.float32)
            st.ref_count[mv] = st.count[mv]
            st.ref_day[mv] = day

    def draw(
        self, st: _ShardState, lay: _Layout, ev: _Exposures, rng: np.random.Generator, pilot: bool
    ) -> _Outcome:
        """Clicks and conversions: one vectorised step per position of an event in its user's day
        (step s's users are ``act[:A_s]``), each reading the history sums of the events before it
        and adding its own. Works on half-logits, ``σ(z) = (1 + tanh(z / 2)) / 2``."""
        spec, g = self.spec, self.gains
        act, row, starts = lay.act, lay.row, lay.starts
        e, a, m, c1 = row.size, act.size, self.kernel.rho.size, spec.num_categories + 1
        local = act[row]
        since = (st.count[act] - st.ref_count[act])[:, None]
        base = (self.kernel.alpha[None, :] * self.kernel.rho[None, :] ** since).astype(
            np.float32
        )  # [a, M] κ at step 0
        inv_base = (self.kernel.rho[None, :] ** -(since + 1.0)).astype(np.float32)  # [a, M] update at step 0
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
            q = base[:na] * self.kernel.rho_pow32[s]  # [A, M] kernel weights of the stored sums
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
            wgt = (self.kernel.level_weight32[lv] * inv_decay[lo:hi])[:, None] * (
                inv_base[:na] * self.kernel.rho_inv_pow32[s]
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


class Simulator:
    """Simulates a set of users over days with the world's parameters and its current ``gains``
    (which calibration updates in place)."""

    def __init__(
        self,
        spec: WorldSpec,
        pop: Population,
        effects: Effects,
        kernel: HistoryKernel,
        gains: Gains,
        retention: Retention,
    ) -> None:
        self.spec, self.pop, self.effects, self.kernel = spec, pop, effects, kernel
        self.gains, self.retention = gains, retention
        self.exposures = ExposureDrawer(spec, pop, effects, gains)
        self.outcomes = HistoryOutcomes(spec, kernel, gains)

    def simulate(self, users: Users, days: int, stream: int, key: int, pilot: bool) -> list[_Day]:
        """Simulate ``users`` over days ``0..days-1``; one :class:`_Day` per day with visitors.

        ``pilot`` records the raw (un-gained) components for calibration.
        """
        spec = self.spec
        st = _ShardState.start(users, spec, self.kernel.rho.size)
        users.favorites = favorites(self.spec, self.effects, users.latent, users.taste_noise)
        out: list[_Day] = []
        for day in range(days):
            rng = spec.rng(stream, key, day)
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
            lay = _Layout(act=act, row=row, step=step, starts=starts)
            ev = self.exposures.draw(users, st, lay, day, rng)
            self.outcomes.reframe(st, act, n_ev, day)
            outcome = self.outcomes.draw(st, lay, ev, rng, pilot)
            rank = st.count[act[row]] + step
            st.count[act] += n_ev
            out.append(self._day_result(day, users, act[row], rank, ev, outcome, pilot))
        return out

    def _drift(
        self, users: Users, st: _ShardState, act: np.ndarray, day: int, rng: np.random.Generator
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
            users.favorites[stale] = favorites(
                self.spec, self.effects, users.latent[stale], users.taste_noise[stale]
            )
            st.profile_day[stale] = day

    def _day_result(
        self,
        day: int,
        users: Users,
        local: np.ndarray,
        rank: np.ndarray,
        ev: _Exposures,
        out: _Outcome,
        pilot: bool,
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
                "ret_observable": self.retention.observable(
                    users.ret_bias[local], users.latent[local], ev.item, out.past_all
                ),
                "clicked": (out.action & CLICK) > 0,
            }
        return _Day(
            day=day,
            local=local,
            rank=rank,
            columns={
                "item": ev.item,
                "category": ev.category,
                "domain": ev.domain,
                "position": ev.position,
                "ts": ev.ts,
                "action": out.action,
                "p_click": out.p_click,
                "p_cvr": out.p_cvr,
            },
            parts=parts.astype(np.float32),
            raw=raw,
            conv_rows=out.conv_rows,
            conv_past=out.conv_past,
            conv_latent=users.latent[local[out.conv_rows]],
        )

    def shard_log(self, users: Users, shard: int) -> EventLog:
        """All exposures of ``users`` (the users of ``shard``) over all days, sorted by (user, time),
        with the retention and onboarding content of their conversions."""
        spec = self.spec
        days = self.simulate(users, spec.num_days, STREAM_DAYS, shard, pilot=False)
        if not days:
            return EventLog.empty()
        n_local = users.gid.size
        local = np.concatenate([d.local for d in days])
        rank = np.concatenate([d.rank for d in days])
        counts = np.bincount(local, minlength=n_local)
        start = np.zeros(n_local, np.int64)
        np.cumsum(counts[:-1], out=start[1:])
        dest = start[local] + rank  # sorted position of each event (user, then time)
        perm = np.empty_like(dest)
        perm[dest] = np.arange(dest.size)

        columns = {
            name: np.concatenate([d.columns[name] for d in days])[perm].astype(dtype, copy=False)
            for name, dtype in EXPOSURE_DTYPES.items()
        }
        # Conversions, in sorted-exposure order; their onboarding and retention.
        conv_rows_day = np.concatenate([d.conv_rows + o for d, o in zip(days, _offsets(days))])
        conv_past = np.concatenate([d.conv_past for d in days])
        conv_latent = np.concatenate([d.conv_latent for d in days], axis=0)
        conv_sorted = dest[conv_rows_day]
        order = np.argsort(conv_sorted, kind="stable")
        conv_event = conv_sorted[order]
        log = EventLog(
            user=users.gid[local[perm]].astype(np.int32),
            **columns,
            logit_parts=np.concatenate([d.parts for d in days])[perm],
            conversion=np.full(dest.size, -1, np.int32),
            conv_event=conv_event,
            p_retention=np.zeros(0, np.float32),
            p_retention_observable=np.zeros(0, np.float32),
            retained=np.zeros(0, np.uint8),
        )
        log.conversion[conv_event] = np.arange(conv_event.size, dtype=np.int32)
        self.retention.fill(log, users, local[perm][conv_event], conv_latent[order], conv_past[order], shard)
        return log


def _offsets(days: list[_Day]) -> list[int]:
    out, acc = [], 0
    for d in days:
        out.append(acc)
        acc += d.local.size
    return out


class Retention:
    """Retention and onboarding content of conversions: the observable part of the retention
    logit, the onboarding engagement (partly observable with ``engagement_correlation``), and the
    content consumed (:class:`~recsys_lab.data.synthetic.onboarding.ContentCatalogue`)."""

    def __init__(self, spec: WorldSpec, effects: Effects, gains: Gains, content: ContentCatalogue) -> None:
        self.spec, self.effects, self.gains, self.content = spec, effects, gains, content
        self._engagement_direction: np.ndarray | None = None  # see engagement_signal

    def observable(
        self, user_bias: np.ndarray, latent: np.ndarray, item: np.ndarray, past_conv: np.ndarray
    ) -> np.ndarray:
        """Raw observable part ``O`` of the retention logit (before its gain), float64 ``[n]``:
        the app's retention quality, the user's propensity (age and own), their past conversions
        and their interest in the app."""
        affinity = np.einsum("nk,nk->n", latent, self.effects.item_latent[item]) * math.sqrt(
            self.spec.latent_dim
        )
        return self.effects.item_retention[item] + user_bias + 0.5 * np.log1p(past_conv) + 0.5 * affinity

    def fill(
        self,
        log: EventLog,
        users: Users,
        local: np.ndarray,
        latent: np.ndarray,
        past_conv: np.ndarray,
        shard: int,
    ) -> None:
        """Fill the retention columns and the onboarding content of ``log``'s conversions."""
        spec, g = self.spec, self.gains
        rows = log.conv_event
        n = rows.size
        rng = spec.rng(STREAM_CONTENT, shard)
        item = log.item[rows].astype(np.int64)
        observable = self.observable(users.ret_bias[local], latent, item, past_conv)
        mean = g.ret_bias + g.ret_observable * observable  # [n]
        taste = self.effects.item_latent[item] + latent  # [n, k]: the converting ad's and the user's latents
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
            rng = self.spec.rng(STREAM_ENGAGEMENT)
            w = rng.standard_normal(self.spec.latent_dim)
            w /= np.linalg.norm(w)
            # user latents are N(0, I / latent_dim): their projection has variance 1 / latent_dim
            sd = math.sqrt(float((self.effects.item_latent[1:] @ w).var()) + 1.0 / self.spec.latent_dim)
            self._engagement_direction = w / max(sd, 1e-12)
        return taste @ self._engagement_direction
