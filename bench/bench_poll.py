"""Poll time of one site (meter + PV inverter + battery) against bare pymodbus round trips.

The site is three emulated devices behind one endpoint: an Eastron SDM630 meter, an SMA
Sunny Tripower and an SMA Sunny Boy Storage. For each transport, the same run measures

* ``hems``: ``MapClient.poll()`` of the three devices (block plan, locking, decoding,
  plausibility checks, health bookkeeping), and
* ``bare``: a raw pymodbus client issuing exactly the same read requests, decoding nothing,

interleaved, so both see the same machine state. The ratio hems/bare is the figure of merit
(target <= 1.5).

    .venv/bin/python bench/bench_poll.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from drivers.devices import MapClient
from drivers.emulators import ManualClock, MapBinding, SitePlant
from drivers.emulators.modbus_server import EmulatorServer
from drivers.emulators.pty_bridge import PtyBridge
from drivers.maps import Table, load_map
from drivers.transport import ConnectionPool, RetryPolicy, RtuEndpoint, TcpEndpoint

SITE = (("eastron_sdm630", 1), ("sma_sunny_tripower", 2), ("sma_sunny_boy_storage", 3))
RTU_BAUDRATE = 115200


async def measure(clients: list[MapClient], bare, rounds: int) -> tuple[list[float], list[float]]:
    requests = [(client.unit_id if block.device_id is None else block.device_id, block)
                for client in clients for block in client.blocks]
    hems_s, bare_s = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for client in clients:
            await client.poll()
        hems_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        for unit_id, block in requests:
            read = bare.read_holding_registers if block.table is Table.HOLDING else bare.read_input_registers
            response = await read(block.address, count=block.count, device_id=unit_id)
            assert not response.isError()
        bare_s.append(time.perf_counter() - started)
    assert all(client.health.failures_total == 0 for client in clients)
    return hems_s, bare_s


def report(transport: str, requests: int, hems_s: list[float], bare_s: list[float]) -> None:
    hems_ms, bare_ms = statistics.median(hems_s) * 1e3, statistics.median(bare_s) * 1e3
    print(f"| {transport} | {requests} | {hems_ms:.2f} ms | {bare_ms:.2f} ms | {hems_ms / bare_ms:.2f} |")


async def main(rounds: int) -> None:
    plant = SitePlant(clock=ManualClock(1_750_507_200.0))
    bindings = [MapBinding(load_map(name), unit_id) for name, unit_id in SITE]
    policy = RetryPolicy(timeout_s=1.0, retries=0)
    print(f"machine: {platform.machine()}, {platform.processor() or platform.platform()}, "
          f"Python {platform.python_version()}, {rounds} rounds, medians")
    print("| transport | requests per poll | hems poll | bare pymodbus | ratio |")
    print("|---|---|---|---|---|")

    server = EmulatorServer(bindings, plant, tcp=("127.0.0.1", 0))
    await server.start()
    pool = ConnectionPool(policy)
    connection = pool.get(TcpEndpoint("127.0.0.1", server.port))
    clients = [MapClient(connection, binding.register_map, unit_id=binding.unit_id) for binding in bindings]
    bare = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1, retries=0)
    await bare.connect()
    hems_s, bare_s = await measure(clients, bare, rounds)
    report("Modbus TCP, loopback", sum(len(client.blocks) for client in clients), hems_s, bare_s)
    bare.close()
    pool.close()
    await server.stop()

    with PtyBridge() as bridge:
        server = EmulatorServer(bindings, plant, rtu_port=bridge.server_port, baudrate=RTU_BAUDRATE)
        await server.start()
        pool = ConnectionPool(policy)
        connection = pool.get(RtuEndpoint(bridge.client_port, baudrate=RTU_BAUDRATE))
        clients = [MapClient(connection, binding.register_map, unit_id=binding.unit_id) for binding in bindings]
        for client in clients:
            await client.poll()  # warm up; the pty carries one client at a time, so they take turns
        pool.close()
        bare = AsyncModbusSerialClient(bridge.client_port, baudrate=RTU_BAUDRATE, timeout=1, retries=0)
        await bare.connect()
        bare_s_rtu = []
        requests = [(client.unit_id, block) for client in clients for block in client.blocks]
        for _ in range(rounds):
            started = time.perf_counter()
            for unit_id, block in requests:
                read = bare.read_holding_registers if block.table is Table.HOLDING else bare.read_input_registers
                assert not (await read(block.address, count=block.count, device_id=unit_id)).isError()
            bare_s_rtu.append(time.perf_counter() - started)
        bare.close()
        for silence in (True, False):
            pool = ConnectionPool(policy)
            connection = pool.get(RtuEndpoint(bridge.client_port, baudrate=RTU_BAUDRATE))
            clients = [MapClient(connection, binding.register_map, unit_id=binding.unit_id)
                       for binding in bindings]
            if not silence:
                # Like for like with bare pymodbus, which keeps no 3.5-character silence between frames.
                connection.interframe_delay_s = 0.0
            hems_s_rtu = []
            for _ in range(rounds):
                started = time.perf_counter()
                for client in clients:
                    await client.poll()
                hems_s_rtu.append(time.perf_counter() - started)
            assert all(client.health.failures_total == 0 for client in clients)
            label = "with 3.5-char silence" if silence else "without silence"
            report(f"Modbus RTU, pty pair, {RTU_BAUDRATE} Bd, {label}", len(requests), hems_s_rtu, bare_s_rtu)
            pool.close()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    asyncio.run(main(parser.parse_args().rounds))
