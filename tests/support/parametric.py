"""Clustered samples whose population values are known in closed form (session random effects)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BetaBinomialSessions:
    """Orders per session 1 + Poisson(extra); each session has its own share p_g ~ Beta(a, b),
    and its orders are hits independently with p_g. The population share of orders is
    E[p] = a / (a + b) (order counts do not depend on p_g); the intra-session correlation is
    1 / (a + b + 1), so with m orders a session's design effect is about 1 + (m - 1) / (a + b + 1).
    """

    sessions: int
    extra_orders: float
    a: float
    b: float

    @property
    def truth(self) -> float:
        return self.a / (self.a + self.b)

    def draw(self, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
        trials = 1 + rng.poisson(self.extra_orders, self.sessions)
        shares = rng.beta(self.a, self.b, self.sessions)
        return rng.binomial(trials, shares), trials


@dataclass(frozen=True, slots=True)
class LognormalSessions:
    """Amounts exp(mu + u_g + e_i): a session effect u_g ~ N(0, tau^2) shared by its orders,
    e_i ~ N(0, sigma^2); 1 + Poisson(extra) orders per session. The population mean amount per
    order is exp(mu + tau^2/2 + sigma^2/2) (order counts do not depend on u_g)."""

    sessions: int
    extra_orders: float
    mu: float
    tau: float
    sigma: float

    @property
    def truth(self) -> float:
        return math.exp(self.mu + self.tau**2 / 2 + self.sigma**2 / 2)

    def draw(self, rng: np.random.Generator) -> FloatArray:
        """One row per session: (sum of its amounts, its order count)."""
        counts = 1 + rng.poisson(self.extra_orders, self.sessions)
        effects = rng.normal(0, self.tau, self.sessions)
        session_of = np.repeat(np.arange(self.sessions), counts)
        amounts = np.exp(self.mu + effects[session_of] + rng.normal(0, self.sigma, counts.sum()))
        sums = np.bincount(session_of, weights=amounts, minlength=self.sessions)
        return np.column_stack([sums, counts.astype(np.float64)])


@dataclass(frozen=True, slots=True)
class NormalPairSessions:
    """Pairs (x, y) = (a_g + e, b_g + f): session effects (a_g, b_g) with variances 1 and
    correlation `between`, within-session noise (e, f) with variances 1 and correlation
    `within`. Marginally (x, y) is bivariate normal with correlation r = (between + within) / 2,
    and its Spearman correlation is (6 / pi) asin(r / 2) (Pearson 1907)."""

    sessions: int
    extra_orders: float
    between: float
    within: float

    @property
    def truth(self) -> float:
        r = (self.between + self.within) / 2
        return 6 / math.pi * math.asin(r / 2)

    def draw(self, rng: np.random.Generator) -> tuple[FloatArray, FloatArray, IntArray]:
        """x, y and the session of each pair."""
        counts = 1 + rng.poisson(self.extra_orders, self.sessions)
        session_of = np.repeat(np.arange(self.sessions), counts)
        cov_b = [[1.0, self.between], [self.between, 1.0]]
        cov_w = [[1.0, self.within], [self.within, 1.0]]
        effects = rng.multivariate_normal([0.0, 0.0], cov_b, self.sessions)[session_of]
        noise = rng.multivariate_normal([0.0, 0.0], cov_w, session_of.size)
        pairs = effects + noise
        return pairs[:, 0], pairs[:, 1], session_of
