"""The homes' answers to a bilateral ADMM round in closed form (module docstring of
:mod:`~hems.community.negotiation.bilateral` for the round).

A home whose net production p (kWh, = −net import) at an internal price π is a known non-decreasing
function p(π) answers every partner at once: t_ij = S(m_ij − π/ρ, c_ij/ρ) (S the soft threshold), and π
solves p(π) − Σ_j t_ij(π) = r, where the retailer takes r > 0 only at π = λ⁻ and gives r < 0 only at
π = λ⁺. The left side is non-decreasing and piecewise linear in π, so a safeguarded Newton step finds
the root for every home and slot together. Two kinds of home have such a p(π):

- a :class:`~hems.community.negotiation.homes.QuadraticHome`: p = clip((π − b)/a) within its bounds;
- a :class:`CurveHome`, a home known only by its bid curve: p(π) = −(its net import at π), read linearly
  between the curve's prices as the bid-curve mechanism reads it (its cost is the area under the
  inverse curve, convex and piecewise quadratic).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sparse

from hems.community.negotiation.homes import WH_PER_KWH, QuadraticHome

if TYPE_CHECKING:
    from hems.community.negotiation.bilateral import PairCosts, PartnerGraph

#: p(π) and dp/dπ for π of shape (homes, slots), in kWh and kWh per (currency/kWh).
Production = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CurveHome:
    """A home known by its net-import curve: ``net_import_wh`` (slots, points) at the ascending
    ``prices_per_kwh`` (points), non-increasing in price; flat beyond the ends."""

    home: str
    prices_per_kwh: np.ndarray
    net_import_wh: np.ndarray

    def __post_init__(self) -> None:
        prices = np.asarray(self.prices_per_kwh, dtype=float)
        quantities = np.atleast_2d(np.asarray(self.net_import_wh, dtype=float))
        if prices.ndim != 1 or prices.size < 2 or np.any(np.diff(prices) <= 0):
            raise ValueError(f"{self.home}: prices must be strictly ascending, at least two")
        if quantities.shape[1] != prices.size or np.any(np.diff(quantities, axis=1) > 0):
            raise ValueError(f"{self.home}: one net import per price, non-increasing in price")
        object.__setattr__(self, "prices_per_kwh", prices)
        object.__setattr__(self, "net_import_wh", quantities)

    def net_import_at(self, price_per_kwh: np.ndarray) -> np.ndarray:
        """The curve's net import (Wh) at a price per slot, linear between its points."""
        production, _ = curve_production([self], np.atleast_2d(price_per_kwh).shape[1])(np.atleast_2d(price_per_kwh))
        return -production[0] * WH_PER_KWH


@dataclass(frozen=True)
class Edges:
    """Directed edges i→j as arrays: source home, reverse edge, c_ij (E, 1), incidence (N, E)."""

    src: np.ndarray
    rev: np.ndarray | None
    cost: np.ndarray
    incidence: sparse.csr_matrix

    @classmethod
    def build(cls, names: Sequence[str], graph: PartnerGraph, costs: PairCosts) -> Edges:
        if set(graph.partners) != set(names):
            raise ValueError("the graph must list exactly the negotiating homes")
        index = {home: i for i, home in enumerate(names)}
        edges = [(index[home], index[other]) for home in names for other in graph.partners[home]]
        position = {edge: e for e, edge in enumerate(edges)}
        cost = np.array([[costs.get(names[i], names[j])] for i, j in edges], dtype=float).reshape(-1, 1)
        return cls.of(np.array([i for i, _ in edges], dtype=int), np.array([position[j, i] for i, j in edges], dtype=int),
                      cost, len(names))

    @classmethod
    def of(cls, src: np.ndarray, rev: np.ndarray | None, cost: np.ndarray, homes: int) -> Edges:
        """Edges of ``homes`` homes; ``rev`` may be None where only one end's answers are needed."""
        incidence = sparse.csr_matrix((np.ones(len(src)), (src, np.arange(len(src)))), shape=(homes, len(src)))
        return cls(src, rev, cost, incidence)


