"""UniMixer's defining effect: the block-mixing matrix G is *learned*. On tokens whose useful
interaction pairs token 0 with token 2 and token 1 with token 3 on different head positions, the
fixed RankMixer transpose never brings the two factors into one token, a random fixed G only
smears them; the learned, annealed G moves away from its random initialisation to the planted
pairing (a permutation) and wins.

The probe network is deliberately minimal: ``logit = Σ_t MLP_t([x_t ; mix(x)_t])`` (per-token
MLPs that see their own token and what the mixer brought to it), so only the mixer can bring
factors from different tokens together."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from recsys_lab.layers.mixing import RankMixing, UniMixing
from tests.claims.helpers import held_out_auc, split

N, T, D, STEPS = 6000, 4, 4, 300
PAIRS = (2, 3, 0, 1)  # token t needs token PAIRS[t]


def planted(seed: int) -> tuple[Tensor, Tensor]:
    """tokens ``[N, T, D]`` ~ N(0, 1); logit = 3·(x[0,0]·x[2,1] + x[1,0]·x[3,1])."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, T, D, generator=g)
    logit = 3 * (x[:, 0, 0] * x[:, 2, 1] + x[:, 1, 0] * x[:, 3, 1])
    return x, torch.bernoulli(torch.sigmoid(logit), generator=g)


class Probe(nn.Module):
    """``[B, T, D]`` -> ``[B]``: per-token MLPs over ``[x_t ; mixer(x)_t]``, summed."""

    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * D, 32), nn.ReLU(), nn.Linear(32, 1)) for _ in range(T)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = torch.cat([x, self.mixer(x)], -1)  # [B, T, 2D]
        return sum(mlp(h[:, t]) for t, mlp in enumerate(self.mlps)).squeeze(-1)


def train_probe(mixer: nn.Module, seed: int, learn_mixing: bool) -> float:
    x, y = planted(seed)
    train, test = split(N, seed=seed)
    probe = Probe(mixer)
    mixing = [p for n, p in probe.named_parameters() if n.startswith("mixer.")]
    rest = [p for n, p in probe.named_parameters() if not n.startswith("mixer.")]
    for p in mixing:
        p.requires_grad_(learn_mixing)
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-2}, {"params": mixing, "lr": 5e-2}])
    for step in range(STEPS):
        if isinstance(mixer, UniMixing) and learn_mixing:  # anneal 1.0 -> 0.05 geometrically
            mixer.set_temperature(0.05 ** (step / (STEPS - 1)))
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(probe(x[train]), y[train])
        loss.backward()
        opt.step()
    return held_out_auc(lambda i: probe(x[i]), y, test)


def run(seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    uni = UniMixing(T, D, block_size=D)  # one block per token: G is a token permutation
    init = uni.global_logits.detach().clone()
    learned = train_probe(uni, seed, learn_mixing=True)
    g, _ = uni.mixing_matrices()
    torch.manual_seed(seed)
    frozen = train_probe(UniMixing(T, D, block_size=D), seed, learn_mixing=False)
    torch.manual_seed(seed)
    rank = train_probe(RankMixing(T, D), seed, learn_mixing=False)
    return {
        "learned": learned,
        "frozen_random": frozen,
        "rankmixer": rank,
        "moved": float((uni.global_logits.detach() - init).abs().mean() / init.std()),
        "destinations": g.argmax(1).tolist(),
        "init_destinations": init.argmax(1).tolist(),
    }


@pytest.mark.claim
def test_learned_mixing_moves_to_the_planted_pairing_and_wins() -> None:
    r = run(seed=0)
    # Seeds 0-2 while writing this test: learned 0.896/0.886/0.877, RankMixer 0.739/0.727/0.712,
    # frozen random G 0.713/0.724/0.724; G moved 1.8-2.4 initial sds, to [2, 3, 0, 1] every time.
    assert r["destinations"] == list(PAIRS), r
    assert r["moved"] > 0.5, r  # mean |Δ logit| in units of the initial spread
    assert r["learned"] > r["rankmixer"] + 0.1, r
    assert r["learned"] > r["frozen_random"] + 0.1, r
