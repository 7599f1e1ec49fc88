"""``[market]``: defaults, what enabling it does to the MPC, and errors that name the key."""

from __future__ import annotations

import pytest

from hems.trading.settings import client_id, settings_from_config
from tests.config.helpers import MINIMAL, load, problems, with_section

ENABLED = 'enabled = true\ncommunity = "c1"\nbroker = "mqtts://broker.example.org"\n'


def test_off_by_default_and_the_mpc_ignores_trades():
    config = load(MINIMAL)
    assert config.market.model_dump() == {
        "enabled": False, "broker": "mqtt://127.0.0.1:1883", "community": None, "username": None,
        "password_file": None, "ca_file": None, "cert_file": None, "key_file": None, "submit_lead_s": 60.0,
        "bid_points": 11, "bid_slots": 1, "resend_after_s": 60.0, "ack_timeout_s": 30.0}
    assert not config.site.mpc.market_enabled


def test_enabling_the_market_lets_the_mpc_use_committed_trades():
    config = load(with_section("market", ENABLED))
    assert config.market.enabled and config.market.broker_tls
    assert config.site.mpc.market_enabled


@pytest.mark.parametrize("body, expected", [
    ("enabled = true", "market.community: required when enabled"),
    ('community = "c 1"', 'market.community = "c 1"'),
    ('broker = "http://example.org"', 'market.broker = "http://example.org" is invalid'),
    ('broker = "mqtt://u:p@host"', "without credentials"),
    ('password = "secret"', "market.password: a password never goes in this file"),
    ('ca_file = "/etc/ca.pem"', 'market.ca_file = "/etc/ca.pem" is invalid: allowed only with an mqtts:// broker'),
    ('broker = "mqtts://h"\ncert_file = "/etc/c.pem"', "market.cert_file: cert_file and key_file go together"),
    ("submit_lead_s = 0", "market.submit_lead_s = 0 is out of range: allowed [1, 3600]"),
    ("bid_points = 1", "market.bid_points = 1 is out of range: allowed [2, 101]"),
    ("bid_slots = 0", "market.bid_slots = 0 is out of range: allowed [1, 96]"),
    ("resend_after_s = 1", "market.resend_after_s = 1 is out of range: allowed [5, 86400]"),
    ("enabled = 1", "market.enabled"),
    ("colour = 1", "market.colour: unknown key"),
])
def test_bad_values_name_the_key(body, expected):
    lines = problems(with_section("market", body))
    assert any(expected in line for line in lines), lines


async def test_settings_default_the_username_to_the_home_and_read_the_password_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    config = load(with_section("market", ENABLED + f'password_file = "{secret}"\nbid_slots = 3\n'))
    settings = await settings_from_config(config)
    assert settings.broker.username == "home-01" and settings.broker.password == "s3cret"
    assert settings.broker.client_id == client_id("home-01") and settings.broker.url == "mqtts://broker.example.org"
    assert (settings.community, settings.bid_slots, settings.submit_lead_s) == ("c1", 3, 60.0)
    missing = load(with_section("market", ENABLED + f'password_file = "{tmp_path / "absent"}"\n'))
    with pytest.raises(OSError):
        await settings_from_config(missing)
