"""A small community-manager stand-in and an agent harness for the market agent's tests.

The stand-in speaks the protocol over a real mosquitto with the real codec: it publishes a
retained MarketConfig, acks orders and meter reports (or answers what a test tells it to, or
nothing), and sends allocations. The harness runs one home's agent on a VirtualClock that only
moves when the test advances it (the test task is a participant), with a real planner.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hems.clock import VirtualClock
from hems.mpc.planner import Planner
from hems.mpc.site import MpcSettings
from hems.observability.metrics import HomeMetrics
from hems.protocol.codec import Message, decode, encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import (Ack, Allocation, BidFormat, HomeStatus, MarketConfig, MeterReport,
                                    OrderSubmission)
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.topics import HomeTopic, Topics
from hems.runtime.forecasting import SiteForecast
from hems.runtime.planning import PlanningService
from hems.runtime.snapshot import Measurement, Quantity, SiteSnapshot
from hems.store import AsyncStore
from hems.trading.agent import MarketAgent
from hems.trading.settings import TradingSettings
from tests.mosquitto import MosquittoBroker
from tests.mpc.helpers import simple_site

COMMUNITY = "c1"
HOME = "home-a"
STEP_S = 900
#: 2025-06-21 12:00 UTC, a slot boundary at noon (PV to sell, a battery to shift with).
SLOT0_S = 1_750_464_000.0 + 12 * 3600
GRID_MICRO = [80_000, 135_000, 190_000, 245_000, 300_000]


def market_config(**overrides: Any) -> MarketConfig:
    """A bid-curve market of 15-min slots, gate 120 s ahead, a five-point grid."""
    values: dict[str, Any] = dict(
        community=COMMUNITY, config_version=1, mechanism="bid_curve", bid_format=BidFormat.CURVE,
        slot_duration_s=STEP_S, gate_closure_lead_s=120, horizon_slots=4, retail_price_micro=300_000,
        feed_in_price_micro=80_000, price_grid_micro=GRID_MICRO, imbalance_import_price_micro=300_000,
        imbalance_export_price_micro=80_000, meter_deadline_s=3600)
    values.update(overrides)
    return MarketConfig(**values)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def ack_payload(status: ReceptionStatus, correlation_id: Any, message_type: str, **fields: Any) -> bytes:
    return encode(Ack(status=status, acked_message_type=message_type, **fields), sender="manager",
                  sent_at=datetime.now(timezone.utc), correlation_id=correlation_id)


class ManagerStandIn:
    """The manager's end of the protocol. ``meter_answer(report_message)`` decides each meter
    ack (None: stay silent); ``answer_orders`` False leaves submissions unanswered."""

    def __init__(self, broker_url: str, config: MarketConfig | None = None, *, client_id: str = "standin-manager",
                 meter_answer: Callable[[Message[MeterReport]], ReceptionStatus | None] | None = None,
                 answer_orders: bool = True,
                 on_orders: Callable[[str, Message[OrderSubmission]], Allocation | None] | None = None) -> None:
        self.config = config
        self.topics = Topics(COMMUNITY)
        self.link = MqttLink(BrokerSettings(broker_url, client_id, reconnect_min_s=0.05, reconnect_max_s=0.2),
                             on_connection_change=self._connection_changed)
        self.meter_answer = meter_answer or (lambda message: ReceptionStatus.OK)
        self.answer_orders = answer_orders
        self.on_orders = on_orders
        self.orders: list[Message[OrderSubmission]] = []
        self.meter: list[Message[MeterReport]] = []
        self.statuses: list[HomeStatus] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> ManagerStandIn:
        self.link.subscribe(self.topics.all_homes(HomeTopic.ORDERS), self._on_orders)
        self.link.subscribe(self.topics.all_homes(HomeTopic.METER), self._on_meter)
        self.link.subscribe(self.topics.all_homes(HomeTopic.STATUS), self._on_status)
        await self.link.start(connect_timeout_s=5)
        await self.publish_config()
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.link.stop()

    async def publish_config(self) -> None:
        if self.config is not None:
            payload = encode(self.config, sender="manager", sent_at=datetime.now(timezone.utc))
            assert await self.link.publish(self.topics.market_config(), payload, retain=True)

    async def allocate(self, home: str, allocation: Allocation) -> None:
        payload = encode(allocation, sender="manager", sent_at=datetime.now(timezone.utc))
        assert await self.link.publish(self.topics.home(home, HomeTopic.ALLOCATION), payload)

    def meter_ids(self) -> list[str]:
        """Ids of the meter reports received, first receipt of each, in arrival order."""
        return list(dict.fromkeys(str(message.message_id) for message in self.meter))

    def _connection_changed(self, connected: bool) -> None:
        if connected and self.config is not None:  # a broker that lost its store also lost the config
            task = asyncio.get_running_loop().create_task(self.publish_config())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_orders(self, incoming: IncomingMessage) -> None:
        message = decode(incoming.payload, (OrderSubmission,))
        self.orders.append(message)
        home = self.topics.parse_home(incoming.topic).home
        if self.answer_orders:
            await self.link.publish(self.topics.home(home, HomeTopic.ACK),
                                    ack_payload(ReceptionStatus.OK, message.message_id, "orders"))
        if self.on_orders is not None:
            allocation = self.on_orders(home, message)
            if allocation is not None:
                await self.allocate(home, allocation)

    async def _on_meter(self, incoming: IncomingMessage) -> None:
        message = decode(incoming.payload, (MeterReport,))
        self.meter.append(message)
        status = self.meter_answer(message)
        if status is not None:
            home = self.topics.parse_home(incoming.topic).home
            await self.link.publish(self.topics.home(home, HomeTopic.ACK),
                                    ack_payload(status, message.message_id, "meter", diagnostic_label="test"))

    async def _on_status(self, incoming: IncomingMessage) -> None:
        if incoming.payload:
            self.statuses.append(decode(incoming.payload, (HomeStatus,)).payload)


class SamePortBroker(MosquittoBroker):
    """A mosquitto that comes back on the port it had (a restarted broker, as homes see it) and
    keeps sessions, queued messages and retained messages across the restart (``persistence``)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, extra_config=["persistence true", f"persistence_location {directory}/"])

    def restart_on_same_port(self) -> None:
        self._fixed_port = self.port
        self.start()


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of a broker; :meth:`cut` drops every connection without
    an MQTT DISCONNECT (a network failure as the broker sees it) and lets clients reconnect."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


