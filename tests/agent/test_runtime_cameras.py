"""The runtime's cameras changing while it runs (`apply_cameras`), against the simulator: one
session per camera throughout, recordings closed cleanly, inspection switched in place."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SimProcess, free_port, start_sim, wait_for

from agent.recording.index import Index
from agent.recording.verify import verify
from agent.runtime import AgentRuntime
from fleet.config import AgentConfig, CameraConfig, Defaults
from fleet.messages import IDENTITY, Event

SIM_ARGS = ("--main-size", "320x180", "--loop-seconds", "4", "--profile", "hikvision")


def cam(sim: SimProcess, name: str, channel: int, path: str = "", **kw: Any) -> CameraConfig:
    url = f"{sim.rtsp}{path or f'/Streaming/Channels/{channel}01'}"
    return CameraConfig(name=name, url=url, profile="hikvision", detect_fps=5.0, **kw)


def sim_camera(sim: SimProcess, channel: int) -> dict[str, Any]:
    cams: list[dict[str, Any]] = sim.get("/cameras")  # type: ignore[assignment]
    return next(c for c in cams if c["channel"] == channel)


def main_stats(runtime: AgentRuntime, camera: str) -> dict[str, Any]:
    return runtime.stats()["streams"].get(f"{camera}/main", {})  # type: ignore[no-any-return]


def streaming(runtime: AgentRuntime, camera: str) -> bool:
    return main_stats(runtime, camera).get("state") == "streaming"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[AgentRuntime]:
    config = AgentConfig(data_dir=tmp_path / "data", defaults=Defaults(segment_seconds=1.0))
    rt = AgentRuntime(config, snapshots=False)
    rt.start()
    yield rt
    rt.stop()


class Readers:
    """Threads reading stats and pipelines the whole time, as the HTTP API does."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self.errors: list[BaseException] = []
        self.reads = 0
        self._stop = threading.Event()

        def read() -> None:
            while not self._stop.is_set():
                try:
                    runtime.stats()
                    for name in runtime.cameras:
                        runtime.pipeline(name)
                    self.reads += 1
                except BaseException as exc:
                    self.errors.append(exc)
                self._stop.wait(0.002)  # busy, but leaving the GIL to ingest

        self._threads = [threading.Thread(target=read, daemon=True) for _ in range(2)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def test_cameras_come_and_go_and_inspection_switches_in_place(
    tmp_path: Path, runtime: AgentRuntime
) -> None:
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=2)
    readers = Readers(runtime)
    try:
        assert runtime.apply_cameras([cam(sim, "cam1", 1)]) == {}
        wait_for(lambda: main_stats(runtime, "cam1").get("analysed", 0) >= 5, 30, what="analysed")
        first = runtime.pipeline("cam1")
        assert first is not None and sim_camera(sim, 1)["clients"] == 1

        # Inspection off: the detect consumer goes, the connection and the recorder stay.
        assert runtime.apply_cameras([cam(sim, "cam1", 1, inspect=False)]) == {}
        assert runtime.pipeline("cam1") is first and first.auditor is None
        frozen = main_stats(runtime, "cam1")
        wait_for(lambda: main_stats(runtime, "cam1")["packets"] >= frozen["packets"] + 30, 20,
                 what="packets flowing")  # fmt: skip
        now = main_stats(runtime, "cam1")
        assert now["analysed"] == frozen["analysed"] and set(now["consumers"]) == {"recorder"}

        # Back on (counting on from where it was), and a second camera joins.
        assert runtime.apply_cameras([cam(sim, "cam1", 1), cam(sim, "cam2", 2)]) == {}
        wait_for(lambda: main_stats(runtime, "cam1")["analysed"] >= frozen["analysed"] + 5, 20,
                 what="analysing again")  # fmt: skip
        wait_for(lambda: streaming(runtime, "cam2"), 30, what="cam2 streaming")
        assert runtime.pipeline("cam1") is first
        assert sim_camera(sim, 1)["sessions_total"] == 1
        wait_for(lambda: main_stats(runtime, "cam2").get("analysed", 0) >= 5, 20,
                 what="cam2 analysed")  # fmt: skip

        # cam1 under another URL of the same camera: reconnected; cam2 removed.
        assert runtime.apply_cameras([cam(sim, "cam1", 1, path="/cam1")]) == {}
        assert runtime.pipeline("cam1") is not first and runtime.pipeline("cam2") is None
        assert runtime.cameras == ["cam1"]
        wait_for(lambda: streaming(runtime, "cam1"), 30, what="cam1 reconnected")
        assert sim_camera(sim, 1)["clients"] == 1 and sim_camera(sim, 1)["sessions_total"] == 2
        wait_for(lambda: sim_camera(sim, 2)["clients"] == 0, 10, what="cam2 session closed")
        assert_recording_closed(runtime, "cam2")

        assert runtime.apply_cameras([]) == {}
        assert runtime.stats()["streams"] == {} and runtime.cameras == []
        wait_for(lambda: sim_camera(sim, 1)["clients"] == 0, 10, what="cam1 session closed")
        assert_recording_closed(runtime, "cam1")
    finally:
        readers.stop()
        sim.stop()
    assert readers.errors == [] and readers.reads > 10
    runtime.stop()
    for name in ("cam1", "cam2"):
        report = verify(runtime.data_dir, name)
        assert report.ok and report.frames_checked >= 5, report


