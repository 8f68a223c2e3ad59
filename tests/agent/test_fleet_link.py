"""The agent as a fleet member, as real processes: a Mosquitto broker, the camera simulator,
`camfleet agent run` on an enrolled data directory, and a paho client playing the controller.

The helpers here (FleetAgent, Controller, enrolled) are shared with test_fleet_outbox.py.
"""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import REPO, SimProcess, free_port, start_sim, wait_for
from mqtt_broker import open_mosquitto
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import SecretStr

from fleet.enrollment import AgentCredentials, BrokerAccess, write_credentials
from fleet.messages import (
    Action,
    AgentStatus,
    BaseMessage,
    CameraSpec,
    CaptureReference,
    ClipChunk,
    ClipManifest,
    Command,
    CommandAck,
    DesiredState,
    Discover,
    DiscoveryReport,
    ExtractClip,
    Heartbeat,
    ReportedState,
    encode_message,
    parse_message,
)
from fleet.topics import TopicKind, build_topic, controller_subscriptions, parse_topic
from fleet.utc import now_us

SIM_ARGS = ("--main-size", "320x180", "--loop-seconds", "4", "--profile", "hikvision")
AGENT_ID = "edge-01"
PASSWORD = "broker-pw-never-logged"
M = TypeVar("M", bound=BaseMessage)


def enrolled(data: Path, broker_port: int, agent_id: str = AGENT_ID) -> Path:
    """A data directory as `camfleet agent enroll` leaves it (credentials written directly)."""
    creds = AgentCredentials(
        agent_id=agent_id,
        name=agent_id,
        broker=BrokerAccess(host="127.0.0.1", port=broker_port, username=agent_id,
                            password=SecretStr(PASSWORD)),
        controller_url="http://127.0.0.1:9",
        signing_public_key=base64.b64encode(bytes(32)).decode(),
    )  # fmt: skip
    write_credentials(data, creds)
    return data


class FleetAgent:
    """`camfleet agent run --data DATA` in fleet mode (heartbeats every second, test hooks on)."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log, self.port = data, log, free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli.main", "agent", "run", "--data", str(data),
             "--http-port", str(self.port), "--segment-seconds", "1", "--detect-fps", "5",
             "--heartbeat-s", "1", "--test-hooks"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip

    def get(self, path: str) -> httpx.Response:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited: {self.log.read_text()[-3000:]}")
        return httpx.get(self.http + path, timeout=10)

    def stats(self) -> dict[str, Any]:
        return self.get("/stats").raise_for_status().json()  # type: ignore[no-any-return]

    def stream(self, camera: str) -> dict[str, Any] | None:
        return self.stats()["streams"].get(f"{camera}/main")  # type: ignore[no-any-return]

    def raise_test_event(self, camera: str, pre_s: float = 1.0, post_s: float = 1.0) -> str:
        r = httpx.post(self.http + "/test/events", timeout=10,
                       json={"camera": camera, "pre_s": pre_s, "post_s": post_s})  # fmt: skip
        r.raise_for_status()
        return str(r.json()["event_id"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        assert self.proc.returncode == 0, self.log.read_text()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Controller:
    """A paho client in the controller's place: publishes desired states and commands, keeps
    every message agents send (parsed) in arrival order."""

    def __init__(self, port: int, client_id: str | None = None) -> None:
        self.messages: list[tuple[TopicKind, BaseMessage]] = []
        self.retained: dict[str, bytes] = {}
        self._lock = threading.Lock()
        persistent = client_id is not None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"ctl-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent, protocol=MQTTProtocolVersion.MQTTv311,
        )  # fmt: skip
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(self.client.is_connected, 10, what="controller connected")

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        topics: list[tuple[str, int]] = [(s.filter, s.qos) for s in controller_subscriptions()]
        client.subscribe(topics)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        kind = parse_topic(msg.topic).kind
        with self._lock:
            if msg.retain:
                self.retained[msg.topic] = bytes(msg.payload)
            if msg.payload:  # an empty payload clears a retained topic
                self.messages.append((kind, parse_message(bytes(msg.payload))))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def publish(self, kind: TopicKind, payload: bytes, retain: bool = False) -> None:
        self.client.publish(build_topic(AGENT_ID, kind), payload, 1, retain).wait_for_publish(10)

    def desire(self, version: int, *cameras: CameraSpec) -> None:
        desired = DesiredState(version=version, cameras=list(cameras), lease_s=60)
        self.publish(TopicKind.DESIRED_STATE, encode_message(desired), retain=True)

    def command(self, action: Action, command_id: uuid.UUID | None = None) -> uuid.UUID:
        cmd = Command(id=command_id or uuid.uuid4(), ts=now_us(), action=action)
        self.publish(TopicKind.COMMANDS, encode_message(cmd))
        return cmd.id

    def all(self, cls: type[M]) -> list[M]:
        with self._lock:
            return [m for _, m in self.messages if isinstance(m, cls)]

    def wait(
        self, cls: type[M], check: Callable[[M], bool] = lambda m: True, timeout: float = 30,
        what: str = "",
    ) -> M:  # fmt: skip
        """The first message of type `cls` that passes `check`."""

        def found() -> M | None:
            return next((m for m in self.all(cls) if check(m)), None)

        return wait_for(found, timeout, what=what or cls.__name__)

    def clip(self, clip_id: uuid.UUID) -> tuple[ClipManifest, bytes] | None:
        """The clip's manifest and its bytes reassembled from the chunks, once all arrived."""
        manifest = next((m for m in self.all(ClipManifest) if m.clip_id == clip_id), None)
        if manifest is None:
            return None
        chunks = {c.index: c.data for c in self.all(ClipChunk) if c.clip_id == clip_id}
        if len(chunks) < manifest.chunk_count:
            return None
        return manifest, b"".join(chunks[i] for i in range(manifest.chunk_count))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    with open_mosquitto(tmp_path) as port:
        yield port


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=2)
    yield sim
    sim.stop()


