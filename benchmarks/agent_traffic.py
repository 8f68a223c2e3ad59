"""What a simulated agent sends in the controller benchmark, and when: its status, a heartbeat
for its cameras every few seconds, and anomaly events in bursts (an incident seen by several
cameras at once) arriving as a Poisson process at a target rate.

Plain code, no MQTT: `sim_agents` puts these on the wire.
"""

from __future__ import annotations

import heapq
import random
import uuid
from dataclasses import dataclass, field
from typing import Final, Literal

from fleet.messages import (
    IDENTITY,
    AgentStatus,
    Box,
    CameraStats,
    Capacity,
    Event,
    Heartbeat,
    StreamStats,
)

SOFTWARE_VERSION: Final = "bench-0"
HEARTBEAT_S: Final = 5.0
# How long each simulated anomaly lasted before the agent sent it: end_us is the publish time.
EVENT_SPAN_US: Final = 2_000_000

Presence = Literal["online", "offline"]


def camera_names(n: int) -> list[str]:
    return [f"cam{i + 1}" for i in range(n)]


def status(agent_id: str, state: Presence, session: int, ts_us: int) -> AgentStatus:
    return AgentStatus(
        agent_id=agent_id, state=state, session=session,
        software_version=SOFTWARE_VERSION, capabilities=["h264"], ts=ts_us,
    )  # fmt: skip


def heartbeat(cameras: list[str], ts_us: int) -> Heartbeat:
    return Heartbeat(
        ts=ts_us,
        interval_s=HEARTBEAT_S,
        cameras=[
            CameraStats(
                camera=name,
                streams=[
                    StreamStats(
                        stream="main",
                        state="streaming",
                        fps_in=15.0,
                        frames_stamped=ts_us // 66_666 % 10**9,
                        drift_ms=1.5,
                    )
                ],
                frames_analysed=ts_us // 200_000 % 10**9,
                frames_skipped=0,
                inference_ms_p50=4.0,
                inference_ms_p99=9.0,
            )
            for name in cameras
        ],
        disk_used_bytes=200 * 10**9,
        disk_free_bytes=800 * 10**9,
        clock_synced=True,
        clock_offset_ms=0.3,
        capacity=Capacity(max_cameras=16, load=0.4),
    )


def anomaly(camera: str, published_us: int, rng: random.Random) -> Event:
    """An anomaly on `camera` that ended at `published_us`, the moment it is sent."""
    start = published_us - EVENT_SPAN_US
    return Event(
        id=uuid.UUID(int=rng.getrandbits(128), version=4),
        camera=camera,
        roi_id="zone-1",
        kind="anomaly",
        start_us=start,
        end_us=published_us,
        peak_us=start + EVENT_SPAN_US // 2,
        peak_score=round(0.5 + rng.random() / 2, 3),
        box=Box(x=640, y=360, w=320, h=240, frame_w=1920, frame_h=1080),
        model_version="bench-1",
        adjustment=IDENTITY,
    )


@dataclass
class BurstSchedule:
    """When each of `agents` agents sends its next burst of `burst` events, for an aggregate
    `rate` events/s: each agent's bursts are a Poisson process, so bursts cluster as real
    incidents do. Times are on the caller's clock (seconds)."""

    agents: int
    rate: float
    burst: int
    start: float
    rng: random.Random
    _due: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.agents < 1 or self.rate <= 0 or self.burst < 1:
            raise ValueError("a burst schedule needs agents >= 1, rate > 0 and burst >= 1")
        self._due = [(self.start + self._gap(), i) for i in range(self.agents)]
        heapq.heapify(self._due)

    def _gap(self) -> float:
        per_agent_bursts_s = self.rate / self.burst / self.agents
        return self.rng.expovariate(per_agent_bursts_s)

    def next_due(self) -> float:
        return self._due[0][0]

    def pop_due(self, now: float) -> list[int]:
        """The agents whose burst is due by `now` (one entry per burst), each rescheduled from
        its due time, not from `now`: a late sender catches up instead of losing the rate."""
        agents = []
        while self._due and self._due[0][0] <= now:
            due, agent = heapq.heappop(self._due)
            agents.append(agent)
            heapq.heappush(self._due, (due + self._gap(), agent))
        return agents


def burst_cameras(cameras: list[str], burst: int, rng: random.Random) -> list[str]:
    """The cameras that see one incident: distinct when the burst fits, in random order."""
    if burst <= len(cameras):
        return rng.sample(cameras, burst)
    return [rng.choice(cameras) for _ in range(burst)]
