"""Power-law fits ``L(x) = a·x^(−b) + c`` with confidence intervals (numpy only).

The fit is nonlinear least squares on ``θ = (log A, b, c)`` with ``x`` normalised by its geometric
mean ``x0`` (``L = A·(x/x0)^(−b) + c``, ``a = A·x0^b``), which keeps the problem well conditioned
whatever the units of ``x`` (parameters, FLOPs, tokens). Levenberg-Marquardt runs from several
starting values of ``c`` (below ``min(L)``, where ``log(L − c)`` is linear in ``log x``) and keeps
the best. Confidence intervals come from the Jacobian covariance ``s²·(JᵀJ)⁻¹`` with
``s² = RSS / (n − 3)`` and Student's t quantile (so they need ``n > 3`` points); ``a``'s interval
is the image of ``log a``'s. :func:`bootstrap_fit` gives percentile intervals by resampling the
residuals instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Two-sided 95% Student's t quantiles, df = 1..30 (beyond: the normal 1.96 within 2%).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom (NaN for df < 1)."""
    if df < 1:
        return float("nan")
    return _T95[df - 1] if df <= len(_T95) else 1.96


Interval = tuple[float, float]


@dataclass(frozen=True)
class PowerLawFit:
    """``L(x) = a·x^(−b) + c`` fitted to ``n`` points.

    Attributes:
        a, b, c: the parameters.
        a_ci, b_ci, c_ci: 95% intervals (NaN bounds when ``n <= 3`` or the fit is degenerate).
        rss: residual sum of squares. n: number of points.
    """

    a: float
    b: float
    c: float
    a_ci: Interval
    b_ci: Interval
    c_ci: Interval
    rss: float
    n: int

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.a * np.power(np.asarray(x, dtype=np.float64), -self.b) + self.c

    def summary(self) -> str:
        def fmt(v: float, ci: Interval) -> str:
            return f"{v:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"

        return f"a={fmt(self.a, self.a_ci)}  b={fmt(self.b, self.b_ci)}  c={fmt(self.c, self.c_ci)}  (n={self.n})"


def _model(theta: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions ``[n]`` and Jacobian ``[n, 3]`` wrt (log A, b, c) at ``u = log(x/x0)``."""
    log_a, b, c = theta
    p = np.exp(log_a - b * u)  # A·(x/x0)^(−b)
    jac = np.stack([p, -u * p, np.ones_like(u)], axis=1)
    return p + c, jac


def _levenberg_marquardt(theta: np.ndarray, u: np.ndarray, y: np.ndarray, iters: int = 200) -> np.ndarray:
    lam = 1e-3
    pred, jac = _model(theta, u)
    rss = float(np.sum((y - pred) ** 2))
    for _ in range(iters):
        r = y - pred
        jtj = jac.T @ jac
        step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), jac.T @ r)
        cand = theta + step
        cand_pred, cand_jac = _model(cand, u)
        cand_rss = float(np.sum((y - cand_pred) ** 2))
        if np.isfinite(cand_rss) and cand_rss < rss:
            converged = rss - cand_rss <= 1e-14 * max(rss, 1e-300)
            theta, pred, jac, rss = cand, cand_pred, cand_jac, cand_rss
            lam = max(lam / 10, 1e-12)
            if converged:
                break
        else:
            lam *= 10
            if lam > 1e12:
                break
    return theta


def _check(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"fit_power_law: x and y must be 1-D of equal length, got {xs.shape} and {ys.shape}")
    if xs.size < 3:
        raise ValueError(f"fit_power_law needs at least 3 points for 3 parameters (a, b, c), got {xs.size}")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("fit_power_law: x and y must be finite (drop runs whose metric is NaN)")
    if np.any(xs <= 0):
        raise ValueError(f"fit_power_law: x must be positive, got min {xs.min()}")
    return xs, ys


def _fit_theta(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    spread = float(y.max() - y.min()) or max(abs(float(y.mean())), 1.0) * 1e-3
    best: tuple[np.ndarray, float] | None = None
    for frac in (0.01, 0.1, 0.3, 1.0, 3.0):
        c0 = float(y.min()) - frac * spread
        slope, intercept = np.polyfit(u, np.log(y - c0), 1)
        theta = _levenberg_marquardt(np.array([intercept, -slope, c0]), u, y)
        rss = float(np.sum((y - _model(theta, u)[0]) ** 2))
        if np.isfinite(rss) and (best is None or rss < best[1]):
            best = (theta, rss)
    assert best is not None
    return best


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLawFit:
    """Least-squares fit of ``y = a·x^(−b) + c`` with 95% intervals from the Jacobian covariance.

    Args:
        x: [n] positive sizes (parameters, FLOPs, tokens, history length).
        y: [n] losses.
    """
    xs, ys = _check(x, y)
    log_x0 = float(np.mean(np.log(xs)))
    u = np.log(xs) - log_x0
    theta, rss = _fit_theta(u, ys)
    log_a_hat, b, c = (float(v) for v in theta)
    log_a = log_a_hat + b * log_x0  # a = A·x0^b
    n = xs.size
    nan: Interval = (float("nan"), float("nan"))
    a_ci = b_ci = c_ci = nan
    if n > 3:
        _, jac = _model(theta, u)
        try:
            cov = rss / (n - 3) * np.linalg.inv(jac.T @ jac)
        except np.linalg.LinAlgError:
            cov = None
        if cov is not None:
            t = t_quantile_95(n - 3)
            # Var(log a) = Var(log A + b·log x0) through the covariance of (log A, b).
            var_log_a = cov[0, 0] + 2 * log_x0 * cov[0, 1] + log_x0**2 * cov[1, 1]
            half = [t * math.sqrt(max(v, 0.0)) for v in (var_log_a, cov[1, 1], cov[2, 2])]
            a_ci = (math.exp(log_a - half[0]), math.exp(log_a + half[0]))
            b_ci = (b - half[1], b + half[1])
            c_ci = (c - half[2], c + half[2])
    return PowerLawFit(math.exp(log_a), b, c, a_ci, b_ci, c_ci, rss, n)


def bootstrap_fit(x: Sequence[float], y: Sequence[float], samples: int = 200, seed: int = 0) -> PowerLawFit:
    """The least-squares fit with 95% percentile intervals from a residual bootstrap."""
    xs, ys = _check(x, y)
    base = fit_power_law(xs, ys)
    resid = ys - base(xs)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        y_star = base(xs) + rng.choice(resid, size=resid.size, replace=True)
        f = fit_power_law(xs, y_star)
        draws.append((f.a, f.b, f.c))
    arr = np.asarray(draws)
    lo, hi = np.nanpercentile(arr, [2.5, 97.5], axis=0)
    return PowerLawFit(
        base.a,
        base.b,
        base.c,
        (float(lo[0]), float(hi[0])),
        (float(lo[1]), float(hi[1])),
        (float(lo[2]), float(hi[2])),
        base.rss,
        base.n,
    )
