"""The community manager's SQLite database (``community.sqlite``, WAL): bids, meters, slots, ledger.

Every method that changes something runs in one ``BEGIN IMMEDIATE`` transaction together with the
ledger records that document the change, so after a crash either both are there or neither is.
The schema is versioned like the home's store (:mod:`hems.store.schema`): numbered migrations, the
version in ``PRAGMA user_version``.

Durability: ``synchronous=FULL`` by default, unlike the home's store. An ack is sent after the commit
it reports, and the ledger holds money: a power cut must not lose a transaction a home was told
about. The manager commits a few times per home and slot, so the fsync costs nothing that matters.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hems.community.ledger import LEDGER_SCHEMA, Ledger, RecordKind
from hems.community.settlement import HomeSettlement, combine, settlement_from_body, settlement_to_body
from hems.store.errors import StoreError, sqlite_errors
from hems.store.schema import migrate, schema_version

DATABASE_FILENAME = "community.sqlite"
_KEEP_ADVICE = ("do not delete it: it holds the community's ledger; stop the manager and restore a "
                "backup, or keep the file for an audit")

#: Each entry is one migration (see hems.store.schema). Never edit a released one: append.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the initial schema.
    (
        # The ack sent for every message id (accepted or not), so a redelivered message gets the
        # same answer and changes nothing; prunable.
        """CREATE TABLE messages (
            message_id TEXT PRIMARY KEY,
            home TEXT NOT NULL,
            ack_json TEXT NOT NULL,
            received_at_s REAL NOT NULL
        )""",
        "CREATE INDEX messages_by_time ON messages (received_at_s)",
        """CREATE TABLE sequences (
            home TEXT PRIMARY KEY,
            sequence INTEGER NOT NULL
        )""",
        # The open book: the latest bid of each home per slot (replace semantics).
        """CREATE TABLE bids (
            slot_start_s INTEGER NOT NULL,
            home TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            message_id TEXT NOT NULL,
            bid_json TEXT NOT NULL,
            received_at_s REAL NOT NULL,
            PRIMARY KEY (slot_start_s, home)
        )""",
        """CREATE TABLE meters (
            slot_start_s INTEGER NOT NULL,
            home TEXT NOT NULL,
            import_wh INTEGER NOT NULL,
            export_wh INTEGER NOT NULL,
            message_id TEXT NOT NULL,
            received_at_s REAL NOT NULL,
            PRIMARY KEY (slot_start_s, home)
        )""",
        """CREATE TABLE slots (
            slot_start_s INTEGER PRIMARY KEY,
            duration_s INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('CLEARED', 'SETTLED')),
            clearing_json TEXT,
            settlement_json TEXT,
            cleared_at_s REAL,
            settled_at_s REAL
        )""",
        "CREATE INDEX slots_by_state ON slots (state, slot_start_s)",
    ) + LEDGER_SCHEMA,
)

SCHEMA_VERSION = len(MIGRATIONS)


class StateConflictError(RuntimeError):
    """The change contradicts what is recorded (a slot cleared or settled twice, a message id reused);
    nothing was changed."""


@dataclass(frozen=True)
class StoredBid:
    """A home's current bid for one slot."""

    slot_start_s: int
    home: str
    sequence: int
    message_id: str
    bid: dict[str, Any]  # the SlotBid's JSON (orders or curve) as received


@dataclass(frozen=True)
class SlotRecord:
    """A slot the manager has cleared (and maybe settled)."""

    slot_start_s: int
    duration_s: int
    state: str  # "CLEARED" | "SETTLED"
    result: dict[str, Any] | None  # the latest public body: the clearing result, then the settlement summary
    clearing: dict[str, Any] | None = None  # the clearing result body, kept after settlement
    settlement: dict[str, Any] | None = None  # the settlement summary body, once settled


