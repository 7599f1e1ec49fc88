"""Energy collective (FleXunity D3.1 eqs. 3a–3g after Sousa et al. 2019, Moret & Pinson 2019): §6.

One linear programme over every home's orders; homes trade with the community, never with named peers.
Per home n (inflows positive): p_n net production, q_n bought from (> 0) or sold to (< 0) the community,
α_n ≥ 0 its share of imports, β_n ≤ 0 its share of exports (stated explicitly: (3g) alone lets them
cancel)::

    min  Σ_n C_n + G                   G = λ⁺·q_imp + λ⁻·q_exp
    (3b) p_n + q_n + α_n + β_n = 0     (3c) Σ_n q_n = 0
    (3d) Σ_n α_n = q_imp               (3e) Σ_n β_n = q_exp
    C_n = f_n(p_n) + φ·max(q_n, 0) + δ_imp·α_n − δ_exp·β_n

f_n comes from the home's orders, limits clamped to [λ⁻, λ⁺]: a buy order (q, p) is energy worth p per
kWh to it up to q (cost −p·fill), a sell order (q, p) costs p per kWh up to q; p_n = Σ sells − Σ buys.
Clamping moves a buy limit above λ⁺ down and a sell limit below λ⁻ up (nobody pays more than retail or
gets less than feed-in). A buy below λ⁻ or a sell above λ⁺ is not clamped but left out (UNMATCHED): every
price is in [λ⁻, λ⁺], so it could only trade against its own limit (as in the auction, where it never
crosses).

**Fee.** The notes put φ_com·|q_n| on every home. Because Σ_n q_n = 0, Σ_n |q_n| = 2·Σ_n max(q_n, 0), so
φ·max(q_n, 0) with φ = ``fee_micro`` is the notes' term with φ_com = φ/2: the same optimum, but it puts
the whole fee on the buyer, our convention everywhere else. The dual of (3c) is then the energy price
sellers get; buyers pay it plus the fee.

**Price.** The dual of (3c) in cvxpy's sign (positive: what one more kWh in the community is worth),
rounded half-even to µ¤/kWh and clamped to [λ⁻, λ⁺]. Whenever homes trade with each other the dual
already lies in [λ⁻, λ⁺ − φ] (a seller's filled ask ≥ λ⁻ is at most the dual, a buyer's filled bid ≤ λ⁺
at least the dual plus the fee), so the clamp only tidies slots without home-to-home trade, where fees
or preference weights can push the dual out. With step orders the dual is not unique: without fees any
Walrasian price of the book, the retailer selling at λ⁺ and buying at λ⁻, is optimal, and which one a
solver returns is its choice (HiGHS: a vertex, i.e. a limit price, λ± or one of them less the fee;
Clarabel: inside the interval).

**Rounding and the gross split.** Order fills are rounded half-even to whole Wh (inside [0, q]); network
LPs like this one have integral vertices, so with HiGHS that only removes floating-point noise. The fills
fix each home's net import x_n = −p_n; the LP fixes the community's import q_imp (rounded, and kept in
[max(Σx_n, 0), Σ max(x_n, 0)]), hence its export q_imp − Σx_n. Both can be positive: with a fee above
(λ⁺ + δ_imp) − (λ⁻ − δ_exp), importing for one home while another exports is cheaper than trading
between them. How
(3b)–(3e) split the totals among homes is not unique (a seller may "import" and sell more to the
community; at λ⁺ the money is the same), so the result shares the import among net buyers and the
export among net sellers pro rata (whole Wh, largest remainder) and sets q_n = x_n − α_n − β_n:
Σ q_n = 0 exactly and traded_wh is the true home-to-home volume.

**Money.** q_n at the community price (buyers pay, sellers receive), α_n at λ⁺, β_n at λ⁻ (the retailer
is paid or pays), fees on max(q_n, 0). The preference weights δ shape the optimum but are not money.

Solved in kWh and currency/kWh for conditioning, with HiGHS and Clarabel as fallback (never OSQP: it
stalls on LPs). Order volumes are column bounds, which HiGHS handles about 4× faster than rows (1,000
homes, 3,500 orders: about 80 ms). The problem is built with constants: bounds that are Parameters are not
DPP in cvxpy 1.9 and the order incidence changes every slot, so there is nothing a Parameter could reuse.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import ClassVar

import numpy as np

from hems.community.mechanisms.base import (
    ClearingInput,
    ClearingResult,
    HomeAllocation,
    InputKind,
    MarketParameters,
    Order,
    OrderFill,
)
from hems.community.mechanisms.rounding import largest_remainder
from hems.protocol.messages import OrderStatus, Side
from hems.protocol.units import round_half_even

DEFAULT_SOLVERS: tuple[str, ...] = ("HIGHS", "CLARABEL")


class CollectiveSolveError(RuntimeError):
    """No solver found an optimal allocation; the community manager falls back to another mechanism."""


@dataclass(frozen=True)
class _Book:
    """The slot's orders in arrays: per order its home index, volume (Wh) and clamped limit (µ¤/kWh)."""

    homes: list[str]
    buys: list[Order]
    sells: list[Order]
    out_of_band: list[Order]  # buys below λ⁻ and sells above λ⁺: UNMATCHED without solving
    buy_home: np.ndarray
    sell_home: np.ndarray
    buy_limit_micro: list[int]
    sell_limit_micro: list[int]


