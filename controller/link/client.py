"""The controller's MQTT connection: subscribes to everything agents send, publishes what they
should run. Persistent session (clean_session false, a stable client id), so messages sent
while the controller restarts wait at the broker instead of being lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from controller.broker.identities import CONTROLLER_USERNAME
from controller.link.dispatch import Dispatcher
from fleet.messages import BaseMessage, encode_message
from fleet.topics import TOPICS, TopicKind, build_topic, controller_subscriptions
from fleet.utc import now_us

log = logging.getLogger("camfleet.controller.link")

CLIENT_ID: Final = "camfleet-controller"


class ControllerLink:
    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        dispatcher: Dispatcher,
        username: str = CONTROLLER_USERNAME,
        on_connect: Callable[[], None] = lambda: None,
    ) -> None:
        self.host = host
        self.on_connect = on_connect  # e.g. republish desired states: the broker may be new
        self.port = port
        self.dispatcher = dispatcher
        self.connected = threading.Event()
        self.up_since_us: int | None = None
        self.connects = 0
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=CLIENT_ID,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        c.username_pw_set(username, password)
        c.reconnect_delay_set(1, 10)
        # QoS 1 in flight: enough to keep a burst flowing, bounded so memory is too.
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, agent_id: str, kind: TopicKind, msg: BaseMessage | None) -> None:
        """Send to an agent's topic; None clears a retained topic (an empty retained payload)."""
        spec = TOPICS[kind]
        payload = b"" if msg is None else encode_message(msg)
        self._client.publish(build_topic(agent_id, kind), payload, spec.qos, spec.retained)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker %s:%d refused the controller: %s", self.host, self.port, reason)
            return
        self.connects += 1
        client.subscribe([(s.filter, int(s.qos)) for s in controller_subscriptions()])
        log.info("connected to broker %s:%d", self.host, self.port)
        self.up_since_us = now_us()
        self.connected.set()
        self.on_connect()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        self.up_since_us = None
        log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.dispatcher.handle(msg.topic, bytes(msg.payload), now_us())
