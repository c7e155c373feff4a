"""The world's output: :class:`EventLog`, one shard's (or the whole world's) exposures sorted by
(user, time) with their outcomes and true probabilities, and the conversions' retention and
onboarding content."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys_lab.data.synthetic.onboarding import Onboarding
from recsys_lab.data.synthetic.world.spec import DAY

EXPOSURE_DTYPES = {
    "item": np.int32,
    "category": np.int16,
    "domain": np.int8,
    "position": np.int8,
    "ts": np.int64,
    "action": np.uint8,
    "p_click": np.float32,
    "p_cvr": np.float32,
}
"""The per-exposure columns a simulated day produces, with their dtypes in the log."""


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

    @staticmethod
    def empty() -> EventLog:
        """A log without exposures (a shard whose users never visit)."""
        dtypes = {
            "user": np.int32,
            **EXPOSURE_DTYPES,
            "conversion": np.int32,
            "conv_event": np.int64,
            "p_retention": np.float32,
            "p_retention_observable": np.float32,
            "retained": np.uint8,
        }
        return EventLog(
            **{c: np.zeros(0, t) for c, t in dtypes.items()}, logit_parts=np.zeros((0, 3), np.float32)
        )
