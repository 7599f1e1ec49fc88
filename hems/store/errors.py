"""The one exception the store raises for anything the operator must act on."""

from __future__ import annotations

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
