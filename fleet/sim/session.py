"""An RTSP session on a simulated camera: where its packets go and where it is in the loop."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from fleet.profiles import StreamKind
from fleet.rtsp.rtp import RtpSequencer

if TYPE_CHECKING:
    from fleet.sim.camera import PreparedLoop


class PacketSink(Protocol):
    """Where a session's RTP and RTCP packets go (TCP interleaved or UDP)."""

    def send_rtp(self, packets: list[bytes]) -> None: ...

    def send_rtcp(self, packet: bytes) -> None: ...

    def backlog(self) -> int:
        """Bytes queued but not yet sent; a slow client makes this grow."""
        ...


@dataclass
class SimSession:
    id: str
    camera: str
    kind: StreamKind
    sink: PacketSink
    transport: str  # the Transport header we answered with
    connection_id: int
    last_activity: float
    sequencer: RtpSequencer = field(
        default_factory=lambda: RtpSequencer(
            ssrc=secrets.randbits(32), initial_seq=secrets.randbits(16)
        )
    )
    ts_base: int = field(default_factory=lambda: secrets.randbits(32))
    playing: bool = False
    frame_offset: int = 0
    variant: PreparedLoop | None = None
    waiting_keyframe: bool = True
    frames_sent: int = 0
    frames_dropped: int = 0
    last_sender_report: float = 0.0

    @property
    def ssrc(self) -> int:
        return self.sequencer.ssrc

    def rtp_timestamp(self, frame_number: int, fps: float) -> int:
        return (self.ts_base + round(frame_number * 90_000 / fps)) % 2**32
