"""SunSpec discovery over the daemon's async Modbus connection.

Look for the ``SunS`` marker at each base address, walk the model chain
(``ID``, ``L``) until the end model 0xFFFF, and build a RegisterMap of the
supported models found. pysunspec2's own client is blocking, so only its model
definitions are used here; every read goes through :class:`ModbusConnection`.

Robustness: a base that times out or answers with an exception counts as
"absent" (aborting a scan on the first timeout is a known upstream bug class);
the chain walk is bounded in models and addresses, and a chain that breaks
(no end marker, ``L`` running past the device's registers) ends cleanly with
the models that were complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.maps import RegisterMap, Table
from drivers.registers import RegisterType, decode_raw
from drivers.sunspec.builder import (
    END_MODEL_ID,
    SUNS_MARKER,
    SUPPORTED_MODELS,
    ModelPlacement,
    build_map,
    model_label,
    slug,
)
from drivers.sunspec.models import model_definition
from drivers.transport import DeviceError, ModbusConnection, ModbusExceptionResponse

#: Base addresses in pysunspec2's order: 40000 is by far the most common.
DEFAULT_BASES = (40000, 0, 50000)
#: Upper bound on models in one chain; real devices have fewer than 20.
MAX_MODELS = 64
_LAST_ADDRESS = 65535


@dataclass(frozen=True)
class DiscoveredModel:
    """A model found in the chain: its ``ID`` register is at ``address``."""

    model_id: int
    address: int
    length: int
    label: str
    supported: bool

    @property
    def end_address(self) -> int:
        """The first address after the model."""
        return self.address + 2 + self.length


@dataclass(frozen=True)
class ModelChain:
    """The models behind a base address."""

    base_address: int
    models: tuple[DiscoveredModel, ...]
    #: True when the chain ended with the end model (0xFFFF).
    complete: bool
    #: Why the walk stopped early ("" when complete).
    problem: str = ""


@dataclass(frozen=True)
class BaseSearch:
    """Where the ``SunS`` marker is, and whether the unit answered at all."""

    base_address: int | None
    #: False when no base got any answer (timeouts, no connection): a silent unit.
    answered: bool
    errors: dict[int, str] = field(default_factory=dict)


@dataclass
class SunSpecDevice:
    """A discovered SunSpec device at a unit id."""

    unit_id: int
    chain: ModelChain
    register_map: RegisterMap
    #: Common-model strings: Mn, Md, Opt, Vr, SN (those the device fills).
    common: dict[str, str]

    @property
    def base_address(self) -> int:
        """The address of the ``SunS`` marker."""
        return self.chain.base_address

    @property
    def model_ids(self) -> list[int]:
        """Every model id in chain order, supported or not."""
        return [model.model_id for model in self.chain.models]

    @property
    def unknown_models(self) -> list[int]:
        """Model ids found but not decoded."""
        return [model.model_id for model in self.chain.models if not model.supported]


async def find_sunspec_base(connection: ModbusConnection, unit_id: int,
                            bases: tuple[int, ...] = DEFAULT_BASES) -> BaseSearch:
    """Read the marker at each base; the first base holding ``SunS`` wins."""
    answered = False
    errors: dict[int, str] = {}
    for base in bases:
        try:
            registers = await connection.read(Table.HOLDING, base, 2, unit_id)
        except ModbusExceptionResponse as error:
            answered = True
            errors[base] = str(error)
            continue
        except DeviceError as error:  # timeout, no connection: absent here, try the next base
            errors[base] = str(error)
            continue
        answered = True
        if tuple(registers) == SUNS_MARKER:
            return BaseSearch(base, True, errors)
        errors[base] = "answered, but no SunS marker"
    return BaseSearch(None, answered, errors)


async def read_model_chain(connection: ModbusConnection, unit_id: int, base_address: int,
                           max_models: int = MAX_MODELS) -> ModelChain:
    """Walk the (ID, L) chain from ``base_address + 2``; never loops, never raises DeviceError."""
    models: list[DiscoveredModel] = []
    address = base_address + 2
    problem = ""
    while True:
        if len(models) >= max_models:
            problem = f"more than {max_models} models; chain not followed further"
            break
        if address + 1 > _LAST_ADDRESS:
            problem = f"chain runs past address {_LAST_ADDRESS}"
            break
        header = await _read_header(connection, unit_id, address)
        if isinstance(header, str):
            problem = header
            break
        model_id, length = header
        if model_id == END_MODEL_ID:
            return ModelChain(base_address, tuple(models), complete=True)
        if model_id == 0:
            problem = f"model id 0 at {address}: not a model header"
            break
        supported = model_id in SUPPORTED_MODELS
        models.append(DiscoveredModel(model_id, address, length, model_label(model_id), supported))
        address += 2 + length
    if models and models[-1].length and not await _readable(connection, unit_id, models[-1].end_address - 1):
        # L claims registers the device does not serve: the last model is not usable.
        dropped = models.pop()
        problem += (f"; model {dropped.model_id} at {dropped.address} runs past the device's registers "
                    f"(L={dropped.length})")
    return ModelChain(base_address, tuple(models), complete=False, problem=problem)


async def _read_header(connection: ModbusConnection, unit_id: int, address: int) -> tuple[int, int | None] | str:
    try:
        model_id, length = await connection.read(Table.HOLDING, address, 2, unit_id)
        return model_id, length
    except ModbusExceptionResponse:
        pass  # some devices serve the end model's ID without an L: read it alone
    except DeviceError as error:
        return f"no model header at {address}: {error}"
    try:
        (model_id,) = await connection.read(Table.HOLDING, address, 1, unit_id)
    except DeviceError as error:
        return f"no model header at {address}: {error}"
    if model_id == END_MODEL_ID:
        return model_id, None
    return f"model {model_id} at {address} has no readable length"


async def _readable(connection: ModbusConnection, unit_id: int, address: int) -> bool:
    if address > _LAST_ADDRESS:
        return False
    try:
        await connection.read(Table.HOLDING, address, 1, unit_id)
    except DeviceError:
        return False
    return True


async def read_common(connection: ModbusConnection, unit_id: int, model: DiscoveredModel) -> dict[str, str]:
    """The common model's strings (Mn, Md, Opt, Vr, SN); empty when unreadable."""
    count = min(2 + model.length, 125)
    try:
        registers = await connection.read(Table.HOLDING, model.address, count, unit_id)
    except DeviceError:
        return {}
    common = {}
    for template in model_definition(1).fixed:
        if template.type is RegisterType.STRING and template.offset + template.size <= count:
            text = decode_raw(registers[template.offset:template.offset + template.size], RegisterType.STRING)
            if text:
                common[template.name] = str(text)
    return common


