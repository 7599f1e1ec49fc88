"""The offline baselines: the emulators' plant, run on the homes' profiles."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from hems.demo.accounts import compute_accounts
from hems.demo.baselines import SOC_MAX_PCT, SOC_MIN_PCT, run_baseline, run_baselines
from hems.demo.model import Scenario
from tests.demo_report.community import home, profiles, slot_starts

#: Local midnight in Berlin (CEST) on 2026-06-15.
DAY_START_S = int(datetime(2026, 6, 14, 22, 0, tzinfo=timezone.utc).timestamp())
SLOTS = slot_starts(96, DAY_START_S)


def balance_error_wh(energy) -> np.ndarray:
    """import − export − (household + EV + heat pump + charge − discharge − PV), per slot."""
    return (energy.import_wh - energy.export_wh
            - (energy.household_wh + energy.ev_wh + energy.heat_pump_wh + energy.battery_charge_wh
               - energy.battery_discharge_wh - energy.pv_wh))


@pytest.mark.parametrize("scenario", [Scenario.NO_CONTROL, Scenario.SELF_CONSUMPTION])
@pytest.mark.parametrize("step_s", [900, 300])
def test_every_slot_balances(scenario, step_s):
    full = home("full", ev=True, heat_pump=True)
    outcome = run_baseline(scenario, full, profiles(full, DAY_START_S, 96 * 900 // step_s, step_s), SLOTS, 900)
    energy = outcome.energy
    assert len(energy.import_wh) == 96
    assert np.abs(balance_error_wh(energy)).max() < 0.5
    assert energy.pv_wh.sum() > 10_000 and energy.ev_wh.sum() > 0 and energy.heat_pump_wh.sum() > 0
    assert (energy.import_wh >= 0).all() and (energy.export_wh >= 0).all()


def test_no_control_meets_pv_and_demand_at_the_meter_and_never_uses_the_battery():
    full = home("full", ev=True, heat_pump=True)
    data = profiles(full, DAY_START_S, 96)
    energy = run_baseline(Scenario.NO_CONTROL, full, data, SLOTS, 900).energy
    assert energy.battery_charge_wh.sum() == 0 and energy.battery_discharge_wh.sum() == 0
    net_wh = (data.household_w + data.ev_w + data.heat_pump_w - data.pv_available_w) * 900 / 3600
    np.testing.assert_allclose(energy.import_wh, np.maximum(net_wh, 0), atol=1e-6)
    np.testing.assert_allclose(energy.export_wh, np.maximum(-net_wh, 0), atol=1e-6)


def test_self_consumption_beats_no_control_for_a_pv_battery_home_on_a_flat_tariff():
    prosumer = home("prosumer")
    runs = run_baselines([prosumer], {"prosumer": profiles(prosumer, DAY_START_S, 96)}, SLOTS, 900)
    rule = runs[Scenario.SELF_CONSUMPTION].homes["prosumer"].energy
    assert rule.battery_charge_wh.sum() > 1000 and rule.battery_discharge_wh.sum() > 1000
    bills = compute_accounts([prosumer], runs).homes["prosumer"].bill_nano
    assert bills[Scenario.SELF_CONSUMPTION] < bills[Scenario.NO_CONTROL]
    # The battery only shifts energy: it never exports more than the plain PV surplus.
    assert rule.export_wh.sum() < runs[Scenario.NO_CONTROL].homes["prosumer"].energy.export_wh.sum()


def test_the_battery_stays_inside_the_runtime_soc_limits():
    big_pv = home("big", pv_w=12_000, battery_wh=5000)
    data = profiles(big_pv, DAY_START_S, 96)
    energy = run_baseline(Scenario.SELF_CONSUMPTION, big_pv, data, SLOTS, 900).energy
    stored_wh = np.cumsum(energy.battery_charge_wh * 0.95 - energy.battery_discharge_wh / 0.95)
    capacity_wh = 5000
    assert stored_wh.max() <= (SOC_MAX_PCT - 50) / 100 * capacity_wh + 0.5  # starts at 50 %
    assert stored_wh.min() >= (SOC_MIN_PCT - 50) / 100 * capacity_wh - 0.5
    assert stored_wh.max() > (SOC_MAX_PCT - 50) / 100 * capacity_wh - 1  # it did fill up


def test_a_home_without_a_battery_is_the_same_in_both_baselines():
    pv_only = home("pv", battery_wh=None)
    data = profiles(pv_only, DAY_START_S, 96)
    plain = run_baseline(Scenario.NO_CONTROL, pv_only, data, SLOTS, 900).energy
    rule = run_baseline(Scenario.SELF_CONSUMPTION, pv_only, data, SLOTS, 900).energy
    assert rule.battery_charge_wh.sum() == 0 and rule.battery_discharge_wh.sum() == 0
    np.testing.assert_array_equal(plain.import_wh, rule.import_wh)
    np.testing.assert_array_equal(plain.export_wh, rule.export_wh)


def test_run_baselines_covers_every_home_and_both_scenarios():
    homes = [home("a"), home("b", pv_w=None, battery_wh=None)]
    data = {item.home_id: profiles(item, DAY_START_S, 96, seed=index) for index, item in enumerate(homes)}
    runs = run_baselines(homes, data, SLOTS[:8], 900)
    assert set(runs) == {Scenario.NO_CONTROL, Scenario.SELF_CONSUMPTION}
    for scenario, outcome in runs.items():
        assert outcome.scenario is scenario and outcome.slot_starts_s == SLOTS[:8] and outcome.slot_s == 900
        assert set(outcome.homes) == {"a", "b"}
        assert all(len(item.energy.import_wh) == 8 for item in outcome.homes.values())
    consumer = runs[Scenario.NO_CONTROL].homes["b"].energy
    assert consumer.export_wh.sum() == 0 and consumer.pv_wh.sum() == 0


def test_the_mpc_scenarios_are_not_offline_baselines():
    prosumer = home("p")
    with pytest.raises(ValueError, match="not an offline baseline"):
        run_baseline(Scenario.MPC, prosumer, profiles(prosumer, DAY_START_S, 4), SLOTS[:4], 900)
