"""The community manager's database against real SQLite files: atomicity, reopening, dedupe, refusals."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from hems.community.ledger import RecordKind
from hems.community.settlement import MeteredEnergy, SettlementPrices, correction, settle_slot
from hems.community.state import (DATABASE_FILENAME, SCHEMA_VERSION, CommunityState, StateConflictError,
                                  StoredBid)
from hems.store.errors import StoreError

T0 = 1_700_000_000.0
SLOT = 1_700_000_100
NEXT = SLOT + 900
PRICES = SettlementPrices(300_000, 80_000, 300_000, 80_000)
ORDERS = {"orders": [{"order_id": "6f1c7a4e-0b7e-4c39-9d0c-3f7f5f6f7f70", "side": "buy", "energy_wh": 500,
                      "limit_price_micro": 250_000}]}
CURVE = {"curve": {"prices_micro": [80_000, 300_000], "net_import_wh": [-200, -400]}}
CANCEL = {"orders": []}
ACK = {"status": "OK", "slots": []}
TABLES = ("messages", "sequences", "bids", "meters", "slots", "ledger", "ledger_anchor")


@pytest.fixture
def state(tmp_path):
    with CommunityState(tmp_path / DATABASE_FILENAME) as state:
        yield state


def snapshot(path) -> dict[str, list[tuple]]:
    """Every row of every table, read through a separate connection (what is really in the file)."""
    connection = sqlite3.connect(path)
    try:
        return {table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in TABLES}
    finally:
        connection.close()


def clear(state: CommunityState, slot_start_s: int = SLOT) -> None:
    state.record_clearing(slot_start_s, 900, {"slot_start_s": slot_start_s, "traded_wh": 400},
                          {"b": {"sold_wh": 400}, "a": {"bought_wh": 400}}, T0 + 10)


def settle(state: CommunityState, slot_start_s: int = SLOT, **options) -> None:
    settlement = settle_slot(slot_start_s, None, {"a": MeteredEnergy("a", 100, 0)}, ["a", "b"], PRICES)
    state.record_settlement(slot_start_s, settlement.homes, {"retailer_nano": settlement.retailer_nano}, T0 + 20,
                            **options)


def test_new_file_is_migrated_wal_and_has_an_append_only_ledger(tmp_path, state):
    connection = sqlite3.connect(tmp_path / DATABASE_FILENAME)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    triggers = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert triggers == {"ledger_no_update", "ledger_no_delete"}
    connection.close()
    assert state.ledger.verify().ok and state.ledger.count() == 0


def test_newer_schema_is_refused_and_not_touched(tmp_path):
    path = tmp_path / "newer.sqlite"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreError, match="newer hems") as caught:
        CommunityState(path)
    assert "ledger" in str(caught.value)  # the advice must not be "delete the file"


def test_accept_bids_stores_remembers_and_records(state):
    ack = {"status": "OK", "slots": [{"status": "ACCEPTED"}]}
    state.accept_bids("a", "m1", 7, [(SLOT, ORDERS), (NEXT, CURVE)], ack, T0)
    assert state.seen_ack("m1") == ack and state.seen_ack("m2") is None
    assert state.last_sequence("a") == 7 and state.last_sequence("b") is None
    assert state.bids_for_slot(SLOT) == [StoredBid(SLOT, "a", 7, "m1", ORDERS)]
    assert state.bids_for_slot(NEXT) == [StoredBid(NEXT, "a", 7, "m1", CURVE)]
    records = state.ledger.records(kind=RecordKind.BID_ACCEPTED)
    assert [(r.slot_start_s, r.home, r.body["bid"], r.body["sequence"]) for r in records] == [
        (SLOT, "a", ORDERS, 7), (NEXT, "a", CURVE, 7)]


def test_a_new_submission_replaces_per_slot_and_an_empty_one_cancels(state):
    state.accept_bids("a", "m1", 1, [(SLOT, ORDERS), (NEXT, ORDERS)], ACK, T0)
    state.accept_bids("b", "m2", 1, [(SLOT, CURVE)], ACK, T0)
    state.accept_bids("a", "m3", 2, [(SLOT, CURVE)], ACK, T0 + 1)
    assert [(bid.home, bid.sequence, bid.bid) for bid in state.bids_for_slot(SLOT)] == [("a", 2, CURVE), ("b", 1, CURVE)]
    assert [(bid.home, bid.sequence) for bid in state.bids_for_slot(NEXT)] == [("a", 1)]  # untouched
    state.accept_bids("a", "m4", 3, [(NEXT, CANCEL)], ACK, T0 + 2)
    assert state.bids_for_slot(NEXT) == [] and state.last_sequence("a") == 3
    assert state.ledger.records(kind=RecordKind.BID_ACCEPTED)[-1].body["cancelled"] is True


def test_duplicate_message_id_changes_nothing(state, tmp_path):
    state.accept_bids("a", "m1", 1, [(SLOT, ORDERS)], ACK, T0)
    before = snapshot(tmp_path / DATABASE_FILENAME)
    with pytest.raises(StateConflictError, match="m1"):
        state.accept_bids("a", "m1", 2, [(SLOT, CURVE)], {"status": "OK", "other": 1}, T0 + 1)
    assert snapshot(tmp_path / DATABASE_FILENAME) == before
    assert state.seen_ack("m1") == ACK


def test_reject_only_remembers_the_ack(state, tmp_path):
    before = snapshot(tmp_path / DATABASE_FILENAME)
    refusal = {"status": "INVALID_CONTENT", "diagnostic_label": "sequence 1 not above 5"}
    state.reject("a", "bad", refusal, T0)
    state.reject("a", "bad", {"status": "OK"}, T0 + 1)  # a redelivery keeps the first answer
    after = snapshot(tmp_path / DATABASE_FILENAME)
    assert {table: rows for table, rows in after.items() if table != "messages"} == \
           {table: rows for table, rows in before.items() if table != "messages"}
    assert state.seen_ack("bad") == refusal and state.last_sequence("a") is None


def test_meter_reports_dedupe_and_replace(state):
    assert state.record_meter("a", "r1", SLOT, 100, 0, ACK, T0) is True
    assert state.record_meter("a", "r2", SLOT, 100, 0, ACK, T0 + 1) is False  # same values again
    assert state.seen_ack("r2") == ACK
    assert len(state.ledger.records(kind=RecordKind.METER)) == 1
    assert state.record_meter("a", "r3", SLOT, 120, 5, ACK, T0 + 2) is True
    assert state.record_meter("b", "r4", SLOT, 0, 300, ACK, T0 + 2) is True
    assert state.meters_for_slot(SLOT) == {"a": (120, 5), "b": (0, 300)} and state.meters_for_slot(NEXT) == {}
    bodies = [record.body for record in state.ledger.records(kind=RecordKind.METER, home="a")]
    assert bodies == [{"message_id": "r1", "import_wh": 100, "export_wh": 0},
                      {"message_id": "r3", "import_wh": 120, "export_wh": 5,
                       "replaces": {"import_wh": 100, "export_wh": 0}}]
    with pytest.raises(ValueError, match="export_wh"):
        state.record_meter("a", "r5", SLOT, 1, -1, ACK, T0)


def test_clearing_and_settling_once(state, tmp_path):
    state.accept_bids("a", "m1", 1, [(SLOT, ORDERS)], ACK, T0)
    clear(state)
    slot = state.slot(SLOT)
    assert (slot.state, slot.duration_s, slot.result) == ("CLEARED", 900, {"slot_start_s": SLOT, "traded_wh": 400})
    assert [(r.kind, r.home) for r in state.ledger.records(slot_start_s=SLOT)][1:] == [
        (RecordKind.CLEARING, None), (RecordKind.ALLOCATION, "a"), (RecordKind.ALLOCATION, "b")]
    assert state.unsettled_slots() == [slot] and state.cleared_slot_starts() == {SLOT}
    before = snapshot(tmp_path / DATABASE_FILENAME)
    with pytest.raises(StateConflictError, match="already cleared"):
        clear(state)
    with pytest.raises(StateConflictError, match="already cleared"):
        state.accept_bids("a", "late", 2, [(SLOT, CURVE)], ACK, T0 + 11)
    assert snapshot(tmp_path / DATABASE_FILENAME) == before

    settle(state)
    slot = state.slot(SLOT)
    assert slot.state == "SETTLED" and slot.result == slot.settlement == {"retailer_nano": 100 * 300_000}
    assert slot.clearing == {"slot_start_s": SLOT, "traded_wh": 400}
    assert state.unsettled_slots() == [] and state.cleared_slot_starts() == {SLOT}
    assert [r.home for r in state.ledger.records(kind=RecordKind.SETTLEMENT)] == ["a", "b"]
    before = snapshot(tmp_path / DATABASE_FILENAME)
    with pytest.raises(StateConflictError, match="already settled"):
        settle(state)
    assert snapshot(tmp_path / DATABASE_FILENAME) == before


def test_settling_a_slot_that_was_never_cleared(state):
    with pytest.raises(StateConflictError, match="duration_s"):
        settle(state)
    settle(state, duration_s=900)
    assert state.slot(SLOT).state == "SETTLED" and state.slot(SLOT).clearing is None
    with pytest.raises(ValueError, match="twice"):
        state.record_settlement(NEXT, settle_slot(NEXT, None, {}, ["a"], PRICES).homes * 2, {}, T0)


def test_corrections_append_and_combine(state):
    with pytest.raises(StateConflictError, match="not settled"):
        state.record_correction(SLOT, settle_slot(SLOT, None, {}, ["b"], PRICES).homes[0], T0)
    clear(state)
    settle(state)
    provisional = state.home_settlement(SLOT, "b")
    assert provisional is not None and provisional.estimated
    fix = correction(provisional, MeteredEnergy("b", 0, 250), PRICES)
    state.record_correction(SLOT, fix, T0 + 3600)
    final = state.home_settlement(SLOT, "b")
    assert final == settle_slot(SLOT, None, {"b": MeteredEnergy("b", 0, 250)}, ["b"], PRICES).homes[0]
    assert state.home_settlement(SLOT, "nobody") is None and state.home_settlement(NEXT, "b") is None
    with pytest.raises(ValueError, match="of slot"):
        state.record_correction(NEXT, fix, T0)


def fail_ledger_inserts(path) -> None:
    """A real SQLite fault in the middle of a transaction: the ledger append fails."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TRIGGER crash BEFORE INSERT ON ledger BEGIN SELECT RAISE(ABORT, 'simulated crash'); END")
    connection.close()


