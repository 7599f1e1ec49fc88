"""MapClient and RegisterMap over a real TCP server: decoding, range checks, read-back, health."""

from __future__ import annotations

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.devices import Battery, GridMeter, MapClient, ReadBackMismatch
from drivers.maps import MapError, PointWriteError, load_map
from drivers.readings import Quality
from drivers.registers import RegisterType, encode_raw
from drivers.transport import ConnectionPool, RetryPolicy, TcpEndpoint

MAP_TOML = """
# Test map: not a real device.
[device]
id = "test_device"
manufacturer = "Test"
models = ["T1"]
kinds = ["grid_meter", "battery"]
source = "hems test fixture, version 1"
sunspec_sentinels = true

[identify]
point = "model"
equals = "T1"

[control.battery]
strategy = "signed_power"
power_point = "setpoint"
sign = -1
enable_point = "control_mode"
enable_value = 802
disable_value = 803

[[point]]
name = "model"
address = 0
type = "string"
length = 2

[[point]]
name = "power"
address = 2
type = "int32"
role = "grid_power_w"
sign = -1
min = -50000
max = 50000

[[point]]
name = "soc"
address = 4
type = "uint16"
scale = 0.1
role = "battery_soc_pct"
min = 0
max = 100

[[point]]
name = "voltage"
address = 5
type = "int16"
scale_factor_point = "voltage_sf"
unit = "V"

[[point]]
name = "voltage_sf"
address = 6
type = "sunssf"

[[point]]
name = "setpoint"
address = 10
type = "int32"
access = "rw"
min = -5000
max = 5000
unit = "W"

[[point]]
name = "control_mode"
address = 12
type = "uint16"
access = "rw"
min = 802
max = 803
"""


@pytest.fixture
def test_map(tmp_path):
    path = tmp_path / "test_device.toml"
    path.write_text(MAP_TOML)
    return load_map(path)


def image() -> list[int]:
    registers = [0] * 20
    registers[0:2] = encode_raw("T1", RegisterType.STRING, register_count=2)
    registers[2:4] = encode_raw(-1500, RegisterType.INT32)  # device says -1500: exporting by its sign
    registers[4] = 543
    registers[5] = 2301
    registers[6] = encode_raw(-1, RegisterType.SUNSSF)[0]
    registers[12] = 803
    return registers


