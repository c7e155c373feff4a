"""Random jagged attention inputs for the kernel tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys_lab.kernels import Kernel, cama_attention, hstu_attention


@dataclass
class JaggedInputs:
    """One packed batch: q, k ``[N, H, D]``, v ``[N, H, Dv]`` and the segment metadata."""

    q: Tensor
    k: Tensor
    v: Tensor
    offsets: Tensor
    timestamps: Tensor
    actions: Tensor
    num_candidates: Tensor
    pos_bias: Tensor
    time_bias: Tensor

    def leaves(self) -> list[Tensor]:
        return [self.q, self.k, self.v, self.pos_bias, self.time_bias]

    def hstu(self, scale: float, kernel: Kernel | str = Kernel.REFERENCE) -> Tensor:
        """``hstu_attention`` of these inputs: ``[N, H, Dv]``."""
        return hstu_attention(
            self.q, self.k, self.v, self.offsets, self.timestamps, self.num_candidates,
            self.pos_bias, self.time_bias, scale=scale, kernel=kernel,
        )  # fmt: skip

    def cama(self, num_channels: int, scale: float, kernel: Kernel | str = Kernel.REFERENCE) -> Tensor:
        """``cama_attention`` of these inputs: ``[N, H, Dv]``."""
        return cama_attention(
            self.q, self.k, self.v, self.offsets, self.timestamps, self.actions, self.num_candidates,
            num_channels=num_channels, scale=scale, kernel=kernel,
        )  # fmt: skip


def make_inputs(
    lengths: list[int],
    num_cands: list[int],
    *,
    heads: int = 2,
    dim: int = 16,
    dim_v: int | None = None,
    num_pos: int = 8,
    num_time: int = 6,
    num_actions: int = 3,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    seed: int = 0,
    max_gap: int = 6,
) -> JaggedInputs:
    """Segments of the given lengths; timestamps non-decreasing with ties; random action bits."""
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    dim_v = dim if dim_v is None else dim_v
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int64)
    ts = []
    for length in lengths:
        gaps = torch.randint(0, max_gap, (length,), generator=g)  # zeros make timestamp ties
        ts.append(1000 + gaps.cumsum(0))
    timestamps = torch.cat(ts).to(torch.int64) if ts else torch.zeros(0, dtype=torch.int64)
    actions = torch.randint(0, 2**num_actions, (n,), generator=g, dtype=torch.int64)

    def rnd(*shape: int, s: float = 1.0) -> Tensor:
        return (s * torch.randn(*shape, generator=g)).to(dtype).to(device).requires_grad_(True)

    return JaggedInputs(
        q=rnd(n, heads, dim),
        k=rnd(n, heads, dim),
        v=rnd(n, heads, dim_v),
        offsets=offsets.to(device),
        timestamps=timestamps.to(device),
        actions=actions.to(device),
        num_candidates=torch.tensor(num_cands, dtype=torch.int64, device=device),
        pos_bias=rnd(heads, num_pos, s=0.5),
        time_bias=rnd(heads, num_time, s=0.5),
    )
