"""The hash-chained ledger against a real SQLite file, tampered with as an attacker with file access would."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from decimal import Decimal

import pytest

from hems.community import ledger as ledger_module
from hems.community.ledger import (GENESIS_HASH, Ledger, RecordKind, canonical_json, create_ledger_schema,
                                   record_hash)

T0 = 1_700_000_000.0


@pytest.fixture
def connection(tmp_path):
    connection = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
    create_ledger_schema(connection)
    yield connection
    connection.close()


@pytest.fixture
def ledger(connection):
    ledger = Ledger(connection)
    for index in range(6):
        ledger.append(RecordKind.METER, {"import_wh": 100 * index, "export_wh": 0},
                      slot_start_s=1_700_000_100 + 900 * index, home=f"h{index % 2}", at_s=T0 + index)
    return ledger


def drop_triggers(connection: sqlite3.Connection) -> None:
    """What an attacker with write access to the file does first."""
    connection.execute("DROP TRIGGER ledger_no_update")
    connection.execute("DROP TRIGGER ledger_no_delete")


def rows(connection: sqlite3.Connection) -> list[tuple]:
    return connection.execute("SELECT seq, kind, slot_start_s, home, recorded_at_ms, body, previous_hash, hash"
                              " FROM ledger ORDER BY seq").fetchall()


def test_records_chain_from_genesis_and_read_back(ledger):
    records = ledger.records()
    assert [record.seq for record in records] == [1, 2, 3, 4, 5, 6]
    assert records[0].previous_hash == GENESIS_HASH
    assert all(b.previous_hash == a.hash for a, b in zip(records, records[1:]))
    assert ledger.head() == records[-1].hash and ledger.count() == 6
    assert records[2].body == {"import_wh": 200, "export_wh": 0}
    assert records[2].recorded_at_s == T0 + 2 and records[2].kind is RecordKind.METER
    assert ledger.verify() == ledger.verify(expected_head=records[-1].hash)
    result = ledger.verify(expected_head=records[2].hash)  # a head published earlier: the ledger grew since
    assert result.ok and result.records == 6 and result.head == records[-1].hash and result.problems == ()


def test_hash_is_the_documented_bytes(connection):
    record = Ledger(connection).append(RecordKind.CONFIG, {"b": "é", "a": 1}, slot_start_s=None, home=None,
                                       at_s=1_700_000_000.0004)
    expected = hashlib.sha256(
        ('["' + "0" * 64 + '",1,"config",null,null,1700000000000]\n{"a":1,"b":"é"}').encode()).hexdigest()
    assert record.hash == expected
    assert record.recorded_at_s == 1_700_000_000.0  # hashed and kept to the millisecond


def test_empty_ledger(connection):
    ledger = Ledger(connection)
    assert ledger.head() == GENESIS_HASH and ledger.records() == []
    assert ledger.verify() == ledger.verify(expected_head=GENESIS_HASH)
    assert ledger.verify().ok and ledger.verify().head == GENESIS_HASH


def test_record_filters(ledger):
    assert [r.seq for r in ledger.records(home="h1")] == [2, 4, 6]
    assert [r.seq for r in ledger.records(slot_start_s=1_700_000_100 + 900)] == [2]
    assert [r.seq for r in ledger.records(since_slot_s=1_700_000_100 + 1800,
                                          until_slot_s=1_700_000_100 + 3600)] == [3, 4]
    assert ledger.records(kind=RecordKind.CLEARING) == []
    ledger.append(RecordKind.CONFIG, {"v": 1}, slot_start_s=None, home=None, at_s=T0)
    assert [r.seq for r in ledger.records(kind=RecordKind.CONFIG)] == [7]
    assert 7 not in [r.seq for r in ledger.records(since_slot_s=0)]  # no slot: not in any slot range


def test_triggers_refuse_update_and_delete(ledger, connection):
    with pytest.raises(sqlite3.DatabaseError, match="append-only: UPDATE"):
        connection.execute("UPDATE ledger SET body = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only: DELETE"):
        connection.execute("DELETE FROM ledger WHERE seq = 6")
    assert ledger.verify().ok and len(rows(connection)) == 6


def test_altered_body_is_caught(ledger, connection):
    drop_triggers(connection)
    connection.execute("""UPDATE ledger SET body = '{"export_wh":0,"import_wh":999}' WHERE seq = 3""")
    result = ledger.verify()
    assert not result.ok and result.problems == ("record 3: hash mismatch (altered)",)


def test_altered_record_with_its_own_hash_recomputed_breaks_the_next_link(ledger, connection):
    drop_triggers(connection)
    seq, kind, slot, home, at_ms, _, previous, _ = rows(connection)[2]
    body = canonical_json({"import_wh": 999, "export_wh": 0})
    connection.execute("UPDATE ledger SET body = ?, hash = ? WHERE seq = 3",
                       (body, record_hash(previous, seq, kind, slot, home, at_ms, body)))
    result = ledger.verify()
    assert not result.ok
    assert result.problems == ("record 4: previous_hash does not link to record 3 "
                               "(a record altered, removed, inserted or reordered)",)


def test_removed_middle_record_is_caught(ledger, connection):
    drop_triggers(connection)
    connection.execute("DELETE FROM ledger WHERE seq = 3")
    result = ledger.verify()
    assert not result.ok and result.records == 5
    assert "record 3: missing (removed)" in result.problems
    assert any(problem.startswith("anchor:") for problem in result.problems)


def test_removed_last_record_is_caught_by_the_anchor_and_then_only_by_the_published_head(ledger, connection):
    published_head = ledger.head()
    drop_triggers(connection)
    connection.execute("DELETE FROM ledger WHERE seq = 6")
    result = ledger.verify()
    assert not result.ok and len(result.problems) == 1 and result.problems[0].startswith("anchor: 6 records")
    # The attacker rewrites the anchor too: the chain alone is consistent again ...
    fifth_hash = rows(connection)[-1][7]
    connection.execute("UPDATE ledger_anchor SET records = 5, head = ?", (fifth_hash,))
    assert ledger.verify().ok
    # ... but the head published in a slot result is gone.
    result = ledger.verify(expected_head=published_head)
    assert not result.ok and result.problems == (
        f"expected head {published_head[:16]}… is not in the ledger (truncated or rewritten since it was published)",)


def test_swapped_records_are_caught(ledger, connection):
    drop_triggers(connection)
    third, fourth = rows(connection)[2:4]
    connection.execute("DELETE FROM ledger WHERE seq IN (3, 4)")
    connection.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (3,) + fourth[1:])
    connection.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (4,) + third[1:])
    problems = ledger.verify().problems
    assert "record 3: hash mismatch (altered)" in problems and "record 4: hash mismatch (altered)" in problems
    assert any(problem.startswith("record 3: previous_hash does not link") for problem in problems)
    assert any(problem.startswith("record 5: previous_hash does not link") for problem in problems)


def test_inserted_record_is_caught_even_with_a_valid_hash_of_its_own(ledger, connection):
    drop_triggers(connection)
    later = rows(connection)[3:]  # seq 4..6 move up by one
    connection.execute("DELETE FROM ledger WHERE seq >= 4")
    third_hash = rows(connection)[-1][7]
    body = canonical_json({"import_wh": 0, "export_wh": 5000})
    fake_hash = record_hash(third_hash, 4, "meter", 1_700_000_100, "h0", 1_700_000_000_500, body)
    connection.execute("INSERT INTO ledger VALUES (4, 'meter', 1700000100, 'h0', 1700000000500, ?, ?, ?)",
                       (body, third_hash, fake_hash))
    for row in later:
        connection.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (row[0] + 1,) + row[1:])
    problems = ledger.verify().problems
    assert not any(problem.startswith("record 4:") for problem in problems)  # the fake itself is well-formed
    assert "record 5: hash mismatch (altered)" in problems
    assert any(problem.startswith("record 5: previous_hash does not link to record 4") for problem in problems)
    assert any(problem.startswith("anchor: 6 records") for problem in problems)


def test_appended_record_without_the_anchor_is_caught(ledger, connection):
    head = ledger.head()
    body = canonical_json({"x": 1})
    connection.execute("INSERT INTO ledger VALUES (7, 'meter', NULL, NULL, 0, ?, ?, ?)",
                       (body, head, record_hash(head, 7, "meter", None, None, 0, body)))
    problems = ledger.verify().problems
    assert len(problems) == 1 and problems[0].startswith("anchor: 6 records")


def test_rewritten_chain_passes_alone_but_not_against_the_published_head(ledger, connection):
    published_head = ledger.head()
    drop_triggers(connection)
    original = rows(connection)
    connection.execute("DELETE FROM ledger")
    previous = GENESIS_HASH
    for seq, kind, slot, home, at_ms, body, _, _ in original:
        if seq == 2:
            body = canonical_json({"import_wh": 0, "export_wh": 0})
        digest = record_hash(previous, seq, kind, slot, home, at_ms, body)
        connection.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (seq, kind, slot, home, at_ms, body, previous, digest))
        previous = digest
    connection.execute("UPDATE ledger_anchor SET head = ?", (previous,))
    assert ledger.verify().ok  # what hashes alone cannot see
    assert not ledger.verify(expected_head=published_head).ok


def test_unknown_kind_and_unreadable_body_are_reported(ledger, connection):
    drop_triggers(connection)
    connection.execute("UPDATE ledger SET kind = 'gift' WHERE seq = 2")
    connection.execute("UPDATE ledger SET body = 'not json' WHERE seq = 5")
    problems = ledger.verify().problems
    assert "record 2: unknown kind 'gift'" in problems
    assert any(problem.startswith("record 5: unreadable") for problem in problems)


def test_append_joins_the_callers_transaction(ledger, connection):
    head = ledger.head()
    connection.execute("BEGIN IMMEDIATE")
    ledger.append(RecordKind.CONFIG, {"v": 2}, slot_start_s=None, home=None, at_s=T0)
    connection.execute("ROLLBACK")
    assert ledger.count() == 6 and ledger.head() == head and len(rows(connection)) == 6
    assert ledger.verify().ok


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": [1, {"d": None, "c": True}], "a": "ü"}) == '{"a":"ü","b":[1,{"c":true,"d":null}]}'


@pytest.mark.parametrize(("body", "named"), [
    ({"price": 0.3}, "body['price']"),
    ({"slot": {"fills": [{"wh": 1}, {"wh": 2.0}]}}, "body['slot']['fills'][1]['wh']"),
    ({"amount": Decimal("1.5")}, "body['amount']"),
    ({"x": {1: 2}}, "body['x']"),
])
def test_canonical_json_refuses_floats_and_lossy_values(body, named):
    with pytest.raises(TypeError) as caught:
        canonical_json(body)
    assert named in str(caught.value)


def test_float_body_appends_nothing(ledger, connection):
    with pytest.raises(TypeError, match="body\\['paid'\\]"):
        ledger.append(RecordKind.SETTLEMENT, {"paid": 1.5}, slot_start_s=0, home="h0", at_s=T0)
    assert len(rows(connection)) == 6 and ledger.verify().ok
    assert json.loads(rows(connection)[-1][5]) == {"import_wh": 500, "export_wh": 0}


def test_problem_list_is_capped(ledger, connection, monkeypatch):
    monkeypatch.setattr(ledger_module, "MAX_PROBLEMS", 2)
    drop_triggers(connection)
    connection.execute("""UPDATE ledger SET body = '{"import_wh":1}'""")
    problems = ledger.verify().problems
    assert problems == ("record 1: hash mismatch (altered)", "record 2: hash mismatch (altered)",
                        "… and 4 more problems")
