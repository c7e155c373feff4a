"""Client selection: random (FedAvg), BEFL's cluster-and-utility heuristic, and BEFL's learned
policy (imitation of the heuristic, then online ranking-based reinforcement learning).

**Heuristic** (:class:`HeuristicSelector`). Among devices whose remaining battery covers
``reserve`` times their estimated round energy ``ê_i`` (compute + upload at an equal share):

1. cluster them with k-means (``ceil(K / 2)`` clusters, K = clients per round) on the
   standardised ``[log n_i, ℓ_i]`` (data size and last local loss), so the pick covers different
   kinds of data;
2. score each with the utility
   ``u_i = w_acc · n_i ℓ_i / max(n ℓ) − w_energy · ê_i / max(ê) − w_spread · (s_i + ê_i) / max(s + ê)``
   (``ℓ_i`` the last local loss the device reported — a statistical utility of its data, as in
   Oort — ``s_i`` the energy it already spent: a device that has already
   spent more than others is held back, which evens out energy use across devices);
3. take the best device of each cluster (largest clusters first), then fill up by utility.

**Decision:** clustering on the energy cost as well (tried first) forced an expensive device into
every round and raised the energy spread; the clusters are therefore on data only.

**Policy** (:class:`PolicySelector`). An MLP scores each device from its features
``φ_i = [log n_i, ê_i / max ê, s_i / B_i, r_i / B_i, ℓ_i, u_i]`` (``r_i`` remaining battery). It is
pre-trained by imitation: on ``imitation_states`` random states around the federation's (spent
energy and losses drawn at random) the heuristic's choice is the target of a listwise loss
(softmax cross-entropy over the devices, the chosen set as the target distribution). Online, the
policy samples a ranking with the Plackett–Luce model ``P(π) = Π_j exp(s_πj/T) / Σ_{l≥j} exp(s_πl/T)``
and selects its first K; after the round, REINFORCE with a moving-average baseline raises the
log-probability of rankings whose reward (validation log-loss gain minus energy and energy spread,
see ``EnergyAwareFedAvg._reward``) beat the baseline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class SelectionState:
    """What the server knows about every device (arrays ``[N]``) at the start of a round."""

    server_round: int
    num_examples: np.ndarray
    est_energy: np.ndarray
    spent: np.ndarray
    remaining: np.ndarray
    battery: np.ndarray
    loss: np.ndarray
    alive: np.ndarray


class Selector(ABC):
    @abstractmethod
    def select(self, state: SelectionState, k: int, rng: np.random.Generator) -> list[int]:
        """``k`` distinct alive devices."""

    def feedback(self, state: SelectionState, chosen: list[int], reward: float) -> None:  # noqa: B027
        """Called after each round with its reward (learning selectors update here)."""


class RandomSelector(Selector):
    """FedAvg: ``k`` alive devices uniformly at random."""

    def select(self, state: SelectionState, k: int, rng: np.random.Generator) -> list[int]:
        alive = np.flatnonzero(state.alive)
        return sorted(int(i) for i in rng.choice(alive, size=min(k, alive.size), replace=False))


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 20) -> np.ndarray:
    """Cluster labels ``[n]`` of the rows of ``x [n, d]`` (k-means++ start, Lloyd iterations)."""
    n = x.shape[0]
    k = min(k, n)
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(x[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(n)])
    c = np.stack(centres)
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        labels = ((x[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        new = np.stack([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return labels


@dataclass(frozen=True)
class HeuristicWeights:
    """Weights of BEFL's utility and the battery reserve (multiples of the round energy)."""

    accuracy: float = 1.0
    energy: float = 1.0
    spread: float = 2.0
    reserve: float = 1.5


def utility(state: SelectionState, w: HeuristicWeights) -> np.ndarray:
    """BEFL's utility ``u_i`` of every device ``[N]`` (see the module docstring)."""
    stat = state.num_examples * state.loss
    after = state.spent + state.est_energy  # energy spent if selected now
    return (
        w.accuracy * stat / max(stat.max(), 1e-12)
        - w.energy * state.est_energy / max(state.est_energy.max(), 1e-12)
        - w.spread * after / max(after.max(), 1e-12)
    )


def eligible(state: SelectionState, w: HeuristicWeights) -> np.ndarray:
    """bool ``[N]``: alive devices whose battery covers ``reserve`` rounds (all alive ones if none do)."""
    ok = state.alive & (state.remaining >= w.reserve * state.est_energy)
    return ok if ok.any() else state.alive.copy()


