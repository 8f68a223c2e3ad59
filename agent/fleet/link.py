"""The agent's MQTT connection (paho-mqtt 2, MQTT 3.1.1, a persistent session per agent id).

Every connection attempt takes a new presence session number and sets the last will to the
offline status of that session; once connected the agent publishes the online status of the
same session (retained) and subscribes to its own controller → agent topics. paho reconnects by
itself with capped exponential backoff and re-sends unacknowledged QoS 1 messages.

Incoming payloads are checked (topic, size, message type) before a listener sees them;
anything else is logged (never with its content: desired states carry camera passwords) and
dropped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.fleet.outbox import Qos
from agent.fleet.session import SessionCounter
from fleet.enrollment import AgentCredentials
from fleet.messages import AgentStatus, BaseMessage, MessageError, encode_message, parse_message
from fleet.topics import (
    TOPICS,
    Direction,
    TopicError,
    TopicKind,
    agent_subscriptions,
    build_topic,
    parse_topic,
)
from fleet.utc import now_us

log = logging.getLogger("camfleet.agent.fleet.link")

# Far above any real desired state (1024 cameras with ROIs); a bigger payload is refused
# before it is parsed.
MAX_PAYLOAD_BYTES: Final = 8 * 1024 * 1024
KEEPALIVE_S: Final = 30
RETRY_MIN_S: Final = 1
RETRY_MAX_S: Final = 30

Presence = Literal["online", "offline"]


class LinkListener(Protocol):
    """Called on paho's network thread: must not block."""

    def connected(self, session: int) -> None: ...
    def disconnected(self, reason: str) -> None: ...
    def published(self, mid: int) -> None: ...
    def received(self, kind: TopicKind, message: BaseMessage) -> None: ...


class AgentLink:
    def __init__(
        self,
        creds: AgentCredentials,
        sessions: SessionCounter,
        listener: LinkListener,
        software_version: str,
        subnets: Sequence[str] = (),
        capabilities: Sequence[str] = ("h264",),
        http_url: str | None = None,
        retry_min_s: int = RETRY_MIN_S,
        retry_max_s: int = RETRY_MAX_S,
    ) -> None:
        self.agent_id = creds.agent_id
        self.sessions, self.listener = sessions, listener
        self.software_version = software_version
        self.subnets, self.capabilities = list(subnets), list(capabilities)
        self.http_url = http_url
        self._broker = creds.broker
        self._connected = threading.Event()
        self._stopping = False
        self._session_of_connection = 0
        self._refused: Counter[str] = Counter()  # incoming messages dropped, by reason
        self._refused_lock = threading.Lock()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.agent_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.username_pw_set(creds.broker.username, creds.broker.password.get_secret_value())
        if creds.broker.tls:
            client.tls_set()
        client.reconnect_delay_set(retry_min_s, retry_max_s)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def session(self) -> int:
        return self.sessions.current

    def start(self) -> None:
        self._client.connect_async(self._broker.host, self._broker.port, KEEPALIVE_S)
        self._client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say offline (a clean disconnect sends no will), then disconnect."""
        self._stopping = True
        if self.connected:
            info = self._client.publish(*self._status_args("offline"))
            # Lost meanwhile (RuntimeError, ValueError): then the will says it instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: Qos, retain: bool) -> int:
        """Queue a message (paho keeps QoS > 0 while disconnected); returns its message id."""
        return self._client.publish(topic, payload, qos, retain).mid

    def send(self, kind: TopicKind, message: BaseMessage) -> int:
        """Publish on the agent's `kind` topic with that topic's QoS and retain flag."""
        spec = TOPICS[kind]
        return self.publish(
            build_topic(self.agent_id, kind), encode_message(message), spec.qos, spec.retained
        )

    def status(self, state: Presence) -> AgentStatus:
        return AgentStatus(
            agent_id=self.agent_id,
            state=state,
            session=self._session_of_connection,
            software_version=self.software_version,
            capabilities=self.capabilities,
            subnets=self.subnets,
            http_url=self.http_url,
            ts=now_us(),
        )

    def _status_args(self, state: Presence) -> tuple[str, bytes, int, bool]:
        spec = TOPICS[TopicKind.STATUS]
        topic = build_topic(self.agent_id, TopicKind.STATUS)
        return topic, encode_message(self.status(state)), spec.qos, spec.retained

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._session_of_connection = self.sessions.next()
        client.will_set(*self._status_args("offline"))

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            log.error("broker %s:%d refused the connection: %s", self._broker.host,
                      self._broker.port, reason)  # fmt: skip
            return
        client.publish(*self._status_args("online"))
        topics: list[tuple[str, int]] = [
            (s.filter, s.qos) for s in agent_subscriptions(self.agent_id)
        ]
        client.subscribe(topics)
        self._connected.set()
        log.info("connected to %s:%d (session %d)", self._broker.host, self._broker.port,
                 self._session_of_connection)  # fmt: skip
        self.listener.connected(self._session_of_connection)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        was = self.connected
        self._connected.clear()
        if was:
            log.log(logging.INFO if self._stopping else logging.WARNING,
                    "disconnected from the broker: %s", reason)  # fmt: skip
            self.listener.disconnected(str(reason))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        self.listener.published(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            where = parse_topic(msg.topic)
        except TopicError as exc:
            return self._refuse("bad topic", str(exc))
        if where.agent_id != self.agent_id or where.spec.direction is not Direction.DOWN:
            return self._refuse("not for this agent", f"message on {msg.topic}")
        if not msg.payload:
            return None  # a cleared retained topic: nothing to apply
        if len(msg.payload) > MAX_PAYLOAD_BYTES:
            return self._refuse("oversized", f"{len(msg.payload)} bytes on {where.kind.value}")
        try:
            message = parse_message(bytes(msg.payload), where.spec.payload)
        except MessageError as exc:
            return self._refuse(f"invalid {where.kind.value}", str(exc))
        try:
            self.listener.received(where.kind, message)
        except Exception:
            log.exception("handling a %s message failed", where.kind.value)
        return None

    def refusals(self) -> dict[str, int]:
        """Incoming messages dropped so far, by reason."""
        with self._refused_lock:
            return dict(self._refused)

    def _refuse(self, reason: str, detail: str) -> None:
        with self._refused_lock:
            self._refused[reason] += 1
        log.warning("dropped incoming message: %s: %s", reason, detail)
