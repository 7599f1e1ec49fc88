"""The books of a negotiated slot (mechanisms/admm.py): balance to the n¤, volumes, prices."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hems.community.mechanisms.admm import ExchangeAdmm
from hems.community.mechanisms.base import MarketParameters

PARAMETERS = MarketParameters(retail_price_micro=300_000, feed_in_price_micro=80_000, network_fee_micro=7_000,
                              community_fee_micro=3_000)


@given(st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), st.integers(-50_000, 50_000), max_size=12),
       st.integers(-100_000, 500_000))
def test_negotiated_books_balance_and_stay_in_the_band(positions, price_micro):
    result = ExchangeAdmm().clear_positions(PARAMETERS, positions, price_micro, {"negotiated": True})
    assert result.balance_error_nano() == 0
    bought = sum(max(wh, 0) for wh in positions.values())
    sold = sum(max(-wh, 0) for wh in positions.values())
    assert result.traded_wh == min(bought, sold)
    assert result.grid_import_wh == bought - result.traded_wh and result.grid_export_wh == sold - result.traded_wh
    assert PARAMETERS.feed_in_price_micro <= result.price_micro <= PARAMETERS.retail_price_micro
    for allocation in result.allocations:
        assert allocation.net_import_wh == positions[allocation.home]  # every home gets its negotiated position
        if allocation.bought_wh:  # never above retail (plus fees on the local part), never below feed-in
            assert allocation.paid_nano <= allocation.bought_wh * PARAMETERS.retail_price_micro
        if allocation.sold_wh:
            assert allocation.received_nano >= allocation.sold_wh * PARAMETERS.feed_in_price_micro


def test_the_long_side_shares_the_community_volume_pro_rata():
    result = ExchangeAdmm().clear_positions(PARAMETERS, {"a": 300, "b": 100, "s": -200}, 150_000, {})
    bought = {item.home: item for item in result.allocations}
    # 200 Wh local shared 3:1 between a and b; the rest of each comes from the retailer at retail.
    assert bought["a"].paid_nano == 150 * 150_000 + 150 * 300_000
    assert bought["b"].paid_nano == 50 * 150_000 + 50 * 300_000
    assert bought["s"].received_nano == 200 * 150_000
    assert bought["a"].network_fee_nano == 150 * 7_000
