"""pysunspec2's own (blocking) client reads our emulated image: proof the image is real SunSpec."""

from __future__ import annotations

import asyncio

import pytest

from drivers.sunspec import discover, hybrid_site_map
from tests.sunspec.servers import modbus_server, runs_of


def scan_with_pysunspec2(port: int) -> dict[int, object]:
    """Scan like the SunSpec reference tool; returns the first model instance per id."""
    import sunspec2.modbus.client as client

    device = client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
    try:
        device.scan()
        return {model_id: models[0] for model_id, models in device.models.items() if isinstance(model_id, int)}
    finally:
        device.close()


@pytest.mark.parametrize("base", [40000, 50000])
async def test_pysunspec2_finds_the_same_models_and_values(base, connect):
    site = hybrid_site_map(base, with_battery_model=True,
                           initial={"m103_W_SF": -1, "m103_W": 345.6, "m103_Hz": 50.01, "m802_SoC": 42.5})
    async with modbus_server(runs_of(site)) as port:
        ours = await discover(connect(port), unit_id=1)
        theirs = await asyncio.to_thread(scan_with_pysunspec2, port)
    assert ours is not None
    assert sorted(theirs) == sorted(ours.model_ids)
    inverter = theirs[103]
    assert inverter.W.value == 3456 and inverter.W_SF.value == -1
    assert inverter.W.cvalue == pytest.approx(345.6)
    assert inverter.Hz.cvalue == pytest.approx(50.01)
    assert theirs[1].Mn.value == "hems" and theirs[1].SN.value == "HEMS-HYB-0001"
    assert theirs[802].SoC.cvalue == pytest.approx(42.5)
    # Unset points are "not implemented" for pysunspec2 as for us.
    assert inverter.VA.value is None
