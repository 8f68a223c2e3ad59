"""Health events as the fleet's Event messages: camera-wide (no ROI), no score, no adjustment."""

from __future__ import annotations

import uuid

from agent.recording.index import Gap
from fleet.messages import IDENTITY, Event, HealthKind

_MAX_DETAIL = 2000  # the Event's detail field limit


def health_event(
    camera: str, kind: HealthKind, start_us: int, end_us: int, peak_us: int, detail: str
) -> Event:
    return Event(
        id=uuid.uuid4(),
        camera=camera,
        roi_id=None,
        kind=kind,
        start_us=start_us,
        end_us=end_us,
        peak_us=peak_us,
        detail=detail[:_MAX_DETAIL],
        adjustment=IDENTITY,
    )


def gap_event(gap: Gap) -> Event:
    """A recording gap, as the ledger wrote it down: its reason leads the detail."""
    detail = f"{gap.reason}: {gap.detail}" if gap.detail else gap.reason
    return health_event(gap.camera, "recording_gap", gap.start_us, gap.end_us, gap.start_us, detail)
