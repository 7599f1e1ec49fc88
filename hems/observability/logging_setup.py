"""Structured logging: one line per record to stderr, or to the journal under systemd.

Records carry their logger name and any ``extra={...}`` fields, as
``key=value`` pairs (default) or as one JSON object per line. When stderr is
connected to journald (systemd sets ``JOURNAL_STREAM`` to the device and inode of
that stream) and systemd-python is installed, its ``JournalHandler`` sends
records with native journal fields; otherwise stderr is used. Never both, or journald would store
every record twice.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# syslog priorities for journald's "<N>" line prefix (SyslogLevelPrefix=yes is its default).
_SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
                    logging.DEBUG: 7}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra={...}`` fields of a record."""
    return {key: value for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")}


def _utc_timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _kv_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    # json.dumps quotes and escapes newlines, so a record stays on one line.
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=info logger=hems.x msg="…" key=value`` on one line.

    ``timestamps=False`` drops ``ts`` (journald stamps each line itself) and
    ``syslog_prefix=True`` starts each line with ``<N>`` so journald records the
    right priority for lines written to stderr.
    """

    def __init__(self, timestamps: bool = True, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.timestamps = timestamps
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as one line."""
        fields: list[tuple[str, Any]] = []
        if self.timestamps:
            fields.append(("ts", _utc_timestamp(record.created)))
        fields += [("level", record.levelname.lower()), ("logger", record.name),
                   ("msg", record.getMessage())]
        fields += sorted(extra_fields(record).items())
        if record.exc_info:
            fields.append(("exc", self.formatException(record.exc_info)))
        if record.stack_info:
            fields.append(("stack", record.stack_info))
        line = " ".join(f"{key}={_kv_value(value)}" for key, value in fields)
        if self.syslog_prefix:
            line = f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as one JSON line."""
        document: dict[str, Any] = {"ts": _utc_timestamp(record.created), "level": record.levelname.lower(),
                                    "logger": record.name, "msg": record.getMessage()}
        for key, value in extra_fields(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


def stderr_is_journal(environ: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream systemd connected us to.

    ``JOURNAL_STREAM`` is ``device:inode`` of that stream; comparing it with
    fstat tells a redirected stderr (``hems run 2>file`` under systemd-run, a
    shell started from a unit) from the real journal connection.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        status = os.fstat((sys.stderr if stream is None else stream).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def _journal_handler_class() -> type[logging.Handler] | None:
    try:
        from systemd.journal import JournalHandler  # type: ignore[import-not-found]
    except ImportError:
        return None
    return JournalHandler


def make_handler(json_format: bool = False, environ: Mapping[str, str] | None = None,
                 stream: IO[str] | None = None) -> logging.Handler:
    """The one handler to log with: journald's own when possible, else stderr."""
    stream = sys.stderr if stream is None else stream
    to_journal = stderr_is_journal(environ, stream)
    if to_journal:
        journal_handler = _journal_handler_class()
        if journal_handler is not None:
            handler = journal_handler(SYSLOG_IDENTIFIER="hems")
            # JournalHandler sends priority, logger and code location as journal fields
            # itself; the message stays plain. (Not run here: systemd-python is optional.)
            handler.setFormatter(logging.Formatter("%(message)s"))
            return handler
    handler = logging.StreamHandler(stream)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter(timestamps=not to_journal, syslog_prefix=to_journal))
    return handler


def setup_logging(level: str | int = "INFO", json_format: bool = False,
                  environ: Mapping[str, str] | None = None, stream: IO[str] | None = None,
                  logger: logging.Logger | None = None) -> logging.Handler:
    """Make ``logger`` (default: the root logger) log through exactly one handler.

    Handlers a previous call installed are replaced, so calling it again (e.g.
    after reading the configuration) never duplicates lines.
    """
    target = logging.getLogger() if logger is None else logger
    for old in [h for h in target.handlers if getattr(h, "_hems_handler", False)]:
        target.removeHandler(old)
        old.close()
    handler = make_handler(json_format, environ, stream)
    handler._hems_handler = True  # type: ignore[attr-defined]
    target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
