"""The feeder the community hangs on: one radial low-voltage line below one transformer.

```toml
[grid]
transformer_import_limit_w = 250000      # what the transformer (or the connection) may carry
transformer_export_limit_w = 150000
nominal_voltage_v = 230
voltage_band_pct = 10                    # EN 50160: ±10 % of nominal

[[grid.homes]]
id = "home-01"
position_m = 120                         # along the line, from the transformer
voltage_sensitivity_v_per_kw = 0.35      # voltage rise here per kW injected here
```

The model is linear (docs/grid.md): with s_i the sensitivity of home i, a kW injected at home j
raises the voltage at home i by S_ij = min(s_i, s_j) volts, because on one radial line the two homes
share the path from the transformer to the nearer of them, and only the current through that shared
path moves the voltage at i. The voltage of home i is V_nom + Σ_j S_ij · P_inj_j (kW): the no-load
voltage is taken as nominal. This breaks down with reactive power (the sensitivities are for
active power at unity power factor), with unbalance between phases, with several branches (S_ij is
then the sensitivity of the common part of two branches, not min(s_i, s_j)), and when the
transformer's own tap or no-load voltage is not nominal (shift the band instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, field_validator

from hems.config.base import Section
from hems.config.errors import config_problem, invalid, out_of_range
from hems.protocol.topics import IDENTIFIER

#: 1 GW: far above any low-voltage transformer, low enough to catch a unit mistake (kW vs mW).
MAX_LIMIT_W = 1_000_000_000


class FeederHomeSection(Section):
    """``[[grid.homes]]``: where one home sits on the feeder."""

    id: str = Field(pattern=IDENTIFIER.pattern)
    #: Distance from the transformer along the line, metres.
    position_m: float = Field(ge=0, le=100_000)
    #: The voltage rise at this home per kW injected at this home (V/kW, unity power factor).
    voltage_sensitivity_v_per_kw: float = Field(gt=0, le=100)


class FeederSection(Section):
    """``[grid]``: the transformer's limits, the voltage band, and the homes' places on the line."""

    transformer_import_limit_w: int = Field(gt=0, le=MAX_LIMIT_W)
    transformer_export_limit_w: int = Field(gt=0, le=MAX_LIMIT_W)
    nominal_voltage_v: float = Field(default=230, gt=0, le=50_000)
    #: The allowed deviation from nominal, both ways, in per cent (EN 50160: 10).
    voltage_band_pct: float = Field(default=10, gt=0, le=20)
    homes: list[FeederHomeSection] = []

    @field_validator("homes")
    @classmethod
    def _one_radial_line(cls, homes: list[FeederHomeSection]) -> list[FeederHomeSection]:
        seen: set[str] = set()
        for index, home in enumerate(homes):
            if home.id in seen:
                raise config_problem((f"[{index}].id", invalid(home.id, "an id not used by another home")))
            seen.add(home.id)
        # On one radial line, the path to a farther home contains the path to a nearer one, so its
        # sensitivity cannot be smaller: a decrease means a wrong number or a second branch.
        # Homes at the same distance may differ (their own service cables); only a strictly nearer
        # home bounds a farther one.
        order = sorted(range(len(homes)), key=lambda index: (homes[index].position_m, homes[index].id))
        nearer: FeederHomeSection | None = None  # the most sensitive home strictly nearer than `group`
        group: list[FeederHomeSection] = []
        for index in order:
            home = homes[index]
            if group and home.position_m > group[0].position_m:
                nearer = max([*group, *([nearer] if nearer else [])], key=lambda h: h.voltage_sensitivity_v_per_kw)
                group = []
            group.append(home)
            if nearer is not None and home.voltage_sensitivity_v_per_kw < nearer.voltage_sensitivity_v_per_kw:
                allowed = (f">= {nearer.voltage_sensitivity_v_per_kw:g}, the sensitivity of {nearer.id!r} at "
                           f"{nearer.position_m:g} m (on one radial line a farther home is more sensitive)")
                raise config_problem((f"[{index}].voltage_sensitivity_v_per_kw",
                                      out_of_range(home.voltage_sensitivity_v_per_kw, allowed)))
        return homes


@dataclass(frozen=True)
class FeederModel:
    """The linear model of one radial line (see the module docstring).

    ``homes`` are sorted by sensitivity (nearest first); a home not listed sits at the transformer:
    sensitivity 0, it moves the transformer flow but no voltage. ``unplaced_homes`` are the community
    members without a place on the feeder, worth a warning: their injections are taken not to move
    any voltage, which is optimistic for a home that is in fact far out.
    """

    homes: tuple[str, ...]
    positions_m: tuple[float, ...]
    sensitivities_v_per_kw: tuple[float, ...]
    transformer_import_limit_w: float
    transformer_export_limit_w: float
    nominal_voltage_v: float = 230.0
    voltage_band_pct: float = 10.0
    unplaced_homes: tuple[str, ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _s: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not len(self.homes) == len(self.positions_m) == len(self.sensitivities_v_per_kw):
            raise ValueError("homes, positions_m and sensitivities_v_per_kw differ in length")
        if len(set(self.homes)) != len(self.homes):
            raise ValueError("a home is listed twice")
        s = np.asarray(self.sensitivities_v_per_kw, dtype=float)
        if np.any(s < 0) or np.any(np.diff(s) < 0):
            raise ValueError("sensitivities must be >= 0 and sorted ascending (nearest home first)")
        if self.transformer_import_limit_w < 0 or self.transformer_export_limit_w < 0:
            raise ValueError("transformer limits must be >= 0")
        if self.nominal_voltage_v <= 0 or self.voltage_band_pct <= 0:
            raise ValueError("nominal voltage and voltage band must be > 0")
        object.__setattr__(self, "_index", {home: index for index, home in enumerate(self.homes)})
        object.__setattr__(self, "_s", s)

    @classmethod
    def from_section(cls, section: FeederSection, members: Iterable[str] = ()) -> FeederModel:
        """The model of a validated ``[grid]`` section; ``members`` are the community's homes, to
        find those the section does not place."""
        placed = sorted(section.homes, key=lambda home: (home.voltage_sensitivity_v_per_kw, home.position_m, home.id))
        ids = {home.id for home in placed}
        return cls(
            homes=tuple(home.id for home in placed),
            positions_m=tuple(float(home.position_m) for home in placed),
            sensitivities_v_per_kw=tuple(float(home.voltage_sensitivity_v_per_kw) for home in placed),
            transformer_import_limit_w=float(section.transformer_import_limit_w),
            transformer_export_limit_w=float(section.transformer_export_limit_w),
            nominal_voltage_v=float(section.nominal_voltage_v),
            voltage_band_pct=float(section.voltage_band_pct),
            unplaced_homes=tuple(sorted({member for member in members if member not in ids})),
        )

    @property
    def max_voltage_v(self) -> float:
        return self.nominal_voltage_v * (1 + self.voltage_band_pct / 100)

    @property
    def min_voltage_v(self) -> float:
        return self.nominal_voltage_v * (1 - self.voltage_band_pct / 100)

    @property
    def sensitivities(self) -> np.ndarray:
        """s_i of the feeder homes, in the order of ``homes`` (a read-only view)."""
        view = self._s.view()
        view.flags.writeable = False
        return view

    def index(self, home: str) -> int | None:
        """The position of ``home`` in ``homes``, None if it sits at the transformer."""
        return self._index.get(home)

    def sensitivity(self, home: str) -> float:
        """s of ``home`` in V/kW; 0 for a home not on the feeder."""
        index = self._index.get(home)
        return 0.0 if index is None else float(self._s[index])

    def sensitivity_matrix(self) -> np.ndarray:
        """S (V/kW), S_ij = min(s_i, s_j): the voltage rise at home i per kW injected at home j."""
        return np.minimum.outer(self._s, self._s)

    def voltage_rise_v(self, injection_kw: np.ndarray) -> np.ndarray:
        """S · P_inj for injections (kW) of the feeder homes, in the order of ``homes``, in O(n).

        With s sorted ascending, Σ_j min(s_i, s_j) p_j = Σ_{j ≤ i} s_j p_j + s_i Σ_{j > i} p_j (homes
        with equal s give the same term either way), so no n × n matrix is built.
        """
        p = np.asarray(injection_kw, dtype=float)
        nearer = np.cumsum(self._s * p)
        farther = np.concatenate((np.cumsum(p[::-1])[::-1][1:], [0.0]))
        return nearer + self._s * farther

    def voltages_v(self, injection_kw: Mapping[str, float]) -> dict[str, float]:
        """The voltage of every feeder home for injections by home (kW, + into the grid); homes at
        the transformer move no voltage."""
        p = np.zeros(len(self.homes))
        for home, value in injection_kw.items():
            index = self._index.get(home)
            if index is not None:
                p[index] = value
        rise = self.voltage_rise_v(p)
        return {home: self.nominal_voltage_v + float(rise[index]) for index, home in enumerate(self.homes)}
