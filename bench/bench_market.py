"""Market clearing benchmark (issue 5): clearing time per slot of every mechanism, a day of 96 slots
for 1,000 homes against the 1 s target, and the protocol's messages and bytes per home per slot.

Run: .venv/bin/python bench/bench_market.py [--homes 10,100,1000,10000] [--repeats 20] [--day-homes 1000]
     [--slots 96] [--mechanisms uniform_auction,pay_as_bid,...] [--collective-limit-s 60] [--devices 1]
(the defaults take about 2 minutes on the 2-core machine; ``--devices 2`` gives every home two
flexible devices, about 8 orders per home instead of 4)
Prints Markdown tables; bench/RESULTS.md records the figures with machine and date.

Every mechanism of ``hems.community.mechanisms.registry`` is created through ``create_mechanism``;
one whose module does not import yet is skipped with a note. Each home of a slot gets a realistic
random 11-point net-import curve on the grid λ⁻ = 0.08 … λ⁺ = 0.30 per kWh (Wh per 15 min): load
minus PV at that time of day (PV only by day, about a third of the homes without PV), and for about
70 % of the homes a battery/EV flexibility that buys up to 1.25 kWh more at low prices and sells up
to 1.25 kWh at high prices in 3-9 price steps; homes without flexibility are price-inelastic. Each
mechanism gets what its ``input_kind`` needs: ORDERS -> ``orders_from_curve`` (order ids are UUIDs,
as on the wire), CURVES -> the curve, POSITIONS -> the metered import/export the curve gives at the
middle price. Only ``clear()`` is timed (``time.perf_counter``, garbage collector on); inputs are
built before, and the mechanisms take turns slot by slot so that a background load hits all alike.
Per size, ``--repeats`` different slots (a quarter of them for more than 1,000 homes), each cleared
after a ``gc.collect()`` (the community manager idles between gate closures), median and max. The
day: 96 consecutive slots (time of day advancing), clear times summed, twice: with the collector as
it comes (each book built just before its clear, so the clear pays for collecting it) and with a
collection before each clear. The energy collective at 10,000 homes is skipped when its 1,000-home
slot, scaled linearly, would exceed ``--collective-limit-s``; a mechanism whose day passes
``--day-budget-s`` stops early and is extrapolated. Each result's books must balance to the n¤.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hems.community.mechanisms.base import (ClearingInput, Curve, InputKind, MarketParameters, Order,  # noqa: E402
                                            Position, orders_from_curve)
from hems.community.mechanisms.registry import create_mechanism, mechanism_names  # noqa: E402

RETAIL_MICRO, FEED_IN_MICRO = 300_000, 80_000
GRID_MICRO = tuple(int(price) for price in np.linspace(FEED_IN_MICRO, RETAIL_MICRO, 11))
DAY_START = datetime(2026, 6, 21, tzinfo=timezone.utc)
SLOT_S = 900
TARGET_DAY_S = 1.0


def home_curve(home: str, slot: int, rng: np.random.Generator, devices: int = 1) -> Curve:
    """One home's net-import curve (Wh per 15 min) for slot ``slot`` of the day, with up to
    ``devices`` flexible devices (each present with probability 0.7)."""
    hour = (slot % 96) / 4 + 0.125
    daylight = max(0.0, math.sin(math.pi * (hour - 6) / 12))
    pv_wh = rng.uniform(0, 6.0) * 250 * daylight * rng.uniform(0.5, 1.0) if rng.random() < 0.65 else 0.0
    load_wh = rng.uniform(0.15, 1.2) * 250
    net_wh = load_wh - pv_wh
    net_import = np.full(len(GRID_MICRO), net_wh)
    for _ in range(devices):
        if rng.random() < 0.7:
            flexibility_wh = rng.uniform(0.1, 1.0) * 1250
            steps = int(rng.integers(3, 10))
            shift = np.zeros(len(GRID_MICRO))
            for threshold, weight in zip(np.sort(rng.integers(1, len(GRID_MICRO), steps)),
                                         rng.dirichlet(np.ones(steps))):
                shift[threshold:] += weight
            # Charging at low prices (+), discharging at high prices (−): non-increasing in price.
            net_import += flexibility_wh * (1 - 2 * np.minimum(shift, 1.0))
    net_import = np.round(net_import).astype(int)
    return Curve(home, GRID_MICRO, tuple(net_import.tolist()))


def slot_curves(homes: int, slot: int, seed: int, devices: int = 1) -> list[Curve]:
    """Every home's curve for one slot (the same for every mechanism)."""
    rng = np.random.default_rng([seed, homes, slot])
    return [home_curve(f"home{index:05d}", slot, rng, devices) for index in range(homes)]


