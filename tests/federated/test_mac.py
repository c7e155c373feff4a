"""MAC simulators against their analytical throughput, and the two-way relaying claim."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_lab.federated.mac import MacConfig, aloha_throughput, bianchi_throughput, simulate


@pytest.mark.parametrize("pairing", [False, True])
@pytest.mark.parametrize("nodes", [5, 20])
def test_saturated_throughput_matches_bianchi(pairing: bool, nodes: int) -> None:
    cfg = MacConfig(pairing=pairing)
    sim = simulate(cfg, nodes, np.random.default_rng(0), max_slots=3e4)
    assert sim.throughput == pytest.approx(bianchi_throughput(cfg, nodes), rel=0.04)
    assert (sim.pairs > 0) == pairing


def test_bianchi_single_node_has_no_collisions() -> None:
    cfg = MacConfig()
    # One node: mean backoff (W - 1) / 2 idle slots per packet of L slots.
    assert bianchi_throughput(cfg, 1) == pytest.approx(
        cfg.packet_slots / (cfg.packet_slots + (cfg.cw_min - 1) / 2)
    )


def test_two_way_relaying_scales_better_than_csma() -> None:
    """The relaying MAC's throughput is higher, and falls less from 5 to 50 nodes."""
    csma, relay = MacConfig(), MacConfig(pairing=True)
    c5, c50 = bianchi_throughput(csma, 5), bianchi_throughput(csma, 50)
    r5, r50 = bianchi_throughput(relay, 5), bianchi_throughput(relay, 50)
    assert r50 > c50 and r5 > c5
    assert r50 / r5 > c50 / c5


def test_batch_of_packets_is_delivered_and_attempts_count_collisions() -> None:
    cfg = MacConfig()
    stats = simulate(cfg, 4, np.random.default_rng(1), packets=np.array([3, 3, 3, 3]))
    assert stats.delivered.tolist() == [3, 3, 3, 3]
    # Every attempt either delivered a packet or took part in a collision of two or more.
    assert stats.attempts.sum() >= stats.delivered.sum() + 2 * stats.collisions
    assert stats.successes == 12 and stats.pairs == 0
    assert np.all(stats.finish_slot <= stats.elapsed_slots)


def test_light_load_delay_is_one_backoff_and_throughput_is_the_load() -> None:
    cfg = MacConfig()
    rate = 0.002  # packets per slot per node, 5 nodes x 10 slots: 10% load
    stats = simulate(cfg, 5, np.random.default_rng(2), arrival_rate=rate, max_slots=4e4)
    assert stats.throughput == pytest.approx(5 * rate * cfg.packet_slots, rel=0.15)
    assert stats.mean_delay_slots < 2 * (cfg.packet_slots + cfg.cw_min)


def test_aloha_formulas() -> None:
    g = np.array([1.0, (1 + 5**0.5) / 2])
    assert aloha_throughput(g)[0] == pytest.approx(np.exp(-1))
    assert aloha_throughput(g, pairing=True)[1] == pytest.approx(0.840, abs=1e-3)
