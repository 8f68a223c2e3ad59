"""What both brokers must do, each tested for real: the embedded amqtt broker in a thread and
Mosquitto with the generated config, on free ports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_harness import SUBACK_FAILURE, Peer, Rig, any_rig, connected
from conftest import wait_for

from controller.broker.identities import CONTROLLER_USERNAME
from fleet.topics import TopicKind, build_topic

CTL = CONTROLLER_USERNAME
EVERYTHING = "camfleet/#"
BURST = 10_000


def topic(agent: str, kind: TopicKind) -> str:
    return build_topic(agent, kind)


@pytest.fixture(params=["embedded", "mosquitto"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with any_rig(request.param, tmp_path) as running:
        yield running


# -- who may connect ------------------------------------------------------------------------------


def test_right_password_connects(rig: Rig) -> None:
    assert rig.admits("a1")
    assert rig.admits(CTL)


@pytest.mark.parametrize(
    ("username", "password"),
    [("a1", "wrong-password"), ("nobody", "any"), ("a1", ""), ("", "")],
    ids=["wrong-password", "unknown-user", "empty-password", "anonymous"],
)
def test_bad_credentials_refused(rig: Rig, username: str, password: str) -> None:
    rc = Peer(rig.port, "intruder", username, password).try_connect()
    assert rc.is_failure, rc


def test_other_agents_password_refused(rig: Rig) -> None:
    rc = Peer(rig.port, "a1", "a1", rig.passwords["a2"]).try_connect()
    assert rc.is_failure, rc


def test_revoked_agent_refused(rig: Rig) -> None:
    assert rig.admits("a1")
    rig.revoke("a1")  # Mosquitto: files written again, then SIGHUP
    # Mosquitto re-reads its files asynchronously: poll for the refusal.
    wait_for(lambda: not rig.admits("a1"), 10, what="a1 to be refused")
    assert rig.admits("a2")  # the others still get in


# -- who may publish and subscribe where ----------------------------------------------------------


def test_agent_event_reaches_controller(rig: Rig) -> None:
    with connected(rig, CTL) as ctl, connected(rig, "a1") as a1:
        assert ctl.subscribe("camfleet/v1/agents/+/events") == [1]
        a1.publish(topic("a1", TopicKind.EVENTS), b"event-1")
        ctl.wait_for_message(topic("a1", TopicKind.EVENTS), b"event-1")


def test_agent_cannot_publish_outside_its_up_topics(rig: Rig) -> None:
    forbidden = [
        topic("a2", TopicKind.EVENTS),  # speaking for another agent
        topic("a2", TopicKind.STATUS),
        topic("a1", TopicKind.DESIRED_STATE),  # speaking for the controller
        topic("a2", TopicKind.DESIRED_STATE),
        topic("a2", TopicKind.COMMANDS),
        "camfleet/v1/other",
        "elsewhere",
    ]
    with (
        connected(rig, CTL) as ctl,
        connected(rig, "a2") as a2,
        connected(rig, "a1") as a1,
    ):
        assert ctl.subscribe(EVERYTHING) == [1]
        assert a2.subscribe(topic("a2", TopicKind.DESIRED_STATE)) == [1]
        assert a2.subscribe(topic("a2", TopicKind.COMMANDS)) == [1]
        for name in forbidden:
            a1.publish(name, b"forbidden")
        a1.publish(topic("a1", TopicKind.EVENTS), b"marker")
        # The broker handles one client's messages in order: once the marker is through,
        # anything forbidden that was going to be delivered would have been.
        seen = ctl.wait_for_message(topic("a1", TopicKind.EVENTS), b"marker")
        assert [m for m in seen if m.payload == b"forbidden"] == []
        ctl.publish(topic("a2", TopicKind.COMMANDS), b"marker-a2")
        seen = a2.wait_for_message(topic("a2", TopicKind.COMMANDS), b"marker-a2")
        assert [m for m in seen if m.payload == b"forbidden"] == []


@pytest.mark.parametrize(
    "topic_filter",
    [
        "camfleet/v1/agents/+/state/desired",
        "#",
        "camfleet/#",
        "camfleet/v1/agents/a2/state/desired",
        "camfleet/v1/agents/a2/#",
        "camfleet/v1/agents/+/+",
    ],
)
def test_agent_cannot_subscribe_beyond_its_down_topics(rig: Rig, topic_filter: str) -> None:
    own = topic("a1", TopicKind.DESIRED_STATE)
    with connected(rig, CTL) as ctl, connected(rig, "a1") as a1:
        assert a1.subscribe(own) == [1]
        codes = a1.subscribe(topic_filter)
        ctl.publish(topic("a2", TopicKind.DESIRED_STATE), b"forbidden")
        ctl.publish(topic("a2", TopicKind.EVENTS), b"forbidden")
        ctl.publish(own, b"marker")
        seen = a1.wait_for_message(own, b"marker")
        leaked = [m for m in seen if m.payload == b"forbidden"]
        # Refused in the SUBACK (amqtt) or granted but filtered on delivery (Mosquitto 2.0).
        assert codes == [SUBACK_FAILURE] or leaked == [], (codes, leaked)
        assert leaked == []
        if rig.kind == "embedded":
            assert codes == [SUBACK_FAILURE]


def test_agent_subscribes_to_its_own_down_topics(rig: Rig) -> None:
    with connected(rig, "a1") as a1:
        for kind in (TopicKind.DESIRED_STATE, TopicKind.COMMANDS, TopicKind.MODELS):
            assert a1.subscribe(topic("a1", kind)) == [1]


def test_controller_sends_desired_state_to_agent(rig: Rig) -> None:
    with connected(rig, CTL) as ctl, connected(rig, "a1") as a1:
        assert a1.subscribe(topic("a1", TopicKind.DESIRED_STATE)) == [1]
        ctl.publish(topic("a1", TopicKind.DESIRED_STATE), b"desired-v1")
        a1.wait_for_message(topic("a1", TopicKind.DESIRED_STATE), b"desired-v1")


# -- persistent sessions and bursts ---------------------------------------------------------------


def test_persistent_session_gets_what_was_sent_while_away(rig: Rig) -> None:
    desired = topic("a1", TopicKind.DESIRED_STATE)
    a1 = rig.peer("a1").connect()
    assert a1.subscribe(desired) == [1]
    a1.close()
    with connected(rig, CTL) as ctl:
        ctl.publish(desired, b"sent-while-away")  # not retained: only the session can keep it
    back = rig.peer("a1").connect()  # no new SUBSCRIBE: the session remembers it
    try:
        assert back.state.session_present
        back.wait_for_message(desired, b"sent-while-away")
    finally:
        back.close()


def _publish_burst(agent: Peer) -> list[bytes]:
    """Queue BURST QoS 1 events, each with a unique id and an event-sized body."""
    payloads = [b"%05d:" % n + b"x" * 300 for n in range(BURST)]
    for payload in payloads:
        agent.client.publish(topic("a1", TopicKind.EVENTS), payload, 1)
    return payloads


def _distinct_ids(peer: Peer) -> set[bytes]:
    return {m.payload[:5] for m in peer.messages()}


def test_burst_reaches_connected_controller(rig: Rig) -> None:
    with connected(rig, CTL, "ctl-burst") as ctl, connected(rig, "a1") as a1:
        assert ctl.subscribe("camfleet/v1/agents/+/events") == [1]
        started = time.monotonic()
        _publish_burst(a1)
        wait_for(lambda: len(_distinct_ids(ctl)) == BURST, 60, what=f"{BURST} events")
        elapsed = time.monotonic() - started
    print(f"\n{rig.kind}: {BURST} QoS 1 events in {elapsed:.2f} s ({BURST / elapsed:.0f}/s)")
    assert len(_distinct_ids(ctl)) == BURST


def test_burst_survives_controller_disconnect(rig: Rig) -> None:
    ctl = rig.peer(CTL, "ctl-burst").connect()
    assert ctl.subscribe("camfleet/v1/agents/+/events") == [1]
    with connected(rig, "a1") as a1:
        started = time.monotonic()
        _publish_burst(a1)
        wait_for(lambda: len(ctl.messages()) >= 2_000, 30, what="first events")
        ctl.close()
        before = _distinct_ids(ctl)
        acked_at_close = a1.state.acked
        # The broker takes thousands of events while the controller is away (more than
        # Mosquitto's default queue of 1000 would hold).
        wait_for(lambda: a1.state.acked >= min(BURST, acked_at_close + 3_000), 30, what="acks")
        back = rig.peer(CTL, "ctl-burst").connect()
        try:
            assert back.state.session_present
            wait_for(
                lambda: len(before | _distinct_ids(back)) == BURST,
                60,
                what=f"all {BURST} events (got {len(before)} before the disconnect)",
            )
        finally:
            elapsed = time.monotonic() - started
            print(
                f"\n{rig.kind}: burst across a disconnect: {len(before)} before, "
                f"{len(before | _distinct_ids(back))} in all after {elapsed:.2f} s"
            )
            back.close()


def test_other_user_cannot_take_over_agent_session(rig: Rig) -> None:
    """a2 connecting with a1's client id gets neither a1's queued message nor its session
    (Mosquitto names sessions by username; the embedded broker binds a client id to its user)."""
    desired = topic("a1", TopicKind.DESIRED_STATE)
    a1 = rig.peer("a1").connect()
    assert a1.subscribe(desired) == [1]
    a1.close()
    with connected(rig, CTL) as ctl:
        ctl.publish(desired, b"for-a1-only")
    thief = rig.peer("a2", client_id="a1")
    if not thief.try_connect().is_failure:
        assert not thief.state.session_present
        assert thief.subscribe(topic("a2", TopicKind.COMMANDS)) == [1]
        with connected(rig, CTL) as ctl:
            ctl.publish(topic("a2", TopicKind.COMMANDS), b"marker")
        seen = thief.wait_for_message(topic("a2", TopicKind.COMMANDS), b"marker")
        thief.close()
        assert [m for m in seen if m.topic == desired] == []
    back = rig.peer("a1").connect()
    try:
        back.wait_for_message(desired, b"for-a1-only")
    finally:
        back.close()


def test_unacknowledged_messages_redelivered_after_reconnect(rig: Rig) -> None:
    events = topic("a1", TopicKind.EVENTS)
    sent = [b"unacked-%d" % n for n in range(5)]
    ctl = rig.peer(CTL, "ctl-slow", manual_ack=True).connect()
    assert ctl.subscribe(events) == [1]
    with connected(rig, "a1") as a1:
        for payload in sent:
            a1.publish(events, payload)
    # Every one delivered and left unacknowledged; a set, as a retried send may arrive twice.
    wait_for(lambda: {m.payload for m in ctl.messages()} >= set(sent), 30,
             what="deliveries (never acked)")  # fmt: skip
    ctl.close()
    back = rig.peer(CTL, "ctl-slow").connect()
    try:
        wait_for(lambda: {m.payload for m in back.messages()} >= set(sent), 15, what="redelivery")
    finally:
        back.close()


def _die_with_will(rig: Rig, agent: str, will_topic: str, payload: bytes) -> bool:
    """Connect with a last will, then drop the socket (no DISCONNECT): the broker then
    publishes the will. False if the broker refused the CONNECT."""
    peer = rig.peer(agent)
    peer.client.will_set(will_topic, payload, 1)
    accepted = not peer.try_connect().is_failure
    if accepted:
        peer.client.socket().close()
        peer.client.loop_stop()
    return accepted


def test_last_will_cannot_reach_a_forbidden_topic(rig: Rig) -> None:
    """The broker publishes a will for the agent: the agent's ACL must apply to it."""
    a2_status = topic("a2", TopicKind.STATUS)
    with connected(rig, CTL) as ctl:
        assert ctl.subscribe(EVERYTHING) == [1]
        _die_with_will(rig, "a1", topic("a2", TopicKind.DESIRED_STATE), b"forbidden-will")
        # Refused at CONNECT (embedded) or dropped when sent (Mosquitto). a2's allowed will,
        # from a connection opened after a1's died, marks when a1's would have arrived.
        assert _die_with_will(rig, "a2", a2_status, b"allowed-will")
        seen = ctl.wait_for_message(a2_status, b"allowed-will")
        assert [m for m in seen if m.payload == b"forbidden-will"] == []


def test_refused_connect_cannot_plant_a_will(rig: Rig) -> None:
    """A CONNECT with a live agent's client id but a wrong password carries a retained will
    aimed at another agent: it must be neither delivered nor retained."""
    target = topic("a2", TopicKind.DESIRED_STATE)
    with connected(rig, CTL) as ctl, connected(rig, "a1"):
        assert ctl.subscribe(EVERYTHING) == [1]
        intruder = Peer(rig.port, "a1", "a1", "wrong-password")
        intruder.client.will_set(target, b"planted-will", 1, retain=True)
        assert intruder.try_connect().is_failure
        with connected(rig, "a2") as a2:
            a2.publish(topic("a2", TopicKind.EVENTS), b"marker")
        seen = ctl.wait_for_message(topic("a2", TopicKind.EVENTS), b"marker")
        assert [m for m in seen if m.payload == b"planted-will"] == []
    with connected(rig, "a2", "a2-fresh") as a2:
        assert a2.subscribe(target) == [1]
        with connected(rig, CTL, "ctl-marker") as ctl:
            ctl.publish(target, b"marker")
        seen = a2.wait_for_message(target, b"marker")
        assert [m for m in seen if m.payload == b"planted-will"] == []
