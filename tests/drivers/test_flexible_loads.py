"""EvCharger and HeatPump capability views over a real TCP server."""

from __future__ import annotations

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.devices import CapabilityMissing, EvCharger, HeatPump, MapClient, SgReadyState
from drivers.maps import PointWriteError, load_map
from drivers.transport import ConnectionPool, RetryPolicy, TcpEndpoint

MAP_TOML = """
# Test map of a wallbox and a heat pump controller behind one address: not a real device.
[device]
id = "loads"
manufacturer = "Test"
models = ["L1"]
kinds = ["ev_charger", "heat_pump"]
source = "hems test fixture, version 1"

[[point]]
name = "ev_power"
address = 0
type = "uint16"
role = "ev_power_w"
[[point]]
name = "ev_plugged"
address = 1
type = "uint16"
role = "ev_connected"
[[point]]
name = "ev_current"
address = 2
type = "uint16"
scale = 0.1
unit = "A"
access = "rw"
min = 0
max = 32
role = "ev_current_limit_a"
[[point]]
name = "ev_enable"
address = 3
type = "uint16"
access = "rw"
min = 0
max = 1
role = "ev_charging_enabled"
[[point]]
name = "hp_power"
address = 10
type = "uint16"
role = "heat_pump_power_w"
[[point]]
name = "sg_ready"
address = 11
type = "uint16"
access = "rw"
min = 1
max = 4
role = "heat_pump_sg_ready_state"
"""


@pytest.fixture
async def loads(tmp_path):
    path = tmp_path / "loads.toml"
    path.write_text(MAP_TOML)
    registers = [0] * 12
    registers[0], registers[1], registers[2], registers[10], registers[11] = 7200, 1, 160, 1800, 2
    server = ModbusTcpServer([SimDevice(id=1, simdata=[SimData(0, values=registers, datatype=DataType.REGISTERS)])],
                             address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    pool = ConnectionPool(RetryPolicy(timeout_s=0.3, retries=0))
    client = MapClient(pool.get(TcpEndpoint("127.0.0.1", server.transport.sockets[0].getsockname()[1])),
                       load_map(path))
    yield server, client
    pool.close()
    await server.shutdown()


async def test_ev_charger_reads_and_pauses_with_its_switch(loads):
    server, client = loads
    charger = EvCharger(client)
    await charger.refresh()
    state = charger.state()
    assert state.power_w.value == 7200 and state.connected.value == 1 and state.current_limit_a.value == 16.0
    await charger.set_current_limit_a(10.5)
    assert await server.async_getValues(1, 3, 2, 2) == [105, 1]
    await charger.set_current_limit_a(0)
    assert (await server.async_getValues(1, 3, 3, 1)) == [0]  # paused by the switch, limit untouched
    assert (await server.async_getValues(1, 3, 2, 1)) == [105]
    with pytest.raises(PointWriteError, match="outside the allowed range"):
        await charger.set_current_limit_a(40)


async def test_heat_pump_switches_sg_ready_and_refuses_a_missing_power_limit(loads):
    server, client = loads
    heat_pump = HeatPump(client)
    await heat_pump.refresh()
    assert heat_pump.state().power_w.value == 1800
    assert heat_pump.state().sg_ready_state.value == SgReadyState.NORMAL
    await heat_pump.set_sg_ready(SgReadyState.FORCED_ON)
    assert (await server.async_getValues(1, 3, 11, 1)) == [4]
    with pytest.raises(PointWriteError, match="heat_pump_power_limit_w"):
        await heat_pump.set_power_limit_w(2000)


def test_capability_requires_its_roles(loads):
    _, client = loads
    from drivers.devices import Battery, GridMeter
    for capability in (Battery, GridMeter):
        with pytest.raises(CapabilityMissing, match="loads provides no"):
            capability(client)
