"""The generated Mosquitto files, and Mosquitto 2.0 running them: reload and restart."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from broker_harness import DictIdentities, Peer, mosquitto_rig, standard_identities, write_config
from conftest import free_port, wait_for
from mqtt_broker import mosquitto

from controller.broker.identities import CONTROLLER_USERNAME, BrokerIdentity
from controller.broker.mosquitto_config import write_mosquitto_config
from controller.broker.passwd import hash_password
from fleet.topics import TOPICS, TopicKind, build_topic


def test_files_are_private_and_complete(tmp_path: Path) -> None:
    identities, _ = standard_identities()
    files = write_config(tmp_path / "broker", identities, 18830)
    for secret in (files.passwd, files.acl):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    config = files.config.read_text().splitlines()
    for line in (
        "listener 18830 127.0.0.1",
        "allow_anonymous false",
        f"password_file {files.passwd}",
        f"acl_file {files.acl}",
        "persistence true",
        "persistent_client_expiration 7d",
        "max_queued_messages 1000000",
    ):
        assert line in config
    passwd = files.passwd.read_text()
    assert passwd.count("$7$") == 3 and "a1:$7$" in passwd
    acl = files.acl.read_text()
    a1_block = acl.split("user a1\n")[1].split("\n\n")[0].splitlines()
    assert f"topic write {build_topic('a1', TopicKind.EVENTS)}" in a1_block
    assert f"topic read {build_topic('a1', TopicKind.DESIRED_STATE)}" in a1_block
    assert len(a1_block) == len(TOPICS) and all("/a1/" in line for line in a1_block)
    assert f"user {CONTROLLER_USERNAME}\ntopic read $SYS/#\ntopic readwrite camfleet/#\n" in acl
    assert "+" not in acl.split(f"user {CONTROLLER_USERNAME}")[0]  # agents: exact topics only


@pytest.mark.parametrize("username", ["a b", "a:b", "a\nuser evil", "", "-lead"])
def test_usernames_that_would_break_the_files_refused(tmp_path: Path, username: str) -> None:
    identity = BrokerIdentity(username, hash_password("x"), "agent")
    with pytest.raises(ValueError, match="cannot be written to Mosquitto"):
        write_mosquitto_config(tmp_path, [identity], port=1)
    assert not (tmp_path / "passwd").exists()


def test_enrolled_agent_admitted_after_reload(tmp_path: Path) -> None:
    with mosquitto_rig(tmp_path) as rig:
        rig.passwords["a3"] = rig.identities.add("a3")
        assert not rig.admits("a3")  # not in the running broker's files yet
        rig.apply()  # regenerate + SIGHUP
        wait_for(lambda: rig.admits("a3"), 10, what="a3 admitted")


def test_queued_message_survives_broker_restart(tmp_path: Path) -> None:
    identities, passwords = standard_identities()
    port = free_port()
    files = write_config(tmp_path, identities, port)
    desired = build_topic("a1", TopicKind.DESIRED_STATE)

    def peer(username: str) -> Peer:
        return Peer(port, username, username, passwords[username])

    with mosquitto(files.config, port):
        a1 = peer("a1").connect()
        assert a1.subscribe(desired) == [1]
        a1.close()
        ctl = peer(CONTROLLER_USERNAME).connect()
        ctl.publish(desired, b"queued-before-restart")  # not retained: only the session has it
        ctl.close()
    with mosquitto(files.config, port):  # SIGTERM saved the database; this start loads it
        back = peer("a1").connect()
        try:
            assert back.state.session_present
            back.wait_for_message(desired, b"queued-before-restart")
        finally:
            back.close()


def test_reload_keeps_serving_connected_clients(tmp_path: Path) -> None:
    with mosquitto_rig(tmp_path) as rig:
        ctl = rig.peer(CONTROLLER_USERNAME).connect()
        a1 = rig.peer("a1").connect()
        try:
            assert ctl.subscribe("camfleet/v1/agents/+/events") == [1]
            rig.add("a3")  # regenerate + SIGHUP
            wait_for(lambda: rig.admits("a3"), 10, what="a3 admitted")
            a1.publish(build_topic("a1", TopicKind.EVENTS), b"after-reload")
            ctl.wait_for_message(build_topic("a1", TopicKind.EVENTS), b"after-reload")
        finally:
            a1.close()
            ctl.close()


def test_empty_identities_gives_a_broker_nobody_can_use(tmp_path: Path) -> None:
    port = free_port()
    files = write_mosquitto_config(tmp_path, DictIdentities().identities(), port=port)
    with mosquitto(files.config, port):
        assert Peer(port, "x", "a1", "anything").try_connect().is_failure
