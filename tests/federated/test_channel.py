"""Uplink channels: one FL round's time and energy under each MAC."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_lab.federated.channel import IdealChannel, RandomAccessChannel
from recsys_lab.federated.devices import DeviceDistribution


def test_relaying_round_is_faster_than_csma_for_many_clients() -> None:
    profiles = DeviceDistribution().sample(16, np.random.default_rng(0))
    bits = np.full(16, 8.0e6)  # 8 packets each
    kwargs = {"bandwidth_hz": 1e6, "packet_bits": 1e6}
    csma = [
        RandomAccessChannel(**kwargs).uplink(profiles, bits, bits, np.random.default_rng(s)) for s in range(5)
    ]
    relay = [
        RandomAccessChannel(**kwargs, pairing=True).uplink(profiles, bits, bits, np.random.default_rng(s))
        for s in range(5)
    ]
    assert np.mean([r.round_s for r in relay]) < 0.9 * np.mean([c.round_s for c in csma])
    for r in csma + relay:
        assert np.all(r.time_s <= r.round_s + 1e-9) and np.all(r.energy_j > 0)


def test_random_access_energy_is_attempts_times_packet_energy() -> None:
    profiles = DeviceDistribution().sample(1, np.random.default_rng(0))
    chan = RandomAccessChannel(bandwidth_hz=1e6, packet_bits=1e6)
    out = chan.uplink(profiles, np.array([0.0]), np.array([3e6]), np.random.default_rng(0))
    from recsys_lab.federated.devices import shannon_rate

    packet_s = 1e6 / float(shannon_rate(np.array(1e6), profiles[0].tx_power_w, profiles[0].channel_gain))
    # A lone node never collides: exactly 3 attempts.
    assert out.energy_j[0] == pytest.approx(3 * profiles[0].tx_power_w * packet_s)


def test_ideal_channel_needs_bandwidth() -> None:
    profiles = DeviceDistribution().sample(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bandwidth"):
        IdealChannel(1e6).uplink(profiles, np.array([1e5, 0.0]), 1e6, np.random.default_rng(0))
