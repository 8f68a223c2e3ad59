"""What the controller does with each message an agent sends: validate, then hand to a sink.

Plain code, no MQTT: `Dispatcher.handle(topic, payload, now_us)` is what the network thread
calls, and tests call it directly. A bad message is counted and logged by reason, never raised:
one broken agent must not stop the controller hearing the others.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from fleet.messages import (
    AgentStatus,
    ClipChunk,
    ClipManifest,
    CommandAck,
    DiscoveryReport,
    Event,
    Heartbeat,
    MessageError,
    ReportedState,
    parse_message,
)
from fleet.topics import Direction, TopicError, TopicKind, parse_topic

log = logging.getLogger("camfleet.controller.link")

# A 4 MiB clip chunk is about 5.6 MB as base64 JSON; anything much larger is refused unparsed.
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024


class PresenceSink(Protocol):
    def apply_status(self, agent_id: str, status: AgentStatus, now_us: int) -> bool: ...
    def apply_heartbeat(self, agent_id: str, hb: Heartbeat, now_us: int) -> None: ...
    def apply_reported(self, agent_id: str, rs: ReportedState, now_us: int) -> None: ...
    def apply_discovery(self, agent_id: str, report: DiscoveryReport, now_us: int) -> None: ...


class EventSink(Protocol):
    def add(self, agent_id: str, event: Event, received_us: int) -> None: ...


class ClipSink(Protocol):
    def manifest(self, agent_id: str, m: ClipManifest, now_us: int) -> object: ...
    def chunk(self, agent_id: str, c: ClipChunk, now_us: int) -> object: ...


class AckSink(Protocol):
    def resolve(self, agent_id: str, ack: CommandAck) -> None: ...


@dataclass
class DispatchStats:
    handled: Counter[str]
    rejected: Counter[str]  # by reason class, e.g. "bad topic", "invalid heartbeat"


class Dispatcher:
    def __init__(
        self,
        presence: PresenceSink,
        events: EventSink,
        clips: ClipSink,
        acks: AckSink,
        on_presence: Callable[[str], None] = lambda agent_id: None,
    ) -> None:
        self.presence = presence
        self.events = events
        self.clips = clips
        self.acks = acks
        self.on_presence = on_presence  # status or reported state changed: re-plan the fleet
        self._lock = threading.Lock()
        self.stats = DispatchStats(Counter(), Counter())

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(handled by topic kind, refused by reason), copied consistently."""
        with self._lock:
            return dict(self.stats.handled), dict(self.stats.rejected)

    def handle(self, topic: str, payload: bytes, now_us: int) -> bool:
        """Validate and apply one message; False (logged, counted) if it was refused."""
        try:
            where = parse_topic(topic)
        except TopicError as exc:
            return self._reject("bad topic", str(exc))
        kind, agent_id = where.kind, where.agent_id
        if where.spec.direction is not Direction.UP:
            return self._reject("wrong direction", f"{kind.value} is not sent by agents")
        if not payload:
            return True  # an empty retained payload clears a topic; nothing to apply
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self._reject(
                "oversized", f"{len(payload)} bytes on {kind.value} from {agent_id}"
            )
        try:
            msg = parse_message(payload, where.spec.payload)
        except MessageError as exc:
            return self._reject(f"invalid {kind.value}", f"from {agent_id}: {exc}")
        try:
            self._apply(agent_id, kind, msg, now_us)
        except Exception as exc:  # a store refusing one message must not stop the link
            return self._reject(f"refused {kind.value}", f"from {agent_id}: {exc}")
        with self._lock:
            self.stats.handled[kind.value] += 1
        return True

    def _apply(self, agent_id: str, kind: TopicKind, msg: object, now_us: int) -> None:
        if isinstance(msg, AgentStatus):
            if msg.agent_id != agent_id:
                raise ValueError(f"status names agent {msg.agent_id!r}")
            if self.presence.apply_status(agent_id, msg, now_us):
                self.on_presence(agent_id)
        elif isinstance(msg, Heartbeat):
            self.presence.apply_heartbeat(agent_id, msg, now_us)
        elif isinstance(msg, ReportedState):
            self.presence.apply_reported(agent_id, msg, now_us)
            self.on_presence(agent_id)
        elif isinstance(msg, DiscoveryReport):
            self.presence.apply_discovery(agent_id, msg, now_us)
        elif isinstance(msg, Event):
            self.events.add(agent_id, msg, now_us)
        elif isinstance(msg, ClipManifest):
            self.clips.manifest(agent_id, msg, now_us)
        elif isinstance(msg, ClipChunk):
            self.clips.chunk(agent_id, msg, now_us)
        elif isinstance(msg, CommandAck):
            self.acks.resolve(agent_id, msg)
        else:  # every upward kind is handled above; a new one must be added here
            raise TypeError(f"no handler for {kind.value}")

    def _reject(self, reason: str, detail: str) -> bool:
        with self._lock:
            self.stats.rejected[reason] += 1
        log.warning("refused message: %s: %s", reason, detail)
        return False
