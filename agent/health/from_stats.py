"""Feeds the health monitor from the runtime's stats, once per heartbeat: turns cumulative
packet counts into a measured frame rate and looks up what the camera's profile promises."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent.health.monitor import CameraHealthMonitor
from agent.health.sample import StreamSample, expected_fps
from agent.rate import RateMeter
from fleet.messages import Event
from fleet.profiles import ProfileError, StreamKind, load_profile


class StatsHealthWatch:
    """`watch(stats, now_us)` → the health events this look at the stats raises."""

    def __init__(
        self, profile_of: Callable[[str], str | None], monitor: CameraHealthMonitor | None = None
    ) -> None:
        self.profile_of = profile_of  # camera name -> its firmware profile (None: gone)
        self.monitor = monitor or CameraHealthMonitor()
        self._fps = RateMeter()
        self._cameras: set[str] = set()
        self._fps_of_profile: dict[tuple[str, str], float | None] = {}  # fixed files

    def __call__(self, stats: Mapping[str, Any], now_us: int) -> Iterable[Event]:
        events: list[Event] = []
        seen: set[str] = set()
        for key, stream in stats["streams"].items():
            camera, _, kind = key.partition("/")
            seen.add(camera)
            fps = self._fps.rate(key, stream["packets"], now_us)
            sample = StreamSample(
                stream=kind,  # runtime keys are camera/main or camera/sub
                state=stream["state"],
                reason=stream.get("reason") or "",
                fps_in=fps or 0.0,
                # No rate measured yet: the frame rate cannot be judged this time.
                expected_fps=None if fps is None else self._expected(camera, kind),
                reconnects=stream["reconnects"],
                re_anchors=stream["stamper"]["reanchors"],
            )
            events.extend(self.monitor.observe(camera, sample, now_us))
        for gone in self._cameras - seen:
            self.monitor.forget(gone)
        self._fps.keep_only(set(stats["streams"]))
        self._cameras = seen
        return events

    def _expected(self, camera: str, kind: StreamKind) -> float | None:
        name = self.profile_of(camera)
        if name is None:
            return None
        if (name, kind) not in self._fps_of_profile:
            try:
                self._fps_of_profile[name, kind] = expected_fps(load_profile(name), kind)
            except ProfileError:
                self._fps_of_profile[name, kind] = None
        return self._fps_of_profile[name, kind]
