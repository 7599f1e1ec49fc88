"""The production broker security (deploy/mosquitto) enforced by a real mosquitto.

The broker runs the real ``deploy/mosquitto/mosquitto.conf`` and ``acl``; the test only moves the
listeners to free ports on 127.0.0.1 and the certificate, password and ACL paths into a temp dir.
Homes are added with the real ``add-home.sh``; the manager with ``mosquitto_passwd -b``.

A denied publish is dropped silently by mosquitto (MQTT 3.1.1 has no way to say no), so every
"never arrives" assertion waits for a legitimate message sent after the forged one on the same
path: once that arrived, the forged one would have arrived before it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.topics import GridTopic, HomeTopic, Topics
from tests.conftest import wait_for
from tests.mosquitto import MosquittoBroker, free_tcp_port, mosquitto_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
TOPICS = Topics("c1")
MANAGER_PASSWORD = "manager-secret"
GRID_OPERATOR_PASSWORD = "grid-operator-secret"
HOME_PASSWORDS = {"home1": "home1-secret", "home2": "home2-secret"}
CONNECT_TIMEOUT_S = 3.0

pytestmark = pytest.mark.skipif(mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None
                                or shutil.which("openssl") is None,
                                reason="needs mosquitto, mosquitto_passwd and openssl")


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, a server certificate and client certificates it signed (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    directory: Path

    def client(self, name: str) -> tuple[Path, Path]:
        """Certificate and key of the client ``name`` (its CN)."""
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_test_pki(directory: Path, clients: tuple[str, ...] = ()) -> Pki:
    """A CA, a server certificate for ``localhost`` and ``127.0.0.1`` and a client certificate with
    CN=name for each of ``clients`` (P-256 keys, valid 2 days), made with the openssl CLI the way
    deploy/mosquitto/README.md tells operators to."""
    directory.mkdir(parents=True, exist_ok=True)
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *p256, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=hems test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-new", *p256, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
             cwd=directory)
    (directory / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "server.ext", cwd=directory)
    (directory / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    for name in clients:
        _openssl("req", "-new", *p256, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                 cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", "client.ext", cwd=directory)
    return Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key", directory)


def production_config(source: str, *, port: int, tls_port: int, paths: dict[str, Path],
                      replace: dict[str, str] | None = None) -> str:
    """``source`` (deploy/mosquitto/mosquitto.conf) with its listeners moved to ``port`` (the local
    plain one) and ``tls_port`` on 127.0.0.1 and every file option pointed at ``paths[option]``;
    ``replace`` swaps whole lines (as README.md tells operators to). Fails if the file has a listener
    or file option the test does not know: then this test would no longer run the production
    settings."""
    replace = dict(replace or {})
    listeners = {"listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
                 "listener 8883": f"listener {tls_port} 127.0.0.1"}
    out = ["persistence false", "log_dest stderr", "log_type all"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        out.append("user root")  # see tests/mosquitto.py: the broker must read our temp files
    seen: set[str] = set()
    for line in source.splitlines():
        text = line.strip()
        key = text.split(" ", 1)[0]
        if text in replace:
            out.append(replace.pop(text))
        elif not text or text.startswith("#"):
            out.append(line)
        elif text in listeners:
            out.append(listeners[text])
            seen.add(text)
        elif key == "listener":
            raise AssertionError(f"unexpected listener in the production config: {text!r}")
        elif key in paths:
            out.append(f"{key} {paths[key]}")
            seen.add(key)
        elif text.startswith("/") or " /" in text:
            raise AssertionError(f"production config line with a path the test does not move: {text!r}")
        else:
            out.append(line)
    missing = (set(listeners) | set(paths) | set(replace)) - seen
    assert not missing, f"production config lacks {sorted(missing)}"
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), clients=("home1",))


def start_production_broker(tmp_path: Path, pki: Pki,
                            replace: dict[str, str] | None = None) -> MosquittoBroker:
    """mosquitto with the production config, ACL and a password file of home1, home2, manager and
    grid-operator."""
    passwd = tmp_path / "passwd"
    for home, password in HOME_PASSWORDS.items():
        subprocess.run([str(DEPLOY / "add-home.sh"), "--password-file", str(passwd), home], check=True,
                       capture_output=True, timeout=30, env={**os.environ, "HEMS_HOME_PASSWORD": password})
    for user, password in (("manager", MANAGER_PASSWORD), ("grid-operator", GRID_OPERATOR_PASSWORD)):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                       capture_output=True, timeout=30)
    port = free_tcp_port()
    tls_port = free_tcp_port()
    while tls_port == port:
        tls_port = free_tcp_port()
    config = tmp_path / "hems.conf"
    config.write_text(production_config(
        (DEPLOY / "mosquitto.conf").read_text(), port=port, tls_port=tls_port,
        paths={"password_file": passwd, "acl_file": DEPLOY / "acl", "cafile": pki.ca_file,
               "certfile": pki.cert_file, "keyfile": pki.key_file}, replace=replace))
    return MosquittoBroker(tmp_path / "broker", port=port, tls_port=tls_port, config_file=config).start()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[MosquittoBroker]:
    """One production broker for the module (a start and stop cost ~0.15 s): every test stops its
    links, and no test leaves a retained message behind."""
    running = start_production_broker(tmp_path_factory.mktemp("secured-broker"), pki)
    yield running
    running.stop()


class Links:
    """Starts links as given users and stops them all at the end."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.started: list[MqttLink] = []

    def settings(self, user: str | None, password: str | None = None, *, client_id: str | None = None,
                 url: str | None = None, ca_file: Path | None = None,
                 client_cert: tuple[Path, Path] | None = None) -> BrokerSettings:
        if password is None and user is not None and client_cert is None:
            password = {"manager": MANAGER_PASSWORD, "grid-operator": GRID_OPERATOR_PASSWORD,
                        **HOME_PASSWORDS}[user]
        cert_file, key_file = client_cert or (None, None)
        return BrokerSettings(url or self.broker.url, client_id or f"hems-{user}",
                              username=None if client_cert else user, password=password, ca_file=ca_file,
                              cert_file=cert_file, key_file=key_file, persistent_session=False,
                              reconnect_min_s=0.05, reconnect_max_s=0.5)

    async def start(self, settings: BrokerSettings, *filters: str,
                    user: str | None = None) -> tuple[MqttLink, list[IncomingMessage]]:
        """A connected link subscribed to ``filters`` (in place at the broker) and its inbox; ``user``
        is the name the broker knows it by (default: the settings' username)."""
        inbox: list[IncomingMessage] = []

        async def collect(message: IncomingMessage) -> None:
            inbox.append(message)

        link = MqttLink(settings)
        for topic_filter in filters:
            link.subscribe(topic_filter, collect)
        self.started.append(link)
        await link.start(connect_timeout_s=CONNECT_TIMEOUT_S)
        await settle(link, user or settings.username)
        return link, inbox

    async def close(self) -> None:
        for link in self.started:
            await link.stop()


