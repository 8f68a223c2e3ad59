"""The fleet end to end with real processes: controller, agents, simulator and brokers.

Enrollment through real tokens, cameras assigned through the CLI, an event with its clip from
an agent's outbox to the controller, failover after SIGKILL with never two sessions on a camera,
and revocation."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, require_tool, start_sim, wait_for
from fleet_processes import (
    Controller,
    FleetAgent,
    ManagedMosquitto,
    Process,
    agent_state,
    camera_row,
)

SIM_ARGS = ("--main-size", "320x180", "--loop-seconds", "4", "--profile", "hikvision")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in reversed(started):
        proc.stop()


class SessionWatch:
    """Samples the simulator's session counters all along: the most clients a stream had."""

    def __init__(self, sim_http: str) -> None:
        self.url = sim_http
        self.most: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                cameras = httpx.get(f"{self.url}/cameras", timeout=2).json()
            except httpx.HTTPError:
                continue
            for cam in cameras:
                for kind, stream in cam["streams"].items():
                    key = f"{cam['name']}/{kind}"
                    self.most[key] = max(self.most.get(key, 0), stream["clients"])

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(5)
        return self.most


def test_enroll_assign_event_with_clip_inspection_and_revoke(tmp_path: Path, processes) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        ctl = Controller(tmp_path / "controller", "--mqtt-port", str(free_port()))
        processes.append(ctl)
        agent = FleetAgent(ctl, "edge-01", tmp_path / "edge-01")
        processes.append(agent)
        replay = ctl.cli("agent", "enroll", "--controller", ctl.url, "--data",
                         str(tmp_path / "again"), "--token", agent.token)  # fmt: skip
        assert replay.returncode == 2 and "already used" in replay.stderr, replay.stderr

        added = ctl.cli("camera", "add", "cam1", "--url",
                        f"rtsp://viewer:s3cret@127.0.0.1:{sim.port}/Streaming/Channels/101",
                        "--profile", "hikvision")  # fmt: skip
        assert added.returncode == 0, added.stderr
        with ctl.client() as client:
            wait_for(lambda: camera_row(client, "cam1")["state"] == "streaming", timeout=45,
                     what="cam1 streaming on edge-01")  # fmt: skip
            assert camera_row(client, "cam1")["owner"] == "edge-01"
            assert agent_state(client, "edge-01") == "online"
            listed = ctl.cli("camera", "list")
            assert "cam1" in listed.stdout and "s3cret" not in listed.stdout
            door = "door=0.1,0.1;0.5,0.1;0.5,0.5@0.7"
            set_rois = ctl.cli("camera", "rois", "cam1", "--roi", door)
            assert set_rois.returncode == 0 and door in set_rois.stdout, set_rois.stderr
            assert ctl.cli("camera", "rois", "cam1").stdout.strip() == door
            bad = ctl.cli("camera", "rois", "cam1", "--roi", "door=2,0;0,0;1,1")
            assert bad.returncode == 2 and "bad ROI" in bad.stderr, bad.stderr

            # The agent's media, through the controller (which alone the web view talks to).
            auth = {"Authorization": client._http.headers["Authorization"]}
            snap_url = f"{ctl.url}/api/v1/cameras/cam1/snapshot.jpg"
            assert httpx.get(snap_url, timeout=10).status_code == 401
            snap = wait_for(
                lambda: (r := httpx.get(snap_url, headers=auth, timeout=10)).status_code == 200
                and r, timeout=20, what="proxied snapshot",
            )  # fmt: skip
            assert snap.content[:2] == b"\xff\xd8"
            recs = httpx.get(f"{ctl.url}/api/v1/cameras/cam1/recordings", headers=auth)
            assert recs.status_code == 200 and "segments" in recs.json()
            assert httpx.get(f"{ctl.url}/api/v1/cameras/nope/recordings",
                             headers=auth).status_code == 404  # fmt: skip

            # An event with its clip, from the agent's outbox to a playable clip.
            raised = httpx.post(
                f"{agent.http}/test/events",
                json={"camera": "cam1", "pre_s": 1, "post_s": 1},
                timeout=10,
            )
            assert raised.status_code == 200, raised.text  # fmt: skip
            event_id = raised.json()["event_id"]
            event = wait_for(lambda: client.events()["items"], timeout=30, what="event stored")
            assert [e["id"] for e in event] == [event_id]
            clip_url = f"{ctl.url}/api/v1/events/{event_id}/clip"
            clip = wait_for(
                lambda: (r := httpx.get(clip_url, headers=auth, timeout=10)).is_success and r,
                timeout=60, what="clip assembled",
            )  # fmt: skip
            path = tmp_path / "clip.mp4"
            path.write_bytes(clip.content)
            probe = subprocess.run(
                [require_tool("ffprobe"), "-v", "error", "-show_streams", "-of", "json",
                 str(path)], capture_output=True, text=True, check=True, timeout=30,
            )  # fmt: skip
            assert json.loads(probe.stdout)["streams"][0]["codec_name"] == "h264"
            snap_of_event = wait_for(
                lambda: (r := httpx.get(f"{ctl.url}/api/v1/events/{event_id}/snapshot.jpg",
                                        headers=auth, timeout=10)).is_success and r,
                timeout=30, what="event snapshot",
            )  # fmt: skip
            assert snap_of_event.content[:2] == b"\xff\xd8"
            listed_events = ctl.cli("events", "list")
            assert event_id in listed_events.stdout

            # Inspection off: the agent stops analysing, the connection stays.
            assert ctl.cli("inspect", "stop", "cam1").returncode == 0

            def analysed() -> int:
                stats = httpx.get(f"{agent.http}/stats", timeout=5).json()
                return int(stats["streams"]["cam1/main"]["analysed"])

            def reported_off() -> bool:
                rs = client._call("GET", "/agents/edge-01")["reported"]
                return rs is not None and rs["cameras"][0]["inspection"] is False

            wait_for(reported_off, timeout=20, what="inspection off reported")
            before = analysed()
            # Analysed must not move while packets do: compare over 20 more packets.
            packets = httpx.get(f"{agent.http}/stats").json()["streams"]["cam1/main"]["packets"]
            wait_for(lambda: httpx.get(f"{agent.http}/stats").json()["streams"]["cam1/main"]
                     ["packets"] > packets + 20, timeout=10, what="packets flowing")  # fmt: skip
            assert analysed() == before
            assert httpx.get(f"{sim.http}/cameras").json()[0]["sessions_total"] == 1

            # Revoked: the API says so, the camera is released from the agent's assignment.
            assert ctl.cli("agents", "revoke", "edge-01").returncode == 0
            wait_for(lambda: agent_state(client, "edge-01") == "revoked", timeout=10)
            wait_for(lambda: camera_row(client, "cam1")["owner"] is None, timeout=10)
            listed_agents = ctl.cli("agents", "list")
            assert "revoked" in listed_agents.stdout
        ctl.alive()
    finally:
        sim.stop()


