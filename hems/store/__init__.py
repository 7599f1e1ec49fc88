"""SQLite (WAL) store of one home: downsampled readings, plans, setpoints written, outbox.

``Store`` is the blocking implementation; the daemon uses ``AsyncStore``, which
runs every call on one dedicated worker thread and never on the event loop.
"""

from hems.store.aio import AsyncStore
from hems.store.errors import StoreError
from hems.store.rows import OutboxMessage, PlanRecord, PruneResult, ReadingBucket, SetpointRecord
from hems.store.schema import MIGRATIONS, SCHEMA_VERSION
from hems.store.store import DATABASE_FILENAME, Store

__all__ = [
    "AsyncStore", "DATABASE_FILENAME", "MIGRATIONS", "OutboxMessage", "PlanRecord", "PruneResult",
    "ReadingBucket", "SCHEMA_VERSION", "SetpointRecord", "Store", "StoreError",
]
