"""Training-split packing: one sample per segment, or each user's training events tiled into segments.

``data.packing`` (datamodules with behaviour histories that support it: ``synthetic_seq``,
``movielens``):

- ``sample`` (default): every training sample is its own segment ``[sink, its K latest earlier
  events, candidate]``; one event is trained up to K times per epoch (in the overlapping windows
  of the samples after it) and a sample costs O(K) tokens.
- ``user``: each user's training events are tiled into non-overlapping segments. Walking back from
  the user's last training event, each segment is a candidate and the window of (at most) K events
  just before it; the next segment's candidate is the event just before that window (stride K + 1
  in the user's event order), so every training-day event is in exactly one segment, as a history
  token (scored by GRAB's every-event loss) or as the candidate. ``max_history: null`` gives one
  segment per user. Validation and test stay per sample, so metrics stay comparable.

Both datamodules describe a user's events as positions of one array sorted by (user, time), which
is what :func:`tile_user_events` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Packing = Literal["sample", "user"]
PACKINGS: tuple[str, ...] = get_args(Packing)


def check_packing(packing: str, where: str, supported: bool = True) -> str:
    """``packing`` if valid for ``where`` (a datamodule's name), else a ValueError saying what to do."""
    if packing not in PACKINGS:
        raise ValueError(f"{where}: data.packing={packing!r} is unknown; use one of {list(PACKINGS)}")
    if packing == "user" and not supported:
        raise ValueError(
            f"{where}: data.packing=user tiles each user's training events into segments, which needs an "
            "event log sorted by user and time; this datamodule has none. Use data=synthetic_seq or "
            "data=movielens, or data.packing=sample"
        )
    return packing


@dataclass(frozen=True)
class Tiling:
    """Segments of a tiling, sorted by user and time.

    Attributes:
        candidate: int64 ``[S]`` event position of each segment's candidate.
        start, end: int64 ``[S]``: the segment's history window is positions ``[start, end)``,
            oldest first; ``end`` is the first position of the candidate's tie group (the
            candidate itself without ties; see :func:`tile_user_events`).
    """

    candidate: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __len__(self) -> int:
        return int(self.candidate.size)

    def covered(self, num_positions: int) -> np.ndarray:
        """int64 ``[num_positions]``: how many segments hold each position (history or candidate)."""
        count = np.zeros(num_positions, np.int64)
        np.add.at(count, self.candidate, 1)
        lengths = self.end - self.start
        rows = np.repeat(self.start - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        np.add.at(count, rows, 1)
        return count


def tile_user_events(
    hist_first: np.ndarray,
    train_lo: np.ndarray,
    train_hi: np.ndarray,
    max_history: int | None,
    tie_first: np.ndarray | None = None,
) -> Tiling:
    """Tile each user's training events ``[train_lo, train_hi)`` into non-overlapping segments.

    Positions index one event array sorted by (user, time). For user u, events
    ``[hist_first[u], train_lo[u])`` may only appear in history windows (e.g. warm-up days).
    Walking back from ``train_hi[u] - 1``: a segment's candidate c takes the window
    ``[max(hist_first, c - K), c)`` and the next candidate is the event just before the window
    (stride K + 1), until a window reaches ``train_lo``. ``K = max_history`` (None: one segment
    per user with every earlier event).

    **Timestamp ties** (``tie_first``: int64 ``[n]``, the first position of each position's group
    of same-user, same-time events; None = histories by position, no ties). A history holds only
    strictly earlier events, so a candidate is always the first event of its tie group and its
    tie-mates join the window of the segment after it (they are strictly earlier than that
    candidate). Where the event before a window is not the first of its group, the window is
    shortened to start after the next group boundary; where the group just before a candidate is
    longer than K, the window takes its latest K events and the group's other events (all tie-mates
    of its first, the next candidate) get segments with an empty window. The tie-mates of the user's
    *last* training event (no later candidate can hold them) become candidates of segments with an
    empty window. So the tiling stays exact: every training event is in exactly one segment.

    Args:
        hist_first, train_lo, train_hi: int64 ``[U]`` per user.
        max_history: K (None = unbounded).
        tie_first: int64 ``[n]`` non-decreasing, or None.
    Returns:
        the segments (:class:`Tiling`), sorted by user and time.
    """
    if max_history is not None and max_history < 0:
        raise ValueError(f"data.max_history must be >= 0 or null for data.packing=user, got {max_history}")
    if tie_first is None:
        return _tile_without_ties(hist_first, train_lo, train_hi, max_history)
    cand: list[int] = []
    start: list[int] = []
    end: list[int] = []
    for h0, lo, hi in zip(hist_first.tolist(), train_lo.tolist(), train_hi.tolist()):
        if hi <= lo:
            continue
        user_cand, user_start, user_end = [], [], []
        last = hi - 1
        c = int(tie_first[last])
        if c < lo:
            raise ValueError(
                f"data.packing=user: the training events of a user start inside a timestamp tie group "
                f"(position {lo}); the split must not cut a group of same-time events"
            )
        for t in range(last, c, -1):  # tie-mates of the last candidate: segments of their own
            user_cand.append(t)
            user_start.append(c)
            user_end.append(c)
        while True:
            w = h0 if max_history is None else max(h0, c - max_history)
            if w <= lo:
                user_cand.append(c)
                user_start.append(w)
                user_end.append(c)
                break
            p = w - 1  # the next candidate: the first group start at or after w - 1, before c
            if tie_first[p] != p:
                p = int(np.searchsorted(tie_first, tie_first[p], side="right"))
            if p >= c:
                # The tie group before c is longer than the window: the window takes its latest K
                # events; the others (tie-mates of its first event) get segments of their own.
                p = int(tie_first[c - 1])
                user_cand.append(c)
                user_start.append(w)
                user_end.append(c)
                for t in range(w - 1, p, -1):
                    user_cand.append(t)
                    user_start.append(p)
                    user_end.append(p)
            else:
                user_cand.append(c)
                user_start.append(p + 1)
                user_end.append(c)
            if p < lo:
                raise ValueError(
                    f"data.packing=user: the training events of a user start inside a timestamp tie group "
                    f"(position {lo}); the split must not cut a group of same-time events"
                )
            c = p
        cand.extend(reversed(user_cand))
        start.extend(reversed(user_start))
        end.extend(reversed(user_end))
    as_array = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return Tiling(as_array(cand), as_array(start), as_array(end))


def _tile_without_ties(
    hist_first: np.ndarray, train_lo: np.ndarray, train_hi: np.ndarray, max_history: int | None
) -> Tiling:
    """:func:`tile_user_events` without ties, vectorised: candidates ``train_hi - 1 - j·(K + 1)``."""
    has = train_hi > train_lo
    h0, lo, hi = hist_first[has], train_lo[has], train_hi[has]
    if max_history is None:
        count = np.ones(lo.size, np.int64)
    else:
        count = -(-(hi - lo) // (max_history + 1))  # ceil: segments per user
    user = np.repeat(np.arange(lo.size), count)
    j = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)  # [S] 0 = the last segment
    if max_history is None:
        cand = hi - 1
        start = h0.copy()
    else:
        cand = hi[user] - 1 - j * (max_history + 1)
        start = np.maximum(h0[user], cand - max_history)
    # sort by user, then time (j runs backwards in time)
    order = np.lexsort((-j, user)) if max_history is not None else np.arange(cand.size)
    cand, start = cand[order].astype(np.int64), start[order].astype(np.int64)
    return Tiling(cand, start, cand.copy())
