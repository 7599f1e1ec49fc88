"""The report's money and energy figures: own-tariff bills, ledger bills, community figures."""

from __future__ import annotations

import pytest

from hems.demo.accounts import compute_accounts, whole_wh
from hems.demo.model import Scenario
from hems.protocol.messages import Side
from tests.demo_report.community import (FLAT, TIME_OF_USE, build_ledger, energy, home, run, slot_starts)

STARTS = slot_starts(4)  # 16:30, 16:45, 17:00, 17:15 in Berlin: ToU peak from the third slot


def test_a_flat_tariff_bill_is_exact_to_the_nano():
    consumer = home("c", pv_w=None, battery_wh=None, tariff=FLAT)
    runs = {Scenario.NO_CONTROL: run(Scenario.NO_CONTROL, STARTS,
                                     {"c": energy([1000, 500, 0, 0], [0, 0, 2000, 100])})}
    account = compute_accounts([consumer], runs).homes["c"]
    # 1500 Wh at 320 000 µ¤/kWh, 2100 Wh at 80 000 µ¤/kWh
    assert account.bill_nano[Scenario.NO_CONTROL] == 1500 * 320_000 - 2100 * 80_000 == 312_000_000
    assert account.import_wh[Scenario.NO_CONTROL] == 1500 and account.export_wh[Scenario.NO_CONTROL] == 2100


def test_a_time_of_use_bill_prices_each_slot_at_its_start():
    consumer = home("t", pv_w=None, battery_wh=None, tariff=TIME_OF_USE)
    runs = {Scenario.MPC: run(Scenario.MPC, STARTS, {"t": energy([1000, 1000, 1000, 1000], [10, 10, 10, 10])})}
    bill = compute_accounts([consumer], runs).homes["t"].bill_nano[Scenario.MPC]
    # 16:30 and 16:45 at 0.30, 17:00 and 17:15 at the peak 0.42; exports at 0.07 throughout
    assert bill == 2 * 1000 * 300_000 + 2 * 1000 * 420_000 - 40 * 70_000


def test_whole_wh_add_up_to_the_rounded_total():
    assert whole_wh([0.4, 0.4, 0.4]) == [0, 1, 0]
    values = [12.3456, 0.5, 0.5, 99.99, 0.0, 7.25]
    assert sum(whole_wh(values)) == round(sum(values))
    assert all(value >= 0 for value in whole_wh(values))


def test_bills_savings_and_the_value_of_trading_come_from_the_ledger(tmp_path):
    seller, buyer = home("a", tariff=TIME_OF_USE), home("b", pv_w=None, battery_wh=None, tariff=FLAT)
    exports, imports = [300, 300, 300, 300], [500, 500, 500, 500]
    orders = {("a", i): [(Side.SELL, 300, 100_000)] for i in range(4)}
    orders |= {("b", i): [(Side.BUY, 300, 300_000)] for i in range(4)}
    # a's reading of slot 2 comes after the provisional settlement and differs from its sale: a correction
    meters = {"a": ([0, 0, 50, 0], exports), "b": (imports, [0, 0, 0, 0])}
    ledger = build_ledger(tmp_path, ["a", "b"], STARTS, meters, orders, missing=frozenset({("b", 3)}),
                          late=frozenset({("a", 2)}))
    trading_energy = {"a": energy([0, 0, 50, 0], exports, [0, 0, 50, 0]), "b": energy(imports, [0] * 4)}
    plain_energy = {"a": energy([0] * 4, [300] * 4, [0] * 4), "b": energy(imports, [0] * 4)}
    runs = {Scenario.NO_CONTROL: run(Scenario.NO_CONTROL, STARTS, plain_energy),
            Scenario.MPC: run(Scenario.MPC, STARTS, plain_energy),
            Scenario.MPC_TRADING: run(Scenario.MPC_TRADING, STARTS, trading_energy, mechanism="uniform_auction",
                                      ledger_path=ledger)}
    accounts = compute_accounts([seller, buyer], runs)
    a, b = accounts.homes["a"], accounts.homes["b"]
    # Uniform auction: bid 0.30, ask 0.10, k = 1/2 -> 0.20 per kWh, 300 Wh a slot.
    # a: sells 300 Wh a slot for 60 000 000 n¤; in slot 2 it also imported 50 Wh, beyond its position,
    # charged at the community's retail price 0.32 (not its own tariff).
    assert a.bill_nano[Scenario.MPC_TRADING] == -4 * 60_000_000 + 50 * 320_000
    assert a.trading.sold_wh == 1200 and a.trading.imbalance_wh == 50 and a.trading.estimated_slots == 0
    # b: buys 300 Wh for 60 000 000 n¤ and imports 200 Wh beyond it at 0.32, except in slot 3 whose
    # reading never arrived: settled provisionally at its position.
    assert b.bill_nano[Scenario.MPC_TRADING] == 4 * 60_000_000 + 3 * 200 * 320_000
    assert b.trading.estimated_slots == 1 and b.trading.unsettled_slots == 0
    assert b.trading.bought_wh == 1200 and b.trading.imbalance_charge_nano == 3 * 200 * 320_000
    # Without trading a's exports earn its own feed-in price 0.07, b pays 0.32.
    assert a.bill_nano[Scenario.MPC] == -1200 * 70_000
    assert a.trading_value_nano == a.bill_nano[Scenario.MPC] - a.bill_nano[Scenario.MPC_TRADING]
    assert b.savings_nano[Scenario.MPC_TRADING] == 2000 * 320_000 - b.bill_nano[Scenario.MPC_TRADING]
    assert b.savings_nano[Scenario.NO_CONTROL] == 0
    community = accounts.community
    assert community.cost_nano[Scenario.MPC_TRADING] == a.bill_nano[Scenario.MPC_TRADING] + b.bill_nano[
        Scenario.MPC_TRADING]
    assert community.traded_wh == 1200 and community.traded_wh_per_slot == [300] * 4
    assert community.local_price_micro == [200_000] * 4
    assert (community.retail_price_micro, community.feed_in_price_micro) == (320_000, 80_000)
    assert accounts.unsettled_slots == 0


