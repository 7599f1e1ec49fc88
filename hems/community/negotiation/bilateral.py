"""Bilateral (multi-bilateral economic dispatch) ADMM: Sorin, Bobo & Pinson, IEEE TPWRS 34(2), 2019;
markets.md §8. Pure algorithm, no MQTT: the manager relays m_ij and λ_ij, the homes answer t_i.

**Problem.** Home i trades with its partners ω_i (a :class:`PartnerGraph`); t_ij is the energy i sells
to j (< 0: buys) per slot, and the two must agree: t_ij + t_ji = 0. Every home also trades r_i with the
retailer (sells at feed-in λ⁻, buys at retail λ⁺); its net production is p_i = Σ_j t_ij + r_i, its net
import x_i = −p_i, its cost f_i(x_i) (a :class:`~hems.community.negotiation.homes.QuadraticHome`, or any
home with a cvxpy ``cost``). With R(r) = max(−λ⁻·r, −λ⁺·r) the community solves::

    min Σ_i [ f_i(−p_i) + R(r_i) + Σ_{j∈ω_i} c_ij·|t_ij| ]   s.t.  t_ij + t_ji = 0  (multiplier λ_ij)

**Preference costs: volume form.** c_ij ≥ 0 (:class:`PairCosts`) is what i pays per kWh exchanged with j
in either direction, so a pair costs (c_ij + c_ji)·|t_ij|. (The linear form c_ij·t_ij cancels for
symmetric c and, for asymmetric c, is unbounded around any cycle whose c_ij − c_ji do not sum to 0.)
It shapes the dispatch; it is not money.

**Retailer.** Not an ADMM party: each home chooses r_i inside its own local problem at the fixed prices,
so that "pair" needs no consensus and an unbalanced community still clears.

**Round k.** m_ij = (t_ij − t_ji)/2 + λ_ij/ρ; home i answers
t_i = argmin f_i(−p_i) + R(r_i) + Σ_j [c_ij·|t_ij| + ρ/2·(t_ij − m_ij)²]; then
λ_ij ← λ_ij − ρ/2·(t_ij + t_ji), the same at both ends (one λ per pair): what the seller gets. This is
two-block ADMM with the consensus variable z_ij = (t_ij − t_ji)/2 eliminated, hence convergent. A
quadratic home answers in closed form: with π its internal price, t_ij = S(m_ij − π/ρ, c_ij/ρ) (S the
soft threshold), p = clip((π − b)/a), and π solves p − Σ_j t_ij = r, where r > 0 only at π = λ⁻, r < 0
only at π = λ⁺, else r = 0: a monotone piecewise-linear root (safeguarded Newton). Other homes: cvxpy.

**Stopping.** Primal residual: max over homes of Σ_j |t_ij + t_ji|/2 (Wh), what the final projection
moves onto the retailer; it bounds the per-pair max|t_ij + t_ji| by 2·ε_pri. (The per-pair rule of
markets.md lets a full mesh drift 1 Wh on every pair, N − 1 Wh per home: 2-3 % price errors at N = 30.)
Dual residual: ρ·max|Δz_ij| (currency/kWh). Stop when both are within tolerance. With volume costs the
trades creep along cycles of nearly equal cost for hundreds of rounds while the primal residual is ~0;
residual balancing (``adaptive_rho``: ρ ×2 when primal/ε_pri > 10·dual/ε_dual, ÷2 in the opposite case,
at most ``MAX_RHO_CHANGES`` times so the convergence guarantee stands) cut them 3-20× in our runs (a
4-home mesh at ρ = 3: 8,857 rounds fixed, 70 adaptive); without preference costs it is neutral or helps.

**Silent homes.** A home silent in round k keeps its last t_i; λ still moves, and its partners converge to
its frozen offers (the optimum of the community with that home's trades fixed). The state holds only
answers and prices, so nothing is lost when it speaks again.

**Price bound (proof).** Home i's optimality gives 0 ∈ c_ij·∂|t_ij| + ρ(t_ij − m_ij) + π_i, and r_i
minimising R(r) + π_i·r forces π_i ∈ [λ⁻, λ⁺]. Substituting m_ij and the λ update: λ_ij^{k+1} = π_i +
c_ij·s_i + ρ(z^{k+1} − z^k) with s_i ∈ ∂|t_ij^{k+1}|, |ρ(z^{k+1} − z^k)| ≤ ε_dual at a converged round. So
λ_ij ∈ [λ⁻ − c_ij − ε_dual, λ⁺ + c_ij + ε_dual] if i answered the last round; with both ends answering,
min(c_ij, c_ji) instead of c_ij. If the averaged trade exceeds ε_pri (seller i), both answers agree on
the direction (|t_ij + t_ji| ≤ 2ε_pri), s_i = 1 and s_j = −1, so λ_ij ∈ [λ⁻ + c_ij − ε_dual, λ⁺ − c_ji +
ε_dual]: after its preference cost, neither side does worse than with the retailer.

**Final projection.** Each pair clears t̂_ij = (t_ij − t_ji)/2 (exactly balanced); each home keeps its
own net import (inside its bounds) and the retailer absorbs the difference (≤ ε_pri per home, §9).
Units: kWh and currency/kWh inside (ρ in currency/kWh²), Wh at the edges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import dist

import cvxpy as cp
import numpy as np

from hems.community.negotiation.homes import WH_PER_KWH, NegotiatingHome
from hems.community.negotiation.local_answers import (CurveHome, Edges, closed_form_production, is_closed_form,
                                                      local_answers)

MAX_RHO_CHANGES = 50


def _names(homes: Sequence[str | NegotiatingHome]) -> list[str]:
    names = [home if isinstance(home, str) else home.home for home in homes]
    if len(set(names)) != len(names):
        raise ValueError("home names must be unique")
    return names


@dataclass(frozen=True)
class PartnerGraph:
    """Who may trade with whom: for each home its partners; symmetric, no self-trade."""

    partners: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        for home, partners in self.partners.items():
            if home in partners or len(set(partners)) != len(partners):
                raise ValueError(f"{home}: partners must be distinct other homes")
            for partner in partners:
                if home not in self.partners.get(partner, ()):
                    raise ValueError(f"asymmetric graph: {home} lists {partner}, not the reverse")

    @classmethod
    def full_mesh(cls, homes: Sequence[str | NegotiatingHome]) -> PartnerGraph:
        """Every home trades with every other (N − 1 partners each)."""
        names = _names(homes)
        return cls({home: tuple(other for other in names if other != home) for home in names})

    @classmethod
    def sparse_random(cls, homes: Sequence[str | NegotiatingHome], partners_per_home: int, seed: int) -> PartnerGraph:
        """A connected random graph, seeded: a random ring (2 partners each), then random chords to
        homes still short of ``partners_per_home``. Every home ends with at least that many partners
        (a few with more); ``partners_per_home >= N − 1`` gives the full mesh."""
        names = _names(homes)
        if partners_per_home >= len(names) - 1:
            return cls.full_mesh(names)
        if partners_per_home < 2:
            raise ValueError("partners_per_home must be >= 2 (the ring)")
        rng = np.random.default_rng(seed)
        order = [names[i] for i in rng.permutation(len(names))]
        links: dict[str, set[str]] = {home: set() for home in names}
        for home, following in zip(order, order[1:] + order[:1]):
            links[home].add(following)
            links[following].add(home)
        for home in [order[i] for i in rng.permutation(len(order))]:
            need = partners_per_home - len(links[home])
            if need <= 0:
                continue
            free = [other for other in order if other != home and other not in links[home]]
            short = [other for other in free if len(links[other]) < partners_per_home]
            # Homes still short first; when too few are left, any non-partner (it gets an extra partner).
            rest = [other for other in free if len(links[other]) >= partners_per_home]
            chosen = [short[i] for i in rng.permutation(len(short))][:need]
            chosen += [rest[i] for i in rng.permutation(len(rest))][:need - len(chosen)]
            for other in chosen:
                links[home].add(other)
                links[other].add(home)
        return cls({home: tuple(sorted(links[home])) for home in names})

    def pairs(self) -> list[tuple[str, str]]:
        """Each partnership once, (i, j) with i listed before j."""
        position = {home: index for index, home in enumerate(self.partners)}
        return [(home, other) for home, partners in self.partners.items() for other in partners
                if position[home] < position[other]]


@dataclass(frozen=True)
class PairCosts:
    """Preference costs c_ij ≥ 0 (currency/kWh), charged to i per kWh traded with j in either
    direction (volume form, see the module docstring). Pairs not listed cost 0."""

    per_kwh: Mapping[tuple[str, str], float]

    def __post_init__(self) -> None:
        if any(not value >= 0 for value in self.per_kwh.values()):
            raise ValueError("pair costs must be >= 0 (a negative volume cost is not convex)")

    def get(self, home: str, partner: str) -> float:
        """c_ij."""
        return float(self.per_kwh.get((home, partner), 0.0))

    @classmethod
    def from_layout(cls, graph: PartnerGraph, positions_km: Mapping[str, tuple[float, float]],
                    per_kwh_km: float = 0.005, zones: Mapping[str, str] | None = None,
                    zone_fee_per_kwh: float = 0.0, green_sellers: frozenset[str] = frozenset(),
                    green_buyers: frozenset[str] = frozenset(), green_discount_per_kwh: float = 0.0) -> PairCosts:
        """c_ij = per_kwh_km·distance(i, j) (straight-line km standing in for electrical distance),
        plus ``zone_fee_per_kwh`` when i and j are in different zones, minus ``green_discount_per_kwh``
        when i is a green buyer and j a green seller (the one asymmetric term), floored at 0."""
        costs = {}
        for home, partners in graph.partners.items():
            for partner in partners:
                value = per_kwh_km * dist(positions_km[home], positions_km[partner])
                if zones is not None and zones[home] != zones[partner]:
                    value += zone_fee_per_kwh
                if home in green_buyers and partner in green_sellers:
                    value -= green_discount_per_kwh
                costs[home, partner] = max(value, 0.0)
        return cls(costs)


class ConvexLocalUpdate:
    """Any home's answer through its cvxpy ``cost``: built once, re-solved (Clarabel) each round. The
    proximal term is DPP as ‖s·t − w‖² with s = √(ρ/2) and w = s·m as Parameters."""

    def __init__(self, home: NegotiatingHome, pair_cost_per_kwh: Sequence[float], n_slots: int,
                 retail_per_kwh: float = 0.30, feed_in_per_kwh: float = 0.08) -> None:
        self.count = len(pair_cost_per_kwh)
        rows = max(self.count, 1)  # a home without partners keeps one zero row
        self.scale, self.target = cp.Parameter(nonneg=True), cp.Parameter((rows, n_slots))
        self.trades = cp.Variable((rows, n_slots))
        # R(r) as a maximum of a free r: Clarabel stalled (MaxIterations) on 4 of 600 random local
        # problems with r split into nonnegative sale and purchase, on none with this form.
        self.retail = cp.Variable(n_slots)
        weights = np.reshape(np.asarray(pair_cost_per_kwh, dtype=float), (-1, 1)) if self.count else np.zeros((1, 1))
        home_cost, constraints = home.cost(-WH_PER_KWH * (cp.sum(self.trades, axis=0) + self.retail))
        objective = (home_cost + cp.sum(cp.multiply(weights, cp.abs(self.trades)))
                     + cp.sum(cp.maximum(-feed_in_per_kwh * self.retail, -retail_per_kwh * self.retail))
                     + cp.sum_squares(self.scale * self.trades - self.target))
        if not self.count:
            constraints = [*constraints, self.trades == 0]
        self.problem = cp.Problem(cp.Minimize(objective), constraints)

    def __call__(self, m_kwh: np.ndarray, rho_per_kwh2: float) -> tuple[np.ndarray, np.ndarray]:
        """(t_i, kWh, (partners, slots); sale to the retailer, kWh per slot) for this round's m and ρ."""
        self.scale.value = np.sqrt(rho_per_kwh2 / 2)
        m = np.asarray(m_kwh, dtype=float).reshape(self.target.shape) if self.count else np.zeros(self.target.shape)
        self.target.value = self.scale.value * m
        self.problem.solve(solver=cp.CLARABEL)
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise RuntimeError(f"local update failed: {self.problem.status}")
        return np.asarray(self.trades.value)[:self.count], np.asarray(self.retail.value)


