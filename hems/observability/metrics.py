"""Prometheus metrics of one home, in its own registry, and the HTTP exporter.

No metric lives in prometheus-client's global registry: a process may run
several homes (the demo, the tests), each with a ``HomeMetrics`` of its own and
its own exporter. Names use base units (watts, joules, seconds, 0-1 ratios).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: The exporter listens on the loopback interface unless configured otherwise:
#: metrics reveal when a home is empty and how its battery is used.
DEFAULT_METRICS_ADDRESS = "127.0.0.1"
DEFAULT_METRICS_PORT = 9925
#: MPC solves take about 5-50 ms on x86 and several times that on a Pi; a fallback
#: after a time limit can take a second or more.
SOLVE_SECONDS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
JOULES_PER_WH = 3600.0
MPC_STATUSES = ("optimal", "fallback", "failed")
#: What the home does in the community market (the HomeStatus ``market`` field).
MARKET_STATES = ("trading", "retail_only", "disabled")
#: What happens to the power plant's commitments at the home (hems/trading/power_plant.py).
VPP_COMMITMENT_EVENTS = ("proposed", "accepted", "declined", "confirmed", "cancelled")


class HealthLike(Protocol):
    """What ``update_device_health`` needs of ``drivers.transport.health.DeviceHealth``."""

    available: bool
    failures_by_kind: dict[str, int]


class HomeMetrics:
    """The metric set of one home, registered in ``self.registry``."""

    def __init__(self) -> None:
        # *_created series only add noise (a timestamp per counter and histogram).
        # prometheus-client reads PROMETHEUS_DISABLE_CREATED_SERIES once at import,
        # so switch them off explicitly; this is a process-wide library setting and
        # idempotent, the same for every home.
        prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.grid_import = Gauge("hems_grid_import", "Power drawn from the grid (0 when exporting).",
                                 unit="watts", registry=registry)
        self.grid_export = Gauge("hems_grid_export", "Power fed into the grid (0 when importing).",
                                 unit="watts", registry=registry)
        self.pv_power = Gauge("hems_pv_power", "PV generation.", unit="watts", registry=registry)
        self.battery_power = Gauge("hems_battery_power", "Battery power, positive when charging.",
                                   unit="watts", registry=registry)
        self.battery_soc = Gauge("hems_battery_soc", "Battery state of charge, 0 to 1.",
                                 unit="ratio", registry=registry)
        self.energy_imported = Counter("hems_energy_imported", "Energy drawn from the grid.",
                                       unit="joules", registry=registry)
        self.energy_exported = Counter("hems_energy_exported", "Energy fed into the grid.",
                                       unit="joules", registry=registry)
        self.mpc_solve = Histogram("hems_mpc_solve", "Wall time of one MPC solve.", unit="seconds",
                                   buckets=SOLVE_SECONDS_BUCKETS, registry=registry)
        self.mpc_status = Gauge("hems_mpc_status", "1 for the status of the latest plan, 0 otherwise.",
                                ["status"], registry=registry)
        self.plan_age = Gauge("hems_plan_age", "Age of the plan in force.", unit="seconds",
                              registry=registry)
        self.device_up = Gauge("hems_device_up", "1 when the device answers, 0 when unavailable.",
                               ["device"], registry=registry)
        self.modbus_errors = Counter("hems_modbus_errors", "Failed device requests by kind.",
                                     ["device", "kind"], registry=registry)
        self.loop_overruns = Counter("hems_loop_overruns", "Loop iterations that missed their deadline.",
                                     ["loop"], registry=registry)
        self.forecast_mae = Gauge("hems_forecast_mae", "Mean absolute error of the forecast.",
                                  ["quantity"], unit="watts", registry=registry)
        self.readings_rejected = Counter("hems_readings_rejected", "Readings not used, by reason.",
                                         ["reason"], registry=registry)
        self.market_connected = Gauge("hems_market_connected", "1 while connected to the community broker.",
                                      registry=registry)
        self.market_state = Gauge("hems_market_state", "1 for the home's market state, 0 for the others.",
                                  ["state"], registry=registry)
        self.market_messages = Counter("hems_market_messages", "Market messages by direction (in, out) and type.",
                                       ["direction", "message_type"], registry=registry)
        self.market_rejections = Counter("hems_market_rejections",
                                         "Messages or slot bids the community manager refused, by status.",
                                         ["status"], registry=registry)
        self.outbox_pending = Gauge("hems_outbox_pending", "Market messages the manager has not acknowledged yet.",
                                    registry=registry)
        self.vpp_commitments = Counter("hems_vpp_commitments",
                                       "Power-plant commitments by event (proposed, accepted, declined, confirmed, "
                                       "cancelled).", ["event"], registry=registry)
        for state in MARKET_STATES:
            self.market_state.labels(state=state).set(1 if state == "disabled" else 0)
        self._mpc_statuses = set(MPC_STATUSES)
        for status in MPC_STATUSES:
            self.mpc_status.labels(status=status).set(0)
        # Last failure counts seen per (device, kind): DeviceHealth counts since
        # start, the Prometheus counter is incremented by the difference.
        self._failures_seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # update_device_health may be called from several tasks' threads

    def set_site(self, grid_import_w: float | None = None, pv_power_w: float | None = None,
                 battery_charge_w: float | None = None, battery_soc_ratio: float | None = None) -> None:
        """Set the site gauges; ``grid_import_w`` < 0 means exporting. None leaves a gauge as is."""
        if grid_import_w is not None:
            self.grid_import.set(max(grid_import_w, 0.0))
            self.grid_export.set(max(-grid_import_w, 0.0))
        if pv_power_w is not None:
            self.pv_power.set(pv_power_w)
        if battery_charge_w is not None:
            self.battery_power.set(battery_charge_w)
        if battery_soc_ratio is not None:
            if not 0.0 <= battery_soc_ratio <= 1.0:
                raise ValueError(f"battery_soc_ratio = {battery_soc_ratio!r} is out of range: allowed 0..1")
            self.battery_soc.set(battery_soc_ratio)

    def add_energy(self, imported_wh: float = 0.0, exported_wh: float = 0.0) -> None:
        """Add metered energy (Wh; converted to joules, 1 Wh = 3600 J)."""
        if imported_wh < 0 or exported_wh < 0:
            raise ValueError(f"energy must be >= 0 Wh, got imported {imported_wh}, exported {exported_wh}")
        self.energy_imported.inc(imported_wh * JOULES_PER_WH)
        self.energy_exported.inc(exported_wh * JOULES_PER_WH)

    def observe_solve(self, solve_s: float, status: str) -> None:
        """Record one MPC run: its duration and the status of the plan it gave."""
        self.mpc_solve.observe(solve_s)
        self.set_mpc_status(status)

    def set_mpc_status(self, status: str) -> None:
        """Make ``status`` the one status at 1 (an unknown status gets its own series)."""
        with self._lock:
            self._mpc_statuses.add(status)
            for other in self._mpc_statuses:
                self.mpc_status.labels(status=other).set(1 if other == status else 0)

    def set_plan_age(self, age_s: float) -> None:
        """Seconds since the plan in force was made."""
        self.plan_age.set(age_s)

    def update_device_health(self, name: str, health: HealthLike) -> None:
        """Export one device's availability and add its new failures since the last call.

        A count lower than last time (the health object was replaced, e.g. the
        device reconfigured) is taken as a restart from zero, as Prometheus does.
        """
        with self._lock:
            self.device_up.labels(device=name).set(1 if health.available else 0)
            for kind, count in dict(health.failures_by_kind).items():
                key = (name, kind)
                seen = self._failures_seen.get(key, 0)
                delta = count - seen if count >= seen else count
                if delta > 0:
                    self.modbus_errors.labels(device=name, kind=kind).inc(delta)
                self._failures_seen[key] = count

    def loop_overrun(self, loop: str, count: int = 1) -> None:
        """Count iterations of ``loop`` (poll, plan, actuate, ...) that overran."""
        self.loop_overruns.labels(loop=loop).inc(count)

    def set_forecast_mae(self, quantity: str, mae_w: float) -> None:
        """Mean absolute error of the ``quantity`` (pv, load) forecast, in watts."""
        self.forecast_mae.labels(quantity=quantity).set(mae_w)

    def reading_rejected(self, reason: str, count: int = 1) -> None:
        """Count readings not used (stale, implausible, out_of_range, ...)."""
        self.readings_rejected.labels(reason=reason).inc(count)

    def set_market_connected(self, connected: bool) -> None:
        """Whether the market agent's broker connection is up."""
        self.market_connected.set(1 if connected else 0)

    def set_market_state(self, state: str) -> None:
        """Make ``state`` (trading, retail_only, disabled) the one market state at 1."""
        if state not in MARKET_STATES:
            raise ValueError(f"market state {state!r}: allowed {', '.join(MARKET_STATES)}")
        for other in MARKET_STATES:
            self.market_state.labels(state=other).set(1 if other == state else 0)

    def market_message(self, direction: str, message_type: str) -> None:
        """Count one market message ``direction`` "in" (received) or "out" (published)."""
        if direction not in ("in", "out"):
            raise ValueError(f"direction {direction!r}: allowed in, out")
        self.market_messages.labels(direction=direction, message_type=message_type).inc()

    def market_rejection(self, status: str) -> None:
        """Count one refusal by the manager (an ack's status, or REJECTED for one slot's bid)."""
        self.market_rejections.labels(status=status).inc()

    def vpp_commitment(self, event: str) -> None:
        """Count one power-plant commitment event (see :data:`VPP_COMMITMENT_EVENTS`)."""
        if event not in VPP_COMMITMENT_EVENTS:
            raise ValueError(f"commitment event {event!r}: allowed {', '.join(VPP_COMMITMENT_EVENTS)}")
        self.vpp_commitments.labels(event=event).inc()

    def set_outbox_pending(self, count: int) -> None:
        """Messages in the outbox not yet acknowledged by the manager."""
        self.outbox_pending.set(count)

    def render(self) -> bytes:
        """The registry in Prometheus text format (what a scrape returns)."""
        return generate_latest(self.registry)


@dataclass
class MetricsExporter:
    """A running HTTP exporter; ``stop()`` closes its socket and ends its thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        """The address the exporter listens on."""
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on (the real one when started on port 0)."""
        return int(self.server.server_port)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close the listening socket and wait for the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout_s)


def start_exporter(registry: CollectorRegistry, address: str = DEFAULT_METRICS_ADDRESS,
                   port: int = DEFAULT_METRICS_PORT) -> MetricsExporter:
    """Serve ``registry`` at http://address:port/metrics on a daemon thread.

    The address is always passed on: prometheus-client binds 0.0.0.0 by default.
    """
    server, thread = prometheus_client.start_http_server(port, addr=address, registry=registry)
    return MetricsExporter(server, thread)
