"""Group points into as few read requests as the device allows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.maps.schema import PointSpec, Table


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers from ``address`` in one table of one unit id."""

    device_id: int | None
    table: Table
    address: int
    count: int


def plan_blocks(points: Iterable[PointSpec], max_block_registers: int, max_gap_registers: int = 0) -> list[ReadBlock]:
    """Cover every point with the fewest requests.

    Points are merged while the block stays within ``max_block_registers`` and the
    unused registers between two neighbours do not exceed ``max_gap_registers``; a
    point is never split across requests (a value read in two halves could tear).
    """
    by_space: dict[tuple[int | None, Table], list[PointSpec]] = {}
    for point in points:
        by_space.setdefault((point.device_id, point.table), []).append(point)
    blocks: list[ReadBlock] = []
    for (device_id, table), space_points in by_space.items():
        space_points.sort(key=lambda point: point.address)
        start = end = None
        for point in space_points:
            if start is not None and (
                point.address - end > max_gap_registers or max(end, point.end_address) - start > max_block_registers
            ):
                blocks.append(ReadBlock(device_id, table, start, end - start))
                start = None
            if start is None:
                start, end = point.address, point.end_address
            else:
                end = max(end, point.end_address)
        if start is not None:
            blocks.append(ReadBlock(device_id, table, start, end - start))
    return blocks