@pytest.fixture
def controller(broker: int) -> Iterator[Controller]:
    ctl = Controller(broker)
    yield ctl
    ctl.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[], FleetAgent]]:
    started: list[FleetAgent] = []

    def start() -> FleetAgent:
        agent = FleetAgent(tmp_path / "data", tmp_path / f"agent{len(started)}.log")
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()


def camera(sim: SimProcess, name: str = "cam1", channel: int = 1, **kw: Any) -> CameraSpec:
    url = (
        f"{sim.rtsp.replace('rtsp://', 'rtsp://viewer:cam-secret@')}/Streaming/Channels/{channel}01"
    )
    return CameraSpec(name=name, main_url=url, profile="hikvision", detect_fps=5.0, **kw)


def sim_camera(sim: SimProcess, channel: int) -> dict[str, Any]:
    cams: list[dict[str, Any]] = sim.get("/cameras")  # type: ignore[assignment]
    return next(c for c in cams if c["channel"] == channel)


def reported(ctl: Controller, version: int, check: Callable[[ReportedState], bool]) -> bool:
    return any(r.desired_version == version and check(r) for r in ctl.all(ReportedState))


def test_desired_state_drives_cameras_inspection_and_reports(
    tmp_path: Path, broker: int, sim: SimProcess, controller: Controller, agents: Any
) -> None:
    enrolled(tmp_path / "data", broker)
    agent = agents()
    controller.desire(1, camera(sim))
    running = [("cam1", "streaming", True)]
    wait_for(lambda: reported(controller, 1, lambda r: [(c.name, c.state, c.inspection)
                                                          for c in r.cameras] == running),
             30, what="cam1 streaming at version 1")  # fmt: skip
    assert sim_camera(sim, 1)["clients"] == 1 and sim_camera(sim, 1)["sessions_total"] == 1
    # A rate needs two looks: the first heartbeat that sees the camera reports 0 fps.
    beat = controller.wait(
        Heartbeat, lambda h: any(c.frames_analysed > 0 and c.streams[0].fps_in > 0
                                 for c in h.cameras)
    )  # fmt: skip
    assert beat.cameras[0].camera == "cam1"
    assert beat.capacity.max_cameras == 16 and beat.disk_free_bytes > 0
    cache = tmp_path / "data" / "desired.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    # Inspection off: the detect consumer stops, the connection and the recording go on.
    controller.desire(2, camera(sim, inspection=False))
    wait_for(lambda: reported(controller, 2, lambda r: not r.cameras[0].inspection), 20,
             what="inspection off reported")  # fmt: skip
    before = agent.stream("cam1")
    assert before is not None and before["inspection"] is False
    wait_for(lambda: (agent.stream("cam1") or {}).get("packets", 0) >= before["packets"] + 30,
             20, what="packets flowing")  # fmt: skip
    after = agent.stream("cam1")
    assert after is not None and after["analysed"] == before["analysed"]
    assert after["generation"] == before["generation"]  # not reconnected
    assert sim_camera(sim, 1)["sessions_total"] == 1
    assert "detect" not in after["consumers"] and "recorder" in after["consumers"]

    # A second camera joins, then none: every camera session closes.
    controller.desire(3, camera(sim, inspection=False), camera(sim, "cam2", 2))
    wait_for(lambda: sim_camera(sim, 2)["clients"] == 1, 20, what="cam2 connected")
    controller.desire(4)
    wait_for(lambda: sim_camera(sim, 1)["clients"] == 0 and sim_camera(sim, 2)["clients"] == 0,
             20, what="sessions closed")  # fmt: skip
    wait_for(lambda: reported(controller, 4, lambda r: r.cameras == []), 20, what="v4 reported")
    assert agent.stats()["streams"] == {}
    recordings = agent.get("/cameras/cam1/recordings")
    assert recordings.status_code == 404  # the camera is gone from this agent
    agent.stop()
    log = agent.log.read_text()
    assert "cam-secret" not in log and PASSWORD not in log


