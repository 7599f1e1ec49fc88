"""Each injected fault ends in its documented reader state and never crashes the reader."""

from __future__ import annotations

import asyncio

import pytest

from drivers.emulators import FaultInjector, MapBinding, SitePlant
from drivers.maps import load_map
from drivers.readings import Quality
from tests.conftest import wait_for
from tests.emulators.helpers import FAST_POLICY, client_for, hybrid_test_map, running

FAILURES_TO_UNAVAILABLE = 3


async def _poll_until_failed(client, polls: int = FAILURES_TO_UNAVAILABLE) -> dict:
    readings = {}
    for _ in range(polls):
        readings = await client.poll()  # never raises
    return readings


async def _recover(client) -> dict:
    async def good() -> bool:
        readings = await client.poll()
        return client.health.available and all(r.quality is not Quality.STALE for r in readings.values())
    await wait_for(good, timeout_s=3.0, interval_s=0.02)
    return client.last_readings


async def _check_fault_cycle(client, faults: FaultInjector, kind: str, switch_on, unit: int | None = None):
    first = await client.poll()
    assert client.health.available and first["pv_power"].quality is Quality.GOOD
    switch_on()
    readings = await _poll_until_failed(client)
    assert not client.health.available
    assert client.health.failures_by_kind.get(kind, 0) >= 1, client.health.failures_by_kind
    assert readings["pv_power"].quality is Quality.STALE
    assert readings["pv_power"].value == first["pv_power"].value  # the last good value, for display
    faults.clear(unit_id=unit)
    recovered = await _recover(client)
    assert recovered["pv_power"].quality is Quality.GOOD


@pytest.fixture
def binding() -> MapBinding:
    return MapBinding(hybrid_test_map(), 1)


async def test_no_response_times_out_then_recovers(binding, plant: SitePlant) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        await _check_fault_cycle(client, faults, "timeout", faults.no_response)
        # After reconnect_after_timeouts timeouts the TCP connection was re-opened.
        assert client.connection.connects >= 2


async def test_no_response_does_not_apply_writes(binding, plant: SitePlant) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        await client.poll()
        faults.no_response()
        with pytest.raises(Exception):
            await client.write("pv_limit", 10)
        faults.clear()
        await _recover(client)
        assert client.last_readings["pv_limit"].value == 100
        assert plant.pv.limit_pct == 100


@pytest.mark.parametrize("code", [2, 4, 6])
async def test_exception_code_is_counted(binding, plant: SitePlant, code: int) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        await _check_fault_cycle(client, faults, f"exception_code_{code}", lambda: faults.exception(code))


async def test_persistent_drop_connection_reconnects(binding, plant: SitePlant) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        await _check_fault_cycle(client, faults, "disconnected", faults.drop_connection)
        assert client.connection.connects >= 2


async def test_one_shot_drop_reconnects(binding, plant: SitePlant) -> None:
    async with running([binding], plant) as server, client_for(server, binding) as client:
        await client.poll()
        assert server.drop_connections() == 1
        await asyncio.sleep(0.02)  # let the close reach the client
        await client.poll()  # fails: counted as disconnected (or, if already noticed, reconnects)
        await _recover(client)
        assert client.connection.connects == 2


async def test_slow_below_timeout_is_good(binding, plant: SitePlant) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        faults.slow(50)
        readings = await client.poll()
        assert client.health.failures_total == 0
        assert readings["pv_power"].quality is Quality.GOOD


async def test_slow_above_timeout_times_out_and_late_answers_are_discarded(binding, clock, plant) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        await _check_fault_cycle(client, faults, "timeout", lambda: faults.slow(350))
        # A late answer delivered to the next request would show up as a short or wrong answer ("error").
        assert set(client.health.failures_by_kind) <= {"timeout", "disconnected"}, client.health.failures_by_kind
        await asyncio.sleep(0.4)  # late answers of the slow requests would arrive now
        for _ in range(5):
            clock.advance(60)
            readings = await client.poll()
            assert client.health.available
            assert readings["pv_power"].value == pytest.approx(plant.flows.pv_w, abs=5)
            assert readings["grid_export"].value == pytest.approx(plant.flows.grid_w, abs=1)


async def test_out_of_range_is_implausible(binding, plant: SitePlant) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        faults.out_of_range()
        readings = await client.poll()
        assert client.health.available and client.health.failures_total == 0
        for name in ("pv_power", "grid_export", "soc", "battery_power", "voltage", "frequency"):
            assert readings[name].quality is Quality.IMPLAUSIBLE, (name, readings[name])
        faults.clear()
        readings = await client.poll()
        assert readings["soc"].quality is Quality.GOOD


async def test_stuck_values_freeze_while_the_plant_runs(binding, clock, plant: SitePlant) -> None:
    faults = FaultInjector()
    async with running([binding], plant, faults) as server, client_for(server, binding) as client:
        clock.advance(60)
        before = await client.poll()
        faults.stuck()
        clock.advance(1800)
        during = await client.poll()
        assert client.health.available
        for name in ("import_energy", "export_energy", "soc", "pv_power"):
            assert during[name].value == before[name].value
            assert during[name].quality is Quality.GOOD  # a reader cannot tell from one device alone
        assert plant.battery.soc_pct != pytest.approx(before["soc"].value, abs=0.1)
        faults.clear()
        after = await client.poll()
        assert after["export_energy"].value > before["export_energy"].value


async def test_fault_on_one_unit_leaves_the_other_alone(plant: SitePlant) -> None:
    faults = FaultInjector()
    hybrid, meter = MapBinding(hybrid_test_map(), 1), MapBinding(load_map("eastron_sdm630"), 2)
    async with running([hybrid, meter], plant, faults) as server, \
            client_for(server, hybrid) as hybrid_client, client_for(server, meter) as meter_client:
        faults.exception(4, unit_id=2)
        for _ in range(FAILURES_TO_UNAVAILABLE):
            await asyncio.gather(hybrid_client.poll(), meter_client.poll())
        assert hybrid_client.health.available and hybrid_client.health.failures_total == 0
        assert not meter_client.health.available


def test_policy_is_fast() -> None:
    assert FAST_POLICY.timeout_s <= 0.2 and FAST_POLICY.retries == 0
