"""One camera stream's chain, as the runtime holds it: its connection (ingest + stamping), its
hub, and the consumers hanging off the hub (live snapshots and GOP, audit, drift tracking)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.audit.auditor import FrameAuditor
from agent.detection.tracking import DriftConsumer
from agent.fanout.hub import StreamHub
from agent.frames import StampedPacket, StreamInfo
from agent.ingest.connection import StreamConnection
from agent.live.gop import GopCache
from agent.live.latest import LatestFrame
from agent.stamping.stamper import Stamper
from fleet.profiles import StreamKind


class PacketTap:
    """Hands ingest's packets to the hub, noting the stream parameters in force on the way (the
    frame size, without decoding a frame)."""

    def __init__(self, hub: StreamHub) -> None:
        self._publish = hub.publish
        self.info: StreamInfo | None = None

    def __call__(self, sp: StampedPacket) -> None:
        self.info = sp.info
        self._publish(sp)


@dataclass
class StreamPipeline:
    camera: str
    stream: StreamKind
    hub: StreamHub
    stamper: Stamper
    connection: StreamConnection
    tap: PacketTap  # what the connection publishes through
    live: LatestFrame | None
    # (frames analysed by auditors already stopped, the current auditor): swapped as one
    # tuple so a reader never sees a count twice or not at all.
    audit: tuple[int, FrameAuditor | None] = field(default=(0, None))
    drift: DriftConsumer | None = None  # on the stream registered: sub if any, else main
    gop: GopCache | None = None  # the live stream's current GOP, for viewers to start with

    @property
    def info(self) -> StreamInfo | None:
        """The stream's parameters as of its latest packet; None before the first."""
        return self.tap.info

    @property
    def auditor(self) -> FrameAuditor | None:
        return self.audit[1]

    @property
    def analysed(self) -> int:
        before, auditor = self.audit
        return before + (auditor.stats().analysed if auditor else 0)

    def start(self) -> None:
        if self.live:
            self.live.start()
        if self.gop:
            self.gop.start()
        if self.auditor:
            self.auditor.start()
        if self.drift:
            self.drift.start()
        self.connection.start()

    def stop_ingest(self) -> None:
        self.connection.stop()

    def stop_consumers(self) -> None:
        if self.auditor:
            self.auditor.stop()
        if self.drift:
            self.drift.stop()
        if self.live:
            self.live.stop()
        if self.gop:
            self.gop.stop()

    def switch_auditor(self, make: Callable[[], FrameAuditor | None], running: bool) -> None:
        """Replace the detection consumer (None: no inspection); ingest and recording go on."""
        before, old = self.audit
        if old is not None:
            if running:
                old.stop()
            else:
                old.consumer.close()  # frees the consumer's name for the new one
            before += old.stats().analysed
        new = make()  # subscribes only now: one consumer per name
        if new is not None and running:
            new.start()
        self.audit = (before, new)

    def switch_drift(self, make: Callable[[], DriftConsumer | None], running: bool) -> None:
        """Replace the drift tracker (None: no inspection); a new one takes a new reference."""
        if self.drift is not None:
            self.drift.stop()
        self.drift = make()
        if self.drift is not None and running:
            self.drift.start()

    def stats(self) -> dict[str, Any]:
        conn = self.connection.stats()
        hub = self.hub.stats()
        return {
            "state": conn.state.value,
            "reason": conn.reason,
            "since_us": conn.since_us,
            "reconnects": conn.reconnects,
            "packets": conn.packets,
            "bytes": conn.bytes,
            "corrupt": conn.corrupt,
            "stalls": conn.stalls,
            "last_packet_at_us": conn.last_packet_at_us,
            "generation": conn.generation,
            "stamper": asdict(self.stamper.stats),
            "consumers": {c.name: asdict(c) for c in hub.consumers},
            "decoder": asdict(hub.decoder) if hub.decoder else None,
            "inspection": self.auditor is not None,
            "analysed": self.analysed,
            "drift": _drift_stats(self.drift),
        }


def _drift_stats(drift: DriftConsumer | None) -> dict[str, Any] | None:
    if drift is None:
        return None
    snapshot = drift.stats()
    stats = asdict(snapshot)
    for key in ("last", "adjustment"):  # pydantic models: as JSON-ready dicts
        adj = getattr(snapshot, key)
        stats[key] = adj.model_dump() if adj else None
    return stats
