"""The MPC's site sections: ``[battery]``, ``[grid]``, ``[pv]`` (``[[pv.arrays]]``), ``[ev]``,
``[heat_pump]`` and ``[mpc]``.

They are validated by the MPC's own dataclasses in :mod:`hems.mpc.site`, so every range is
written once; this module only turns their first-error-wins :class:`SiteConfigError` into the
configuration's lines, with the value given and the values a relative limit refers to
(``battery.soc_max = 0.5 is out of range: allowed > soc_min (0.6)``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from hems.config.errors import MISSING_KEY, UNKNOWN_KEY, config_problem, invalid, out_of_range, show
from hems.mpc.site import (
    BatteryConfig,
    EvConfig,
    GridConfig,
    HeatPumpConfig,
    MpcSettings,
    PvArrayConfig,
    PvConfig,
    SiteConfigError,
)

#: TOML table name -> the MPC dataclass that validates it.
SITE_SECTIONS: dict[str, type] = {
    "battery": BatteryConfig, "grid": GridConfig, "pv": PvConfig, "ev": EvConfig,
    "heat_pump": HeatPumpConfig, "mpc": MpcSettings,
}
_ABSENT = object()
_INDEXED = re.compile(r"^(?P<name>[^\[]*)\[(?P<index>\d+)\]$")


def build_site_section(name: str, value: Any) -> Any:
    """The validated dataclass for the TOML table ``[name]``.

    ``value`` is the parsed table (a dict) or an already built dataclass (configurations made
    in Python), which is validated again. Raises :func:`config_problem` with every unknown and
    missing key at once, else with the dataclass's first range problem.
    """
    cls = SITE_SECTIONS[name]
    if value is None and name in ("ev", "heat_pump"):
        return None
    if isinstance(value, cls):
        _validate(value, name, {})
        return value
    if not isinstance(value, dict):
        raise config_problem(("", invalid(value, f"a [{name}] table")))
    problems = _key_problems(cls, value, "")
    arrays = value.get("arrays", [])
    if name == "pv":
        if not isinstance(arrays, list):
            problems.append(("arrays", invalid(arrays, "a list of [[pv.arrays]] tables")))
        else:
            for index, item in enumerate(arrays):
                if isinstance(item, dict):
                    problems += _key_problems(PvArrayConfig, item, f"arrays[{index}]")
                else:
                    problems.append((f"arrays[{index}]", invalid(item, "a [[pv.arrays]] table")))
    if problems:
        raise config_problem(*problems)
    if name == "pv":
        instance = PvConfig(**{**value, "arrays": tuple(PvArrayConfig(**item) for item in arrays)})
    else:
        instance = cls(**value)
    _validate(instance, name, value)
    return instance


def _key_problems(cls: type, data: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    """Unknown keys and missing required keys of one table, all at once."""
    fields = dataclasses.fields(cls)
    names = {field.name for field in fields}
    problems = [(_child(prefix, key), UNKNOWN_KEY) for key in data if key not in names]
    problems += [(_child(prefix, field.name), MISSING_KEY) for field in fields
                 if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
                 and field.name not in data]
    return problems


def _validate(instance: Any, name: str, given: dict[str, Any]) -> None:
    try:
        instance.validate(name)
    except SiteConfigError as error:
        raise config_problem(translate_site_error(str(error), name, given, dataclasses.asdict(instance))) from None
    except (TypeError, ValueError) as error:  # a value of a type the dataclass cannot compare
        raise config_problem(("", f": {error}")) from None


def translate_site_error(message: str, name: str, given: dict[str, Any],
                         effective: dict[str, Any]) -> tuple[str, str]:
    """``"battery.soc_min: must be a fraction in [0, 1]"`` -> ``("soc_min", " = 1.4 is out of range: ...")``.

    ``given`` is the table as written (to tell a default from a written value), ``effective``
    the dataclass as a dict (the value actually used, and the values a limit refers to).
    """
    key, _, reason = message.partition(": ")
    relative = "" if key == name else key.removeprefix(f"{name}.")
    if reason == "unknown key":
        return relative, UNKNOWN_KEY
    value = lookup(effective, relative)
    if value is _ABSENT:
        return relative, f": {reason}"
    parent_path, _, field = relative.rpartition(".")
    parent = lookup(effective, parent_path)
    allowed = _allowed(reason, parent if isinstance(parent, dict) else {}, field)
    tail = out_of_range(value, allowed) if _is_number(value) else invalid(value, allowed)
    if lookup(given, relative) is _ABSENT and given:
        tail = tail.replace(f" = {show(value)} ", f" = {show(value)} (the default) ", 1)
    return relative, tail


def lookup(document: Any, dotted: str) -> Any:
    """The value at a dotted key such as ``arrays[0].tilt_deg``; a private marker if absent."""
    current = document
    for part in filter(None, dotted.split(".")):
        match = _INDEXED.match(part)
        name, index = (match["name"], int(match["index"])) if match else (part, None)
        if not isinstance(current, dict) or name not in current:
            return _ABSENT
        current = current[name]
        if index is not None:
            if not isinstance(current, (list, tuple)) or index >= len(current):
                return _ABSENT
            current = current[index]
    return current


def _allowed(reason: str, siblings: dict[str, Any], field: str) -> str:
    """The dataclass's "must be ..." as "allowed ...", with the values of keys it refers to."""
    text = reason.removeprefix("must be ").removeprefix("in ").replace("greater than ", "> ").replace("'", '"')
    if text == "finite":
        return "a finite number"
    for other, other_value in siblings.items():
        if other != field and not isinstance(other_value, (dict, list, tuple)):
            text = re.sub(rf"\b{re.escape(other)}\b", f"{other} ({show(other_value)})", text)
    return text


def _child(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