async def settle(link: MqttLink, user: str | None) -> None:
    """Return once the broker processed everything the link sent before (a QoS 1 round trip on the
    same connection: mosquitto handles one client's packets in order, so its subscriptions are in)."""
    topic = {"manager": TOPICS.market_signal(), "grid-operator": TOPICS.grid(GridTopic.REQUEST)}.get(
        str(user), TOPICS.home(str(user), HomeTopic.STATUS))
    assert await link.publish(topic, b"settle", timeout_s=CONNECT_TIMEOUT_S)


@pytest.fixture
async def links(broker: MosquittoBroker) -> AsyncIterator[Links]:
    started = Links(broker)
    yield started
    await started.close()


def topics_of(inbox: list[IncomingMessage]) -> list[str]:
    return [message.topic for message in inbox]


async def test_allowed_traffic_flows_both_ways(links: Links) -> None:
    """The positive control: the ACL is not so strict that the protocol breaks."""
    manager, manager_inbox = await links.start(links.settings("manager"), TOPICS.all_homes(HomeTopic.ORDERS),
                                               TOPICS.all_homes(HomeTopic.METER))
    home, home_inbox = await links.start(links.settings("home1"), "hems/v1/+/home/home1/#",
                                         "hems/v1/+/market/#", "hems/v1/+/vpp/#")
    for leaf in (HomeTopic.ORDERS, HomeTopic.METER):
        assert await home.publish(TOPICS.home("home1", leaf), b"from home1")
    for topic in (TOPICS.market_config(), TOPICS.vpp_request(), TOPICS.home("home1", HomeTopic.ALLOCATION),
                  TOPICS.home("home1", HomeTopic.ACK)):
        assert await manager.publish(topic, b"from manager")

    def from_manager() -> list[str]:
        return [m.topic for m in home_inbox if m.payload == b"from manager"]

    await wait_for(lambda: len(manager_inbox) == 2 and len(from_manager()) == 4, timeout_s=3)
    assert topics_of(manager_inbox) == [TOPICS.home("home1", HomeTopic.ORDERS), TOPICS.home("home1", HomeTopic.METER)]
    assert from_manager() == [
        TOPICS.market_config(), TOPICS.vpp_request(), TOPICS.home("home1", HomeTopic.ALLOCATION),
        TOPICS.home("home1", HomeTopic.ACK)]