@dataclass(frozen=True)
class BilateralState:
    """What the manager holds between rounds: per directed edge i→j (``edges``: each home in order, its
    partners in graph order) the last answer t_ij (kWh) and λ_ij (currency/kWh), both (E, H); per home
    (N, H) its last sale to the retailer (kWh)."""

    edges: tuple[tuple[str, str], ...]
    trades_kwh: np.ndarray
    prices_per_kwh: np.ndarray
    retail_kwh: np.ndarray


@dataclass(frozen=True)
class BilateralResult:
    """A finished negotiation. Each pair is listed once, (i, j) with i before j in ``homes``; its trade
    is what i sells to j after the final averaging, so j sells exactly −trade to i."""

    homes: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    trade_wh: np.ndarray  # (pairs, slots)
    price_per_kwh: np.ndarray  # (pairs, slots): λ_ij, what the seller gets
    net_import_wh: np.ndarray  # (homes, slots): each home's last answer
    retail_sale_wh: np.ndarray  # (homes, slots): sold to the retailer (< 0: bought), closes each balance
    rounds: int
    primal_residual_wh: tuple[float, ...]  # per round: max_i Σ_j |t_ij + t_ji| / 2 (the stopping rule)
    pair_residual_wh: tuple[float, ...]  # per round: max |t_ij + t_ji| (markets.md's rule)
    dual_residual_per_kwh: tuple[float, ...]
    rho_per_kwh2: tuple[float, ...]  # the ρ of each round
    converged: bool
    silent_last_round: frozenset[str]
    state: BilateralState

    def trade_between_wh(self, seller: str, buyer: str) -> np.ndarray:
        """What ``seller`` sells to ``buyer`` (negative: buys), Wh per slot."""
        index = {pair: n for n, pair in enumerate(self.pairs)}
        if (seller, buyer) in index:
            return self.trade_wh[index[seller, buyer]]
        return -self.trade_wh[index[buyer, seller]]


