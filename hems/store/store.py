"""The blocking SQLite store of one home (WAL mode); see ``AsyncStore`` for the daemon.

Durability choice: WAL with ``synchronous=NORMAL`` by default. In WAL mode a
commit has written its frames to the WAL file (the OS page cache) before
``commit`` returns, so a killed process (SIGKILL, OOM killer, crash) loses
nothing that was committed; only a power cut or kernel panic can lose the last
transactions before the next checkpoint, and the database stays consistent
either way. ``FULL`` would fsync on every commit, which on an SD card costs
milliseconds per commit and wears the card for data (history, plans, a resendable
outbox) that the daemon rebuilds within a few minutes. Pass
``synchronous="FULL"`` where a power cut must not lose a commit.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal

from hems.store.errors import StoreError, sqlite_errors
from hems.store.rows import OutboxMessage, PlanRecord, PruneResult, ReadingBucket, SetpointRecord
from hems.store.schema import SCHEMA_VERSION, migrate, schema_version

DATABASE_FILENAME = "hems.sqlite3"
_CORRUPT_ADVICE = ("the file is damaged or not a hems database: stop hems, move the file aside "
                   "(keep it for analysis) or restore a backup; hems then starts with an empty history")


class Store:
    """History, plans, setpoints and the outbox of one home in one SQLite file.

    Not thread-safe by itself: use it from one thread at a time (``AsyncStore``
    runs every call on its own single worker thread).
    """

    def __init__(self, path: Path | str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
                 bucket_s: int = 300, retention_days: float = 90.0,
                 clock: Callable[[], float] = time.time) -> None:
        """Open (creating if needed) and migrate the database at ``path``.

        ``bucket_s`` is the width of a readings bucket, ``retention_days`` how long
        ``prune`` keeps rows, ``clock`` the wall clock (UTC epoch seconds) used for
        times the caller does not give.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous = {synchronous!r}: allowed 'NORMAL' or 'FULL'")
        if bucket_s <= 0:
            raise ValueError(f"bucket_s = {bucket_s!r} is out of range: allowed > 0")
        if retention_days <= 0:
            raise ValueError(f"retention_days = {retention_days!r} is out of range: allowed > 0")
        self.path = Path(path)
        self.bucket_s = int(bucket_s)
        self.retention_days = float(retention_days)
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is
        # exactly what the code says. check_same_thread=False because AsyncStore opens
        # the connection on the loop's thread's behalf in its worker thread.
        self._connection = sqlite3.connect(self.path, isolation_level=None,
                                           check_same_thread=False, timeout=5.0)
        try:
            with self._guard():
                found = schema_version(self._connection)  # fails first on a non-database file
                if found > SCHEMA_VERSION:
                    migrate(self._connection, self.path)  # raises the "newer hems" error
                mode = self._connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(self.path, f"cannot switch to WAL mode (journal_mode is {mode})",
                                     "the state directory must be on a local file system")
                self._connection.execute(f"PRAGMA synchronous={synchronous}")
                migrate(self._connection, self.path)
        except BaseException:
            self._connection.close()
            raise

    @classmethod
    def in_directory(cls, state_dir: Path | str, **options: Any) -> Store:
        """Open the store in ``state_dir`` (e.g. /var/lib/hems) under its standard file name."""
        return cls(Path(state_dir) / DATABASE_FILENAME, **options)

    def close(self) -> None:
        """Close the database (the last connection checkpoints the WAL)."""
        self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._guard():
            return schema_version(self._connection)

    def check(self) -> None:
        """Run SQLite's ``quick_check``; raise ``StoreError`` if the file is damaged."""
        with self._guard():
            rows = [row[0] for row in self._connection.execute("PRAGMA quick_check")]
        if rows != ["ok"]:
            raise StoreError(self.path, "integrity check failed: " + "; ".join(rows[:5]), _CORRUPT_ADVICE)

    # -- readings -------------------------------------------------------------------------

    def add_readings(self, samples: Iterable[tuple[str, str, float, float]]) -> int:
        """Fold ``(device, role, value, at_s)`` samples into their buckets in one transaction.

        Each bucket keeps the running mean, min, max and count. Returns the number
        of samples stored.
        """
        rows = [(device, role, self._bucket(at_s), float(value), float(value), float(value))
                for device, role, value, at_s in samples]
        with self._transaction():
            self._connection.executemany(
                "INSERT INTO readings (device, role, bucket_start_s, mean, min, max, count)"
                " VALUES (?, ?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (device, role, bucket_start_s) DO UPDATE SET"
                " mean = (mean * count + excluded.mean) / (count + 1),"
                " min = MIN(min, excluded.min), max = MAX(max, excluded.max), count = count + 1",
                rows)
        return len(rows)

    def add_reading(self, device: str, role: str, value: float, at_s: float) -> None:
        """Fold one sample into its bucket."""
        self.add_readings([(device, role, value, at_s)])

    def readings(self, device: str, role: str, since_s: float | None = None,
                 until_s: float | None = None) -> list[ReadingBucket]:
        """The buckets of one device role whose start is in [since_s, until_s), oldest first."""
        with self._guard():
            cursor = self._connection.execute(
                "SELECT device, role, bucket_start_s, mean, min, max, count FROM readings"
                " WHERE device = ? AND role = ? AND bucket_start_s >= ? AND bucket_start_s < ?"
                " ORDER BY bucket_start_s",
                (device, role, -2**62 if since_s is None else since_s,
                 2**62 if until_s is None else until_s))
            return [ReadingBucket(*row) for row in cursor]

    # -- plans ----------------------------------------------------------------------------

    def save_plan(self, slot_start_s: float, status: str, solve_time_s: float, horizon: Any,
                  created_at_s: float | None = None) -> int:
        """Store a plan; ``horizon`` must be JSON-serialisable. Returns its id."""
        encoded = json.dumps(horizon, separators=(",", ":"), allow_nan=False)
        with self._guard():
            cursor = self._connection.execute(
                "INSERT INTO plans (slot_start_s, status, solve_time_s, horizon_json, created_at_s)"
                " VALUES (?, ?, ?, ?, ?)",
                (slot_start_s, status, solve_time_s, encoded, self._now(created_at_s)))
            return int(cursor.lastrowid)

    def latest_plan(self) -> PlanRecord | None:
        """The most recently stored plan, or None."""
        plans = self._plans("ORDER BY id DESC LIMIT 1", ())
        return plans[0] if plans else None

    def plans(self, since_s: float, limit: int = 1000) -> list[PlanRecord]:
        """Plans for slots starting at or after ``since_s``, in storage order."""
        return self._plans("WHERE slot_start_s >= ? ORDER BY id LIMIT ?", (since_s, limit))

    def _plans(self, clause: str, parameters: tuple) -> list[PlanRecord]:
        with self._guard():
            cursor = self._connection.execute(
                "SELECT id, slot_start_s, status, solve_time_s, horizon_json, created_at_s FROM plans "
                + clause, parameters)
            return [PlanRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])
                    for row in cursor]

    # -- setpoints ------------------------------------------------------------------------

    def record_setpoint(self, device: str, role: str, value: float, readback_ok: bool | None,
                        written_at_s: float | None = None) -> int:
        """Record a setpoint written to a device. Returns its id."""
        with self._guard():
            cursor = self._connection.execute(
                "INSERT INTO setpoints (device, role, value, written_at_s, readback_ok)"
                " VALUES (?, ?, ?, ?, ?)",
                (device, role, float(value), self._now(written_at_s),
                 None if readback_ok is None else int(readback_ok)))
            return int(cursor.lastrowid)

    def setpoints(self, since_s: float = 0.0, device: str | None = None,
                  limit: int = 1000) -> list[SetpointRecord]:
        """Setpoints written at or after ``since_s`` (optionally of one device), oldest first."""
        with self._guard():
            cursor = self._connection.execute(
                "SELECT id, device, role, value, written_at_s, readback_ok FROM setpoints"
                " WHERE written_at_s >= ? AND (? IS NULL OR device = ?) ORDER BY id LIMIT ?",
                (since_s, device, device, limit))
            return [SetpointRecord(row[0], row[1], row[2], row[3], row[4],
                                   None if row[5] is None else bool(row[5])) for row in cursor]

    # -- outbox ---------------------------------------------------------------------------

    def enqueue(self, topic: str, payload: str, message_id: str | None = None,
                created_at_s: float | None = None) -> str:
        """Queue a message for publishing; returns its message_id.

        Enqueueing a message_id that is already queued changes nothing, so a
        caller that retries after a crash does not send a message twice.
        """
        message_id = message_id or str(uuid.uuid4())
        with self._guard():
            self._connection.execute(
                "INSERT OR IGNORE INTO outbox (message_id, topic, payload, created_at_s)"
                " VALUES (?, ?, ?, ?)", (message_id, topic, payload, self._now(created_at_s)))
        return message_id

    def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """Messages not yet sent, in the order they were enqueued."""
        with self._guard():
            cursor = self._connection.execute(
                "SELECT seq, message_id, topic, payload, created_at_s, sent_at_s, acked_at_s"
                " FROM outbox WHERE sent_at_s IS NULL ORDER BY seq LIMIT ?", (limit,))
            return [OutboxMessage(*row) for row in cursor]

    def unacked(self, limit: int = 100) -> list[OutboxMessage]:
        """Messages sent but never acknowledged, oldest first (after a restart they go again)."""
        with self._guard():
            cursor = self._connection.execute(
                "SELECT seq, message_id, topic, payload, created_at_s, sent_at_s, acked_at_s"
                " FROM outbox WHERE sent_at_s IS NOT NULL AND acked_at_s IS NULL ORDER BY seq LIMIT ?", (limit,))
            return [OutboxMessage(*row) for row in cursor]

    def outbox_message(self, message_id: str) -> OutboxMessage | None:
        """One outbox message by id, or None."""
        with self._guard():
            row = self._connection.execute(
                "SELECT seq, message_id, topic, payload, created_at_s, sent_at_s, acked_at_s"
                " FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
        return None if row is None else OutboxMessage(*row)

    def mark_sent(self, message_id: str, at_s: float | None = None) -> bool:
        """Mark a message sent (the first time counts). False if the id is unknown."""
        return self._mark("sent_at_s", message_id, at_s)

    def mark_acked(self, message_id: str, at_s: float | None = None) -> bool:
        """Mark a message acknowledged by its receiver (implies sent). False if unknown."""
        with self._guard():
            self._connection.execute(
                "UPDATE outbox SET sent_at_s = COALESCE(sent_at_s, ?) WHERE message_id = ?",
                (self._now(at_s), message_id))
        return self._mark("acked_at_s", message_id, at_s)

    def _mark(self, column: str, message_id: str, at_s: float | None) -> bool:
        # COALESCE keeps the first time: marking twice is harmless (idempotent).
        with self._guard():
            cursor = self._connection.execute(
                f"UPDATE outbox SET {column} = COALESCE({column}, ?) WHERE message_id = ?",
                (self._now(at_s), message_id))
            return cursor.rowcount > 0

    # -- retention ------------------------------------------------------------------------

    def prune(self, now_s: float | None = None) -> PruneResult:
        """Delete every row older than ``retention_days`` (all tables) in one transaction.

        Old outbox rows go too, sent or not: a market message days old has no
        receiver left that wants it.
        """
        cutoff = self._now(now_s) - self.retention_days * 86400.0
        with self._transaction():
            deleted = [self._connection.execute(statement, (cutoff,)).rowcount for statement in (
                "DELETE FROM readings WHERE bucket_start_s < ?",
                "DELETE FROM plans WHERE created_at_s < ?",
                "DELETE FROM setpoints WHERE written_at_s < ?",
                "DELETE FROM outbox WHERE created_at_s < ?",
            )]
        return PruneResult(*deleted)

    # -- helpers --------------------------------------------------------------------------

    def _bucket(self, at_s: float) -> int:
        return int(at_s // self.bucket_s) * self.bucket_s

    def _now(self, given_s: float | None) -> float:
        return self._clock() if given_s is None else float(given_s)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._guard():
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._connection.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:  # SQLite may have rolled back already
                    self._connection.execute("ROLLBACK")
                raise

    def _guard(self) -> AbstractContextManager[None]:
        """Turn SQLite's errors into a StoreError that names the file."""
        return sqlite_errors(self.path, damaged_advice=_CORRUPT_ADVICE,
                             busy_advice="is another hems running on the same state directory?")
