"""A null-modem cable in pure Python: two pseudo-terminals whose masters are bridged by a thread.

The emulator opens one end (``server_port``), the reader the other (``client_port``);
bytes written on either side come out on the other. No socat needed. A pty has no
baud timing, frame gaps or collisions, so it tests framing and bus locking, not
line timing.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from dataclasses import dataclass, field


@dataclass
class PtyBridge:
    """Two raw ptys joined back to back; use as a context manager or call start()/close()."""

    _masters: tuple[int, int] = (-1, -1)
    _slaves: tuple[int, int] = (-1, -1)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    server_port: str = ""
    client_port: str = ""

    def start(self) -> PtyBridge:
        """Open the ptys and start copying."""
        master_a, slave_a = os.openpty()
        master_b, slave_b = os.openpty()
        for fd in (master_a, slave_a, master_b, slave_b):
            tty.setraw(fd)  # no echo, no line discipline: Modbus frames are binary
        self._masters, self._slaves = (master_a, master_b), (slave_a, slave_b)
        self.server_port, self.client_port = os.ttyname(slave_a), os.ttyname(slave_b)
        self._thread = threading.Thread(target=self._copy, name="pty-bridge", daemon=True)
        self._thread.start()
        return self

    def _copy(self) -> None:
        master_a, master_b = self._masters
        peer = {master_a: master_b, master_b: master_a}
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select(list(peer), [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                    if data:
                        os.write(peer[fd], data)
                except OSError:
                    continue  # the other side is not open yet or was closed: a line with nobody on it

    def close(self) -> None:
        """Stop copying and close every descriptor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        for fd in (*self._masters, *self._slaves):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._masters, self._slaves = (-1, -1), (-1, -1)

    def __enter__(self) -> PtyBridge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
