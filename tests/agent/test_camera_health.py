"""Camera-health events from sequences of per-stream samples, and recording-gap events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from agent.health.events import gap_event
from agent.health.monitor import CameraHealthMonitor, HealthConfig
from agent.health.sample import StreamSample, expected_fps
from agent.recording.index import Gap
from fleet.messages import HEALTH_KINDS, IDENTITY, Event, encode_message, parse_message
from fleet.profiles import load_profile

S = 1_000_000
T0 = 1_700_000_000 * S
LOST = "lost: connection reset by peer"


@dataclass(frozen=True)
class At:
    """A sample at `t` seconds; streaming at the expected 25 fps unless told otherwise."""

    t: float
    state: str = "streaming"
    fps: float = 25.0
    reconnects: int = 0
    re_anchors: int = 0
    stream: str = "main"
    expected: float | None = 25.0

    def sample(self) -> StreamSample:
        reason = "streaming (tcp)" if self.state == "streaming" else LOST
        return StreamSample(
            self.stream,  # type: ignore[arg-type]
            self.state,  # type: ignore[arg-type]
            reason,
            self.fps,
            self.expected,
            self.reconnects,
            self.re_anchors,
        )


def down(t: float, reconnects: int = 0, stream: str = "main") -> At:
    return At(t, "backoff", 0.0, reconnects, stream=stream)


def low(t: float, fps: float = 10.0) -> At:
    return At(t, fps=fps)


def feed(samples: list[At], monitor: CameraHealthMonitor | None = None) -> list[Event]:
    monitor = monitor or CameraHealthMonitor()
    events = []
    for at in samples:
        events += monitor.observe("cam1", at.sample(), T0 + round(at.t * S))
    return events


def summary(events: list[Event]) -> list[tuple[str, float, float, str | None]]:
    """(kind, start s, end s, detail) with times relative to T0."""
    return [(e.kind, (e.start_us - T0) / S, (e.end_us - T0) / S, e.detail) for e in events]


# fmt: off
CASES: dict[str, tuple[list[At], list[tuple[str, float, float, str | None]]]] = {
    "an outage shorter than 10 s is no event": (
        [At(0), *(down(t) for t in range(1, 10)), At(10)],
        [],
    ),
    "offline after 10 s, once; online when it streams again": (
        [At(0), down(2), down(7), down(12), down(17), down(30), At(31)],
        [("camera_offline", 2, 12, LOST), ("camera_online", 2, 31, "streaming again")],
    ),
    "a camera never seen streaming goes offline too": (
        [At(0, "connecting"), At(5, "connecting"), At(10, "connecting")],
        [("camera_offline", 0, 10, LOST)],
    ),
    "a sub stream that is down is not the camera offline": (
        [down(t, stream="sub") for t in range(0, 40, 5)],
        [],
    ),
    "fps below half the expected for 30 s: degraded once": (
        [low(t) for t in range(0, 70, 10)],
        [("camera_degraded", 0, 30, "main stream: 10.0 fps of 25 expected for 30 s")],
    ),
    "half the expected fps is not low": (
        [low(t, fps=12.5) for t in range(0, 70, 10)],
        [],
    ),
    "low fps that recovers before 30 s starts over": (
        [low(0), low(10), low(20), At(25), low(30), low(40), low(50)],
        [],
    ),
    "a new episode only after the condition cleared": (
        [low(0), low(10), low(20), low(30), At(40), low(50), low(60), low(70), low(80)],
        [
            ("camera_degraded", 0, 30, "main stream: 10.0 fps of 25 expected for 30 s"),
            ("camera_degraded", 50, 80, "main stream: 10.0 fps of 25 expected for 30 s"),
        ],
    ),
    "an outage restarts the low-fps clock": (
        [low(0), low(10), low(20), down(25), low(30), low(40), low(50)],
        [],
    ),
    "no expected fps, no low-fps check": (
        [At(t, fps=1.0, expected=None) for t in range(0, 70, 10)],
        [],
    ),
    "3 reconnects within 60 s: a reconnect storm, reported once per episode": (
        [
            At(0, reconnects=0), At(10, reconnects=1), At(20, reconnects=2),
            At(30, reconnects=3), At(40, reconnects=4),
            At(100, reconnects=4),  # nothing new for 60 s: the storm is over
            At(110, reconnects=5), At(120, reconnects=6), At(130, reconnects=7),
        ],
        [
            ("camera_degraded", 0, 30, "main stream: 3 reconnects in 30 s"),
            ("camera_degraded", 100, 130, "main stream: 3 reconnects in 30 s"),
        ],
    ),
    "reconnects spread over more than 60 s are no storm": (
        [At(t, reconnects=t // 30) for t in range(0, 200, 10)],
        [],
    ),
    "3 re-anchors within 60 s": (
        [At(0), At(5, re_anchors=1), At(10, re_anchors=2), At(15, re_anchors=3)],
        [("camera_degraded", 0, 15, "main stream: 3 re-anchors in 15 s")],
    ),
    "a camera that keeps dropping and coming back is in a storm, not offline": (
        [
            At(0), down(5, 1), At(6, reconnects=1), down(10, 2), At(11, reconnects=2),
            down(15, 3), At(16, reconnects=3),
        ],
        [("camera_degraded", 0, 16, "main stream: 3 reconnects in 16 s")],
    ),
    "retries during an outage are the outage, not a storm afterwards": (
        [At(0), down(2, 1), down(7, 2), down(12, 3), At(15, reconnects=4), At(20, reconnects=4)],
        [("camera_offline", 2, 12, LOST), ("camera_online", 2, 15, "streaming again")],
    ),
    "a counter that restarts (the agent did) counts from the restart": (
        [
            At(0, reconnects=5), At(5, reconnects=0), At(10, reconnects=1),
            At(15, reconnects=2), At(20, reconnects=3),
        ],
        [("camera_degraded", 5, 20, "main stream: 3 reconnects in 15 s")],
    ),
    "the sub stream degrades on its own and says so": (
        [At(t, fps=2.0, stream="sub", expected=15.0) for t in range(0, 40, 10)],
        [("camera_degraded", 0, 30, "sub stream: 2.0 fps of 15 expected for 30 s")],
    ),
    "conditions that hold together are one event naming them all": (
        [
            At(0, fps=5.0), At(15, fps=5.0, reconnects=1), At(30, fps=5.0, reconnects=3),
            At(45, fps=5.0, reconnects=4),
        ],
        [(
            "camera_degraded", 0, 30,
            "main stream: 5.0 fps of 25 expected for 30 s; 3 reconnects in 30 s",
        )],
    ),
    "a wall clock stepped back does not run the monitor backwards": (
        [At(0), down(5), down(20), At(3)],
        [("camera_offline", 5, 20, LOST), ("camera_online", 5, 20, "streaming again")],
    ),
}
# fmt: on


@pytest.mark.parametrize("case", list(CASES))
def test_sample_sequences(case: str) -> None:
    samples, expected = CASES[case]
    assert summary(feed(samples)) == expected


def test_events_are_valid_health_messages() -> None:
    events = feed([At(0), down(1), down(11), At(12), low(20), low(50)])
    assert [e.kind for e in events] == ["camera_offline", "camera_online", "camera_degraded"]
    for event in events:
        assert event.kind in HEALTH_KINDS and event.camera == "cam1"
        assert event.id.version == 4
        assert event.roi_id is None and event.adjustment == IDENTITY and event.peak_score == 0
        assert event.start_us <= event.peak_us <= event.end_us
        assert parse_message(encode_message(event), Event) == event
    assert len({e.id for e in events}) == 3
    offline, online, _ = events
    assert offline.peak_us == offline.start_us and online.peak_us == online.end_us


def test_cameras_are_watched_separately_and_can_be_forgotten() -> None:
    monitor = CameraHealthMonitor(HealthConfig(offline_after_s=5))
    now = T0
    assert monitor.observe("cam1", down(0).sample(), now) == []
    assert monitor.observe("cam2", At(0).sample(), now) == []
    [offline] = monitor.observe("cam1", down(5).sample(), now + 5 * S)
    assert offline.camera == "cam1" and offline.kind == "camera_offline"
    assert monitor.observe("cam2", At(5).sample(), now + 5 * S) == []
    monitor.forget("cam1")
    # A forgotten camera starts afresh: no online event for an outage it no longer knows of.
    assert monitor.observe("cam1", At(6).sample(), now + 6 * S) == []


def test_gap_event() -> None:
    gap = Gap("cam1", "main", T0, T0 + 4 * S, "camera_lost", "stall: no data for 4.0 s")
    event = gap_event(gap)
    assert (event.kind, event.camera, event.start_us, event.end_us) == (
        "recording_gap",
        "cam1",
        T0,
        T0 + 4 * S,
    )
    assert event.detail == "camera_lost: stall: no data for 4.0 s"
    assert event.start_us <= event.peak_us <= event.end_us and event.adjustment == IDENTITY
    assert gap_event(Gap("cam1", "sub", T0, T0 + 1, "disk_full")).detail == "disk_full"
    assert isinstance(event.id, uuid.UUID) and event.id != gap_event(gap).id


def test_expected_fps_from_the_profile() -> None:
    hik = load_profile("hikvision")
    assert (expected_fps(hik, "main"), expected_fps(hik, "sub")) == (25.0, 15.0)
    assert expected_fps(hik.model_copy(update={"sub": None}), "sub") is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: At(0, fps=-1).sample(), "fps_in must be a finite number >= 0"),
        (lambda: At(0, fps=float("nan")).sample(), "fps_in must be a finite number >= 0"),
        (lambda: At(0, state="playing").sample(), "state must be one of"),
        (lambda: At(0, stream="third").sample(), "stream must be one of"),
        (lambda: At(0, reconnects=-1).sample(), "counts, >= 0"),
        (lambda: HealthConfig(offline_after_s=0), "offline_after_s must be > 0"),
        (lambda: HealthConfig(storm_reconnects=0), "storm_reconnects must be > 0"),
    ],
)
def test_bad_input_is_refused_clearly(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_a_bad_camera_name_is_refused_and_the_monitor_goes_on() -> None:
    monitor = CameraHealthMonitor(HealthConfig(offline_after_s=1))
    with pytest.raises(ValueError, match="not a valid camera name"):
        monitor.observe("Bad Name!", down(0).sample(), T0)
    assert monitor.observe("cam1", down(0).sample(), T0) == []
    assert len(monitor.observe("cam1", down(1).sample(), T0 + S)) == 1
