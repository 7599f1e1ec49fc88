"""Fixtures for the SunSpec tests."""

from __future__ import annotations

import pytest

from drivers.transport import ModbusConnection, TcpEndpoint
from tests.sunspec.servers import FAST_POLICY


@pytest.fixture
async def connect():
    """Factory for connections to 127.0.0.1:port, closed after the test."""
    made: list[ModbusConnection] = []

    def make(port: int) -> ModbusConnection:
        connection = ModbusConnection(TcpEndpoint("127.0.0.1", port), FAST_POLICY)
        made.append(connection)
        return connection

    yield make
    for connection in made:
        connection.close()
