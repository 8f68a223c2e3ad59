"""Ground truth of the simulator: when each anomaly really happened, where, and the camera pose.

A camera's stream frame `n` (counted from the simulator's start) is captured at
`epoch_us + n * 1e6 / fps`, and shows loop frame `n % frame_count`. Truth is derived from that
clock, so a test can compare what camfleet reports with what the simulator did.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.sim.scene import AnomalySpec, CameraPose, SceneRenderer, SceneSpec
from fleet.utc import iso_us


@dataclass(frozen=True)
class SceneClock:
    """Maps a camera's frame counter to wall time and loop position."""

    epoch_us: int
    fps: float
    frame_count: int

    def frame_time_us(self, n: int) -> int:
        return self.epoch_us + round(n * 1_000_000 / self.fps)

    def frame_at(self, epoch_us: int) -> int:
        return max(0, round((epoch_us - self.epoch_us) * self.fps / 1_000_000))

    def iteration_start_us(self, iteration: int) -> int:
        return self.frame_time_us(iteration * self.frame_count)


@dataclass(frozen=True)
class TruthRecord:
    camera: str
    iteration: int
    anomaly: AnomalySpec
    start_us: int
    end_us: int
    frame_width: int
    frame_height: int

    def to_json(self) -> dict[str, object]:
        r = self.anomaly.region
        return {
            "camera": self.camera,
            "kind": self.anomaly.kind,
            "iteration": self.iteration,
            "start": iso_us(self.start_us),
            "end": iso_us(self.end_us),
            "start_us": self.start_us,
            "end_us": self.end_us,
            "region": {"x": r.x, "y": r.y, "w": r.w, "h": r.h},
            "region_px": [
                round(r.x * self.frame_width),
                round(r.y * self.frame_height),
                round(r.w * self.frame_width),
                round(r.h * self.frame_height),
            ],
        }


def iteration_truth(
    camera: str, spec: SceneSpec, clock: SceneClock, iteration: int
) -> list[TruthRecord]:
    """The anomalies one pass of the loop will show, stamped in UTC."""
    base = clock.iteration_start_us(iteration)
    return [
        TruthRecord(
            camera=camera,
            iteration=iteration,
            anomaly=a,
            start_us=base + round(a.start_s * 1e6),
            end_us=base + round(a.end_s * 1e6),
            frame_width=spec.width,
            frame_height=spec.height,
        )
        for a in spec.anomalies
    ]


def pose_at(renderer: SceneRenderer, clock: SceneClock, epoch_us: int) -> tuple[int, CameraPose]:
    """The true camera pose (drift) of the frame captured nearest to `epoch_us`."""
    n = clock.frame_at(epoch_us)
    return n, renderer.pose(n % clock.frame_count)
