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
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hems.demo.mosquitto import free_tcp_port, mosquitto_binary

#: How often to retry with a new port when the one we picked was taken between probing and binding.
PORT_ATTEMPTS = 3


class MosquittoError(RuntimeError):
    """The broker could not be started; the message carries its log."""


@dataclass(frozen=True)
class TlsListener:
    """Files of an extra TLS listener (PEM): the CA that signed the server certificate, the server's
    certificate and key. ``require_certificate`` makes clients present a certificate signed by the CA."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False


class MosquittoBroker:
    """One mosquitto process listening on ``host:port``, configured under ``directory``.

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

    host = "127.0.0.1"

    def __init__(self, directory: Path, *, password_file: Path | None = None, acl_file: Path | None = None,
                 allow_anonymous: bool = True, extra_config: Sequence[str] = (),
                 binary: str | None = None, port: int | None = None, tls: TlsListener | None = None,
                 config_file: Path | None = None, tls_port: int | None = None) -> None:
        resolved = binary or mosquitto_binary()
        if resolved is None:
            raise MosquittoError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = resolved
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if config_file is not None and port is None:
            raise ValueError("config_file needs the port it listens on")
        self.config_path = self.directory / "mosquitto.conf" if config_file is None else Path(config_file)
        self._config_given = config_file is not None
        self._fixed_port = port
        self._fixed_tls_port = tls_port
        self.tls = tls
        self.log_path = self.directory / "mosquitto.log"
        self.password_file = password_file
        self.acl_file = acl_file
        self.allow_anonymous = allow_anonymous
        self.extra_config = tuple(extra_config)
        self.port = 0
        self.tls_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        """``mqtts://127.0.0.1:TLS_PORT`` (only meaningful with a TLS listener)."""
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def pid(self) -> int | None:
        """PID of the running broker, None when stopped."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """What mosquitto wrote to its log so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _write_config(self) -> None:
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
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 5.0) -> MosquittoBroker:
        """Start the broker and return once its port accepts TCP connections.

        Raises ``MosquittoError`` with the broker's log when it exits or does not listen in time.
        """
        if self.running:
            return self
        last_error = ""
        for _ in range(PORT_ATTEMPTS):
            self.port = self._fixed_port or free_tcp_port(self.host)
            if self.tls is not None or self._fixed_tls_port is not None:
                self.tls_port = self._fixed_tls_port or self._free_port_other_than(self.port)
            if not self._config_given:
                self._write_config()
            with self.log_path.open("ab") as log:
                # stderr to a file, not a pipe: nobody reads a pipe during the test and a full pipe
                # would block the broker.
                self._process = subprocess.Popen([self.binary, "-c", str(self.config_path)],
                                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if self._wait_listening(timeout_s):
                return self
            if self._fixed_port is not None:
                break
            last_error = self.log_text()
            self._terminate()
            if "Address already in use" not in last_error:
                break
        raise MosquittoError(f"mosquitto did not start on {self.host}:{self.port}:\n{last_error}")

    def _free_port_other_than(self, port: int) -> int:
        while (candidate := free_tcp_port(self.host)) == port:
            pass
        return candidate

    def _wait_listening(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while ports and time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, ports[0]), timeout=0.2):
                    ports.pop(0)
            except OSError:
                time.sleep(0.005)
        return not ports

    def _terminate(self, timeout_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker by its PID: SIGTERM, wait, SIGKILL if it does not exit in ``timeout_s``."""
        self._terminate(timeout_s)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
