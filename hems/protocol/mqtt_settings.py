"""What the MQTT link is configured with and what it hands out: broker settings, the last will, an
incoming message and the link's counters. Plain data, no paho: the rest of hems builds these without
knowing how the link talks to the broker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["BrokerSettings", "IncomingMessage", "LinkStats", "WillMessage", "broker_endpoint"]

DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to reach the broker. ``url`` is ``mqtt://host[:port]`` (1883) or
    ``mqtts://host[:port]`` (8883, TLS verified against ``ca_file``, or the system CAs when None)."""

    url: str
    client_id: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    persistent_session: bool = True
    max_queued_messages: int = 1000
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0

    def endpoint(self) -> tuple[str, int, bool]:
        """``(host, port, tls)`` of ``url``; ValueError naming the problem for a malformed URL."""
        return broker_endpoint(self.url)


def broker_endpoint(url: str, where: str | None = None) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of ``mqtt://host[:port]`` (1883) or ``mqtts://host[:port]`` (8883);
    ValueError starting with ``where`` (default: the URL) and naming the problem."""
    where = where or f"broker url {url!r}"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{where}: the scheme must be mqtt:// or mqtts://")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{where}: put credentials in username/password, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{where}: only scheme, host and port are allowed")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if not parts.hostname:
        raise ValueError(f"{where}: no host")
    if port == 0:
        raise ValueError(f"{where}: port 0 is not a broker port")
    tls = parts.scheme == "mqtts"
    return parts.hostname, port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT), tls


@dataclass(frozen=True)
class IncomingMessage:
    """One message as the broker delivered it; ``retain`` is True when it comes from the retained store."""

    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class WillMessage:
    """What the broker publishes for us when we vanish without a clean disconnect."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass
class LinkStats:
    """Plain counters for metrics (a copy; the link never changes a returned instance)."""

    messages_sent: int = 0        # acknowledged by the broker (QoS 1) or written (QoS 0)
    bytes_sent: int = 0           # payload bytes of those
    messages_received: int = 0
    bytes_received: int = 0
    connects: int = 0             # accepted CONNACKs
    reconnects: int = 0           # accepted CONNACKs after the first
    connect_failures: int = 0     # unreachable broker, TLS failure, refused CONNACK
    publish_refused: int = 0      # not connected or the client's queue full: nothing sent
    publish_timeouts: int = 0     # handed to paho, no acknowledgement within timeout_s
    handler_errors: int = 0
    unhandled_messages: int = 0   # matched no subscription (e.g. queued for an old one)
