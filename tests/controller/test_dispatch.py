"""The controller's message dispatch: valid messages reach their sink, anything else is
refused by reason and counted, and nothing an agent sends can raise into the network thread."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from controller.link.dispatch import MAX_PAYLOAD_BYTES, Dispatcher
from fleet.messages import (
    IDENTITY,
    AgentStatus,
    ClipChunk,
    CommandAck,
    Event,
    encode_message,
)
from fleet.topics import TopicKind, build_topic


class Recorder:
    """Sinks that keep what they were given (and can be told to fail)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.fail = False

    def _keep(self, what: str, agent_id: str, msg: Any) -> None:
        if self.fail:
            raise OSError("disk full")
        self.calls.append((what, agent_id, msg))

    def apply_status(self, agent_id: str, status: Any, now_us: int) -> bool:
        self._keep("status", agent_id, status)
        return True

    def apply_heartbeat(self, agent_id: str, hb: Any, now_us: int) -> None:
        self._keep("heartbeat", agent_id, hb)

    def apply_reported(self, agent_id: str, rs: Any, now_us: int) -> None:
        self._keep("reported", agent_id, rs)

    def apply_discovery(self, agent_id: str, report: Any, now_us: int) -> None:
        self._keep("discovery", agent_id, report)

    def add(self, agent_id: str, event: Any, received_us: int) -> None:
        self._keep("event", agent_id, event)

    def manifest(self, agent_id: str, m: Any, now_us: int) -> None:
        self._keep("manifest", agent_id, m)

    def chunk(self, agent_id: str, c: Any, now_us: int) -> None:
        self._keep("chunk", agent_id, c)

    def resolve(self, agent_id: str, ack: Any) -> None:
        self._keep("ack", agent_id, ack)


@pytest.fixture
def sinks() -> tuple[Dispatcher, Recorder, list[str]]:
    rec = Recorder()
    presence: list[str] = []
    return Dispatcher(rec, rec, rec, rec, on_presence=presence.append), rec, presence


def status(agent_id: str = "edge-01") -> AgentStatus:
    return AgentStatus(agent_id=agent_id, state="online", session=1, software_version="t", ts=1)


EVENT = Event(
    id=uuid.uuid4(), camera="gate", kind="camera_offline", start_us=1, end_us=2, peak_us=1,
    adjustment=IDENTITY,
)  # fmt: skip


def test_each_upward_message_reaches_its_sink(sinks: Any) -> None:
    d, rec, presence = sinks
    ack = CommandAck(command_id=uuid.uuid4(), ts=1, ok=True)
    chunk = ClipChunk.of(uuid.uuid4(), 0, b"abc")
    for kind, msg in [
        (TopicKind.STATUS, status()),
        (TopicKind.EVENTS, EVENT),
        (TopicKind.ACKS, ack),
        (TopicKind.CLIP_CHUNKS, chunk),
    ]:
        assert d.handle(build_topic("edge-01", kind), encode_message(msg), 5)
    assert [(w, a) for w, a, _ in rec.calls] == [
        ("status", "edge-01"), ("event", "edge-01"), ("ack", "edge-01"), ("chunk", "edge-01"),
    ]  # fmt: skip
    assert rec.calls[1][2] == EVENT
    assert presence == ["edge-01"]
    assert sum(d.stats.handled.values()) == 4


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("camfleet/v1/agents/edge-01/nope", b"{}", "bad topic"),
        ("other/topic", b"{}", "bad topic"),
        (build_topic("edge-01", TopicKind.DESIRED_STATE), b"{}", "wrong direction"),
        (build_topic("edge-01", TopicKind.EVENTS), b"{not json", "invalid events"),
        (build_topic("edge-01", TopicKind.EVENTS), encode_message(status()), "invalid events"),
        (build_topic("edge-01", TopicKind.EVENTS), b"x" * (MAX_PAYLOAD_BYTES + 1), "oversized"),
        # An agent speaking for another agent on its own topic.
        (build_topic("edge-01", TopicKind.STATUS), encode_message(status("edge-02")),
         "refused status"),
    ],
)  # fmt: skip
def test_bad_messages_are_refused_by_reason(
    sinks: Any, topic: str, payload: bytes, reason: str
) -> None:
    d, rec, presence = sinks
    assert not d.handle(topic, payload, 5)
    assert d.stats.rejected == {reason: 1}
    assert rec.calls == [] and presence == []


def test_a_failing_sink_does_not_raise_and_the_next_message_is_handled(sinks: Any) -> None:
    d, rec, _ = sinks
    rec.fail = True
    topic = build_topic("edge-01", TopicKind.EVENTS)
    assert not d.handle(topic, encode_message(EVENT), 5)
    rec.fail = False
    assert d.handle(topic, encode_message(EVENT), 6)
    assert d.stats.rejected == {"refused events": 1} and len(rec.calls) == 1


def test_empty_retained_payload_clears_and_is_not_an_error(sinks: Any) -> None:
    d, rec, _ = sinks
    assert d.handle(build_topic("edge-01", TopicKind.STATUS), b"", 5)
    assert rec.calls == [] and not d.stats.rejected