class CommunityState:
    """The manager's database; one instance per file. Calls are serialised by an internal lock, so
    worker threads (``asyncio.to_thread``) may share it."""

    def __init__(self, path: Path | str, *, synchronous: Literal["NORMAL", "FULL"] = "FULL") -> None:
        """Open (creating if needed) and migrate the database at ``path``."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous = {synchronous!r}: allowed 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                           timeout=5.0)
        try:
            with self._guard():
                found = schema_version(self._connection)
                if found > SCHEMA_VERSION:
                    raise StoreError(self.path, f"created by a newer hems: schema {found} > supported "
                                     f"{SCHEMA_VERSION}", "upgrade hems; " + _KEEP_ADVICE)
                mode = self._connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(self.path, f"cannot switch to WAL mode (journal_mode is {mode})",
                                     "the state directory must be on a local file system")
                self._connection.execute(f"PRAGMA synchronous={synchronous}")
                migrate(self._connection, self.path, MIGRATIONS)
        except BaseException:
            self._connection.close()
            raise
        self.ledger = Ledger(self._connection, self._lock)

    @classmethod
    def in_directory(cls, state_dir: Path | str, **options: Any) -> CommunityState:
        """Open the database in ``state_dir`` under its standard file name."""
        return cls(Path(state_dir) / DATABASE_FILENAME, **options)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> CommunityState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- messages and bids ---------------------------------------------------------------

    def seen_ack(self, message_id: str) -> dict[str, Any] | None:
        """The ack already sent for ``message_id`` (a duplicate gets it again), or None."""
        row = self._one("SELECT ack_json FROM messages WHERE message_id = ?", (message_id,))
        return None if row is None else json.loads(row[0])

    def last_sequence(self, home: str) -> int | None:
        """The sequence number of the home's last accepted submission, or None."""
        row = self._one("SELECT sequence FROM sequences WHERE home = ?", (home,))
        return None if row is None else int(row[0])

    def accept_bids(self, home: str, message_id: str, sequence: int, bids: Sequence[tuple[int, dict]],
                    ack: dict, at_s: float) -> None:
        """Take a submission in one transaction: remember the message and its ack, record the
        sequence, replace the home's bid per slot (an empty bid, no orders and no curve, cancels it)
        and append one BID_ACCEPTED record per slot.

        ``StateConflictError`` if the message id was seen before or a slot is already cleared; a
        ``TypeError`` for a bid that is not float-free JSON. Either way nothing changes.
        """
        with self.transaction():
            self._remember(home, message_id, ack, at_s)
            self._connection.execute(
                "INSERT INTO sequences (home, sequence) VALUES (?, ?)"
                " ON CONFLICT (home) DO UPDATE SET sequence = excluded.sequence", (home, sequence))
            for slot_start_s, bid in bids:
                if self._slot_row(slot_start_s) is not None:
                    raise StateConflictError(f"slot {slot_start_s} is already cleared: no bids for it")
                cancelled = not bid.get("orders") and bid.get("curve") is None
                body = {"message_id": message_id, "sequence": sequence, "bid": bid, "cancelled": cancelled}
                self.ledger.append(RecordKind.BID_ACCEPTED, body, slot_start_s=slot_start_s, home=home, at_s=at_s)
                if cancelled:
                    self._connection.execute("DELETE FROM bids WHERE slot_start_s = ? AND home = ?",
                                             (slot_start_s, home))
                    continue
                self._connection.execute(
                    "INSERT OR REPLACE INTO bids (slot_start_s, home, sequence, message_id, bid_json,"
                    " received_at_s) VALUES (?, ?, ?, ?, ?, ?)",
                    (slot_start_s, home, sequence, message_id, json.dumps(bid, separators=(",", ":")), at_s))

    def reject(self, home: str, message_id: str, ack: dict, at_s: float) -> None:
        """Remember the ack of a refused message for dedupe only; nothing else changes."""
        with self.transaction():
            self._remember(home, message_id, ack, at_s, ignore_duplicate=True)

    def remember(self, sender: str, message_id: str, answer: dict, at_s: float) -> None:
        """Remember a message's id and the answer it got (dedupe of QoS 1 repeats); nothing else changes."""
        self.reject(sender, message_id, answer, at_s)

    def bids_for_slot(self, slot_start_s: int) -> list[StoredBid]:
        """The current bids for one slot, by home."""
        with self._lock, self._guard():
            rows = self._connection.execute(
                "SELECT slot_start_s, home, sequence, message_id, bid_json FROM bids"
                " WHERE slot_start_s = ? ORDER BY home", (slot_start_s,)).fetchall()
        return [StoredBid(row[0], row[1], row[2], row[3], json.loads(row[4])) for row in rows]

    # -- meters ----------------------------------------------------------------------------

    def record_meter(self, home: str, message_id: str, slot_start_s: int, import_wh: int, export_wh: int,
                     ack: dict, at_s: float) -> bool:
        """Record a meter report with a METER ledger record, in one transaction.

        Returns False, and changes nothing but the ack memo, if the home already reported the same
        values for this slot. Different values replace the earlier ones (the ledger keeps both); for
        a settled slot the manager then appends a correction.
        """
        for name, value in (("import_wh", import_wh), ("export_wh", export_wh)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} = {value!r} must be an integer ≥ 0")
        with self.transaction():
            self._remember(home, message_id, ack, at_s, ignore_duplicate=True)
            previous = self._connection.execute(
                "SELECT import_wh, export_wh FROM meters WHERE slot_start_s = ? AND home = ?",
                (slot_start_s, home)).fetchone()
            if previous is not None and tuple(previous) == (import_wh, export_wh):
                return False
            body: dict[str, Any] = {"message_id": message_id, "import_wh": import_wh, "export_wh": export_wh}
            if previous is not None:
                body["replaces"] = {"import_wh": previous[0], "export_wh": previous[1]}
            self.ledger.append(RecordKind.METER, body, slot_start_s=slot_start_s, home=home, at_s=at_s)
            self._connection.execute(
                "INSERT OR REPLACE INTO meters (slot_start_s, home, import_wh, export_wh, message_id,"
                " received_at_s) VALUES (?, ?, ?, ?, ?, ?)",
                (slot_start_s, home, import_wh, export_wh, message_id, at_s))
        return True

    def meters_for_slot(self, slot_start_s: int) -> dict[str, tuple[int, int]]:
        """``home -> (import_wh, export_wh)`` of every reading for one slot."""
        with self._lock, self._guard():
            rows = self._connection.execute(
                "SELECT home, import_wh, export_wh FROM meters WHERE slot_start_s = ? ORDER BY home",
                (slot_start_s,)).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    # -- slots -----------------------------------------------------------------------------

    def slot(self, slot_start_s: int) -> SlotRecord | None:
        """The recorded state of one slot, or None if it was never cleared."""
        with self._lock, self._guard():
            return self._slot_row(slot_start_s)

    def is_settled(self, slot_start_s: int) -> bool:
        """True once the slot is SETTLED."""
        stored = self.slot(slot_start_s)
        return stored is not None and stored.state == "SETTLED"

    def record_config(self, config_body: Mapping[str, Any], at_s: float) -> None:
        """Append a CONFIG record (the published market config) to the ledger."""
        with self.transaction():
            self.ledger.append(RecordKind.CONFIG, config_body, slot_start_s=None, home=None, at_s=at_s)

    def record_clearing(self, slot_start_s: int, duration_s: int, result_body: dict,
                        allocation_bodies: Mapping[str, dict], at_s: float) -> None:
        """Mark the slot CLEARED with a CLEARING record (the public result) and one ALLOCATION record
        per home (sorted by home), in one transaction. ``StateConflictError`` if already cleared."""
        with self.transaction():
            if self._slot_row(slot_start_s) is not None:
                raise StateConflictError(f"slot {slot_start_s} is already cleared")
            self._connection.execute(
                "INSERT INTO slots (slot_start_s, duration_s, state, clearing_json, cleared_at_s)"
                " VALUES (?, ?, 'CLEARED', ?, ?)", (slot_start_s, duration_s, _json(result_body), at_s))
            self.ledger.append(RecordKind.CLEARING, result_body, slot_start_s=slot_start_s, home=None, at_s=at_s)
            for home in sorted(allocation_bodies):
                self.ledger.append(RecordKind.ALLOCATION, allocation_bodies[home], slot_start_s=slot_start_s,
                                   home=home, at_s=at_s)

    def record_settlement(self, slot_start_s: int, settlements: Sequence[HomeSettlement], summary_body: dict,
                          at_s: float, *, duration_s: int | None = None) -> None:
        """Mark the slot SETTLED with one SETTLEMENT record per home, in one transaction.

        The summary is kept with the slot (``SlotRecord.settlement``), not in the ledger: it is derived
        from the records. A slot that was never cleared needs ``duration_s``. ``StateConflictError``
        if already settled.
        """
        homes = [item.home for item in settlements]
        if len(set(homes)) != len(homes):
            raise ValueError("a home appears twice in the settlements")
        if any(item.slot_start_s != slot_start_s for item in settlements):
            raise ValueError(f"every settlement must be of slot {slot_start_s}")
        with self.transaction():
            slot = self._slot_row(slot_start_s)
            if slot is not None and slot.state == "SETTLED":
                raise StateConflictError(f"slot {slot_start_s} is already settled")
            if slot is None:
                if duration_s is None:
                    raise StateConflictError(f"slot {slot_start_s} was never cleared: pass duration_s")
                self._connection.execute(
                    "INSERT INTO slots (slot_start_s, duration_s, state) VALUES (?, ?, 'SETTLED')",
                    (slot_start_s, duration_s))
            self._connection.execute(
                "UPDATE slots SET state = 'SETTLED', settlement_json = ?, settled_at_s = ? WHERE slot_start_s = ?",
                (_json(summary_body), at_s, slot_start_s))
            for item in settlements:
                self.ledger.append(RecordKind.SETTLEMENT, settlement_to_body(item), slot_start_s=slot_start_s,
                                   home=item.home, at_s=at_s)

    def record_correction(self, slot_start_s: int, correction: HomeSettlement, at_s: float) -> None:
        """Append a SETTLEMENT_CORRECTION record for a settled slot (nothing is ever edited)."""
        if correction.slot_start_s != slot_start_s:
            raise ValueError(f"the correction is of slot {correction.slot_start_s}, not {slot_start_s}")
        with self.transaction():
            slot = self._slot_row(slot_start_s)
            if slot is None or slot.state != "SETTLED":
                raise StateConflictError(f"slot {slot_start_s} is not settled: nothing to correct")
            self.ledger.append(RecordKind.SETTLEMENT_CORRECTION, settlement_to_body(correction),
                               slot_start_s=slot_start_s, home=correction.home, at_s=at_s)

    def home_settlement(self, slot_start_s: int, home: str) -> HomeSettlement | None:
        """The home's current figures for a settled slot: its settlement plus every correction."""
        records = [record for record in self.ledger.records(home=home, slot_start_s=slot_start_s)
                   if record.kind in (RecordKind.SETTLEMENT, RecordKind.SETTLEMENT_CORRECTION)]
        if not records or records[0].kind is not RecordKind.SETTLEMENT:
            return None
        return combine(*(settlement_from_body(record.body) for record in records))

    def unsettled_slots(self) -> list[SlotRecord]:
        """Cleared slots not yet settled, oldest first."""
        with self._lock, self._guard():
            starts = [row[0] for row in self._connection.execute(
                "SELECT slot_start_s FROM slots WHERE state = 'CLEARED' ORDER BY slot_start_s")]
            return [slot for slot in map(self._slot_row, starts) if slot is not None]

    def cleared_slot_starts(self) -> set[int]:
        """The start of every slot cleared (settled or not)."""
        with self._lock, self._guard():
            return {row[0] for row in self._connection.execute("SELECT slot_start_s FROM slots")}

    def prune_messages(self, older_than_s: float) -> int:
        """Forget the acks of messages received before ``older_than_s``; the ledger is never pruned."""
        with self.transaction():
            return self._connection.execute("DELETE FROM messages WHERE received_at_s < ?",
                                            (older_than_s,)).rowcount

    # -- helpers ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction (nested calls join the outer one); ledger appends
        inside it commit or roll back with everything else."""
        with self._lock, self._guard():
            if self._connection.in_transaction:
                yield
                return
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._connection.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:  # SQLite may have rolled back already
                    self._connection.execute("ROLLBACK")
                raise

    def _remember(self, home: str, message_id: str, ack: dict, at_s: float, *,
                  ignore_duplicate: bool = False) -> None:
        verb = "INSERT OR IGNORE" if ignore_duplicate else "INSERT"
        try:
            self._connection.execute(
                f"{verb} INTO messages (message_id, home, ack_json, received_at_s) VALUES (?, ?, ?, ?)",
                (message_id, home, _json(ack), at_s))
        except sqlite3.IntegrityError:
            raise StateConflictError(f"message {message_id} was already processed") from None

    def _slot_row(self, slot_start_s: int) -> SlotRecord | None:
        row = self._connection.execute(
            "SELECT slot_start_s, duration_s, state, clearing_json, settlement_json FROM slots"
            " WHERE slot_start_s = ?", (slot_start_s,)).fetchone()
        if row is None:
            return None
        clearing = None if row[3] is None else json.loads(row[3])
        settlement = None if row[4] is None else json.loads(row[4])
        result = settlement if row[2] == "SETTLED" and settlement is not None else clearing
        return SlotRecord(row[0], row[1], row[2], result, clearing, settlement)

    def _one(self, sql: str, parameters: tuple) -> tuple | None:
        with self._lock, self._guard():
            return self._connection.execute(sql, parameters).fetchone()

    def _guard(self) -> AbstractContextManager[None]:
        """Turn SQLite's errors into a StoreError that names the file."""
        return sqlite_errors(self.path, damaged_advice=_KEEP_ADVICE,
                             busy_advice="is another community manager running on the same state directory?")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