@pytest.mark.parametrize("leaf", [HomeTopic.ORDERS, HomeTopic.COMMITMENT_ANSWER])
async def test_home_publishes_as_itself_only(links: Links, leaf: HomeTopic) -> None:
    """Its own orders and answers to power-plant commitments, never another home's."""
    _, manager_inbox = await links.start(links.settings("manager"), TOPICS.all_homes(leaf))
    home1, _ = await links.start(links.settings("home1"))
    await home1.publish(TOPICS.home("home2", leaf), b"forged by home1")
    assert await home1.publish(TOPICS.home("home1", leaf), b"home1's own")
    await wait_for(lambda: any(m.payload == b"home1's own" for m in manager_inbox), timeout_s=3)
    assert [(m.topic, m.payload) for m in manager_inbox] == [(TOPICS.home("home1", leaf), b"home1's own")]


async def test_home_cannot_write_the_managers_topics(links: Links) -> None:
    """Not market/ or vpp/, and not its own ack or allocation either (those are the manager's words)."""
    manager, manager_inbox = await links.start(links.settings("manager"), "hems/v1/#")
    home1, _ = await links.start(links.settings("home1"))
    forged = [TOPICS.market_config(), TOPICS.market_signal(), TOPICS.vpp_request(),
              TOPICS.home("home1", HomeTopic.ALLOCATION), TOPICS.home("home1", HomeTopic.ACK)]
    for topic in forged:
        await home1.publish(topic, b"forged", retain=True)
    assert await home1.publish(TOPICS.home("home1", HomeTopic.METER), b"legit")
    await wait_for(lambda: any(m.payload == b"legit" for m in manager_inbox), timeout_s=3)
    assert [m.topic for m in manager_inbox if m.payload != b"settle"] == [TOPICS.home("home1", HomeTopic.METER)]
    # Nothing was retained either. mosquitto sends retained messages right after the SUBACK, so they
    # are in the inbox once the settle round trip after the subscription is done. The late reader is
    # the manager again: one connection per user (use_username_as_clientid), so stop the first.
    await manager.stop()
    _, late_inbox = await links.start(links.settings("manager"), "hems/v1/#")
    assert [m.payload for m in late_inbox if m.retain] == []


async def test_home_cannot_read_another_homes_allocation(links: Links) -> None:
    manager, _ = await links.start(links.settings("manager"))
    _, home1_inbox = await links.start(links.settings("home1"), TOPICS.home("home1", HomeTopic.ALLOCATION))
    _, home2_inbox = await links.start(links.settings("home2"), TOPICS.home("home1", HomeTopic.ALLOCATION),
                                       TOPICS.all_homes(HomeTopic.ALLOCATION),
                                       TOPICS.home("home2", HomeTopic.ALLOCATION))
    assert await manager.publish(TOPICS.home("home1", HomeTopic.ALLOCATION), b"home1's allocation")
    assert await manager.publish(TOPICS.home("home2", HomeTopic.ALLOCATION), b"home2's allocation")
    await wait_for(lambda: len(home1_inbox) == 1 and len(home2_inbox) >= 1, timeout_s=3)
    assert [m.payload for m in home1_inbox] == [b"home1's allocation"]
    # home2's own allocation arrived after home1's was published: home1's would have come first.
    assert {m.payload for m in home2_inbox} == {b"home2's allocation"}


