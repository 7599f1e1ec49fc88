"""Model definitions -> points, roles, and the register image (no sockets)."""

from __future__ import annotations

import pytest

from drivers.maps import RegisterImage, Role
from drivers.maps.schema import Table
from drivers.readings import Quality
from drivers.registers import RegisterType
from drivers.sunspec import builtin_maps, hybrid_site_map, model_definition, model_points
from drivers.sunspec.builder import ModelPlacement, build_map, load_role_bindings
from drivers.sunspec.models import UnsupportedModel
from drivers.sunspec.site_image import consecutive_layout, site_map
from tests.sunspec.servers import register_image


def offsets(model_id: int) -> dict[str, int]:
    return {point.name.split("_", 1)[1]: point.address for point in model_points(model_id, 0)}


@pytest.mark.parametrize("model_id, expected", [
    (1, {"Mn": 2, "Md": 18, "SN": 50, "DA": 66}),
    (103, {"W": 14, "W_SF": 15, "Hz": 16, "Hz_SF": 17, "WH": 24, "WH_SF": 26, "St": 38}),
    (124, {"WChaMax": 2, "StorCtl_Mod": 5, "ChaState": 8, "OutWRte": 12, "InWRte": 13, "InOutWRte_WinTms": 14,
           "InOutWRte_RvrtTms": 15, "InOutWRte_RmpTms": 16, "InOutWRte_SF": 25}),
    (203, {"W": 18, "W_SF": 22, "TotWhExp": 38, "TotWhImp": 46, "TotWh_SF": 54}),
    (802, {"SoC": 11, "CtrlHb": 19, "W": 47, "SetOp": 50, "SoC_SF": 56}),
    (704, {"WMaxLimPct": 15, "WSetEna": 22, "WSet": 24}),
])
def test_offsets_match_the_sunspec_tables(model_id, expected):
    found = offsets(model_id)
    assert {name: found[name] for name in expected} == expected


def test_types_scale_factors_and_sentinels():
    points = {point.name: point for point in model_points(103, 40070)}
    assert points["m103_ID"].initial == 103 and points["m103_L"].initial == 50
    assert points["m103_W"].type is RegisterType.INT16 and points["m103_W"].scale_factor_point == "m103_W_SF"
    assert points["m103_W"].address == 40084
    assert points["m103_WH"].type is RegisterType.UINT32 and points["m103_WH"].not_implemented == 0  # acc32
    assert points["m103_St"].enum["4"] == "MPPT"
    common = {point.name: point for point in model_points(1, 40002)}
    assert common["m1_Mn"].type is RegisterType.STRING and common["m1_Mn"].length == 16
    assert "m1_Pad" not in common
    assert {point.name: point for point in model_points(113, 0)}["m113_W"].type is RegisterType.FLOAT32


def test_writable_points_get_a_write_range():
    controls = {point.name: point for point in model_points(123, 0)}
    assert (controls["m123_WMaxLimPct"].access, controls["m123_WMaxLimPct"].min,
            controls["m123_WMaxLimPct"].max) == ("rw", 0.0, 100.0)
    assert (controls["m123_WMaxLim_Ena"].min, controls["m123_WMaxLim_Ena"].max) == (0.0, 1.0)
    storage = {point.name: point for point in model_points(124, 0)}
    assert (storage["m124_InWRte"].min, storage["m124_InWRte"].max) == (-100.0, 100.0)
    assert storage["m124_StorCtl_Mod"].writable and storage["m124_StorCtl_Mod"].bits == {"0": "CHARGE",
                                                                                        "1": "DiSCHARGE"}


def test_repeating_group_is_laid_out_as_far_as_the_length_allows():
    definition = model_definition(160)
    assert definition.repeating_name == "module" and definition.repeating_length == 20
    points = {point.name: point for point in model_points(160, 0, length=definition.length_for(2))}
    assert points["m160_N"].initial == 2
    assert points["m160_module2_DCW"].address == 2 + 8 + 20 + 11
    assert points["m160_module2_DCW"].scale_factor_point == "m160_DCW_SF"
    capped = model_points(160, 0, length=definition.length_for(20), max_repetitions=3)
    assert not any(point.name.startswith("m160_module4") for point in capped)


