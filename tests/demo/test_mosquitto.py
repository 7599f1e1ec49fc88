"""The demo's mosquitto child process: started on a free loopback port, stopped by its PID, and
configured to hold every QoS 1 message a busy community manager has not taken yet."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hems.demo.mosquitto import (AUTO, EMBEDDED, MOSQUITTO, BrokerError, MosquittoProcess, choose_broker,
                                 mosquitto_binary)

needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed "
                                     "(scripts/bootstrap.sh or apt-get install mosquitto)")
#: More than mosquitto's default queue per client (1,000) and in-flight window (20) together.
BURST = 3000


def test_auto_means_mosquitto_only_where_it_is_installed() -> None:
    assert choose_broker(AUTO, installed=True) == MOSQUITTO
    assert choose_broker(AUTO, installed=False) == EMBEDDED
    assert choose_broker(EMBEDDED, installed=True) == EMBEDDED
    assert choose_broker("mqtt://10.0.0.2:1883", installed=True) == "mqtt://10.0.0.2:1883"


def test_a_broker_that_exits_at_once_is_an_error_not_a_hang(tmp_path: Path) -> None:
    broker = MosquittoProcess(tmp_path, binary="/bin/false")
    with pytest.raises(BrokerError, match="did not start on 127.0.0.1"):
        broker.start(timeout_s=2.0)
    assert not broker.running


@needs_mosquitto
def test_it_listens_on_loopback_and_is_gone_after_stop(tmp_path: Path) -> None:
    broker = MosquittoProcess(tmp_path / "broker", log_path=tmp_path / "logs" / "mosquitto.log")
    with broker:
        assert broker.running and broker.pid is not None
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        with socket.create_connection(("127.0.0.1", broker.port), timeout=1.0):
            pass
        config = broker.config_path.read_text(encoding="utf-8")
        assert f"listener {broker.port} 127.0.0.1" in config and "persistence false" in config
    assert not broker.running and broker.pid is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=1.0).close()
    assert "terminating" in (tmp_path / "logs" / "mosquitto.log").read_text(encoding="utf-8")


def _client(client_id: str, port: int, *, clean: bool) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.max_inflight_messages_set(0)  # publish the whole burst at once (0: no limit)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=30)
    return client


@needs_mosquitto
def test_a_slow_subscriber_gets_a_whole_burst_of_qos1_messages(tmp_path: Path) -> None:
    """The manager's persistent session is offline (or busy) while every home publishes: with
    mosquitto's defaults it would get 1,000 queued + 20 in flight and lose the rest."""
    with MosquittoProcess(tmp_path) as broker:
        subscriber = _client("manager", broker.port, clean=False)
        subscribed = threading.Event()
        subscriber.on_subscribe = lambda *_: subscribed.set()
        subscriber.loop_start()
        subscriber.subscribe("burst/#", qos=1)
        assert subscribed.wait(5.0)
        subscriber.disconnect()
        subscriber.loop_stop()

        publisher = _client("homes", broker.port, clean=True)
        publisher.loop_start()
        infos = [publisher.publish(f"burst/{index}", str(index).encode(), qos=1) for index in range(BURST)]
        for info in infos:
            info.wait_for_publish(timeout=10.0)
        assert all(info.is_published() for info in infos)
        publisher.disconnect()
        publisher.loop_stop()

        received: set[int] = set()
        complete = threading.Event()

        def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            received.add(int(message.payload))
            if len(received) == BURST:
                complete.set()

        subscriber = _client("manager", broker.port, clean=False)
        subscriber.on_message = on_message
        subscriber.loop_start()
        try:
            complete.wait(20.0)
        finally:
            subscriber.disconnect()
            subscriber.loop_stop()
    assert len(received) == BURST, f"{BURST - len(received)} of {BURST} queued messages lost"
