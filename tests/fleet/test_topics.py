"""Topic scheme: build/parse round trips, hostile agent ids, ACLs, and the protocol document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from fleet.messages import MESSAGE_TYPES
from fleet.topics import (
    TOPICS,
    Direction,
    Topic,
    TopicError,
    TopicKind,
    agent_acl_patterns,
    agent_subscriptions,
    build_topic,
    controller_acl_patterns,
    controller_subscriptions,
    parse_topic,
)

PROTOCOL_DOC = Path(__file__).parents[2] / "docs" / "protocol.md"

agent_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
kinds = st.sampled_from(list(TopicKind))

HOSTILE_IDS = [
    "",
    "+",
    "#",
    "a/b",
    "a+",
    "a#",
    "a\x00b",
    "a" * 65,
    "$SYS",
    ".",
    "..",
    "-a",
    " a",
    "a b",
    "a\n",
    "édge",
    "\uff411",  # fullwidth "a"
]


# --- building and parsing ------------------------------------------------------------------------


@given(agent_ids, kinds)
def test_build_parse_round_trip(agent_id: str, kind: TopicKind) -> None:
    topic = build_topic(agent_id, kind)
    assert topic == f"camfleet/v1/agents/{agent_id}/{kind.value}"
    assert parse_topic(topic) == Topic(agent_id, kind)
    assert str(Topic(agent_id, kind)) == topic


@pytest.mark.parametrize("agent_id", HOSTILE_IDS)
def test_hostile_agent_ids_are_rejected(agent_id: str) -> None:
    with pytest.raises(TopicError, match="invalid agent id"):
        build_topic(agent_id, TopicKind.EVENTS)
    with pytest.raises(TopicError):
        parse_topic(f"camfleet/v1/agents/{agent_id}/events")
    with pytest.raises(TopicError):
        agent_acl_patterns(agent_id)


@given(st.text(max_size=80))
def test_any_agent_id_is_either_safe_or_rejected(agent_id: str) -> None:
    try:
        topic = build_topic(agent_id, TopicKind.STATUS)
    except TopicError:
        return
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", agent_id)
    assert topic.count("/") == 4


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "camfleet/v1/agents",
        "camfleet/v1/agents/",
        "camfleet/v1/agents/a1",
        "camfleet/v1/agents/a1/",
        "camfleet/v1/agents/a1/events/extra",
        "camfleet/v1/agents/a1/Events",
        "camfleet/v1/agents/a1/state",
        "camfleet/v1/agents/+/events",
        "camfleet/v1/agents/#",
        "camfleet/v2/agents/a1/events",
        "/camfleet/v1/agents/a1/events",
        "other/v1/agents/a1/events",
        "$SYS/broker/uptime",
    ],
)
def test_foreign_or_malformed_topics_are_rejected(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_non_string_topic_is_rejected() -> None:
    with pytest.raises(TopicError):
        parse_topic(b"camfleet/v1/agents/a1/events")  # type: ignore[arg-type]


@given(st.text(max_size=60).map(lambda tail: "camfleet/v1/agents/" + tail))
def test_parse_accepts_only_what_build_makes(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except TopicError:
        return
    assert str(parsed) == topic


# --- the table -----------------------------------------------------------------------------------


def test_every_kind_is_described_and_every_message_has_a_topic() -> None:
    assert set(TOPICS) == set(TopicKind)
    payloads = [spec.payload for spec in TOPICS.values()]
    assert sorted(payloads, key=str) == sorted(MESSAGE_TYPES.values(), key=str)


def test_state_and_presence_are_retained_and_the_rest_not() -> None:
    retained = {kind for kind, spec in TOPICS.items() if spec.retained}
    assert retained == {
        TopicKind.STATUS,
        TopicKind.REPORTED_STATE,
        TopicKind.DESIRED_STATE,
        TopicKind.MODELS,
        TopicKind.DISCOVERY,
    }


# --- subscriptions and ACLs ----------------------------------------------------------------------


def _all_topics(agent_id: str) -> list[Topic]:
    return [Topic(agent_id, kind) for kind in TopicKind]


def _allowed(patterns: tuple[str, ...], topic: Topic) -> bool:
    return any(topic_matches_sub(p, str(topic)) for p in patterns)


def test_agent_acl_covers_its_own_subtree_in_the_right_direction() -> None:
    acl = agent_acl_patterns("edge-01")
    for topic in _all_topics("edge-01"):
        up = topic.spec.direction is Direction.UP
        assert _allowed(acl.publish, topic) is up, topic
        assert _allowed(acl.subscribe, topic) is not up, topic
    assert not any(c in p for p in (*acl.publish, *acl.subscribe) for c in "+#")


def test_agent_acl_excludes_other_agents() -> None:
    acl = agent_acl_patterns("edge-01")
    for other in ("edge-02", "edge-0", "edge-011"):
        for topic in _all_topics(other):
            assert not _allowed(acl.publish + acl.subscribe, topic), topic


def test_agent_subscribes_to_what_the_controller_sends_it() -> None:
    subs = agent_subscriptions("edge-01")
    assert {s.filter for s in subs} == set(agent_acl_patterns("edge-01").subscribe)
    assert all(s.qos == parse_topic(s.filter).spec.qos for s in subs)


@given(agent_ids)
def test_controller_receives_every_upward_topic_once_with_its_qos(agent_id: str) -> None:
    subs = controller_subscriptions()
    for topic in _all_topics(agent_id):
        matching = [s for s in subs if topic_matches_sub(s.filter, str(topic))]
        if topic.spec.direction is Direction.UP:
            assert [s.qos for s in matching] == [topic.spec.qos]
        else:
            assert matching == []


def test_controller_acl_mirrors_the_agents() -> None:
    acl = controller_acl_patterns()
    assert acl.subscribe == tuple(s.filter for s in controller_subscriptions())
    for topic in _all_topics("edge-07"):
        down = topic.spec.direction is Direction.DOWN
        assert _allowed(acl.publish, topic) is down
        assert _allowed(acl.subscribe, topic) is not down


# --- the protocol document -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(TopicKind))
def test_protocol_doc_table_matches_topics(kind: TopicKind) -> None:
    spec = TOPICS[kind]
    row = (
        f"| `camfleet/v1/agents/{{agent_id}}/{kind.value}` | {spec.direction.value} | {spec.qos} "
        f"| {'yes' if spec.retained else 'no'} | `{spec.payload.__name__}` |"
    )
    assert row in PROTOCOL_DOC.read_text(encoding="utf-8").splitlines()
