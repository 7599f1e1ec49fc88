"""The store against real SQLite files in a temp directory."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from hems.store import (DATABASE_FILENAME, MIGRATIONS, SCHEMA_VERSION, AsyncStore, Store,
                        StoreError)
from hems.store.schema import migrate

T0 = 1_700_000_000.0  # an arbitrary UTC epoch time (Nov 2023)


def test_migrates_from_empty_and_uses_wal(tmp_path):
    with Store.in_directory(tmp_path / "state") as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    connection = sqlite3.connect(tmp_path / "state" / DATABASE_FILENAME)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"readings", "plans", "setpoints", "outbox"} <= tables
    connection.close()


def test_failed_migration_rolls_back_to_previous_version(tmp_path):
    path = tmp_path / "db.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    broken = MIGRATIONS + (("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"),)
    with pytest.raises(sqlite3.OperationalError):
        migrate(connection, path, broken)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in names  # the half-applied step was rolled back with the version
    connection.close()


def test_reopen_keeps_data(tmp_path):
    with Store.in_directory(tmp_path) as store:
        store.add_reading("meter", "grid_power_w", 100.0, T0)
        plan_id = store.save_plan(T0, "optimal", 0.012, [{"battery_w": 500}], created_at_s=T0)
        store.record_setpoint("battery", "battery_setpoint_w", 500.0, True, written_at_s=T0)
        store.enqueue("hems/v1/c/home/h/orders", '{"x":1}', message_id="m1", created_at_s=T0)
    with Store.in_directory(tmp_path) as store:
        assert [b.mean for b in store.readings("meter", "grid_power_w")] == [100.0]
        plan = store.latest_plan()
        assert plan is not None and plan.id == plan_id and plan.horizon == [{"battery_w": 500}]
        assert plan.status == "optimal" and plan.solve_time_s == pytest.approx(0.012)
        [setpoint] = store.setpoints()
        assert (setpoint.device, setpoint.value, setpoint.readback_ok) == ("battery", 500.0, True)
        assert [m.message_id for m in store.pending()] == ["m1"]


def test_readings_are_downsampled_per_bucket(tmp_path):
    start = 1_700_000_100.0  # divisible by 300
    assert start % 300 == 0
    with Store(tmp_path / "db", bucket_s=300) as store:
        store.add_readings([("meter", "grid_power_w", value, start + offset)
                            for offset, value in ((0, 100.0), (10, 200.0), (299, 600.0), (300, 50.0))])
        store.add_reading("pv", "pv_power_w", 7.0, start)
        buckets = store.readings("meter", "grid_power_w")
        assert [(b.bucket_start_s, b.mean, b.min, b.max, b.count) for b in buckets] == [
            (int(start), 300.0, 100.0, 600.0, 3), (int(start) + 300, 50.0, 50.0, 50.0, 1)]
        assert store.readings("meter", "grid_power_w", since_s=start + 1) == buckets[1:]
        assert store.readings("meter", "grid_power_w", until_s=start + 300) == buckets[:1]


def test_prune_removes_rows_older_than_retention(tmp_path):
    day_s = 86400.0
    now = T0 + 10 * day_s
    with Store(tmp_path / "db", retention_days=2) as store:
        for age_days in (5, 1):
            at = now - age_days * day_s
            store.add_reading("meter", "grid_power_w", age_days, at)
            store.save_plan(at, "optimal", 0.01, [], created_at_s=at)
            store.record_setpoint("battery", "battery_setpoint_w", 0.0, None, written_at_s=at)
            store.enqueue("t", "{}", message_id=f"m{age_days}", created_at_s=at)
        result = store.prune(now_s=now)
        assert (result.readings, result.plans, result.setpoints, result.outbox) == (1, 1, 1, 1)
        assert [b.mean for b in store.readings("meter", "grid_power_w")] == [1.0]
        assert [m.message_id for m in store.pending()] == ["m1"]
        assert store.prune(now_s=now).readings == 0


def test_outbox_order_and_idempotent_marks(tmp_path):
    with Store(tmp_path / "db") as store:
        ids = [store.enqueue("topic", f'{{"n":{n}}}', created_at_s=T0 + n) for n in range(5)]
        assert store.enqueue("topic", "other", message_id=ids[2]) == ids[2]  # duplicate ignored
        assert [m.message_id for m in store.pending()] == ids
        assert [m.payload for m in store.pending(limit=2)] == ['{"n":0}', '{"n":1}']
        assert store.mark_sent(ids[1], at_s=T0 + 100)
        assert store.mark_sent(ids[1], at_s=T0 + 200)  # again: harmless, first time kept
        assert store.outbox_message(ids[1]).sent_at_s == T0 + 100
        assert not store.mark_sent("no-such-id")
        assert [m.message_id for m in store.pending()] == [ids[0], ids[2], ids[3], ids[4]]
        assert store.mark_acked(ids[3], at_s=T0 + 300)  # an ack implies it was sent
        acked = store.outbox_message(ids[3])
        assert (acked.sent_at_s, acked.acked_at_s) == (T0 + 300, T0 + 300)
        assert [m.message_id for m in store.pending()] == [ids[0], ids[2], ids[4]]


def test_corrupt_file_gives_clear_error_and_is_not_replaced(tmp_path):
    path = tmp_path / DATABASE_FILENAME
    garbage = b"this is not an sqlite database at all\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as caught:
        Store(path)
    message = str(caught.value)
    assert str(path) in message and "not a usable SQLite database" in message
    assert "move the file aside" in message
    assert path.read_bytes() == garbage  # never silently recreated


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "db.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 7")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError) as caught:
        Store(path)
    assert f"created by a newer hems: schema 7 > supported {SCHEMA_VERSION}" in str(caught.value)
    assert str(path) in str(caught.value)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 7  # untouched
    connection.close()


async def test_async_facade_runs_off_the_event_loop(tmp_path):
    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()
    async with await AsyncStore.in_directory(tmp_path) as store:
        original = store._store.enqueue

        def spy(*args, **kwargs):
            seen_threads.add(threading.get_ident())
            return original(*args, **kwargs)

        store._store.enqueue = spy
        ids = [await store.enqueue("t", "{}", created_at_s=T0) for _ in range(3)]
        assert [m.message_id for m in await store.pending()] == ids
        assert await store.mark_sent(ids[0])
        await store.add_reading("meter", "grid_power_w", 5.0, T0)
        assert (await store.readings("meter", "grid_power_w"))[0].mean == 5.0
        plan_id = await store.save_plan(T0, "fallback", 0.5, {"steps": []})
        assert (await store.latest_plan()).id == plan_id
        await store.check()
    assert seen_threads and loop_thread not in seen_threads


async def test_async_open_of_corrupt_file_raises(tmp_path):
    (tmp_path / DATABASE_FILENAME).write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError):
        await AsyncStore.in_directory(tmp_path)