def test_slots_the_ledger_did_not_settle_are_billed_at_the_own_tariff_and_counted(tmp_path):
    consumer = home("c", pv_w=None, battery_wh=None, tariff=TIME_OF_USE)
    ledger = build_ledger(tmp_path, ["c"], STARTS[:2], {"c": ([400, 400], [0, 0])}, {})
    runs = {Scenario.MPC_TRADING: run(Scenario.MPC_TRADING, STARTS, {"c": energy([400] * 4, [0] * 4)},
                                      mechanism="uniform_auction", ledger_path=ledger)}
    accounts = compute_accounts([consumer], runs)
    trading = accounts.homes["c"].trading
    assert trading.settled_slots == 2 and trading.unsettled_slots == 2 and accounts.unsettled_slots == 2
    assert trading.ledger_bill_nano == 2 * 400 * 320_000  # nothing traded: all imbalance at the community price
    assert trading.unsettled_bill_nano == 2 * 400 * 420_000  # 17:00 and 17:15 at the own peak price
    assert accounts.homes["c"].bill_nano[Scenario.MPC_TRADING] == trading.ledger_bill_nano + trading.unsettled_bill_nano
    assert accounts.community.local_price_micro == [None] * 4


def test_pay_as_bid_local_price_is_the_volume_weighted_mean_of_the_trades(tmp_path):
    orders = {("a", 0): [(Side.SELL, 100, 100_000)], ("c", 0): [(Side.SELL, 200, 140_000)],
              ("b", 0): [(Side.BUY, 200, 300_000)], ("d", 0): [(Side.BUY, 100, 260_000)]}
    meters = {"a": ([0], [100]), "c": ([0], [200]), "b": ([200], [0]), "d": ([100], [0])}
    ledger = build_ledger(tmp_path, ["a", "b", "c", "d"], STARTS[:1], meters, orders, mechanism="pay_as_bid")
    homes = [home(home_id) for home_id in "abcd"]
    trading = {home_id: energy(*meters[home_id]) for home_id in "abcd"}
    runs = {Scenario.MPC_TRADING: run(Scenario.MPC_TRADING, STARTS[:1], trading, mechanism="pay_as_bid",
                                      ledger_path=ledger)}
    community = compute_accounts(homes, runs).community
    # Pairs in walk order: b–a 100 Wh at 0.20, b–c 100 Wh at 0.22, d–c 100 Wh at 0.20.
    assert community.traded_wh == 300
    assert community.local_price_micro == [round((100 * 200_000 + 100 * 220_000 + 100 * 200_000) / 300)]


def test_community_flows_self_sufficiency_and_run_statistics():
    producer, consumer = home("p"), home("c", pv_w=None, battery_wh=None)
    energies = {"p": energy([0, 0, 0, 0], [300, 300, 0, 0], [100, 100, 100, 100]),
                "c": energy([500, 200, 400, 0], [0, 0, 0, 0])}
    runs = {Scenario.MPC: run(Scenario.MPC, STARTS, energies, solve_ms=[4.0, 6.0, 8.0, 30.0])}
    accounts = compute_accounts([producer, consumer], runs)
    community = accounts.community
    assert community.import_wh[Scenario.MPC] == [200, 0, 400, 0]
    assert community.export_wh[Scenario.MPC] == [0, 100, 0, 0]
    assert community.consumption_wh[Scenario.MPC] == [600, 300, 500, 100]
    assert community.self_sufficiency[Scenario.MPC] == pytest.approx([1 - 200 / 600, 1.0, 1 - 400 / 500, 1.0])
    assert community.self_sufficiency_run[Scenario.MPC] == pytest.approx(1 - 600 / 1500)
    stats = accounts.stats[Scenario.MPC]
    assert stats.plans == 8 and stats.solve_ms_median == 7.0 and stats.solve_ms_max == 30.0
    assert 8.0 < stats.solve_ms_p95 <= 30.0
    assert stats.home_messages_sent == 2 * 12 and stats.manager_messages_sent == 20


def test_to_json_gives_money_as_decimal_strings_and_nano():
    consumer = home("c", pv_w=None, battery_wh=None)
    runs = {Scenario.NO_CONTROL: run(Scenario.NO_CONTROL, STARTS, {"c": energy([1001, 0, 0, 0], [0] * 4)})}
    document = compute_accounts([consumer], runs).to_json()
    bill = document["homes"][0]["bill"]["no_control"]
    assert bill == {"amount": "0.320320000", "amount_nano": 320_320_000}
    assert document["community"]["cost"]["no_control"]["amount_nano"] == 320_320_000
    assert document["scenarios"] == ["no_control"]


def test_runs_over_different_slots_are_refused():
    consumer = home("c", pv_w=None, battery_wh=None)
    runs = {Scenario.NO_CONTROL: run(Scenario.NO_CONTROL, STARTS, {"c": energy([1] * 4, [0] * 4)}),
            Scenario.MPC: run(Scenario.MPC, slot_starts(4, STARTS[1]), {"c": energy([1] * 4, [0] * 4)})}
    with pytest.raises(ValueError, match="other slots"):
        compute_accounts([consumer], runs)
