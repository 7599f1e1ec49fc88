"""Async Modbus transport: shared connections, bus locks, retries, health."""

from drivers.transport.blocks import ReadBlock, plan_blocks
from drivers.transport.connection import (
    ConnectionPool,
    DeviceError,
    DeviceTimeout,
    DeviceUnavailable,
    ModbusConnection,
    ModbusExceptionResponse,
    RetryPolicy,
)
from drivers.transport.endpoint import Endpoint, RtuEndpoint, TcpEndpoint, parse_endpoint
from drivers.transport.health import DeviceHealth

__all__ = [
    "ConnectionPool", "DeviceError", "DeviceHealth", "DeviceTimeout", "DeviceUnavailable", "Endpoint",
    "ModbusConnection", "ModbusExceptionResponse", "ReadBlock", "RetryPolicy", "RtuEndpoint", "TcpEndpoint",
    "parse_endpoint", "plan_blocks",
]
