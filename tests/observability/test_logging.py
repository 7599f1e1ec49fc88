"""Formatter output and the choice between stderr and the journal."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import types

import pytest

from hems.observability import logging_setup
from hems.observability.logging_setup import (JsonFormatter, KeyValueFormatter, make_handler, setup_logging,
                                              stderr_is_journal)


def record(message: str = "polled %d devices", args: tuple = (3,), level: int = logging.INFO,
           **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("hems.runtime.poll", level, __file__, 1, message, args, None)
    made.created = 1_700_000_000.25
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_key_value_line():
    line = KeyValueFormatter().format(record(device="meter-1", value_w=12.5, note='said "hi"\nbye'))
    assert line == ('ts=2023-11-14T22:13:20.250Z level=info logger=hems.runtime.poll '
                    'msg="polled 3 devices" device=meter-1 note="said \\"hi\\"\\nbye" value_w=12.5')


def test_key_value_exception_stays_on_one_line():
    try:
        raise ValueError("bad register")
    except ValueError:
        made = record("read failed", (), logging.ERROR)
        made.exc_info = sys.exc_info()
    line = KeyValueFormatter(timestamps=False, syslog_prefix=True).format(made)
    assert "\n" not in line
    assert line.startswith("<3>level=error logger=hems.runtime.poll msg=\"read failed\" exc=\"Traceback")
    assert "ValueError: bad register" in line


def test_json_line():
    document = json.loads(JsonFormatter().format(record(device="meter-1", value_w=12.5)))
    assert document == {"ts": "2023-11-14T22:13:20.250Z", "level": "info", "logger": "hems.runtime.poll",
                        "msg": "polled 3 devices", "device": "meter-1", "value_w": 12.5}


def test_journal_stream_detection(tmp_path):
    with open(tmp_path / "stderr.log", "w") as stream:
        status = os.fstat(stream.fileno())
        matching = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        assert stderr_is_journal(matching, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino + 1}"}, stream)
        assert not stderr_is_journal({}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
        assert not stderr_is_journal(matching, io.StringIO())  # no file descriptor


@pytest.fixture
def fake_journal(monkeypatch):
    """A stand-in systemd.journal module whose JournalHandler collects records."""
    class JournalHandler(logging.Handler):
        def __init__(self, **fields: str) -> None:
            super().__init__()
            self.fields = fields
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    systemd = types.ModuleType("systemd")
    journal = types.ModuleType("systemd.journal")
    journal.JournalHandler = JournalHandler
    systemd.journal = journal
    monkeypatch.setitem(sys.modules, "systemd", systemd)
    monkeypatch.setitem(sys.modules, "systemd.journal", journal)
    return JournalHandler


def test_journal_handler_only_when_stderr_is_the_journal(tmp_path, fake_journal):
    with open(tmp_path / "stderr.log", "w") as stream:
        status = os.fstat(stream.fileno())
        journal_env = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        assert isinstance(make_handler(environ=journal_env, stream=stream), fake_journal)
        assert isinstance(make_handler(environ={}, stream=stream), logging.StreamHandler)


def test_stderr_under_journal_without_systemd_python(tmp_path, monkeypatch):
    monkeypatch.setattr(logging_setup, "_journal_handler_class", lambda: None)
    with open(tmp_path / "stderr.log", "w") as stream:
        status = os.fstat(stream.fileno())
        handler = make_handler(environ={"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}, stream=stream)
        assert isinstance(handler, logging.StreamHandler)
        assert handler.formatter.syslog_prefix and not handler.formatter.timestamps  # journald stamps


def test_setup_installs_exactly_one_handler_and_replaces_it(tmp_path, fake_journal):
    logger = logging.getLogger(f"hems.test.{tmp_path.name}")
    logger.propagate = False
    stream = io.StringIO()
    setup_logging("DEBUG", environ={}, stream=stream, logger=logger)
    setup_logging("DEBUG", environ={}, stream=stream, logger=logger)  # again: still one handler
    assert len(logger.handlers) == 1
    logger.debug("hello", extra={"home": "h1"})
    assert stream.getvalue().count("\n") == 1
    assert 'msg=hello home=h1' in stream.getvalue()
    setup_logging("INFO", json_format=True, environ={}, stream=stream, logger=logger)
    assert len(logger.handlers) == 1 and isinstance(logger.handlers[0].formatter, JsonFormatter)
    logger.handlers[0].close()
    logger.handlers.clear()
