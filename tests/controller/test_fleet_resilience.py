"""The fleet when things go wrong, with real processes: the broker down for a minute and the
controller restarted while events flow (every event stored exactly once, every clip whole), a
camera that dies (a health event), and hostile MQTT input (refused, nothing else disturbed)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
from broker_harness import Peer
from conftest import start_sim, wait_for
from fleet_processes import PASSWORD, Controller, FleetAgent, ManagedMosquitto, Process, camera_row

from controller.client import ControllerClient
from fleet.messages import IDENTITY, Event, encode_message
from fleet.topics import TOPICS, Direction, TopicKind, build_topic

SIM_ARGS = ("--main-size", "320x180", "--loop-seconds", "4", "--profile", "hikvision")
OUTAGE_S = 60


def all_events(client: ControllerClient) -> list[dict[str, object]]:
    items, cursor = [], None
    while True:
        page = client.events(limit=500, cursor=cursor)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def enroll_identity(ctl: Controller, client: ControllerClient, name: str) -> str:
    """A second identity's broker password, through the real token flow (no agent runs it)."""
    token = client.create_token(name, 600)["token"]
    answer = httpx.post(f"{ctl.url}/api/v1/enroll", json={
        "token": token, "hostname": "bad-host", "software_version": "0"}, timeout=10)  # fmt: skip
    assert answer.status_code == 200, answer.text
    password: str = answer.json()["broker"]["password"]
    return password


def test_broker_outage_controller_restart_health_event_and_hostile_input(  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    broker = ManagedMosquitto(tmp_path)
    processes: list[Process] = []
    raised: list[str] = []
    stop_raising = threading.Event()
    try:
        ctl = broker.controller()
        processes.append(ctl)
        with broker.running():
            agent = FleetAgent(ctl, "edge-01", tmp_path / "edge-01")
            processes.append(agent)
            with ctl.client() as client:
                added = ctl.cli("camera", "add", "cam1", "--url",
                                f"rtsp://127.0.0.1:{sim.port}/Streaming/Channels/101",
                                "--profile", "hikvision")  # fmt: skip
                assert added.returncode == 0, added.stderr
                wait_for(lambda: camera_row(client, "cam1")["state"] == "streaming", timeout=45)
                bad_password = enroll_identity(ctl, client, "edge-bad")

            # Hostile input on every topic the controller reads, from an enrolled identity.
            bad = Peer(broker.port, "edge-bad", "edge-bad", bad_password)
            assert not bad.try_connect().is_failure
            junk = [b"{", b"[]", b"\xff\xfe", b'{"v":1,"type":"event"}', b"x" * 7_000_000]
            for kind, spec in TOPICS.items():
                if spec.direction is Direction.UP:
                    for payload in junk:
                        bad.client.publish(build_topic("edge-bad", kind), payload, qos=1)
            forged = Event(id=uuid.uuid4(), camera="cam1", kind="anomaly", start_us=1, end_us=1,
                           peak_us=1, adjustment=IDENTITY)  # fmt: skip
            bad.client.publish(build_topic("edge-01", TopicKind.EVENTS), encode_message(forged), 1)
            marker = Event(id=uuid.uuid4(), camera="bad-cam", kind="camera_offline", start_us=1,
                           end_us=1, peak_us=1, adjustment=IDENTITY)  # fmt: skip
            bad.client.publish(build_topic("edge-bad", TopicKind.EVENTS), encode_message(marker), 1)
            with ControllerClient(ctl.url, PASSWORD) as client:
                wait_for(lambda: any(e["id"] == str(marker.id) for e in all_events(client)),
                         timeout=30, what="the valid marker event")  # fmt: skip
                assert not any(e["id"] == str(forged.id) for e in all_events(client))
                metrics = httpx.get(f"{ctl.url}/metrics", timeout=10,
                                    headers=client._http.headers).text  # fmt: skip
                assert 'camfleet_mqtt_refused_total{reason="invalid events"}' in metrics, metrics
            bad.client.disconnect()

            def raise_events() -> None:
                while not stop_raising.wait(1.0):
                    r = httpx.post(f"{agent.http}/test/events", timeout=10,
                                   json={"camera": "cam1", "pre_s": 1, "post_s": 1})  # fmt: skip
                    if r.status_code == 200:
                        raised.append(r.json()["event_id"])

            raiser = threading.Thread(target=raise_events, daemon=True)
            raiser.start()
            wait_for(lambda: len(raised) >= 3, timeout=30, what="events before the outage")
        # The broker is down now. Restart the controller meanwhile; events keep being raised.
        outage_start = time.monotonic()
        ctl.stop()
        processes.remove(ctl)
        ctl = broker.controller()
        processes.append(ctl)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_start)))  # the outage itself
        during = len(raised)
        with broker.running():
            wait_for(lambda: len(raised) >= during + 3, timeout=30, what="events after it")
            stop_raising.set()
            with ControllerClient(ctl.url, PASSWORD) as client:

                def stored() -> list[str]:
                    return [str(e["id"]) for e in all_events(client) if e["kind"] == "anomaly"]

                wait_for(lambda: set(raised) <= set(stored()), timeout=120,
                         what=f"all {len(raised)} events stored")  # fmt: skip
                ids = stored()
                assert sorted(ids) == sorted(raised)  # exactly once each, nothing forged
                auth = {"Authorization": client._http.headers["Authorization"]}
                for event_id in raised:
                    wait_for(lambda i=event_id: httpx.get(
                        f"{ctl.url}/api/v1/events/{i}/clip", headers=auth, timeout=10
                    ).is_success, timeout=60, what=f"clip of {event_id}")  # fmt: skip

                # The camera dies: a health event reaches the event center.
                sim.stop()
                wait_for(lambda: any(e["kind"] == "camera_offline" and e["camera"] == "cam1"
                                     for e in all_events(client)),
                         timeout=60, what="camera_offline event")  # fmt: skip
            ctl.alive()
    finally:
        stop_raising.set()
        for proc in reversed(processes):
            proc.stop()
        sim.stop()
