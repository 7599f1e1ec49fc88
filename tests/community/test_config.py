"""The community manager's configuration: the example validates; mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hems.community.config import load_community_config, parse_community_config
from hems.config.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "community" / "sunny-street.toml"
MINIMAL = """
[community]
id = "street"
[market]
retail_price = 0.30
feed_in_price = 0.08
[[member]]
id = "a"
"""


def test_the_example_validates_and_publishes_a_valid_market_config():
    config = load_community_config(EXAMPLE)
    message = config.market_config(1)
    assert message.mechanism == "bid_curve" and message.bid_format == "curve"
    assert message.retail_price_micro == 300_000 and message.feed_in_price_micro == 80_000
    assert message.price_grid_micro[0] == 80_000 and message.price_grid_micro[-1] == 300_000
    assert len(message.price_grid_micro) == 21


def test_prices_are_read_as_decimals_not_binary_floats():
    config = parse_community_config(MINIMAL.replace("0.30", "0.1").replace("0.08", "0.07"))
    assert config.market.parameters(0).retail_price_micro == 100_000  # 0.1 * 1e6 as a float is 100000.00000000001


@pytest.mark.parametrize(("change", "message"), [
    (("0.08", "0.35"), "market.feed_in_price = 0.35 is out of range"),
    (('retail_price', 'mechanism = "lottery"\nretail_price'), "market.mechanism"),
    (('id = "a"', 'id = "a"\n[[member]]\nid = "a"'), "member.1.id"),
    (('retail_price', 'bid_format = "none"\nretail_price'), "market.bid_format"),
    (('retail_price', 'slot_duration_s = 30\nretail_price'), "market.slot_duration_s = 30 is out of range"),
    (('[market]', '[market]\npassword = "x"'), "market.password"),
])
def test_mistakes_name_the_key(change, message):
    with pytest.raises(ConfigError) as raised:
        parse_community_config(MINIMAL.replace(*change, 1))
    assert message in str(raised.value)


def test_a_password_never_sits_in_the_file():
    with pytest.raises(ConfigError) as raised:
        parse_community_config(MINIMAL + '\n[broker]\npassword = "secret"\n')
    assert "broker.password" in str(raised.value) and "password_file" in str(raised.value)
