"""The community manager's append-only, hash-chained ledger (one SQLite table).

Every record is linked to the one before it::

    hash = sha256( header + "\\n" + body )   (hex, over UTF-8)
    header = JSON [previous_hash, seq, kind, slot_start_s, home, recorded_at_ms]   (compact)
    body = canonical JSON (sorted keys, compact, no floats)

``seq`` runs 1, 2, 3 … without gaps and the first record's ``previous_hash`` is 64 zeros, so an
auditor can recompute the chain from an export with any SQL client and any language. The time is
hashed as integer milliseconds (a float has no canonical text form), so ``recorded_at_s`` comes back
rounded to the millisecond.

What the chain detects and what it cannot:

- an altered record (its hash no longer matches), a removed or inserted record (a ``seq`` gap or a
  broken link) and reordered records;
- a removed *last* record leaves a valid chain, so an anchor row (record count and head) is updated in
  the same transaction as every append and compared by :meth:`Ledger.verify`;
- someone with write access to the file can rewrite the anchor too, or recompute the whole chain:
  only a head published earlier (the manager puts it in every slot result) catches that, which is
  why :meth:`Ledger.verify` takes ``expected_head``. Records appended after the published head by such
  an attacker are indistinguishable from genuine ones; that needs signatures, not hashes.

The triggers in :data:`LEDGER_SCHEMA` make the table append-only for anyone going through SQLite;
they keep honest code honest, the hashes catch everyone else.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: The ``previous_hash`` of the first record.
GENESIS_HASH = "0" * 64

#: The tables, triggers and anchor row of the ledger; :mod:`hems.community.state` runs them in its
#: first migration (call :func:`create_ledger_schema` to put a ledger in another database).
LEDGER_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE ledger (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        slot_start_s INTEGER,
        home TEXT,
        recorded_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL,
        previous_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX ledger_by_slot ON ledger (slot_start_s, kind)",
    "CREATE INDEX ledger_by_home ON ledger (home, slot_start_s)",
    """CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: DELETE refused'); END""",
    # One row: how many records there are and the hash of the last, written with every append.
    """CREATE TABLE ledger_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        records INTEGER NOT NULL,
        head TEXT NOT NULL
    )""",
    f"INSERT INTO ledger_anchor (id, records, head) VALUES (1, 0, '{GENESIS_HASH}')",
)


class RecordKind(StrEnum):
    """What a ledger record is about."""

    CONFIG = "config"
    BID_ACCEPTED = "bid_accepted"
    CLEARING = "clearing"
    ALLOCATION = "allocation"
    METER = "meter"
    SETTLEMENT = "settlement"
    SETTLEMENT_CORRECTION = "settlement_correction"
    GRID_LIMITS = "grid_limits"  # the operator's day-ahead limits and fees, as taken
    FLEXIBILITY_REQUEST = "flexibility_request"  # a request taken, with the flexibility it was split on
    FLEXIBILITY_DISPATCH = "flexibility_dispatch"  # the binding commitments after the homes' answers
    FLEXIBILITY_SETTLEMENT = "flexibility_settlement"  # delivery and money: per home, and a summary
    UPSTREAM_ALLOCATION = "upstream_allocation"  # what the upstream market allocated to the community


@dataclass(frozen=True)
class LedgerRecord:
    """One record as stored."""

    seq: int
    kind: RecordKind
    slot_start_s: int | None
    home: str | None
    recorded_at_s: float  # UTC epoch seconds, to the millisecond
    body: dict[str, Any]
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class LedgerVerification:
    """The outcome of :meth:`Ledger.verify`."""

    ok: bool
    records: int  # rows found
    head: str  # the stored hash of the last row (GENESIS_HASH when empty)
    problems: tuple[str, ...]


def canonical_json(body: Mapping[str, Any]) -> str:
    """``body`` as canonical JSON: sorted keys, no spaces, non-ASCII kept (hash it as UTF-8).

    Allowed values: None, bool, int, str, lists/tuples and mappings with string keys. A float is a
    ``TypeError`` naming its key, so money and energy stay integers (use a decimal string for a
    fraction); so is anything else JSON would silently convert.
    """
    if not isinstance(body, Mapping):
        raise TypeError(f"a ledger body must be a mapping, not {type(body).__name__}")
    _check_value(body, "body")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        raise TypeError(f"{where} is the float {value!r}: ledger bodies hold integers or decimal strings")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}: ledger body keys must be strings")
            _check_value(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}: not allowed in a ledger body")


