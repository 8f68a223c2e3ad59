"""The broker ACL (controller.broker.acl): unit cases and properties against a brute force."""

from __future__ import annotations

import functools
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.broker.acl import (
    filter_covered,
    is_topic_filter,
    is_topic_name,
    may_publish,
    may_subscribe,
)
from controller.broker.identities import CONTROLLER_USERNAME, BrokerIdentity
from controller.broker.passwd import hash_password
from fleet.topics import TOPICS, Direction, TopicKind, build_topic

HASH = hash_password("unused")
A1 = BrokerIdentity("a1", HASH, "agent")
CTL = BrokerIdentity(CONTROLLER_USERNAME, HASH, "controller")
UP = [kind for kind, spec in TOPICS.items() if spec.direction is Direction.UP]
DOWN = [kind for kind, spec in TOPICS.items() if spec.direction is Direction.DOWN]


@pytest.mark.parametrize("kind", UP)
def test_agent_publishes_its_own_up_topics(kind: TopicKind) -> None:
    assert may_publish(A1, build_topic("a1", kind))
    assert not may_publish(A1, build_topic("a2", kind))
    assert not may_subscribe(A1, build_topic("a1", kind))


@pytest.mark.parametrize("kind", DOWN)
def test_agent_subscribes_its_own_down_topics(kind: TopicKind) -> None:
    assert may_subscribe(A1, build_topic("a1", kind))
    assert not may_subscribe(A1, build_topic("a2", kind))
    assert not may_publish(A1, build_topic("a1", kind))


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+/#",
        "camfleet/#",
        "camfleet/v1/agents/+/state/desired",
        "camfleet/v1/agents/a1/#",
        "camfleet/v1/agents/a1/+",
        "camfleet/v1/agents/a1/state/+",
        "camfleet/v1/agents/a1/state/desired/#",  # also matches .../desired/extra
        "camfleet/v1/agents/a1/state/desired/",
        "camfleet/v1/agents/a1",
        "$SYS/#",
    ],
)
def test_agent_wildcards_and_neighbours_refused(topic_filter: str) -> None:
    assert not may_subscribe(A1, topic_filter)


@pytest.mark.parametrize(
    "topic", ["camfleet/v1/agents/a1/events/x", "camfleet/v1/agents/a1", "", "a/+", "a/#", "a\0b"]
)
def test_agent_cannot_publish_beside_or_malformed(topic: str) -> None:
    assert not may_publish(A1, topic)


def test_controller_may_use_the_whole_tree_but_not_elsewhere() -> None:
    for kind in TopicKind:
        assert may_publish(CTL, build_topic("a1", kind))
        assert may_subscribe(CTL, build_topic("a1", kind))
    assert may_subscribe(CTL, "camfleet/v1/agents/+/events")
    assert may_subscribe(CTL, "camfleet/#")
    assert may_publish(CTL, "camfleet/v2/agents/a1/state/desired")
    assert not may_subscribe(CTL, "#")
    assert not may_publish(CTL, "$SYS/broker/uptime")
    assert not may_publish(CTL, "other/topic")


def test_unusable_identities_get_nothing() -> None:
    bad_agent = BrokerIdentity("not an id/+", HASH, "agent")
    odd_role = BrokerIdentity("a1", HASH, "admin")  # type: ignore[arg-type]
    for identity in (bad_agent, odd_role):
        assert not may_publish(identity, "camfleet/v1/agents/a1/events")
        assert not may_subscribe(identity, "camfleet/v1/agents/a1/commands")


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("a/b", True),
        ("+", True),
        ("#", True),
        ("a/+/b/#", True),
        ("/", True),
        ("a/#/b", False),
        ("a#", False),
        ("a/b+", False),
        ("", False),
        ("a\0", False),
        ("a" * 65536, False),
    ],
)
def test_filter_syntax(topic_filter: str, valid: bool) -> None:
    assert is_topic_filter(topic_filter) is valid


def test_topic_names_have_no_wildcards() -> None:
    assert is_topic_name("a/b")
    assert not is_topic_name("a/+")
    assert not is_topic_name("#")


# -- the coverage rule against a brute force over every topic that could tell them apart ----------

LITERALS = ["a", "b", "$s", ""]
level = st.sampled_from([*LITERALS, "+", "#"])


def _valid(levels: list[str]) -> bool:
    return is_topic_filter("/".join(levels))


filters = st.lists(level, min_size=1, max_size=4).filter(_valid).map("/".join)


def _matches(topic: str, topic_filter: str) -> bool:
    """MQTT matching, written independently as a regex (`#` also matches the parent level)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    return _regex(topic_filter).fullmatch(topic) is not None


@functools.cache
def _regex(topic_filter: str) -> re.Pattern[str]:
    pattern = ""
    for index, part in enumerate(topic_filter.split("/")):
        if part == "#":
            pattern += "(/.*)?" if index else ".*"
        else:
            pattern += ("/" if index else "") + ("[^/]*" if part == "+" else re.escape(part))
    return re.compile(pattern)


def _topics(max_levels: int) -> list[str]:
    # A level no filter names ("z") stands for every such level.
    alphabet = [*LITERALS, "z"]
    return [
        "/".join(levels)
        for n in range(1, max_levels + 1)
        for levels in itertools.product(alphabet, repeat=n)
    ]


TOPICS_UP_TO_5 = _topics(5)


@given(filters, st.lists(filters, max_size=3))
def test_covered_exactly_when_every_matched_topic_is_allowed(
    topic_filter: str, patterns: list[str]
) -> None:
    brute = all(
        any(_matches(t, p) for p in patterns) for t in TOPICS_UP_TO_5 if _matches(t, topic_filter)
    )
    assert filter_covered(topic_filter, patterns) is brute


def test_union_of_patterns_can_cover_where_none_alone_does() -> None:
    assert filter_covered("a/#", ["a", "a/+/#"])
    assert not filter_covered("a/#", ["a/+/#"])
    assert not filter_covered("a/#", ["a"])


@given(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    st.sampled_from(DOWN),
    st.data(),
)
def test_agent_never_gets_a_wildcard_over_its_own_topics(
    agent_id: str, kind: TopicKind, data: st.DataObject
) -> None:
    """Any level of an agent's own topic turned into `+`, or a tail into `#`, is refused."""
    agent = BrokerIdentity(agent_id, HASH, "agent")
    levels = build_topic(agent_id, kind).split("/")
    assert may_subscribe(agent, "/".join(levels))
    at = data.draw(st.integers(0, len(levels) - 1))
    wild = data.draw(st.sampled_from(["+", "#"]))
    levels[at:] = [wild] if wild == "#" else ["+", *levels[at + 1 :]]
    assert not may_subscribe(agent, "/".join(levels))
