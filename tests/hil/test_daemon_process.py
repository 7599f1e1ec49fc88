"""`hems run` as its own process, in real time, against an emulated SunSpec hybrid inverter on
127.0.0.1: sd_notify on a real socket, the watchdog, the STATUS line, metrics over HTTP, SIGTERM
returning the battery to autonomous mode, and SIGKILL + restart losing no committed record."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.hil.process import (
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    committed_rows,
    daemon_process,
    free_port,
    notify_listener,
    read_only_query,
    real_time_site,
    sample,
    scrape,
    write_daemon_config,
)

#: WATCHDOG_USEC given to the daemon: it pings every 1 s.
WATCHDOG_USEC = 2_000_000


def readable_status(text: str) -> bool:
    """A person can read it: e.g. ``plan ok, soc 50%, grid 0.4 kW, pv 2.1 kW, mode plan``."""
    return "soc" in text and "grid" in text and "%" in text and "=" not in text


async def test_notify_watchdog_status_metrics_then_sigterm_releases_the_battery(tmp_path: Path):
    async with real_time_site() as site:
        metrics_port = free_port()
        config = write_daemon_config(tmp_path, site.port, metrics_port)
        database = tmp_path / "state" / "hems.sqlite3"
        with notify_listener(tmp_path) as notify, \
                daemon_process(config, notify.path, tmp_path / "daemon.log", watchdog_usec=WATCHDOG_USEC,
                               watchdog_pid_self=True) as daemon:
            # READY=1 only after the first successful read and plan: the plan is stored before it.
            await daemon.wait_for(lambda: bool(notify.times("READY")), "READY=1", READY_TIMEOUT_S)
            assert read_only_query(database, "SELECT count(*) FROM plans")[0][0] >= 1
            ready_at = notify.times("READY")[0]
            ready_status = next(value for at, value in notify.assignments("STATUS") if at == ready_at)
            assert ready_status.startswith("plan ") and readable_status(ready_status), ready_status

            # The watchdog pings repeatedly, about every WATCHDOG_USEC / 2.
            def pings_after_ready() -> list[float]:
                return [at for at in notify.times("WATCHDOG") if at > ready_at]

            await daemon.wait_for(lambda: len(pings_after_ready()) >= 4, "4 WATCHDOG=1 after READY", 15)
            assert set(notify.values("WATCHDOG")) == {"1"}
            gaps = [b - a for a, b in zip(pings_after_ready(), pings_after_ready()[1:])]
            # Every WATCHDOG_USEC / 2, never later than WATCHDOG_USEC (systemd's limit).
            assert all(0.5 < gap < WATCHDOG_USEC / 1e6 for gap in gaps), gaps

            # Each control cycle says what the home does, in words.
            await daemon.wait_for(lambda: any(readable_status(s) for s in notify.values("STATUS")),
                                  "a readable STATUS= line", 10)
            status = [s for s in notify.values("STATUS") if readable_status(s)][-1]
            assert "kW" in status and "\n" not in status, status

            # The battery follows the daemon's setpoints.
            await daemon.wait_for(site.under_remote_control, "battery under remote control", 10)

            # Prometheus scrapes the exporter over HTTP.
            deadline = time.monotonic() + 10
            while True:
                families = await scrape(metrics_port)
                if ((sample(families, "hems_mpc_solve_seconds", "hems_mpc_solve_seconds_count") or 0) >= 1
                        and sample(families, "hems_device_up", device="hybrid") == 1
                        and (sample(families, "hems_battery_soc_ratio") or 0) > 0):
                    break
                assert time.monotonic() < deadline, f"metrics incomplete: {sorted(families)}\n{daemon.log()}"
                daemon.check_alive("complete metrics")
                await asyncio.sleep(0.2)
            assert families["hems_mpc_solve_seconds"].type == "histogram"
            assert sample(families, "hems_mpc_solve_seconds", "hems_mpc_solve_seconds_sum") > 0
            assert sample(families, "hems_mpc_solve_seconds", "hems_mpc_solve_seconds_bucket", le="+Inf") >= 1
            assert 0.4 < sample(families, "hems_battery_soc_ratio") < 0.6  # the plant started at 50 %
            assert sample(families, "hems_grid_import_watts") is not None
            assert sample(families, "hems_grid_import_watts") >= 0
            plan_age = sample(families, "hems_plan_age_seconds")
            assert plan_age is not None and 0 <= plan_age < 60

            # SIGTERM: STOPPING=1, the battery goes back to its own control, exit 0 within 10 s.
            assert daemon.returncode is None
            daemon.signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            assert await daemon.wait_exit(STOP_TIMEOUT_S) == 0, daemon.log()
            assert time.monotonic() - stopped_at < STOP_TIMEOUT_S
            assert notify.values("STOPPING") == ["1"]
            stopping_at = notify.times("STOPPING")[0]
            assert not [at for at in notify.times("WATCHDOG") if at > stopping_at]  # no pings while stopping
            assert site.autonomous(), (site.plant.remote, site.storage_control_mode())
            assert len(notify.times("READY")) == 1
            log = daemon.log()
            assert "SIGTERM received" in log and "devices returned to autonomous mode" in log, log
            assert log.count("SIGTERM received") == 1, log  # one handler: each record logged once
            assert "level=info" in log, log  # key=value lines (docs/operations.md, Logging)


def assert_kept(noted: dict[int, tuple], now: dict[int, tuple], table: str) -> None:
    """Every row noted as committed is still there, unchanged."""
    lost = sorted(set(noted) - set(now))
    assert not lost, f"{table}: committed rows {lost} lost"
    changed = [key for key in noted if now[key] != noted[key]]
    assert not changed, f"{table}: committed rows {changed} changed"


async def test_kill_9_and_restart_lose_no_committed_record(tmp_path: Path):
    async with real_time_site() as site:
        # A 10 s dead-man: setpoints are refreshed every 3.3 s even when the value holds still.
        config = write_daemon_config(tmp_path, site.port, free_port(), setpoint_timeout_s=10)
        database = tmp_path / "state" / "hems.sqlite3"
        log_path = tmp_path / "daemon.log"
        with notify_listener(tmp_path) as notify:
            with daemon_process(config, notify.path, log_path, watchdog_usec=WATCHDOG_USEC) as first:
                def enough() -> bool:
                    plans, setpoints = committed_rows(database)
                    return len(plans) >= 1 and len(setpoints) >= 4

                await first.wait_for(enough, "a plan and 4 setpoints committed", READY_TIMEOUT_S)
                # Read while the daemon writes: a WAL reader sees exactly the committed rows.
                noted_plans, noted_setpoints = committed_rows(database)
                first.signal(signal.SIGKILL)
                assert await first.wait_exit(5) == -signal.SIGKILL
            assert not notify.values("STOPPING")  # no orderly shutdown: the device keeps its dead-man

            plans, setpoints = committed_rows(database)
            assert_kept(noted_plans, plans, "plans")
            assert_kept(noted_setpoints, setpoints, "setpoints")
            assert read_only_query(database, "PRAGMA integrity_check") == [("ok",)]
            before_restart = plans, setpoints

            readies = len(notify.times("READY"))
            with daemon_process(config, notify.path, log_path, watchdog_usec=WATCHDOG_USEC) as second:
                await second.wait_for(lambda: len(notify.times("READY")) > readies, "READY=1 after the restart",
                                      READY_TIMEOUT_S)

                def grew() -> bool:
                    plans, setpoints = committed_rows(database)
                    return (max(plans) > max(before_restart[0], default=0)
                            and max(setpoints, default=0) > max(before_restart[1], default=0))

                await second.wait_for(grew, "a new plan and new setpoints after the restart", 15)
                await second.wait_for(site.under_remote_control, "battery under remote control again", 10)
                second.signal(signal.SIGTERM)
                assert await second.wait_exit(STOP_TIMEOUT_S) == 0

            plans, setpoints = committed_rows(database)
            assert_kept(noted_plans, plans, "plans")
            assert_kept(noted_setpoints, setpoints, "setpoints")
            assert_kept(before_restart[0], plans, "plans")
            assert_kept(before_restart[1], setpoints, "setpoints")
            assert len(plans) > len(before_restart[0]) and len(setpoints) > len(before_restart[1])
            assert site.autonomous(), (site.plant.remote, site.storage_control_mode())