def test_last_will_carries_the_session_and_restarts_count_up(
    tmp_path: Path, broker: int, controller: Controller, agents: Any
) -> None:
    enrolled(tmp_path / "data", broker)
    agent = agents()

    def status(state: str) -> AgentStatus:
        return controller.wait(AgentStatus, lambda s: s.state == state, what=f"{state} status")

    online = status("online")
    agent.kill()  # SIGKILL: no goodbye, the broker sends the will
    offline = status("offline")
    assert offline.session == online.session
    assert offline.supersedes(online)
    late = Controller(broker)  # a newcomer sees the retained will
    try:
        retained = wait_for(lambda: late.retained.get(build_topic(AGENT_ID, TopicKind.STATUS)), 10)
        assert parse_message(retained, AgentStatus).state == "offline"
    finally:
        late.close()

    agent = agents()
    again = controller.wait(AgentStatus, lambda s: s.session > online.session, what="new session")
    assert (again.state, again.session) == ("online", online.session + 1)
    assert again.supersedes(offline) and not offline.supersedes(again)
    agent.stop()  # a clean stop says offline itself, with the same session
    bye = controller.wait(AgentStatus, lambda s: s.session == again.session and
                          s.state == "offline")  # fmt: skip
    assert bye.supersedes(again)


def test_commands_and_bad_payloads(
    tmp_path: Path, broker: int, sim: SimProcess, controller: Controller, agents: Any
) -> None:
    enrolled(tmp_path / "data", broker)
    agent = agents()
    controller.desire(1, camera(sim))
    wait_for(lambda: reported(controller, 1, lambda r: r.cameras[0].state == "streaming"), 30,
             what="cam1 streaming")  # fmt: skip

    # Garbage on every topic the agent reads: dropped, counted, the agent keeps serving.
    for kind in (TopicKind.DESIRED_STATE, TopicKind.COMMANDS, TopicKind.MODELS):
        controller.publish(kind, b"{not json")
        controller.publish(kind, b'{"v":1,"type":"heartbeat"}')
    controller.publish(TopicKind.COMMANDS, b"x" * (9 * 1024 * 1024))
    bad_desired = encode_message(DesiredState(version=9, cameras=[])).replace(b"}", b',"x":1}', 1)
    controller.publish(TopicKind.DESIRED_STATE, bad_desired)
    refused = wait_for(lambda: sum(agent.stats()["fleet"]["refused"].values()) >= 8, 10,
                       what="bad payloads refused")  # fmt: skip
    assert refused and agent.stats()["fleet"]["refused"]["oversized"] == 1
    assert agent.stats()["fleet"]["desired_version"] == 1  # the bad desired state changed nothing

    # extract_clip: clip then ack; the same command id again is answered again, not re-run.
    t = now_us()
    cmd = controller.command(ExtractClip(camera="cam1", from_us=t - 2_000_000, to_us=t))
    ack = controller.wait(CommandAck, lambda a: a.command_id == cmd, what="clip ack")
    assert ack.ok and ack.clip_id is not None and ack.error is None
    manifest, data = wait_for(lambda: controller.clip(ack.clip_id), 10, what="clip chunks")  # type: ignore[arg-type]
    assert manifest.camera == "cam1" and len(data) == manifest.size
    controller.command(ExtractClip(camera="cam1", from_us=t - 2_000_000, to_us=t), cmd)
    wait_for(lambda: len([a for a in controller.all(CommandAck) if a.command_id == cmd]) == 2, 10,
             what="second ack")  # fmt: skip
    assert [m.clip_id for m in controller.all(ClipManifest)] == [ack.clip_id]

    ref = controller.command(CaptureReference(camera="cam1"))
    nack = controller.wait(CommandAck, lambda a: a.command_id == ref)
    assert not nack.ok and nack.error is not None and "not supported" in nack.error
    probe = controller.command(Discover(timeout_s=1.0))
    assert controller.wait(CommandAck, lambda a: a.command_id == probe).ok
    assert controller.wait(DiscoveryReport).cameras == []  # no discovery wired in yet
    bad_clip = controller.command(ExtractClip(camera="nope", from_us=t - 1, to_us=t - 1))
    assert not controller.wait(CommandAck, lambda a: a.command_id == bad_clip).ok
    agent.stop()
    log = agent.log.read_text()
    assert "cam-secret" not in log and PASSWORD not in log


