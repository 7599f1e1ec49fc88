"""Transport against real pymodbus servers on 127.0.0.1: blocks, errors, reconnect."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.maps.schema import PointSpec, Table
from drivers.registers import RegisterType
from drivers.transport import (
    ConnectionPool,
    DeviceTimeout,
    DeviceUnavailable,
    ModbusConnection,
    ModbusExceptionResponse,
    RetryPolicy,
    TcpEndpoint,
    parse_endpoint,
    plan_blocks,
)
from tests.conftest import wait_for

FAST = RetryPolicy(timeout_s=0.2, retries=1, retry_delay_s=0.01, reconnect_delay_s=0.05, reconnect_delay_max_s=0.2)


def point(name: str, address: int, type_: str = "uint16", table: str = "holding", length: int | None = None,
          device_id: int | None = None) -> PointSpec:
    return PointSpec(name=name, address=address, type=RegisterType(type_), table=Table(table), length=length,
                     device_id=device_id)


class TestBlockPlanning:
    def test_contiguous_points_make_one_request(self):
        points = [point("a", 10), point("b", 11, "int32"), point("c", 13)]
        assert [(b.address, b.count) for b in plan_blocks(points, 125)] == [(10, 4)]

    def test_split_at_gaps_unless_allowed(self):
        points = [point("a", 10), point("b", 15)]
        assert [(b.address, b.count) for b in plan_blocks(points, 125)] == [(10, 1), (15, 1)]
        assert [(b.address, b.count) for b in plan_blocks(points, 125, max_gap_registers=4)] == [(10, 6)]

    def test_split_at_maximum_block_size_never_tears_a_point(self):
        points = [point(f"p{i}", 100 + 2 * i, "float32") for i in range(10)]
        blocks = plan_blocks(points, max_block_registers=5)
        assert all(block.count <= 5 for block in blocks)
        assert all(block.count % 2 == 0 for block in blocks)  # no float32 split in halves
        assert sum(block.count for block in blocks) == 20

    def test_tables_and_unit_ids_are_separate_requests(self):
        points = [point("a", 0), point("b", 1, table="input"), point("c", 2, device_id=227)]
        assert len(plan_blocks(points, 125, max_gap_registers=10)) == 3


class TestEndpoint:
    @pytest.mark.parametrize("text, expected", [
        ("192.0.2.1", TcpEndpoint("192.0.2.1", 502)),
        ("inverter.local:1502", TcpEndpoint("inverter.local", 1502)),
        ("tcp://127.0.0.1:5020", TcpEndpoint("127.0.0.1", 5020)),
        ("[::1]:503", TcpEndpoint("::1", 503)),
    ])
    def test_parse(self, text, expected):
        assert parse_endpoint(text) == expected

    @pytest.mark.parametrize("text", ["", ":502", "host:port", "host:70000"])
    def test_parse_rejects(self, text):
        with pytest.raises(ValueError):
            parse_endpoint(text)


def test_backoff_grows_exponentially_with_bounded_jitter():
    policy = RetryPolicy(reconnect_delay_s=1.0, reconnect_delay_max_s=16.0, jitter_ratio=0.2)
    rng = random.Random(1)
    for attempt, nominal in enumerate([1, 2, 4, 8, 16, 16]):
        delays = [policy.backoff_s(1.0, attempt, 16.0, rng) for _ in range(50)]
        assert all(0.8 * nominal <= delay <= 1.2 * nominal for delay in delays)
        assert len(set(delays)) > 1  # jittered, so two gateways do not retry in lock-step


async def start_server(devices, port: int = 0) -> tuple[ModbusTcpServer, int]:
    server = ModbusTcpServer(devices, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server, server.transport.sockets[0].getsockname()[1]


@pytest.fixture
async def server_with_counter():
    requests = []

    async def count(function_code, start_address, address, count, registers, set_values):
        requests.append((function_code, address, count))
        return None

    device = SimDevice(id=1, simdata=[SimData(0, values=list(range(100)), datatype=DataType.REGISTERS)], action=count)
    server, port = await start_server([device])
    yield port, requests
    await server.shutdown()


async def test_read_and_write_through_shared_connection(server_with_counter):
    port, requests = server_with_counter
    pool = ConnectionPool(FAST)
    connection = pool.get(TcpEndpoint("127.0.0.1", port))
    assert pool.get(TcpEndpoint("127.0.0.1", port)) is connection  # one connection per endpoint
    assert await connection.read(Table.HOLDING, 10, 3, device_id=1) == [10, 11, 12]
    await connection.write(20, [7, 8], device_id=1)
    assert await connection.read(Table.HOLDING, 20, 2, device_id=1) == [7, 8]
    assert [request[0] for request in requests] == [3, 16, 3]
    pool.close()


async def test_illegal_address_is_a_modbus_exception_without_retry(server_with_counter):
    port, requests = server_with_counter
    connection = ModbusConnection(TcpEndpoint("127.0.0.1", port), FAST)
    with pytest.raises(ModbusExceptionResponse) as raised:
        await connection.read(Table.HOLDING, 500, 2, device_id=1)
    assert raised.value.code == ExcCodes.ILLEGAL_ADDRESS
    assert connection.connected  # an exception answer proves the link is fine
    connection.close()


async def test_silent_device_times_out_after_bounded_retries_and_reconnects():
    # A socket that accepts and never answers: what a wedged device looks like.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connection = ModbusConnection(TcpEndpoint("127.0.0.1", port), FAST)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeviceTimeout):
        await connection.read(Table.HOLDING, 0, 1, device_id=1)
    elapsed = loop.time() - started
    assert 0.35 <= elapsed < 1.5  # 1 + 1 retry at 0.2 s each, plus backoff
    with pytest.raises(DeviceTimeout):
        await connection.read(Table.HOLDING, 0, 1, device_id=1)
    # After reconnect_after_timeouts unanswered requests the half-open link is dropped.
    assert not connection.connected
    connection.close()
    listener.close()


async def test_refused_connection_backs_off_instead_of_hammering():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens now
    connection = ModbusConnection(TcpEndpoint("127.0.0.1", port), FAST)
    with pytest.raises(DeviceUnavailable):
        await connection.read(Table.HOLDING, 0, 1, device_id=1)
    with pytest.raises(DeviceUnavailable, match="next attempt"):
        await connection.read(Table.HOLDING, 0, 1, device_id=1)


async def test_reconnects_after_server_restart_on_same_port():
    device = SimDevice(id=1, simdata=[SimData(0, values=[42], datatype=DataType.REGISTERS)])
    server, port = await start_server([device])
    connection = ModbusConnection(TcpEndpoint("127.0.0.1", port), FAST)
    changes: list[bool] = []
    connection.on_connection_change.append(changes.append)
    assert await connection.read(Table.HOLDING, 0, 1, device_id=1) == [42]
    await server.shutdown()
    with pytest.raises((DeviceUnavailable, DeviceTimeout)):
        await connection.read(Table.HOLDING, 0, 1, device_id=1)
    server, _ = await start_server([device], port=port)

    async def reads_again() -> bool:
        try:
            return await connection.read(Table.HOLDING, 0, 1, device_id=1) == [42]
        except (DeviceUnavailable, DeviceTimeout):
            return False

    await wait_for(reads_again, timeout_s=5)
    assert changes[0] is True and False in changes and changes[-1] is True
    assert connection.connects == 2
    connection.close()
    await server.shutdown()
