"""The run's budget of open files: every home of a run lives in one process.

One home holds about nine descriptors there (its SQLite store, its Modbus client, the emulator's
listener and accepted connection, its MQTT socket, ...). Debian's default soft limit on open files
is 1,024, which a run of about 100 homes reaches; a process may raise its soft limit up to the
hard one (usually 524,288 under systemd) without privileges, so the demo does that.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

logger = logging.getLogger(__name__)

#: Descriptors per home, with room to spare over the nine measured (bench/RESULTS.md, session 7).
DESCRIPTORS_PER_HOME = 12
#: The manager, the broker connection, the process pool, imports, logs.
DESCRIPTORS_BESIDES_HOMES = 256


def descriptors_needed(homes: int) -> int:
    """Open files a run of ``homes`` homes needs in its process."""
    return DESCRIPTORS_BESIDES_HOMES + DESCRIPTORS_PER_HOME * homes


def raise_open_file_limit(homes: int) -> int:
    """Raise this process's soft limit on open files to what ``homes`` need, at most to the hard
    limit (warned about when that is too low); the soft limit in force afterwards."""
    needed = descriptors_needed(homes)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        logger.warning("demo: %d homes need about %d open files, but the hard limit is %d: homes beyond "
                       "about %d will fail to connect (raise it with `ulimit -Hn` or LimitNOFILE=)",
                       homes, needed, hard, max(0, (hard - DESCRIPTORS_BESIDES_HOMES) // DESCRIPTORS_PER_HOME))
    return target


def open_files() -> tuple[int, int] | None:
    """``(open now, soft limit)`` of this process; None where /proc is not available."""
    fd_directory = Path("/proc/self/fd")
    if not fd_directory.is_dir():
        return None
    return len(list(fd_directory.iterdir())), resource.getrlimit(resource.RLIMIT_NOFILE)[0]