@dataclass(frozen=True)
class _Solution:
    """The LP's optimum in Wh, and the dual of (3c) in µ¤/kWh."""

    buy_fill_wh: np.ndarray
    sell_fill_wh: np.ndarray
    dual_micro: float
    import_wh: float  # q_imp
    solver: str


def _book(orders: Sequence[Order], parameters: MarketParameters) -> _Book:
    """Validate the orders, drop empty ones, clamp limits, and index them by home (sorted)."""
    ids = [order.order_id for order in orders]
    if len(set(ids)) != len(ids):
        raise ValueError("order ids must be unique")
    if any(order.energy_wh < 0 for order in orders):
        raise ValueError("order volumes must be ≥ 0")
    live = sorted((order for order in orders if order.energy_wh > 0), key=lambda order: (order.home, order.order_id))
    homes = sorted({order.home for order in live})
    index = {home: position for position, home in enumerate(homes)}
    low, high = parameters.feed_in_price_micro, parameters.retail_price_micro
    buys = [order for order in live if order.side is Side.BUY and order.limit_price_micro >= low]
    sells = [order for order in live if order.side is Side.SELL and order.limit_price_micro <= high]
    tradeable = {order.order_id for order in buys + sells}
    return _Book(
        homes=homes,
        buys=buys,
        sells=sells,
        out_of_band=[order for order in live if order.order_id not in tradeable],
        buy_home=np.array([index[order.home] for order in buys], dtype=np.int64),
        sell_home=np.array([index[order.home] for order in sells], dtype=np.int64),
        buy_limit_micro=[min(max(order.limit_price_micro, low), high) for order in buys],
        sell_limit_micro=[min(max(order.limit_price_micro, low), high) for order in sells],
    )


def _solve(book: _Book, parameters: MarketParameters, solvers: Sequence[str],
           solver_options: Mapping[str, Mapping[str, object]]) -> _Solution:
    """Build (3a)–(3g) in kWh and currency/kWh and solve it with the first solver that reaches optimal."""
    import cvxpy as cp  # lazily: 0.6 s and 100 MB that only this mechanism needs
    import scipy.sparse as sparse

    homes = len(book.homes)
    scale = 1e-6  # µ¤/kWh -> ¤/kWh
    # A one-sided book gets an empty order (bounds [0, 0]) on the other side: cvxpy cannot solve with
    # zero-length variables, and the padding changes nothing.
    buys, buy_home, buy_kwh, buy_limit = _side(book.buys, book.buy_home, book.buy_limit_micro)
    sells, sell_home, sell_kwh, sell_limit = _side(book.sells, book.sell_home, book.sell_limit_micro)
    buy_incidence = sparse.csr_matrix((np.ones(buys), (buy_home, np.arange(buys))), shape=(homes, buys))
    sell_incidence = sparse.csr_matrix((np.ones(sells), (sell_home, np.arange(sells))), shape=(homes, sells))

    buy_fill = cp.Variable(buys, bounds=[np.zeros(buys), buy_kwh])
    sell_fill = cp.Variable(sells, bounds=[np.zeros(sells), sell_kwh])
    from_community = cp.Variable(homes, bounds=[0, None])  # max(q_n, 0)
    to_community = cp.Variable(homes, bounds=[0, None])  # max(−q_n, 0)
    imports = cp.Variable(homes, bounds=[0, None])  # α_n ≥ 0
    exports = cp.Variable(homes, bounds=[None, 0])  # β_n ≤ 0
    community = from_community - to_community  # q_n
    production = sell_incidence @ sell_fill - buy_incidence @ buy_fill  # p_n
    balance = cp.sum(from_community) - cp.sum(to_community) == 0  # (3c)
    constraints = [production + community + imports + exports == 0, balance]  # (3b), (3c)
    import_cost = (parameters.retail_price_micro + parameters.import_preference_micro) * scale
    export_value = (parameters.feed_in_price_micro - parameters.export_preference_micro) * scale
    objective = (sell_limit * scale @ sell_fill - buy_limit * scale @ buy_fill
                 + parameters.fee_micro * scale * cp.sum(from_community)
                 + import_cost * cp.sum(imports) + export_value * cp.sum(exports))
    problem = cp.Problem(cp.Minimize(objective), constraints)

    failures = []
    for solver in solvers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an inaccurate solve is reported below, not as a warning
                problem.solve(solver=solver, **dict(solver_options.get(solver, {})))
        except cp.error.SolverError as error:
            failures.append(f"{solver}: {error}")
            continue
        if problem.status == cp.OPTIMAL and balance.dual_value is not None:
            return _Solution(
                buy_fill_wh=np.asarray(buy_fill.value, dtype=float).reshape(buys)[:len(book.buys)] * 1000.0,
                sell_fill_wh=np.asarray(sell_fill.value, dtype=float).reshape(sells)[:len(book.sells)] * 1000.0,
                dual_micro=float(balance.dual_value) / scale,
                import_wh=float(np.sum(imports.value)) * 1000.0,
                solver=solver,
            )
        failures.append(f"{solver}: {problem.status}")
    raise CollectiveSolveError("energy collective: no optimal solution (" + "; ".join(failures) + ")")


