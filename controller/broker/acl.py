"""Who may publish and subscribe where: the one ACL both brokers enforce (pure, no I/O).

An agent may publish only to its own agent → controller topics and subscribe only to its own
controller → agent topics (`agent_acl_patterns`: exact topics, no wildcards). The controller may
use everything under the camfleet prefix. A subscription is allowed only if every topic it can
match is allowed, so `camfleet/v1/agents/+/state/desired` or `#` is refused to an agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from controller.broker.identities import BrokerIdentity
from fleet.topics import PREFIX, AclPatterns, TopicError, agent_acl_patterns

# Everything the controller may publish and subscribe to: every protocol version's subtree, so
# it can serve `camfleet/v1` and `camfleet/v2` agents side by side during an upgrade.
CONTROLLER_FILTER: Final = f"{PREFIX.partition('/')[0]}/#"
_CONTROLLER_PATTERNS: Final = AclPatterns(
    publish=(CONTROLLER_FILTER,), subscribe=(CONTROLLER_FILTER,)
)
_MAX_TOPIC_BYTES: Final = 65535  # an MQTT string's length field


def acl_patterns(identity: BrokerIdentity) -> AclPatterns | None:
    """The filters `identity` may publish to and subscribe to; None if it gets nothing."""
    if identity.role == "controller":
        return _CONTROLLER_PATTERNS
    if identity.role == "agent":
        try:
            return agent_acl_patterns(identity.username)
        except TopicError:  # a username that is not an agent id owns no subtree
            return None
    return None


def may_publish(identity: BrokerIdentity, topic: str) -> bool:
    patterns = acl_patterns(identity)
    return (
        patterns is not None
        and is_topic_name(topic)
        and not topic.startswith("$")  # broker-owned topics ($SYS): clients never publish there
        and filter_covered(topic, patterns.publish)
    )


def may_subscribe(identity: BrokerIdentity, topic_filter: str) -> bool:
    patterns = acl_patterns(identity)
    return (
        patterns is not None
        and is_topic_filter(topic_filter)
        and filter_covered(topic_filter, patterns.subscribe)
    )


def is_topic_name(topic: str) -> bool:
    """A topic a message can be published to: non-empty, no wildcards, no NUL."""
    return is_topic_filter(topic) and "+" not in topic and "#" not in topic


def is_topic_filter(topic_filter: str) -> bool:
    """A valid MQTT subscription filter: `+` and `#` only as whole levels, `#` only last."""
    if not isinstance(topic_filter, str) or not topic_filter or "\0" in topic_filter:
        return False
    if len(topic_filter.encode("utf-8", "surrogatepass")) > _MAX_TOPIC_BYTES:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "+" in level and level != "+":
            return False
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
    return True


def filter_covered(topic_filter: str, patterns: Sequence[str]) -> bool:
    """Whether every topic that `topic_filter` matches is matched by one of `patterns`.

    A topic name (no wildcards) matches only itself, so this is also "does a pattern match this
    topic". Both arguments must be valid filters.
    """
    return _covered(topic_filter.split("/"), [p.split("/") for p in patterns], first=True)


def _covered(filter_levels: list[str], patterns: list[list[str]], *, first: bool) -> bool:
    if not filter_levels:
        # The topic ends here: a pattern that ends here matches it, and so does a trailing `#`,
        # which also matches its parent level (`a/#` matches `a`).
        return any(not p or p == ["#"] for p in patterns)
    head, rest = filter_levels[0], filter_levels[1:]
    if head == "#":
        # `#` matches the parent level itself and every longer topic: one more level, then `#`.
        # A leading `#` has no parent level (a topic has at least one level).
        parent = first or _covered([], patterns, first=first)
        return parent and _covered(["+", "#"], patterns, first=first)
    live = [p for p in patterns if p]
    if head == "+":
        # The level can be any string, including one no pattern names: only wildcards cover it.
        # Topics starting with `$` are not matched by a leading wildcard, so they need no cover.
        if any(p[0] == "#" for p in live):
            return True
        return _covered(rest, [p[1:] for p in live if p[0] == "+"], first=False)
    # A literal level; a leading wildcard in a pattern does not match a `$` topic.
    wild_ok = not (first and head.startswith("$"))
    if wild_ok and any(p[0] == "#" for p in live):
        return True
    return _covered(
        rest, [p[1:] for p in live if p[0] == head or (wild_ok and p[0] == "+")], first=False
    )
