"""amqtt's Broker with the ACL applied to every message a client is the source of.

amqtt 0.12 checks a client's PUBLISH against the topic plugins, but publishes and retains a
client's last will unchecked. Worse, it copies a CONNECT's will into the existing session of the
client id it names before authenticating that CONNECT, so even a refused client could plant a
will. Here every message with a client source is checked, will or not, against the ACL of the
session's owner (see `amqtt_plugins`) before it is sent or retained.
"""

from __future__ import annotations

import logging
import reprlib

from amqtt.broker import Broker  # type: ignore[import-untyped]
from amqtt.contexts import Action  # type: ignore[import-untyped]
from amqtt.session import Session  # type: ignore[import-untyped]

log = logging.getLogger(__name__)


class AclBroker(Broker):  # type: ignore[misc]
    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        if await self._source_may_publish(session, topic):
            await super()._broadcast_message(session, topic, data, force_qos)

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        if await self._source_may_publish(source_session, topic_name):
            await super().retain_message(source_session, topic_name, data, qos)

    async def _source_may_publish(self, session: Session | None, topic: str | None) -> bool:
        if session is None:  # the broker's own message
            return True
        if topic is not None and await self._topic_filtering(session, topic, Action.PUBLISH):
            return True
        log.warning(
            "dropped a message (a last will?) from client %s to %s: not permitted",
            reprlib.repr(session.client_id),
            reprlib.repr(topic),
        )
        return False