def test_failover_after_sigkill_never_two_sessions_and_no_flap_back(  # type: ignore[no-untyped-def]
    tmp_path: Path, processes
) -> None:
    """Two agents on an external Mosquitto whose files the controller keeps current."""
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=2)
    broker = ManagedMosquitto(tmp_path, "[fleet]\nfailover_grace_s = 4\n")
    watch = SessionWatch(sim.http)
    try:
        ctl = broker.controller()
        processes.append(ctl)
        with broker.running():
            a = FleetAgent(ctl, "edge-a", tmp_path / "edge-a")
            processes.append(a)
            b = FleetAgent(ctl, "edge-b", tmp_path / "edge-b")
            processes.append(b)
            with ctl.client() as client:
                wait_for(lambda: {agent_state(client, x) for x in ("edge-a", "edge-b")}
                         == {"online"}, timeout=30, what="both agents online")  # fmt: skip
                for i in (1, 2):
                    added = ctl.cli("camera", "add", f"cam{i}", "--url",
                                    f"rtsp://127.0.0.1:{sim.port}/Streaming/Channels/{i}01",
                                    "--profile", "hikvision")  # fmt: skip
                    assert added.returncode == 0, added.stderr
                for cam in ("cam1", "cam2"):
                    wait_for(lambda c=cam: camera_row(client, c)["state"] == "streaming",
                             timeout=45, what=f"{cam} streaming")  # fmt: skip
                owners = {c: camera_row(client, c)["owner"] for c in ("cam1", "cam2")}
                assert set(owners.values()) == {"edge-a", "edge-b"}  # spread by load
                victim = a if owners["cam1"] == "edge-a" else b
                survivor = "edge-b" if victim is a else "edge-a"

                victim.kill()
                wait_for(lambda: camera_row(client, "cam1")["owner"] == survivor
                         and camera_row(client, "cam1")["state"] == "streaming",
                         timeout=60, what="cam1 moved to the survivor")  # fmt: skip

                victim.start()  # back with the same identity: the cameras stay put
                wait_for(lambda: agent_state(client, victim.agent_name) == "online", timeout=30)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    assert camera_row(client, "cam1")["owner"] == survivor
                    time.sleep(0.5)
    finally:
        most = watch.stop()
        sim.stop()
    assert most.get("cam1/main") == 1 and most.get("cam2/main") == 1, most


def test_discover_and_adopt_through_the_cli(tmp_path: Path, processes) -> None:  # type: ignore[no-untyped-def]
    wsd_port = free_port(socket.SOCK_DGRAM)
    sim = start_sim(str(tmp_path), *SIM_ARGS, "--discovery-port", str(wsd_port), cameras=2)
    try:
        ctl = Controller(tmp_path / "controller", "--mqtt-port", str(free_port()))
        processes.append(ctl)
        agent = FleetAgent(ctl, "edge-01", tmp_path / "edge-01", "--discovery-port",
                           str(wsd_port), "--discovery-target", "127.0.0.1")  # fmt: skip
        processes.append(agent)
        with ctl.client() as client:
            wait_for(lambda: agent_state(client, "edge-01") == "online", timeout=30)
            found = client.discover("edge-01", 1.0)
            assert len(found) == 2, found
            assert {f["suggested_profile"] for f in found} == {"hikvision"}
            listed = ctl.cli("camera", "discover", "--timeout", "1")
            assert listed.returncode == 0 and "hikvision" in listed.stdout, listed.stderr
            endpoint = found[0]["endpoint"]
            adopted = ctl.cli("camera", "adopt", "gate", "--from", endpoint)
            assert adopted.returncode == 0, adopted.stderr
            wait_for(lambda: camera_row(client, "gate")["state"] == "streaming", timeout=45,
                     what="adopted camera streaming")  # fmt: skip
            assert camera_row(client, "gate")["owner"] == "edge-01"
            unknown = ctl.cli("camera", "adopt", "x", "--from", "10.9.9.9")
            assert unknown.returncode == 2 and "nothing discovered" in unknown.stderr
    finally:
        sim.stop()
