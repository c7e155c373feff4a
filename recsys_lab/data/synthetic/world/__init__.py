"""The synthetic world: users and ads on a timeline of days, with behaviour sequences, action
types, churn, drift, several domains, onboarding content and retention — and the true probability
of every label.

The planted model is written out in ``docs/synthetic_world.md``; in short, exposure ``e`` of user
``u`` to ad ``i`` (category ``c``, domain ``k``) at time ``t`` is clicked with probability
``σ(τ · z_click)`` where

    z_click = b + g_1 · first(u, i, context) + g_2 · cross(u, i) + g_3 · ⟨u(t), v_i⟩
                + g_4 · novelty(age of i) + cap · tanh((g_5 · H_cat(u, c, t) + g_6 · H_item(u, i, t)) / cap)

    H_cat(u, c, t)  = Σ_j w(a_j) · κ(r_j) · exp(-(t - t_j) / T) · [c_j = c]
    H_item(u, i, t) = Σ_j w(a_j) · κ(r_j) · exp(-(t - t_j) / T) · ⟨v_{i_j}, v_i⟩
    κ(r) = Σ_m α_m ρ_m^r,   ρ_m = 1 - 1 / d_m,   α_m ∝ (1 - ρ_m) d_m^γ,   κ(0) = 1

over the user's earlier events ``j`` (``r_j`` = how many events lie between ``j`` and ``e``;
``a_j`` its action: exposure, click or conversion; ``w`` = ``action_weights``), and ``τ`` the
noise temperature. A click converts with probability ``σ(τ · z_conv)`` built the same way; a
conversion triggers onboarding and retention (:mod:`recsys_lab.data.synthetic.onboarding`). Every gain ``g`` is calibrated
on a pilot simulation so that the component's standard deviation over exposures is the configured
scale, and every bias so that the mean probability is the configured base rate.

Generation runs user shard by user shard (``users_per_shard`` users each, all days). Shard ``s``
uses the random streams ``SeedSequence(seed, spawn_key=(stream, s, day))``, so the output depends
on ``seed``, the spec (``users_per_shard`` included) and nothing else — not on the number of worker
processes or the order shards are made in.

Modules: :mod:`.spec` (the knobs, :class:`WorldSpec`, and the presets), :mod:`.population` (who
exists when, their attributes, the planted parameters), :mod:`.simulation` (days of exposures,
clicks, conversions, retention and onboarding), :mod:`.calibration` (the gains and biases, so each
component has its configured scale and each label its base rate), :mod:`.events` (the output,
:class:`EventLog`) and :mod:`.world` (:class:`World`, which puts them together).
"""

from recsys_lab.data.synthetic.world.calibration import Gains, saturate
from recsys_lab.data.synthetic.world.events import EventLog
from recsys_lab.data.synthetic.world.population import Effects, Population, Users
from recsys_lab.data.synthetic.world.simulation import HistoryKernel, Retention, Simulator
from recsys_lab.data.synthetic.world.spec import (
    ACTION_NAMES,
    CLICK,
    CONVERSION,
    DAY,
    EXPOSURE,
    NUM_AGES,
    NUM_GENDERS,
    NUM_HOURS,
    WORLD_PRESETS,
    WorldSpec,
)
from recsys_lab.data.synthetic.world.world import World

__all__ = [
    "ACTION_NAMES",
    "CLICK",
    "CONVERSION",
    "DAY",
    "EXPOSURE",
    "NUM_AGES",
    "NUM_GENDERS",
    "NUM_HOURS",
    "WORLD_PRESETS",
    "Effects",
    "EventLog",
    "Gains",
    "HistoryKernel",
    "Population",
    "Retention",
    "Simulator",
    "Users",
    "World",
    "WorldSpec",
    "saturate",
]
