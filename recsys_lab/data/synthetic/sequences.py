"""Samples of the synthetic world as columns, and their ``Batch``es with jagged histories.

The world's :class:`~recsys_lab.data.synthetic.world.EventLog` is sorted by (user, time), so the
history of the exposure in log row ``r`` of user ``u`` is the row range
``[max(first[u], r - K), r)``: its ``K`` most recent earlier events. A batch's histories are cut
from that range with offsets and one gather per column — no Python lists, no padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys_lab.data.batch import Batch, Jagged
from recsys_lab.data.schema import Feature, FeatureKind, FeatureRole, Schema
from recsys_lab.data.synthetic.world import (
    ACTION_NAMES,
    CLICK,
    CONVERSION,
    DAY,
    NUM_AGES,
    NUM_GENDERS,
    EventLog,
    World,
    WorldSpec,
)

LABELS_EXPOSURES = ("click", "conversion")
LABELS_CONVERSIONS = ("click", "conversion", "retention")
ROWS = ("exposures", "conversions")
_TENURE_NORM = float(np.log1p(365.0))
_HISTORY_NORM = float(np.log1p(1000.0))


def history_index(first: np.ndarray, rows: np.ndarray, max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Log rows of the histories of the samples at log rows ``rows``.

    Args:
        first: int64 ``[n]`` first log row of each sample's user.
        rows: int64 ``[n]`` the samples' own log rows.
        max_len: keep the ``max_len`` most recent events (None = all).
    Returns:
        ``(offsets int64 [n + 1], hist_rows int64 [N])``, oldest first per sample.
    """
    start = first if max_len is None else np.maximum(first, rows - max_len)
    lengths = rows - start
    offsets = np.zeros(rows.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    hist_rows = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    return offsets, hist_rows


def world_schema(spec: WorldSpec, rows: str = "exposures") -> Schema:
    """The schema of the world's samples (see :class:`WorldSamples`)."""
    cat = FeatureKind.CATEGORICAL
    seq = FeatureKind.SEQUENCE
    features = (
        Feature("user", cat, spec.total_users + 1, FeatureRole.USER),
        Feature("user_age", cat, NUM_AGES + 1, FeatureRole.USER),
        Feature("user_gender", cat, NUM_GENDERS + 1, FeatureRole.USER),
        Feature("user_region", cat, spec.num_regions + 1, FeatureRole.USER),
        Feature("ad", cat, spec.total_items + 1, FeatureRole.ITEM),
        Feature("category", cat, spec.num_categories + 1, FeatureRole.ITEM),
        Feature("domain", cat, spec.num_domains + 1, FeatureRole.ITEM),
        Feature("position", cat, spec.num_positions + 1, FeatureRole.CONTEXT),
        Feature("hour", cat, 25, FeatureRole.CONTEXT),
        Feature("user_tenure", FeatureKind.NUMERIC),
        Feature("ad_age", FeatureKind.NUMERIC),
        Feature("history_length", FeatureKind.NUMERIC),
        Feature("hist_ad", seq, spec.total_items + 1),
        Feature("hist_category", seq, spec.num_categories + 1),
        Feature("hist_domain", seq, spec.num_domains + 1),
    )
    labels = LABELS_CONVERSIONS if rows == "conversions" else LABELS_EXPOSURES
    return Schema(features=features, labels=labels, action_names=ACTION_NAMES)


def onboarding_features(spec: WorldSpec) -> tuple[Feature, ...]:
    """Columns of ``Batch.privileged["onboarding"].values``: content id, theme, session (1-based)."""
    seq = FeatureKind.SEQUENCE
    return (
        Feature("onboarding_content", seq, spec.num_domains * spec.content_per_domain + 1),
        Feature("onboarding_theme", seq, spec.num_domains * spec.content_themes + 1),
        Feature("onboarding_session", seq, spec.max_sessions + 1),
    )


@dataclass
class _Columns:
    sparse: np.ndarray  # int32 [n, 9]
    dense: np.ndarray  # float32 [n, 3]
    labels: dict[str, np.ndarray]  # float32 [n]
    extras: dict[str, np.ndarray]  # [n]
    log_row: np.ndarray  # int64 [n]
    user_first: np.ndarray  # int64 [n]
    conversion: np.ndarray  # int64 [n], -1 if none


class WorldSamples:
    """Samples of the world in time order, as columns, with their day boundaries.

    Args:
        world, log: the world and its whole event log (sorted by user, then time).
        rows: ``exposures`` (every exposure is a sample) or ``conversions`` (only exposures that
            converted: the retention task).
        days: the days whose events are samples (earlier events appear only in histories).
        domains: keep only samples of these domains (1-based); histories keep every domain.
        max_history: the K most recent events per history; 0 = no history (``Batch.history``
            None); None = all.

    Per-sample columns (``Batch`` fields): ``sparse`` = user, user_age, user_gender, user_region,
    ad, category, domain, position, hour; ``dense`` = user_tenure, ad_age, history_length (each
    ``log1p`` of days or events, scaled to about [0, 1]); ``labels`` = click, conversion (clicked
    and converted), and retention for ``rows=conversions``; ``extras`` = ``true_prob`` (click),
    ``true_prob_conversion`` (click and conversion), ``true_prob_cvr`` (conversion given a click),
    ``timestamp`` (seconds), ``day``, and for ``rows=conversions`` ``true_prob_retention`` and
    ``observable_prob_retention`` (the best prediction without the onboarding content).
    """

    def __init__(
        self,
        world: World,
        log: EventLog,
        rows: str,
        days: range,
        domains: tuple[int, ...] | None,
        max_history: int | None,
    ) -> None:
        if rows not in ROWS:
            raise ValueError(f"synthetic world data: rows={rows!r} is unknown; use one of {list(ROWS)}")
        self.world, self.log, self.rows, self.max_history = world, log, rows, max_history
        pop = world.population
        day = log.ts // DAY
        if rows == "exposures":
            keep = (day >= days.start) & (day < days.stop)
        else:
            keep = np.zeros(len(log), bool)
            keep[log.conv_event] = True
            keep &= (day >= days.start) & (day < days.stop)
        if domains is not None:
            keep &= np.isin(log.domain, np.asarray(domains, dtype=np.int64))
        log_row = np.flatnonzero(keep)
        log_row = log_row[np.argsort(log.ts[log_row], kind="stable")]  # time order
        sample_day = day[log_row]
        self.days = days
        self.day_offsets = np.searchsorted(sample_day, np.arange(days.start, days.stop + 1))  # [n_days + 1]
        # First log row of every user (the log is sorted by user).
        user_first_all = np.searchsorted(log.user, np.arange(world.spec.total_users + 2, dtype=np.int32))
        user = log.user[log_row].astype(np.int64)
        item = log.item[log_row].astype(np.int64)
        ts = log.ts[log_row]
        first = user_first_all[user]
        sparse = np.stack(
            [
                user,
                pop.user_age[user],
                pop.user_gender[user],
                pop.user_region[user],
                item,
                log.category[log_row],
                log.domain[log_row],
                log.position[log_row],
                (ts % DAY) // 3600 + 1,
            ],
            axis=1,
        ).astype(np.int32)
        days_f = ts / DAY
        dense = np.stack(
            [
                np.log1p(np.maximum(days_f - pop.user_join[user], 0.0)) / _TENURE_NORM,
                np.log1p(np.maximum(days_f - pop.item_join[item], 0.0)) / _TENURE_NORM,
                np.log1p(log_row - first) / _HISTORY_NORM,
            ],
            axis=1,
        ).astype(np.float32)
        action = log.action[log_row]
        p_click = log.p_click[log_row]
        p_cvr = log.p_cvr[log_row]
        labels = {
            "click": ((action & CLICK) > 0).astype(np.float32),
            "conversion": ((action & CONVERSION) > 0).astype(np.float32),
        }
        extras: dict[str, np.ndarray] = {
            "true_prob": p_click,
            "true_prob_conversion": (p_click * p_cvr).astype(np.float32),
            "true_prob_cvr": p_cvr,
            "timestamp": ts,
            "day": sample_day,
        }
        conversion = log.conversion[log_row].astype(np.int64)
        if rows == "conversions":
            labels["retention"] = log.retained[conversion].astype(np.float32)
            extras["true_prob_retention"] = log.p_retention[conversion]
            extras["observable_prob_retention"] = log.p_retention_observable[conversion]
        self.columns = _Columns(sparse, dense, labels, extras, log_row, first, conversion)
        # History event columns of the whole log, packed once: [E, 3] item, category, domain.
        self._hist_values = np.stack([log.item, log.category, log.domain], axis=1).astype(np.int32)

    def __len__(self) -> int:
        return self.columns.log_row.size

    def day_range(self, day: int) -> tuple[int, int]:
        """Sample positions ``[lo, hi)`` of ``day``."""
        if not self.days.start <= day < self.days.stop:
            raise ValueError(
                f"synthetic world data: day={day} has no samples; sample days are "
                f"{self.days.start}..{self.days.stop - 1}"
            )
        i = day - self.days.start
        return int(self.day_offsets[i]), int(self.day_offsets[i + 1])

    def days_range(self, days: range) -> tuple[int, int]:
        """Sample positions ``[lo, hi)`` of the consecutive ``days``."""
        return self.day_range(days.start)[0], self.day_range(days.stop - 1)[1]

    def history(self, index: np.ndarray) -> Jagged | None:
        """The jagged histories of samples ``index`` (None when ``max_history == 0``)."""
        if self.max_history == 0:
            return None
        c, log = self.columns, self.log
        offsets, hist_rows = history_index(c.user_first[index], c.log_row[index], self.max_history)
        return Jagged(
            values=torch.from_numpy(self._hist_values[hist_rows]).long(),
            actions=torch.from_numpy(log.action[hist_rows].astype(np.int64)),
            timestamps=torch.from_numpy(log.ts[hist_rows]),
            offsets=torch.from_numpy(offsets),
        )

    def onboarding(self, index: np.ndarray) -> Jagged:
        """Onboarding content of samples ``index``; empty for samples without a conversion."""
        conv = self.columns.conversion[index]
        has = conv >= 0
        ob = self.log.onboarding
        lengths = np.zeros(index.size, np.int64)
        lengths[has] = np.diff(ob.offsets)[conv[has]]
        offsets = np.zeros(index.size + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        src = np.where(has, ob.offsets[:-1][np.maximum(conv, 0)], 0)
        rows = np.repeat(src - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        values = np.stack([ob.content[rows], ob.theme[rows], ob.session[rows]], axis=1).astype(np.int64)
        return Jagged(
            values=torch.from_numpy(values),
            actions=torch.zeros(rows.size, dtype=torch.long),
            timestamps=torch.from_numpy(ob.ts[rows]),
            offsets=torch.from_numpy(offsets),
        )

    def batch(self, index: np.ndarray, privileged: bool = False) -> Batch:
        """The :class:`Batch` of samples ``index`` (int ``[B]`` positions); ``privileged`` adds the
        onboarding content (training batches of a teacher only)."""
        c = self.columns
        sparse = torch.from_numpy(c.sparse[index]).long()
        return Batch(
            dense=torch.from_numpy(c.dense[index]),
            sparse=sparse,
            labels={k: torch.from_numpy(v[index]) for k, v in c.labels.items()},
            user=sparse[:, 0],
            history=self.history(index),
            privileged={"onboarding": self.onboarding(index)} if privileged else None,
            extras={k: torch.from_numpy(v[index]) for k, v in c.extras.items()},
        )
