"""Calibration: the gains and biases of the planted logits (:class:`Gains`), fitted on a pilot
simulation so that every logit component has the standard deviation its knob names and every
label its base rate, under the noise temperature ``τ`` (``WorldSpec.temperature``).

The true probabilities the world reports (the oracle) are ``σ(τ · z)`` of these calibrated logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recsys_lab.data.synthetic.onboarding import gaussian_expected_sigmoid, sigmoid
from recsys_lab.data.synthetic.world.population import Users, user_attributes
from recsys_lab.data.synthetic.world.spec import STREAM_PILOT

if TYPE_CHECKING:
    from recsys_lab.data.synthetic.world.simulation import Simulator

_CALIBRATION_PASSES = 3
_PILOT_KEYS = (
    "first",
    "cross",
    "interest",
    "novelty",
    "h_cat",
    "h_item",
    "conv_first",
    "ret_observable",
    "clicked",
)


@dataclass
class Gains:
    """Calibrated gains and biases of the planted logits (see the module docstring)."""

    click_bias: float = 0.0
    click_first: float = 1.0
    click_cross: float = 1.0
    click_interest: float = 1.0
    click_novelty: float = 1.0
    click_hist_cat: float = 0.0
    click_hist_item: float = 0.0
    conv_bias: float = 0.0
    conv_first: float = 1.0
    conv_interest: float = 1.0
    conv_hist: float = 0.0
    ret_bias: float = 0.0
    ret_observable: float = 1.0


def saturate(evidence: np.ndarray, cap: float) -> np.ndarray:
    """The history term of the logit from its linear evidence: ``cap · tanh(evidence / cap)``."""
    if cap <= 0:
        return np.zeros_like(evidence)
    return cap * np.tanh(evidence / cap)


def pilot_users(sim: Simulator) -> Users:
    """The pilot's users: ``calibration_users`` users present on every day, with their own draws."""
    spec = sim.spec
    n = spec.calibration_users
    rng = spec.rng(STREAM_PILOT)
    age, gender, region = user_attributes(rng, n, spec.num_regions)
    return Users.draw(
        spec,
        sim.effects,
        sim.pop.category_domain,
        rng,
        np.zeros(n, np.int32),
        np.zeros(n, np.int32),
        np.full(n, spec.num_days + 1, np.int32),
        age,
        gender,
        region,
    )


def calibrate(sim: Simulator) -> None:
    """Set every gain so its component has the configured sd, and every bias for its base rate.

    Static components are measured on the pilot's exposures (which do not depend on the gains);
    the history sums depend on past clicks, so the pilot is re-run with the updated gains
    (:data:`_CALIBRATION_PASSES` times) and the biases are solved on the last pass.
    """
    spec, g = sim.spec, sim.gains
    tau = spec.temperature
    days = min(spec.num_days, spec.calibration_days)
    g.click_bias = _logit(spec.base_ctr)
    g.conv_bias = _logit(spec.base_cvr)
    for _ in range(_CALIBRATION_PASSES):
        pilot = sim.simulate(pilot_users(sim), days, STREAM_PILOT, 0, pilot=True)
        mature = [d for d in pilot if d.day >= days // 2 and d.raw]  # histories built up
        raw = {key: np.concatenate([d.raw[key] for d in mature]) for key in _PILOT_KEYS}
        if raw["first"].size < 100:
            raise ValueError(
                "synthetic world: the calibration pilot produced fewer than 100 exposures; raise "
                "calibration_users or calibration_days"
            )
        g.click_first = _gain(spec.first_order_scale, raw["first"])
        g.click_cross = _gain(spec.cross_scale, raw["cross"])
        g.click_interest = _gain(spec.interest_scale, raw["interest"])
        g.click_novelty = _gain(spec.novelty_scale, raw["novelty"])
        g.click_hist_cat = _gain(spec.history_category_scale, raw["h_cat"])
        g.click_hist_item = _gain(spec.history_item_scale, raw["h_item"])
        static = (
            g.click_first * raw["first"]
            + g.click_cross * raw["cross"]
            + g.click_interest * raw["interest"]
            + g.click_novelty * raw["novelty"]
        )
        hist = saturate(g.click_hist_cat * raw["h_cat"] + g.click_hist_item * raw["h_item"], spec.history_cap)
        g.click_bias = _solve_bias(tau * (static + hist), spec.base_ctr, tau)
        clicked = raw["clicked"]
        if clicked.sum() < 20:
            raise ValueError(
                "synthetic world: the calibration pilot produced fewer than 20 clicks; raise "
                "calibration_users, calibration_days or base_ctr"
            )
        g.conv_first = _gain(spec.conversion_first_order_scale, raw["conv_first"][clicked])
        g.conv_interest = _gain(spec.conversion_interest_scale, raw["interest"][clicked])
        g.conv_hist = _gain(spec.conversion_history_scale, hist[clicked])
        conv = (g.conv_first * raw["conv_first"] + g.conv_interest * raw["interest"] + g.conv_hist * hist)[
            clicked
        ]
        g.conv_bias = _solve_bias(tau * conv, spec.base_cvr, tau)
    # Retention: the observable part on the pilot's clicks (converting users are clicking users).
    obs = raw["ret_observable"][clicked]
    g.ret_observable = _gain(spec.retention_observable_scale, obs)
    centred = g.ret_observable * obs
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        p = gaussian_expected_sigmoid(mid + centred, spec.retention_content_scale, tau).mean()
        lo, hi = (mid, hi) if p < spec.base_retention else (lo, mid)
    g.ret_bias = 0.5 * (lo + hi)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _gain(scale: float, raw: np.ndarray) -> float:
    """Gain that gives ``raw`` the standard deviation ``scale`` (0 when it is constant)."""
    sd = float(np.std(raw))
    return scale / sd if sd > 1e-12 else 0.0


def _solve_bias(z: np.ndarray, target: float, tau: float) -> float:
    """``b`` with ``mean(σ(τ b + z)) = target`` (bisection; monotone in ``b``)."""
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if sigmoid(tau * mid + z).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
