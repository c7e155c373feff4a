"""Slotted random-access MAC simulators: CSMA/CA and two-way relaying random access.

Time is counted in idle backoff slots of length σ (Bianchi's "virtual slots"): an idle slot lasts
1, a busy period lasts ``packet_slots`` (= L, the packet airtime in slots). Each virtual slot, idle
or busy, every backlogged node that did not send counts its backoff down by one, as in Bianchi's
Markov chain.

**CSMA/CA** (802.11 DCF, basic access, binary exponential backoff): a node with a packet draws a
backoff counter uniformly in ``[0, W_s - 1]`` with ``W_s = 2^s · W`` at backoff stage
``s ∈ [0, m]``; the counter falls by one per idle slot; at 0 the node sends. One sender: success.
Two or more: collision, each sender moves to stage ``min(s + 1, m)`` and redraws; a success resets
the stage to 0.

**Two-way relaying random access** (``pairing=True``): the same contention, but a busy period in
which exactly *two* nodes start sending is not a collision. The access point acts as the relay of
an asynchronous two-way relaying exchange (analogue network coding): it forwards the
superposition, each side cancels its own signal, so the two packets are decoded without symbol
or carrier alignment and with no prior channel knowledge; the pair was formed on the fly by the
random access. **Decision:** such a pair exchange lasts ``pair_factor · L`` slots (1.0: the
relay's broadcast overlaps the next contention, the optimistic reading; 2.0 counts a separate
relay phase). Three or more simultaneous senders still collide.

Traffic is either saturated (every node always has a packet), a fixed number of packets per node
(one FL round's model updates), or Bernoulli arrivals of rate λ per node per slot (load sweeps,
with queue delay measured from arrival to the end of the delivering busy period).

Analytical figures: :func:`bianchi_throughput` (Bianchi 2000's fixed point for saturated CSMA/CA)
and its extension to pair-resolving contention (:func:`bianchi_throughput` with ``pairing=True``:
a node's packet fails only when two or more others send in its slot), plus slotted ALOHA
``S = G e^{-G}`` and its pair-resolving form ``S = (G + G²) e^{-G}`` (:func:`aloha_throughput`).
Throughput is the fraction of time carrying delivered payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq


@dataclass(frozen=True)
class MacConfig:
    """Contention parameters shared by both MACs.

    Args:
        cw_min: minimum contention window W (slots).
        max_stage: maximum backoff stage m (window ``2^m W``).
        packet_slots: packet airtime L in idle-slot units.
        pairing: False = CSMA/CA; True = two-way relaying random access (pairs succeed).
        pair_factor: airtime of a relayed pair exchange in units of L (see the module docstring).
    """

    cw_min: int = 16
    max_stage: int = 5
    packet_slots: int = 10
    pairing: bool = False
    pair_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.cw_min < 1 or self.max_stage < 0 or self.packet_slots < 1 or self.pair_factor <= 0:
            raise ValueError(
                f"MacConfig: need cw_min >= 1, max_stage >= 0, packet_slots >= 1, pair_factor > 0; got {self}"
            )


@dataclass
class MacStats:
    """What a simulation measured.

    Attributes:
        throughput: delivered payload airtime / elapsed time (0..1 for CSMA/CA; up to 2 with pairs).
        elapsed_slots: simulated time in idle-slot units.
        delivered: int ``[n]`` packets delivered per node.
        attempts: int ``[n]`` transmissions per node (collided ones included).
        finish_slot: float ``[n]`` time each node's last packet was delivered (NaN if never).
        mean_delay_slots: mean access (+ queueing, with arrivals) delay of delivered packets.
        collisions, successes, pairs: busy periods of each kind.
    """

    throughput: float
    elapsed_slots: float
    delivered: np.ndarray
    attempts: np.ndarray
    finish_slot: np.ndarray
    mean_delay_slots: float
    collisions: int
    successes: int
    pairs: int


def simulate(
    cfg: MacConfig,
    num_nodes: int,
    rng: np.random.Generator,
    *,
    packets: np.ndarray | None = None,
    arrival_rate: float | None = None,
    max_slots: float = 1e6,
) -> MacStats:
    """Run the MAC until every node's ``packets`` are delivered, or for ``max_slots`` slots.

    Args:
        packets: int ``[n]`` packets each node must send (an FL round's updates); None = saturated
            (with ``arrival_rate`` None) or arrivals only.
        arrival_rate: Bernoulli arrivals per node per idle-slot time (None = no arrivals).
        max_slots: stop after this much simulated time.
    """
    n = num_nodes
    if n < 1:
        raise ValueError(f"simulate: num_nodes={n} must be >= 1")
    if arrival_rate is not None and not 0 <= arrival_rate <= 1:
        raise ValueError(
            f"simulate: arrival_rate={arrival_rate} must be in [0, 1] (packets per slot per node)"
        )
    saturated = packets is None and arrival_rate is None
    if packets is None:
        queue = np.full(n, 1 if saturated else 0, dtype=np.int64)
    else:
        queue = np.asarray(packets, dtype=np.int64).copy()
        if queue.shape != (n,):
            raise ValueError(f"simulate: packets has shape {queue.shape}, expected [{n}]")
    # Arrival times of the queued packets, oldest first (a saturated node's next packet "arrives"
    # when the previous one leaves, so its delay is the access delay).
    heads: list[list[float]] = [[0.0] * int(q) for q in queue]
    stage = np.zeros(n, dtype=np.int64)
    counter = rng.integers(0, cfg.cw_min, n)
    delivered = np.zeros(n, dtype=np.int64)
    attempts = np.zeros(n, dtype=np.int64)
    finish = np.full(n, np.nan)
    delays: list[float] = []
    t = 0.0
    L = cfg.packet_slots
    collisions = successes = pairs = 0
    payload = 0.0

    def arrive(duration: float) -> None:
        if not arrival_rate:
            return
        new = rng.binomial(max(1, round(duration)), arrival_rate, n)
        for i in np.flatnonzero(new):
            if queue[i] == 0:  # an idle node starts a fresh backoff for its new head packet
                stage[i] = 0
                counter[i] = rng.integers(0, cfg.cw_min)
            queue[i] += new[i]
            heads[i].extend([t] * int(new[i]))

    while t < max_slots:
        active = queue > 0
        if not active.any():
            if not arrival_rate:
                break
            t += 1.0
            arrive(1.0)
            continue
        senders = np.flatnonzero(active & (counter == 0))
        k = senders.size
        if k == 0:  # an idle slot: every backlogged node counts down
            counter[active] -= 1
            t += 1.0
            arrive(1.0)
            continue
        attempts[senders] += 1
        # As in Bianchi's chain, every other backlogged node counts down once per virtual slot,
        # busy or idle (the counter steps at the slot boundary that ends the busy period).
        waiting = active.copy()
        waiting[senders] = False
        counter[waiting] -= 1
        ok = k == 1 or (cfg.pairing and k == 2)
        duration = cfg.pair_factor * L if (ok and k == 2) else float(L)
        t += duration
        if ok:
            successes += k == 1
            pairs += k == 2
            payload += k * L
            queue[senders] -= 1
            delivered[senders] += 1
            finish[senders] = t
            for i in senders:
                delays.append(t - heads[i].pop(0))
                if saturated:
                    queue[i] = 1
                    heads[i].append(t)
            stage[senders] = 0
        else:
            collisions += 1
            stage[senders] = np.minimum(stage[senders] + 1, cfg.max_stage)
        counter[senders] = rng.integers(0, cfg.cw_min * (2 ** stage[senders]))
        arrive(duration)

    return MacStats(
        throughput=payload / t if t > 0 else 0.0,
        elapsed_slots=t,
        delivered=delivered,
        attempts=attempts,
        finish_slot=finish,
        mean_delay_slots=float(np.mean(delays)) if delays else float("nan"),
        collisions=collisions,
        successes=successes,
        pairs=pairs,
    )


# ------------------------------------------------------------------------------------------------
# Analytical models
# ------------------------------------------------------------------------------------------------


def _tau_of_p(p: float, w: int, m: int) -> float:
    """Bianchi's per-slot transmission probability given the conditional failure probability ``p``."""
    if abs(1 - 2 * p) < 1e-12:
        p += 1e-9
    return 2 * (1 - 2 * p) / ((1 - 2 * p) * (w + 1) + p * w * (1 - (2 * p) ** m))


def _fail_prob(tau: float, n: int, pairing: bool) -> float:
    """P(a sender's packet fails) when each of the other ``n - 1`` nodes sends w.p. ``tau``."""
    none = (1 - tau) ** (n - 1)
    if not pairing:
        return 1 - none
    one = (n - 1) * tau * (1 - tau) ** (n - 2) if n >= 2 else 0.0
    return 1 - none - one


def bianchi_throughput(cfg: MacConfig, num_nodes: int) -> float:
    """Saturated throughput from Bianchi's fixed point ``τ = τ(p)``, ``p = P(fail | send)``.

    ``S = (P1 L + P2 · 2L [pairing]) / (P0 · 1 + P1 L + P2 T2 + Pc L)`` with ``P_k`` the
    probabilities that k nodes send in a slot (``Pc``: a collision) and ``T2`` the airtime of a
    pair (``pair_factor · L``, or ``L`` as a collision without pairing).
    """
    n, w, m, L = num_nodes, cfg.cw_min, cfg.max_stage, cfg.packet_slots
    if n == 1:
        tau = 2 / (w + 1)
    else:
        tau = brentq(lambda t: t - _tau_of_p(_fail_prob(t, n, cfg.pairing), w, m), 1e-9, 1 - 1e-9)
    p0 = (1 - tau) ** n
    p1 = n * tau * (1 - tau) ** (n - 1)
    p2 = math.comb(n, 2) * tau**2 * (1 - tau) ** (n - 2) if n >= 2 else 0.0
    if cfg.pairing:
        pc = 1 - p0 - p1 - p2
        return (p1 * L + p2 * 2 * L) / (p0 + p1 * L + p2 * cfg.pair_factor * L + pc * L)
    pc = 1 - p0 - p1
    return p1 * L / (p0 + p1 * L + pc * L)


def aloha_throughput(offered_load: np.ndarray, pairing: bool = False) -> np.ndarray:
    """Slotted ALOHA with Poisson load G: ``G e^{-G}``, or ``(G + G²) e^{-G}`` when pairs succeed."""
    g = np.asarray(offered_load, dtype=float)
    return (g + (g**2 if pairing else 0.0)) * np.exp(-g)
