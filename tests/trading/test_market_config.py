"""``[market]``: defaults, what enabling it does to the MPC, and errors that name the key."""

from __future__ import annotations

import pytest

from hems.protocol.messages import EnergyClass
from hems.trading.bids import BidTerms, DonationTerms
from hems.trading.power_plant import FlexibilityLimits
from hems.trading.settings import client_id, settings_from_config
from tests.config.helpers import MINIMAL, load, problems, with_section

ENABLED = 'enabled = true\ncommunity = "c1"\nbroker = "mqtts://broker.example.org"\n'


def test_off_by_default_and_the_mpc_ignores_trades():
    config = load(MINIMAL)
    assert config.market.model_dump() == {
        "enabled": False, "broker": "mqtt://127.0.0.1:1883", "community": None, "username": None,
        "password_file": None, "ca_file": None, "cert_file": None, "key_file": None, "submit_lead_s": 60.0,
        "bid_points": 11, "bid_slots": 1, "resend_after_s": 60.0, "ack_timeout_s": 30.0,
        "energy_class": "local", "green_premium": 0.0, "green_partners": None, "donation": [],
        "flexibility": {"opt_out": False, "max_change_w": None}}
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
    ('energy_class = "grid"', "market.energy_class"),
    ("green_premium = -0.01", "market.green_premium = -0.01 is out of range"),
    ('green_partners = ["home-02"]', "market.green_partners: only with a green_premium above 0"),
    ('green_premium = 0.02\ngreen_partners = ["home-01"]', "market.green_partners: 'home-01' is this home"),
    ('[[market.donation]]\nrecipients = ["home-01"]\nenergy_wh = 500',
     "market.donation[0].recipients: 'home-01' is this home"),
    ('[[market.donation]]\nrecipients = ["a", "a"]\nenergy_wh = 500', "market.donation[0].recipients"),
    ('[[market.donation]]\nrecipients = ["a"]\nenergy_wh = 0', "market.donation[0].energy_wh = 0 is out of range"),
    ('[[market.donation]]\nrecipients = ["a"]', "market.donation[0].energy_wh: required key is missing"),
    ("[market.flexibility]\nmax_change_w = -1",
     "market.flexibility.max_change_w = -1 is out of range: allowed [0, 10000000]"),
    ("[market.flexibility]\nmax_change_w = 2e7",
     "market.flexibility.max_change_w = 20000000 is out of range: allowed [0, 10000000]"),
    ("[market.flexibility]\nmax_change_w = nan", "market.flexibility.max_change_w = nan is out of range"),
    ('[market.flexibility]\nopt_out = "yes"', 'market.flexibility.opt_out = "yes"'),
    ("[market.flexibility]\nopt_out = 1", "market.flexibility.opt_out = 1"),
    ("[market.flexibility]\nmax_change = 5", "market.flexibility.max_change: unknown key"),
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
    assert settings.broker.client_id == client_id("home-01", "c1") == "hems-market-c1-home-01"
    assert settings.broker.url == "mqtts://broker.example.org"
    assert (settings.community, settings.bid_slots, settings.submit_lead_s) == ("c1", 3, 60.0)
    missing = load(with_section("market", ENABLED + f'password_file = "{tmp_path / "absent"}"\n'))
    with pytest.raises(OSError):
        await settings_from_config(missing)


async def test_the_energy_terms_reach_the_bids_in_market_units(tmp_path):
    config = load(with_section("market", ENABLED + 'energy_class = "green_local"\ngreen_premium = 0.02\n'
                               'green_partners = ["home-02"]\n[[market.donation]]\nrecipients = ["home-03"]\n'
                               'energy_wh = 400\nprice = 0.05\n'))
    terms = (await settings_from_config(config)).terms
    assert terms == BidTerms(EnergyClass.GREEN_LOCAL, 20_000, ("home-02",),
                             (DonationTerms(("home-03",), 400, 50_000),))
    plain = (await settings_from_config(load(with_section("market", ENABLED)))).terms
    assert plain == BidTerms()  # local is the wire's default: nothing extra on a plain home's bids


async def test_the_flexibility_keys_and_the_site_limits_reach_the_agent():
    config = load(with_section("market", ENABLED + "[market.flexibility]\nopt_out = true\nmax_change_w = 1500\n"))
    assert config.market.flexibility.opt_out and config.market.flexibility.max_change_w == 1500.0
    limits = (await settings_from_config(config)).flexibility
    assert limits == FlexibilityLimits(opt_out=True, max_change_w=1500.0, import_limit_w=17_000, export_limit_w=4_000)
    default = (await settings_from_config(load(with_section("market", ENABLED)))).flexibility
    assert default == FlexibilityLimits(opt_out=False, max_change_w=None, import_limit_w=17_000, export_limit_w=4_000)
