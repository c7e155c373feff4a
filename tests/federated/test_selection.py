"""BEFL selection: the heuristic lowers the energy spread against random selection; the policy
learns to imitate it; the ranking-RL update moves the policy toward rewarded rankings."""

from __future__ import annotations

import numpy as np
import torch

from recsys_lab.federated.selection import (
    HeuristicSelector,
    HeuristicWeights,
    PolicySelector,
    RandomSelector,
    SelectionState,
    Selector,
)


def _state(n: int = 16, seed: int = 0) -> SelectionState:
    rng = np.random.default_rng(seed)
    battery = rng.uniform(20, 200, n)
    return SelectionState(
        server_round=1,
        num_examples=rng.integers(50, 1000, n).astype(float),
        est_energy=rng.uniform(1, 6, n),
        spent=np.zeros(n),
        remaining=battery.copy(),
        battery=battery,
        loss=np.ones(n),
        alive=np.ones(n, dtype=bool),
    )


def _simulate(selector: Selector, rounds: int = 12, k: int = 4, seed: int = 0) -> np.ndarray:
    """Spend each selected device's round energy for ``rounds`` rounds; return the energy spent."""
    state = _state(seed=seed)
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        state.server_round = r + 1
        chosen = selector.select(state, k, rng)
        assert len(set(chosen)) == k and state.alive[chosen].all()
        spend = np.minimum(state.est_energy[chosen], state.remaining[chosen])
        state.spent[chosen] += spend
        state.remaining[chosen] -= spend
        state.alive &= state.remaining > 0
        selector.feedback(state, chosen, 0.0)
    return state.spent


def test_heuristic_lowers_energy_spread_and_total_against_random() -> None:
    heuristic = _simulate(HeuristicSelector())
    random = _simulate(RandomSelector())
    assert heuristic.std() < 0.8 * random.std()
    assert heuristic.sum() < random.sum()


def test_heuristic_keeps_a_battery_reserve() -> None:
    state = _state()
    state.remaining[:8] = 0.5 * state.est_energy[:8]  # half the devices nearly empty
    chosen = HeuristicSelector().select(state, 4, np.random.default_rng(0))
    assert all(c >= 8 for c in chosen)


def test_policy_imitates_the_heuristic() -> None:
    state = _state()
    policy = PolicySelector(imitation_states=32, imitation_epochs=20, rl=False, seed=0)
    agreement = policy.pretrain(state, 4)
    untrained = PolicySelector(imitation_states=32, imitation_epochs=0, rl=False, seed=0).pretrain(state, 4)
    assert agreement > 0.6 and agreement > untrained + 0.15


def test_ranking_rl_raises_the_probability_of_a_rewarded_choice() -> None:
    state = _state()
    policy = PolicySelector(imitation_states=8, imitation_epochs=0, rl=True, lr=0.05, temperature=1.0, seed=0)
    rng = np.random.default_rng(0)
    target = {0, 1, 2, 3}
    hits = []
    for _ in range(150):
        chosen = policy.select(state, 4, rng)
        hits.append(len(target & set(chosen)))
        policy.feedback(state, chosen, float(len(target & set(chosen))))
    assert np.mean(hits[-30:]) > np.mean(hits[:30]) + 0.5
    with torch.no_grad():
        top = set(policy.scores(state).topk(4).indices.tolist())
    assert len(top & target) >= 2


def test_weights_are_used() -> None:
    state = _state()
    state.spent[:] = np.linspace(0, 0.9, 16) * state.battery
    state.remaining = state.battery - state.spent
    spread_first = HeuristicSelector(HeuristicWeights(accuracy=0, energy=0, spread=1, reserve=0)).select(
        state, 4, np.random.default_rng(0)
    )
    assert max(spread_first) < 12  # the most depleted devices are left out
