"""One simulated camera: its encoded streams, its sessions, and how it degrades under load.

Real IP cameras get worse when several clients pull the same stream (fps halves, bitrate drops,
clients see different frames). The simulator reproduces what the firmware profile says, because
that is the failure mode camfleet's one-connection-per-camera rule exists to avoid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from fleet.profiles import FirmwareProfile, StreamKind
from fleet.rtsp.rtp import packetize_h264
from fleet.sim.encoded import EncodedLoop
from fleet.sim.scene import SceneRenderer, SceneSpec
from fleet.sim.session import SimSession
from fleet.sim.truth import SceneClock


@dataclass(frozen=True)
class PreparedLoop:
    """An encoded loop with its RTP payloads computed once, so serving only adds headers."""

    loop: EncodedLoop
    frame_step: int  # scene frames per encoded frame
    payloads: tuple[tuple[bytes, ...], ...]

    @classmethod
    def prepare(cls, loop: EncodedLoop, frame_step: int, mtu: int = 1400) -> PreparedLoop:
        return cls(
            loop=loop,
            frame_step=frame_step,
            payloads=tuple(tuple(packetize_h264(u.nals, mtu)) for u in loop.units),
        )

    def unit_at(self, scene_index: int) -> int | None:
        """The encoded frame shown at this scene frame, or None if this variant skips it."""
        if scene_index % self.frame_step:
            return None
        return scene_index // self.frame_step


@dataclass(frozen=True)
class StreamVariants:
    kind: StreamKind
    normal: PreparedLoop
    degraded: PreparedLoop | None  # what the camera sends while it has several clients


@dataclass
class SimCamera:
    name: str
    channel: int
    profile: FirmwareProfile
    spec: SceneSpec
    renderer: SceneRenderer
    clock: SceneClock
    streams: dict[StreamKind, StreamVariants]
    sessions: dict[str, SimSession] = field(default_factory=dict)
    sessions_total: int = 0
    sessions_rejected: int = 0
    frames_sent: dict[str, int] = field(default_factory=dict)
    next_frame: int = 0  # the frame counter the player will send next
    degraded_ticks: int = 0

    @property
    def gop(self) -> int:
        return self.streams["main"].normal.loop.encoding.gop

    @property
    def clients(self) -> int:
        return len(self.sessions)

    def clients_of(self, kind: StreamKind) -> int:
        return sum(1 for s in self.sessions.values() if s.kind == kind)

    def degraded_stream(self, kind: StreamKind) -> bool:
        """Several clients of one stream split its encoder; main and sub have their own."""
        return self.profile.multi_client.degrades and self.clients_of(kind) > 1

    @property
    def degraded(self) -> bool:
        return any(self.degraded_stream(kind) for kind in self.streams)

    def can_admit(self) -> bool:
        return self.clients < self.profile.max_sessions

    def playing(self) -> Iterator[SimSession]:
        return (s for s in list(self.sessions.values()) if s.playing)

    def frame_offset_for_new_client(self, kind: StreamKind) -> int:
        """Whole GOPs into the loop, per extra client of the stream, where frames differ."""
        if not self.profile.multi_client.frames_differ:
            return 0
        return sum(1 for s in self.playing() if s.kind == kind) * self.gop

    def variant_for(self, kind: StreamKind) -> PreparedLoop:
        variants = self.streams[kind]
        if self.degraded_stream(kind) and variants.degraded is not None:
            return variants.degraded
        return variants.normal

    def stats(self, rtsp_base: str) -> dict[str, object]:
        return {
            "name": self.name,
            "channel": self.channel,
            "profile": self.profile.name,
            "clients": self.clients,
            "playing": sum(1 for _ in self.playing()),
            "sessions_total": self.sessions_total,
            "sessions_rejected": self.sessions_rejected,
            "frames_sent": sum(self.frames_sent.values()),
            "degraded": self.degraded,
            "streams": {
                kind: {
                    "url": rtsp_base + self.profile.stream_path(kind, self.channel),
                    "alias": f"{rtsp_base}/{self.name}" + ("" if kind == "main" else "/sub"),
                    "width": v.normal.loop.encoding.width,
                    "height": v.normal.loop.encoding.height,
                    "fps": v.normal.loop.encoding.fps,
                    "frames_sent": self.frames_sent.get(kind, 0),
                    "clients": self.clients_of(kind),
                }
                for kind, v in self.streams.items()
            },
        }
