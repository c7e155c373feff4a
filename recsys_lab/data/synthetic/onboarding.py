"""Onboarding content after a conversion, and the retention it reveals.

After a conversion on an ad ``i`` (an app of domain ``k``) at time ``t``, the user draws a latent
engagement ``ε ~ N(0, 1)`` and consumes onboarding content: ``n_s = 1 + Binomial(S - 1, σ(a_s ε))``
sessions (``S = max_sessions``); session ``s`` (0-based) holds ``L_s ~ Uniform{1..L}`` items
(``L = max_session_items``) drawn i.i.d. from the domain's content pool with logits

    ℓ_s(p) = ⟨v_i + u, w_p⟩ + tilt · (s + 1) / S · ε · stick_p,

where ``w_p`` is the content item's latent vector (the space of user interests ``u`` and ad
vectors ``v_i``), and ``stick_p`` its standardised stickiness. Engaged users (large ``ε``) play more
sessions and drift to sticky content, more so in later sessions, so the content reveals ``ε``
and later sessions reveal more of it.

Retention (the user is still active on the advertised app ``retention_days`` days later) is drawn
from ``σ(c · (b + g_o · O + content_scale · ε))``: ``O`` is the observable part (see
:mod:`recsys_lab.data.synthetic.world`), ``c`` the noise temperature. Because ``ε`` is Gaussian,
the best prediction from observable features alone, ``E_ε[σ(c · (b + g_o O + s ε))]``, is computed
exactly (to ~1e-12) with Gauss–Hermite quadrature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_HERMITE_NODES = 48
_SESSION_GAIN = 1.2  # a_s: how strongly engagement drives the number of sessions
_ITEM_SPACING_S = 90  # seconds between consecutive items of a session


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float64)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


@dataclass
class Onboarding:
    """Onboarding content of ``n`` conversions, packed per conversion (oldest first).

    Attributes:
        offsets: int64 ``[n + 1]``; conversion j owns rows ``offsets[j]:offsets[j+1]``.
        content: int32 ``[N]`` global content id (``1..num_domains · content_per_domain``).
        theme: int16 ``[N]`` global theme id (``1..num_domains · content_themes``).
        session: int8 ``[N]`` session number, 1-based.
        ts: int64 ``[N]`` consumption time (seconds), after the conversion.
    """

    offsets: np.ndarray
    content: np.ndarray
    theme: np.ndarray
    session: np.ndarray
    ts: np.ndarray

    @staticmethod
    def empty() -> Onboarding:
        return Onboarding(
            offsets=np.zeros(1, np.int64),
            content=np.zeros(0, np.int32),
            theme=np.zeros(0, np.int16),
            session=np.zeros(0, np.int8),
            ts=np.zeros(0, np.int64),
        )

    @staticmethod
    def concat(parts: list[Onboarding]) -> Onboarding:
        if not parts:
            return Onboarding.empty()
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        offsets = np.zeros(lengths.size + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Onboarding(
            offsets=offsets,
            content=np.concatenate([p.content for p in parts]),
            theme=np.concatenate([p.theme for p in parts]),
            session=np.concatenate([p.session for p in parts]),
            ts=np.concatenate([p.ts for p in parts]),
        )

    def take(self, index: np.ndarray) -> Onboarding:
        """The content of conversions ``index`` (int ``[m]``), in that order."""
        lengths = np.diff(self.offsets)[index]
        offsets = np.zeros(index.size + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        rows = np.repeat(self.offsets[:-1][index] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Onboarding(offsets, self.content[rows], self.theme[rows], self.session[rows], self.ts[rows])


class ContentCatalogue:
    """The onboarding content of every domain and the onboarding simulator.

    Args:
        num_domains, content_per_domain, content_themes, latent_dim: sizes.
        max_sessions, max_session_items: ``S`` and ``L`` of the module docstring.
        content_tilt: ``tilt``: how strongly engagement steers content choice.
        retention_days: the onboarding window; sessions are spread over it.
        rng: draws the catalogue.
    """

    def __init__(
        self,
        num_domains: int,
        content_per_domain: int,
        content_themes: int,
        latent_dim: int,
        max_sessions: int,
        max_session_items: int,
        content_tilt: float,
        retention_days: int,
        rng: np.random.Generator,
    ) -> None:
        self.num_domains = num_domains
        self.pool = content_per_domain
        self.max_sessions = max_sessions
        self.max_items = max_session_items
        self.tilt = content_tilt
        self.retention_days = retention_days
        n = num_domains * content_per_domain
        self.num_content = n
        self.num_themes = num_domains * content_themes
        # content id c (1-based) belongs to domain (c - 1) // pool + 1
        local_theme = rng.integers(0, content_themes, size=n)
        domain0 = np.arange(n) // content_per_domain
        self.theme = np.zeros(n + 1, np.int16)  # [n + 1], 0 = padding
        self.theme[1:] = domain0 * content_themes + local_theme + 1
        theme_effect = rng.standard_normal(self.num_themes + 1)
        raw = 0.75 * theme_effect[self.theme[1:]] + 0.66 * rng.standard_normal(n)
        stick = (raw - raw.mean()) / raw.std()
        self.stickiness = np.zeros(n + 1)
        self.stickiness[1:] = stick
        self.latent = np.zeros((n + 1, latent_dim))
        self.latent[1:] = rng.standard_normal((n, latent_dim)) / np.sqrt(latent_dim)
        # per domain, pool-major views: [D, P, k] and [D, P]
        self.pool_latent = self.latent[1:].reshape(num_domains, content_per_domain, latent_dim)
        self.pool_stick = stick.reshape(num_domains, content_per_domain)

    def simulate(
        self,
        rng: np.random.Generator,
        domain: np.ndarray,
        taste: np.ndarray,
        engagement: np.ndarray,
        ts: np.ndarray,
    ) -> Onboarding:
        """Draw the onboarding content of ``n`` conversions.

        Args:
            domain: int ``[n]`` 1-based domain of the converted ad.
            taste: float ``[n, k]``: ``v_i + u`` (ad vector plus the user's interest).
            engagement: float ``[n]``: ``ε``.
            ts: int64 ``[n]`` conversion times.
        """
        n = domain.size
        if n == 0:
            return Onboarding.empty()
        s_max, l_max, pool = self.max_sessions, self.max_items, self.pool
        d0 = domain.astype(np.int64) - 1
        base = np.empty((n, pool))  # [n, P] taste-content affinity, one matmul per domain
        for d in np.unique(d0):
            rows = np.flatnonzero(d0 == d)
            base[rows] = taste[rows] @ self.pool_latent[d].T
        stick = self.pool_stick[d0]  # [n, P]
        extra = rng.binomial(s_max - 1, sigmoid(_SESSION_GAIN * engagement)) if s_max > 1 else np.zeros(n)
        n_sessions = 1 + extra.astype(np.int64)  # [n]
        n_items = rng.integers(1, l_max + 1, size=(n, s_max))  # [n, S]
        n_items[np.arange(s_max)[None, :] >= n_sessions[:, None]] = 0
        window = self.retention_days * 86_400
        gap = window // (s_max + 1)
        starts = (np.arange(s_max)[None, :] + rng.random((n, s_max))) * gap  # [n, S] seconds after ts
        chosen = np.zeros((n, s_max, l_max), np.int64)  # pool index of each item
        for s in range(s_max):
            logits = base + (self.tilt * (s + 1) / s_max) * engagement[:, None] * stick  # [n, P]
            logits -= logits.max(1, keepdims=True)
            cdf = np.cumsum(np.exp(logits), 1)
            cdf /= cdf[:, -1:]
            # Row-wise inverse CDF in one search: row j's CDF is shifted to (j, j + 1].
            flat = (cdf + np.arange(n)[:, None]).ravel()
            u = rng.random((n, l_max)) + np.arange(n)[:, None]
            pos = np.searchsorted(flat, u.ravel(), side="right").reshape(n, l_max)
            chosen[:, s, :] = np.minimum(pos - np.arange(n)[:, None] * pool, pool - 1)
        # Pack the items that happened: session-major, then item order, per conversion.
        mask = np.arange(l_max)[None, None, :] < n_items[:, :, None]  # [n, S, L]
        counts = mask.reshape(n, -1).sum(1)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        conv_idx, sess_idx, item_idx = np.nonzero(mask)
        content = (d0[conv_idx] * pool + chosen[conv_idx, sess_idx, item_idx] + 1).astype(np.int32)
        item_ts = ts[conv_idx] + starts[conv_idx, sess_idx].astype(np.int64) + _ITEM_SPACING_S * item_idx
        return Onboarding(
            offsets=offsets,
            content=content,
            theme=self.theme[content],
            session=(sess_idx + 1).astype(np.int8),
            ts=item_ts.astype(np.int64),
        )


def gaussian_expected_sigmoid(mean: np.ndarray, scale: float, temperature: float) -> np.ndarray:
    """``E[σ(temperature · (mean + scale · ε))]`` for ``ε ~ N(0, 1)``, by Gauss–Hermite quadrature.

    Args:
        mean: float ``[n]``.
    Returns:
        float64 ``[n]``.
    """
    x, w = np.polynomial.hermite.hermgauss(_HERMITE_NODES)  # ∫ e^{-x²} f(x) dx ≈ Σ w f(x)
    z = mean[:, None] + scale * np.sqrt(2.0) * x[None, :]  # [n, H]
    return sigmoid(temperature * z) @ (w / np.sqrt(np.pi))