def record_hash(previous_hash: str, seq: int, kind: str, slot_start_s: int | None, home: str | None,
                recorded_at_ms: int, body_json: str) -> str:
    """The hash of one record (see the module docstring for the exact bytes)."""
    header = json.dumps([previous_hash, seq, kind, slot_start_s, home, recorded_at_ms],
                        separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((header + "\n" + body_json).encode("utf-8")).hexdigest()


def create_ledger_schema(connection: sqlite3.Connection) -> None:
    """Create the ledger's tables in a database that has none (one transaction)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in LEDGER_SCHEMA:
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


#: verify() reports at most this many problems (a rewritten file would otherwise list every record).
MAX_PROBLEMS = 1000

_COLUMNS = "seq, kind, slot_start_s, home, recorded_at_ms, body, previous_hash, hash"


class Ledger:
    """The hash-chained record of everything the manager decided, on a caller's connection.

    The tables come from :data:`LEDGER_SCHEMA`. The connection must be in autocommit mode
    (``isolation_level=None``), like :class:`hems.community.state.CommunityState`'s, so that
    transactions are exactly the ones the code opens.
    """

    def __init__(self, connection: sqlite3.Connection, lock: threading.RLock | None = None) -> None:
        """Use ``connection``; ``lock``, when given, is held around every call (the owner's lock)."""
        self._connection = connection
        self._lock = lock

    def append(self, kind: RecordKind, body: Mapping[str, Any], *, slot_start_s: int | None,
               home: str | None, at_s: float) -> LedgerRecord:
        """Append one record and move the anchor.

        Inside a transaction (the usual case) this joins it, so the record commits or rolls back with
        the state change it documents. Called outside one, it makes itself atomic in its own
        ``BEGIN IMMEDIATE`` transaction. ``TypeError`` for a body that is not canonical JSON.
        """
        kind = RecordKind(kind)
        body_json = canonical_json(body)
        if slot_start_s is not None and (isinstance(slot_start_s, bool) or not isinstance(slot_start_s, int)):
            raise TypeError(f"slot_start_s = {slot_start_s!r}: an integer (UTC epoch seconds) or None")
        if home is not None and not isinstance(home, str):
            raise TypeError(f"home = {home!r}: a home id (str) or None")
        recorded_at_ms = round(float(at_s) * 1000)
        with self._locked(), self._atomic():
            count, previous_hash = self._anchor()
            seq = count + 1
            digest = record_hash(previous_hash, seq, kind.value, slot_start_s, home, recorded_at_ms, body_json)
            self._connection.execute(
                f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, kind.value, slot_start_s, home, recorded_at_ms, body_json, previous_hash, digest))
            self._connection.execute("UPDATE ledger_anchor SET records = ?, head = ? WHERE id = 1", (seq, digest))
        return LedgerRecord(seq, kind, slot_start_s, home, recorded_at_ms / 1000, json.loads(body_json),
                            previous_hash, digest)

    def records(self, *, kind: RecordKind | None = None, home: str | None = None,
                slot_start_s: int | None = None, since_slot_s: int | None = None,
                until_slot_s: int | None = None) -> list[LedgerRecord]:
        """Records matching every given filter, in ledger order.

        ``since_slot_s`` is inclusive and ``until_slot_s`` exclusive; any slot filter leaves out the
        records that belong to no slot.
        """
        clauses, parameters = [], []
        for column, operator, value in (("kind", "=", None if kind is None else RecordKind(kind).value),
                                        ("home", "=", home), ("slot_start_s", "=", slot_start_s),
                                        ("slot_start_s", ">=", since_slot_s), ("slot_start_s", "<", until_slot_s)):
            if value is not None:
                clauses.append(f"{column} {operator} ?")
                parameters.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._locked():
            rows = self._connection.execute(f"SELECT {_COLUMNS} FROM ledger{where} ORDER BY seq",
                                            parameters).fetchall()
        return [LedgerRecord(row[0], RecordKind(row[1]), row[2], row[3], row[4] / 1000, json.loads(row[5]),
                             row[6], row[7]) for row in rows]

    def head(self) -> str:
        """The hash of the last record (``GENESIS_HASH`` for an empty ledger): publish it."""
        with self._locked():
            return self._anchor()[1]

    def count(self) -> int:
        """How many records the ledger holds (by its anchor)."""
        with self._locked():
            return self._anchor()[0]

    def __len__(self) -> int:
        return self.count()

    def __bool__(self) -> bool:
        # A ledger object is always there, even when empty: ``if state.ledger`` must not mean "has records".
        return True

    def verify(self, expected_head: str | None = None) -> LedgerVerification:
        """Recompute every hash and link; report each problem with the record's ``seq``.

        ``expected_head`` is a head published earlier: it must be the hash of some record, or the
        ledger was truncated or rewritten since (the only check a rewritten anchor cannot fool).
        """
        problems: list[str] = []
        count, expected_seq, previous_hash, head_seen = 0, 1, GENESIS_HASH, expected_head in (None, GENESIS_HASH)
        # One read transaction: the anchor and the rows are of the same moment. The rows are
        # streamed, so a ledger of millions of records is checked in constant memory.
        with self._locked(), self._atomic("BEGIN"):
            anchor = self._connection.execute("SELECT records, head FROM ledger_anchor WHERE id = 1").fetchone()
            for row in self._connection.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq"):
                seq, stored_previous, stored_hash = row[0], row[6], row[7]
                if seq != expected_seq:
                    gap = f"record {expected_seq}" if seq == expected_seq + 1 else f"records {expected_seq}..{seq - 1}"
                    problems.append(f"{gap}: missing (removed)")
                elif stored_previous != previous_hash:
                    link = "the genesis hash" if seq == 1 else f"record {seq - 1}"
                    problems.append(f"record {seq}: previous_hash does not link to {link} "
                                    "(a record altered, removed, inserted or reordered)")
                problems.extend(self._check_row(*row))
                head_seen = head_seen or stored_hash == expected_head
                count, expected_seq, previous_hash = count + 1, seq + 1, stored_hash
        head = previous_hash
        if anchor is None:
            problems.append("anchor: missing (the ledger_anchor row was deleted)")
        elif (anchor[0], anchor[1]) != (count, head):
            problems.append(f"anchor: {anchor[0]} records ending in {anchor[1][:16]}… expected, found "
                            f"{count} ending in {head[:16]}… (records removed or added)")
        if not head_seen:
            problems.append(f"expected head {str(expected_head)[:16]}… is not in the ledger "
                            "(truncated or rewritten since it was published)")
        if len(problems) > MAX_PROBLEMS:
            problems[MAX_PROBLEMS:] = [f"… and {len(problems) - MAX_PROBLEMS} more problems"]
        return LedgerVerification(not problems, count, head, tuple(problems))

    @staticmethod
    def _check_row(seq: int, kind: Any, slot_start_s: Any, home: Any, recorded_at_ms: Any, body_json: Any,
                   stored_previous: Any, stored_hash: Any) -> list[str]:
        problems = []
        if kind not in RecordKind._value2member_map_:
            problems.append(f"record {seq}: unknown kind {kind!r}")
        try:
            json.loads(body_json)
            recomputed = record_hash(stored_previous, seq, kind, slot_start_s, home, recorded_at_ms, body_json)
        except (TypeError, ValueError) as error:
            return problems + [f"record {seq}: unreadable ({error})"]
        if recomputed != stored_hash:
            problems.append(f"record {seq}: hash mismatch (altered)")
        return problems

    def _anchor(self) -> tuple[int, str]:
        row = self._connection.execute("SELECT records, head FROM ledger_anchor WHERE id = 1").fetchone()
        if row is None:
            raise RuntimeError("the ledger anchor row is missing: run Ledger.verify() and restore a backup")
        return int(row[0]), str(row[1])

    def _locked(self) -> threading.RLock | nullcontext[None]:
        return self._lock if self._lock is not None else nullcontext()

    @contextmanager
    def _atomic(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
        if self._connection.in_transaction:
            yield
            return
        self._connection.execute(begin)
        try:
            yield
            self._connection.execute("COMMIT")
        except BaseException:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            raise
