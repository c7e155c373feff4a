"""The one batch type every model receives, and the jagged behaviour-sequence container.

``Batch`` fields (B = batch size):

=============  ==============================  =================================================
field          type                            meaning
=============  ==============================  =================================================
dense          float32 ``[B, D]``              numeric features (D may be 0)
sparse         int64 ``[B, F]``                one field-local id per categorical field, 0 = OOV
labels         dict name -> float32 ``[B]``    ``click`` always; more when the data has them
user           int64 ``[B]`` or None           group id for GAUC
history        :class:`Jagged` or None         behaviour events per sample, packed, no padding
multi          int64 ``[B, M, L]`` or None     ids of the M multi-valued fields, -1 = padding
privileged     dict or None                    training-only signals; never given to serving
teacher        dict name -> float32 ``[B]``    logged teacher predictions (distillation data)
=============  ==============================  =================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor


def _to(x: Any, device: torch.device | str, non_blocking: bool) -> Any:
    """Move a tensor, a Jagged, or a (nested) dict of them to ``device``."""
    if x is None:
        return None
    if isinstance(x, Tensor | Jagged):
        return x.to(device, non_blocking=non_blocking)
    if isinstance(x, Mapping):
        return {k: _to(v, device, non_blocking) for k, v in x.items()}
    return x


@dataclass
class Jagged:
    """Behaviour events of B samples packed into N rows without padding.

    Attributes:
        values: int64 ``[N, E]`` event columns (item, category, ...), schema order.
        actions: int64 ``[N]`` bitmask of action types (bit k = the schema's k-th action name).
        timestamps: int64 ``[N]`` event times.
        offsets: int64 ``[B + 1]``; sample b owns rows ``offsets[b]:offsets[b+1]``, oldest first.
    """

    values: Tensor
    actions: Tensor
    timestamps: Tensor
    offsets: Tensor

    def __post_init__(self) -> None:
        if self.values.dim() != 2:
            raise ValueError(f"Jagged.values must be [N, E], got shape {tuple(self.values.shape)}")
        n = self.values.shape[0]
        if self.actions.shape != (n,) or self.timestamps.shape != (n,):
            raise ValueError(
                f"Jagged.actions and .timestamps must be [N]={n}, got "
                f"{tuple(self.actions.shape)} and {tuple(self.timestamps.shape)}"
            )
        if self.offsets.dim() != 1 or self.offsets.numel() < 1:
            raise ValueError("Jagged.offsets must be a non-empty 1-D tensor [B + 1]")

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_events(self) -> int:
        return self.values.shape[0]

    def lengths(self) -> Tensor:
        """int64 ``[B]`` events per sample."""
        return self.offsets[1:] - self.offsets[:-1]

    def segment_ids(self) -> Tensor:
        """int64 ``[N]``: the sample each event row belongs to."""
        return torch.repeat_interleave(
            torch.arange(self.batch_size, device=self.offsets.device), self.lengths()
        )

    def validate(self) -> None:
        """Raise ValueError unless offsets are monotone, start at 0 and end at N."""
        if int(self.offsets[0]) != 0 or int(self.offsets[-1]) != self.num_events:
            raise ValueError(
                f"Jagged.offsets must start at 0 and end at N={self.num_events}, got "
                f"{int(self.offsets[0])}..{int(self.offsets[-1])}"
            )
        if bool((self.lengths() < 0).any()):
            raise ValueError("Jagged.offsets must be non-decreasing")

    # -- conversions ---------------------------------------------------------------------------
    def to(self, device: torch.device | str, non_blocking: bool = False) -> Jagged:
        return Jagged(*(t.to(device, non_blocking=non_blocking) for t in self._tensors()))

    def pin_memory(self) -> Jagged:
        return Jagged(*(t.pin_memory() for t in self._tensors()))

    def _tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.values, self.actions, self.timestamps, self.offsets

    def to_padded(self, max_len: int | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pad to ``[B, L, ...]``, right-padded, keeping each sample's most recent ``L`` events.

        Returns ``(values [B, L, E], actions [B, L], timestamps [B, L], mask [B, L] bool)``;
        padded positions hold 0 and ``mask`` False. ``L = max_len`` or the longest sample.
        """
        lengths = self.lengths()
        b = self.batch_size
        longest = int(lengths.max()) if b > 0 and self.num_events > 0 else 0
        length = longest if max_len is None else max_len
        kept = lengths.clamp(max=length)  # [B]
        dev = self.values.device
        pos = torch.arange(length, device=dev)  # [L]
        mask = pos[None, :] < kept[:, None]  # [B, L]
        # Row of event (b, j): the last `kept[b]` events of sample b, oldest first.
        src = self.offsets[1:, None] - kept[:, None] + pos[None, :]  # [B, L]
        src = torch.where(mask, src, torch.zeros_like(src))
        e = self.values.shape[1]
        if self.num_events == 0:
            values = torch.zeros(b, length, e, dtype=self.values.dtype, device=dev)
            zeros = torch.zeros(b, length, dtype=torch.long, device=dev)
            return values, zeros, zeros.clone(), mask
        values = self.values[src] * mask[..., None]  # [B, L, E]
        actions = self.actions[src] * mask
        timestamps = self.timestamps[src] * mask
        return values, actions, timestamps, mask

    @classmethod
    def from_padded(cls, values: Tensor, actions: Tensor, timestamps: Tensor, mask: Tensor) -> Jagged:
        """Inverse of :meth:`to_padded` for right-padded input (``mask`` a prefix per row)."""
        lengths = mask.sum(1)  # [B]
        offsets = torch.zeros(values.shape[0] + 1, dtype=torch.long, device=values.device)
        offsets[1:] = torch.cumsum(lengths, 0)
        return cls(values[mask], actions[mask], timestamps[mask], offsets)

    def truncate(self, max_len: int) -> Jagged:
        """Keep each sample's ``max_len`` most recent events."""
        values, actions, timestamps, mask = self.to_padded(max_len)
        return Jagged.from_padded(values, actions, timestamps, mask)

    def select(self, index: Tensor) -> Jagged:
        """The jagged rows of samples ``index`` (int64 ``[B']``), in that order."""
        lengths = self.lengths()[index]  # [B']
        offsets = torch.zeros(index.numel() + 1, dtype=torch.long, device=self.offsets.device)
        offsets[1:] = torch.cumsum(lengths, 0)
        starts = self.offsets[:-1][index]  # [B']
        # Row r of the output comes from starts[b] + (r - offsets[b]) for its sample b.
        seg = torch.repeat_interleave(torch.arange(index.numel(), device=lengths.device), lengths)
        rows = starts[seg] + torch.arange(int(offsets[-1]), device=lengths.device) - offsets[:-1][seg]
        return Jagged(self.values[rows], self.actions[rows], self.timestamps[rows], offsets)


@dataclass
class Batch:
    """A batch of samples; see the module docstring for the fields and their shapes."""

    dense: Tensor
    sparse: Tensor
    labels: dict[str, Tensor]
    user: Tensor | None = None
    history: Jagged | None = None
    privileged: dict[str, Any] | None = None
    teacher: dict[str, Tensor] | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    """Per-sample side data that is neither a feature nor a label (e.g. the synthetic world's true
    probability, used only for oracle metrics). Models must not read it."""
    multi: Tensor | None = None
    """Multi-valued fields: int64 ``[B, M, L]``, up to L field-local ids per sample and field
    (0 = OOV, 1 = missing, i.e. an empty set), right-padded with -1; every row holds at least one
    id. None when the schema has no multi-valued feature."""

    def __post_init__(self) -> None:
        b = self.sparse.shape[0]
        if self.sparse.dim() != 2 or self.dense.dim() != 2:
            raise ValueError(
                f"Batch.sparse must be [B, F] and Batch.dense [B, D]; got {tuple(self.sparse.shape)} "
                f"and {tuple(self.dense.shape)}"
            )
        if self.dense.shape[0] != b:
            raise ValueError(f"Batch.dense has {self.dense.shape[0]} rows, Batch.sparse has {b}")
        if "click" not in self.labels:
            raise ValueError(f"Batch.labels must contain 'click', got {sorted(self.labels)}")
        for name, y in self.labels.items():
            if y.shape != (b,):
                raise ValueError(f"Batch.labels[{name!r}] must be [B]={b}, got {tuple(y.shape)}")
        if self.history is not None and self.history.batch_size != b:
            raise ValueError(f"Batch.history covers {self.history.batch_size} samples, batch has {b}")
        if self.multi is not None and (self.multi.dim() != 3 or self.multi.shape[0] != b):
            raise ValueError(f"Batch.multi must be [B={b}, M, L], got {tuple(self.multi.shape)}")

    def __len__(self) -> int:
        return self.sparse.shape[0]

    @property
    def size(self) -> int:
        return self.sparse.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy on ``device`` (Lightning calls this to move batches)."""
        return Batch(
            dense=self.dense.to(device, non_blocking=non_blocking),
            sparse=self.sparse.to(device, non_blocking=non_blocking),
            labels=_to(self.labels, device, non_blocking),
            user=_to(self.user, device, non_blocking),
            history=_to(self.history, device, non_blocking),
            privileged=_to(self.privileged, device, non_blocking),
            teacher=_to(self.teacher, device, non_blocking),
            extras=_to(self.extras, device, non_blocking),
            multi=_to(self.multi, device, non_blocking),
        )

    def select(self, index: Tensor) -> Batch:
        """Rows ``index`` (int64 ``[B']``) of every per-sample field."""

        def pick(x: Any) -> Any:
            if x is None:
                return None
            if isinstance(x, Jagged):
                return x.select(index)
            if isinstance(x, Mapping):
                return {k: pick(v) for k, v in x.items()}
            return x[index]

        return Batch(
            dense=self.dense[index],
            sparse=self.sparse[index],
            labels=pick(self.labels),
            user=pick(self.user),
            history=pick(self.history),
            privileged=pick(self.privileged),
            teacher=pick(self.teacher),
            extras=pick(self.extras),
            multi=pick(self.multi),
        )

    def for_serving(self) -> Batch:
        """The same batch without training-only signals (privileged data, teacher predictions)."""
        return replace(self, privileged=None, teacher=None)
