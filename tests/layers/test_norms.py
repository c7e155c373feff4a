"""RMSNorm, post-norm and SiameseNorm residual wrappers: their formulas."""

import pytest
import torch

from recsys_lab.layers.norms import PostNorm, RMSNorm, SiameseNorm, residual_wrapper


def test_rmsnorm_formula_and_scale_invariance() -> None:
    torch.manual_seed(0)
    norm = RMSNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(3, 4, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    torch.testing.assert_close(norm(10 * x), norm(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(RMSNorm(6)(x).pow(2).mean(-1), torch.ones(3, 4), atol=1e-4, rtol=0)


def test_post_norm_is_norm_of_the_residual_sum() -> None:
    torch.manual_seed(0)
    wrap, x = PostNorm(5), torch.randn(2, 3, 5)
    lin = torch.nn.Linear(5, 5)
    out = wrap.end(wrap.step(wrap.begin(x), lin))
    torch.testing.assert_close(out, wrap.norm(x + lin(x)))


def test_siamese_norm_two_coupled_streams() -> None:
    """a <- a + f(u), b <- norm_out(b + f(u)), u = norm_in(a) + b, over two sublayers."""
    torch.manual_seed(0)
    w1, w2 = SiameseNorm(4), SiameseNorm(4)
    for w in (w1, w2):
        with torch.no_grad():
            w.norm_in.weight.uniform_(0.5, 2)
            w.norm_out.weight.uniform_(0.5, 2)
    f, g = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    x = torch.randn(3, 2, 4)
    state = w2.step(w1.step(w1.begin(x), f), g)
    a, b = x, w1.norm_out(x)
    o = f(w1.norm_in(a) + b)
    a, b = a + o, w1.norm_out(b + o)
    o = g(w2.norm_in(a) + b)
    a, b = a + o, w2.norm_out(b + o)
    torch.testing.assert_close(state[0], a)
    torch.testing.assert_close(state[1], b)
    torch.testing.assert_close(w2.end(state), w2.norm_in(a) + b)


def test_siamese_pre_norm_stream_keeps_the_identity_path() -> None:
    """With a zero sublayer the un-normalised stream carries the input unchanged (scale included)."""
    wrap, x = SiameseNorm(4), 100 * torch.randn(2, 3, 4)
    a, _ = wrap.step(wrap.begin(x), torch.zeros_like)
    torch.testing.assert_close(a, x)


def test_residual_wrapper_choices() -> None:
    assert isinstance(residual_wrapper("post", 3), PostNorm)
    assert isinstance(residual_wrapper("siamese", 3), SiameseNorm)
    with pytest.raises(ValueError, match="norm must be one of"):
        residual_wrapper("pre", 3)  # type: ignore[arg-type]
