"""The embedded amqtt broker's own behaviour: start/stop, errors, logging, a failing registry."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from broker_harness import DictIdentities, Peer, connected, embedded_rig, standard_identities
from conftest import free_port

from controller.broker.embedded import LOCALHOST, BrokerStartError, EmbeddedBroker
from controller.broker.identities import CONTROLLER_USERNAME, BrokerIdentity
from fleet.topics import TopicKind, build_topic


def _broker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mqtt-broker-")]


def test_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind((LOCALHOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(LOCALHOST, port, DictIdentities())
        with pytest.raises(BrokerStartError, match=f"cannot listen on 127.0.0.1:{port}.*in use"):
            broker.start()
    assert _broker_threads() == []
    broker.stop()  # nothing to stop: harmless


def test_stop_is_idempotent_and_frees_the_port() -> None:
    identities, passwords = standard_identities()
    port = free_port()
    for _ in range(2):  # the same port again once stopped
        broker = EmbeddedBroker(LOCALHOST, port, identities)
        broker.start()
        peer = Peer(port, "a1", "a1", passwords["a1"]).connect()
        broker.stop()
        broker.stop()
        peer.client.loop_stop()
        assert _broker_threads() == []
    with socket.socket() as probe:
        assert probe.connect_ex((LOCALHOST, port)) != 0  # nobody listens any more


def test_start_twice_refused() -> None:
    broker = EmbeddedBroker(LOCALHOST, free_port(), DictIdentities())
    broker.start()
    try:
        with pytest.raises(BrokerStartError, match="already running"):
            broker.start()
    finally:
        broker.stop()


def test_logs_are_quiet_and_never_hold_passwords(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # as if the application logged everything
    with embedded_rig() as rig:
        secret = rig.passwords["a1"]
        with connected(rig, "a1") as a1:
            a1.publish(build_topic("a1", TopicKind.EVENTS), b"x")
        assert Peer(rig.port, "a1", "a1", secret + "-wrong").try_connect().is_failure
        assert Peer(rig.port, "x", "nobody", "guess-me").try_connect().is_failure
    amqtt_records = [r for r in caplog.records if r.name.startswith("amqtt")]
    assert [r for r in amqtt_records if r.levelno < logging.WARNING] == []
    for text in (secret, "guess-me"):
        assert text not in caplog.text
        assert all(text not in str(r.args) for r in caplog.records)


class _FailingRegistry(DictIdentities):
    """A registry whose lookups fail for one user (a broken database, say)."""

    def identity(self, username: str) -> BrokerIdentity | None:
        if username == "a2":
            raise RuntimeError("registry unavailable")
        return super().identity(username)


def test_failing_registry_refuses_that_client_and_keeps_serving() -> None:
    identities = _FailingRegistry()
    passwords = {name: identities.add(name) for name in ("a1", "a2")}
    broker = EmbeddedBroker(LOCALHOST, free_port(), identities)
    broker.start()
    try:
        assert Peer(broker.port, "a2", "a2", passwords["a2"]).try_connect().is_failure
        Peer(broker.port, "a1", "a1", passwords["a1"]).connect().close()
    finally:
        broker.stop()


def test_revocation_stops_an_open_connection_at_once() -> None:
    """Identities are looked up on every publish, so a revoked agent's live session is mute."""
    with embedded_rig() as rig, connected(rig, CONTROLLER_USERNAME) as ctl:
        assert ctl.subscribe("camfleet/#") == [1]
        a1 = rig.peer("a1").connect()
        try:
            a1.publish(build_topic("a1", TopicKind.EVENTS), b"before-revoke")
            ctl.wait_for_message(build_topic("a1", TopicKind.EVENTS), b"before-revoke")
            rig.revoke("a1")
            a1.publish(build_topic("a1", TopicKind.EVENTS), b"after-revoke")
        finally:
            a1.close()
        with connected(rig, "a2") as a2:
            a2.publish(build_topic("a2", TopicKind.EVENTS), b"marker")
        seen = ctl.wait_for_message(build_topic("a2", TopicKind.EVENTS), b"marker")
        assert [m for m in seen if m.payload == b"after-revoke"] == []
