"""Token mixing: UniMixer's block mixing contains RankMixer's, Sinkhorn is doubly stochastic and
anneals towards permutations, the block size is free of the token count, the FM block's formula."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from recsys_lab.layers.mixing import (
    FMMixing,
    RankMixing,
    UniMixing,
    UniMixingLite,
    rankmixer_mix,
    rankmixer_permutation,
    sinkhorn,
    symmetrize,
    uni_mix,
)


@pytest.mark.parametrize(("tokens", "dim"), [(2, 4), (4, 8), (4, 16), (8, 64)])
def test_unimixer_with_rankmixer_permutation_equals_rankmixer(tokens: int, dim: int) -> None:
    """G = the head-transpose permutation, W_i = I, b = D/T: exactly RankMixer's token mixing."""
    x = torch.randn(5, tokens, dim)
    n, b = tokens * tokens, dim // tokens
    out = uni_mix(x, rankmixer_permutation(tokens), torch.eye(b).expand(n, b, b))
    torch.testing.assert_close(out, rankmixer_mix(x), atol=0, rtol=0)


def test_rankmixer_mix_is_the_head_transpose() -> None:
    """out[h] = concat_t x[t, head h]: checked element by element."""
    t, d = 3, 6
    x = torch.randn(2, t, d)
    out = rankmixer_mix(x)
    w = d // t
    for h in range(t):
        for s in range(t):
            torch.testing.assert_close(out[:, h, s * w : (s + 1) * w], x[:, s, h * w : (h + 1) * w])
    # T heads of a token go to T different output tokens: twice is the identity.
    torch.testing.assert_close(rankmixer_mix(out), x)


def test_rankmixer_permutation_is_a_symmetric_permutation() -> None:
    p = rankmixer_permutation(4)
    assert torch.equal(p.sum(0), torch.ones(16)) and torch.equal(p.sum(1), torch.ones(16))
    assert torch.equal(p, p.T)  # survives UniMixer's symmetrisation


def test_unimixing_module_reaches_rankmixer_at_sharp_logits() -> None:
    """The module itself (symmetrise, temperature, Sinkhorn) reproduces RankMixer when its logits
    point at the permutation and the identity."""
    t, d = 4, 8
    mixer = UniMixing(t, d, block_size=d // t, temperature=0.05, sinkhorn_iters=10)
    with torch.no_grad():
        mixer.global_logits.copy_(rankmixer_permutation(t))
        mixer.local_logits.copy_(torch.eye(d // t).expand_as(mixer.local_logits))
    x = torch.randn(3, t, d)
    torch.testing.assert_close(mixer(x), rankmixer_mix(x), atol=1e-6, rtol=0)


def test_sinkhorn_is_doubly_stochastic() -> None:
    """Columns sum to one after every iteration; the row error shrinks to ~0 as iterations grow."""
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 7) * 2
    errors = []
    for iters in (1, 5, 20, 100):
        p = sinkhorn(logits, num_iters=iters)
        assert (p >= 0).all()
        torch.testing.assert_close(p.sum(-2), torch.ones(3, 7), atol=1e-6, rtol=0)
        errors.append((p.sum(-1) - 1).abs().max().item())
    assert errors == sorted(errors, reverse=True), errors
    assert errors[2] < 2e-3 and errors[3] < 1e-5, errors


def test_sinkhorn_ignores_row_and_column_offsets_and_survives_tiny_temperatures() -> None:
    """Sinkhorn(L + r 1ᵀ + 1 cᵀ) = Sinkhorn(L); logits of 1e4 (τ = 1e-4) stay finite in the log domain."""
    torch.manual_seed(0)
    logits = torch.randn(6, 6)
    shifted = logits + torch.randn(6, 1) * 5 + torch.randn(1, 6) * 5
    torch.testing.assert_close(sinkhorn(shifted, 20), sinkhorn(logits, 20), atol=1e-5, rtol=0)
    assert torch.isfinite(sinkhorn(logits / 1e-4, 20)).all()


def _distance_to_permutation(p: torch.Tensor) -> float:
    """1 - mean over rows of the row maximum: 0 exactly for a permutation matrix."""
    return 1.0 - p.max(-1).values.mean().item()


def _annealed_distances(mixer: UniMixing) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    distances = []
    for tau in (1.0, 0.5, 0.2, 0.1, 0.05):
        mixer.set_temperature(tau)
        with torch.no_grad():
            g, w = mixer.mixing_matrices()
        distances.append(_distance_to_permutation(g))
    return distances, g, w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annealed_matrices_approach_permutations(seed: int) -> None:
    """Annealing 1.0 -> 0.05 (10 Sinkhorn iterations) moves G monotonically towards a permutation
    when the logits prefer one that is its own inverse (symmetrised logits cannot tell P from Pᵀ;
    RankMixer's transpose is such an involution): noise plus RankMixer's permutation."""
    torch.manual_seed(seed)
    mixer = UniMixing(4, 8, block_size=2)  # N = 16 blocks
    with torch.no_grad():
        mixer.global_logits.add_(3.0 * rankmixer_permutation(4))
    distances, g, w = _annealed_distances(mixer)
    assert distances == sorted(distances, reverse=True), distances
    assert distances[0] > 0.3 and distances[-1] < 0.01, distances
    assert torch.equal(g.argmax(-1), rankmixer_permutation(4).argmax(-1))
    assert _distance_to_permutation(w) < 1e-3  # local matrices start near I and stay there


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annealing_sharpens_generic_mixing_matrices(seed: int) -> None:
    """With generic (random) logits the annealed G still sharpens monotonically: its mean row
    entropy falls well below that of τ = 1."""
    torch.manual_seed(seed)
    mixer = UniMixing(4, 8, block_size=4)
    entropies = []
    for tau in (1.0, 0.5, 0.2, 0.1, 0.05):
        mixer.set_temperature(tau)
        with torch.no_grad():
            g, _ = mixer.mixing_matrices()
        entropies.append(-(g * g.clamp_min(1e-30).log()).sum(-1).mean().item())
    assert entropies == sorted(entropies, reverse=True), entropies
    assert entropies[-1] < 0.3 * entropies[0], entropies


@pytest.mark.parametrize(("tokens", "dim", "block"), [(6, 10, 4), (3, 16, 12), (5, 8, 40), (7, 4, 1)])
def test_block_size_is_independent_of_the_token_count(tokens: int, dim: int, block: int) -> None:
    mixer = UniMixing(tokens, dim, block_size=block)
    assert mixer.num_blocks == tokens * dim // block
    x = torch.randn(2, tokens, dim)
    assert mixer(x).shape == (2, tokens, dim)
    lite = UniMixingLite(tokens, dim, block_size=block, rank=1, num_basis=2)
    assert lite(x).shape == (2, tokens, dim)


def test_uni_mix_equals_the_blockwise_sum() -> None:
    """out_j = Σ_i G[j, i] (x_i W_i), written as a loop."""
    torch.manual_seed(0)
    t, d, b = 3, 4, 2
    n = t * d // b
    x, g, w = torch.randn(2, t, d), torch.randn(n, n), torch.randn(n, b, b)
    blocks = x.reshape(2, n, b)
    expected = torch.stack(
        [sum(g[j, i] * (blocks[:, i] @ w[i]) for i in range(n)) for j in range(n)], dim=1
    ).reshape(2, t, d)
    torch.testing.assert_close(uni_mix(x, g, w), expected)


def test_lite_matrices_are_doubly_stochastic_and_low_rank_in_the_logits() -> None:
    torch.manual_seed(0)
    lite = UniMixingLite(4, 8, block_size=2, rank=3, num_basis=2, sinkhorn_iters=20)
    g, w = lite.mixing_matrices()
    assert g.shape == (16, 16) and w.shape == (16, 2, 2)
    for m in (g, w):
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]), atol=2e-3, rtol=0)
        torch.testing.assert_close(m.sum(-2), torch.ones(m.shape[:-1]), atol=1e-6, rtol=0)
    assert torch.linalg.matrix_rank(lite.left @ lite.right.T).item() == 3
    full = UniMixing(4, 8, block_size=2)
    assert sum(p.numel() for p in lite.parameters()) < sum(p.numel() for p in full.parameters())


