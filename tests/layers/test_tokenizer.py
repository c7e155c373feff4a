"""Feature tokenizer: contiguous groups of near-equal size, one projection per token."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.layers.tokenizer import FeatureTokenizer


@pytest.mark.parametrize(("n", "t"), [(7, 3), (6, 3), (5, 4), (4, 1), (4, 4)])
def test_tokens_are_projected_contiguous_groups(n: int, t: int) -> None:
    torch.manual_seed(0)
    e, d = 3, 5
    tok = FeatureTokenizer(n, e, t, d)
    x = torch.randn(2, n, e)
    groups = torch.arange(n).tensor_split(t)  # sizes differ by at most one, none empty
    out = tok(x)
    assert out.shape == (2, t, d)
    for i, members in enumerate(groups):
        flat = x[:, members].flatten(1)  # [B, |group|·E]
        w = tok.weight[i, : flat.shape[1]]  # the padded slots' rows are never used
        torch.testing.assert_close(out[:, i], flat @ w + tok.bias[i], atol=1e-6, rtol=1e-5)


def test_flops_and_errors() -> None:
    tok = FeatureTokenizer(7, 3, 3, 5)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        tok(torch.randn(4, 7, 3))
    assert counter.get_total_flops() == 4 * tok.flops_per_example() == 4 * 2 * 3 * 3 * 3 * 5
    with pytest.raises(ValueError, match=r"num_tokens must be in \[1, 7\]"):
        FeatureTokenizer(7, 3, 8, 5)
    with pytest.raises(ValueError, match="expects"):
        tok(torch.randn(4, 6, 3))
