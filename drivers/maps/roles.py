"""The vocabulary that binds vendor registers to device capabilities.

A map point may carry a ``role``: the capability classes read and write roles,
never vendor point names, and the emulators serve a plant's state through the same
roles. Each role fixes a unit and a direction (positive as the name says); a map
point whose vendor convention differs sets ``sign = -1``.
"""

from __future__ import annotations

import enum


class Role(str, enum.Enum):
    """A physical quantity a device exposes, with its unit and sign in the name."""

    # Grid meter at the point of connection. Positive when importing.
    GRID_POWER_W = "grid_power_w"
    GRID_POWER_L1_W = "grid_power_l1_w"
    GRID_POWER_L2_W = "grid_power_l2_w"
    GRID_POWER_L3_W = "grid_power_l3_w"
    GRID_IMPORT_ENERGY_WH = "grid_import_energy_wh"
    GRID_EXPORT_ENERGY_WH = "grid_export_energy_wh"
    GRID_VOLTAGE_L1_V = "grid_voltage_l1_v"
    GRID_VOLTAGE_L2_V = "grid_voltage_l2_v"
    GRID_VOLTAGE_L3_V = "grid_voltage_l3_v"
    GRID_CURRENT_L1_A = "grid_current_l1_a"
    GRID_CURRENT_L2_A = "grid_current_l2_a"
    GRID_CURRENT_L3_A = "grid_current_l3_a"
    GRID_FREQUENCY_HZ = "grid_frequency_hz"

    # PV inverter. Generation is >= 0.
    PV_POWER_W = "pv_power_w"
    PV_DC_POWER_W = "pv_dc_power_w"
    PV_ENERGY_WH = "pv_energy_wh"
    PV_RATED_POWER_W = "pv_rated_power_w"
    PV_POWER_LIMIT_PCT = "pv_power_limit_pct"
    PV_POWER_LIMIT_W = "pv_power_limit_w"
    PV_POWER_LIMIT_ENABLED = "pv_power_limit_enabled"
    INVERTER_STATE = "inverter_state"

    # Battery. Positive when charging.
    BATTERY_SOC_PCT = "battery_soc_pct"
    BATTERY_SOH_PCT = "battery_soh_pct"
    BATTERY_POWER_W = "battery_power_w"
    #: Devices that report the two directions apart, each >= 0 (Fronius GEN24: SunSpec model
    #: 160 modules 3 and 4); the battery's power is their difference.
    BATTERY_CHARGE_POWER_W = "battery_charge_power_w"
    BATTERY_DISCHARGE_POWER_W = "battery_discharge_power_w"
    BATTERY_CAPACITY_WH = "battery_capacity_wh"
    BATTERY_MAX_CHARGE_W = "battery_max_charge_w"
    BATTERY_MAX_DISCHARGE_W = "battery_max_discharge_w"
    BATTERY_CHARGE_ENERGY_WH = "battery_charge_energy_wh"
    BATTERY_DISCHARGE_ENERGY_WH = "battery_discharge_energy_wh"
    BATTERY_TEMPERATURE_C = "battery_temperature_c"
    BATTERY_VOLTAGE_V = "battery_voltage_v"

    # EV charger.
    EV_POWER_W = "ev_power_w"
    EV_ENERGY_WH = "ev_energy_wh"
    EV_CONNECTED = "ev_connected"
    EV_CURRENT_LIMIT_A = "ev_current_limit_a"
    EV_CHARGING_ENABLED = "ev_charging_enabled"

    # Heat pump.
    HEAT_PUMP_POWER_W = "heat_pump_power_w"
    HEAT_PUMP_ENERGY_WH = "heat_pump_energy_wh"
    HEAT_PUMP_SG_READY_STATE = "heat_pump_sg_ready_state"
    HEAT_PUMP_POWER_LIMIT_W = "heat_pump_power_limit_w"
    HEAT_PUMP_FLOW_TEMPERATURE_C = "heat_pump_flow_temperature_c"
    HEAT_PUMP_OUTDOOR_TEMPERATURE_C = "heat_pump_outdoor_temperature_c"

    @property
    def unit(self) -> str:
        """The engineering unit of the role, taken from its name."""
        for suffix, unit in _UNIT_SUFFIXES:
            if self.value.endswith(suffix):
                return unit
        return ""


_UNIT_SUFFIXES = (
    ("_wh", "Wh"),
    ("_w", "W"),
    ("_pct", "%"),
    ("_v", "V"),
    ("_a", "A"),
    ("_hz", "Hz"),
    ("_c", "°C"),
)
