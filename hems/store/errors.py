"""The one exception the store raises for anything the operator must act on."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StoreError(RuntimeError):
    """The database cannot be used; the message names the file and what to do.

    Raised for a file that is not a valid SQLite database, a schema newer than
    this hems understands, and SQLite errors at run time. The store never
    recreates or deletes a database on its own: the history, plans and outbox in
    it may be all there is.
    """

    def __init__(self, path: Path | str, problem: str, advice: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.advice = advice
        message = f"{self.path}: {problem}"
        if advice:
            message += f" ({advice})"
        super().__init__(message)


@contextmanager
def sqlite_errors(path: Path, *, damaged_advice: str, busy_advice: str) -> Iterator[None]:
    """Turn SQLite's errors inside the block into a :class:`StoreError` that names the file."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        text = str(error)
        if "not a database" in text or "malformed" in text:
            raise StoreError(path, f"not a usable SQLite database: {text}", damaged_advice) from error
        if "locked" in text or "busy" in text:
            raise StoreError(path, f"database is in use: {text}", busy_advice) from error
        raise StoreError(path, f"SQLite error: {text}",
                         "check free space and permissions of the state directory") from error
