"""The shared wireless uplink of one round: how long the selected clients' updates take to reach
the server and how much energy each spends sending them.

- :class:`IdealChannel` (``channel=ideal``): orthogonal sub-bands (FDMA). Client ``i`` sends its
  ``S`` bits over its allocated ``b_i`` Hz at the Shannon rate ``r_i`` (no contention): time
  ``S / r_i``, energy ``p_i S / r_i``; the round's uplink lasts ``max_i S / r_i``.
- :class:`RandomAccessChannel` (``channel=csma_ca`` / ``channel=two_way_relay``): every client
  contends for the whole band ``B`` with the MAC of :mod:`.mac`. The update is cut into packets of
  ``packet_bits``; each packet's airtime is ``packet_slots`` idle slots, so the slot length is
  ``packet_bits / (packet_slots · R)`` at the common PHY rate ``R`` (the Shannon rate of the whole
  band at the median client's SNR). Each transmission attempt, collided or not, costs
  ``p_i · packet airtime``; the round lasts until the last packet is delivered.
  **Decision:** one common PHY rate keeps every packet's airtime equal, as the MAC models
  assume; the allocation of bandwidth does not apply (the band is shared in time).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from recsys_lab.federated.devices import DeviceProfile, shannon_rate
from recsys_lab.federated.mac import MacConfig, simulate


@dataclass
class UplinkResult:
    """One round's uplink. ``time_s`` and ``energy_j`` are float ``[K]`` per selected client;
    ``round_s`` is when the last update arrived."""

    time_s: np.ndarray
    energy_j: np.ndarray
    round_s: float


@dataclass
class Transmission:
    """What the ``K`` selected clients send in one round, each ``[K]``: transmit power (W), channel
    gain, allocated bandwidth (Hz) and update size (bits)."""

    power_w: np.ndarray
    gain: np.ndarray
    allocation_hz: np.ndarray
    bits: np.ndarray


class Channel(ABC):
    """Uplink model. ``bandwidth_hz`` is the whole band ``B``."""

    #: whether per-client bandwidth allocation (e.g. BEFL's SLSQP) applies to this channel
    allocates_bandwidth: bool = True

    def __init__(self, bandwidth_hz: float) -> None:
        if bandwidth_hz <= 0:
            raise ValueError(f"channel: bandwidth_hz={bandwidth_hz} must be > 0")
        self.bandwidth_hz = bandwidth_hz

    def uplink(
        self,
        profiles: list[DeviceProfile],
        allocation_hz: np.ndarray,
        bits: float | np.ndarray,
        rng: np.random.Generator,
    ) -> UplinkResult:
        """Send one update of ``bits`` (a float or ``[K]``) from each of the ``K`` clients in
        ``profiles`` (``allocation_hz``: ``[K]``); no client, no time and no energy."""
        k = len(profiles)
        if k == 0:
            return UplinkResult(np.zeros(0), np.zeros(0), 0.0)
        sent = Transmission(
            power_w=np.array([p.tx_power_w for p in profiles]),
            gain=np.array([p.channel_gain for p in profiles]),
            allocation_hz=np.asarray(allocation_hz, dtype=float),
            bits=np.broadcast_to(np.asarray(bits, dtype=float), (k,)),
        )
        return self._send(sent, rng)

    @abstractmethod
    def _send(self, sent: Transmission, rng: np.random.Generator) -> UplinkResult:
        """:meth:`uplink` for ``K >= 1`` clients."""


class IdealChannel(Channel):
    """Orthogonal sub-bands at the Shannon rate of each client's allocated bandwidth."""

    def _send(self, sent: Transmission, rng: np.random.Generator) -> UplinkResult:
        rate = shannon_rate(sent.allocation_hz, sent.power_w, sent.gain)
        if (rate <= 0).any():
            raise ValueError(
                f"ideal channel: every selected client needs bandwidth > 0, got {sent.allocation_hz}"
            )
        time_s = sent.bits / rate
        return UplinkResult(time_s, sent.power_w * time_s, float(time_s.max()))


class RandomAccessChannel(Channel):
    """Random access over the whole band with CSMA/CA (``pairing=False``) or two-way relaying.

    Args:
        bandwidth_hz: the band ``B``.
        packet_bits: bits per packet (the update is cut into ``ceil(S / packet_bits)`` packets).
        cw_min, max_stage, packet_slots, pairing, pair_factor: see :class:`~.mac.MacConfig`.
    """

    allocates_bandwidth = False

    def __init__(
        self,
        bandwidth_hz: float,
        packet_bits: float = 1.0e6,
        cw_min: int = 16,
        max_stage: int = 5,
        packet_slots: int = 10,
        pairing: bool = False,
        pair_factor: float = 1.0,
    ) -> None:
        super().__init__(bandwidth_hz)
        if packet_bits <= 0:
            raise ValueError(f"channel: packet_bits={packet_bits} must be > 0")
        self.packet_bits = packet_bits
        self.mac = MacConfig(cw_min, max_stage, packet_slots, pairing, pair_factor)

    def _send(self, sent: Transmission, rng: np.random.Generator) -> UplinkResult:
        k = len(sent.power_w)
        power, gain = np.median(sent.power_w), np.median(sent.gain)
        phy_rate = float(shannon_rate(np.array(self.bandwidth_hz), power, gain))
        packet_s = self.packet_bits / phy_rate
        slot_s = packet_s / self.mac.packet_slots
        packets = np.ceil(sent.bits / self.packet_bits).astype(np.int64)  # [K]
        stats = simulate(self.mac, k, rng, packets=packets, max_slots=1e9)
        time_s = stats.finish_slot * slot_s
        energy = sent.power_w * stats.attempts * packet_s
        return UplinkResult(time_s, energy, float(stats.elapsed_slots * slot_s))
