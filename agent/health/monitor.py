"""Camera health from a stream of samples: one event when something starts, one when it ends.

Per camera and stream, fed every stats interval. Decided here:
- Offline: the main stream has not been streaming for `offline_after_s`. The event starts when
  it stopped streaming; `camera_online` follows when it streams again.
- Degraded, while a stream is streaming: its fps has stayed below `low_fps_ratio` of the
  profile's for `low_fps_for_s`, or it reconnected `storm_reconnects` times, or re-anchored
  `storm_re_anchors` times, within `storm_window_s`. One event per episode: a new one only
  after none of the conditions has held on some sample.
- Retries during an outage of at least `offline_after_s` are the outage, already reported (or,
  for the sub stream, not a camera problem yet): they do not count towards a storm afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pydantic import TypeAdapter, ValidationError

from agent.health.counter_window import CounterWindow
from agent.health.events import health_event
from agent.health.sample import StreamSample
from fleet.messages import CameraName, Event

S = 1_000_000
_CAMERA_NAME: TypeAdapter[str] = TypeAdapter(CameraName)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    offline_after_s: float = 10.0
    low_fps_ratio: float = 0.5
    low_fps_for_s: float = 30.0
    storm_window_s: float = 60.0
    storm_reconnects: int = 3
    storm_re_anchors: int = 3

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(
                    f"HealthConfig.{f.name} must be > 0, got {getattr(self, f.name)!r}"
                )


@dataclass
class _Track:
    """What the monitor remembers about one camera stream."""

    reconnects: CounterWindow
    re_anchors: CounterWindow
    last_us: int = 0
    down_since_us: int | None = None  # not streaming since
    offline_since_us: int | None = None  # an offline event went out; when it started
    low_fps_since_us: int | None = None
    degraded: bool = False


class CameraHealthMonitor:
    """Health of the agent's cameras; fed from one thread (the stats loop)."""

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        self._tracks: dict[tuple[str, str], _Track] = {}

    def observe(self, camera: str, sample: StreamSample, now_us: int) -> list[Event]:
        track = self._track(camera, sample.stream)
        # Time never runs backwards within a stream, even if the wall clock is stepped back.
        now_us = track.last_us = max(now_us, track.last_us)
        track.reconnects.add(now_us, sample.reconnects)
        track.re_anchors.add(now_us, sample.re_anchors)
        if sample.state != "streaming":
            return self._not_streaming(camera, sample, track, now_us)
        events = self._streaming_again(camera, track, now_us)
        return events + self._degradation(camera, sample, track, now_us)

    def forget(self, camera: str) -> None:
        """The camera is no longer run here."""
        for key in [k for k in self._tracks if k[0] == camera]:
            del self._tracks[key]

    def _track(self, camera: str, stream: str) -> _Track:
        key = (camera, stream)
        if key not in self._tracks:
            # Refused here, before anything is tracked, rather than when its first event is due.
            try:
                _CAMERA_NAME.validate_python(camera)
            except ValidationError:
                raise ValueError(
                    f"{camera!r} is not a valid camera name (1-64 of a-z, 0-9, '_', '-')"
                ) from None
            window_us = round(self.config.storm_window_s * S)
            self._tracks[key] = _Track(CounterWindow(window_us), CounterWindow(window_us))
        return self._tracks[key]

    def _not_streaming(
        self, camera: str, sample: StreamSample, track: _Track, now_us: int
    ) -> list[Event]:
        track.low_fps_since_us = None
        if track.down_since_us is None:
            track.down_since_us = now_us
        down_for_us = now_us - track.down_since_us
        if sample.stream != "main" or track.offline_since_us is not None:
            return []
        if down_for_us < self.config.offline_after_s * S:
            return []
        track.offline_since_us = start = track.down_since_us
        return [health_event(camera, "camera_offline", start, now_us, start, sample.reason)]

    def _streaming_again(self, camera: str, track: _Track, now_us: int) -> list[Event]:
        if track.down_since_us is None:
            return []
        if now_us - track.down_since_us >= self.config.offline_after_s * S:
            track.reconnects.restart()
            track.re_anchors.restart()
        track.down_since_us = None
        start, track.offline_since_us = track.offline_since_us, None
        if start is None:
            return []
        return [health_event(camera, "camera_online", start, now_us, now_us, "streaming again")]

    def _degradation(
        self, camera: str, sample: StreamSample, track: _Track, now_us: int
    ) -> list[Event]:
        cfg = self.config
        found: list[tuple[int, str]] = []  # (since when, what)
        expected = sample.expected_fps
        if expected and sample.fps_in < cfg.low_fps_ratio * expected:
            if track.low_fps_since_us is None:
                track.low_fps_since_us = now_us
            since = track.low_fps_since_us
            if now_us - since >= cfg.low_fps_for_s * S:
                what = f"{sample.fps_in:.1f} fps of {expected:g} expected"
                found.append((since, f"{what} for {(now_us - since) / S:.0f} s"))
        else:
            track.low_fps_since_us = None
        for window, limit, what in (
            (track.reconnects, cfg.storm_reconnects, "reconnects"),
            (track.re_anchors, cfg.storm_re_anchors, "re-anchors"),
        ):
            count, since = window.growth()
            if count >= limit:
                found.append((since, f"{count} {what} in {(now_us - since) / S:.0f} s"))
        if not found:
            track.degraded = False
            return []
        if track.degraded:
            return []
        track.degraded = True
        start = min(since for since, _ in found)
        detail = f"{sample.stream} stream: " + "; ".join(what for _, what in found)
        return [health_event(camera, "camera_degraded", start, now_us, now_us, detail)]
