"""APG's defining effect: generating each instance's weights ``W_i = U S_i V`` from its condition
beats the static twin of the same widths when the right weights differ from instance to instance,
and gives no such win when the task is the same for every instance (the control)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from recsys_lab.layers.apg import APGMLP, APGConfig
from recsys_lab.layers.mlp import MLP
from tests.claims.helpers import fit, held_out_auc, split

N, DIM, GROUPS, HIDDEN = 4000, 6, 16, [4]


def planted(instance_specific: bool, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` ``[N, DIM]``, one-hot group ``[N, GROUPS]``, clicks ``[N]``: logit ``3 x·w_g`` with a
    random unit direction ``w_g`` per group (or one shared direction for the control)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, DIM, generator=g)
    group = torch.randint(0, GROUPS, (N,), generator=g)
    w = nn.functional.normalize(torch.randn(GROUPS if instance_specific else 1, DIM, generator=g), dim=1)
    logit = 3 * (x * w[group if instance_specific else torch.zeros_like(group)]).sum(1)
    y = torch.bernoulli(torch.sigmoid(logit), generator=g)
    return x, nn.functional.one_hot(group, GROUPS).float(), y


def apg_and_static_auc(instance_specific: bool, seed: int) -> tuple[float, float]:
    x, onehot, y = planted(instance_specific, seed)
    train, test = split(N, seed=seed)
    torch.manual_seed(seed)
    apg = APGMLP(
        DIM,
        HIDDEN,
        1,
        "relu",
        0.0,
        False,
        APGConfig("group", rank=DIM, overparam=None, hypernet_hidden=16),
        group_dim=GROUPS,
    )
    static = MLP(DIM + GROUPS, HIDDEN, 1)  # the static twin also reads the group

    def f_apg(i: Tensor) -> Tensor:
        return apg(x[i], onehot[i]).squeeze(-1)

    def f_static(i: Tensor) -> Tensor:
        return static(torch.cat([x[i], onehot[i]], 1)).squeeze(-1)

    fit(f_apg, apg.parameters(), y, steps=300, rows=train)
    fit(f_static, static.parameters(), y, steps=300, rows=train)
    return held_out_auc(f_apg, y, test), held_out_auc(f_static, y, test)


@pytest.mark.claim
def test_apg_beats_static_twin_only_on_instance_specific_data() -> None:
    a, s = apg_and_static_auc(instance_specific=True, seed=0)
    # Measured over seeds 0-2 while writing this test: +0.069, +0.087, +0.100 (control -0.045..-0.030).
    assert a > s + 0.04, f"APG {a:.4f} should beat its static twin {s:.4f} by > 0.04 AUC"
    a0, s0 = apg_and_static_auc(instance_specific=False, seed=0)
    assert a0 < s0 + 0.01, f"control (one task for all): APG {a0:.4f} should not win over static {s0:.4f}"
