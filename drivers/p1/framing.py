"""Splitting a P1 byte stream into telegrams (pure, no I/O, no dsmr-parser).

A telegram runs from ``/`` to ``!`` followed by an optional CRC (4 hex digits,
none on DSMR 2.2/3) and CR LF. The serial line gives no other framing, so the
reader has to cope with joining mid-telegram, bytes lost on a noisy line, and an
adapter that spews garbage: everything outside ``/``…``!XXXX\\r\\n`` is dropped,
a telegram that never reaches its ``!`` is counted as truncated, and the buffer
never grows beyond ``max_telegram_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The largest plausible telegram. DSMR 5 telegrams are 0.7-1.5 kB; a 1024-char
#: text message and the Belgian 13-month peak list add ~2.5 kB. Anything
#: larger without a "!" is garbage, and capping keeps memory bounded.
DEFAULT_MAX_TELEGRAM_BYTES = 16 * 1024

#: At most "ABCD" + an optional NUL (seen on some meters) + "\r" between "!" and "\n".
_MAX_TRAILER_BYTES = 6


@dataclass(slots=True)
class FeedResult:
    """What one :meth:`TelegramFramer.feed` call produced."""

    #: Complete candidate telegrams, ``/`` through ``\\n``, not yet CRC-checked.
    telegrams: list[bytes] = field(default_factory=list)
    #: Telegrams that started but were abandoned: a new ``/`` before the ``!``,
    #: no ``!`` within ``max_telegram_bytes``, or a malformed end line.
    truncated: int = 0
    #: Bytes outside any telegram (line noise, the tail of a telegram we joined
    #: half-way). Not an error by itself, so counted separately.
    discarded_bytes: int = 0


class TelegramFramer:
    """Incremental splitter of a P1 byte stream into telegrams.

    Feed it whatever the port delivers, in chunks of any size; it returns the
    telegrams that became complete. Call :meth:`reset` when the port is reopened,
    so half a telegram from before an unplug is never glued to the next one.
    """

    def __init__(self, max_telegram_bytes: int = DEFAULT_MAX_TELEGRAM_BYTES) -> None:
        if max_telegram_bytes < 64:
            raise ValueError("max_telegram_bytes must be at least 64")
        self.max_telegram_bytes = max_telegram_bytes
        self._buf = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes held while waiting for the rest of a telegram."""
        return len(self._buf)

    def reset(self) -> None:
        """Drop any partial telegram (after a reconnect the stream restarts)."""
        self._buf.clear()

    def feed(self, data: bytes) -> FeedResult:
        """Add ``data`` to the stream; return the telegrams completed by it."""
        result = FeedResult()
        buf = self._buf
        buf += data
        while buf:
            start = buf.find(b"/")
            if start < 0:
                result.discarded_bytes += len(buf)
                buf.clear()
                break
            if start:
                result.discarded_bytes += start
                del buf[:start]
            # buf now starts with "/".
            bang = buf.find(b"!", 1)
            next_start = buf.find(b"/", 1)
            if next_start > 0 and (bang < 0 or next_start < bang):
                # A new telegram began before this one ended: bytes were lost.
                result.truncated += 1
                del buf[:next_start]
                continue
            if bang < 0:
                if len(buf) > self.max_telegram_bytes:
                    result.truncated += 1
                    buf.clear()
                break  # wait for the "!"
            end = buf.find(b"\n", bang)
            trailer_end = end if end >= 0 else len(buf)
            if next_start > bang and next_start < trailer_end:
                # "!" then a new "/" before the line end: the CRC line was cut off.
                result.truncated += 1
                del buf[:next_start]
                continue
            if trailer_end - bang - 1 > _MAX_TRAILER_BYTES:
                # Whatever follows the "!" is not a CRC line.
                result.truncated += 1
                del buf[: bang + 1]
                continue
            if end < 0:
                break  # wait for the rest of the CRC line
            result.telegrams.append(bytes(buf[: end + 1]))
            del buf[: end + 1]
        return result