async def test_the_grid_operator_uses_the_grid_subtree_and_nothing_else(links: Links) -> None:
    manager, manager_inbox = await links.start(links.settings("manager"), "hems/v1/#")
    operator, operator_inbox = await links.start(links.settings("grid-operator"), "hems/v1/#")
    home1, _ = await links.start(links.settings("home1"))
    for topic in (TOPICS.home("home1", HomeTopic.ORDERS), TOPICS.market_config(), TOPICS.vpp_request(),
                  TOPICS.grid(GridTopic.RESPONSE), TOPICS.grid(GridTopic.ACK)):
        await operator.publish(topic, b"forged by the operator")
    for leaf in (GridTopic.LIMITS, GridTopic.REQUEST):
        await home1.publish(TOPICS.grid(leaf), b"forged by home1")
    for leaf in (GridTopic.LIMITS, GridTopic.REQUEST):
        assert await operator.publish(TOPICS.grid(leaf), b"from the operator")
    for leaf in (GridTopic.RESPONSE, GridTopic.OFFERS, GridTopic.ACK):
        assert await manager.publish(TOPICS.grid(leaf), b"from the manager")
    assert await manager.publish(TOPICS.home("home1", HomeTopic.ALLOCATION), b"not for the operator")
    assert await home1.publish(TOPICS.home("home1", HomeTopic.METER), b"not for the operator either")

    def payloads(inbox: list[IncomingMessage], payload: bytes) -> list[str]:
        return [m.topic for m in inbox if m.payload == payload]

    await wait_for(lambda: len(payloads(manager_inbox, b"from the operator")) == 2
                   and len(payloads(operator_inbox, b"from the manager")) == 3
                   and payloads(manager_inbox, b"not for the operator either"), timeout_s=3)
    assert payloads(manager_inbox, b"from the operator") == [TOPICS.grid(GridTopic.LIMITS),
                                                              TOPICS.grid(GridTopic.REQUEST)]
    assert payloads(manager_inbox, b"forged by the operator") == payloads(manager_inbox, b"forged by home1") == []
    # The operator reads grid/ (its own messages included) and nothing of the homes.
    assert {m.topic for m in operator_inbox if m.payload != b"settle"} == {
        TOPICS.grid(leaf) for leaf in (GridTopic.LIMITS, GridTopic.REQUEST, GridTopic.RESPONSE, GridTopic.OFFERS,
                                       GridTopic.ACK)}


async def test_anonymous_client_is_refused(links: Links) -> None:
    # Refused twice over: allow_anonymous false, and use_username_as_clientid needs a username.
    link = MqttLink(links.settings(None))
    with pytest.raises(ConnectionError, match="[Nn]ot authori[sz]ed"):
        await link.start(connect_timeout_s=CONNECT_TIMEOUT_S)
    assert not link.connected


@pytest.mark.parametrize("user,password", [("home1", "wrong"), ("home1", HOME_PASSWORDS["home2"]),
                                           ("stranger", "anything"), ("manager", HOME_PASSWORDS["home1"])])
async def test_wrong_credentials_are_refused(links: Links, user: str, password: str) -> None:
    link = MqttLink(links.settings(user, password))
    with pytest.raises(ConnectionError):
        await link.start(connect_timeout_s=CONNECT_TIMEOUT_S)


