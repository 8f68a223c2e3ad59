"""The MQTT topic scheme: `camfleet/v1/agents/{agent_id}/{kind}`, one subtree per agent.

`TOPICS` describes every kind (direction, QoS, retained, payload type) so that clients, the
protocol document and broker ACLs are all derived from one table. One subtree per agent lets a
broker confine each agent to its own topics.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

from fleet.messages import (
    AGENT_ID_PATTERN,
    AgentStatus,
    BaseMessage,
    ClipChunk,
    ClipManifest,
    Command,
    CommandAck,
    DesiredState,
    DiscoveryReport,
    Event,
    Heartbeat,
    ModelArtifactDescriptor,
    ReportedState,
)

PREFIX: Final = "camfleet/v1"
_AGENTS: Final = f"{PREFIX}/agents/"


class TopicError(ValueError):
    """A topic or agent id that is not part of the scheme."""


class Direction(StrEnum):
    UP = "agent → controller"
    DOWN = "controller → agent"


class TopicKind(StrEnum):
    """The part of a topic after the agent id."""

    STATUS = "status"
    HEARTBEAT = "heartbeat"
    EVENTS = "events"
    CLIP_MANIFESTS = "clips/manifest"
    CLIP_CHUNKS = "clips/chunks"
    REPORTED_STATE = "state/reported"
    DESIRED_STATE = "state/desired"
    COMMANDS = "commands"
    ACKS = "acks"
    DISCOVERY = "discovery"
    MODELS = "models"


@dataclass(frozen=True)
class TopicSpec:
    direction: Direction
    qos: Literal[0, 1, 2]
    retained: bool
    payload: type[BaseMessage]


# Retained where the latest value is state a newcomer needs; QoS 0 only where a loss is
# harmless because the next message supersedes it.
TOPICS: Final = MappingProxyType(
    {
        TopicKind.STATUS: TopicSpec(Direction.UP, 1, True, AgentStatus),
        TopicKind.HEARTBEAT: TopicSpec(Direction.UP, 0, False, Heartbeat),
        TopicKind.EVENTS: TopicSpec(Direction.UP, 1, False, Event),
        TopicKind.CLIP_MANIFESTS: TopicSpec(Direction.UP, 1, False, ClipManifest),
        TopicKind.CLIP_CHUNKS: TopicSpec(Direction.UP, 1, False, ClipChunk),
        TopicKind.REPORTED_STATE: TopicSpec(Direction.UP, 1, True, ReportedState),
        TopicKind.ACKS: TopicSpec(Direction.UP, 1, False, CommandAck),
        TopicKind.DISCOVERY: TopicSpec(Direction.UP, 1, True, DiscoveryReport),
        TopicKind.DESIRED_STATE: TopicSpec(Direction.DOWN, 1, True, DesiredState),
        TopicKind.COMMANDS: TopicSpec(Direction.DOWN, 1, False, Command),
        TopicKind.MODELS: TopicSpec(Direction.DOWN, 1, True, ModelArtifactDescriptor),
    }
)


@dataclass(frozen=True)
class Topic:
    agent_id: str
    kind: TopicKind

    @property
    def spec(self) -> TopicSpec:
        return TOPICS[self.kind]

    def __str__(self) -> str:
        return build_topic(self.agent_id, self.kind)


@dataclass(frozen=True)
class Subscription:
    filter: str
    qos: Literal[0, 1, 2]


@dataclass(frozen=True)
class AclPatterns:
    """Topic filters a client may publish to and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def check_agent_id(agent_id: str) -> str:
    """`agent_id` if it is usable as one topic level (and as a file name), else TopicError."""
    if not isinstance(agent_id, str) or not re.fullmatch(AGENT_ID_PATTERN, agent_id):
        raise TopicError(
            f"invalid agent id {reprlib.repr(agent_id)}: use 1 to 64 of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return agent_id


def build_topic(agent_id: str, kind: TopicKind) -> str:
    return f"{_AGENTS}{check_agent_id(agent_id)}/{kind.value}"


def parse_topic(topic: str) -> Topic:
    """The agent and kind a topic names; TopicError for anything outside the scheme."""
    if not isinstance(topic, str) or not topic.startswith(_AGENTS):
        raise TopicError(f"not a {PREFIX} agent topic: {reprlib.repr(topic)}")
    agent_id, _, rest = topic.removeprefix(_AGENTS).partition("/")
    check_agent_id(agent_id)
    try:
        kind = TopicKind(rest)
    except ValueError:
        raise TopicError(f"unknown topic kind {reprlib.repr(rest)} for agent {agent_id}") from None
    return Topic(agent_id, kind)


def _kinds(direction: Direction) -> list[TopicKind]:
    return [kind for kind, spec in TOPICS.items() if spec.direction is direction]


def _filters(agent: str, direction: Direction) -> tuple[str, ...]:
    # `agent` is a checked id or the single-level wildcard "+".
    return tuple(f"{_AGENTS}{agent}/{kind.value}" for kind in _kinds(direction))


def controller_subscriptions() -> tuple[Subscription, ...]:
    """What the controller subscribes to: everything agents send, from any agent."""
    return tuple(
        Subscription(f"{_AGENTS}+/{kind.value}", TOPICS[kind].qos) for kind in _kinds(Direction.UP)
    )


def agent_subscriptions(agent_id: str) -> tuple[Subscription, ...]:
    """What an agent subscribes to: what the controller sends to it."""
    return tuple(
        Subscription(build_topic(agent_id, kind), TOPICS[kind].qos)
        for kind in _kinds(Direction.DOWN)
    )


def agent_acl_patterns(agent_id: str) -> AclPatterns:
    """An agent's broker ACL: its own subtree only, each topic in its one direction."""
    agent = check_agent_id(agent_id)
    return AclPatterns(
        publish=_filters(agent, Direction.UP), subscribe=_filters(agent, Direction.DOWN)
    )


def controller_acl_patterns() -> AclPatterns:
    return AclPatterns(publish=_filters("+", Direction.DOWN), subscribe=_filters("+", Direction.UP))