def _side(orders: Sequence[Order], order_home: np.ndarray,
          limits_micro: Sequence[int]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """One side's variable count, home of each order, volume in kWh and limit, padded to ≥ 1 order."""
    if not orders:
        return 1, np.zeros(1, dtype=np.int64), np.zeros(1), np.zeros(1)
    volumes_kwh = np.array([order.energy_wh for order in orders], dtype=float) / 1000.0
    return len(orders), order_home, volumes_kwh, np.array(limits_micro, dtype=float)


def _split(net_import_wh: Sequence[int], import_wh: float, seed: int) -> tuple[list[int], list[int]]:
    """Each home's net import as (q_n, α_n + β_n): the LP's import total (kept within what the net
    positions allow) shared among net buyers and the export among net sellers, pro rata (largest
    remainder); q_n is the rest, so Σ q_n = 0."""
    buying = [max(value, 0) for value in net_import_wh]
    selling = [max(-value, 0) for value in net_import_wh]
    net = sum(net_import_wh)
    imported = min(max(round_half_even(import_wh), net, 0), sum(buying))
    shares_in = _pro_rata(buying, imported, seed)
    shares_out = _pro_rata(selling, imported - net, seed + 1)
    grid = [share_in - share_out for share_in, share_out in zip(shares_in, shares_out)]
    return [value - exchange for value, exchange in zip(net_import_wh, grid)], grid


def _pro_rata(weights: Sequence[int], total: int, seed: int) -> list[int]:
    weight = sum(weights)
    if total == 0 or weight == 0:
        return [0] * len(weights)
    return largest_remainder([Fraction(value * total, weight) for value in weights], total, seed)


def _round_fills(fills_wh: np.ndarray, orders: Sequence[Order]) -> list[int]:
    return [min(max(round_half_even(float(fill)), 0), order.energy_wh) for fill, order in zip(fills_wh, orders)]


class EnergyCollective:
    """The community's cost-minimising allocation of every home's orders, priced by the dual (§6)."""

    name: ClassVar[str] = "energy_collective"
    input_kind: ClassVar[InputKind] = InputKind.ORDERS
    description: ClassVar[str] = ("Central optimisation of the energy collective (FleXunity D3.1): the "
                                  "cheapest allocation for the community, priced by the balance dual.")

    def __init__(self, solvers: Sequence[str] = DEFAULT_SOLVERS,
                 solver_options: Mapping[str, Mapping[str, object]] | None = None) -> None:
        """``solvers`` are tried in order; ``solver_options`` maps a solver name to its keyword options."""
        if not solvers:
            raise ValueError("give at least one solver")
        if any(solver.upper() == "OSQP" for solver in solvers):
            raise ValueError("OSQP stalls on linear programmes; use HIGHS or CLARABEL")
        self._solvers = tuple(solvers)
        self._solver_options = dict(solver_options or {})

    def clear(self, market: ClearingInput) -> ClearingResult:
        """Clear one slot from its orders."""
        parameters = market.parameters
        retail, feed_in = parameters.retail_price_micro, parameters.feed_in_price_micro
        if feed_in >= retail:
            raise ValueError("the feed-in price must be below the retail price")
        if min(parameters.fee_micro, parameters.import_preference_micro, parameters.export_preference_micro) < 0:
            raise ValueError("fees and preference weights must be ≥ 0 (else the programme is unbounded)")
        book = _book(market.orders, parameters)
        if not book.homes:
            return ClearingResult(mechanism=self.name, allocations=())

        solution = _solve(book, parameters, self._solvers, self._solver_options)
        price = min(max(round_half_even(Fraction(solution.dual_micro)), feed_in), retail)
        buy_fills = _round_fills(solution.buy_fill_wh, book.buys)
        sell_fills = _round_fills(solution.sell_fill_wh, book.sells)
        net_import = [0] * len(book.homes)  # −p_n
        for order_home, fill in zip(book.buy_home, buy_fills):
            net_import[order_home] += fill
        for order_home, fill in zip(book.sell_home, sell_fills):
            net_import[order_home] -= fill
        community, grid = _split(net_import, solution.import_wh, parameters.seed)

        allocations = self._allocations(book, parameters, price, community, grid, buy_fills, sell_fills)
        imported = sum(max(value, 0) for value in grid)
        exported = sum(max(-value, 0) for value in grid)
        traded = sum(max(value, 0) for value in community)
        welfare_nano = (sum(fill * limit for fill, limit in zip(sell_fills, book.sell_limit_micro))
                        - sum(fill * limit for fill, limit in zip(buy_fills, book.buy_limit_micro)))
        return ClearingResult(
            mechanism=self.name,
            allocations=allocations,
            price_micro=price,
            traded_wh=traded,
            grid_import_wh=imported,
            grid_export_wh=exported,
            retailer_nano=imported * retail - exported * feed_in,
            trade_prices_micro=(price,) if traded else (),
            details={
                "solver": solution.solver,
                "dual_price_micro": f"{solution.dual_micro:.3f}",
                "community_cost_nano": (welfare_nano + imported * (retail + parameters.import_preference_micro)
                                        - exported * (feed_in - parameters.export_preference_micro)
                                        + traded * parameters.fee_micro),
                "homes": len(book.homes),
                "orders": len(book.buys) + len(book.sells),
            },
        )

    @staticmethod
    def _allocations(book: _Book, parameters: MarketParameters, price: int, community: list[int],
                     grid: list[int], buy_fills: list[int], sell_fills: list[int]) -> tuple[HomeAllocation, ...]:
        """Each home's volumes and money, and every order's final status."""
        fills_by_home: list[list[tuple[Order, int]]] = [[] for _ in book.homes]
        for order, order_home, fill in zip(book.buys, book.buy_home, buy_fills):
            fills_by_home[order_home].append((order, fill))
        for order, order_home, fill in zip(book.sells, book.sell_home, sell_fills):
            fills_by_home[order_home].append((order, fill))
        home_index = {home: position for position, home in enumerate(book.homes)}
        for order in book.out_of_band:
            fills_by_home[home_index[order.home]].append((order, 0))
        allocations = []
        for position, home in enumerate(book.homes):
            from_homes, to_homes = max(community[position], 0), max(-community[position], 0)
            imported, exported = max(grid[position], 0), max(-grid[position], 0)
            allocation = HomeAllocation(
                home=home,
                bought_wh=from_homes + imported,
                sold_wh=to_homes + exported,
                paid_nano=from_homes * price + imported * parameters.retail_price_micro,
                received_nano=to_homes * price + exported * parameters.feed_in_price_micro,
                network_fee_nano=from_homes * parameters.network_fee_micro,
                community_fee_nano=from_homes * parameters.community_fee_micro,
            )
            fills = tuple(_fill(order, fill, allocation, price) for order, fill in
                          sorted(fills_by_home[position], key=lambda item: item[0].order_id))
            allocations.append(replace(allocation, fills=fills))
        return tuple(allocations)


def _fill(order: Order, filled_wh: int, allocation: HomeAllocation, community_price_micro: int) -> OrderFill:
    """An order's status; its price is the home's average price on that side, or the community price for
    energy the home traded with itself."""
    if filled_wh == 0:
        return OrderFill(order.order_id, OrderStatus.UNMATCHED, 0)
    status = OrderStatus.FILLED if filled_wh == order.energy_wh else OrderStatus.PARTIALLY_FILLED
    average = allocation.average_price_micro(order.side)
    return OrderFill(order.order_id, status, filled_wh, community_price_micro if average is None else average)
