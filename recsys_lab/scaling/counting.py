"""Cost counting: parameters (embedding vs dense) and forward FLOPs per example.

Every :class:`~recsys_lab.models.base.CTRModel` reports its cost analytically
(``num_params(embedding=..., dense=...)`` and ``flops_per_example()``); scaling studies read those
numbers from ``metrics.json``. :func:`measured_flops_per_example` counts the same thing with
``torch.utils.flop_counter`` on a real batch, which is how the analytic counts are checked.

Convention (as ``flop_counter`` counts): a matmul of ``[m, k] @ [k, n]`` costs ``2·m·n·k``;
element-wise ops, norms, softmax, matrix-vector products and embedding lookups cost nothing. Fused
``scaled_dot_product_attention`` costs its two dense products ``2·2·T_q·T_k·d`` per head: torch
counts that for the CUDA kernels, and :func:`measured_flops` adds the CPU fused kernel, which
``flop_counter`` does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from recsys_lab.data.batch import Batch
from recsys_lab.models.base import CTRModel


@dataclass(frozen=True)
class Cost:
    """The cost of one model.

    Attributes:
        params_embedding: parameters inside embedding tables (``FieldEmbedding`` modules).
        params_dense: every other parameter.
        flops_per_example: analytic forward FLOPs per example (``model.flops_per_example()``).
    """

    params_embedding: int
    params_dense: int
    flops_per_example: int

    @property
    def params_total(self) -> int:
        return self.params_embedding + self.params_dense

    def as_metrics(self) -> dict[str, int]:
        """The ``metrics.json`` keys (see DESIGN.md): ``params/embedding``, ``params/dense``, ..."""
        return {
            "params/embedding": self.params_embedding,
            "params/dense": self.params_dense,
            "params/total": self.params_total,
            "flops/per_example": self.flops_per_example,
        }


def count(model: CTRModel) -> Cost:
    """Analytic cost of ``model``: its parameter split and ``flops_per_example()``."""
    return Cost(
        params_embedding=model.num_params(embedding=True, dense=False),
        params_dense=model.num_params(embedding=False, dense=True),
        flops_per_example=int(model.flops_per_example()),
    )


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """``aten._scaled_dot_product_flash_attention_for_cpu``: ``q·kᵀ`` and ``p·v`` as for CUDA."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# Ops flop_counter has no formula for; looked up by name (absent on builds without them).
_EXTRA_FLOPS = {
    op: fn
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa_flops),)
    if (op := getattr(torch.ops.aten, name, None)) is not None
}


def measured_flops(module: nn.Module, batch: Batch) -> int:
    """Total forward FLOPs of ``module(batch)`` as ``torch.utils.flop_counter`` counts them (plus
    the CPU fused attention kernel, see the module docstring).

    Runs one forward in eval mode without gradients (dropout off; the mode is restored after).
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
            module(batch)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def measured_flops_per_example(module: nn.Module, batch: Batch) -> float:
    """Forward FLOPs of ``module(batch)`` divided by the batch size ``B``."""
    n = len(batch)
    if n == 0:
        raise ValueError("measured_flops_per_example needs a non-empty batch")
    return measured_flops(module, batch) / n


def relative_flops_error(model: CTRModel, batch: Batch, **analytic_kwargs: int) -> float:
    """``(analytic - measured) / measured`` FLOPs per example on ``batch`` (0 when both are 0).

    ``analytic_kwargs`` go to ``model.flops_per_example`` (e.g. ``history_len=`` of the batch's
    histories for a sequence model).
    """
    measured = measured_flops_per_example(model, batch)
    analytic = float(model.flops_per_example(**analytic_kwargs))
    if measured == 0:
        return 0.0 if analytic == 0 else float("inf")
    return (analytic - measured) / measured
