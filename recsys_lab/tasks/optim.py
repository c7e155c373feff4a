"""Optimisers for embedding tables, and the plateau learning-rate decay.

:class:`RowWiseSparseAdam` computes exactly what ``torch.optim.SparseAdam`` computes, but merges
duplicate row ids with ``torch.unique`` + ``index_add_`` instead of ``Tensor.coalesce()``, and
updates the touched rows of ``param``, ``exp_avg`` and ``exp_avg_sq`` in place with
``index_copy_``. On CPU ``coalesce`` of a ``[nnz, D]`` gradient dominates the optimiser step of a
wide table; the row-wise form is several times faster there (``scripts/bench_train.py``).
Results equal SparseAdam's up to float summation order of duplicate rows. Its ``weight_decay``
is an L2 penalty on the rows a batch looked up (the lazy form of an embedding regulariser).

:class:`PlateauDecay` is ``ReduceLROnPlateau`` that names the logged metric it watches, so the
task can step it after validation (FuxiCTR's ``lr × 0.1`` when validation stops improving).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class RowWiseSparseAdam(torch.optim.Optimizer):
    """Lazy Adam for sparse (COO, row-indexed) gradients of 2-D embedding tables.

    Args:
        params: the embedding tables (``[V, D]`` parameters with sparse gradients).
        lr, betas, eps: as in :class:`torch.optim.SparseAdam`; the step count is per table, the
            moments are updated only for rows present in the gradient.
        maximize: ascend instead of descend.
        weight_decay: L2 penalty ``weight_decay/2 · ||row||²`` on each looked-up row: its gradient
            ``weight_decay · row`` is added before the moments (Adam's coupled L2, touched rows only).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0.0:
            raise ValueError(f"RowWiseSparseAdam: lr must be > 0, got {lr}")
        if weight_decay < 0.0:
            raise ValueError(f"RowWiseSparseAdam: weight_decay must be >= 0, got {weight_decay}")
        if eps <= 0.0:
            raise ValueError(f"RowWiseSparseAdam: eps must be > 0, got {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"RowWiseSparseAdam: betas must be in [0, 1), got {betas}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "maximize": maximize,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not grad.is_sparse:
                    raise RuntimeError(
                        "RowWiseSparseAdam takes sparse gradients only (embedding.sparse_grad=true); "
                        "use torch.optim.AdamW for dense ones"
                    )
                if p.dim() != 2 or grad.sparse_dim() != 1:
                    raise RuntimeError(
                        f"RowWiseSparseAdam expects row-sparse 2-D tables, got shape {tuple(p.shape)}"
                    )
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                rows, g = _merge_rows(grad)  # [U], [U, D]
                if group["weight_decay"]:
                    g = g.add(p.index_select(0, rows), alpha=group["weight_decay"])
                if group["maximize"]:
                    g = -g
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                m = exp_avg.index_select(0, rows).lerp_(g, 1 - beta1)  # [U, D]
                v = exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
                exp_avg.index_copy_(0, rows, m)
                exp_avg_sq.index_copy_(0, rows, v)
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                update = m.div_(v.sqrt_().add_(group["eps"])).mul_(-step_size)
                p.index_add_(0, rows, update)
        return loss


def _merge_rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """Unique row ids ``[U]`` and their summed gradient rows ``[U, D]`` of a row-sparse gradient."""
    if grad.is_coalesced():
        return grad.indices()[0], grad.values()
    idx = grad._indices()[0]  # [nnz] (uncoalesced: may repeat)
    vals = grad._values()  # [nnz, D]
    rows, inverse = torch.unique(idx, sorted=True, return_inverse=True)
    merged = vals.new_zeros((rows.numel(), vals.shape[1])).index_add_(0, inverse, vals)
    return rows, merged


class PlateauDecay(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """``ReduceLROnPlateau`` that knows which logged metric it watches.

    The task steps it at the end of each training epoch (after validation) with
    ``trainer.callback_metrics[monitor]``. ``patience=0`` decays at the first epoch without an
    improvement of more than ``threshold`` (absolute), as FuxiCTR does.

    Args:
        optimizer: the optimiser whose rates it scales.
        monitor: a metric the task logs, e.g. ``val/auc``.
        mode: ``max`` (AUC) or ``min`` (LogLoss).
        factor, patience, threshold, min_lr, cooldown: as in ``ReduceLROnPlateau``
            (``threshold_mode="abs"``).
        embedding: the task also gives the embedding tables' optimiser (``task.sparse_optimizer``)
            its own copy of this schedule (FuxiCTR has one optimiser for both).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        monitor: str = "val/auc",
        mode: str = "max",
        factor: float = 0.1,
        patience: int = 0,
        threshold: float = 1e-4,
        min_lr: float = 1e-6,
        cooldown: int = 0,
        embedding: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"PlateauDecay: mode must be 'min' or 'max', got {mode!r}")
        super().__init__(
            optimizer,
            mode=mode,  # type: ignore[arg-type]
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode="abs",
            cooldown=cooldown,
            min_lr=min_lr,
        )
        self.monitor = monitor
        self.embedding = embedding
