"""What the market agent needs to know, resolved from ``[market]``, ``[home]`` and ``[grid]``.

The password is read from its file here, at start (in a worker thread: the event loop never
waits for a file), so the configuration object itself never holds a secret.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hems.config import HomeConfig
from hems.protocol.messages import EnergyClass
from hems.protocol.mqtt import BrokerSettings
from hems.protocol.units import price_to_micro
from hems.trading.bids import BidTerms, DonationTerms
from hems.trading.power_plant import FlexibilityLimits


@dataclass(frozen=True)
class TradingSettings:
    """The agent's settings; times in seconds of the runtime's clock."""

    home_id: str
    community: str
    broker: BrokerSettings
    submit_lead_s: float = 60.0
    bid_points: int = 11
    bid_slots: int = 1
    resend_after_s: float = 60.0
    ack_timeout_s: float = 30.0
    terms: BidTerms = BidTerms()
    flexibility: FlexibilityLimits = FlexibilityLimits()


def client_id(home_id: str, community: str) -> str:
    """The agent's MQTT client id: stable, so the broker keeps its persistent session; with the
    community in it, so that two communities sharing a broker never take over each other's session."""
    return f"hems-market-{community}-{home_id}"


async def settings_from_config(config: HomeConfig) -> TradingSettings:
    """Resolve ``[market]``: username defaults to the home id, the password comes from its file.

    Raises OSError when the password file cannot be read (a configuration problem the operator
    must fix; the caller decides whether the home runs without the market).
    """
    market = config.market
    if market.community is None:
        raise ValueError("market.community is not set")
    password = await asyncio.to_thread(market.read_password)
    broker = market.broker_settings(client_id(config.home.id, market.community), password=password,
                                    username=market.username or config.home.id)
    return TradingSettings(
        home_id=config.home.id, community=market.community, broker=broker,
        submit_lead_s=market.submit_lead_s, bid_points=market.bid_points, bid_slots=market.bid_slots,
        resend_after_s=market.resend_after_s, ack_timeout_s=market.ack_timeout_s, terms=bid_terms(config),
        flexibility=flexibility_limits(config))


def flexibility_limits(config: HomeConfig) -> FlexibilityLimits:
    """``[market.flexibility]`` with the site's import and export limits (``[grid]``)."""
    flexibility = config.market.flexibility
    return FlexibilityLimits(opt_out=flexibility.opt_out, max_change_w=flexibility.max_change_w,
                             import_limit_w=config.grid.import_limit_w, export_limit_w=config.grid.export_limit_w)


def bid_terms(config: HomeConfig) -> BidTerms:
    """``[market]``'s energy class, green premium, partners and donations, in the market's units."""
    market = config.market
    return BidTerms(
        energy_class=None if market.energy_class == "local" else EnergyClass(market.energy_class),  # local: the default
        green_premium_micro=price_to_micro(market.green_premium),
        partners=None if market.green_partners is None else tuple(market.green_partners),
        donations=tuple(DonationTerms(tuple(item.recipients), item.energy_wh, price_to_micro(item.price))
                        for item in market.donation))
