"""HSTU layer, CamA block and top-k MoE: formulas, masks by perturbation, padded vs jagged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys_lab.kernels import cama_attention, cama_attention_padded, hstu_attention, hstu_attention_padded
from recsys_lab.layers.attention import CamABlock, HSTULayer, TopKMoE
from recsys_lab.layers.sequence import PackedSequence


def packed(
    lengths: list[int], num_candidates: list[int], seed: int = 0, sink: bool = False
) -> PackedSequence:
    """Segments of the given lengths, strictly increasing timestamps, random action bitmasks."""
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    lens = torch.tensor(lengths)
    offsets = torch.zeros(b + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(lens, 0)
    n = int(offsets[-1])
    seg = torch.repeat_interleave(torch.arange(b), lens)
    position = torch.arange(n) - offsets[:-1][seg]
    ts = torch.cumsum(torch.randint(1, 300, (n,), generator=g), 0)
    nc = torch.tensor(num_candidates)
    kind = torch.ones(n, dtype=torch.long)
    is_cand = position >= (lens - nc)[seg]
    kind[is_cand] = 2
    actions = torch.randint(0, 8, (n,), generator=g)
    if sink:
        kind[offsets[:-1][lens > 0]] = 0
        actions[kind == 0] = 0
        # candidates share the segment's last timestamp, after the history
        ts = torch.where(is_cand, ts[(offsets[1:] - 1).clamp(min=0)][seg] + 1, ts)
    actions[is_cand] = 0
    return PackedSequence(offsets, ts, actions, nc, kind, seg, torch.full((n,), -1), position)


@pytest.mark.parametrize("seed", [0, 1])
def test_padded_attention_agrees_with_jagged_reference(seed):
    """Jagged (reference kernel) and padded computations agree, forward and every gradient."""
    lengths, cands = [5, 0, 1, 9, 3], [1, 0, 1, 3, 0]
    p = packed(lengths, cands, seed=seed, sink=True)
    n = p.num_tokens
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(n, 4, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    pb = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    tb = torch.randn(4, 10, generator=g, dtype=torch.float64, requires_grad=True)
    args = (q, k, v, p.offsets, p.timestamps, p.num_candidates, pb, tb)
    ref = hstu_attention(*args, scale=0.4)
    pad = hstu_attention_padded(*args, scale=0.4)
    torch.testing.assert_close(pad, ref)
    w = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * w).sum(), (q, k, v, pb, tb))
    g_pad = torch.autograd.grad((pad * w).sum(), (q, k, v, pb, tb))
    for a, b in zip(g_pad, g_ref):
        torch.testing.assert_close(a, b)
    cargs = (q, k, v, p.offsets, p.timestamps, p.actions, p.num_candidates)
    ref = cama_attention(*cargs, num_channels=4, scale=0.4)
    pad = cama_attention_padded(*cargs, num_channels=4, scale=0.4)
    torch.testing.assert_close(pad, ref)
    g_ref = torch.autograd.grad((ref * w).sum(), (q, k, v))
    g_pad = torch.autograd.grad((pad * w).sum(), (q, k, v))
    for a, b in zip(g_pad, g_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kernel", ["reference", "padded"])
def test_hstu_layer_equals_its_formula(kernel):
    """The HSTU layer on a tiny input against the formula written out with explicit loops."""
    torch.manual_seed(0)
    layer = HSTULayer(
        dim=6, num_heads=2, qk_dim=3, v_dim=2, num_positions=4, time_buckets=6, dropout=0.0, kernel=kernel
    )
    with torch.no_grad():
        layer.pos_bias.normal_()
        layer.time_bias.normal_()
    p = packed([4, 3], [1, 2], seed=3)
    x = torch.randn(p.num_tokens, 6)
    out = layer(x, p)

    h = F.silu(layer.uvqk(F.layer_norm(x, (6,), layer.norm_in.weight, layer.norm_in.bias)))
    u, v, q, k = h.split([4, 4, 6, 6], dim=1)
    u, v, q, k = u.view(-1, 2, 2), v.view(-1, 2, 2), q.view(-1, 2, 3), k.view(-1, 2, 3)
    attn = torch.zeros(p.num_tokens, 2, 2)
    for b in range(2):
        s, e = int(p.offsets[b]), int(p.offsets[b + 1])
        length, hist = e - s, e - s - int(p.num_candidates[b])
        for i in range(length):
            for j in range(length):
                if j > i or (j >= hist and j != i):
                    continue  # causal; a candidate sees the history and itself
                dt = int(p.timestamps[s + i] - p.timestamps[s + j])
                tb = min(int(torch.floor(torch.log2(torch.tensor(1.0 + dt)))), 5)
                for hh in range(2):
                    a = (q[s + i, hh] @ k[s + j, hh]) * 3**-0.5 + layer.pos_bias[hh, min(i - j, 3)]
                    a = a + layer.time_bias[hh, tb]
                    attn[s + i, hh] += F.silu(a) / length * v[s + j, hh]
    y = F.layer_norm(attn.reshape(-1, 4), (4,), layer.norm_attn.weight, layer.norm_attn.bias) * u.reshape(
        -1, 4
    )
    expected = x + layer.out(y)
    torch.testing.assert_close(out, expected)


def _cama_block(kernel: str = "reference") -> CamABlock:
    torch.manual_seed(0)
    return CamABlock(
        dim=8,
        num_heads=4,
        head_dim=4,
        num_channels=4,
        num_action_codes=10,
        ffn_hidden=16,
        num_experts=0,
        top_k=1,
        dropout=0.0,
        kernel=kernel,
    )


@pytest.mark.parametrize("kernel", ["reference", "padded"])
def test_cama_block_masks_by_perturbation(kernel):
    block = _cama_block(kernel)
    p = packed([6, 5], [2, 1], seed=1, sink=True)
    x = torch.randn(p.num_tokens, 8)
    codes = p.actions.clone()
    base = block(x, p, codes)

    def changed(x2: torch.Tensor, p2: PackedSequence = p, codes2: torch.Tensor = codes) -> torch.Tensor:
        return ((block(x2, p2, codes2) - base).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()

    # A later token: only itself and the tokens after it in time (not the candidates' peers).
    x2 = x.clone()
    x2[2] += torch.linspace(-1.0, 2.0, 8)  # history token at position 2 of segment 0 (candidates at 4, 5)
    assert changed(x2) == [2, 3, 4, 5]
    # The other user's tokens never move.
    x2 = x.clone()
    x2[8] += torch.linspace(-1.0, 2.0, 8)  # segment 1 (rows 6..10, candidate at 10)
    assert all(r >= 6 for r in changed(x2))
    # Another candidate: candidates do not see each other.
    x2 = x.clone()
    x2[4] += torch.linspace(-1.0, 2.0, 8)
    assert changed(x2) == [4]
    # A token's own action never reaches its own row (actions enter keys and values only).
    codes2 = codes.clone()
    codes2[2] = codes[2] ^ 2
    p2 = PackedSequence(
        p.offsets, p.timestamps, codes2, p.num_candidates, p.kind, p.segment, p.source, p.position
    )
    moved = changed(x, p2, codes2)
    assert 2 not in moved and moved  # later rows see it, its own row does not


def test_cama_channel_sees_only_keys_with_its_action():
    """With only channel 2 (click, bit 1) feeding the output, a key without a click is invisible,
    and setting its click bit makes it visible."""
    block = _cama_block()
    with torch.no_grad():
        block.out.weight[:, :8] = 0  # heads 0, 1 = channels 0, 1
        block.out.weight[:, 12:] = 0  # head 3 = channel 3
    p = packed([7], [1], seed=2, sink=True)
    actions = p.actions.clone()
    actions[1:6] = torch.tensor([1, 3, 1, 3, 1])  # rows 1, 3, 5 no click; 2, 4 clicked
    p = PackedSequence(
        p.offsets, p.timestamps, actions, p.num_candidates, p.kind, p.segment, p.source, p.position
    )
    x = torch.randn(p.num_tokens, 8)
    base = block(x, p, actions)
    x2 = x.clone()
    x2[3] += torch.linspace(-1.0, 2.0, 8)  # not clicked: invisible to every other row in the click channel
    moved = ((block(x2, p, actions) - base).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()
    assert moved == [3]
    x2 = x.clone()
    x2[2] += torch.linspace(-1.0, 2.0, 8)  # clicked: rows after it see it
    moved = ((block(x2, p, actions) - base).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()
    assert moved == [2, 3, 4, 5, 6]


def test_topk_moe_routes_to_the_best_expert():
    torch.manual_seed(0)
    moe = TopKMoE(dim=5, hidden=7, num_experts=3, top_k=1)
    x = torch.randn(12, 5)
    best = moe.router(x).argmax(1)
    expected = torch.stack([moe.experts[int(e)](x[i]) for i, e in enumerate(best)])
    torch.testing.assert_close(moe(x), expected)
    moe2 = TopKMoE(dim=5, hidden=7, num_experts=3, top_k=3)
    w = torch.softmax(moe2.router(x), dim=1)
    full = sum(w[:, e : e + 1] * moe2.experts[e](x) for e in range(3))
    torch.testing.assert_close(moe2(x), full)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="divisible"):
        CamABlock(8, 3, 4, 2, 10, 16, 0, 1, 0.0, "reference")
    with pytest.raises(ValueError, match="unknown attention kernel"):
        HSTULayer(8, 2, 4, 4, 4, 4, 0.0, "cuda_magic")
    with pytest.raises(ValueError, match="top_k"):
        TopKMoE(4, 4, 2, 3)
