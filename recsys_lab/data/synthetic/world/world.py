"""The :class:`World`: a :class:`~.spec.WorldSpec` made into a population, planted parameters and
calibrated gains, and generated shard by shard (see the package docstring for the planted model)."""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from recsys_lab.data.synthetic.onboarding import ContentCatalogue
from recsys_lab.data.synthetic.world.calibration import Gains, calibrate
from recsys_lab.data.synthetic.world.events import EventLog
from recsys_lab.data.synthetic.world.population import Effects, Population, Users, shard_ids
from recsys_lab.data.synthetic.world.simulation import AdSampler, HistoryKernel, Retention, Simulator
from recsys_lab.data.synthetic.world.spec import DAY, STREAM_CONTENT, WorldSpec


class World:
    """A synthetic world built from a :class:`WorldSpec`: entities, planted model, calibrated gains.

    Parts: ``population`` (:class:`Population`: who exists when, attributes), ``effects``
    (:class:`Effects`: the planted parameters), ``kernel`` (:class:`HistoryKernel`), ``content``
    (the onboarding catalogue), ``gains`` (:class:`Gains`, calibrated at construction) and the
    ``simulator`` that generates shards with them.

    Use :meth:`generate` (all shards, streamed) or :meth:`generate_shard`; :meth:`history_sums`
    recomputes the planted history sums from an explicit (possibly truncated) history.
    """

    def __init__(self, spec: WorldSpec) -> None:
        self.spec = spec
        self.population = Population.draw(spec)
        self.effects = Effects.draw(spec, self.population)
        self.kernel = HistoryKernel.of(spec)
        self.content = ContentCatalogue(
            num_domains=spec.num_domains,
            content_per_domain=spec.content_per_domain,
            content_themes=spec.content_themes,
            latent_dim=spec.latent_dim,
            max_sessions=spec.max_sessions,
            max_session_items=spec.max_session_items,
            content_tilt=spec.content_tilt,
            retention_days=spec.retention_days,
            rng=spec.rng(STREAM_CONTENT),
        )
        self.gains = Gains()
        self.retention = Retention(spec, self.effects, self.gains, self.content)
        self.simulator = Simulator(
            spec, self.population, self.effects, self.kernel, self.gains, self.retention
        )
        calibrate(self.simulator)

    # The planted parameters most often read (kept on the world for its users).
    @property
    def item_latent(self) -> np.ndarray:
        """float64 ``[I + 1, k]``: every ad's latent vector (row 0 padding)."""
        return self.effects.item_latent

    @property
    def log_popularity(self) -> np.ndarray:
        """float32 ``[days, I + 1]``: every ad's log-popularity on every day."""
        return self.effects.log_popularity

    def sampler(self, day: int) -> AdSampler:
        """The ad sampler of ``day`` (built once, thread-safe)."""
        return self.simulator.exposures.sampler(day)

    def shard_users(self, shard: int) -> np.ndarray:
        """Global ids (int32) of the users of ``shard``."""
        return shard_ids(self.spec, shard)

    def generate_shard(self, shard: int) -> EventLog:
        """All exposures of the users of ``shard`` over all days, sorted by (user, time)."""
        users = Users.of_shard(self.spec, self.effects, self.population, shard)
        return self.simulator.shard_log(users, shard)

    def engagement_signal(self, taste: np.ndarray) -> np.ndarray:
        """The observable part of onboarding engagement (:meth:`Retention.engagement_signal`)."""
        return self.retention.engagement_signal(taste)

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
        kernel = (self.kernel.alpha[None, :] * self.kernel.rho[None, :] ** depth[:, None]).sum(1)  # [N]
        dt = (ts[seg] - hist_ts) / DAY
        w = (
            self.kernel.action_weight[hist_action.astype(np.int64)]
            * kernel
            * np.exp(-dt / self.spec.history_decay_days)
        )
        if actions is not None:
            w = w * np.isin(hist_action, actions)
        cat = self.population.item_category[item].astype(np.int64)
        same = hist_category.astype(np.int64) == cat[seg]
        h_cat = np.bincount(seg, weights=w * same, minlength=b)
        sim = np.einsum("nk,nk->n", self.effects.item_latent[hist_item], self.effects.item_latent[item][seg])
        h_item = np.bincount(seg, weights=w * sim, minlength=b)
        return h_cat, h_item


_FORKED_WORLD: World | None = None


def _generate_in_worker(shard: int) -> EventLog:
    """Entry of a forked generation process: the parent's world is inherited, not pickled."""
    assert _FORKED_WORLD is not None
    return _FORKED_WORLD.generate_shard(shard)
