"""The P1 reader over real pseudo-terminals: good, corrupt and truncated telegrams, chunks, unplug/replug."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from drivers.emulators.p1_writer import P1Fault, PhaseValues, TelegramValues, apply_fault, build_telegram
from drivers.readings import Quality
from tests.conftest import wait_for
from tests.p1.conftest import T0
from tests.p1.telegrams import TELEGRAM_V2_2, TELEGRAM_V4_2


def telegram(import_w: float = 1193.0, export_w: float = 0.0, t_s: float = T0) -> bytes:
    return build_telegram(TelegramValues(
        timestamp_s=t_s, grid_import_w=import_w, grid_export_w=export_w,
        import_t1_wh=1_000_500, import_t2_wh=2_000_250, export_t1_wh=300_000, export_t2_wh=400_001,
        phases=(PhaseValues(231.2, 6, import_w, export_w),), gas_m3=4321.012))


async def connected(run) -> None:
    # pyserial flushes the input queue when it opens the port: write only after that.
    await wait_for(lambda: run.reader.health.connected, 3.0)


async def test_good_telegrams_become_exact_readings(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path)
    await connected(run)
    await pty.write(telegram(1193.0, 0.0) + telegram(0.0, 2345.0, T0 + 1))
    await wait_for(lambda: len(run.telegrams) == 2, 3.0)
    first, second = run.telegrams
    assert first.value("grid_import_w") == 1193.0 and first.value("grid_power_w") == 1193.0
    assert second.value("grid_export_w") == 2345.0 and second.value("grid_power_w") == -2345.0
    assert second.value("import_energy_wh") == 3_000_750.0
    assert second.value("export_energy_wh") == 700_001.0
    assert second.value("voltage_l1_v") == 231.2 and second.value("current_l1_a") == 6.0
    assert second.value("gas_m3") == 4321.012
    assert (first.timestamp_s, second.timestamp_s) == (T0, T0 + 1)
    health = run.reader.health
    assert (health.telegrams_ok, health.crc_errors, health.parse_errors, health.truncated) == (2, 0, 0, 0)
    assert health.connected and health.available and health.last_good_s == T0
    assert run.reader.readings()["grid_export_w"].value == 2345.0


async def test_corrupt_crc_is_counted_and_skipped(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path)
    await connected(run)
    await pty.write(apply_fault(telegram(1.0), P1Fault.CORRUPT_CRC)
              + apply_fault(telegram(2.0), P1Fault.CORRUPT_DATA) + telegram(3.0))
    await wait_for(lambda: len(run.telegrams) == 1, 3.0)
    assert run.telegrams[0].value("grid_import_w") == 3.0
    health = run.reader.health
    assert (health.crc_errors, health.parse_errors, health.truncated, health.telegrams_ok) == (2, 0, 0, 1)


async def test_truncated_telegram_is_counted_and_skipped(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path)
    await connected(run)
    await pty.write(apply_fault(telegram(1.0), P1Fault.TRUNCATE) + telegram(2.0))
    await wait_for(lambda: len(run.telegrams) == 1, 3.0)
    assert run.telegrams[0].value("grid_import_w") == 2.0
    health = run.reader.health
    assert (health.truncated, health.crc_errors, health.parse_errors) == (1, 0, 0)


async def test_small_chunks_and_noise_between_telegrams(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path)
    await connected(run)
    stream = b"\x00\xffnoise" + telegram(1.0) + b"\r\n\xfe" + telegram(2.0) + telegram(3.0)
    for i in range(0, len(stream), 37):
        await pty.write(stream[i:i + 37])
        await asyncio.sleep(0.001)  # let the reader see each chunk on its own
    await wait_for(lambda: len(run.telegrams) == 3, 3.0)
    assert [t.value("grid_import_w") for t in run.telegrams] == [1.0, 2.0, 3.0]
    health = run.reader.health
    assert (health.crc_errors, health.truncated, health.discarded_bytes) == (0, 0, 10)


async def test_garbage_flood_keeps_memory_bounded(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path, max_telegram_bytes=4096)
    await connected(run)
    noise = bytes(b for b in range(256) if b not in b"/!") * 4
    for _ in range(40):  # ~40 kB that start a telegram but never end it
        await pty.write(b"/" + noise)
        await asyncio.sleep(0)
        assert run.reader._framer.buffered_bytes <= 4096
    await pty.write(telegram(5.0))
    await wait_for(lambda: len(run.telegrams) == 1, 3.0)
    assert run.reader.health.truncated >= 1


async def test_dsmr_4_on_a_7e1_line(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path, "4")
    await connected(run)
    await pty.write(TELEGRAM_V4_2.encode())
    await wait_for(lambda: len(run.telegrams) == 1, 3.0)
    assert run.telegrams[0].value("grid_import_w") == 2027.0
    assert run.telegrams[0].value("gas_m3") == 981.443


async def test_dsmr_2_2_without_crc(make_pty, start_reader, clock):
    pty = make_pty()
    run = start_reader(pty.path, "2.2")
    await connected(run)
    await pty.write(TELEGRAM_V2_2.encode() * 2)
    await wait_for(lambda: len(run.telegrams) == 2, 3.0)
    assert run.telegrams[0].value("grid_import_w") == 1010.0
    assert run.telegrams[0].timestamp_s == clock.now_s  # no meter time in DSMR 2.2


async def test_unplug_and_replug_of_the_adapter(make_pty, start_reader, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="drivers.p1.reader")
    link = tmp_path / "ttyUSB-p1"
    first = make_pty()
    link.symlink_to(first.path)
    run = start_reader(str(link))
    await connected(run)
    await first.write(telegram(1.0))
    await wait_for(lambda: len(run.telegrams) == 1, 3.0)

    # Unplug: the device node goes away and the open port is hung up.
    link.unlink()
    first.close()
    await wait_for(lambda: not run.reader.health.connected, 3.0)
    health = run.reader.health
    assert not health.available and health.disconnects == 1
    assert run.reader.readings()["grid_import_w"].quality is Quality.STALE
    # While it is gone the reader keeps retrying (several failed opens, backoff <= 0.1 s).
    await wait_for(lambda: "cannot open port" in (run.reader.health.last_error or ""), 3.0)
    await asyncio.sleep(0.3)

    # Replug: a new tty appears under the same name.
    second = make_pty()
    link.symlink_to(second.path)
    await connected(run)
    await second.write(telegram(2.0))
    await wait_for(lambda: len(run.telegrams) == 2, 3.0)
    health = run.reader.health
    assert health.available and health.reconnects == 1 and health.disconnects == 1
    assert run.reader.readings()["grid_import_w"].value == 2.0
    assert run.reader.readings()["grid_import_w"].quality is Quality.GOOD

    # One line per state change, not one per retry.
    messages = [r.getMessage() for r in caplog.records if r.name == "drivers.p1.reader"]
    assert len([m for m in messages if "unavailable" in m]) == 1
    assert len([m for m in messages if "back after" in m]) == 1


async def test_port_missing_at_start_is_retried(start_reader, make_pty, tmp_path):
    link = tmp_path / "ttyP1"
    run = start_reader(str(link))
    await wait_for(lambda: run.reader.health.last_error is not None, 3.0)
    assert not run.reader.health.connected
    pty = make_pty()
    link.symlink_to(pty.path)
    await connected(run)
    await pty.write(telegram(7.0))
    await wait_for(lambda: len(run.telegrams) == 1, 3.0)
    assert run.reader.health.reconnects == 0  # the first successful open is not a reconnect


async def test_silent_line_marks_the_meter_unavailable_and_reopens(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path, silence_timeout_s=0.2)
    await connected(run)
    await pty.write(telegram(1.0))
    await wait_for(lambda: len(run.telegrams) == 1, 3.0)
    await wait_for(lambda: not run.reader.health.available, 3.0)
    assert "no data" in run.reader.health.last_error
    await wait_for(lambda: run.reader.health.reconnects >= 1 and run.reader.health.connected, 3.0)
    await pty.write(telegram(2.0))
    await wait_for(lambda: run.reader.health.available, 3.0)


async def test_callback_errors_are_counted_and_reading_continues(make_pty, clock):
    from drivers.p1 import P1Reader

    calls = []

    async def on_telegram(t):
        calls.append(t)
        raise RuntimeError("consumer bug")

    pty = make_pty()
    reader = P1Reader(pty.path, "5", on_telegram, clock)
    task = asyncio.create_task(reader.run())
    try:
        await wait_for(lambda: reader.health.connected, 3.0)
        await pty.write(telegram(1.0) + telegram(2.0))
        await wait_for(lambda: reader.health.callback_errors == 2, 3.0)
        assert reader.health.telegrams_ok == 2 and reader.latest.value("grid_import_w") == 2.0
    finally:
        reader.stop()
        await asyncio.wait_for(task, 2.0)
    assert not reader.health.connected


async def test_stop_is_prompt_and_closes_the_port(make_pty, start_reader):
    pty = make_pty()
    run = start_reader(pty.path)
    await connected(run)
    fds_before = len(os.listdir("/proc/self/fd"))
    run.reader.stop()
    await asyncio.wait_for(run.task, 1.0)
    assert not run.reader.health.connected
    assert len(os.listdir("/proc/self/fd")) < fds_before


async def test_cancelling_the_task_closes_the_port(make_pty, clock):
    from drivers.p1 import P1Reader

    pty = make_pty()
    reader = P1Reader(pty.path, "5", None, clock)
    fds_before = len(os.listdir("/proc/self/fd"))
    task = asyncio.create_task(reader.run())
    await wait_for(lambda: reader.health.connected, 3.0)
    await pty.write(telegram(9.0))
    await wait_for(lambda: reader.latest is not None, 3.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not reader.health.connected
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert reader.readings()["grid_import_w"].quality is Quality.STALE