def slot_input(kind: InputKind, homes: int, slot: int, seed: int, devices: int = 1) -> tuple[ClearingInput, int]:
    """One slot's book for a mechanism of ``kind`` and the number of orders / curves / positions."""
    ids = random.Random(seed * 1_000_003 + slot)
    curves = slot_curves(homes, slot, seed, devices)
    parameters = MarketParameters(RETAIL_MICRO, FEED_IN_MICRO, k=Fraction(1, 2), seed=seed + slot,
                                  price_grid_micro=GRID_MICRO)
    start = DAY_START + timedelta(seconds=SLOT_S * slot)
    if kind in (InputKind.ORDERS, InputKind.CLASSED_ORDERS):  # a plain book: every sell local
        orders = tuple(Order(str(uuid.UUID(int=ids.getrandbits(128), version=4)), order.home, order.side,
                                   order.energy_wh, order.limit_price_micro)
                       for curve in curves for order in orders_from_curve(curve))
        return ClearingInput(parameters, orders=orders, slot_start=start, duration_s=SLOT_S), len(orders)
    if kind is InputKind.CURVES:
        return ClearingInput(parameters, curves=tuple(curves), slot_start=start, duration_s=SLOT_S), homes
    middle = len(GRID_MICRO) // 2
    positions = tuple(Position(curve.home, max(curve.net_import_wh[middle], 0), max(-curve.net_import_wh[middle], 0))
                      for curve in curves)
    return ClearingInput(parameters, positions=positions, slot_start=start, duration_s=SLOT_S), homes


def time_clear(mechanism, market: ClearingInput) -> float:
    """Seconds of one ``clear()``, checking that the books balance."""
    started = time.perf_counter()
    result = mechanism.clear(market)
    elapsed = time.perf_counter() - started
    assert result.balance_error_nano() == 0, (mechanism.name, result.balance_error_nano())
    return elapsed


def load_mechanisms(names: list[str]) -> tuple[dict[str, object], dict[str, str]]:
    """Every mechanism that imports, and why the others were skipped."""
    ready, skipped = {}, {}
    for name in names:
        try:
            ready[name] = create_mechanism(name)
        except ImportError as error:  # another engineer's module not written yet
            skipped[name] = f"not importable yet ({error})"
    return ready, skipped