def test_fixed_groups_expand_inline_and_variable_nested_groups_are_omitted():
    points = {point.name: point for point in model_points(704, 0)}
    assert points["m704_PFWInj_PF"].scale_factor_point == "m704_PF_SF"
    assert model_definition(705).omitted == ("Crv",)


def test_a_short_model_keeps_only_what_fits():
    names = {point.name for point in model_points(103, 0, length=15)}
    assert {"m103_W", "m103_W_SF"} <= names
    assert "m103_Hz_SF" not in names and "m103_Hz" not in names  # its scale factor did not fit


def test_unknown_model_raises():
    with pytest.raises(UnsupportedModel):
        model_definition(9999)


def test_every_role_binding_names_a_real_point():
    for binding in load_role_bindings():
        for model_id in binding.models:
            names = {point.name for point in model_points(model_id, 0)}
            assert f"m{model_id}_{binding.point}" in names, (binding, model_id)


def test_role_precedence_and_requirements():
    hybrid = hybrid_site_map(with_battery_model=True)
    assert hybrid.point_for(Role.BATTERY_SOC_PCT).name == "m124_ChaState"
    assert hybrid.point_for(Role.BATTERY_CAPACITY_WH).name == "m802_WHRtg"
    assert hybrid.point_for(Role.BATTERY_POWER_W).sign == -1
    only_802 = site_map([1, 802])
    assert only_802.point_for(Role.BATTERY_SOC_PCT).name == "m802_SoC"
    assert only_802.spec.control.battery is None and only_802.spec.device.kinds == ["battery"]
    inverter = builtin_maps()["sunspec_inverter"]
    assert inverter.point_for(Role.BATTERY_CAPACITY_WH) is None  # 120's storage ratings need 124/802
    assert inverter.spec.device.kinds == ["pv_inverter"] and inverter.spec.control.battery is None


def test_second_instance_of_a_model_gets_its_own_prefix():
    placements = consecutive_layout([1, 203, 203])
    register_map = build_map(placements, 40000)
    assert "m203_2_W" in register_map.points
    assert register_map.point_for(Role.GRID_POWER_W).name == "m203_W"
    assert register_map.points["m203_2_W"].role is None


def test_register_image_round_trips_through_the_map():
    site = hybrid_site_map(initial={"m103_W_SF": -1, "m103_W": 345.6, "m124_ChaState": 73.5})
    ((space, runs),) = register_image(site).items()
    assert space == (None, Table.HOLDING)
    assert len(runs) == 1 and runs[0][0] == 40000 and runs[0][1][:2] == [0x5375, 0x6E53]
    image = RegisterImage()
    image.store(space, *runs[0])
    readings = site.decode_all(image, 0.0)
    assert readings["m103_W"].value == pytest.approx(345.6)
    assert readings["m124_ChaState"].value == pytest.approx(73.5)
    assert readings["m120_WRtg"].value == 5000
    assert readings["m1_Md"].value == "emulated hybrid"
    assert readings["end_ID"].value == 0xFFFF and readings["end_L"].value == 0
    assert readings["m103_VA"].quality is Quality.NOT_IMPLEMENTED
    assert readings["m203_TotVAhExp"].quality is Quality.NOT_IMPLEMENTED  # acc32 unset = 0


def test_initial_value_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        register_image(hybrid_site_map(initial={"m103_W_SF": -2, "m103_W": 5000}))


def test_initial_for_an_unknown_point_is_refused():
    with pytest.raises(ValueError, match="m103_Nope"):
        build_map([ModelPlacement(103, 40002, 50)], 40000, initial={"m103_Nope": 1})


def test_builtin_maps():
    maps = builtin_maps()
    assert set(maps) == {"sunspec_hybrid", "sunspec_inverter", "sunspec_meter"}
    assert all(register_map.id == name for name, register_map in maps.items())
    assert maps["sunspec_meter"].spec.device.kinds == ["grid_meter"]