class HeuristicSelector(Selector):
    """BEFL's cluster-and-utility heuristic (``clusters``: None = ceil(K / 2))."""

    def __init__(self, weights: HeuristicWeights | None = None, clusters: int | None = None) -> None:
        self.weights = weights or HeuristicWeights()
        self.clusters = clusters

    def select(self, state: SelectionState, k: int, rng: np.random.Generator) -> list[int]:
        pool = np.flatnonzero(eligible(state, self.weights))
        k = min(k, pool.size)
        u = utility(state, self.weights)[pool]
        feats = np.stack([np.log(state.num_examples[pool] + 1), state.loss[pool]], 1)
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
        clusters = max(1, min(self.clusters or (k + 1) // 2, k))
        labels = _kmeans(feats, clusters, rng)
        chosen: list[int] = []
        for j in np.argsort(-np.bincount(labels, minlength=clusters), kind="stable"):
            members = np.flatnonzero(labels == j)
            if members.size and len(chosen) < k:
                chosen.append(int(members[np.argmax(u[members])]))
        for i in np.argsort(-u, kind="stable"):
            if len(chosen) >= k:
                break
            if int(i) not in chosen:
                chosen.append(int(i))
        return sorted(int(pool[i]) for i in chosen)


def features(state: SelectionState, w: HeuristicWeights) -> torch.Tensor:
    """Policy features ``[N, 6]`` (see the module docstring)."""
    est = state.est_energy / max(state.est_energy.max(), 1e-12)
    cols = [
        np.log(state.num_examples + 1) / 10,
        est,
        state.spent / state.battery,
        state.remaining / state.battery,
        state.loss,
        utility(state, w),
    ]
    return torch.tensor(np.stack(cols, 1), dtype=torch.float32)


class PolicySelector(Selector):
    """BEFL's learned selection policy (see the module docstring).

    Args:
        weights: the heuristic it imitates (and its eligibility rule).
        hidden: MLP width.
        imitation_states, imitation_epochs: size of the imitation pre-training.
        rl: refine online with ranking-based REINFORCE (False: imitation only).
        lr: learning rate of both phases; temperature: Plackett–Luce temperature T.
        seed: seeds the network and the imitation states.
    """

    def __init__(
        self,
        weights: HeuristicWeights | None = None,
        hidden: int = 32,
        imitation_states: int = 64,
        imitation_epochs: int = 30,
        rl: bool = True,
        lr: float = 1e-2,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.weights = weights or HeuristicWeights()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.imitation_states = imitation_states
        self.imitation_epochs = imitation_epochs
        self.rl = rl
        self.temperature = temperature
        self.seed = seed
        self.pretrained = False
        self.imitation_agreement = float("nan")
        self.baseline: float | None = None
        self._last: tuple[torch.Tensor, np.ndarray, list[int]] | None = None

    def scores(self, state: SelectionState) -> torch.Tensor:
        return self.net(features(state, self.weights)).squeeze(1)  # [N]

    def pretrain(self, state: SelectionState, k: int) -> float:
        """Imitation of the heuristic on random states around ``state``; returns the final
        agreement (share of the heuristic's picks the policy's top-K reproduces) on those states."""
        rng = np.random.default_rng(self.seed)
        heuristic = HeuristicSelector(self.weights)
        examples = []
        for _ in range(self.imitation_states):
            frac = rng.uniform(0, 0.8, state.battery.shape)
            s = replace(
                state,
                spent=frac * state.battery,
                remaining=(1 - frac) * state.battery,
                loss=rng.uniform(0.3, 1.0, state.battery.shape),
            )
            pool = eligible(s, self.weights)
            target = np.zeros(state.battery.shape[0], dtype=np.float32)
            target[heuristic.select(s, k, rng)] = 1.0 / k
            examples.append((features(s, self.weights), torch.from_numpy(pool), torch.from_numpy(target)))
        for _ in range(self.imitation_epochs):
            for x, pool, target in examples:
                logits = self.net(x).squeeze(1).masked_fill(~pool, -1e9)
                loss = -(target * F.log_softmax(logits, 0)).sum()
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
        with torch.no_grad():
            hits = 0.0
            for x, pool, target in examples:
                top = self.net(x).squeeze(1).masked_fill(~pool, -1e9).topk(k).indices
                hits += float((target[top] > 0).float().mean())
        self.pretrained = True
        self.imitation_agreement = hits / len(examples)
        return self.imitation_agreement

    def select(self, state: SelectionState, k: int, rng: np.random.Generator) -> list[int]:
        if not self.pretrained:
            self.pretrain(state, k)
        pool = eligible(state, self.weights)
        scores = self.scores(state)
        mask = torch.from_numpy(pool)
        if not self.rl:
            top = scores.detach().masked_fill(~mask, -1e9).topk(int(min(k, pool.sum()))).indices
            return sorted(int(i) for i in top)
        # Plackett–Luce: sample without replacement with Gumbel noise on the scores / T.
        gumbel = torch.from_numpy(-np.log(-np.log(rng.uniform(1e-12, 1.0, pool.shape[0])))).float()
        keys = (scores.detach() / self.temperature + gumbel).masked_fill(~mask, -1e9)
        chosen = [int(i) for i in keys.topk(int(min(k, pool.sum()))).indices]
        self._last = (features(state, self.weights), pool, chosen)
        return sorted(chosen)

    def feedback(self, state: SelectionState, chosen: list[int], reward: float) -> None:
        if not self.rl or self._last is None:
            return
        x, pool, ranking = self._last
        self._last = None
        advantage = 0.0 if self.baseline is None else reward - self.baseline
        self.baseline = reward if self.baseline is None else 0.8 * self.baseline + 0.2 * reward
        if advantage == 0.0:
            return
        logits = (self.net(x).squeeze(1) / self.temperature).masked_fill(~torch.from_numpy(pool), -1e9)
        log_prob = torch.zeros(())
        available = torch.ones_like(logits, dtype=torch.bool)
        for i in ranking:  # log P(ranking) under Plackett–Luce
            log_prob = log_prob + logits[i] - torch.logsumexp(logits.masked_fill(~available, -1e9), 0)
            available[i] = False
        loss = -advantage * log_prob
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
