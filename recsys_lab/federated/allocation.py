"""Uplink bandwidth allocation: equal shares, or BEFL's SLSQP energy minimisation.

For the ``K`` selected clients with update size ``S`` bits, transmit power ``p_i``, gain ``g_i``
and local computation time ``t_i``, SLSQP (``scipy.optimize.minimize``) solves over the shares
``x_i = b_i / B``::

    minimise    Σ_i p_i S / r_i(x_i B)  +  λ · std_i(e_i + p_i S / r_i(x_i B))
    subject to  Σ_i x_i ≤ 1,   x_i ≥ x_min,
                t_i + S / r_i(x_i B) ≤ T        (only when a deadline T is given)

with ``r_i(b) = b log2(1 + p_i g_i / (N0 b))`` and ``e_i`` the energy client ``i`` has already
spent (so λ > 0 also evens out energy use across devices). Equal allocation ``x_i = 1 / K`` is the
starting point and the fallback if SLSQP fails; the better of the two feasible points is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from recsys_lab.federated.devices import DeviceProfile, shannon_rate


@dataclass
class Allocation:
    """``bandwidth_hz``: float ``[K]``; ``energy_j``/``time_s``: the uplink energy and time it gives."""

    bandwidth_hz: np.ndarray
    energy_j: np.ndarray
    time_s: np.ndarray
    solver_ok: bool


def uplink_energy(
    shares: np.ndarray, profiles: list[DeviceProfile], bits: float | np.ndarray, bandwidth_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """(energy_j [K], time_s [K]) of sending ``bits`` with bandwidth ``shares · B``."""
    power = np.array([p.tx_power_w for p in profiles])
    gain = np.array([p.channel_gain for p in profiles])
    rate = shannon_rate(np.asarray(shares) * bandwidth_hz, power, gain)
    time_s = bits / np.maximum(rate, 1e-12)
    return power * time_s, time_s


def equal_allocation(
    profiles: list[DeviceProfile], bits: float | np.ndarray, bandwidth_hz: float
) -> Allocation:
    k = len(profiles)
    shares = np.full(k, 1.0 / max(k, 1))
    energy, time_s = uplink_energy(shares, profiles, bits, bandwidth_hz)
    return Allocation(shares * bandwidth_hz, energy, time_s, True)


def slsqp_allocation(
    profiles: list[DeviceProfile],
    bits: float | np.ndarray,
    bandwidth_hz: float,
    compute_time_s: np.ndarray | None = None,
    deadline_s: float | None = None,
    spent_j: np.ndarray | None = None,
    spread_weight: float = 0.0,
    min_share: float = 1e-3,
) -> Allocation:
    """Minimise the uplink energy (plus ``spread_weight`` × its spread) with SLSQP; see the module doc."""
    k = len(profiles)
    if k == 0:
        return Allocation(np.zeros(0), np.zeros(0), np.zeros(0), True)
    if not 0 < min_share * k <= 1:
        raise ValueError(f"slsqp_allocation: min_share={min_share} × K={k} must be in (0, 1]")
    t_cmp = np.zeros(k) if compute_time_s is None else np.asarray(compute_time_s, dtype=float)
    spent = np.zeros(k) if spent_j is None else np.asarray(spent_j, dtype=float)
    equal = equal_allocation(profiles, bits, bandwidth_hz)
    scale = float(equal.energy_j.sum()) or 1.0  # objective of order 1 for SLSQP's tolerances

    def objective(x: np.ndarray) -> float:
        e, _ = uplink_energy(x, profiles, bits, bandwidth_hz)
        value = e.sum()
        if spread_weight > 0 and k > 1:
            value += spread_weight * np.std(spent + e)
        return float(value / scale)

    constraints: list[dict] = [{"type": "ineq", "fun": lambda x: 1.0 - x.sum()}]
    if deadline_s is not None:
        constraints.append(
            {
                "type": "ineq",
                "fun": lambda x: deadline_s - t_cmp - uplink_energy(x, profiles, bits, bandwidth_hz)[1],
            }
        )
    res = minimize(
        objective,
        np.full(k, 1.0 / k),
        method="SLSQP",
        bounds=[(min_share, 1.0)] * k,
        constraints=constraints,
        options={"maxiter": 200, "ftol": 1e-9},
    )
    x = np.clip(res.x, min_share, 1.0)
    x = x / max(1.0, x.sum())  # exactly within the band
    energy, time_s = uplink_energy(x, profiles, bits, bandwidth_hz)
    feasible = deadline_s is None or bool((t_cmp + time_s <= deadline_s * (1 + 1e-6)).all())
    if not feasible or objective(x) > objective(np.full(k, 1.0 / k)):
        return Allocation(equal.bandwidth_hz, equal.energy_j, equal.time_s, False)
    return Allocation(x * bandwidth_hz, energy, time_s, bool(res.success))