def _bids(state):
    state.accept_bids("c", "m9", 9, [(NEXT, ORDERS), (NEXT + 900, CURVE)], ACK, T0)


def _meter(state):
    state.record_meter("a", "r9", SLOT, 999, 0, ACK, T0)


def _clearing(state):
    clear(state, NEXT)


def _settlement(state):
    settle(state)


def _correction(state):
    state.record_correction(SLOT, correction(state.home_settlement(SLOT, "b"), MeteredEnergy("b", 5, 5), PRICES), T0)


def _config(state):
    state.record_config({"mechanism": "bid_curve", "config_version": 2}, T0)


@pytest.mark.parametrize("operation", [_bids, _meter, _clearing, _settlement, _correction, _config])
def test_a_failing_ledger_append_leaves_nothing_behind(tmp_path, operation):
    path = tmp_path / DATABASE_FILENAME
    with CommunityState(path) as state:
        state.accept_bids("a", "m1", 1, [(SLOT, ORDERS)], ACK, T0)
        state.record_meter("a", "r1", SLOT, 100, 0, ACK, T0)
        clear(state)
        if operation is _correction:
            settle(state)
        before = snapshot(path)
        fail_ledger_inserts(path)
        with pytest.raises(StoreError, match="simulated crash"):
            operation(state)
        assert snapshot(path) == before
        with sqlite3.connect(path) as connection:
            connection.execute("DROP TRIGGER crash")
        operation(state)  # the same call succeeds once the fault is gone: nothing half-done was in the way
        assert snapshot(path) != before and state.ledger.verify().ok