async def discover(connection: ModbusConnection, unit_id: int,
                   bases: tuple[int, ...] = DEFAULT_BASES) -> SunSpecDevice | None:
    """Find a SunSpec device at ``unit_id`` and build its map; None if no base holds ``SunS``.

    Timeouts and exceptions at a base count as "absent". A DeviceError while
    walking the chain ends the walk (the chain is marked incomplete); the models
    read so far are kept.
    """
    search = await find_sunspec_base(connection, unit_id, bases)
    if search.base_address is None:
        return None
    chain = await read_model_chain(connection, unit_id, search.base_address)
    common: dict[str, str] = {}
    if chain.models and chain.models[0].model_id == 1:
        common = await read_common(connection, unit_id, chain.models[0])
    return SunSpecDevice(unit_id, chain, map_for_chain(chain, common, unit_id), common)


def map_for_chain(chain: ModelChain, common: dict[str, str] | None = None, unit_id: int = 1) -> RegisterMap:
    """The RegisterMap of a discovered chain (id ``sunspec_<manufacturer>_<model>``)."""
    common = common or {}
    name = "_".join(part for part in (slug(common.get("Mn", "")), slug(common.get("Md", ""))) if part)[:48]
    placements = [ModelPlacement(model.model_id, model.address, model.length) for model in chain.models]
    return build_map(
        placements, chain.base_address, device_id=f"sunspec_{name or 'device'}",
        manufacturer=common.get("Mn", "") or "SunSpec", model_names=[common["Md"]] if common.get("Md") else (),
        end_marker=chain.complete, default_unit_id=unit_id,
        source="SunSpec discovery; definitions from pysunspec2 1.3.7",
    )


__all__ = [
    "DEFAULT_BASES", "MAX_MODELS", "BaseSearch", "DiscoveredModel", "ModelChain", "SunSpecDevice",
    "discover", "find_sunspec_base", "map_for_chain", "read_common", "read_model_chain",
]
