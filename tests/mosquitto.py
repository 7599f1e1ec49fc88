"""A real mosquitto broker for tests: its own config, a free port on 127.0.0.1, stopped by its PID.

Pitfalls this helper avoids (docs in /work/shared/notes/libraries.md, "Brokers for tests"):

- with an explicit ``listener``, anonymous clients are refused unless ``allow_anonymous true``;
- started as root, mosquitto drops to the user ``mosquitto`` and then cannot read files in a root-owned
  temp dir, so the config says ``user root`` when we are root;
- a leftover broker silently holding a port makes a test meaningless, so every broker gets a fresh
  port and is stopped by its own PID, never by name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hems.demo.mosquitto import BrokerError, MosquittoProcess, free_tcp_port, mosquitto_binary

__all__ = ["BrokerError", "MosquittoBroker", "TlsListener", "free_tcp_port", "mosquitto_binary"]


@dataclass(frozen=True)
class TlsListener:
    """Files of an extra TLS listener (PEM): the CA that signed the server certificate, the server's
    certificate and key. ``require_certificate`` makes clients present a certificate signed by the CA."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False


class MosquittoBroker(MosquittoProcess):
    """One mosquitto process listening on ``host:port``, configured under ``directory``; the demo's
    broker process (start, port retries, stop by PID) with the listeners and accounts tests need.

    ``password_file`` and ``acl_file`` (paths in mosquitto's own formats) switch authentication and
    authorisation on; ``allow_anonymous`` stays true unless ``allow_anonymous=False`` is passed.
    ``extra_config`` lines are appended verbatim. Persistence is off: every broker starts empty.
    Use as a context manager or call ``start()`` / ``stop()``.

    Optional: ``port`` listens on that port instead of a fresh one (a restart keeps it, so clients
    reconnect to the same address); ``tls`` adds a TLS listener on its own fresh port (``tls_port``,
    ``tls_url``) after the extra config; ``config_file`` runs that file as it is instead of a generated
    config (it must listen on ``host:port``, so ``port`` is required, and on ``tls_port`` if given);
    ``tls_port`` fixes the TLS listener's port (with ``tls`` or ``config_file``).
    """

    def __init__(self, directory: Path, *, password_file: Path | None = None, acl_file: Path | None = None,
                 allow_anonymous: bool = True, extra_config: Sequence[str] = (),
                 binary: str | None = None, port: int | None = None, tls: TlsListener | None = None,
                 config_file: Path | None = None, tls_port: int | None = None) -> None:
        super().__init__(directory, binary=binary)
        self.directory.mkdir(parents=True, exist_ok=True)
        if config_file is not None and port is None:
            raise ValueError("config_file needs the port it listens on")
        if config_file is not None:
            self.config_path = Path(config_file)
        self._config_given = config_file is not None
        self._fixed_port = port
        self._fixed_tls_port = tls_port
        self.tls = tls
        self.password_file = password_file
        self.acl_file = acl_file
        self.allow_anonymous = allow_anonymous
        self.extra_config = tuple(extra_config)
        self.tls_port = 0

    @property
    def tls_url(self) -> str:
        """``mqtts://127.0.0.1:TLS_PORT`` (only meaningful with a TLS listener)."""
        return f"mqtts://{self.host}:{self.tls_port}"

    def config_lines(self) -> list[str]:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root mosquitto would switch to the user "mosquitto", who cannot read our temp files.
            lines.append("user root")
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        lines.extend(self.extra_config)
        if self.tls is not None:
            lines += [f"listener {self.tls_port} {self.host}",
                      f"cafile {self.tls.ca_file}",
                      f"certfile {self.tls.cert_file}",
                      f"keyfile {self.tls.key_file}",
                      f"require_certificate {'true' if self.tls.require_certificate else 'false'}"]
        return lines

    def _choose_ports(self) -> None:
        self.port = self._fixed_port or free_tcp_port(self.host)
        if self.tls is not None or self._fixed_tls_port is not None:
            self.tls_port = self._fixed_tls_port or self._free_port_other_than(self.port)

    def _listening_ports(self) -> list[int]:
        return [self.port] + ([self.tls_port] if self.tls_port else [])

    def _write_config(self) -> None:
        if not self._config_given:
            super()._write_config()

    def _may_retry(self, log: str) -> bool:
        return self._fixed_port is None and super()._may_retry(log)

    def _free_port_other_than(self, port: int) -> int:
        while (candidate := free_tcp_port(self.host)) == port:
            pass
        return candidate
