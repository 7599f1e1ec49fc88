"""Turn validation errors into messages an installer can act on.

Every problem becomes one line that starts with the dotted key (``loops.control_period_s``,
``device[1].rtu.baudrate``) and, where a value was given, shows it and what is allowed::

    battery.soc_min = 1.4 is out of range: allowed a fraction in [0, 1]
    home.colour: unknown key
    grid: required key is missing

Checks that pydantic cannot express as a field constraint (cross-field rules, the MPC's own
dataclasses) raise :func:`config_problem`, which carries finished lines keyed relative to the
place where pydantic reports them.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

ModelT = TypeVar("ModelT", bound=BaseModel)

#: The pydantic error type of :func:`config_problem`.
PROBLEM_TYPE = "config_problem"
UNKNOWN_KEY = ": unknown key"
MISSING_KEY = ": required key is missing"


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` lists one line per bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def show(value: Any) -> str:
    """A value as it would be written in TOML (strings in double quotes, true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, Decimal):  # TOML read with parse_float=Decimal: show it as written
        return str(value)
    return _number(value) if isinstance(value, float) else repr(value)


def out_of_range(value: Any, allowed: str) -> str:
    """The tail of an out-of-range line: `` = 1.4 is out of range: allowed [0, 1]``."""
    return f" = {show(value)} is out of range: allowed {allowed}"


def invalid(value: Any, allowed: str) -> str:
    """The tail of a line for a value of the wrong kind or format."""
    return f" = {show(value)} is invalid: allowed {allowed}"


def config_problem(*problems: tuple[str, str]) -> PydanticCustomError:
    """An error for pydantic that carries finished lines.

    Each problem is ``(key, tail)``: ``key`` is relative to where pydantic reports the error
    (a field or a model; "" means that place itself), ``tail`` starts with `` = value ...`` or
    ``: ...`` (see :func:`out_of_range`, :data:`UNKNOWN_KEY`).
    """
    summary = "; ".join(f"{key}{tail}" for key, tail in problems)
    return PydanticCustomError(PROBLEM_TYPE, "{summary}", {"summary": summary, "problems": list(problems)})


def describe_validation_error(error: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem: the dotted key, the value given, and what is allowed.

    With ``model`` (the validated class), a range names both of a field's bounds, not only
    the one that was crossed.
    """
    lines = []
    for problem in error.errors():
        key = _dotted(problem["loc"])
        kind = problem["type"]
        given = problem.get("input")
        context = problem.get("ctx") or {}
        if kind == PROBLEM_TYPE:
            lines += [f"{_join(key, relative)}{tail}" for relative, tail in context["problems"]]
        elif kind == "extra_forbidden":
            lines.append(f"{key}{UNKNOWN_KEY}")
        elif kind == "missing":
            lines.append(f"{key}{MISSING_KEY}")
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            bounds = _field_bounds(model, problem["loc"]) if model is not None else {}
            if not bounds:
                bounds = {_BOUND_NAMES[kind]: context.get(_BOUND_NAMES[kind])}
            lines.append(f"{key}{out_of_range(given, range_text(**bounds))}")
        elif kind == "literal_error":
            expected = str(context.get("expected", "")).replace("'", '"')  # TOML quotes strings with "
            lines.append(f"{key}{invalid(given, expected)}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            shown = given is not None and not isinstance(given, dict)
            lines.append(f"{key} = {show(given)}: {message}" if shown else f"{key}: {message}")
    return lines


def range_text(ge: Any = None, gt: Any = None, le: Any = None, lt: Any = None) -> str:
    """``[0.5, 300]``, ``(0, 100000]``, ``>= 100``: interval notation, brackets inclusive."""
    low = f"[{_number(ge)}" if ge is not None else f"({_number(gt)}" if gt is not None else None
    high = f"{_number(le)}]" if le is not None else f"{_number(lt)})" if lt is not None else None
    if low and high:
        return f"{low}, {high}"
    if low:
        return f">= {_number(ge)}" if ge is not None else f"> {_number(gt)}"
    return f"<= {_number(le)}" if le is not None else f"< {_number(lt)}"


_BOUND_NAMES = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _dotted(location: tuple) -> str:
    parts: list[str] = []
    for part in location:
        if part == "[key]":  # pydantic's marker for a bad dictionary key
            parts[-1] = f"{parts[-1]} (key)"
        elif isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts) or "(top level)"


def _join(key: str, relative: str) -> str:
    if not relative:
        return key
    if key == "(top level)":
        return relative
    return f"{key}{relative}" if relative.startswith("[") else f"{key}.{relative}"


def _field_bounds(model: type[BaseModel], location: tuple) -> dict[str, Any]:
    """The ge/gt/le/lt constraints of the field at ``location`` (empty if not found)."""
    candidates: list[type[BaseModel]] = [model]
    field = None
    for position, part in enumerate(location):
        if isinstance(part, int):
            continue
        found = next((m.model_fields[part] for m in candidates if part in m.model_fields), None)
        if found is None:
            if field is not None and typing.get_origin(field.annotation) is dict:
                # A dictionary entry such as unit_id_overrides.227: the key's or the value's type.
                key_type, value_type = typing.get_args(field.annotation)
                is_key = location[position + 1:position + 2] == ("[key]",)
                return _bounds_of(_annotated_metadata(key_type if is_key else value_type))
            return {}
        field = found
        candidates = _models_in(field.annotation)
    return {} if field is None else _bounds_of(field.metadata)


def _annotated_metadata(annotation: Any) -> list[Any]:
    metadata: list[Any] = []
    for item in getattr(annotation, "__metadata__", ()):
        metadata += getattr(item, "metadata", [item])  # a FieldInfo carries its constraints in .metadata
    return metadata


def _bounds_of(metadata: list[Any]) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for constraint in metadata:
        for name, kind in (("ge", annotated_types.Ge), ("gt", annotated_types.Gt),
                           ("le", annotated_types.Le), ("lt", annotated_types.Lt)):
            if isinstance(constraint, kind):
                bounds[name] = getattr(constraint, name)
    return bounds


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation such as ``list[DeviceConfig] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, (types.UnionType, types.GenericAlias)) or typing.get_origin(annotation):
        return [model for argument in typing.get_args(annotation) for model in _models_in(argument)]
    return []


def read_config_file(path: str | Path) -> str:
    """The text of a configuration file; :class:`ConfigError` naming the file when it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise ConfigError(str(path), ["file not found"]) from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), [f"cannot read the file: {error}"]) from error


def validate_toml(text: str, source: str, model: type[ModelT], *, decimals: bool = False) -> ModelT:
    """Parse TOML text and validate it as ``model``; :class:`ConfigError` naming ``source`` and every
    bad key. With ``decimals``, TOML floats are read as exact Decimals (prices that become integers)."""
    try:
        document = tomllib.loads(text, parse_float=Decimal if decimals else float)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, [f"not valid TOML: {error}"]) from error
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ConfigError(source, describe_validation_error(error, model)) from error
