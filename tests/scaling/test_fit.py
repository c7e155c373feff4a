"""Power-law fits recover known parameters, and their intervals behave."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_lab.scaling.fit import bootstrap_fit, fit_power_law, t_quantile_95


def _points(a: float, b: float, c: float, noise: float, n: int = 12, seed: int = 0):
    x = np.logspace(4, 8, n)  # parameter counts from 1e4 to 1e8
    rng = np.random.default_rng(seed)
    return x, a * x ** (-b) + c + noise * rng.standard_normal(n)


def test_exact_points_recover_a_b_c():
    x, y = _points(a=5.0, b=0.3, c=0.42, noise=0.0)
    fit = fit_power_law(x, y)
    assert fit.a == pytest.approx(5.0, rel=1e-4)
    assert fit.b == pytest.approx(0.3, rel=1e-4)
    assert fit.c == pytest.approx(0.42, abs=1e-6)
    assert fit.rss < 1e-12
    assert np.allclose(fit(x), y, atol=1e-6)


def test_noisy_points_intervals_cover_truth_and_shrink_with_noise():
    x, y = _points(a=3.0, b=0.25, c=0.45, noise=2e-4, n=16, seed=1)
    fit = fit_power_law(x, y)
    assert fit.b_ci[0] < 0.25 < fit.b_ci[1]
    assert fit.c_ci[0] < 0.45 < fit.c_ci[1]
    assert fit.a_ci[0] < 3.0 < fit.a_ci[1]
    noisier = fit_power_law(*_points(a=3.0, b=0.25, c=0.45, noise=2e-3, n=16, seed=1))
    assert (noisier.b_ci[1] - noisier.b_ci[0]) > 3 * (fit.b_ci[1] - fit.b_ci[0])


def test_bootstrap_intervals_cover_truth():
    x, y = _points(a=3.0, b=0.25, c=0.45, noise=2e-4, n=12, seed=2)
    fit = bootstrap_fit(x, y, samples=100)
    assert fit.b_ci[0] < 0.25 < fit.b_ci[1]
    assert fit.c_ci[0] < 0.45 < fit.c_ci[1]


def test_three_points_fit_without_intervals_and_two_points_fail():
    x, y = _points(a=2.0, b=0.5, c=0.1, noise=0.0, n=3)
    fit = fit_power_law(x, y)
    assert fit.b == pytest.approx(0.5, rel=1e-3)
    assert np.isnan(fit.b_ci[0])
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_power_law(x[:2], y[:2])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([0.0, 1.0, 2.0], [1.0, 0.5, 0.4])


def test_t_quantiles():
    assert t_quantile_95(1) == pytest.approx(12.706)
    assert t_quantile_95(100) == pytest.approx(1.96)
    assert np.isnan(t_quantile_95(0))
