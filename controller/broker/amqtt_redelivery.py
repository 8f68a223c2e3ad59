"""Keep the QoS 1 messages amqtt gives up on for a persistent session, and deliver them later.

amqtt 0.12 drops a QoS 1 message from a session when its PUBACK does not come: when the client
disconnects first (the wait is cancelled), when the connection died just before the send, or
after 5 s. Nothing redelivers it, though MQTT requires it after a reconnect: a controller that
reconnects during a burst of events would miss the ones in flight. amqtt keeps those messages
in `session.inflight_out` and removes each when its flow ends; this plugin gives every persistent
session an `inflight_out` that, when a message leaves without its PUBACK, puts it in the
session's queue, which amqtt delivers when the client connects again. A message whose PUBACK
was lost on the way may then arrive twice: at least once, as QoS 1 promises.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from amqtt.broker import RetainedApplicationMessage  # type: ignore[import-untyped]
from amqtt.plugins.base import BasePlugin  # type: ignore[import-untyped]
from amqtt.session import Session  # type: ignore[import-untyped]


class _RequeueUnacked(OrderedDict[int, Any]):
    """`session.inflight_out` that hands back unacknowledged QoS 1 messages to the session."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.inflight_out)
        self._session = session

    def pop(self, key: int, default: Any = None) -> Any:
        message = super().pop(key, default)
        if message is not None and message.qos == 1 and message.puback_packet is None:
            retry = RetainedApplicationMessage(None, message.topic, message.data, message.qos)
            self._session.retained_messages.put_nowait(retry)  # an unbounded asyncio.Queue
        return message


class RedeliverUnackedPlugin(BasePlugin):  # type: ignore[misc]
    async def on_broker_client_connected(self, *, client_id: str, client_session: Session) -> None:
        if client_session.clean_session is False and not isinstance(
            client_session.inflight_out, _RequeueUnacked
        ):
            client_session.inflight_out = _RequeueUnacked(client_session)
