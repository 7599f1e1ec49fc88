"""Home Assistant sees the running daemon: discovery, live state and the plan over a real mosquitto."""

from __future__ import annotations

import json

from hems.runtime.home import HomeRuntime
from tests.conftest import wait_for
from tests.hil.site import DAY_START_S, PlantForecast, hil_site, home_config, run_until
from tests.observability.test_home_assistant import Recorder


async def test_the_daemon_appears_in_home_assistant(tmp_path, mosquitto_broker):
    """One simulated hour at noon with ``[home_assistant] enabled``: the sensors are announced
    (retained), the state carries the plant's SoC, and the plan's slots are published."""
    recorder = Recorder(mosquitto_broker)
    assert recorder.subscribed.wait(5)
    start_s = DAY_START_S + 12 * 3600
    try:
        async with hil_site(start_s=start_s) as site:
            config = home_config(tmp_path, site.port, extra_toml=(
                f'\n[home_assistant]\nenabled = true\nbroker = "{mosquitto_broker.url}"\npublish_period_s = 30\n'))
            runtime = HomeRuntime(config, site.clock, forecast=PlantForecast(site.plant),
                                  start_metrics_exporter=False)
            await run_until(runtime, site.clock, start_s + 3600)
            plant_soc_pct = site.plant.battery.soc_pct
        await wait_for(lambda: recorder.last("hems/hil-home/availability") == b"offline", timeout_s=10)
        configs = recorder.configs()
        soc_config = next(c for topic, c in configs.items() if topic.endswith("/battery_soc_pct/config"))
        assert soc_config["device_class"] == "battery" and soc_config["unit_of_measurement"] == "%"
        assert not any("/ev_" in topic or "/heat_pump" in topic for topic in configs)  # the site has neither
        states = [json.loads(payload) for payload in recorder.payloads("hems/hil-home/state")]
        assert len(states) >= 60  # every 30 simulated seconds for an hour
        assert abs(states[-1]["battery_soc_pct"] - plant_soc_pct) < 1.0
        plan = json.loads(recorder.last("hems/hil-home/plan"))
        assert plan["status"] == "optimal" and len(plan["slots"]) == 96
    finally:
        recorder.client.loop_stop()
        recorder.client.disconnect()