class ConstantForecast:
    """Midday: 600 W of load, 3 kW of PV, every slot (the test is about trading, not forecasts)."""

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> SiteForecast:
        return SiteForecast(np.full(steps, 600.0), np.full(steps, 3000.0))

    def observe(self, slot_start: datetime, load_w: float, pv_w: float) -> None:
        """Nothing to learn."""


def flat_prices(instants: Any, timezone_name: str) -> tuple[list[float], list[float]]:
    """Retail 0.30, feed-in 0.08 per kWh; evenings dearer, so storing PV is worth something."""
    imports = [0.45 if 17 <= instant.hour < 21 else 0.30 for instant in instants]
    return imports, [0.08] * len(instants)


def snapshot(at_s: float, *, soc: float | None = 0.5, grid_w: float | None = 0.0,
             import_wh: float | None = None, export_wh: float | None = None) -> SiteSnapshot:
    """A snapshot whose readings were all measured at ``at_s``."""
    values = {}
    for quantity, value in ((Quantity.BATTERY_SOC, soc), (Quantity.GRID_IMPORT_W, grid_w),
                            (Quantity.GRID_IMPORT_ENERGY_WH, import_wh), (Quantity.GRID_EXPORT_ENERGY_WH, export_wh)):
        if value is not None:
            values[quantity] = Measurement(value, at_s)
    return SiteSnapshot(taken_at_s=at_s, values=values)


@dataclasses.dataclass
class Harness:
    """One home's agent and what it talks to."""

    clock: VirtualClock
    store: AsyncStore
    planning: PlanningService
    metrics: HomeMetrics
    agent: MarketAgent
    settings: TradingSettings

    def advance_to(self, at_s: float) -> None:
        self.clock.advance(at_s - self.clock.now_s())

    async def plan(self) -> None:
        now_s = self.clock.now_s()
        await self.planning.plan(snapshot(now_s), now_s)


def trading_settings(broker_url: str, **overrides: Any) -> TradingSettings:
    broker = BrokerSettings(broker_url, f"hems-market-{HOME}", reconnect_min_s=0.05, reconnect_max_s=0.2)
    values: dict[str, Any] = dict(home_id=HOME, community=COMMUNITY, broker=broker, submit_lead_s=60,
                                  bid_points=5, bid_slots=2, resend_after_s=30, ack_timeout_s=10)
    values.update(overrides)
    return TradingSettings(**values)


@contextlib.asynccontextmanager
async def agent_harness(state_dir: Path, broker_url: str, *, start_s: float = SLOT0_S + 100,
                        connect: bool = True, **overrides: Any) -> AsyncIterator[Harness]:
    """A started agent on a clock at ``start_s`` that moves only when the test advances it;
    with ``connect`` it waits until the link is up."""
    clock = VirtualClock(start_s)
    with clock.participant():
        store = await AsyncStore.in_directory(state_dir, clock=clock.now_s)
        site = dataclasses.replace(simple_site(), mpc=MpcSettings(horizon_steps=16, market_enabled=True))
        planner = await asyncio.to_thread(Planner, site)
        planning = PlanningService(planner, ConstantForecast(), flat_prices, "UTC")
        metrics = HomeMetrics()
        settings = trading_settings(broker_url, **overrides)
        agent = MarketAgent(settings, clock, store, planning, metrics=metrics, max_gap_s=600)
        planning.market_terms = agent.plan_terms
        await agent.start()
        try:
            if connect:
                assert await agent.link.wait_connected(5)
            yield Harness(clock, store, planning, metrics, agent, settings)
        finally:
            await agent.stop()
            await store.close()


def metric(metrics: HomeMetrics, name: str, **labels: str) -> float | None:
    """One sample's value from the home's registry."""
    return metrics.registry.get_sample_value(name, labels)
