"""``[upstream]``: defaults, and mistakes that name the key."""

from __future__ import annotations

import pytest

from hems.community.config import UPSTREAM_PARTICIPANT, parse_community_config
from hems.community.upstream.link import upstream_broker_settings
from hems.config.errors import ConfigError

BASE = """
[community]
id = "north"
[broker]
broker = "mqtt://broker.example.org:1883"
username = "north-manager"
[market]
mechanism = "bid_curve"
retail_price = 0.30
feed_in_price = 0.08
[[member]]
id = "a"
"""


def test_defaults_same_broker_our_id_a_minute_ahead():
    config = parse_community_config(BASE + '[upstream]\ncommunity = "feeder"\n')
    assert config.upstream_member_id == "north" and config.upstream.submit_lead_s == 60
    settings = upstream_broker_settings(config)
    assert settings.url == "mqtt://broker.example.org:1883" and settings.username == "north-manager"
    assert settings.client_id == "hems-community-north-upstream-feeder"  # a second connection, its own id
    assert parse_community_config(BASE).upstream_member_id is None


def test_an_own_broker_and_member_id():
    config = parse_community_config(BASE + '[upstream]\ncommunity = "feeder"\nmember_id = "north-7"\n'
                                           'submit_lead_s = 120\n[upstream.broker]\nbroker = "mqtt://up.example.org"\n'
                                           'username = "north-at-feeder"\n')
    settings = upstream_broker_settings(config)
    assert config.upstream_member_id == "north-7"
    assert (settings.url, settings.username) == ("mqtt://up.example.org", "north-at-feeder")


@pytest.mark.parametrize(("text", "message"), [
    (BASE.replace('id = "a"', f'id = "{UPSTREAM_PARTICIPANT}"'), "member.0.id"),
    (BASE + '[upstream]\ncommunity = "north"\n', "upstream.community"),
    (BASE + '[upstream]\ncommunity = "feeder/x"\n', "upstream.community"),
    (BASE + '[upstream]\ncommunity = "feeder"\nsubmit_lead_s = 0\n', "upstream.submit_lead_s"),
    (BASE + '[upstream]\ncommunity = "feeder"\nmember_id = "a b"\n', "upstream.member_id"),
    (BASE + '[upstream]\ncommunity = "feeder"\nhost = "x"\n', "upstream.host"),
    (BASE + '[upstream]\ncommunity = "feeder"\n[upstream.broker]\npassword = "x"\n', "upstream.broker.password"),
    (BASE.replace('"bid_curve"', '"supply_demand_ratio"') + '[upstream]\ncommunity = "feeder"\n', "upstream"),
    (BASE.replace('"bid_curve"', '"admm"') + '[upstream]\ncommunity = "feeder"\n', "upstream"),
])
def test_mistakes_name_the_key(text, message):
    with pytest.raises(ConfigError) as raised:
        parse_community_config(text)
    assert message in str(raised.value)


def test_a_positions_market_cannot_nest_and_says_why():
    with pytest.raises(ConfigError) as raised:
        parse_community_config(BASE.replace('"bid_curve"', '"bill_sharing"') + '[upstream]\ncommunity = "feeder"\n')
    assert "nesting needs a mechanism that clears the homes' bids" in str(raised.value)
