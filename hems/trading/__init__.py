"""The home's market agent: bids, allocations, meter reports and the outbox (see agent.py)."""

from hems.trading.agent import MarketAgent
from hems.trading.settings import TradingSettings, settings_from_config

__all__ = ["MarketAgent", "TradingSettings", "settings_from_config"]
