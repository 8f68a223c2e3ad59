"""amqtt plugins that enforce the broker identities and `controller.broker.acl`.

amqtt builds each plugin from a dotted path and a `Config` dataclass filled from a dict, so the
`IdentitySource` travels in that dict (`plugin_config`). Identities are looked up on every
connect and every publish, subscribe and delivery, so revoking one takes effect at once, for
connections already open too. The source is called from the broker's thread.
"""

from __future__ import annotations

import logging
import reprlib
from dataclasses import dataclass
from typing import Any, Final

from amqtt.contexts import Action  # type: ignore[import-untyped]
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin  # type: ignore[import-untyped]
from amqtt.session import Session  # type: ignore[import-untyped]

from controller.broker.acl import may_publish, may_subscribe
from controller.broker.identities import BrokerIdentity, IdentitySource
from controller.broker.passwd import verify_password

log = logging.getLogger(__name__)

# The username that first authenticated a session. amqtt hands a reconnecting client id the
# existing session (with its subscriptions and queued messages) whoever connects, so a client id
# stays bound to its first user; topic checks use this owner, not the latest CONNECT's username.
_OWNER: Final = "camfleet.owner"


def plugin_config(identities: IdentitySource) -> dict[str, Any]:
    return {"identities": identities}


def _lookup(identities: IdentitySource, username: str) -> BrokerIdentity | None:
    try:
        return identities.identity(username)
    except Exception as exc:  # a failing registry refuses the client; the broker keeps serving
        log.warning("identity lookup for %s failed: %s", reprlib.repr(username), type(exc).__name__)
        return None


class IdentityAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accepts a CONNECT only with a known, unrevoked username and its password."""

    @dataclass
    class Config:
        identities: Any = None

    async def authenticate(self, *, session: Session) -> bool:
        username, password = session.username, session.password
        session.password = None  # the secret is not kept in the broker's session state
        if not username or password is None:
            return False
        identity = _lookup(self.config.identities, username)
        if identity is None or not verify_password(password, identity.password_hash):
            return False
        # amqtt publishes a last will without any topic check: refuse a will the identity could
        # not publish itself (Mosquitto drops such a will when it would send it).
        if session.will_flag and not may_publish(identity, session.will_topic or ""):
            log.warning("refused %s: last will on a topic it may not publish to", username)
            return False
        owner = session.attributes.setdefault(_OWNER, username)
        if owner != username:
            log.warning(
                "refused %s: client id %s belongs to another user",
                username,
                reprlib.repr(session.client_id),
            )
            return False
        return True


class IdentityTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Publish, subscribe and delivery checks from `controller.broker.acl`."""

    @dataclass
    class Config:
        identities: Any = None

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        owner = session.attributes.get(_OWNER) if session is not None else None
        if owner is None or topic is None:
            return False
        identity = _lookup(self.config.identities, owner)
        if identity is None:
            return False
        if action == Action.PUBLISH:
            return may_publish(identity, topic)
        # Delivery is checked like a subscription to that one topic: defence in depth, and it
        # stops a revoked identity's open subscriptions at once.
        return action in (Action.SUBSCRIBE, Action.RECEIVE) and may_subscribe(identity, topic)
