"""Where a device is reached: a TCP host and port, or a serial (RS-485) line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """Modbus TCP: one connection per host and port, shared by every unit id behind it."""

    host: str
    port: int = 502

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RtuEndpoint:
    """Modbus RTU on a serial line: one bus, one lock, whatever the unit ids."""

    port: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    def __str__(self) -> str:
        return f"rtu://{self.port}@{self.baudrate}{self.bytesize}{self.parity}{self.stopbits}"

    @property
    def character_time_s(self) -> float:
        """Time one character (start, data, parity, stop bits) takes on the wire."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate


Endpoint = TcpEndpoint | RtuEndpoint


def parse_endpoint(text: str, default_port: int = 502) -> TcpEndpoint:
    """Parse ``HOST[:PORT]``, ``[IPV6]:PORT`` or ``tcp://HOST:PORT`` into a TCP endpoint."""
    host_port = text.removeprefix("tcp://")
    if host_port.startswith("["):
        host, _, port_text = host_port[1:].partition("]")
        port_text = port_text.removeprefix(":")
    elif ":" in host_port:
        host, _, port_text = host_port.rpartition(":")
    else:
        host, port_text = host_port, ""
    if not host:
        raise ValueError(f"no host in endpoint {text!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError as error:
        raise ValueError(f"port in {text!r} is not a number") from error
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} in {text!r} is outside 1..65535")
    return TcpEndpoint(host, port)