def test_local_matrices_are_symmetric() -> None:
    torch.manual_seed(0)
    _, w = UniMixing(2, 8, block_size=4, sinkhorn_iters=100).mixing_matrices()
    torch.testing.assert_close(w, w.transpose(-1, -2), atol=1e-5, rtol=0)  # Sinkhorn's fixed point
    torch.testing.assert_close(
        symmetrize(torch.tensor([[0.0, 2.0], [0.0, 0.0]])), torch.ones(2, 2) - torch.eye(2)
    )


def test_fm_mixing_equals_the_materialised_interaction() -> None:
    torch.manual_seed(0)
    fm = FMMixing(5, 6, compressed=3)
    x = torch.randn(4, 5, 6)
    inter = x @ x.transpose(1, 2)  # X Xᵀ: [B, T, T]
    expected = fm.proj(fm.norm((inter @ fm.y).reshape(4, -1))).reshape(4, 5, 6)
    torch.testing.assert_close(fm(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "mixer",
    [RankMixing(4, 8), UniMixing(4, 8, 4), FMMixing(4, 8, 3)],
    ids=["rank", "uni", "fm"],
)
def test_flops_match_flop_counter(mixer: torch.nn.Module) -> None:
    x = torch.randn(10, 4, 8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        mixer(x)
    assert counter.get_total_flops() == 10 * mixer.flops_per_example()


def test_bad_configs_fail_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"divisible by model\.num_tokens"):
        RankMixing(3, 8)
    with pytest.raises(ValueError, match="block_size must divide"):
        UniMixing(3, 8, block_size=5)
    with pytest.raises(ValueError, match="rank must be in"):
        UniMixingLite(2, 4, block_size=4, rank=3)
    with pytest.raises(ValueError, match="num_iters"):
        sinkhorn(torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        UniMixing(2, 4, 2).set_temperature(0.0)


def test_logit_lr_scale_keeps_the_start_and_speeds_up_the_mixing_logits():
    """logit_lr_scale s: same effective logits at initialisation (θ = init / s), and under Adam the
    global mixing moves ~s times further in the same steps; movement() is 0 at the start."""
    from recsys_lab.layers.mixing import UniMixing

    moved = {}
    for s in (1.0, 10.0):
        torch.manual_seed(0)
        m = UniMixing(4, 8, 4, logit_lr_scale=s)
        assert m.movement() == {"moved": 0.0, "destinations_changed": 0.0}
        torch.testing.assert_close(m.logit_lr_scale * m.global_logits.detach(), m.initial_global_logits)
        x, target = torch.randn(32, 4, 8), torch.randn(32, 4, 8)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        for _ in range(20):
            opt.zero_grad()
            ((m(x) - target) ** 2).mean().backward()
            opt.step()
        moved[s] = m.movement()["moved"]
    assert 5 * moved[1.0] < moved[10.0] < 20 * moved[1.0], moved
    with pytest.raises(ValueError, match="logit_lr_scale must be > 0"):
        UniMixing(4, 8, 4, logit_lr_scale=0.0)
