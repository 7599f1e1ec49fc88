"""Exchange ADMM against the central energy-collective optimum (cvxpy, Clarabel), with dropouts,
stale and repeated answers."""

from __future__ import annotations

import numpy as np
import pytest

from hems.community.negotiation.exchange import ExchangeCoordinator, ExchangeSettings, negotiate_exchange
from hems.community.negotiation.homes import QuadraticHome, community_cost, random_homes
from hems.community.negotiation.homes import central_optimum as reference

RETAIL, FEED_IN = 0.30, 0.08
SLOTS = 4


def central_optimum(homes: list[QuadraticHome], n_slots: int) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """The energy collective solved at once: (objective, price per kWh per slot, positions)."""
    optimum = reference(homes, n_slots, RETAIL, FEED_IN)
    return optimum.cost, optimum.price_per_kwh, optimum.positions_wh


def objective(homes: list[QuadraticHome], positions: dict[str, np.ndarray]) -> float:
    return community_cost(homes, positions, RETAIL, FEED_IN)


@pytest.mark.parametrize("count", [3, 30, 300])
def test_admm_reaches_the_central_optimum(count):
    homes = random_homes(count, SLOTS, seed=count)
    central_value, central_price, _ = central_optimum(homes, SLOTS)
    result = negotiate_exchange(homes, SLOTS, RETAIL, FEED_IN, ExchangeSettings(max_rounds=500))
    assert result.converged, result.history[-1]
    assert result.rounds <= 80  # flat in the number of homes (module docstring)
    value = objective(homes, result.positions_wh)
    assert abs(value - central_value) <= 0.005 * abs(central_value)
    np.testing.assert_allclose(result.price_per_kwh, np.clip(central_price, FEED_IN, RETAIL), rtol=0.005)
    assert np.all((result.price_per_kwh >= FEED_IN) & (result.price_per_kwh <= RETAIL))


def test_a_home_that_drops_out_mid_negotiation_does_not_stop_the_clearing():
    homes = random_homes(30, SLOTS, seed=7)
    dropped = homes[4].home
    result = negotiate_exchange(homes, SLOTS, RETAIL, FEED_IN, ExchangeSettings(max_rounds=500),
                                silent=lambda round_number, home: home == dropped and round_number >= 5)
    assert result.converged
    # The others clear around the dropped home's frozen position: the same optimum as a community
    # in which that home's position is fixed at what it last said.
    frozen = result.positions_wh[dropped]
    fixed = QuadraticHome(dropped, np.full(SLOTS, 1e-6), np.zeros(SLOTS), frozen, frozen)
    central_value, central_price, _ = central_optimum([*(h for h in homes if h.home != dropped), fixed], SLOTS)
    np.testing.assert_allclose(result.price_per_kwh, np.clip(central_price, FEED_IN, RETAIL), rtol=0.005)


def test_stale_unknown_and_malformed_answers_change_nothing_and_the_last_answer_counts():
    coordinator = ExchangeCoordinator(["a", "b"], 2, RETAIL, FEED_IN)
    assert coordinator.receive("a", 0, [100.0, -50.0])
    assert coordinator.receive("a", 0, [200.0, -50.0])  # a repeated answer replaces the first
    assert not coordinator.receive("c", 0, [1.0, 1.0])  # unknown home
    assert not coordinator.receive("b", 0, [1.0])  # wrong length
    assert not coordinator.receive("b", 0, [float("nan"), 1.0])
    report = coordinator.advance()
    assert report.answered == 1
    np.testing.assert_array_equal(coordinator.position_wh("a"), [200.0, -50.0])
    assert not coordinator.receive("b", 0, [5.0, 5.0])  # round 0 is over: stale
    np.testing.assert_array_equal(coordinator.position_wh("b"), [0.0, 0.0])
    assert coordinator.signal().round == 1


def test_round_cap_and_budget_stop_and_say_so():
    homes = random_homes(10, SLOTS, seed=1)
    capped = negotiate_exchange(homes, SLOTS, RETAIL, FEED_IN, ExchangeSettings(max_rounds=3))
    assert (capped.converged, capped.stopped_by, capped.rounds) == (False, "max_rounds", 3)
    ticks = iter(range(1000))
    budget = negotiate_exchange(homes, SLOTS, RETAIL, FEED_IN, ExchangeSettings(budget_s=4.5), clock=lambda: next(ticks))
    assert (budget.converged, budget.stopped_by) == (False, "budget")
    assert budget.rounds == 5


def test_settings_name_the_bad_value():
    with pytest.raises(ValueError, match="rho_per_kwh2"):
        ExchangeSettings(rho_per_kwh2=0)
    with pytest.raises(ValueError, match="feed-in"):
        ExchangeCoordinator(["a"], 1, 0.08, 0.30)
