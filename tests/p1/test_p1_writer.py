"""The P1 emulator: meter registers, fault injection, and writing to ptys a reader drains."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from drivers.emulators.p1_writer import (
    MeterState,
    P1Fault,
    P1Writer,
    TelegramValues,
    build_telegram,
    dutch_tariff,
    plant_source,
)
from tests.conftest import wait_for
from tests.p1.conftest import T0, FixedClock


def test_tariff_registers_add_up_to_the_plant_counter(clock):
    state = {"imp": 10_000.4, "exp": 500.0}
    tariff = {"now": 1}
    writer = P1Writer(-1, lambda: MeterState(1000.0, 0.0, state["imp"], state["exp"]), clock=clock,
                      tariff_at=lambda t: tariff["now"])
    v = writer.next_values()
    assert v.import_t1_wh + v.import_t2_wh == 10_000 and v.export_t1_wh + v.export_t2_wh == 500
    state["imp"] += 250.0
    v1 = writer.next_values()
    assert v1.import_t1_wh == v.import_t1_wh + 250 and v1.import_t2_wh == v.import_t2_wh
    tariff["now"] = 2
    state["imp"] += 100.0
    state["exp"] += 7.0
    v2 = writer.next_values()
    assert v2.import_t1_wh == v1.import_t1_wh and v2.import_t2_wh == v1.import_t2_wh + 100
    assert v2.export_t2_wh == v1.export_t2_wh + 7
    assert v2.import_t1_wh + v2.import_t2_wh == round(state["imp"])
    state["imp"] -= 5_000  # a plant reset never runs a meter register backwards
    assert writer.next_values().import_t2_wh == v2.import_t2_wh


def test_energy_is_integrated_when_the_plant_has_no_counters(clock):
    writer = P1Writer(-1, lambda: MeterState(grid_import_w=1500.0, grid_export_w=0.0), clock=clock)
    writer.next_values()
    clock.now_s += 3600
    v = writer.next_values()
    assert v.import_t1_wh + v.import_t2_wh == 1500
    assert v.phases[0].import_w == 1500.0 and v.phases[0].current_a == pytest.approx(1500 / 230)


def test_plant_source_reads_a_signed_grid_power():
    plant = SimpleNamespace(grid_power_w=-820.0, import_energy_wh=5.0, export_energy_wh=9.0)
    state = plant_source(plant)()
    assert (state.grid_import_w, state.grid_export_w) == (0.0, 820.0)
    assert (state.import_energy_wh, state.export_energy_wh, state.gas_m3) == (5.0, 9.0, None)


def test_site_plant_drives_the_writer_on_its_own_clock():
    from drivers.emulators import ManualClock, SitePlant

    plant_clock = ManualClock(T0)
    plant = SitePlant(clock=plant_clock)
    writer = P1Writer.for_plant(-1, plant)
    writer.next_values()
    plant_clock.advance(900)
    v = writer.next_values()
    grid_w = plant.flows.grid_w
    assert v.timestamp_s == T0 + 900
    assert v.grid_import_w - v.grid_export_w == grid_w
    assert len(v.phases) == 3 and sum(p.import_w - p.export_w for p in v.phases) == pytest.approx(grid_w)
    assert v.import_t1_wh + v.import_t2_wh == round(plant.energy.grid_import_wh)
    assert v.export_t1_wh + v.export_t2_wh == round(plant.energy.grid_export_wh)


def test_dutch_tariff_is_low_at_night_and_at_weekends():
    def local(day: int, hour: int) -> float:
        return datetime(2025, 6, day, hour, 30, tzinfo=ZoneInfo("Europe/Amsterdam")).timestamp()

    # 16 June 2025 is a Monday, 15 June a Sunday.
    assert [dutch_tariff(local(16, h)) for h in (6, 7, 12, 22, 23)] == [1, 2, 2, 2, 1]
    assert dutch_tariff(local(15, 12)) == 1


def test_builder_rejects_negative_values_and_wraps_registers():
    with pytest.raises(ValueError, match="unsigned"):
        build_telegram(TelegramValues(timestamp_s=T0, grid_import_w=-1.0))
    text = build_telegram(TelegramValues(timestamp_s=T0, import_t1_wh=1_000_000_123)).decode()
    assert "1-0:1.8.1(000000.123*kWh)" in text  # 999999.999 kWh rolls over like a meter


async def test_writer_feeds_the_reader_and_injects_faults(make_pty, start_reader, clock):
    pty = make_pty()
    run = start_reader(pty.path)
    await wait_for(lambda: run.reader.health.connected, 3.0)
    state = MeterState(grid_import_w=2100.0, grid_export_w=0.0, import_energy_wh=12_345.0,
                       export_energy_wh=678.0, gas_m3=12.5)
    writer = P1Writer(pty.master, lambda: state, interval_s=0.02, clock=clock)
    writer.inject(P1Fault.CORRUPT_CRC)
    writer.inject(P1Fault.TRUNCATE)
    writer.inject(P1Fault.CORRUPT_DATA)
    task = asyncio.create_task(writer.run())
    try:
        await wait_for(lambda: len(run.telegrams) >= 3, 3.0)
    finally:
        writer.stop()
        await asyncio.wait_for(task, 1.0)
    health = run.reader.health
    assert (health.crc_errors, health.truncated, health.parse_errors) == (2, 1, 0)
    assert writer.faults_injected == 3 and writer.telegrams_dropped == 0
    latest = run.telegrams[-1]
    assert latest.value("grid_import_w") == 2100.0
    assert latest.value("import_energy_wh") == 12_345.0 and latest.value("export_energy_wh") == 678.0
    assert latest.value("gas_m3") == 12.5 and latest.timestamp_s == T0


async def test_writer_opens_a_port_path(make_pty):
    pty = make_pty()
    writer = P1Writer(pty.path, lambda: MeterState(42.0, 0.0), clock=FixedClock())
    sent = await writer.write_once()
    received = b""
    os.set_blocking(pty.master, False)

    def read_some() -> bool:
        nonlocal received
        with contextlib.suppress(BlockingIOError):
            received += os.read(pty.master, 4096)
        return received == sent

    await wait_for(read_some, 3.0)
    assert writer.telegrams_written == 1
    writer._close_port()


async def test_writer_drops_telegrams_nobody_reads_without_blocking(make_pty):
    pty = make_pty()  # nobody reads the slave: the pty buffer fills up
    writer = P1Writer(pty.master, lambda: MeterState(42.0, 0.0), interval_s=0.005, clock=FixedClock())
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(2000):
        await writer.write_once()
        if writer.telegrams_dropped:
            break
    assert writer.telegrams_dropped == 1
    assert loop.time() - started < 5.0