def test_a_failure_after_an_append_rolls_the_append_back(state, tmp_path):
    before = snapshot(tmp_path / DATABASE_FILENAME)
    with pytest.raises(RuntimeError, match="boom"), state.transaction():
        state.ledger.append(RecordKind.CONFIG, {"v": 1}, slot_start_s=None, home=None, at_s=T0)
        raise RuntimeError("boom")
    assert snapshot(tmp_path / DATABASE_FILENAME) == before
    with pytest.raises(TypeError, match="0.5"):  # a float in the second slot's bid: the first is not kept either
        state.accept_bids("a", "m1", 1, [(SLOT, ORDERS), (NEXT, {"orders": [{"energy_wh": 0.5}]})], ACK, T0)
    assert snapshot(tmp_path / DATABASE_FILENAME) == before and state.seen_ack("m1") is None


def test_reopening_restores_everything(tmp_path):
    path = tmp_path / DATABASE_FILENAME
    with CommunityState(path) as state:
        state.record_config({"mechanism": "bid_curve"}, T0)
        state.accept_bids("a", "m1", 4, [(SLOT, ORDERS), (NEXT, CURVE)], ACK, T0)
        state.reject("b", "m2", {"status": "INVALID_DATA"}, T0)
        state.record_meter("a", "r1", SLOT, 100, 0, ACK, T0)
        clear(state)
        settle(state)
        head, slot = state.ledger.head(), state.slot(SLOT)
    with CommunityState(path) as state:
        assert state.ledger.head() == head and state.ledger.verify(expected_head=head).ok
        assert state.slot(SLOT) == slot and state.cleared_slot_starts() == {SLOT}
        assert state.seen_ack("m1") == ACK and state.seen_ack("m2") == {"status": "INVALID_DATA"}
        assert state.last_sequence("a") == 4 and state.bids_for_slot(NEXT)[0].bid == CURVE
        assert state.meters_for_slot(SLOT) == {"a": (100, 0)}
        assert state.home_settlement(SLOT, "a").import_wh == 100
        state.accept_bids("a", "m3", 5, [(NEXT, ORDERS)], ACK, T0 + 5)  # the chain continues
        assert state.ledger.verify(expected_head=head).ok and state.ledger.records()[-1].previous_hash == head


def test_prune_forgets_acks_but_never_the_ledger(state):
    state.accept_bids("a", "old", 1, [(SLOT, ORDERS)], ACK, T0)
    state.reject("b", "new", ACK, T0 + 100)
    records = state.ledger.records()
    assert state.prune_messages(older_than_s=T0 + 50) == 1
    assert state.seen_ack("old") is None and state.seen_ack("new") == ACK
    assert state.ledger.records() == records and state.bids_for_slot(SLOT) != []


def test_threads_share_one_state(state):
    def submit(home: str) -> None:
        for sequence in range(20):
            state.accept_bids(home, f"{home}-{sequence}", sequence, [(SLOT, ORDERS)], ACK, T0)

    threads = [threading.Thread(target=submit, args=(f"h{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert state.ledger.count() == 80 and state.ledger.verify().ok
    assert {bid.home: bid.sequence for bid in state.bids_for_slot(SLOT)} == {f"h{i}": 19 for i in range(4)}
