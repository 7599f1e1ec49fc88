"""Shared fixtures: every test that needs a device talks to a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.mosquitto import MosquittoBroker, mosquitto_binary


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 5.0,
                   interval_s: float = 0.01) -> None:
    """Wait until ``condition()`` is true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Undo what a command run in-process did to the root logger.

    ``hems run``/``hems demo`` install their own handlers, some on the test's captured
    stderr; left behind, they write to a closed file in every later test.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh mosquitto on 127.0.0.1 and a free port (anonymous, no persistence), stopped by PID."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed: run scripts/bootstrap.sh or apt-get install mosquitto")
    with MosquittoBroker(tmp_path / "mosquitto") as broker:
        yield broker
