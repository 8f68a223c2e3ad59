"""GET /api/v1/updates: what the web view shows, pushed as server-sent events.

Frames: `fleet` (the fleet view with alarms, at connect, on change, and every 15 s), `event`
(an event stored, updated or acknowledged since the connection opened), `detection` (with
?camera=, that camera's live detection state about once a second) and a `: keep-alive` comment
every 15 s. What is sent when is decided in `update_plan`; this module does the waiting and the
I/O. Blocking calls (SQLite, the registry) run in worker threads, never on the event loop.

Cost per open page is kept small for big fleets: the fleet view is computed once a second for
all connections together (and only while some are open), and a connection asks the event store
for changes only when its in-memory change number moved.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated, Any, Final

import anyio
import httpx
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from controller.api.context import ApiContext, api_context
from controller.api.proxy import owner_url, unreachable
from controller.api.server import Closing, closing
from controller.api.sse import MEDIA_TYPE
from controller.api.update_plan import (
    KEEP_ALIVE,
    Cadence,
    Timetable,
    detection_error,
    detection_frame,
    event_frame,
    fleet_frame,
    fleet_signature,
    fleet_view,
    resume_after,
)
from controller.api.views import fleet_health
from controller.events.store import EventStore
from controller.registry import Registry
from fleet.messages import CameraName
from fleet.utc import now_us

router = APIRouter(prefix="/api/v1", tags=["updates"])

_CHANGES_PER_TICK: Final = 200
# A detection state is small and the agent is near: one that takes longer has a problem.
_DETECTION_TIMEOUT: Final = httpx.Timeout(3.0, connect=2.0)


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    version: int  # moves when the view changes, not with the clock or heartbeat times
    frame: bytes  # the `fleet` frame, encoded once for every connection
    taken: float  # monotonic seconds


class UpdateSource:
    """What every open update feed reads: the shared fleet snapshot and the events' changes."""

    def __init__(self, registry: Registry, events: EventStore, cadence: Cadence = Cadence()):
        self.registry = registry
        self.events = events
        self.cadence = cadence
        self._lock = anyio.Lock()
        self._snapshot: FleetSnapshot | None = None
        self._signature = ""

    async def fleet(self) -> FleetSnapshot:
        """The current fleet snapshot, taken anew (in a thread) when older than `snapshot_s`;
        connections asking meanwhile wait for that one rather than take their own."""
        async with self._lock:
            snapshot = self._snapshot
            if snapshot is None or time.monotonic() - snapshot.taken >= self.cadence.snapshot_s:
                self._snapshot = snapshot = await anyio.to_thread.run_sync(self._take, snapshot)
            return snapshot

    def _take(self, previous: FleetSnapshot | None) -> FleetSnapshot:
        health = fleet_health(self.registry.agents(), self.registry.cameras(), now_us())
        view = fleet_view(health, self.events.alarm_cameras())
        signature = fleet_signature(view)
        version = 0 if previous is None else previous.version + (signature != self._signature)
        self._signature = signature
        return FleetSnapshot(version, fleet_frame(view), time.monotonic())


def update_source(request: Request) -> UpdateSource:
    source: Any = request.app.state.updates
    assert isinstance(source, UpdateSource)
    return source


@router.get("/updates", response_class=StreamingResponse)
async def updates(
    ctx: Annotated[ApiContext, Depends(api_context)],
    source: Annotated[UpdateSource, Depends(update_source)],
    stopping: Annotated[Closing, Depends(closing)],
    camera: CameraName | None = None,
    after: Annotated[int | None, Query(ge=0, description="resume after this event id")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events (text/event-stream) until the client leaves or the server stops:
    `fleet`, `event`, `detection` (with `camera`) and a keep-alive comment. Event frames start
    after the browser's Last-Event-ID (its own reconnects) or `after` (a page opening a new
    feed, which EventSource cannot give a header); otherwise after the latest change."""
    if camera is not None and await anyio.to_thread.run_sync(ctx.registry.camera, camera) is None:
        raise HTTPException(404, f"no camera {camera!r}")
    seen = last_event_id if last_event_id is not None else None if after is None else str(after)
    stream = _stream(source, stopping, ctx, camera, resume_after(seen, source.events.last_seq))
    return StreamingResponse(
        stream, media_type=MEDIA_TYPE,
        # No caching, and no buffering by a proxy in between (nginx reads this header).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # Run after the response, also when the client left mid-stream: ends the generator.
        background=BackgroundTask(stream.aclose),
    )  # fmt: skip


async def _stream(
    source: UpdateSource, stopping: Closing, ctx: ApiContext, camera: str | None, after_seq: int
) -> AsyncGenerator[bytes]:
    due = Timetable(source.cadence, time.monotonic())
    agents = None if camera is None else httpx.AsyncClient(timeout=_DETECTION_TIMEOUT)
    try:
        while True:
            now = time.monotonic()
            fleet = await source.fleet()
            if due.fleet(fleet.version, now):
                yield fleet.frame
            if source.events.last_seq > after_seq:
                changes = await anyio.to_thread.run_sync(
                    source.events.changes, after_seq, _CHANGES_PER_TICK
                )
                for seq, record in changes:
                    yield event_frame(seq, record)
                    after_seq = seq
            if agents is not None and camera is not None and due.detection(now):
                yield await _detection(agents, ctx, camera)
            if due.keep_alive(now):
                yield KEEP_ALIVE
            if await stopping.wait(source.cadence.tick_s):
                return
    finally:
        if agents is not None:
            with anyio.CancelScope(shield=True):  # the client may have left: a cancelled task
                await agents.aclose()


async def _detection(agents: httpx.AsyncClient, ctx: ApiContext, camera: str) -> bytes:
    try:
        base = await anyio.to_thread.run_sync(owner_url, ctx, camera)
        answer = await agents.get(f"{base}/cameras/{camera}/detection")
    except HTTPException as exc:  # not assigned, or its agent says nothing of its media URL
        return detection_error(camera, str(exc.detail))
    except httpx.HTTPError as exc:
        return detection_error(camera, unreachable(camera, exc))
    return detection_frame(camera, answer.status_code, answer.content)
