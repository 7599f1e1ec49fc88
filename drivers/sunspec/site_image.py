"""SunSpec maps laid out at a base address, and the register image an emulator serves.

:func:`site_map` places models consecutively (``SunS`` at the base, the first
model's ``ID`` at base + 2, the end marker after the last) through the same
:func:`~drivers.sunspec.builder.build_map` that discovery uses.
The registers an emulator serves for such a map are built by
:class:`drivers.emulators.image.SiteRegisters`, like those of any other map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.maps import RegisterMap
from drivers.registers import RegisterType
from drivers.sunspec.builder import ModelPlacement, build_map
from drivers.sunspec.models import model_definition

#: Scale factors an emulated SunSpec device serves unless told otherwise:
#: whole watts and watt-hours, 0.01 Hz and power factor, 0.1 V, 0.01 A, 0.1 %.
_DEFAULT_SCALE_FACTORS = {
    "Hz_SF": -2, "PF_SF": -2, "PFRtg_SF": -2, "V_SF": -1, "A_SF": -2, "DCV_SF": -1, "DCA_SF": -2,
    "InBatV_SF": -1, "ChaState_SF": -1, "SoC_SF": -1, "SoH_SF": -1, "WMaxLimPct_SF": -1, "InOutWRte_SF": -1,
    "MinRsvPct_SF": -1, "Tmp_SF": -1,
}


def consecutive_layout(model_ids: Sequence[int], base_address: int = 40000,
                       repetitions: int = 1) -> list[ModelPlacement]:
    """Place models one after the other from ``base_address + 2``.

    Each model gets its definition's length, plus ``repetitions`` of its
    repeating group if it has one.
    """
    placements = []
    address = base_address + 2
    for model_id in model_ids:
        definition = model_definition(model_id)
        length = definition.length_for(repetitions if definition.repeating_length else 0)
        placements.append(ModelPlacement(model_id, address, length))
        address += 2 + length
    return placements


def site_map(model_ids: Sequence[int], base_address: int = 40000, *, device_id: str = "sunspec_site",
             manufacturer: str = "hems", model_name: str = "emulated SunSpec device", serial: str = "HEMS-0001",
             initial: Mapping[str, float | int | str] | None = None, default_unit_id: int = 1) -> RegisterMap:
    """A whole SunSpec device of ``model_ids`` at ``base_address``, with sensible initial values.

    Every scale factor gets an initial value (so emulated values are never "not
    implemented" for lack of one); ``initial`` overrides any point by name.
    """
    placements = consecutive_layout(model_ids, base_address)
    skeleton = build_map(placements, base_address, device_id=device_id)
    values: dict[str, float | int | str] = {}
    for point in skeleton.spec.point:
        if point.type is RegisterType.SUNSSF:
            suffix = point.name.split("_", 1)[1] if "_" in point.name else point.name
            values[point.name] = _DEFAULT_SCALE_FACTORS.get(suffix, 0)
    if 1 in model_ids:
        values.update({"m1_Mn": manufacturer, "m1_Md": model_name, "m1_SN": serial, "m1_Vr": "0.1.0",
                       "m1_DA": default_unit_id})
    values.update(initial or {})
    return build_map(placements, base_address, device_id=device_id, manufacturer=manufacturer,
                     model_names=[model_name], initial=values, default_unit_id=default_unit_id,
                     source="hems emulated SunSpec device; SunSpec Information Model via pysunspec2 1.3.7")


def hybrid_site_map(base_address: int = 40000, with_battery_model: bool = False,
                    initial: Mapping[str, float | int | str] | None = None) -> RegisterMap:
    """A SunSpec hybrid site behind one address: common, inverter, nameplate,
    controls, storage, meter (and optionally the 802 battery model)."""
    models = [1, 103, 120, 123, 124, 203] + ([802] if with_battery_model else [])
    values: dict[str, float | int | str] = {
        "m103_W": 0, "m103_Hz": 50.0, "m103_St": 4, "m103_WH": 1_000_000,
        "m120_DERTyp": 82,  # PV_STOR
        "m120_WRtg": 5000, "m120_VARtg": 5000, "m120_WHRtg": 10_000, "m120_MaxChaRte": 5000,
        "m120_MaxDisChaRte": 5000,
        "m123_WMaxLimPct": 100.0, "m123_WMaxLim_Ena": 0,
        "m124_WChaMax": 5000, "m124_ChaState": 50.0, "m124_StorCtl_Mod": 0, "m124_ChaSt": 6,
        "m124_InWRte": 100.0, "m124_OutWRte": 100.0, "m124_InOutWRte_RvrtTms": 0,
        "m203_W": 0, "m203_Hz": 50.0, "m203_TotWhImp": 1_000_000, "m203_TotWhExp": 1_000_000,
    }
    if with_battery_model:
        values.update({"m802_WHRtg": 10_000, "m802_WChaRteMax": 5000, "m802_WDisChaRteMax": 5000, "m802_SoC": 50.0,
                       "m802_W": 0, "m802_SoH": 100.0, "m802_Typ": 4, "m802_State": 3})
    values.update(initial or {})
    return site_map(models, base_address, device_id="sunspec_hybrid", model_name="emulated hybrid",
                    serial="HEMS-HYB-0001", initial=values)


def inverter_site_map(base_address: int = 40000) -> RegisterMap:
    """A SunSpec PV inverter: common, three-phase inverter, nameplate, immediate controls."""
    return site_map([1, 103, 120, 123], base_address, device_id="sunspec_inverter", model_name="emulated inverter",
                    serial="HEMS-INV-0001", initial={
                        "m103_W": 0, "m103_Hz": 50.0, "m103_St": 4, "m103_WH": 1_000_000, "m120_DERTyp": 4,
                        "m120_WRtg": 5000, "m120_VARtg": 5000, "m123_WMaxLimPct": 100.0, "m123_WMaxLim_Ena": 0})


def meter_site_map(base_address: int = 40000) -> RegisterMap:
    """A SunSpec three-phase (wye) grid meter: common and model 203."""
    return site_map([1, 203], base_address, device_id="sunspec_meter", model_name="emulated meter",
                    serial="HEMS-MTR-0001", initial={
                        "m203_W": 0, "m203_Hz": 50.0, "m203_TotWhImp": 1_000_000, "m203_TotWhExp": 1_000_000})