async def test_a_home_cannot_take_over_another_homes_session(links: Links) -> None:
    """use_username_as_clientid: home2 reusing home1's client id neither kicks home1 off nor gets its
    messages."""
    manager, _ = await links.start(links.settings("manager"))
    home1, home1_inbox = await links.start(links.settings("home1", client_id="hems-home1"),
                                           TOPICS.home("home1", HomeTopic.ALLOCATION))
    _, home2_inbox = await links.start(links.settings("home2", client_id="hems-home1"), "hems/v1/#")
    assert await manager.publish(TOPICS.home("home1", HomeTopic.ALLOCATION), b"for home1")
    await wait_for(lambda: len(home1_inbox) == 1, timeout_s=3)
    await settle(home1, "home1")
    assert home1.stats.connects == 1 and home1.connected
    assert not [m for m in home2_inbox if m.payload == b"for home1"]


async def test_tls_listener_with_the_ca(links: Links, broker: MosquittoBroker, pki: Pki) -> None:
    _, manager_inbox = await links.start(links.settings("manager"), TOPICS.all_homes(HomeTopic.ORDERS))
    for host in ("127.0.0.1", "localhost"):
        url = f"mqtts://{host}:{broker.tls_port}"
        home, _ = await links.start(links.settings("home1", url=url, ca_file=pki.ca_file,
                                                   client_id=f"tls-{host}"))
        assert await home.publish(TOPICS.home("home1", HomeTopic.ORDERS), host.encode())
        await home.stop()
    await wait_for(lambda: len(manager_inbox) == 2, timeout_s=3)
    assert [m.payload for m in manager_inbox] == [b"127.0.0.1", b"localhost"]


async def test_client_certificates_as_the_readme_describes(tmp_path: Path, pki: Pki) -> None:
    """require_certificate + use_identity_as_username: the CN is the home id the ACL sees."""
    cert_mode = start_production_broker(tmp_path, pki, replace={
        "require_certificate false": "require_certificate true\nuse_identity_as_username true"})
    links = Links(cert_mode)
    try:
        _, manager_inbox = await links.start(links.settings("manager"), TOPICS.all_homes(HomeTopic.ORDERS))
        home1, _ = await links.start(links.settings("home1", url=cert_mode.tls_url, ca_file=pki.ca_file,
                                                    client_cert=pki.client("home1")), user="home1")
        await home1.publish(TOPICS.home("home2", HomeTopic.ORDERS), b"forged")
        assert await home1.publish(TOPICS.home("home1", HomeTopic.ORDERS), b"own")
        await wait_for(lambda: manager_inbox, timeout_s=3)
        assert [(m.topic, m.payload) for m in manager_inbox] == [(TOPICS.home("home1", HomeTopic.ORDERS), b"own")]
        no_cert = MqttLink(links.settings("home1", url=cert_mode.tls_url, ca_file=pki.ca_file))
        with pytest.raises((ConnectionError, TimeoutError)):
            await no_cert.start(connect_timeout_s=0.2)
    finally:
        await links.close()
        cert_mode.stop()


async def test_tls_listener_rejects_a_client_that_does_not_trust_the_ca(links: Links,
                                                                         broker: MosquittoBroker) -> None:
    link = MqttLink(links.settings("home1", url=broker.tls_url))  # system CAs only
    with pytest.raises(TimeoutError, match="CERTIFICATE_VERIFY_FAILED"):
        await link.start(connect_timeout_s=0.3)


@pytest.mark.parametrize("home_id", ["manager", "grid-operator", "a/b", "+", "#", "", "x" * 65])
def test_add_home_refuses_ids_that_could_escape_the_acl(tmp_path: Path, home_id: str) -> None:
    passwd = tmp_path / "passwd"
    result = subprocess.run([str(DEPLOY / "add-home.sh"), "--password-file", str(passwd), home_id],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert not passwd.exists()


def test_add_home_replaces_a_password_and_keeps_other_homes(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    script = str(DEPLOY / "add-home.sh")
    for home in ("home1", "home2", "home1"):
        subprocess.run([script, "--password-file", str(passwd), home], check=True, capture_output=True,
                       timeout=30)
    users = [line.split(":", 1)[0] for line in passwd.read_text().splitlines()]
    assert sorted(users) == ["home1", "home2"]
    assert "$7$" in passwd.read_text()  # hashed, never the plain password


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_add_home_script_is_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(DEPLOY / "add-home.sh")], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout
