"""Home Assistant MQTT discovery against a real mosquitto, observed by a real paho subscriber."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import hems
from hems.mpc.plan import CostBreakdown, Plan, PlanStep, SlackReport
from hems.observability.home_assistant import HomeAssistantPublisher
from hems.observability.home_assistant_payloads import (MAX_PLAN_SLOTS, HomeAssistantSettings, entities_for,
                                                        entity_catalogue, parse_broker_url, plan_attributes,
                                                        state_payload, step_in_force)
from hems.runtime.snapshot import Measurement, Quantity, SiteSnapshot
from tests.conftest import wait_for
from tests.mosquitto import MosquittoBroker, mosquitto_binary

START = datetime(2024, 6, 1, 10, 0, tzinfo=timezone.utc)
NOW_S = START.timestamp() + 60.0
HOME = "home-1"
SITE = {
    Quantity.GRID_IMPORT_W: -1500.4,
    Quantity.PV_POWER_W: 4200.0,
    Quantity.BATTERY_CHARGE_W: 1800.0,
    Quantity.BATTERY_SOC: 0.634,
    Quantity.GRID_IMPORT_ENERGY_WH: 123_456.7,
    Quantity.GRID_EXPORT_ENERGY_WH: 6_543.2,
}
HA_REQUIRED = ("name", "unique_id", "state_topic", "value_template", "availability_topic", "device")
EXPECTED_CLASSES = {  # object_id: (device_class, unit, state_class)
    "grid_import_w": ("power", "W", "measurement"),
    "pv_power_w": ("power", "W", "measurement"),
    "battery_charge_w": ("power", "W", "measurement"),
    "house_load_w": ("power", "W", "measurement"),
    "battery_soc_pct": ("battery", "%", "measurement"),
    "grid_import_energy_wh": ("energy", "Wh", "total_increasing"),
    "grid_export_energy_wh": ("energy", "Wh", "total_increasing"),
    "plan": ("timestamp", None, None),
    "plan_status": (None, None, None),
    "plan_solver": (None, None, None),
    "next_battery_setpoint_w": ("power", "W", "measurement"),
    "next_grid_import_w": ("power", "W", "measurement"),
    "plan_cost": ("monetary", "EUR", None),
    "plan_age_s": ("duration", "s", "measurement"),
}
TEMPLATE = re.compile(r"^\{\{ value_json\.([A-Za-z_][A-Za-z0-9_]*) \}\}$")


class Clock:
    """A settable clock for the publisher."""

    def __init__(self, now_s: float = NOW_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def snapshot(now_s: float = NOW_S, values: dict[Quantity, float] | None = None) -> SiteSnapshot:
    return SiteSnapshot(taken_at_s=now_s, values={quantity: Measurement(value, now_s)
                                                   for quantity, value in (values or SITE).items()})


def make_plan(n_steps: int = 100, step_s: int = 900, status: str = "optimal") -> Plan:
    steps = tuple(PlanStep(
        start=START + timedelta(seconds=i * step_s),
        battery_charge_w=1_000.0 if i % 2 == 0 else 0.0,
        battery_discharge_w=0.0 if i % 2 == 0 else 500.0,
        soc=0.5 + 0.001 * i,
        grid_import_w=300.0 + i,
        grid_export_w=100.0,
        pv_used_w=2_000.0,
        pv_curtailed_w=0.0,
        load_w=800.0 + i,
        import_price=0.3,
        export_price=0.08,
    ) for i in range(n_steps))
    cost = CostBreakdown(energy=1.234, trades=0.5, degradation=0.1, demand_charge=0.2, terminal_value=-0.3,
                         discomfort_penalty=0.0, slack_penalty=0.0)
    return Plan(status=status, solver="osqp", steps=steps, cost=cost, slack=SlackReport(), solve_ms=5.0,
                build_ms=1.0, step_s=step_s)


class Recorder:
    """A paho subscriber that records every message on the given filters."""

    def __init__(self, broker: MosquittoBroker, filters: Iterable[str] = ("homeassistant/#", "hems/#")) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._filters = list(filters)
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"recorder-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([(topic, 1) for topic in self._filters])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for name, payload, _ in self.messages if name == topic]

    def last(self, topic: str) -> bytes | None:
        found = self.payloads(topic)
        return found[-1] if found else None

    def configs(self, retained_only: bool = False) -> dict[str, dict[str, Any]]:
        """The latest non-empty discovery config per topic."""
        latest: dict[str, bytes] = {}
        with self._lock:
            for topic, payload, retained in self.messages:
                if topic.endswith("/config") and (retained or not retained_only):
                    latest[topic] = payload
        return {topic: json.loads(payload) for topic, payload in latest.items() if payload}

    def emptied(self) -> set[str]:
        """Object ids whose discovery config was cleared (empty payload)."""
        with self._lock:
            return {topic.split("/")[-2] for topic, payload, _ in self.messages
                    if topic.endswith("/config") and not payload}

    def count(self, topic_suffix: str) -> int:
        with self._lock:
            return sum(1 for topic, payload, _ in self.messages if topic.endswith(topic_suffix) and payload)

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def recording(broker: MosquittoBroker) -> Iterator[Recorder]:
    recorder = Recorder(broker)
    try:
        yield recorder
    finally:
        recorder.close()


async def subscribed(recorder: Recorder) -> Recorder:
    await wait_for(recorder.subscribed.is_set)
    return recorder


@asynccontextmanager
async def running(broker_url: str, clock: Clock | None = None, **kwargs: Any):
    settings = HomeAssistantSettings(broker=broker_url, publish_period_s=kwargs.pop("publish_period_s", 30.0))
    publisher = HomeAssistantPublisher(settings, HOME, clock or Clock(), reconnect_min_delay_s=0.1,
                                       reconnect_max_delay_s=0.5, **kwargs)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


def field_of(config: dict[str, Any]) -> str:
    match = TEMPLATE.match(config["value_template"])
    assert match, config["value_template"]
    return match.group(1)


# The broker helper.

def test_mosquitto_broker_round_trips_a_retained_message(mosquitto_broker: MosquittoBroker):
    assert mosquitto_broker.url == f"mqtt://127.0.0.1:{mosquitto_broker.port}" and mosquitto_broker.running
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="roundtrip-pub")
    publisher.connect(mosquitto_broker.host, mosquitto_broker.port)
    publisher.loop_start()
    try:
        publisher.publish("test/retained", b"kept", qos=1, retain=True).wait_for_publish(5)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    received: list[tuple[bytes, bool]] = []
    got = threading.Event()
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="roundtrip-sub")

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received.append((message.payload, bool(message.retain)))
        got.set()

    subscriber.on_message = on_message
    subscriber.connect(mosquitto_broker.host, mosquitto_broker.port)
    subscriber.subscribe("test/retained", qos=1)
    subscriber.loop_start()
    try:
        assert got.wait(5)
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    assert received == [(b"kept", True)]
    pid = mosquitto_broker.pid
    mosquitto_broker.stop()
    assert not mosquitto_broker.running and pid is not None
    with pytest.raises(OSError):
        socket.create_connection((mosquitto_broker.host, mosquitto_broker.port), timeout=0.5).close()


@pytest.mark.skipif(mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None,
                    reason="mosquitto and mosquitto_passwd are needed")
def test_mosquitto_broker_with_password_file_refuses_anonymous_clients(tmp_path: Path):
    password_file = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(password_file), "hems", "secret"], check=True,
                   capture_output=True)

    def connect(username: str | None) -> int:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"auth-{username}")
        if username is not None:
            client.username_pw_set(username, "secret")
        codes: list[int] = []
        done = threading.Event()

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
            codes.append(reason_code.value)
            done.set()

        client.on_connect = on_connect
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            assert done.wait(5)
        finally:
            client.disconnect()
            client.loop_stop()
        return codes[0]

    with MosquittoBroker(tmp_path / "broker", password_file=password_file, allow_anonymous=False) as broker:
        assert connect("hems") == 0
        assert connect(None) != 0  # 5 in MQTT 3.1.1: not authorised


# Discovery, state and plan over the broker.

async def test_discovery_configs_are_retained_json_with_ha_keys_and_classes(mosquitto_broker: MosquittoBroker):
    with recording(mosquitto_broker) as early:
        await subscribed(early)
        async with running(mosquitto_broker.url, quantities=SITE.keys()) as publisher:
            expected_topics = {publisher.topics.config("sensor", object_id) for object_id in EXPECTED_CLASSES}
            await wait_for(lambda: set(early.configs()) == expected_topics)
            # A subscriber that arrives later sees the configs only if the broker retained them.
            with recording(mosquitto_broker) as late:
                await subscribed(late)
                await wait_for(lambda: set(late.configs(retained_only=True)) == expected_topics)
                configs = late.configs(retained_only=True)
    assert {config["unique_id"] for config in configs.values()} == {
        f"hems_home-1_{object_id}" for object_id in EXPECTED_CLASSES}
    for topic, config in configs.items():
        object_id = topic.split("/")[-2]
        assert topic == f"homeassistant/sensor/hems_home-1/{object_id}/config"
        for key in HA_REQUIRED:
            assert key in config, (object_id, key)
        assert config["state_topic"] == "hems/home-1/state"
        assert config["availability_topic"] == "hems/home-1/availability"
        assert field_of(config) == object_id
        assert config["device"] == {"identifiers": ["hems_home-1"], "name": "hems home-1", "manufacturer": "hems",
                                    "model": "home energy management", "sw_version": hems.__version__}
        device_class, unit, state_class = EXPECTED_CLASSES[object_id]
        assert (config.get("device_class"), config.get("unit_of_measurement"), config.get("state_class")) == (
            device_class, unit, state_class), object_id
        assert config["expire_after"] >= 90
    assert configs["homeassistant/sensor/hems_home-1/plan/config"]["json_attributes_topic"] == "hems/home-1/plan"


async def test_state_fields_match_the_value_templates_and_plan_attributes(mosquitto_broker: MosquittoBroker):
    plan = make_plan()
    made_at_s = NOW_S - 30.0
    with recording(mosquitto_broker) as recorder:
        await subscribed(recorder)
        async with running(mosquitto_broker.url, quantities=SITE.keys()) as publisher:
            await wait_for(lambda: len(recorder.configs()) == len(EXPECTED_CLASSES))
            assert await publisher.publish(snapshot(), plan, made_at_s)
            await wait_for(lambda: recorder.last("hems/home-1/state") and recorder.last("hems/home-1/plan"))
        state = json.loads(recorder.last("hems/home-1/state"))
        attributes_payload = recorder.last("hems/home-1/plan")
        configs = recorder.configs()
    for config in configs.values():
        assert field_of(config) in state
    assert state == {
        "time": "2024-06-01T10:01:00Z",
        "grid_import_w": -1500, "pv_power_w": 4200, "battery_charge_w": 1800, "battery_soc_pct": 63.4,
        "house_load_w": 900, "grid_import_energy_wh": 123457, "grid_export_energy_wh": 6543,
        "plan": "2024-06-01T10:00:30Z", "plan_status": "optimal", "plan_solver": "osqp",
        "next_battery_setpoint_w": 1000, "next_grid_import_w": 200, "plan_cost": 1.93, "plan_age_s": 30,
    }
    attributes = json.loads(attributes_payload)
    assert len(attributes_payload) < 16_384  # HA does not record larger attributes
    assert attributes["made_at"] == "2024-06-01T10:00:30Z" and attributes["step_s"] == 900
    assert len(attributes["slots"]) == MAX_PLAN_SLOTS
    assert attributes["slots"][1] == {"start": "2024-06-01T10:15:00Z", "battery_w": -500, "grid_w": 201,
                                      "soc_pct": 50.1, "pv_w": 2000, "load_w": 801}


async def test_availability_online_then_offline_after_stop_within_two_seconds(mosquitto_broker: MosquittoBroker):
    with recording(mosquitto_broker) as recorder:
        await subscribed(recorder)
        publisher = HomeAssistantPublisher(HomeAssistantSettings(broker=mosquitto_broker.url), HOME, Clock(),
                                           quantities=SITE.keys())
        await publisher.start()
        await wait_for(lambda: recorder.payloads("hems/home-1/availability") == [b"online"])
        started = time.monotonic()
        await publisher.stop()
        assert time.monotonic() - started < 2.0
        await wait_for(lambda: recorder.payloads("hems/home-1/availability") == [b"online", b"offline"])
    with recording(mosquitto_broker) as late:
        await subscribed(late)
        await wait_for(lambda: late.payloads("hems/home-1/availability") == [b"offline"])  # retained


async def test_last_will_offline_when_the_connection_dies_then_online_again(mosquitto_broker: MosquittoBroker):
    with recording(mosquitto_broker) as recorder:
        await subscribed(recorder)
        async with running(mosquitto_broker.url, quantities=SITE.keys()) as publisher:
            await wait_for(lambda: recorder.count("/grid_import_w/config") == 1)
            # Kill the TCP connection under paho without an MQTT DISCONNECT: the broker must send the will.
            publisher._client.socket().shutdown(socket.SHUT_RDWR)
            await wait_for(lambda: recorder.payloads("hems/home-1/availability")[:2] == [b"online", b"offline"])
            # paho reconnects by itself: online again and the configs republished.
            await wait_for(lambda: recorder.payloads("hems/home-1/availability") == [b"online", b"offline",
                                                                                      b"online"])
            await wait_for(lambda: recorder.count("/grid_import_w/config") == 2)
            await wait_for(lambda: publisher.connected)
            assert await publisher.publish(snapshot(), None, None)  # forced: first state after reconnect


async def test_republishes_discovery_when_home_assistant_comes_online(mosquitto_broker: MosquittoBroker):
    clock = Clock()
    with recording(mosquitto_broker) as recorder:
        await subscribed(recorder)
        async with running(mosquitto_broker.url, clock, quantities=SITE.keys()) as publisher:
            await wait_for(lambda: recorder.count("/plan_status/config") == 1)
            assert await publisher.publish(snapshot(), make_plan(), NOW_S)
            assert not publisher.due(clock.now_s + 1.0)
            recorder.publish("homeassistant/status", "offline")  # HA's own last will: ignored
            recorder.publish("homeassistant/status", "online")
            await wait_for(lambda: recorder.count("/plan_status/config") == 2)
            await wait_for(lambda: len(recorder.payloads("hems/home-1/plan")) == 2)
            assert recorder.count("/plan_status/config") == 2
            # HA restarted without the state: the next cycle sends it at once.
            assert publisher.due(clock.now_s + 1.0)


async def test_state_is_rate_limited_but_a_new_plan_goes_out_at_once(mosquitto_broker: MosquittoBroker):
    clock = Clock()
    with recording(mosquitto_broker) as recorder:
        await subscribed(recorder)
        async with running(mosquitto_broker.url, clock, quantities=SITE.keys(), publish_period_s=30.0) as publisher:
            await wait_for(lambda: publisher.connected)
            await wait_for(lambda: recorder.count("/plan/config") == 1)
            plan = make_plan()
            assert await publisher.publish(snapshot(), plan, NOW_S)
            clock.now_s += 10.0
            assert not await publisher.publish(snapshot(clock.now_s), plan, NOW_S)
            clock.now_s += 20.0
            assert await publisher.publish(snapshot(clock.now_s), plan, NOW_S)
            clock.now_s += 1.0
            newer = make_plan(status="fallback")
            assert await publisher.publish(snapshot(clock.now_s), newer, clock.now_s)
            await wait_for(lambda: len(recorder.payloads("hems/home-1/state")) == 3)
            await wait_for(lambda: len(recorder.payloads("hems/home-1/plan")) == 2)
            assert json.loads(recorder.last("hems/home-1/state"))["plan_status"] == "fallback"
            assert json.loads(recorder.last("hems/home-1/plan"))["status"] == "fallback"
            assert publisher.publish_failures == 0


async def test_only_the_quantities_of_the_home_are_announced_and_stale_configs_removed(
        mosquitto_broker: MosquittoBroker):
    async with running(mosquitto_broker.url, quantities=SITE.keys()) as publisher:
        await wait_for(lambda: publisher.connected)
    grid_and_ev = {Quantity.GRID_IMPORT_W: 500.0, Quantity.EV_POWER_W: 7_000.0, Quantity.EV_CONNECTED: 1.0}
    expected = {"grid_import_w", "house_load_w", "ev_power_w", "ev_connected", "plan", "plan_status",
                "plan_solver", "next_grid_import_w", "plan_cost", "plan_age_s"}
    removed = {spec.object_id for spec in entity_catalogue()} - expected
    # No quantities given: taken from the first snapshot.
    with recording(mosquitto_broker) as early:
        await subscribed(early)
        async with running(mosquitto_broker.url) as publisher:
            await wait_for(lambda: publisher.connected)
            assert publisher.entities == ()
            assert await publisher.publish(snapshot(values=grid_and_ev), None, None)
            await wait_for(lambda: early.emptied() == removed)
            # The battery and energy configs of the first run are gone (emptied retained messages).
            with recording(mosquitto_broker) as late:
                await subscribed(late)
                await wait_for(lambda: {topic.split("/")[-2] for topic in late.configs(retained_only=True)}
                               == expected)
                configs = late.configs(retained_only=True)
    ev_connected = configs["homeassistant/binary_sensor/hems_home-1/ev_connected/config"]
    assert (ev_connected["device_class"], ev_connected["payload_on"], ev_connected["payload_off"]) == (
        "plug", "ON", "OFF")
    assert configs["homeassistant/sensor/hems_home-1/ev_power_w/config"]["device_class"] == "power"


async def test_unreachable_broker_never_raises_logs_once_and_counts(caplog: pytest.LogCaptureFixture):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    caplog.set_level(logging.WARNING, logger="hems.observability.home_assistant")
    clock = Clock()
    async with running(f"mqtt://127.0.0.1:{closed_port}", clock, quantities=SITE.keys()) as publisher:
        await wait_for(lambda: publisher.connect_failures >= 2)
        for _ in range(3):
            clock.now_s += 60.0
            assert not await publisher.publish(snapshot(clock.now_s), make_plan(), clock.now_s)
        assert publisher.publish_failures == 6  # 3 states + 3 new plans
        assert not publisher.connected
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]


# Payloads without a broker.

def test_broker_urls_and_settings_are_validated():
    assert parse_broker_url("mqtt://ha.local").port == 1883
    secure = parse_broker_url("mqtts://ha.local:8884")
    assert (secure.host, secure.port, secure.tls) == ("ha.local", 8884, True)
    for bad in ("http://ha.local", "mqtt://", "mqtt://ha.local:99999"):
        with pytest.raises(ValueError, match=r"home_assistant\.broker"):
            parse_broker_url(bad)
    with pytest.raises(ValueError, match="discovery_prefix"):
        HomeAssistantSettings(broker="mqtt://x", discovery_prefix="home/#")
    with pytest.raises(ValueError, match="publish_period_s"):
        HomeAssistantSettings(broker="mqtt://x", publish_period_s=0)


def test_stale_powers_and_non_finite_values_are_unknown_and_plans_run_out():
    now_s = NOW_S + 600.0
    old = SiteSnapshot(taken_at_s=now_s, values={
        Quantity.GRID_IMPORT_W: Measurement(100.0, now_s - 500.0),
        Quantity.PV_POWER_W: Measurement(float("nan"), now_s),
        Quantity.GRID_IMPORT_ENERGY_WH: Measurement(1_000.0, now_s - 5_000.0),
    })
    fields = [spec.object_id for spec in entities_for(old.values.keys())]
    state = state_payload(old, None, None, now_s, fields, stale_after_s=120.0)
    assert state["grid_import_w"] is None and state["house_load_w"] is None and state["pv_power_w"] is None
    assert state["grid_import_energy_wh"] == 1_000 and state["plan_status"] is None
    json.dumps(state, allow_nan=False)
    plan = make_plan(n_steps=4)
    assert step_in_force(plan, START.timestamp() - 100.0) is plan.steps[0]
    assert step_in_force(plan, START.timestamp() + 1_000.0) is plan.steps[1]
    assert step_in_force(plan, START.timestamp() + 4 * 900.0) is None
    assert len(plan_attributes(make_plan(n_steps=200), None)["slots"]) == MAX_PLAN_SLOTS