def soft(z: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """The soft threshold S(z, κ) = sign(z)·max(|z| − κ, 0)."""
    return np.sign(z) * np.maximum(np.abs(z) - kappa, 0.0)


def quadratic_production(homes: Sequence[QuadraticHome], n_slots: int) -> Production:
    """p(π) = clip((π − b)/a) of quadratic homes (net production: the import bounds swap sign)."""
    def stack(name: str) -> np.ndarray:
        return np.array([np.broadcast_to(np.asarray(getattr(home, name), dtype=float), (n_slots,)) for home in homes])

    a, b = stack("a_per_kwh2"), stack("b_per_kwh")
    low, high = -stack("max_wh") / WH_PER_KWH, -stack("min_wh") / WH_PER_KWH

    def production(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        free = (pi - b) / a
        return np.clip(free, low, high), ((free > low) & (free < high)) / a

    return production


def curve_production(homes: Sequence[CurveHome], n_slots: int) -> Production:
    """p(π) = −(net import at π) of curve homes, linear between the points, flat beyond the ends.
    Homes on one price grid (a market's curves) are evaluated together."""
    if not homes:
        return lambda pi: (np.zeros_like(pi), np.zeros_like(pi))
    grid = homes[0].prices_per_kwh
    if any(home.prices_per_kwh.shape != grid.shape or np.any(home.prices_per_kwh != grid) for home in homes):
        parts = [curve_production([home], n_slots) for home in homes]

        def each(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            answers = [part(pi[n:n + 1]) for n, part in enumerate(parts)]
            return np.vstack([value for value, _ in answers]), np.vstack([slope for _, slope in answers])

        return each
    # (homes, slots, points) in kWh of production
    curves = -np.stack([np.broadcast_to(home.net_import_wh, (n_slots, grid.size)) for home in homes]) / WH_PER_KWH
    widths = np.diff(grid)

    def production(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        segment = np.clip(np.searchsorted(grid, pi, side="right") - 1, 0, grid.size - 2)
        left = np.take_along_axis(curves, segment[..., None], axis=2)[..., 0]
        right = np.take_along_axis(curves, segment[..., None] + 1, axis=2)[..., 0]
        width = widths[segment]
        fraction = np.clip((pi - grid[segment]) / width, 0.0, 1.0)
        inside = (pi > grid[0]) & (pi < grid[-1])
        return left + fraction * (right - left), np.where(inside, (right - left) / width, 0.0)

    return production


def closed_form_production(homes: Sequence[QuadraticHome | CurveHome], n_slots: int) -> Production:
    """p(π) of a mix of quadratic and curve homes, rows in the order of ``homes``."""
    kinds = [[n for n, home in enumerate(homes) if isinstance(home, kind)] for kind in (QuadraticHome, CurveHome)]
    parts = [(rows, make([homes[n] for n in rows], n_slots))  # type: ignore[arg-type]
             for rows, make in zip(kinds, (quadratic_production, curve_production)) if rows]

    def production(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value, slope = np.empty_like(pi), np.empty_like(pi)
        for rows, part in parts:
            value[rows], slope[rows] = part(pi[rows])
        return value, slope

    return production


def is_closed_form(home: object) -> bool:
    """A home :func:`local_answers` can answer for: a curve, or a strictly convex quadratic."""
    return isinstance(home, CurveHome) or (isinstance(home, QuadraticHome)
                                            and bool(np.all(np.asarray(home.a_per_kwh2) > 0)))


def local_answers(production: Production, m: np.ndarray, edges: Edges, rho: float, feed_in: float, retail: float,
                  guess: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every home's answer to a round (per home (N, H), kWh; m (E, H)): (t, r, π)."""
    kappa = edges.cost / rho

    def imbalance(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """p(π) − Σ_j t_ij(π), non-decreasing in π, and its slope."""
        z = m - pi[edges.src] / rho
        value, slope = production(pi)
        slope = slope + edges.incidence @ (np.abs(z) > kappa).astype(float) / rho
        return value - edges.incidence @ soft(z, kappa), slope, z

    low, high = np.full(guess.shape, feed_in), np.full(guess.shape, retail)
    sells, buys = imbalance(low)[0] >= 0, imbalance(high)[0] <= 0  # surplus at λ⁻, shortfall at λ⁺
    pi = np.clip(guess, feed_in, retail)
    for _ in range(200):
        value, slope, _ = imbalance(pi)
        done = (np.abs(value) <= 1e-13) | sells | buys | (high - low <= 1e-15)
        if done.all():
            break
        low = np.where(value < 0, np.maximum(low, pi), low)
        high = np.where(value > 0, np.minimum(high, pi), high)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = pi - value / slope
        inside = np.isfinite(newton) & (newton > low) & (newton < high)
        pi = np.where(done, pi, np.where(inside, newton, (low + high) / 2))
    pi = np.where(sells, feed_in, np.where(buys, retail, pi))
    value, _, z = imbalance(pi)
    return soft(z, kappa), np.where(sells | buys, value, 0.0), pi


def quadratic_local_update(home: QuadraticHome, m_kwh: np.ndarray, pair_cost_per_kwh: Sequence[float],
                           rho_per_kwh2: float, retail_per_kwh: float = 0.30,
                           feed_in_per_kwh: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """One quadratic home's answer in closed form: (t_i, kWh, (partners, slots); its sale to the
    retailer, kWh per slot). The home's bounds apply to its net import −(Σ_j t_ij + r)."""
    m = np.asarray(m_kwh, dtype=float)
    m = m[:, None] if m.ndim == 1 else m
    count = len(pair_cost_per_kwh)
    if m.shape[0] != count:
        raise ValueError("m_kwh needs one row per partner")
    edges = Edges.of(np.zeros(count, dtype=int), None, np.asarray(pair_cost_per_kwh, dtype=float).reshape(-1, 1), 1)
    middle = np.full((1, m.shape[1]), (retail_per_kwh + feed_in_per_kwh) / 2)
    trades, retail_kwh, _ = local_answers(quadratic_production([home], m.shape[1]), m, edges, rho_per_kwh2,
                                          feed_in_per_kwh, retail_per_kwh, middle)
    return trades, retail_kwh[0]
