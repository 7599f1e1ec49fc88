"""The supported-devices table, rendered from the bundled register maps.

``python -m drivers.maps.catalog`` prints it as Markdown; README.md carries the
same table between ``<!-- devices:start -->`` and ``<!-- devices:end -->`` and a
test keeps the two equal, so adding a map file updates the documentation.
"""

from __future__ import annotations

from drivers.maps import available_maps, load_map

#: Markers around the generated table in README.md.
START_MARKER = "<!-- devices:start -->"
END_MARKER = "<!-- devices:end -->"

_KIND_LABELS = {
    "grid_meter": "grid meter",
    "pv_inverter": "PV inverter",
    "battery": "battery",
    "ev_charger": "EV charger",
    "heat_pump": "heat pump",
}
_TRANSPORT_LABELS = {"tcp": "Modbus TCP", "rtu": "Modbus RTU"}


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def device_rows() -> list[tuple[str, str, str, str, str, str]]:
    """One row per bundled map: manufacturer, models, kinds, transports, source, map id."""
    rows = []
    for name in available_maps():
        device = load_map(name).spec.device
        rows.append((
            device.manufacturer,
            ", ".join(device.models),
            ", ".join(_KIND_LABELS[kind] for kind in device.kinds),
            ", ".join(_TRANSPORT_LABELS[transport] for transport in device.transports),
            device.source,
            device.id,
        ))
    return sorted(rows, key=lambda row: (row[0].lower(), row[5]))


def render_markdown() -> str:
    """The supported-devices table as Markdown (no trailing newline)."""
    lines = [
        "| Manufacturer | Models | Kinds | Transports | Source document | Map |",
        "|---|---|---|---|---|---|",
    ]
    for manufacturer, models, kinds, transports, source, map_id in device_rows():
        lines.append(f"| {_cell(manufacturer)} | {_cell(models)} | {kinds} | {transports} | {_cell(source)} "
                     f"| `{map_id}` |")
    return "\n".join(lines)


def readme_section(readme_text: str) -> str | None:
    """The text between the device-table markers of ``readme_text``, stripped; None without markers."""
    start = readme_text.find(START_MARKER)
    end = readme_text.find(END_MARKER)
    if start < 0 or end < start:
        return None
    return readme_text[start + len(START_MARKER):end].strip()


def main() -> None:
    """Print the table."""
    print(render_markdown())


if __name__ == "__main__":
    main()
