"""The event center over HTTP: list, read and acknowledge events, and serve their clips.

No authentication here: the app includes this router behind its admin dependency. Routes are
plain functions (run in the thread pool) because the stores block on SQLite and the disk.
Clips are served by Starlette's FileResponse, which answers Range requests (206), so a browser
can seek in a clip without fetching all of it.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse

from controller.events.clip_info import ClipInfo
from controller.events.clips import CONTENT_TYPE, ClipStore
from controller.events.query import DEFAULT_LIMIT, MAX_LIMIT, EventFilter, InvalidFilter
from controller.events.records import EventPage, EventRecord, UnknownEvent
from controller.events.store import EventStore
from fleet.messages import MAX_SAFE_INT, AgentId, CameraName, EventKind, RoiId
from fleet.utc import now_us

router = APIRouter(prefix="/api/v1", tags=["events"])


def _events(request: Request) -> EventStore:
    store: EventStore = request.app.state.events
    return store


def _clips(request: Request) -> ClipStore:
    store: ClipStore = request.app.state.clips
    return store


Events = Annotated[EventStore, Depends(_events)]
Clips = Annotated[ClipStore, Depends(_clips)]
Stamp = Annotated[int | None, Query(ge=0, le=MAX_SAFE_INT)]


@router.get("/events")
def list_events(
    events: Events,
    camera: CameraName | None = None,
    roi_id: RoiId | None = None,
    kind: Annotated[list[EventKind] | None, Query(description="repeat for any of several")] = None,
    agent_id: AgentId | None = None,
    since_us: Stamp = None,
    until_us: Stamp = None,
    min_score: float | None = None,
    acknowledged: bool | None = None,
    open: Annotated[bool | None, Query(description="still going on, or over")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> EventPage:
    """Events newest first; follow `next_cursor` for the next page (None: no more)."""
    try:
        f = EventFilter(
            camera=camera, roi_id=roi_id, kinds=tuple(kind) if kind else None,
            agent_id=agent_id, since_us=since_us, until_us=until_us, min_score=min_score,
            acknowledged=acknowledged, open=open, limit=limit, cursor=cursor,
        )  # fmt: skip
    except InvalidFilter as exc:
        raise HTTPException(400, str(exc)) from None
    return events.query(f)


@router.get("/events/{event_id}")
def get_event(events: Events, event_id: UUID) -> EventRecord:
    return _event(events, event_id)


@router.post("/events/{event_id}/ack")
def acknowledge_event(events: Events, event_id: UUID, request: Request) -> EventRecord:
    """Acknowledge an event; acknowledging it again keeps the first acknowledgement."""
    user = str(getattr(request.state, "user", "admin"))
    try:
        return events.acknowledge(event_id, user, now_us())
    except UnknownEvent as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/events/{event_id}/clip", response_class=FileResponse)
def event_clip(events: Events, clips: Clips, event_id: UUID) -> FileResponse:
    """The event's clip (video/mp4; Range requests supported)."""
    clip_id = _event(events, event_id).clip_id
    if clip_id is None:
        raise HTTPException(404, f"event {event_id} has no clip")
    return _clip_file(clips, clip_id)


@router.get("/clips/{clip_id}")
def clip_info(clips: Clips, clip_id: UUID) -> ClipInfo:
    """What is known about a clip: its manifest, how many chunks arrived, its state."""
    info = clips.info(clip_id)
    if info is None:
        raise HTTPException(404, f"no clip {clip_id}: neither manifest nor chunks received")
    return info


@router.get("/clips/{clip_id}/video", response_class=FileResponse)
def clip_video(clips: Clips, clip_id: UUID) -> FileResponse:
    """A clip by id (video/mp4; Range requests supported), with or without an event."""
    return _clip_file(clips, clip_id)


def _event(events: EventStore, event_id: UUID) -> EventRecord:
    record = events.get(event_id)
    if record is None:
        raise HTTPException(404, f"no event {event_id}")
    return record


def _clip_file(clips: ClipStore, clip_id: UUID) -> FileResponse:
    info = clips.info(clip_id)
    if info is None:
        raise HTTPException(404, f"clip {clip_id} not received yet (no manifest or chunks)")
    if info.state == "corrupt":
        raise HTTPException(404, f"clip {clip_id} was rejected: {info.reason}")
    if info.state == "pending":
        raise HTTPException(404, f"clip {clip_id} not received yet ({info.progress()})")
    path = clips.path(clip_id)
    if path is None:
        raise HTTPException(404, f"clip {clip_id} was received but its file is missing")
    return FileResponse(path, media_type=CONTENT_TYPE)
