"""SLSQP bandwidth allocation: constraints hold and it beats equal shares on energy."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_lab.federated.allocation import equal_allocation, slsqp_allocation, uplink_energy
from recsys_lab.federated.channel import IdealChannel
from recsys_lab.federated.devices import DeviceDistribution, shannon_rate

BAND = 1.0e6
BITS = 1.0e6


def _profiles(k: int = 8, seed: int = 0):
    return DeviceDistribution().sample(k, np.random.default_rng(seed))


def test_shannon_rate_grows_with_bandwidth_and_saturates() -> None:
    b = np.array([1e3, 1e5, 1e7, 1e9])
    r = shannon_rate(b, 0.1, 1e-10)
    assert np.all(np.diff(r) > 0)
    # Wideband limit: p g / (N0 ln 2).
    assert shannon_rate(1e12, 0.1, 1e-10) == pytest.approx(
        0.1 * 1e-10 / (10 ** (-20.4) * np.log(2)), rel=0.01
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slsqp_meets_constraints_and_beats_equal_allocation(seed: int) -> None:
    profiles = _profiles(seed=seed)
    equal = equal_allocation(profiles, BITS, BAND)
    t_cmp = np.random.default_rng(seed).uniform(0.5, 2.0, len(profiles))
    deadline = float((t_cmp + equal.time_s).max())  # equal shares are feasible, just
    alloc = slsqp_allocation(profiles, BITS, BAND, compute_time_s=t_cmp, deadline_s=deadline)
    assert alloc.solver_ok
    assert alloc.bandwidth_hz.sum() <= BAND * (1 + 1e-9)
    assert np.all(alloc.bandwidth_hz > 0)
    assert np.all(t_cmp + alloc.time_s <= deadline * (1 + 1e-4))
    # Savings are a few percent with this device distribution (narrow power range, high SNR).
    assert alloc.energy_j.sum() < (1 - 5e-3) * equal.energy_j.sum()
    # The energies it reports are the ideal channel's for that allocation.
    sent = IdealChannel(BAND).uplink(profiles, alloc.bandwidth_hz, BITS, np.random.default_rng(0))
    assert np.allclose(sent.energy_j, alloc.energy_j)


def test_slsqp_beats_random_allocations() -> None:
    profiles = _profiles(seed=4)
    best = slsqp_allocation(profiles, BITS, BAND).energy_j.sum()
    rng = np.random.default_rng(0)
    for shares in rng.dirichlet(np.ones(len(profiles)), 200):
        assert best <= uplink_energy(shares, profiles, BITS, BAND)[0].sum() * (1 + 1e-6)


def test_spread_term_evens_out_energy() -> None:
    profiles = _profiles(seed=3)
    spent = np.linspace(0.0, 5.0, len(profiles))
    plain = slsqp_allocation(profiles, BITS, BAND, spent_j=spent)
    even = slsqp_allocation(profiles, BITS, BAND, spent_j=spent, spread_weight=20.0)
    assert np.std(spent + even.energy_j) < np.std(spent + plain.energy_j)


def test_impossible_share_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="min_share"):
        slsqp_allocation(_profiles(4), BITS, BAND, min_share=0.5)
