"""The operator's day-ahead limits, the effective limits, and the locational fee in the market."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hems.community.grid import (DayAheadLimits, FeederModel, GridLimits, SlotLimits, effective_limits,
                                 locational_fee_nano, with_locational_fee)
from hems.community.mechanisms.base import ClearingInput, MarketParameters, Order
from hems.community.mechanisms.uniform import UniformPriceAuction
from hems.protocol.messages import Side

START = datetime(2026, 6, 21, 10, tzinfo=timezone.utc)
SLOT = timedelta(minutes=15)
FEEDER = FeederModel((), (), (), transformer_import_limit_w=100_000, transformer_export_limit_w=60_000)


@pytest.mark.parametrize("kwargs", [{"import_limit_w": -1}, {"export_limit_w": -5}, {"locational_fee_micro": -1},
                                    {"import_limit_w": 1.5}])
def test_limits_are_whole_and_not_negative(kwargs):
    with pytest.raises(ValueError):
        GridLimits(**kwargs)


def test_day_ahead_slots_ascend_and_are_distinct_and_aware():
    day = DayAheadLimits.from_mapping({START + SLOT: GridLimits(export_limit_w=5_000), START: GridLimits(0, 0)})
    assert [slot.slot_start for slot in day.slots] == [START, START + SLOT]
    assert day.for_slot(START + SLOT).export_limit_w == 5_000
    assert day.for_slot(START + 2 * SLOT) == GridLimits()  # nothing published: no operator limit
    with pytest.raises(ValueError, match=r"slots\[1\].*ascending and distinct"):
        DayAheadLimits((SlotLimits(START, GridLimits()), SlotLimits(START, GridLimits())))
    with pytest.raises(ValueError, match=r"slots\[1\]"):
        DayAheadLimits((SlotLimits(START + SLOT, GridLimits()), SlotLimits(START, GridLimits())))
    with pytest.raises(ValueError, match="aware"):
        DayAheadLimits((SlotLimits(datetime(2026, 6, 21, 10), GridLimits()),))
    with pytest.raises(ValueError, match="ascending"):
        DayAheadLimits.from_mapping([(START, GridLimits()), (START, GridLimits(1))])


def test_the_tighter_limit_wins_per_direction_and_says_whose_it_is():
    assert effective_limits(FEEDER, None) == effective_limits(FEEDER, GridLimits())
    loose = effective_limits(FEEDER, GridLimits(import_limit_w=150_000, export_limit_w=60_000))
    assert (loose.import_limit_w, loose.import_set_by) == (100_000, "transformer")
    assert (loose.export_limit_w, loose.export_set_by) == (60_000, "operator")  # equal: the published one
    tight = effective_limits(FEEDER, GridLimits(import_limit_w=0, locational_fee_micro=12_000))
    assert (tight.import_limit_w, tight.import_set_by, tight.locational_fee_micro) == (0, "operator", 12_000)
    assert (tight.export_limit_w, tight.export_set_by) == (60_000, "transformer")


def test_the_locational_fee_is_the_network_fee_on_home_to_home_volume_and_the_books_balance():
    limits = GridLimits(locational_fee_micro=7_000)
    assert locational_fee_nano(limits, 1_250) == 8_750_000
    assert locational_fee_nano(None, 1_250) == 0
    with pytest.raises(ValueError):
        locational_fee_nano(limits, -1)
    base = MarketParameters(300_000, 80_000, network_fee_micro=3_000, community_fee_micro=1_000)
    assert with_locational_fee(base, None) is base
    parameters = with_locational_fee(base, limits)
    assert (parameters.network_fee_micro, parameters.community_fee_micro) == (10_000, 1_000)

    book = (Order("b1", "a", Side.BUY, 800, 250_000), Order("b2", "b", Side.BUY, 600, 200_000),
            Order("s1", "c", Side.SELL, 1_000, 100_000), Order("s2", "d", Side.SELL, 500, 180_000))
    only_location = with_locational_fee(MarketParameters(300_000, 80_000), limits)
    result = UniformPriceAuction().clear(ClearingInput(only_location, book))
    assert result.traded_wh > 0 and result.balance_error_nano() == 0
    assert result.network_fees_nano == locational_fee_nano(limits, result.traded_wh)