def test_restarted_while_broker_down_runs_its_last_known_cameras(
    tmp_path: Path, sim: SimProcess
) -> None:
    data = tmp_path / "data"
    with open_mosquitto(tmp_path) as port:
        enrolled(data, port)
        ctl = Controller(port)
        agent = FleetAgent(data, tmp_path / "agent0.log")
        try:
            ctl.desire(5, camera(sim))
            wait_for(lambda: reported(ctl, 5, lambda r: r.cameras[0].state == "streaming"), 30,
                     what="cam1 streaming")  # fmt: skip
        finally:
            ctl.close()
            agent.stop()
    wait_for(lambda: sim_camera(sim, 1)["clients"] == 0, 10, what="session closed")
    agent = FleetAgent(data, tmp_path / "agent1.log")  # the broker is gone now
    try:
        wait_for(lambda: (agent.stream("cam1") or {}).get("state") == "streaming", 30,
                 what="cached camera streaming")  # fmt: skip
        assert sim_camera(sim, 1)["clients"] == 1
        assert agent.stats()["fleet"]["connected"] is False
        assert agent.stats()["fleet"]["desired_version"] == 5
    finally:
        agent.stop()


def test_a_cache_older_than_its_lease_is_not_run(tmp_path: Path, sim: SimProcess) -> None:
    """Past the lease the controller may have given the cameras to another agent."""
    data = tmp_path / "data"
    with open_mosquitto(tmp_path) as port:
        enrolled(data, port)
        ctl = Controller(port)
        agent = FleetAgent(data, tmp_path / "agent0.log")
        try:
            short = DesiredState(version=5, cameras=[camera(sim)], lease_s=1)
            ctl.publish(TopicKind.DESIRED_STATE, encode_message(short), retain=True)
            wait_for(lambda: reported(ctl, 5, lambda r: r.cameras[0].state == "streaming"), 30,
                     what="cam1 streaming")  # fmt: skip
        finally:
            ctl.close()
            agent.stop()
    cache = data / "desired.json"
    past = cache.stat().st_mtime - 5
    os.utime(cache, (past, past))
    agent = FleetAgent(data, tmp_path / "agent1.log")  # the broker is gone now
    try:
        wait_for(lambda: "older than its lease" in (tmp_path / "agent1.log").read_text(), 30,
                 what="the agent refusing its stale cache")  # fmt: skip
        assert agent.stream("cam1") is None
        assert sim_camera(sim, 1)["clients"] == 0
    finally:
        agent.stop()


def test_fleet_mode_refuses_cameras_and_standalone_refuses_test_hooks(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleet.cli.main", "agent", "run", *args],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip

    plain = run("--data", str(tmp_path / "plain"), "--camera", "c=rtsp://127.0.0.1:1/x",
                "--test-hooks")  # fmt: skip
    assert plain.returncode == 2 and "--test-hooks needs an enrolled" in plain.stderr
    data = enrolled(tmp_path / "fleet", free_port())
    mixed = run("--data", str(data), "--camera", "c=rtsp://127.0.0.1:1/x")
    assert mixed.returncode == 2 and "is enrolled" in mixed.stderr
    (data / "enrollment.json").write_text("{}")
    broken = run("--data", str(data))
    assert broken.returncode == 2 and "enrollment.json" in broken.stderr
    assert not os.path.exists(data / "outbox.db")


def test_test_event_route_exists_only_with_the_hook(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app
    from agent.runtime import AgentRuntime
    from fleet.config import AgentConfig, CameraConfig
    from fleet.messages import IDENTITY, Event

    runtime = AgentRuntime(AgentConfig(data_dir=tmp_path / "data"), snapshots=False)
    runtime.apply_cameras([CameraConfig(name="cam1", url=f"rtsp://127.0.0.1:{free_port()}/x")])
    raised: list[tuple[str, float, float]] = []

    def hook(camera: str, pre_s: float, post_s: float) -> Event:
        raised.append((camera, pre_s, post_s))
        t = now_us()
        return Event(id=uuid.uuid4(), camera=camera, kind="anomaly", start_us=t, end_us=t,
                     peak_us=t, adjustment=IDENTITY, clip_id=uuid.uuid4())  # fmt: skip

    try:
        plain = TestClient(create_app(runtime))
        assert plain.post("/test/events", json={"camera": "cam1"}).status_code == 404
        hooked = TestClient(create_app(runtime, test_events=hook))
        ok = hooked.post("/test/events", json={"camera": "cam1"})
        assert ok.status_code == 200 and set(ok.json()) == {"event_id", "clip_id"}
        assert raised == [("cam1", 2.0, 2.0)]
        assert hooked.post("/test/events", json={"camera": "nope"}).status_code == 404
        assert hooked.post("/test/events", json={"camera": "cam1", "pre_s": -1}).status_code == 422
        assert len(raised) == 1
    finally:
        runtime.stop()