def assert_recording_closed(runtime: AgentRuntime, camera: str) -> None:
    """No segment left open, and the last one closed with its hash and every frame indexed."""
    with Index.open(runtime.data_dir) as index:
        segments = index.segments(camera, "main")
        assert segments and all(s.status == "closed" for s in segments), segments
        last = segments[-1]
        assert last.sha256 and last.end_us is not None
        assert len(index.segment_frames(last.id)) == last.frames > 0


def test_cameras_that_cannot_run_are_named_and_the_rest_run(runtime: AgentRuntime) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/x"  # nothing listens: the camera backs off
    errors = runtime.apply_cameras([
        CameraConfig(name="odd", url=f"{url}/odd", profile="no-such-profile"),
        CameraConfig(name="first", url=url),
        CameraConfig(name="twin", url=f"{url}/twin", sub_url=url),
    ])  # fmt: skip
    assert set(errors) == {"odd", "twin"}
    assert "no-such-profile" in errors["odd"]
    assert errors["twin"] == "shares a stream url with camera 'first'"
    assert runtime.cameras == ["first"]
    wait_for(lambda: main_stats(runtime, "first").get("state") == "backoff", 15, what="backoff")
    assert runtime.apply_cameras([]) == {}  # a camera backing off is removed cleanly too
    runtime.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        runtime.apply_cameras([CameraConfig(name="late", url=url)])


def test_events_left_open_by_a_stopped_agent_are_closed_when_it_starts(tmp_path: Path) -> None:
    """An open event whose detector is gone would keep its camera in alarm at the controller."""
    config = AgentConfig(data_dir=tmp_path / "data")
    earlier = AgentRuntime(config)
    opened = Event(id=uuid.uuid4(), camera="cam1", roi_id="door", kind="anomaly", start_us=10,
                   peak_us=20, end_us=20, peak_score=3.0, adjustment=IDENTITY,
                   open=True)  # fmt: skip
    closed = opened.model_copy(update={"id": uuid.uuid4(), "open": False})
    earlier.events.record(opened)
    earlier.events.record(closed)
    assert earlier.events.open_events() == [opened]

    heard: list[Event] = []
    runtime = AgentRuntime(config, on_event=lambda event, clip: heard.append(event))
    runtime.start()
    try:
        assert [e.id for e in heard] == [opened.id]
        ended = heard[0]
        assert not ended.open and ended.end_us == opened.end_us
        assert ended.detail and "agent stopped" in ended.detail
        assert runtime.events.open_events() == []
    finally:
        runtime.stop()
