"""Per-token FFN: each position has its own weights; SwiGLU formula; FLOPs."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.layers.ffn import PerTokenFFN


@pytest.mark.parametrize("kind", ["swiglu", "gelu"])
def test_each_token_uses_its_own_weights(kind: str) -> None:
    torch.manual_seed(0)
    ffn = PerTokenFFN(3, 4, 8, kind)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in (ffn.b1, ffn.b2):
            if p is not None:
                p.normal_()
    x = torch.randn(5, 3, 4)
    for t in range(3):
        if kind == "swiglu":
            expected = (F.silu(x[:, t] @ ffn.w1[t]) * (x[:, t] @ ffn.w3[t])) @ ffn.w2[t]
        else:
            expected = F.gelu(x[:, t] @ ffn.w1[t] + ffn.b1[t]) @ ffn.w2[t] + ffn.b2[t]
        torch.testing.assert_close(ffn(x)[:, t], expected, atol=1e-6, rtol=1e-5)
    # Changing token 0's weights changes only output token 0.
    before = ffn(x)
    with torch.no_grad():
        ffn.w2[0].mul_(2)
    after = ffn(x)
    assert not torch.allclose(after[:, 0], before[:, 0])
    torch.testing.assert_close(after[:, 1:], before[:, 1:])


@pytest.mark.parametrize("kind", ["swiglu", "gelu"])
def test_flops_match_flop_counter(kind: str) -> None:
    ffn = PerTokenFFN(3, 4, 8, kind)  # type: ignore[arg-type]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        ffn(torch.randn(7, 3, 4))
    assert counter.get_total_flops() == 7 * ffn.flops_per_example()


def test_bad_input_fails_clearly() -> None:
    with pytest.raises(ValueError, match="expects"):
        PerTokenFFN(3, 4, 8)(torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="ffn kind"):
        PerTokenFFN(3, 4, 8, "relu")  # type: ignore[arg-type]