def negotiate_bilateral(homes: Sequence[NegotiatingHome], graph: PartnerGraph, pair_costs: PairCosts,
                        rho_per_kwh2: float = 1.0, max_rounds: int = 2000, eps_primal_wh: float = 1.0,
                        eps_dual_per_kwh: float = 1e-4, *, retail_per_kwh: float = 0.30,
                        feed_in_per_kwh: float = 0.08, adaptive_rho: bool = True, n_slots: int | None = None,
                        silent: Callable[[int, str], bool] | None = None,
                        initial: BilateralState | None = None) -> BilateralResult:
    """Run bilateral ADMM in-process over all slots at once. ``silent(round, home)`` True loses the
    home's answer to that round (it keeps its last t_i), as does a failed cvxpy solve. ``initial``
    warm-starts from an earlier state of the same graph; by default t = 0 and λ = (λ⁺ + λ⁻)/2."""
    if not (rho_per_kwh2 > 0 and eps_primal_wh > 0 and eps_dual_per_kwh > 0 and max_rounds >= 1):
        raise ValueError("rho, the tolerances and max_rounds must be positive")
    if not feed_in_per_kwh < retail_per_kwh:
        raise ValueError("the feed-in price must be below the retail price")
    names = _names(homes)
    edges = Edges.build(names, graph, pair_costs)
    quadratic = [i for i, home in enumerate(homes) if is_closed_form(home)]
    if n_slots is None:
        if not quadratic:
            raise ValueError("n_slots is needed when no home answers in closed form")
        first = homes[quadratic[0]]
        n_slots = (first.net_import_wh.shape[0] if isinstance(first, CurveHome)
                   else np.atleast_1d(first.a_per_kwh2).size)
    middle = (retail_per_kwh + feed_in_per_kwh) / 2
    shape = (len(edges.src), n_slots)
    directed = tuple((home, other) for home in names for other in graph.partners[home])
    if initial is None:
        initial = BilateralState(directed, np.zeros(shape), np.full(shape, middle), np.zeros((len(names), n_slots)))
    if initial.edges != directed or initial.trades_kwh.shape != shape or initial.prices_per_kwh.shape != shape:
        raise ValueError("the initial state does not match the graph and slots")
    trades, prices, retail = initial.trades_kwh.copy(), initial.prices_per_kwh.copy(), initial.retail_kwh.copy()
    others = [i for i in range(len(names)) if i not in set(quadratic)]
    rows = {i: np.flatnonzero(edges.src == i) for i in others}
    generic = {i: ConvexLocalUpdate(homes[i], edges.cost[rows[i], 0], n_slots, retail_per_kwh, feed_in_per_kwh)
               for i in others}
    production = closed_form_production([homes[i] for i in quadratic], n_slots)  # type: ignore[misc]
    q_edges = np.flatnonzero(np.isin(edges.src, quadratic))
    q_local = {home: n for n, home in enumerate(quadratic)}
    q_sub = Edges.of(np.array([q_local[i] for i in edges.src[q_edges]], dtype=int), None, edges.cost[q_edges],
                      len(quadratic))
    home_price = np.full((len(quadratic), n_slots), middle)
    primal_history, pair_history, dual_history, rho_history = [], [], [], []
    rho, changes, converged, quiet, rounds = rho_per_kwh2, 0, False, frozenset(), 0
    for round_number in range(max_rounds):
        m = (trades - trades[edges.rev]) / 2 + prices / rho
        quiet = frozenset(name for name in names if silent is not None and silent(round_number, name))
        answering = np.array([name not in quiet for name in names])
        new_trades, new_retail = trades.copy(), retail.copy()
        if quadratic:
            t_q, r_q, home_price = local_answers(production, m[q_edges], q_sub, rho, feed_in_per_kwh,
                                                 retail_per_kwh, home_price)
            keep = answering[edges.src[q_edges]]
            new_trades[q_edges[keep]] = t_q[keep]
            new_retail[quadratic] = np.where(answering[quadratic][:, None], r_q, retail[quadratic])
        for i in (i for i in others if answering[i]):
            try:
                new_trades[rows[i]], new_retail[i] = generic[i](m[rows[i]], rho)
            except (RuntimeError, cp.error.SolverError):  # a failed solve is a lost answer, not a crash
                quiet = quiet | {names[i]}
        prices = prices - rho / 2 * (new_trades + new_trades[edges.rev])
        shift = (new_trades - new_trades[edges.rev] - trades + trades[edges.rev]) / 2  # Δz
        trades, retail = new_trades, new_retail
        mismatch = np.abs(trades + trades[edges.rev])
        primal = float(np.max(edges.incidence @ mismatch, initial=0.0)) * WH_PER_KWH / 2
        dual = rho * float(np.max(np.abs(shift), initial=0.0))
        primal_history.append(primal)
        pair_history.append(float(np.max(mismatch, initial=0.0)) * WH_PER_KWH)
        dual_history.append(dual)
        rho_history.append(rho)
        rounds = round_number + 1
        if primal <= eps_primal_wh and dual <= eps_dual_per_kwh:
            converged = True
            break
        if adaptive_rho and changes < MAX_RHO_CHANGES:
            ratio = (primal / eps_primal_wh) / max(dual / eps_dual_per_kwh, 1e-12)
            if ratio > 10 or ratio < 0.1:
                rho, changes = (rho * 2 if ratio > 10 else rho / 2), changes + 1
    production = edges.incidence @ trades + retail
    averaged = (trades - trades[edges.rev]) / 2
    forward = np.flatnonzero(edges.src < edges.src[edges.rev])
    pairs = tuple((names[edges.src[e]], names[edges.src[edges.rev[e]]]) for e in forward)
    return BilateralResult(tuple(names), pairs, averaged[forward] * WH_PER_KWH, prices[forward].copy(),
                           -production * WH_PER_KWH, (production - edges.incidence @ averaged) * WH_PER_KWH,
                           rounds, tuple(primal_history), tuple(pair_history), tuple(dual_history),
                           tuple(rho_history), converged, quiet, BilateralState(directed, trades, prices, retail))
