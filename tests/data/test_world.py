"""The synthetic world: determinism, invariants of the log, churn, drift, and each planted effect
measured statistically (fixed seeds: every number below is reproducible, the tolerances are
several standard errors wide)."""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recsys_lab.data.synthetic.onboarding import gaussian_expected_sigmoid, sigmoid
from recsys_lab.data.synthetic.sequences import history_index
from recsys_lab.data.synthetic.world import (
    CLICK,
    CONVERSION,
    DAY,
    EXPOSURE,
    WORLD_PRESETS,
    EventLog,
    World,
    WorldSpec,
    saturate,
)
from recsys_lab.metrics import auc
from recsys_lab.runners.stage import CONFIG_DIR

# A world big enough for statistics (~210k exposures), small enough to build in about a second.
STATS = {"num_users": 6000, "num_days": 10, "users_per_shard": 2048}


@pytest.fixture(scope="module")
def stats_world() -> tuple[World, EventLog]:
    world = World(WorldSpec.from_preset("tiny", STATS))
    return world, world.generate_all()


def _digest(log: EventLog) -> str:
    h = hashlib.sha256()
    for name in EventLog._EVENT_COLUMNS + EventLog._CONVERSION_COLUMNS:
        h.update(np.ascontiguousarray(getattr(log, name)).tobytes())
    h.update(log.onboarding.content.tobytes())
    return h.hexdigest()


def _first_rows(log: EventLog, total_users: int) -> np.ndarray:
    return np.searchsorted(log.user, np.arange(total_users + 2, dtype=np.int32))


