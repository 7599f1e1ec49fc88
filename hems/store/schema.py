"""Versioned schema: a list of numbered migrations applied in order.

The schema version lives in SQLite's ``PRAGMA user_version`` (in the file
header, so it needs no table and is changed atomically with the migration's own
statements). Migration ``n`` (1-based) moves the database from version ``n - 1``
to ``n``; each runs in one ``BEGIN IMMEDIATE`` transaction, so a crash mid-way
leaves the previous version intact. Never edit a released migration: append a
new one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hems.store.errors import StoreError

#: Each entry is one migration: the SQL statements run in a single transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the initial schema.
    (
        # Downsampled history for the forecasts: one row per device, role and
        # bucket (5 min by default), holding a running mean, so the table grows
        # with time and not with the poll rate.
        """CREATE TABLE readings (
            device TEXT NOT NULL,
            role TEXT NOT NULL,
            bucket_start_s INTEGER NOT NULL,
            mean REAL NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (device, role, bucket_start_s)
        ) WITHOUT ROWID""",
        "CREATE INDEX readings_by_time ON readings (bucket_start_s)",
        """CREATE TABLE plans (
            id INTEGER PRIMARY KEY,
            slot_start_s REAL NOT NULL,
            status TEXT NOT NULL,
            solve_time_s REAL NOT NULL,
            horizon_json TEXT NOT NULL,
            created_at_s REAL NOT NULL
        )""",
        "CREATE INDEX plans_by_slot ON plans (slot_start_s)",
        """CREATE TABLE setpoints (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            role TEXT NOT NULL,
            value REAL NOT NULL,
            written_at_s REAL NOT NULL,
            readback_ok INTEGER
        )""",
        "CREATE INDEX setpoints_by_time ON setpoints (written_at_s)",
        # seq gives the send order; AUTOINCREMENT so a pruned seq is never reused
        # and ordering stays monotonic over the life of the file.
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at_s REAL NOT NULL,
            sent_at_s REAL,
            acked_at_s REAL
        )""",
        "CREATE INDEX outbox_unsent ON outbox (sent_at_s, seq)",
    ),
)

#: The newest schema version this code understands.
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(connection: sqlite3.Connection) -> int:
    """The database's current schema version (0 for a new, empty file)."""
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection: sqlite3.Connection, path: Path,
            migrations: tuple[tuple[str, ...], ...] = MIGRATIONS) -> int:
    """Bring the database up to ``len(migrations)``; return the version it had before.

    The connection must be in autocommit mode (``isolation_level=None``) so that
    the transactions here are the only ones. A database from a newer hems is
    refused, never downgraded.
    """
    supported = len(migrations)
    found = schema_version(connection)
    if found > supported:
        raise StoreError(
            path, f"created by a newer hems: schema {found} > supported {supported}",
            "upgrade hems, or move the file aside to start with an empty history")
    for version in range(found + 1, supported + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[version - 1]:
                connection.execute(statement)
            # PRAGMA user_version is transactional: it commits or rolls back with the steps.
            connection.execute(f"PRAGMA user_version = {version:d}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:  # SQLite may have rolled back already
                connection.execute("ROLLBACK")
            raise
    return found
