"""What a negotiating home is to the algorithms: a private convex cost of its net import per slot.

The algorithms in this package never see devices. A home answers a round with the minimiser of its
own cost plus a quadratic proximity term (:class:`NegotiatingHome`); the tests' central reference
(the energy-collective optimum the negotiation must reach) needs the same cost as cvxpy terms. Energy is Wh per slot, prices
currency per kWh, so a cost in currency is ``price * wh / 1000``.

:class:`QuadraticHome` is the separable model the tests and benchmarks use (closed-form answers, so
1,000 homes cost nothing); the daemon's homes answer with their MPC (hems.trading).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cvxpy as cp
import numpy as np

WH_PER_KWH = 1000.0


class NegotiatingHome(Protocol):
    """A home in a negotiation over ``n_slots`` slots."""

    home: str

    def best_response(self, target_wh: np.ndarray, rho_per_kwh2: float) -> np.ndarray:
        """argmin over x (net import, Wh per slot) of cost(x) + rho/2 * ||(x - target) / 1000||²,
        with ``rho`` in currency per kWh²."""
        ...



@dataclass(frozen=True)
class QuadraticHome:
    """Separable cost per slot: ``a/2 x² + b x`` (x in kWh; a in currency/kWh², b currency/kWh)
    with bounds on x. ``b`` is the home's marginal value of energy at zero net import, ``a`` how
    fast it changes: a buyer has b > 0 (it would pay b for the first kWh), a seller b < 0."""

    home: str
    a_per_kwh2: np.ndarray
    b_per_kwh: np.ndarray
    min_wh: np.ndarray
    max_wh: np.ndarray

    def best_response(self, target_wh: np.ndarray, rho_per_kwh2: float) -> np.ndarray:
        """Closed form: minimise a/2 x² − b x ... per slot, then clip (the cost is separable)."""
        target_kwh = np.asarray(target_wh, dtype=float) / WH_PER_KWH
        # cost(x) = a/2 x² − b·x: a buyer's value of energy is a benefit (negative cost).
        unconstrained = (self.b_per_kwh + rho_per_kwh2 * target_kwh) / (self.a_per_kwh2 + rho_per_kwh2)
        return np.clip(unconstrained * WH_PER_KWH, self.min_wh, self.max_wh)

    def cost(self, net_import_wh: cp.Expression) -> tuple[cp.Expression, list[cp.Constraint]]:
        """The cost (currency) of a net-import vector and its bounds, as cvxpy terms (the
        central reference of the tests)."""
        kwh = net_import_wh / WH_PER_KWH
        expression = cp.sum(cp.multiply(self.a_per_kwh2 / 2, cp.square(kwh)) - cp.multiply(self.b_per_kwh, kwh))
        return expression, [net_import_wh >= self.min_wh, net_import_wh <= self.max_wh]

    def cost_value(self, net_import_wh: np.ndarray) -> float:
        """The cost (currency) of a net-import vector."""
        kwh = np.asarray(net_import_wh, dtype=float) / WH_PER_KWH
        return float(np.sum(self.a_per_kwh2 / 2 * kwh**2 - self.b_per_kwh * kwh))


def random_homes(count: int, n_slots: int, seed: int, retail_per_kwh: float = 0.30,
                 feed_in_per_kwh: float = 0.08) -> list[QuadraticHome]:
    """A seeded community of buyers and sellers whose marginal values straddle the retail band, so
    some energy is traded inside the community and some with the retailer."""
    rng = np.random.default_rng(seed)
    homes = []
    for index in range(count):
        a = rng.uniform(0.02, 0.2, n_slots)  # currency/kWh² : 1 kWh more changes the value by 2-20 ct
        seller = rng.random(n_slots) < 0.45
        b = np.where(seller, -rng.uniform(0.0, 0.25, n_slots), rng.uniform(feed_in_per_kwh, retail_per_kwh + 0.1, n_slots))
        low = np.where(seller, -rng.uniform(500, 4_000, n_slots), 0.0)
        high = np.where(seller, 0.0, rng.uniform(500, 4_000, n_slots))
        homes.append(QuadraticHome(f"h{index:04d}", a, b, low, high))
    return homes


def community_cost(homes: list[QuadraticHome], positions_wh: dict[str, np.ndarray], retail_per_kwh: float,
                   feed_in_per_kwh: float) -> float:
    """The homes' costs at their positions plus the retailer's bill for the community's net
    position per slot (retail for a net import, feed-in for a net export), in currency."""
    total = sum(positions_wh.values())
    retailer = np.where(total > 0, retail_per_kwh * total, feed_in_per_kwh * total) / WH_PER_KWH
    return sum(home.cost_value(positions_wh[home.home]) for home in homes) + float(np.sum(retailer))


@dataclass(frozen=True)
class CentralOptimum:
    """The energy collective of a set of homes solved at once: what a negotiation must reach."""

    cost: float  # currency, homes' costs plus the retailer's
    price_per_kwh: np.ndarray  # per slot: the dual of the community's balance
    positions_wh: dict[str, np.ndarray]


def central_optimum(homes: list[QuadraticHome], n_slots: int, retail_per_kwh: float,
                    feed_in_per_kwh: float) -> CentralOptimum:
    """Solve the community's problem centrally (cvxpy, Clarabel): the reference of the tests and
    benchmarks. The retailer sells at ``retail_per_kwh`` and buys at ``feed_in_per_kwh``."""
    positions = {home.home: cp.Variable(n_slots) for home in homes}
    retailer = cp.Variable(n_slots)  # the retailer's net import from the community, Wh
    cost, constraints = 0, []
    for home in homes:
        term, home_constraints = home.cost(positions[home.home])
        cost += term
        constraints += home_constraints
    cost += cp.sum(cp.maximum(-feed_in_per_kwh * retailer, -retail_per_kwh * retailer)) / WH_PER_KWH
    balance = sum(positions.values()) + retailer == 0
    problem = cp.Problem(cp.Minimize(cost), [*constraints, balance])
    problem.solve(solver=cp.CLARABEL)
    if problem.status != cp.OPTIMAL:
        raise RuntimeError(f"the central problem ended {problem.status}")
    # The dual of the balance is the value of one more Wh in the community; per kWh it is the price.
    return CentralOptimum(float(problem.value), np.asarray(balance.dual_value) * WH_PER_KWH,
                          {name: np.asarray(variable.value) for name, variable in positions.items()})