@pytest.fixture
async def device_server():
    behaviour = {"ignore_writes": False}

    async def hook(function_code, start_address, address, count, registers, set_values):
        if set_values is not None and address == 12 and set_values[0] not in (802, 803):
            return ExcCodes.ILLEGAL_VALUE
        if set_values is not None and behaviour["ignore_writes"]:
            # A device that acknowledges a write but keeps its own value.
            set_values[:] = registers[address - start_address: address - start_address + len(set_values)]
        return None

    server = ModbusTcpServer([SimDevice(id=3, simdata=[SimData(0, values=image(), datatype=DataType.REGISTERS)],
                                        action=hook)], address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    server.behaviour = behaviour
    yield server, server.transport.sockets[0].getsockname()[1]
    await server.shutdown()


def client_for(test_map, port, **kwargs) -> MapClient:
    pool = ConnectionPool(RetryPolicy(timeout_s=0.3, retries=0, reconnect_delay_s=0.05))
    return MapClient(pool.get(TcpEndpoint("127.0.0.1", port)), test_map, unit_id=3, wall_clock=lambda: 1000.0,
                     **kwargs)


async def test_poll_decodes_types_scales_signs_and_scale_factors(test_map, device_server):
    _, port = device_server
    client = client_for(test_map, port)
    readings = await client.poll()
    assert readings["model"].value == "T1"
    assert readings["power"].value == 1500.0  # sign = -1 turns the vendor's convention into import-positive
    assert readings["soc"].value == pytest.approx(54.3)
    assert readings["voltage"].value == pytest.approx(230.1)
    assert readings["voltage"].unit == "V" and readings["soc"].unit == "%"
    assert all(reading.quality is Quality.GOOD for reading in readings.values())
    assert readings["power"].timestamp_s == 1000.0
    assert len(client.blocks) == 2  # 0..6 in one request, the control block 10..12 in another


async def test_capability_views_read_by_role(test_map, device_server):
    _, port = device_server
    client = client_for(test_map, port)
    meter, battery = GridMeter(client), Battery(client)
    await client.poll()
    assert meter.state().power_w.value == 1500.0
    assert battery.state().soc_pct.value == pytest.approx(54.3)
    assert battery.controllable


async def test_battery_setpoint_is_written_with_vendor_sign_and_read_back(test_map, device_server):
    server, port = device_server
    client = client_for(test_map, port)
    battery = Battery(client)
    await battery.set_charge_power(2000)
    registers = await server.async_getValues(3, 3, 10, 3)
    assert registers[0:2] == encode_raw(-2000, RegisterType.INT32)  # vendor: positive = discharge
    assert registers[2] == 802
    await battery.release()
    assert (await server.async_getValues(3, 3, 12, 1)) == [803]


async def test_write_outside_the_maps_range_is_refused_before_sending(test_map, device_server):
    server, port = device_server
    client = client_for(test_map, port)
    with pytest.raises(PointWriteError, match=r"outside the allowed range \[-5000.0, 5000.0\]"):
        await client.write("setpoint", 6000)
    with pytest.raises(PointWriteError, match="read-only"):
        await client.write("soc", 50)
    with pytest.raises(PointWriteError, match="not a finite number"):
        await client.write("setpoint", float("nan"))
    assert (await server.async_getValues(3, 3, 10, 2)) == [0, 0]  # nothing reached the device


async def test_read_back_mismatch_is_detected(test_map, device_server):
    server, port = device_server
    client = client_for(test_map, port)
    server.behaviour["ignore_writes"] = True
    with pytest.raises(ReadBackMismatch, match="setpoint"):
        await client.write("setpoint", 100)
    assert client.health.failures_by_kind == {"read_back_mismatch": 1}


async def test_implausible_and_not_implemented_values_are_flagged(test_map, device_server):
    server, port = device_server
    await server.async_setValues(3, 16, 4, [2000])  # SoC 200 %
    await server.async_setValues(3, 16, 6, [0x8000])  # scale factor not implemented
    client = client_for(test_map, port)
    readings = await client.poll()
    assert readings["soc"].quality is Quality.IMPLAUSIBLE and not readings["soc"].usable
    assert readings["voltage"].quality is Quality.NOT_IMPLEMENTED and readings["voltage"].value is None


async def test_lost_device_gives_stale_readings_and_health(test_map, device_server):
    server, port = device_server
    client = client_for(test_map, port)
    await client.poll()
    await server.shutdown()
    for _ in range(3):
        readings = await client.poll()
    assert readings["power"].quality is Quality.STALE and readings["power"].value == 1500.0
    assert not client.health.available
    assert client.health.consecutive_failures == 3


@pytest.mark.parametrize("original, replacement, expected", [
    ('address = 5\ntype = "int16"', 'address = 4\ntype = "int16"', "overlap at address 4"),
    ('source = "hems test fixture, version 1"', 'source = "v1"', "device.source"),
    ('power_point = "setpoint"', 'power_point = "nowhere"', "'nowhere'"),
    ('name = "setpoint"\naddress = 10\ntype = "int32"\naccess = "rw"\nmin = -5000\n',
     'name = "setpoint"\naddress = 10\ntype = "int32"\naccess = "rw"\n', "needs 'min' and 'max'"),
    ('[[point]]\nname = "model"', '[[point]]\ncolour = 1\nname = "model"', "point.0.colour"),
])
def test_map_errors_name_the_file_and_the_problem(tmp_path, original, replacement, expected):
    assert original in MAP_TOML
    path = tmp_path / "test_device.toml"
    path.write_text(MAP_TOML.replace(original, replacement))
    with pytest.raises(MapError) as raised:
        load_map(path)
    assert "test_device.toml" in str(raised.value) and expected in str(raised.value)


async def test_device_id_override_redirects_points_behind_another_unit_id(tmp_path):
    # A map whose control point sits behind unit 227 (as Victron's VE.Bus), installed at 228.
    path = tmp_path / "test_device.toml"
    path.write_text(MAP_TOML.replace('name = "control_mode"\naddress = 12', 'name = "control_mode"\naddress = 12\n'
                                     'device_id = 227'))
    register_map = load_map(path)
    devices = [SimDevice(id=3, simdata=[SimData(0, values=image(), datatype=DataType.REGISTERS)]),
               SimDevice(id=228, simdata=[SimData(12, values=[803], datatype=DataType.REGISTERS)])]
    server = ModbusTcpServer(devices, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        port = server.transport.sockets[0].getsockname()[1]
        pool = ConnectionPool(RetryPolicy(timeout_s=0.3, retries=0))
        client = MapClient(pool.get(TcpEndpoint("127.0.0.1", port)), register_map, unit_id=3,
                           device_id_overrides={227: 228})
        readings = await client.poll()
        assert readings["control_mode"].value == 803 and client.health.available
        await client.write("control_mode", 802)
        assert await server.async_getValues(228, 3, 12, 1) == [802]
    finally:
        await server.shutdown()
