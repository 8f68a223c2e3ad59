"""Test rig for the brokers: identities in a dict, either broker on a free port, paho peers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from conftest import free_port, wait_for
from mqtt_broker import mosquitto
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from controller.broker.embedded import LOCALHOST, EmbeddedBroker
from controller.broker.identities import CONTROLLER_USERNAME, BrokerIdentity, Role
from controller.broker.mosquitto_config import MosquittoFiles, reload, write_mosquitto_config
from controller.broker.passwd import hash_password, new_secret

SUBACK_FAILURE = 0x80


class DictIdentities:
    """An `IdentitySource` in a dict; `add` returns the new identity's password."""

    def __init__(self) -> None:
        self._by_name: dict[str, BrokerIdentity] = {}

    def add(self, username: str, role: Role = "agent") -> str:
        password = new_secret()
        self._by_name[username] = BrokerIdentity(username, hash_password(password), role)
        return password

    def revoke(self, username: str) -> None:
        del self._by_name[username]

    def identity(self, username: str) -> BrokerIdentity | None:
        return self._by_name.get(username)

    def identities(self) -> list[BrokerIdentity]:
        return list(self._by_name.values())


@dataclass
class Rig:
    """A running broker and who may use it. `apply()` makes identity changes take effect."""

    kind: Literal["embedded", "mosquitto"]
    port: int
    identities: DictIdentities
    passwords: dict[str, str]
    apply: Callable[[], None] = lambda: None

    def add(self, username: str, role: Role = "agent") -> None:
        self.passwords[username] = self.identities.add(username, role)
        self.apply()

    def revoke(self, username: str) -> None:
        self.identities.revoke(username)
        self.apply()

    def peer(self, username: str, client_id: str | None = None, **kwargs: bool) -> Peer:
        return Peer(self.port, client_id or username, username, self.passwords[username], **kwargs)

    def admits(self, username: str) -> bool:
        """Whether `username` with its password can connect now (the connection is closed)."""
        peer = self.peer(username)
        admitted = not peer.try_connect().is_failure
        peer.close()
        return admitted


def standard_identities() -> tuple[DictIdentities, dict[str, str]]:
    """Two agents, a1 and a2, and the controller."""
    identities = DictIdentities()
    passwords = {name: identities.add(name) for name in ("a1", "a2")}
    passwords[CONTROLLER_USERNAME] = identities.add(CONTROLLER_USERNAME, "controller")
    return identities, passwords


@contextmanager
def embedded_rig() -> Iterator[Rig]:
    identities, passwords = standard_identities()
    broker = EmbeddedBroker(LOCALHOST, free_port(), identities)
    broker.start()
    try:
        yield Rig("embedded", broker.port, identities, passwords)
    finally:
        broker.stop()


def write_config(workdir: Path, identities: DictIdentities, port: int) -> MosquittoFiles:
    return write_mosquitto_config(workdir, identities.identities(), port=port)


@contextmanager
def mosquitto_rig(workdir: Path) -> Iterator[Rig]:
    identities, passwords = standard_identities()
    port = free_port()
    files = write_config(workdir, identities, port)
    with mosquitto(files.config, port) as proc:

        def apply() -> None:
            write_config(workdir, identities, port)
            reload(proc.pid)

        yield Rig("mosquitto", port, identities, passwords, apply)


@contextmanager
def any_rig(kind: str, workdir: Path) -> Iterator[Rig]:
    with embedded_rig() if kind == "embedded" else mosquitto_rig(workdir) as rig:
        yield rig


@dataclass
class Received:
    topic: str
    payload: bytes


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    connack: ReasonCode | None = None
    session_present: bool = False
    disconnected: bool = False
    subacks: dict[int, list[int]] = field(default_factory=dict)
    messages: list[Received] = field(default_factory=list)
    acked: int = 0


class Peer:
    """A paho MQTT 3.1.1 client as agents and the controller use it, with waits on its state."""

    def __init__(
        self,
        port: int,
        client_id: str,
        username: str,
        password: str,
        *,
        clean_session: bool = False,
        manual_ack: bool = False,  # True: never PUBACK what arrives (a client that dies mid-way)
    ) -> None:
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        self.client.username_pw_set(username, password)
        self.state = _State()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    # -- paho callbacks (its network thread) --
    def _on_connect(
        self, _c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: object
    ) -> None:
        with self.state.lock:
            self.state.connack, self.state.session_present = rc, flags.session_present

    def _on_disconnect(self, *_args: object) -> None:
        with self.state.lock:
            self.state.disconnected = True

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode], _p: object
    ) -> None:
        with self.state.lock:
            self.state.subacks[mid] = [code.value for code in codes]

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.state.lock:
            self.state.messages.append(Received(message.topic, bytes(message.payload)))

    def _on_publish(self, *_args: object) -> None:
        with self.state.lock:
            self.state.acked += 1

    # -- what tests call --
    def try_connect(self, timeout: float = 10) -> ReasonCode:
        """Connect and return the CONNACK's code (success or refusal)."""
        self.client.connect(LOCALHOST, self.port, keepalive=30)
        self.client.loop_start()
        rc = wait_for(lambda: self.state.connack, timeout, what="CONNACK")
        if rc.is_failure:
            self.client.loop_stop()
        return rc

    def connect(self, timeout: float = 10) -> Peer:
        rc = self.try_connect(timeout)
        assert not rc.is_failure, f"connect refused: {rc}"
        return self

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[int]:
        """Subscribe and return the SUBACK's codes (granted QoS, or 0x80 for refused)."""
        result, mid = self.client.subscribe(topic_filter, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        return wait_for(lambda: self.state.subacks.get(mid), 10, what=f"SUBACK {topic_filter}")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(30)  # generous: the embedded broker shares a loaded test machine
        assert info.is_published(), f"{topic}: not acknowledged by the broker"

    def messages(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.messages)

    def wait_for_message(self, topic: str, payload: bytes, timeout: float = 10) -> list[Received]:
        """All messages received up to and including the first (topic, payload) one."""

        def arrived() -> list[Received] | None:
            got = self.messages()
            for index, message in enumerate(got):
                if (message.topic, message.payload) == (topic, payload):
                    return got[: index + 1]
            return None

        return wait_for(arrived, timeout, what=f"{payload!r} on {topic}")

    def close(self) -> None:
        """Disconnect cleanly (DISCONNECT, so no last will) and stop the network thread."""
        if self.state.connack is not None and not self.state.connack.is_failure:
            self.client.disconnect()
            wait_for(lambda: self.state.disconnected, 10, what="disconnect")
        self.client.loop_stop()


@contextmanager
def connected(rig: Rig, username: str, client_id: str | None = None) -> Iterator[Peer]:
    peer = rig.peer(username, client_id).connect()
    try:
        yield peer
    finally:
        peer.close()
