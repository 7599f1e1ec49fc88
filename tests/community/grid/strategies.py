"""Random feeders, limits and cleared slots for the grid tests (hypothesis)."""

from __future__ import annotations

from hypothesis import strategies as st

from hems.community.grid import FeederModel, FeederSection, GridLimits


@st.composite
def feeders(draw, max_homes: int = 6, unplaced: int = 2, tiny: bool = False) -> FeederModel:
    """A radial line of 0..max_homes homes, sensitivities non-decreasing with position, and up to
    ``unplaced`` members without a place (at the transformer). ``tiny``: limits and sensitivities
    scaled for positions of a few Wh over an hour (brute-force cases)."""
    count = draw(st.integers(0 if not tiny else 1, max_homes))
    positions = sorted(draw(st.lists(st.integers(0, 800), min_size=count, max_size=count)))
    low, high = (10.0, 100.0) if tiny else (0.05, 3.0)
    steps = draw(st.lists(st.floats(0, (high - 2 * low) / max(count, 1)), min_size=count, max_size=count))
    base = draw(st.floats(low, low * 2))
    sensitivities = [round(base + sum(steps[:index + 1]), 6) for index in range(count)]  # non-decreasing
    limit = st.integers(1, 12) if tiny else st.integers(1_000, 60_000)
    section = FeederSection.model_validate({
        "transformer_import_limit_w": draw(limit),
        "transformer_export_limit_w": draw(limit),
        "nominal_voltage_v": 230,
        "voltage_band_pct": draw(st.sampled_from([0.5, 1, 2] if tiny else [3, 5, 10])),
        "homes": [{"id": f"f{index}", "position_m": position, "voltage_sensitivity_v_per_kw": sensitivity}
                  for index, (position, sensitivity) in enumerate(zip(positions, sensitivities))],
    })
    members = [f"f{index}" for index in range(count)] + [f"t{index}" for index in range(draw(st.integers(0, unplaced)))]
    return FeederModel.from_section(section, members)


@st.composite
def operator_limits(draw, tiny: bool = False) -> GridLimits | None:
    limit = st.none() | (st.integers(0, 12) if tiny else st.integers(0, 60_000))
    return draw(st.none() | st.builds(GridLimits, limit, limit, st.integers(0, 20_000)))


@st.composite
def positions(draw, feeder: FeederModel, max_wh: int = 5_000) -> dict[str, int]:
    """Cleared net imports (Wh) of every member, often zero, sometimes a non-member."""
    homes = list(feeder.homes) + list(feeder.unplaced_homes)
    magnitude = st.integers(-max_wh, max_wh) | st.just(0)
    result = {home: draw(magnitude) for home in homes}
    if draw(st.booleans()):
        result["outsider"] = draw(magnitude)
    return result
