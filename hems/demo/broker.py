"""An MQTT 3.1.1 broker inside the current event loop (amqtt), for the demo's community on one machine.

The demo needs a broker but must run where no mosquitto is installed, so without one it runs amqtt in
the caller's event loop (``hems demo --broker embedded``, or ``auto`` without mosquitto; with mosquitto
installed ``auto`` starts it as a child process instead, :mod:`hems.demo.mosquitto`). Choices, each
taken from amqtt 0.12's source (``amqtt/contexts.py``, ``amqtt/broker.py``):

- We own the listening socket and hand every accepted connection to ``Broker.external_connected`` (an
  ``external`` listener). asyncio binds port 0 for us, so the port is known and race-free, and ``stop``
  frees it for sure; amqtt itself would only report the port it bound through private fields.
- Authentication is our own plugin that accepts everyone as a *named* client. amqtt's
  ``AnonymousAuthPlugin`` marks sessions anonymous, and amqtt then drops an anonymous client's
  persistent session a second after it disconnects and queues no QoS 1 messages for it, which would
  break the persistent sessions ``MqttLink`` relies on. The broker listens on loopback only.
- The ``plugins`` map lists only that plugin: no ``$SYS`` publisher (``BrokerSysPlugin``), no packet
  or event logger, no persistence (``amqtt.contrib.persistence`` is never loaded): nothing on disk.
- Retained messages go out only in answer to a SUBSCRIBE, for the filters it carries (MQTT 3.1.1,
  3.3.1.3). amqtt 0.12 also sends them on every CONNECT, for every filter *any* client holds
  (``Broker._handle_client_session``): each new client got other clients' retained messages, and the
  work grew with clients x filters x retained topics until, with 200 clients connecting at once,
  sessions stalled and paho dropped them. :class:`_SubscribeRetainedBroker` turns that off.
- amqtt and its state machine library (``transitions``) log every packet and state change at INFO or
  DEBUG; while brokers run, loggers the application left unconfigured are raised to WARNING.

Limits of amqtt 0.12 that remain: MQTT 3.1.1 only; it forwards a message at the subscriber's QoS,
not the lower of publisher's and subscriber's; and it waits 5 s (fixed) for a subscriber's PUBACK.
``MqttLink`` acknowledges only after its handler ran, so a handler busy for longer makes amqtt log
a warning and an error per message and forget it: delivered once, but not redelivered after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

__all__ = ["EmbeddedBroker", "embedded_broker"]

logger = logging.getLogger(__name__)

_LISTENER = "default"  # amqtt requires a listener of this name
#: Connections the kernel queues before we accept them. asyncio's default of 100 made part of a
#: 200-home community wait a second for the SYN to be retried.
LISTEN_BACKLOG = 1024
#: How long stop() waits for amqtt to end the sessions of the connections it dropped.
CONNECTION_CLOSE_TIMEOUT_S = 5.0


class LoopbackAuthPlugin(BaseAuthPlugin):
    """Accepts every client without marking its session anonymous (see the module docstring)."""

    async def authenticate(self, *, session: Session) -> bool:
        """Every client that reached our loopback listener may connect."""
        return True


class _QuietLoggers:
    """Raises amqtt's loggers to WARNING while at least one broker runs, then restores them.

    Logger levels are process-wide, so the count of brokers borrowing them is too; a logger the
    application configured itself (level not NOTSET) is left alone.
    """

    names = ("amqtt", "transitions")
    _lock = threading.Lock()
    _users = 0
    _raised: ClassVar[list[str]] = []

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            cls._users += 1
            if cls._users > 1:
                return
            for name in cls.names:
                quiet = logging.getLogger(name)
                if quiet.level == logging.NOTSET:
                    quiet.setLevel(logging.WARNING)
                    cls._raised.append(name)

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users > 0:
                return
            for name in cls._raised:
                logging.getLogger(name).setLevel(logging.NOTSET)
            cls._raised.clear()


#: True while the broker answers a SUBSCRIBE, in that client's task (context-local, not shared).
_ANSWERING_SUBSCRIBE: contextvars.ContextVar[bool] = contextvars.ContextVar("answering_subscribe", default=False)


class _SubscribeRetainedBroker(Broker):
    """amqtt's broker, sending retained messages only in answer to a SUBSCRIBE (module docstring).

    Both overridden methods are private to amqtt 0.12 (pinned below 0.13): ``_handle_subscription``
    answers one SUBSCRIBE and is the only caller we keep of
    ``_publish_retained_messages_for_subscription``; the CONNECT path calls the latter too, outside it.
    """

    async def _handle_subscription(self, *args: Any, **kwargs: Any) -> None:
        token = _ANSWERING_SUBSCRIBE.set(True)
        try:
            await super()._handle_subscription(*args, **kwargs)
        finally:
            _ANSWERING_SUBSCRIBE.reset(token)

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        if _ANSWERING_SUBSCRIBE.get():
            await super()._publish_retained_messages_for_subscription(subscription, session)


def _broker_config(host: str, port: int) -> BrokerConfig:
    plugin = f"{LoopbackAuthPlugin.__module__}.{LoopbackAuthPlugin.__qualname__}"
    # ``bind`` is only informational for an external listener, but amqtt ignores a listener without it.
    listener = ListenerConfig(type=ListenerType.EXTERNAL, bind=f"{host}:{port}")
    return BrokerConfig(listeners={_LISTENER: listener}, plugins={plugin: {}})


class EmbeddedBroker:
    """An amqtt broker served on ``host:port`` from the running event loop (port 0: a free one).

    ``await start()``, connect clients to ``url``, ``await stop()``. Anonymous, loopback only, nothing
    persisted: every broker starts empty.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._port = 0
        self._broker: _SubscribeRetainedBroker | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._server is None:
            raise RuntimeError("the broker is not started")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://host:port`` for ``BrokerSettings``."""
        return f"mqtt://{self._host}:{self.port}"

    async def start(self) -> None:
        """Start amqtt, then listen; raises OSError when the port is taken (a fixed one only)."""
        if self._server is not None:
            raise RuntimeError("the broker is already started")
        _QuietLoggers.acquire()
        try:
            broker = _SubscribeRetainedBroker(_broker_config(self._host, self._requested_port))
            await broker.start()
            try:
                self._server = await asyncio.start_server(self._serve, self._host, self._requested_port,
                                                          backlog=LISTEN_BACKLOG)
            except BaseException:
                await broker.shutdown()
                raise
        except BaseException:
            _QuietLoggers.release()
            raise
        self._broker = broker
        self._port = int(self._server.sockets[0].getsockname()[1])
        logger.debug("embedded MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening, drop every connection (no wills are sent), free the port. Idempotent."""
        server, self._server = self._server, None
        broker, self._broker = self._broker, None
        if server is None or broker is None:
            return
        try:
            server.close()
            # Dropped connections look lost to amqtt: it would queue their wills just as its delivery
            # stops, and warn that they went undelivered.
            for session, _ in broker.sessions.values():
                session.will_flag = False
            # We drop the connections rather than let Broker.shutdown() stop each session: that
            # cancels the session's reader inside asyncio.wait_for, and Python 3.11's wait_for loses a
            # cancellation that races with arriving data (here a PUBACK), so shutdown then waited
            # for the client's next packet, up to a keep-alive period.
            for writer in self._connections.values():
                writer.transport.abort()
            await self._end_connections()
            await broker.shutdown()
            await server.wait_closed()
        finally:
            _QuietLoggers.release()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, from CONNECT to its end, as amqtt's own TCP listener would serve it."""
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            broker = self._broker
            if broker is not None:
                await broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer),
                                                _LISTENER)
        except Exception as error:  # a client's fault must not reach asyncio's "unhandled" log
            logger.debug("MQTT connection ended with %r", error)
        finally:
            del self._connections[task]
            if not writer.transport.is_closing():
                writer.close()

    async def _end_connections(self) -> None:
        """Wait until amqtt has ended the session of every dropped connection."""
        pending = set(self._connections)
        if not pending:
            return
        _, still_running = await asyncio.wait(pending, timeout=CONNECTION_CLOSE_TIMEOUT_S)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)


@contextlib.asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[EmbeddedBroker]:
    """A started :class:`EmbeddedBroker`, stopped on exit."""
    broker = EmbeddedBroker(host, port)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