def sample_counts(mechanisms: dict[str, object], homes: int, repeats: int, first_ms: dict[str, float],
                  limit_s: float, notes: list[str]) -> dict[str, int]:
    """How many slots each mechanism clears at this size (0: skipped, with a note)."""
    counts = {}
    for name in mechanisms:
        count = repeats if homes <= 1000 else max(3, repeats // 4)
        if name == "energy_collective":
            count = min(count, 5)
            if homes > 1000 and name in first_ms:
                projected_s = first_ms[name] / 1000 * homes / 1000
                count = 1
                if projected_s > limit_s:
                    count = 0
                    notes.append(f"`{name}` at {homes:,} homes skipped: the 1,000-home slot took "
                                 f"{first_ms[name]:.0f} ms, scaled linearly ≈{projected_s:.0f} s > {limit_s:.0f} s.")
        counts[name] = count
    return counts


def per_slot(mechanisms: dict[str, object], sizes: list[int], repeats: int, limit_s: float,
             seed: int, devices: int) -> tuple[list[list[str]], list[str]]:
    """Median and max ``clear()`` time per slot, per mechanism and number of homes. The mechanisms
    take turns slot by slot, so a background load hits them alike; each clear starts after a
    collection (the community manager is idle between gate closures)."""
    notes: list[str] = []
    cells: dict[str, list[str]] = {name: [] for name in mechanisms}
    inputs_per_home: dict[str, list[float]] = {name: [] for name in mechanisms}
    thousand_ms: dict[str, float] = {}
    for name, mechanism in mechanisms.items():  # warm-up: first-call imports and caches
        mechanism.clear(slot_input(mechanism.input_kind, sizes[0], 999, seed, devices)[0])
    for homes in sizes:
        counts = sample_counts(mechanisms, homes, repeats, thousand_ms, limit_s, notes)
        samples: dict[str, list[float]] = {name: [] for name in mechanisms}
        for repeat in range(max(counts.values(), default=0)):
            built: dict[InputKind, tuple[ClearingInput, int]] = {}
            for name, mechanism in mechanisms.items():
                if repeat >= counts[name]:
                    continue
                kind = mechanism.input_kind
                if kind not in built:
                    built[kind] = slot_input(kind, homes, repeat, seed, devices)
                market, items = built[kind]
                inputs_per_home[name].append(items / homes)
                gc.collect()
                samples[name].append(time_clear(mechanism, market))
        for name in mechanisms:
            if not samples[name]:
                cells[name].append("skipped")
                continue
            median_ms = statistics.median(samples[name]) * 1000
            if homes == 1000:
                thousand_ms[name] = median_ms
            cells[name].append(f"{median_ms:.2f} ms (max {max(samples[name]) * 1000:.2f}, n={len(samples[name])})")
    rows = []
    for name, mechanism in mechanisms.items():
        kind = mechanism.input_kind
        size = (f"{statistics.mean(inputs_per_home[name]):.1f} orders"
                if kind in (InputKind.ORDERS, InputKind.CLASSED_ORDERS)
                else f"1 {kind.value[:-1]}")
        rows.append([f"`{name}`", kind.value, size] + cells[name])
    return rows, notes


def day(mechanisms: dict[str, object], homes: int, slots: int, seed: int, budget_s: float,
        devices: int) -> list[list[str]]:
    """``slots`` consecutive slots of ``homes`` homes: total clear() time against the target, once
    with the collector as it comes (the book built just before) and once collected before each
    slot. The mechanisms take turns slot by slot; one past ``budget_s`` stops and is extrapolated."""
    totals = {name: [0.0, 0.0] for name in mechanisms}
    done = {name: 0 for name in mechanisms}
    for slot in range(slots):
        built: dict[InputKind, ClearingInput] = {}
        for name, mechanism in mechanisms.items():
            if sum(totals[name]) > 2 * budget_s:
                continue
            for collect in (False, True):
                kind = mechanism.input_kind
                if kind not in built or not collect:
                    built[kind] = slot_input(kind, homes, 1000 + slot, seed, devices)[0]
                if collect:
                    gc.collect()
                totals[name][collect] += time_clear(mechanism, built[kind])
            done[name] += 1
    rows = []
    for name in mechanisms:
        projected = [total * slots / done[name] for total in totals[name]]
        verdict = "met" if max(projected) < TARGET_DAY_S else (
            "**not met**" if min(projected) >= TARGET_DAY_S else "met only after a collection")
        if done[name] == slots:
            measured = [f"{total:.3f} s" for total in totals[name]]
        else:
            measured = [f"≈{total:.0f} s ({done[name]} slots measured)" for total in projected]
        per_slot_ms = " / ".join(f"{total / slots * 1000:.2f}" for total in projected)
        rows.append([f"`{name}`", *measured, f"{per_slot_ms} ms", f"< {TARGET_DAY_S:.0f} s: {verdict}"])
    return rows


def message_sizes(seed: int) -> tuple[list[list[str]], int]:
    """Bytes of each protocol message of one typical home for one slot (payload = codec.encode output;
    MQTT = QoS 1 PUBLISH with its topic, plus the PUBACK)."""
    from hems.community.mechanisms.uniform import UniformPriceAuction
    from hems.protocol.codec import encode
    from hems.protocol.envelope import ReceptionStatus
    from hems.protocol.messages import (Ack, Allocation, Curve as WireCurve, MeterReport, Order as WireOrder,
                                        OrderOutcome, OrderStatus, OrderSubmission, SlotAck, SlotBid,
                                        SlotResult, SlotState)
    from hems.protocol.topics import HomeTopic, Topics

    market, _ = slot_input(InputKind.ORDERS, 1000, 48, seed)  # noon
    counts: dict[str, int] = {}
    for order in market.orders:
        counts[order.home] = counts.get(order.home, 0) + 1
    typical = sorted(counts.values())[len(counts) // 2]
    home = next(name for name, count in counts.items() if count == typical)
    result = UniformPriceAuction().clear(market)
    allocation = result.allocation(home)
    mine = [order for order in market.orders if order.home == home]
    curve = next(curve for curve in slot_curves(1000, 48, seed) if curve.home == home)
    start, sent_at, community = market.slot_start, market.slot_start - timedelta(minutes=20), "community-1"
    topics = Topics(community)
    wire_orders = [WireOrder(order_id=uuid.UUID(order.order_id), side=order.side, energy_wh=order.energy_wh,
                             limit_price_micro=order.limit_price_micro) for order in mine]
    by_orders = OrderSubmission(sequence=1, slots=[SlotBid(slot_start=start, duration_s=SLOT_S, orders=wire_orders)])
    by_curve = OrderSubmission(sequence=1, slots=[SlotBid(slot_start=start, duration_s=SLOT_S, curve=WireCurve(
        prices_micro=list(curve.prices_micro), net_import_wh=list(curve.net_import_wh)))])
    ack = Ack(status=ReceptionStatus.OK, acked_message_type="orders",
              slots=[SlotAck(slot_start=start, status=OrderStatus.ACCEPTED)])
    fills = {fill.order_id: fill for fill in allocation.fills}
    outcome = Allocation(
        slot_start=start, duration_s=SLOT_S, mechanism=result.mechanism, sequence=1,
        bought_wh=allocation.bought_wh, sold_wh=allocation.sold_wh,
        buy_price_micro=result.price_micro if allocation.bought_wh else None,
        sell_price_micro=result.price_micro if allocation.sold_wh else None,
        paid_nano=allocation.paid_nano, received_nano=allocation.received_nano, fees_nano=allocation.fees_nano,
        orders=[OrderOutcome(order_id=uuid.UUID(order_id), status=fill.status, filled_wh=fill.filled_wh,
                             price_micro=fill.price_micro) for order_id, fill in fills.items()])
    meter = MeterReport(slot_start=start, duration_s=SLOT_S, import_wh=max(allocation.net_import_wh, 0),
                        export_wh=max(-allocation.net_import_wh, 0))
    public = SlotResult(slot_start=start, duration_s=SLOT_S, state=SlotState.CLEARED, mechanism=result.mechanism,
                        config_version=1, price_rule_k="0.5", price_micro=result.price_micro,
                        min_trade_price_micro=result.price_micro, median_trade_price_micro=result.price_micro,
                        max_trade_price_micro=result.price_micro, traded_wh=result.traded_wh,
                        grid_import_wh=result.grid_import_wh, grid_export_wh=result.grid_export_wh,
                        homes=len(result.allocations), non_responders=0, tie_break_seed=int(result.details["seed"]),
                        book_hash="sha256:" + "0" * 64, rounding_nano=0, ledger_head="sha256:" + "0" * 64)
    messages = [
        ("orders (limit orders)", "home -> CM", by_orders, topics.home(home, HomeTopic.ORDERS), home),
        ("orders (11-point curve)", "home -> CM", by_curve, topics.home(home, HomeTopic.ORDERS), home),
        ("ack", "CM -> home", ack, topics.home(home, HomeTopic.ACK), "cm"),
        ("allocation", "CM -> home", outcome, topics.home(home, HomeTopic.ALLOCATION), "cm"),
        ("meter", "home -> CM", meter, topics.home(home, HomeTopic.METER), home),
        ("slot result (retained, every home receives it)", "CM -> all", public, topics.slot_result(start), "cm"),
    ]
    rows, sizes = [], {}
    for label, direction, payload, topic, sender in messages:
        raw = encode(payload, sender=sender, sent_at=sent_at, correlation_id=uuid.uuid4() if sender == "cm" else None)
        remaining = 2 + len(topic) + 2 + len(raw)
        framed = 1 + len(_varint(remaining)) + remaining + 4  # PUBLISH + PUBACK
        sizes[label] = (len(raw), framed)
        rows.append([label, direction, str(len(raw)), str(framed)])
    for variant in ("orders (limit orders)", "orders (11-point curve)"):
        chosen = [variant, "ack", "allocation", "meter", "slot result (retained, every home receives it)"]
        payload_total, framed_total = (sum(sizes[label][index] for label in chosen) for index in (0, 1))
        rows.append([f"**per home per slot, {variant.split('(')[1][:-1]}**: 5 messages (2 sent, 3 received)",
                     "", f"**{payload_total}**", f"**{framed_total}**"])
    day_ahead = OrderSubmission(sequence=1, slots=[
        SlotBid(slot_start=start + timedelta(seconds=SLOT_S * index), duration_s=SLOT_S, orders=wire_orders)
        for index in range(96)])
    day_bytes = len(encode(day_ahead, sender=home, sent_at=sent_at))
    limit = "**over** the 64 KiB message limit" if day_bytes > 64 * 1024 else "under the 64 KiB message limit"
    rows.append([f"orders for 96 slots in one message ({typical} orders a slot)", "home -> CM",
                 f"{day_bytes} ({day_bytes / 96:.0f} a slot)", limit])
    return rows, typical


def _varint(value: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", default="10,100,1000,10000", help="comma-separated community sizes")
    parser.add_argument("--repeats", type=int, default=20, help="slots per size (a quarter for > 1,000 homes)")
    parser.add_argument("--day-homes", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=96)
    parser.add_argument("--mechanisms", default=",".join(mechanism_names()))
    parser.add_argument("--collective-limit-s", type=float, default=60.0,
                        help="skip a size whose projected energy-collective slot takes longer")
    parser.add_argument("--day-budget-s", type=float, default=60.0,
                        help="stop a mechanism's day after this much clear time and extrapolate")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--devices", type=int, default=1,
                        help="flexible devices per home (2 gives about twice the orders per home)")
    parser.add_argument("--no-messages", action="store_true", help="skip the message sizes")
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.homes.split(",")]
    mechanisms, skipped = load_mechanisms(arguments.mechanisms.split(","))
    print(f"Python {platform.python_version()}, numpy {np.__version__}, nproc {os.cpu_count()}, "
          f"{platform.machine()}, started {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"load average {os.getloadavg()[0]:.2f}\n")
    for name, why in skipped.items():
        print(f"- skipped `{name}`: {why}")
    rows, notes = per_slot(mechanisms, sizes, arguments.repeats, arguments.collective_limit_s, arguments.seed,
                           arguments.devices)
    print("\n### Clearing time per slot (median)\n")
    print(table(["mechanism", "input", "per home"] + [f"{size:,} homes" for size in sizes], rows))
    for note in notes:
        print(f"\n- {note}")
    print(f"\n### {arguments.day_homes:,} homes x {arguments.slots} slots\n")
    print(table(["mechanism", "total clear(), GC as it comes", "total clear(), collected before", "per slot",
                 "target"],
                day(mechanisms, arguments.day_homes, arguments.slots, arguments.seed, arguments.day_budget_s,
                    arguments.devices)))
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.2f} (other processes share the machine when > 0.5)")
    if arguments.no_messages:
        return
    message_rows, typical = message_sizes(arguments.seed)
    print(f"\n### Messages per home per slot (a home with {typical} orders at noon)\n")
    print(table(["message", "direction", "payload bytes", "MQTT bytes (PUBLISH + PUBACK)"], message_rows))


if __name__ == "__main__":
    main()
