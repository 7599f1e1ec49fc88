"""Home Assistant MQTT discovery: settings, topics, the entity catalogue and every payload.

Pure functions and frozen dataclasses, no network: ``home_assistant.py`` sends what this module
builds. One HA device per home; every entity reads one field of one state JSON
(``value_template: {{ value_json.<field> }}``), so a home publishes a single small message per
period instead of one per sensor. An unknown value is JSON ``null``: the template renders it as
``None``, which HA's MQTT sensor and binary sensor take as "unknown" rather than an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hems.mpc.plan import Plan, PlanStep
from hems.protocol.mqtt import broker_endpoint
from hems.runtime.snapshot import Quantity, SiteSnapshot

PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"
#: At most this many plan slots go into the plan attributes: 96 slots (a day of 15 min) keep the
#: payload near 10 kB, under HA's 16 kB limit for attributes it records.
MAX_PLAN_SLOTS = 96
#: HA marks entities unavailable when no state arrived for this many publish periods: catches a
#: wedged control loop whose MQTT thread still keeps the connection (and so the will) alive.
EXPIRE_AFTER_PERIODS = 3
MIN_EXPIRE_AFTER_S = 90
_TOPIC_LEVEL = re.compile(r"^[^#+\x00]+$")
_NODE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class HomeAssistantSettings:
    """The ``[home_assistant]`` config section, as plain values (the caller reads the password
    file). ``currency`` and ``ca_file`` (the CA bundle for an ``mqtts://`` broker with a private CA;
    None uses the system CAs) are not config keys yet: their defaults apply until they are."""

    broker: str = "mqtt://127.0.0.1:1883"
    discovery_prefix: str = "homeassistant"
    state_topic_prefix: str = "hems"
    username: str | None = None
    password: str | None = None
    publish_period_s: float = 30.0
    currency: str = "EUR"
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parse_broker_url(self.broker)
        for key in ("discovery_prefix", "state_topic_prefix"):
            value = getattr(self, key)
            if not value or not _TOPIC_LEVEL.match(value) or value.startswith("/") or value.endswith("/"):
                raise ValueError(f"home_assistant.{key} = {value!r}: must be a non-empty MQTT topic "
                                 "without wildcards or leading/trailing '/'")
        if not self.publish_period_s > 0:
            raise ValueError(f"home_assistant.publish_period_s = {self.publish_period_s!r}: must be > 0")
        if not self.currency:
            raise ValueError("home_assistant.currency must not be empty")


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker listens and whether to speak TLS."""

    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` (1883) or ``mqtts://host[:port]`` (8883, TLS)."""
    return BrokerAddress(*broker_endpoint(url, where=f"home_assistant.broker = {url!r}"))


def node_id(home_id: str) -> str:
    """``home_id`` made safe for HA ids and topic levels (characters outside [A-Za-z0-9_-] become _)."""
    if not home_id:
        raise ValueError("home_id must not be empty")
    return _NODE_UNSAFE.sub("_", home_id)


@dataclass(frozen=True)
class Topics:
    """Every topic of one home."""

    discovery_prefix: str
    base: str  # <state_topic_prefix>/<node>
    node: str

    @classmethod
    def for_home(cls, settings: HomeAssistantSettings, home_id: str) -> Topics:
        """The topics of ``home_id`` under the configured prefixes."""
        node = node_id(home_id)
        return cls(settings.discovery_prefix, f"{settings.state_topic_prefix}/{node}", node)

    @property
    def availability(self) -> str:
        """``online``/``offline``, retained; ``offline`` is also the last will."""
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        """The state JSON every entity reads."""
        return f"{self.base}/state"

    @property
    def plan(self) -> str:
        """The plan attributes (per-slot plan), retained."""
        return f"{self.base}/plan"

    @property
    def ha_status(self) -> str:
        """HA's birth/last-will topic: ``online`` when HA (re)starts."""
        return f"{self.discovery_prefix}/status"

    def config(self, component: str, object_id: str) -> str:
        """Discovery config topic of one entity."""
        return f"{self.discovery_prefix}/{component}/hems_{self.node}/{object_id}/config"


@dataclass(frozen=True)
class EntitySpec:
    """One HA entity: its object id is also its field in the state JSON."""

    object_id: str
    name: str
    component: str = "sensor"
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    entity_category: str | None = None
    icon: str | None = None
    #: Announced when the home has any of these quantities; empty: always (the plan's entities).
    needs: tuple[Quantity, ...] = ()
    attributes_from_plan: bool = False
    display_precision: int | None = None


def _power(object_id: str, name: str, *needs: Quantity, icon: str | None = None) -> EntitySpec:
    return EntitySpec(object_id, name, device_class="power", unit="W", state_class="measurement",
                      needs=needs, icon=icon, display_precision=0)


def _energy(object_id: str, name: str, need: Quantity) -> EntitySpec:
    return EntitySpec(object_id, name, device_class="energy", unit="Wh", state_class="total_increasing",
                      needs=(need,), display_precision=0)


_BATTERY = (Quantity.BATTERY_CHARGE_W, Quantity.BATTERY_SOC)


def entity_catalogue(currency: str = "EUR") -> tuple[EntitySpec, ...]:
    """Every entity hems can announce, in display order."""
    return (
        _power("grid_import_w", "Grid import", Quantity.GRID_IMPORT_W, icon="mdi:transmission-tower"),
        _power("pv_power_w", "PV power", Quantity.PV_POWER_W, icon="mdi:solar-power"),
        _power("battery_charge_w", "Battery power", Quantity.BATTERY_CHARGE_W, icon="mdi:battery-charging"),
        EntitySpec("battery_soc_pct", "Battery state of charge", device_class="battery", unit="%",
                   state_class="measurement", needs=(Quantity.BATTERY_SOC,), display_precision=0),
        _power("house_load_w", "House load", Quantity.GRID_IMPORT_W, icon="mdi:home-lightning-bolt"),
        _power("ev_power_w", "EV charging power", Quantity.EV_POWER_W, icon="mdi:ev-station"),
        EntitySpec("ev_connected", "EV connected", component="binary_sensor", device_class="plug",
                   needs=(Quantity.EV_CONNECTED,)),
        _power("heat_pump_power_w", "Heat pump power", Quantity.HEAT_PUMP_POWER_W, icon="mdi:heat-pump"),
        _energy("grid_import_energy_wh", "Grid import energy", Quantity.GRID_IMPORT_ENERGY_WH),
        _energy("grid_export_energy_wh", "Grid export energy", Quantity.GRID_EXPORT_ENERGY_WH),
        _energy("pv_energy_wh", "PV energy", Quantity.PV_ENERGY_WH),
        EntitySpec("plan", "Plan", device_class="timestamp", icon="mdi:chart-timeline-variant",
                   attributes_from_plan=True),
        EntitySpec("plan_status", "Plan status", icon="mdi:calendar-check"),
        EntitySpec("plan_solver", "Plan solver", entity_category="diagnostic", icon="mdi:calculator"),
        _power("next_battery_setpoint_w", "Planned battery power", *_BATTERY, icon="mdi:battery-clock"),
        _power("next_grid_import_w", "Planned grid import", icon="mdi:transmission-tower-import"),
        # No state_class: a forecast over a moving horizon is neither a measurement nor a running
        # total, and HA accepts only "total" for monetary sensors.
        EntitySpec("plan_cost", "Planned cost", device_class="monetary", unit=currency,
                   icon="mdi:cash", display_precision=2),
        EntitySpec("plan_age_s", "Plan age", device_class="duration", unit="s", state_class="measurement",
                   entity_category="diagnostic", display_precision=0),
    )


def entities_for(quantities: Iterable[Quantity], currency: str = "EUR") -> tuple[EntitySpec, ...]:
    """The entities a home with ``quantities`` announces."""
    present = set(quantities)
    return tuple(spec for spec in entity_catalogue(currency)
                 if not spec.needs or any(quantity in present for quantity in spec.needs))


def device_info(home_id: str, sw_version: str | None) -> dict[str, Any]:
    """The HA device that groups all entities of one home."""
    device: dict[str, Any] = {"identifiers": [f"hems_{node_id(home_id)}"], "name": f"hems {home_id}",
                              "manufacturer": "hems", "model": "home energy management"}
    if sw_version:
        device["sw_version"] = sw_version
    return device


def discovery_config(spec: EntitySpec, topics: Topics, device: dict[str, Any],
                     publish_period_s: float) -> dict[str, Any]:
    """The retained discovery payload of one entity."""
    config: dict[str, Any] = {
        "name": spec.name,
        "unique_id": f"hems_{topics.node}_{spec.object_id}",
        "state_topic": topics.state,
        "value_template": f"{{{{ value_json.{spec.object_id} }}}}",
        "availability_topic": topics.availability,
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "expire_after": max(MIN_EXPIRE_AFTER_S, math.ceil(EXPIRE_AFTER_PERIODS * publish_period_s)),
        "device": device,
        "origin": {"name": "hems", **({"sw_version": device["sw_version"]} if "sw_version" in device else {})},
    }
    optional = {"device_class": spec.device_class, "unit_of_measurement": spec.unit,
                "state_class": spec.state_class, "entity_category": spec.entity_category, "icon": spec.icon,
                "suggested_display_precision": spec.display_precision}
    config.update({key: value for key, value in optional.items() if value is not None})
    if spec.component == "binary_sensor":
        config["payload_on"], config["payload_off"] = "ON", "OFF"
        config.pop("suggested_display_precision", None)
    if spec.attributes_from_plan:
        config["json_attributes_topic"] = topics.plan
    return config


def iso_utc(instant_s: float | datetime | None) -> str | None:
    """``2024-06-01T12:15:00Z`` (naive datetimes are taken as UTC), or None."""
    if instant_s is None:
        return None
    if isinstance(instant_s, datetime):
        moment = instant_s if instant_s.tzinfo else instant_s.replace(tzinfo=timezone.utc)
    else:
        moment = datetime.fromtimestamp(instant_s, tz=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float | None, digits: int = 0) -> float | int | None:
    """Rounded for the wire; NaN and infinities become null (they are not valid JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value) if digits == 0 else round(value, digits)


def step_in_force(plan: Plan, now_s: float) -> PlanStep | None:
    """The slot that contains ``now_s``; the first slot when the plan starts later; None when the
    plan has run out."""
    for step in plan.steps:
        start_s = step.start.timestamp() if step.start.tzinfo else step.start.replace(
            tzinfo=timezone.utc).timestamp()
        if now_s < start_s + plan.step_s:
            return step
    return None


def planned_cost(plan: Plan) -> float:
    """Money the plan expects to pay over its horizon: retail energy, committed trades and demand
    charge (degradation and the penalties are model terms, not bills)."""
    return plan.cost.energy + plan.cost.trades + plan.cost.demand_charge


def state_payload(snapshot: SiteSnapshot, plan: Plan | None, plan_made_at_s: float | None, now_s: float,
                  fields: Iterable[str], stale_after_s: float) -> dict[str, Any]:
    """The state JSON: ``time`` plus one field per announced entity (null when unknown).

    Powers, SoC and EV presence older than ``stale_after_s`` are null; energy counters are totals and
    stay valid however old they are.
    """
    def fresh(quantity: Quantity) -> float | None:
        return snapshot.value(quantity, max_age_s=stale_after_s)

    ev_connected = fresh(Quantity.EV_CONNECTED)
    soc = fresh(Quantity.BATTERY_SOC)
    values: dict[str, Any] = {
        "grid_import_w": _number(fresh(Quantity.GRID_IMPORT_W)),
        "pv_power_w": _number(fresh(Quantity.PV_POWER_W)),
        "battery_charge_w": _number(fresh(Quantity.BATTERY_CHARGE_W)),
        "battery_soc_pct": None if soc is None else _number(soc * 100.0, 1),
        "house_load_w": _number(snapshot.house_load_w(max_age_s=stale_after_s)),
        "ev_power_w": _number(fresh(Quantity.EV_POWER_W)),
        "ev_connected": None if ev_connected is None else ("ON" if ev_connected >= 0.5 else "OFF"),
        "heat_pump_power_w": _number(fresh(Quantity.HEAT_PUMP_POWER_W)),
        "grid_import_energy_wh": _number(snapshot.value(Quantity.GRID_IMPORT_ENERGY_WH)),
        "grid_export_energy_wh": _number(snapshot.value(Quantity.GRID_EXPORT_ENERGY_WH)),
        "pv_energy_wh": _number(snapshot.value(Quantity.PV_ENERGY_WH)),
        "plan": None, "plan_status": None, "plan_solver": None, "next_battery_setpoint_w": None,
        "next_grid_import_w": None, "plan_cost": None, "plan_age_s": None,
    }
    if plan is not None:
        step = step_in_force(plan, now_s)
        values.update({
            "plan": iso_utc(plan_made_at_s),
            "plan_status": plan.status,
            "plan_solver": plan.solver,
            "plan_cost": _number(planned_cost(plan), 2),
            "plan_age_s": None if plan_made_at_s is None else _number(max(0.0, now_s - plan_made_at_s)),
        })
        if step is not None:
            values["next_battery_setpoint_w"] = _number(step.battery_charge_w - step.battery_discharge_w)
            values["next_grid_import_w"] = _number(step.grid_import_w - step.grid_export_w)
    state: dict[str, Any] = {"time": iso_utc(snapshot.taken_at_s)}
    state.update({field: values[field] for field in fields})
    return state


def plan_attributes(plan: Plan, plan_made_at_s: float | None, max_slots: int = MAX_PLAN_SLOTS) -> dict[str, Any]:
    """The plan as HA attributes: a few headline values and ``slots``, each with ``start`` (ISO UTC),
    ``battery_w`` (net, + charging), ``grid_w`` (net, + importing), ``soc_pct``, ``pv_w`` (used, after
    curtailment) and ``load_w`` (household)."""
    slots = [{
        "start": iso_utc(step.start),
        "battery_w": _number(step.battery_charge_w - step.battery_discharge_w),
        "grid_w": _number(step.grid_import_w - step.grid_export_w),
        "soc_pct": _number(step.soc * 100.0, 1),
        "pv_w": _number(step.pv_used_w),
        "load_w": _number(step.load_w),
    } for step in plan.steps[:max_slots]]
    return {"made_at": iso_utc(plan_made_at_s), "status": plan.status, "solver": plan.solver,
            "step_s": plan.step_s, "cost": _number(planned_cost(plan), 2), "slots": slots}
