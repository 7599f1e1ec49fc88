"""The asyncio facade of the store: every SQLite call runs on one dedicated worker thread.

One thread (not ``asyncio.to_thread``'s shared pool) because a SQLite
connection must not be used by two threads at once, and because it keeps the
writes of one home in submission order: an ``enqueue`` followed by a
``mark_sent`` can never be reordered.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hems.store.rows import OutboxMessage, PlanRecord, PruneResult, ReadingBucket, SetpointRecord
from hems.store.store import DATABASE_FILENAME, Store

T = TypeVar("T")


class AsyncStore:
    """Awaitable wrapper around ``Store``; create it with ``await AsyncStore.open(...)``."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        self._store = store
        self._executor = executor

    @classmethod
    async def open(cls, path: Path | str, **options: Any) -> AsyncStore:
        """Open the database at ``path`` on a new worker thread (see ``Store`` for options)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hems-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(executor, functools.partial(Store, path, **options))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    @classmethod
    async def in_directory(cls, state_dir: Path | str, **options: Any) -> AsyncStore:
        """Open the store in ``state_dir`` under its standard file name."""
        return await cls.open(Path(state_dir) / DATABASE_FILENAME, **options)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._store.path

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    async def close(self) -> None:
        """Finish queued calls, close the database and stop the worker thread."""
        await self._run(self._store.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def check(self) -> None:
        """See ``Store.check``."""
        await self._run(self._store.check)

    async def add_readings(self, samples: Iterable[tuple[str, str, float, float]]) -> int:
        """See ``Store.add_readings``."""
        return await self._run(self._store.add_readings, list(samples))

    async def add_reading(self, device: str, role: str, value: float, at_s: float) -> None:
        """See ``Store.add_reading``."""
        await self._run(self._store.add_reading, device, role, value, at_s)

    async def readings(self, device: str, role: str, since_s: float | None = None,
                       until_s: float | None = None) -> list[ReadingBucket]:
        """See ``Store.readings``."""
        return await self._run(self._store.readings, device, role, since_s, until_s)

    async def save_plan(self, slot_start_s: float, status: str, solve_time_s: float, horizon: Any,
                        created_at_s: float | None = None) -> int:
        """See ``Store.save_plan``."""
        return await self._run(self._store.save_plan, slot_start_s, status, solve_time_s, horizon,
                               created_at_s)

    async def latest_plan(self) -> PlanRecord | None:
        """See ``Store.latest_plan``."""
        return await self._run(self._store.latest_plan)

    async def plans(self, since_s: float, limit: int = 1000) -> list[PlanRecord]:
        """See ``Store.plans``."""
        return await self._run(self._store.plans, since_s, limit)

    async def record_setpoint(self, device: str, role: str, value: float, readback_ok: bool | None,
                              written_at_s: float | None = None) -> int:
        """See ``Store.record_setpoint``."""
        return await self._run(self._store.record_setpoint, device, role, value, readback_ok,
                               written_at_s)

    async def setpoints(self, since_s: float = 0.0, device: str | None = None,
                        limit: int = 1000) -> list[SetpointRecord]:
        """See ``Store.setpoints``."""
        return await self._run(self._store.setpoints, since_s, device, limit)

    async def enqueue(self, topic: str, payload: str, message_id: str | None = None,
                      created_at_s: float | None = None) -> str:
        """See ``Store.enqueue``."""
        return await self._run(self._store.enqueue, topic, payload, message_id, created_at_s)

    async def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """See ``Store.pending``."""
        return await self._run(self._store.pending, limit)

    async def unacked(self, limit: int = 100) -> list[OutboxMessage]:
        """See :meth:`Store.unacked`."""
        return await self._run(self._store.unacked, limit)

    async def outbox_message(self, message_id: str) -> OutboxMessage | None:
        """See ``Store.outbox_message``."""
        return await self._run(self._store.outbox_message, message_id)

    async def mark_sent(self, message_id: str, at_s: float | None = None) -> bool:
        """See ``Store.mark_sent``."""
        return await self._run(self._store.mark_sent, message_id, at_s)

    async def mark_acked(self, message_id: str, at_s: float | None = None) -> bool:
        """See ``Store.mark_acked``."""
        return await self._run(self._store.mark_acked, message_id, at_s)

    async def prune(self, now_s: float | None = None) -> PruneResult:
        """See ``Store.prune``."""
        return await self._run(self._store.prune, now_s)
