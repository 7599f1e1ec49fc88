"""Negotiation benchmark (issue 7): exchange ADMM through a real mosquitto against the one-shot
bid-curve mechanism on the same homes, and both against the central optimum.

Run: .venv/bin/python bench/bench_negotiation.py [--homes 10 100 1000] [--slots 4] [--json]
Needs mosquitto (scripts/bootstrap.sh installs it); the script starts its own on a free port.

Per community size N:
- the homes are ``random_homes(N, slots, seed=N)`` (hems.community.negotiation.homes): separable
  quadratic costs per slot, buyers and sellers straddling the retail band, closed-form answers;
- **ADMM over MQTT**: the manager side (``ExchangeCoordinator`` with the driver's message format) and
  all N homes in this one process on two MQTT connections, every round a ``negotiation_signal`` on
  ``market/signal`` and N ``negotiation_answer`` messages on ``home/<id>/negotiation`` (QoS 1, real
  codec, real broker). A round closes when all N answers arrived. Wall time from the first signal to
  convergence, and the rounds;
- **ADMM in process**: the same algorithm without messages (``negotiate_exchange``): the floor that
  the broker and codec add to;
- **bid curve**: each home's net import at 11 prices from feed-in to retail (its best response at
  each price), cleared per slot by ``BidCurveEquilibrium``; the homes then take their allocation;
- **central**: the energy collective solved at once (cvxpy, Clarabel): the optimum.
Community cost = Σ homes' costs at their positions + the retailer's cost of the imbalance
(λ⁺ per kWh imported, −λ⁻ per kWh exported); "gap" = cost − central cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hems.community.mechanisms.base import ClearingInput, Curve, MarketParameters  # noqa: E402
from hems.community.mechanisms.bid_curve import BidCurveEquilibrium  # noqa: E402
from hems.community.negotiation.exchange import (ExchangeCoordinator, ExchangeSettings,  # noqa: E402
                                                 negotiate_exchange)
from hems.community.negotiation.driver import wire_signal  # noqa: E402
from hems.community.negotiation.homes import QuadraticHome, central_optimum, community_cost, random_homes  # noqa: E402
from hems.protocol.codec import decode, encode  # noqa: E402
from hems.protocol.messages import NegotiationAnswer, NegotiationSignal, NegotiationState  # noqa: E402
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink  # noqa: E402
from hems.protocol.topics import HomeTopic, Topics  # noqa: E402
from tests.mosquitto import MosquittoBroker  # noqa: E402

RETAIL, FEED_IN = 0.30, 0.08
GRID_POINTS = 11
TOPICS = Topics("bench")
SLOT_START = 1_795_046_400


def central(homes: list[QuadraticHome], slots: int) -> tuple[float, float]:
    """(optimal community cost, solve seconds)."""
    started = time.perf_counter()
    optimum = central_optimum(homes, slots, RETAIL, FEED_IN)
    return optimum.cost, time.perf_counter() - started


def bid_curve(homes: list[QuadraticHome], slots: int) -> tuple[float, float]:
    """(community cost, clearing seconds for all slots) of the one-shot bid-curve mechanism."""
    prices = np.linspace(FEED_IN, RETAIL, GRID_POINTS)
    micro = tuple(int(round(price * 1e6)) for price in prices)
    parameters = MarketParameters(retail_price_micro=micro[-1], feed_in_price_micro=micro[0], price_grid_micro=micro)
    positions = {home.home: np.zeros(slots) for home in homes}
    mechanism, seconds = BidCurveEquilibrium(), 0.0
    for slot in range(slots):
        curves = []
        for home in homes:
            # The best response to a price π is the proximity-free optimum: x = (b − π)/a, clipped.
            quantities = [float(np.clip((home.b_per_kwh[slot] - price) / home.a_per_kwh2[slot] * 1000,
                                        home.min_wh[slot], home.max_wh[slot])) for price in prices]
            monotone = np.minimum.accumulate(np.round(quantities).astype(int))
            curves.append(Curve(home.home, micro, tuple(int(value) for value in monotone)))
        started = time.perf_counter()
        result = mechanism.clear(ClearingInput(parameters, curves=tuple(curves)))
        seconds += time.perf_counter() - started
        for allocation in result.allocations:
            positions[allocation.home][slot] = allocation.net_import_wh
    return community_cost(homes, positions, RETAIL, FEED_IN), seconds


async def admm_over_mqtt(homes: list[QuadraticHome], slots: int, broker_url: str,
                         settings: ExchangeSettings) -> dict:
    """Rounds, wall time and the positions of a negotiation whose every message crosses the broker."""
    coordinator = ExchangeCoordinator([home.home for home in homes], slots, RETAIL, FEED_IN, settings)
    by_name = {home.home: home for home in homes}
    last = {home.home: [0.0] * slots for home in homes}
    manager = MqttLink(BrokerSettings(url=broker_url, client_id="bench-manager"))
    community = MqttLink(BrokerSettings(url=broker_url, client_id="bench-homes"))
    round_closed: asyncio.Queue[None] = asyncio.Queue()
    messages = {"signals": 0, "answers": 0}

    async def on_answer(message: IncomingMessage) -> None:
        answer = decode(message.payload, (NegotiationAnswer,))
        home = TOPICS.parse_home(message.topic).home
        coordinator.receive(home, answer.payload.round, answer.payload.net_import_wh)
        messages["answers"] += 1
        if coordinator.answered_all:
            round_closed.put_nowait(None)

    async def on_signal(message: IncomingMessage) -> None:
        signal = decode(message.payload, (NegotiationSignal,)).payload
        if signal.state is not NegotiationState.ROUND:
            return
        rho = signal.rho_micro_per_kwh2 / 1e6
        for name, home in by_name.items():
            answer = home.best_response(np.asarray(signal.target_wh(last[name])), rho)
            last[name] = [float(value) for value in answer]
            payload = NegotiationAnswer(negotiation_id=signal.negotiation_id, round=signal.round,
                                        net_import_wh=[int(round(value)) for value in answer])
            # QoS 1 without waiting for each PUBACK in turn: the homes are independent clients.
            asyncio.ensure_future(community.publish(TOPICS.home(name, HomeTopic.NEGOTIATION),
                                                    encode(payload, sender=name, sent_at=_now())))

    manager.subscribe(TOPICS.all_homes(HomeTopic.NEGOTIATION), on_answer)
    community.subscribe(TOPICS.market_signal(), on_signal)
    await manager.start()
    await community.start()
    await asyncio.sleep(0.2)  # both subscriptions are in place
    started = time.perf_counter()
    try:
        while True:
            signal = wire_signal(coordinator.signal(), negotiation_id="bench", state=NegotiationState.ROUND,
                                 slot_start_s=SLOT_START, duration_s=900)
            await manager.publish(TOPICS.market_signal(), encode(signal, sender="manager", sent_at=_now()))
            messages["signals"] += 1
            await asyncio.wait_for(round_closed.get(), timeout=60)
            report = coordinator.advance()
            if report.converged or coordinator.round >= settings.max_rounds:
                break
        wall = time.perf_counter() - started
    finally:
        await community.stop()
        await manager.stop()
    result = coordinator.result("converged" if report.converged else "max_rounds")
    return {"rounds": result.rounds, "converged": result.converged, "wall_s": round(wall, 3),
            "ms_per_round": round(1000 * wall / result.rounds, 2), "messages": messages,
            "cost": community_cost(homes, result.positions_wh, RETAIL, FEED_IN)}


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def measure(sizes: list[int], slots: int) -> dict:
    settings = ExchangeSettings(max_rounds=500)
    out: dict = {"python": platform.python_version(), "slots": slots, "rho_per_kwh2": settings.rho_per_kwh2,
                 "eps_primal_wh": settings.eps_primal_wh, "eps_dual_per_kwh": settings.eps_dual_per_kwh, "sizes": {}}
    with tempfile.TemporaryDirectory() as directory, MosquittoBroker(Path(directory)) as broker:
        for size in sizes:
            homes = random_homes(size, slots, seed=size)
            optimum, central_s = central(homes, slots)
            started = time.perf_counter()
            in_process = negotiate_exchange(homes, slots, RETAIL, FEED_IN, settings)
            in_process_s = time.perf_counter() - started
            in_process_cost = community_cost(homes, in_process.positions_wh, RETAIL, FEED_IN)
            over_mqtt = await admm_over_mqtt(homes, slots, broker.url, settings)
            curve_cost, curve_s = bid_curve(homes, slots)
            out["sizes"][size] = {
                "central_cost": round(optimum, 4), "central_solve_s": round(central_s, 3),
                "admm_mqtt": {**over_mqtt, "cost": round(over_mqtt["cost"], 4),
                              "gap": round(over_mqtt["cost"] - optimum, 5)},
                "admm_in_process": {"rounds": in_process.rounds, "wall_s": round(in_process_s, 3),
                                    "gap": round(in_process_cost - optimum, 5)},
                "bid_curve": {"cost": round(curve_cost, 4), "gap": round(curve_cost - optimum, 5),
                              "clear_s": round(curve_s, 4)},
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print JSON (default: a Markdown table)")
    arguments = parser.parse_args()
    result = asyncio.run(measure(arguments.homes, arguments.slots))
    if arguments.json:
        print(json.dumps(result, indent=1))
        return
    print("| homes | ADMM rounds | ADMM over MQTT: wall | per round | in process | central cost | ADMM gap | "
          "bid-curve gap |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, row in result["sizes"].items():
        mqtt_row = row["admm_mqtt"]
        print(f"| {size} | {mqtt_row['rounds']} | {mqtt_row['wall_s']:.2f} s | {mqtt_row['ms_per_round']:.1f} ms | "
              f"{row['admm_in_process']['wall_s']:.2f} s | {row['central_cost']:.3f} | {mqtt_row['gap']:+.4f} | "
              f"{row['bid_curve']['gap']:+.4f} |")


if __name__ == "__main__":
    main()