def _fit_logistic(x: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method for ``y ~ σ(offset + b + x β)``; returns ``((b, β), standard errors)``."""
    x = np.c_[np.ones(len(x)), x]
    w = np.zeros(x.shape[1])
    for _ in range(30):
        p = sigmoid(x @ w + offset)
        hess = (x * (p * (1 - p))[:, None]).T @ x
        w -= np.linalg.solve(hess, x.T @ (p - y))
    return w, np.sqrt(np.diag(np.linalg.inv(hess)))


def _fit_saturated(x: np.ndarray, y: np.ndarray, static: np.ndarray, cap: float, tau: float):
    """Maximum likelihood of ``y ~ σ(τ (static + b + cap · tanh(x β / cap)))`` (the planted form);
    returns ``((b, β), standard errors)`` from the inverse Hessian."""
    xt, yt, st = (torch.from_numpy(a).double() for a in (x, y, static))

    def nll(theta: torch.Tensor) -> torch.Tensor:
        z = tau * (st + theta[0] + cap * torch.tanh(xt @ theta[1:] / cap))
        return torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="sum")

    theta = torch.ones(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nll(theta)
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small problem; numpy's BLAS threads may still be spinning
    try:
        opt.step(closure)
        hess = torch.autograd.functional.hessian(nll, theta.detach())
    finally:
        torch.set_num_threads(threads)
    return theta.detach().numpy(), np.sqrt(np.diag(np.linalg.inv(hess.numpy())))


# --------------------------------------------------------------------------------------------
# Spec, presets, configs
# --------------------------------------------------------------------------------------------


def test_presets_build_and_unknown_names_fail():
    for name in WORLD_PRESETS:
        spec = WorldSpec.preset(name)
        assert spec.total_users >= spec.num_users and spec.expected_events() > 0
    assert WorldSpec.preset("small") == WorldSpec()
    with pytest.raises(ValueError, match="preset='huge' is unknown"):
        WorldSpec.preset("huge")
    with pytest.raises(ValueError, match=r"unknown knob\(s\) \['num_user'\]"):
        WorldSpec.from_preset("tiny", {"num_user": 5})
    assert WorldSpec.from_preset("tiny", {"history_depths": [2, 4]}).history_depths == (2.0, 4.0)


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("num_users", 0, "must be >= 1"),
        ("base_ctr", 1.0, r"must be in \(0, 1\)"),
        ("user_churn_rate", 1.0, r"must be in \[0, 1\)"),
        ("history_depths", (1.0,), "each >= 1.25"),
        ("action_weights", (1.0, 2.0), "needs 3 weights"),
        ("num_categories", 2, "every domain needs a category"),
        ("max_events_per_day", 500, "float32 range"),
    ],
)
def test_bad_knobs_fail_with_a_message(knob, value, message):
    with pytest.raises(ValueError, match=message):
        WorldSpec.from_preset("tiny", {knob: value})


def test_the_world_knobs_are_written_once_and_list_every_knob():
    """``conf/data/world/default.yaml`` lists every knob of WorldSpec (null: the preset's value)."""
    cfg = yaml.safe_load((Path(CONFIG_DIR) / "data" / "world" / "default.yaml").read_text())
    assert list(cfg) == [f.name for f in fields(WorldSpec)]
    assert all(v is None for v in cfg.values())
    for data in ("synthetic_seq", "synthetic_stream"):  # they compose it rather than repeat it
        assert "world" not in yaml.safe_load((Path(CONFIG_DIR) / "data" / f"{data}.yaml").read_text())


@pytest.mark.parametrize(
    ("config", "overrides", "at"),
    [
        ("train", ["data=synthetic_seq"], "data"),
        ("train", ["data=synthetic_stream"], "data"),
        ("train", ["data=synthetic_seq", "debug=tiny"], "data"),
        ("train", ["data=feature_join"], "data.inner"),
        ("train", ["experiment=stream_one_pass"], "data"),
        ("federate", ["data=synthetic_seq"], "data"),
    ],
)
def test_composed_data_configs_carry_every_world_knob(hydra_ctx, config, overrides, at):
    """``data.world.<knob>=...`` works from the CLI for every knob (and only for real ones), in
    every config that holds the world: the knobs as they were when each data config listed them."""
    from hydra import compose
    from omegaconf import OmegaConf

    data = OmegaConf.select(compose(config_name=config, overrides=overrides), at)
    assert data.preset in WORLD_PRESETS
    assert OmegaConf.to_container(data.world) == {f.name: None for f in fields(WorldSpec)}
    knob = f"{at}.world.num_users=7"
    set_ = OmegaConf.select(compose(config_name=config, overrides=[*overrides, knob]), at)
    assert set_.world.num_users == 7 and set_.world.num_items is None
    with pytest.raises(Exception, match="num_user"):  # a misspelt knob fails at composition
        compose(config_name=config, overrides=[*overrides, f"{at}.world.num_user=7"])


# --------------------------------------------------------------------------------------------
# Determinism and invariants
# --------------------------------------------------------------------------------------------


def test_generation_is_deterministic_and_independent_of_workers():
    spec = WorldSpec.from_preset("tiny", {"num_users": 600, "num_days": 5, "users_per_shard": 200})
    a = World(spec).generate_all()
    b = World(spec).generate_all(workers=2)
    assert spec.num_shards >= 3
    assert _digest(a) == _digest(b)
    c = World(
        WorldSpec.from_preset("tiny", {"num_users": 600, "num_days": 5, "users_per_shard": 200, "seed": 1})
    )
    assert _digest(c.generate_all()) != _digest(a)
    # A shard is the same whether generated alone or with the others.
    assert _digest(World(spec).generate_shard(1)) == _digest(next(World(spec).generate(shards=[1])))


def test_log_invariants(stats_world):
    world, log = stats_world
    pop, spec = world.population, world.spec
    assert len(log) > 150_000
    # Sorted by user, then strictly increasing time within a user.
    same_user = log.user[1:] == log.user[:-1]
    assert np.all(log.user[1:] >= log.user[:-1])
    assert np.all(log.ts[1:][same_user] > log.ts[:-1][same_user])
    assert set(np.unique(log.action)) <= {EXPOSURE, EXPOSURE | CLICK, EXPOSURE | CLICK | CONVERSION}
    # Users and ads are only seen while they exist; the ad's category and domain are its own.
    day = log.ts // DAY
    assert np.all((pop.user_join[log.user] <= day) & (day < pop.user_leave[log.user]))
    assert np.all((pop.item_join[log.item] <= day) & (day < pop.item_leave[log.item]))
    assert np.array_equal(log.category, pop.item_category[log.item])
    assert np.array_equal(log.domain, pop.category_domain[log.category])
    for p in (log.p_click, log.p_cvr, log.p_retention, log.p_retention_observable):
        assert np.all((p > 0) & (p < 1))
    # Per-day counts stay under the cap.
    _, per_user_day = np.unique(log.user.astype(np.int64) * 1000 + day, return_counts=True)
    assert per_user_day.max() <= spec.max_events_per_day
    # Conversions table: one row per converted exposure, in order.
    conv = np.flatnonzero(log.action & CONVERSION)
    assert np.array_equal(log.conv_event, conv)
    assert np.array_equal(log.conversion[conv], np.arange(conv.size))
    assert np.all(log.conversion[log.action & CONVERSION == 0] == -1)


def test_true_probabilities_are_calibrated(stats_world):
    """Labels are drawn from the stored probabilities: observed rates match their means."""
    _, log = stats_world
    click = (log.action & CLICK) > 0
    conv = (log.action & CONVERSION) > 0
    n = len(log)
    for observed, expected, count in (
        (click.mean(), log.p_click.mean(), n),
        (conv[click].mean(), log.p_cvr[click].mean(), click.sum()),
        (log.retained.mean(), log.p_retention.mean(), log.num_conversions),
        (log.retained.mean(), log.p_retention_observable.mean(), log.num_conversions),
    ):
        se = np.sqrt(expected * (1 - expected) / count)
        assert abs(observed - expected) < 4 * se + 1e-3, (observed, expected)


def test_calibration_hits_the_configured_scales(stats_world):
    world, log = stats_world
    spec = world.spec
    late = (log.ts // DAY) >= spec.num_days // 2  # histories built up, as in the pilot
    parts = log.logit_parts[late].astype(np.float64)
    assert parts[:, 1].std() == pytest.approx(spec.history_category_scale, rel=0.35)
    assert parts[:, 2].std() == pytest.approx(spec.history_item_scale, rel=0.35)
    assert ((log.action[late] & CLICK) > 0).mean() == pytest.approx(spec.base_ctr, rel=0.3)
    assert log.retained.mean() == pytest.approx(spec.base_retention, rel=0.3)


# --------------------------------------------------------------------------------------------
# Churn and drift
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["user", "item"])
def test_daily_churn_and_arrivals_match_the_configuration(stats_world, who):
    world, _ = stats_world
    spec, pop = world.spec, world.population
    join, leave = getattr(pop, f"{who}_join")[1:], getattr(pop, f"{who}_leave")[1:]
    arrivals = spec.new_users_per_day if who == "user" else spec.new_items_per_day
    rate = spec.user_churn_rate if who == "user" else spec.item_churn_rate
    left = present = 0
    for d in range(1, spec.num_days):
        assert (join == d).sum() == arrivals  # exact
        was_present = (join <= d - 1) & (d - 1 < leave)
        present += was_present.sum()
        left += (was_present & (leave == d)).sum()
    se = np.sqrt(rate * (1 - rate) / present)
    assert abs(left / present - rate) < 4 * se, (left / present, rate)


def test_popularity_drifts_and_exposures_follow_it(stats_world):
    world, log = stats_world
    pop = world.log_popularity
    alive = np.arange(1, world.spec.num_items + 1)  # the day-0 catalogue
    near = np.corrcoef(pop[1, alive], pop[2, alive])[0, 1]
    far = np.corrcoef(pop[1, alive], pop[9, alive])[0, 1]
    assert far < near < 1.0
    # Exposure counts of a day track that day's popularity better than another day's.
    day = log.ts // DAY
    counts = np.bincount(log.item[day == 9], minlength=pop.shape[1])[alive]
    untargeted_share = np.log1p(counts)
    assert (
        np.corrcoef(untargeted_share, pop[9, alive])[0, 1]
        > np.corrcoef(untargeted_share, pop[1, alive])[0, 1]
    )


def _category_overlap(log: EventLog, num_categories: int, early: range, late: range) -> float:
    """Mean over users of the overlap of their exposure-category distributions in two windows."""
    day = log.ts // DAY
    users, inv = np.unique(log.user, return_inverse=True)
    out = []
    for window in (early, late):
        m = (day >= window.start) & (day < window.stop)
        h = np.zeros((users.size, num_categories + 1))
        np.add.at(h, (inv[m], log.category[m].astype(np.int64)), 1.0)
        out.append(h / np.maximum(h.sum(1, keepdims=True), 1))
    both = (out[0].sum(1) > 0) & (out[1].sum(1) > 0)
    return float(np.minimum(out[0], out[1])[both].sum(1).mean())


def test_interest_drift_moves_what_users_are_shown_and_click():
    base = {"num_users": 1500, "num_days": 12, "user_churn_rate": 0.0}
    overlap = {}
    for drift in (0.0, 0.5):
        world = World(WorldSpec.from_preset("tiny", {**base, "interest_drift": drift}))
        overlap[drift] = _category_overlap(
            world.generate_all(), world.spec.num_categories, range(0, 3), range(9, 12)
        )
    assert overlap[0.5] < overlap[0.0] - 0.05, overlap


# --------------------------------------------------------------------------------------------
# The history effect
# --------------------------------------------------------------------------------------------


def _history_sums(world: World, log: EventLog, rows: np.ndarray, max_len: int | None, actions=None):
    first = _first_rows(log, world.spec.total_users)[log.user[rows]]
    offsets, hist = history_index(first, rows, max_len)
    return world.history_sums(
        log.item[hist],
        log.category[hist],
        log.action[hist],
        log.ts[hist],
        offsets,
        log.item[rows],
        log.ts[rows],
        actions,
    )


def test_lazy_history_state_equals_the_explicit_sums(stats_world):
    """The generator's O(1)-per-event state gives exactly Σ_j w(a_j) κ(r_j) e^{-Δt/T} sim_j."""
    world, log = stats_world
    rows = np.arange(0, len(log), 7)
    h_cat, h_item = _history_sums(world, log, rows, None)
    g = world.gains
    np.testing.assert_allclose(g.click_hist_cat * h_cat, log.logit_parts[rows, 1], atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(g.click_hist_item * h_item, log.logit_parts[rows, 2], atol=2e-4, rtol=1e-4)


def test_oracle_auc_rises_as_the_history_is_truncated_less(stats_world):
    """The planted logit computed from the last K events only: more history, better AUC, with
    diminishing returns."""
    world, log = stats_world
    rows = np.flatnonzero(log.ts // DAY >= 3)[::2]
    y = torch.from_numpy(((log.action[rows] & CLICK) > 0).astype(np.float32))
    static = log.logit_parts[rows, 0].astype(np.float64)
    g = world.gains
    aucs = []
    for k in (0, 1, 4, 16, None):
        if k == 0:
            z = static
        else:
            h_cat, h_item = _history_sums(world, log, rows, k)
            z = static + saturate(
                g.click_hist_cat * h_cat + g.click_hist_item * h_item, world.spec.history_cap
            )
        aucs.append(auc(torch.sigmoid(torch.from_numpy(z)), y))
    print("AUC by history length K = 0, 1, 4, 16, all:", np.round(aucs, 4))
    gains = np.diff(aucs)
    assert np.all(gains > 0), aucs
    assert aucs[-1] - aucs[0] > 0.02, aucs  # the history is worth a lot
    assert gains[0] > gains[-1], aucs  # diminishing returns


def test_action_types_carry_their_configured_weights(stats_world):
    """Click labels, regressed on the history evidence split by the action of the past event (with
    the static logit as an offset, in the planted saturating form), recover the configured action
    weights: a past conversion says 30x more than a past exposure."""
    world, log = stats_world
    spec, g, tau = world.spec, world.gains, world.spec.temperature
    rows = np.flatnonzero(log.ts // DAY >= 3)[::2]
    y = ((log.action[rows] & CLICK) > 0).astype(np.float64)
    feats = []
    for action, weight in zip(
        (EXPOSURE, EXPOSURE | CLICK, EXPOSURE | CLICK | CONVERSION), spec.action_weights
    ):
        h_cat, h_item = _history_sums(world, log, rows, None, actions=(action,))
        feats.append((g.click_hist_cat * h_cat + g.click_hist_item * h_item) / weight)
    static = log.logit_parts[rows, 0].astype(np.float64)
    beta, se = _fit_saturated(np.stack(feats, 1), y, static, spec.history_cap, tau)
    print("recovered", beta.round(3), "±", se.round(3), "configured", spec.action_weights)
    assert abs(beta[0]) < 4 * se[0] + 0.02  # no bias left
    for b, s, w in zip(beta[1:], se[1:], spec.action_weights):
        assert abs(b - w) < 4 * s + 0.05 * w, (beta, se, spec.action_weights)
    # And plainly: after a same-category conversion users click more than after a click, and after a
    # click more than after a mere exposure.
    prev_same = rows[(log.user[rows] == log.user[rows - 1]) & (log.category[rows] == log.category[rows - 1])]
    rate = {
        a: ((log.action[prev_same][log.action[prev_same - 1] == a] & CLICK) > 0).mean() for a in (1, 3, 7)
    }
    assert rate[7] > rate[3] > rate[1], rate


# --------------------------------------------------------------------------------------------
# Domains, onboarding, retention, noise
# --------------------------------------------------------------------------------------------


def test_domains_share_users(stats_world):
    world, log = stats_world
    d = world.spec.num_domains
    counts = np.bincount(log.domain, minlength=d + 1)[1:]
    assert np.all(counts > 0)
    assert counts[0] > counts[-1]  # skewed shares: domain 1 is the largest
    # Most active users see several domains.
    per_user = np.unique(log.user.astype(np.int64) * 16 + log.domain, return_counts=False) // 16
    _, domains_per_user = np.unique(per_user, return_counts=True)
    assert np.mean(domains_per_user >= 2) > 0.5


def test_onboarding_content_is_consistent(stats_world):
    world, log = stats_world
    spec, ob = world.spec, log.onboarding
    assert ob.offsets.size == log.num_conversions + 1 > 100
    conv_of_row = np.repeat(np.arange(log.num_conversions), np.diff(ob.offsets))
    conv_ts = log.ts[log.conv_event][conv_of_row]
    assert np.all((ob.ts > conv_ts) & (ob.ts < conv_ts + spec.retention_days * DAY))
    assert ob.session.min() >= 1 and ob.session.max() <= spec.max_sessions
    content_domain = (ob.content.astype(np.int64) - 1) // spec.content_per_domain + 1
    assert np.array_equal(content_domain, log.domain[log.conv_event][conv_of_row])
    assert np.array_equal(ob.theme, world.content.theme[ob.content])


def test_retention_depends_strongly_on_onboarding_and_weakly_on_the_rest(stats_world):
    world, log = stats_world
    y = torch.from_numpy(log.retained.astype(np.float32))
    oracle = auc(torch.from_numpy(log.p_retention), y)
    observable = auc(torch.from_numpy(log.p_retention_observable), y)
    assert oracle > observable + 0.1, (oracle, observable)
    assert observable > 0.52
    # The content itself carries it: sessions played and stickiness of what was consumed.
    ob = log.onboarding
    conv_of_row = np.repeat(np.arange(log.num_conversions), np.diff(ob.offsets))
    sessions = np.zeros(log.num_conversions)
    np.maximum.at(sessions, conv_of_row, ob.session.astype(np.float64))
    late = ob.session >= 2
    stick = np.bincount(
        conv_of_row[late], weights=world.content.stickiness[ob.content[late]], minlength=sessions.size
    )
    stick /= np.maximum(np.bincount(conv_of_row[late], minlength=sessions.size), 1)
    obs_logit = np.log(log.p_retention_observable / (1 - log.p_retention_observable)).astype(np.float64)
    x = np.stack([sessions, stick], 1)
    beta, _ = _fit_logistic(x, log.retained.astype(np.float64), obs_logit)
    z = obs_logit + beta[0] + x @ beta[1:]
    with_content = auc(torch.sigmoid(torch.from_numpy(z)), y)
    assert with_content > observable + 0.05, (with_content, observable)
    assert np.all(beta[1:] > 0)


def test_gauss_hermite_expectation_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 2, size=50)
    eps = rng.standard_normal(200_000)
    mc = sigmoid(0.8 * (mean[:, None] + 1.5 * eps[None, :])).mean(1)
    np.testing.assert_allclose(gaussian_expected_sigmoid(mean, 1.5, 0.8), mc, atol=3e-3)


def test_noise_lowers_the_best_possible_auc():
    small = {"num_users": 1200, "num_days": 6}
    aucs = []
    for noise in (0.0, 2.0):
        log = World(WorldSpec.from_preset("tiny", {**small, "noise": noise})).generate_all()
        y = torch.from_numpy(((log.action & CLICK) > 0).astype(np.float32))
        aucs.append(auc(torch.from_numpy(log.p_click), y))
    assert aucs[1] < aucs[0] - 0.03, aucs


def test_engagement_correlation_makes_retention_predictable_before_conversion():
    """``engagement_correlation`` ρ: the observable-only oracle rises with ρ and stays the exact
    conditional expectation of the true probability (calibrated within its own quintiles); ρ = 0
    draws exactly what the world drew before the knob existed (the default)."""
    out = {}
    for rho in (0.0, 0.6):
        log = World(
            WorldSpec.from_preset("tiny", {"num_users": 6000, "engagement_correlation": rho})
        ).generate_all()
        y = torch.from_numpy(log.retained.astype(np.float32))
        p_obs, p_true = log.p_retention_observable.astype(np.float64), log.p_retention.astype(np.float64)
        out[rho] = auc(torch.from_numpy(p_obs), y), auc(torch.from_numpy(p_true), y)
        edges = np.quantile(p_obs, np.linspace(0, 1, 6)[1:-1])  # quintiles: ~290 rows each
        quintile = np.searchsorted(edges, p_obs)
        for d in range(5):
            sel = quintile == d  # sd of p_true ~0.25: standard error of the mean ~0.015
            assert abs(p_obs[sel].mean() - p_true[sel].mean()) < 0.06, (rho, d)
    assert out[0.6][0] > out[0.0][0] + 0.15, out  # observables now predict much of the engagement
    assert out[0.6][1] > out[0.6][0], out  # the content still adds information
    with pytest.raises(ValueError, match="engagement_correlation"):
        WorldSpec(engagement_correlation=1.5)
