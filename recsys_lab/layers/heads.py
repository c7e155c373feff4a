"""Prediction heads: a gradient-scaling function and an auxiliary (distillation) head.

B = batch size, D = backbone width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_grad(x: Tensor, scale: float) -> Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by ``scale``."""
    if scale == 1.0:
        return x
    return _ScaleGrad.apply(x, scale)


class AuxiliaryHead(nn.Module):
    """A linear head on a shared backbone whose gradient into the backbone is scaled by ``beta``.

    ``[B, D]`` -> logits ``[B]``. The head's own weights get their full gradient; only what flows
    back into ``x`` (the shared backbone) is scaled (``beta = 0`` detaches the backbone).

    Args:
        dim: D.
        beta: gradient scale into the backbone (>= 0).
    """

    def __init__(self, dim: int, beta: float = 1.0) -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"AuxiliaryHead: beta={beta} must be >= 0 (a gradient scale)")
        self.beta = float(beta)
        self.linear = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, D]`` -> logits ``[B]``."""
        return self.linear(scale_grad(x, self.beta)).squeeze(-1)

    def flops_per_example(self) -> int:
        return 2 * self.linear.in_features
