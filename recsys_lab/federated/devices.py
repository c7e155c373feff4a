"""Device profiles and the per-round energy of a device.

A device ``i`` has a battery ``E_i`` (J), a CPU at ``f_i`` (cycles/s), a cost of ``c`` cycles per
training sample, a transmit power ``p_i`` (W) and a channel gain ``g_i`` (linear, path loss only).
Per round of local training on ``n_i`` samples for ``epochs`` epochs it spends

    computation   E_cmp = cycles · energy per cycle = (epochs · n_i · c) · κ f_i²       (J)
                  t_cmp = epochs · n_i · c / f_i                                      (s)
    communication E_com = p_i · S / r_i,   r_i = b_i log2(1 + p_i g_i / (N0 b_i))        (J)

for an update of ``S`` bits over ``b_i`` Hz of allocated bandwidth (Shannon rate, noise power
spectral density ``N0``). ``κ`` is the effective switched capacitance of the CPU (energy per cycle
``κ f²``, the usual DVFS model).

Profiles are drawn from :class:`DeviceDistribution` (``conf/devices/*.yaml``):

- battery ``E_i``: log-uniform on ``[battery_min_j, battery_max_j]``;
- CPU ``f_i``: uniform on ``[cpu_min_hz, cpu_max_hz]``;
- transmit power ``p_i``: uniform on ``[tx_power_min_w, tx_power_max_w]``;
- distance ``d_i`` to the access point: uniform on ``[distance_min_m, distance_max_m]``, and the
  gain ``g_i = 10^(-PL(d_i)/10)`` with the 3GPP urban macro path loss
  ``PL(d) = 128.1 + 37.6 log10(d / 1 km)`` dB.

A device is *resource-rich* when its ``f_i · E_i`` is in the top ``rich_fraction`` of the
federation (FedMHO gives those a classifier, the others a small generative model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

N0_W_PER_HZ = 10 ** (-174 / 10) / 1000
"""Thermal noise power spectral density, -174 dBm/Hz, in W/Hz."""


def path_loss_db(distance_m: np.ndarray) -> np.ndarray:
    """3GPP urban macro path loss ``128.1 + 37.6 log10(d / 1 km)`` in dB. ``[K] -> [K]``."""
    return 128.1 + 37.6 * np.log10(np.asarray(distance_m, dtype=float) / 1000.0)


def shannon_rate(bandwidth_hz: np.ndarray, power_w: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Uplink rate ``b log2(1 + p g / (N0 b))`` in bit/s; 0 where ``b = 0``. Broadcasts ``[K]``."""
    b = np.asarray(bandwidth_hz, dtype=float)
    snr = (
        np.asarray(power_w, dtype=float)
        * np.asarray(gain, dtype=float)
        / (N0_W_PER_HZ * np.maximum(b, 1e-30))
    )
    return np.where(b > 0, b * np.log2(1.0 + snr), 0.0)


@dataclass(frozen=True)
class DeviceProfile:
    """One device: battery (J), CPU rate (cycles/s), transmit power (W), channel gain (linear)."""

    battery_j: float
    cpu_hz: float
    tx_power_w: float
    channel_gain: float

    def compute_time_s(self, cycles: float) -> float:
        return cycles / self.cpu_hz

    def compute_energy_j(self, cycles: float, kappa: float) -> float:
        """``cycles · κ f²`` (energy per cycle ``κ f²``)."""
        return cycles * kappa * self.cpu_hz**2


@dataclass(frozen=True)
class DeviceDistribution:
    """How device profiles are drawn (see the module docstring) and the energy constants.

    Args:
        battery_min_j, battery_max_j: battery range (log-uniform), J.
        cpu_min_hz, cpu_max_hz: CPU rate range (uniform), cycles/s.
        tx_power_min_w, tx_power_max_w: transmit power range (uniform), W.
        distance_min_m, distance_max_m: distance to the access point (uniform), m.
        cycles_per_sample: CPU cycles to train on one sample once (forward + backward).
        kappa: effective switched capacitance; energy per cycle is ``κ f²``.
        rich_fraction: share of devices counted as resource-rich (by ``f · battery``).
    """

    battery_min_j: float = 20.0
    battery_max_j: float = 200.0
    cpu_min_hz: float = 0.5e9
    cpu_max_hz: float = 2.0e9
    tx_power_min_w: float = 0.05
    tx_power_max_w: float = 0.2
    distance_min_m: float = 50.0
    distance_max_m: float = 500.0
    cycles_per_sample: float = 2.0e7
    kappa: float = 1.0e-28
    rich_fraction: float = 0.5

    def __post_init__(self) -> None:
        for lo, hi in (
            ("battery_min_j", "battery_max_j"),
            ("cpu_min_hz", "cpu_max_hz"),
            ("tx_power_min_w", "tx_power_max_w"),
            ("distance_min_m", "distance_max_m"),
        ):
            a, b = getattr(self, lo), getattr(self, hi)
            if not 0 < a <= b:
                raise ValueError(f"devices: need 0 < {lo} <= {hi}, got {lo}={a}, {hi}={b}")
        if self.cycles_per_sample <= 0 or self.kappa <= 0:
            raise ValueError(
                f"devices: cycles_per_sample={self.cycles_per_sample} and kappa={self.kappa} must be > 0"
            )
        if not 0 < self.rich_fraction <= 1:
            raise ValueError(f"devices: rich_fraction={self.rich_fraction} must be in (0, 1]")

    def sample(self, num_devices: int, rng: np.random.Generator) -> list[DeviceProfile]:
        """Draw ``num_devices`` independent profiles."""
        k = num_devices
        battery = np.exp(rng.uniform(math.log(self.battery_min_j), math.log(self.battery_max_j), k))
        cpu = rng.uniform(self.cpu_min_hz, self.cpu_max_hz, k)
        power = rng.uniform(self.tx_power_min_w, self.tx_power_max_w, k)
        gain = 10 ** (-path_loss_db(rng.uniform(self.distance_min_m, self.distance_max_m, k)) / 10)
        return [
            DeviceProfile(float(b), float(f), float(p), float(g))
            for b, f, p, g in zip(battery, cpu, power, gain, strict=True)
        ]

    def rich_mask(self, profiles: list[DeviceProfile]) -> np.ndarray:
        """bool ``[K]``: True for the top ``rich_fraction`` of devices by ``f · battery`` (at least one)."""
        score = np.array([p.cpu_hz * p.battery_j for p in profiles])
        num_rich = max(1, round(self.rich_fraction * len(profiles)))
        mask = np.zeros(len(profiles), dtype=bool)
        mask[np.argsort(-score, kind="stable")[:num_rich]] = True
        return mask
