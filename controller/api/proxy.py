"""Camera media that lives on the agents, served through the controller: the web view and
scripts talk to the controller only, which forwards to the owning agent's local HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from controller.api.context import ApiContext, api_context

router = APIRouter(prefix="/api/v1", tags=["media"])
Ctx = Annotated[ApiContext, Depends(api_context)]

# What the agent answers that is worth passing on; hop-by-hop and length headers are not.
_PASSED_HEADERS: Final = ("content-type", "content-disposition", "x-camfleet-frames",
                          "x-camfleet-first", "x-camfleet-last", "x-camfleet-stamp",
                          "x-camfleet-codec")  # fmt: skip
_TIMEOUT: Final = httpx.Timeout(30.0, connect=3.0)


def _media_url(ctx: ApiContext, agent_id: str) -> str:
    agent = ctx.registry.agent(agent_id)
    url = agent.status.http_url if agent and agent.status else None
    if url is None:
        raise HTTPException(503, f"agent {agent_id} has not said where its media is served")
    return url.rstrip("/")


def owner_url(ctx: ApiContext, camera: str) -> str:
    """The media URL of the agent running `camera`; 404 or 503 (saying why) without one."""
    record = ctx.registry.camera(camera)
    if record is None:
        raise HTTPException(404, f"no camera {camera!r}")
    if record.owner is None:
        raise HTTPException(503, f"camera {camera!r} is not assigned to an agent right now")
    return _media_url(ctx, record.owner)


def _forward(
    ctx: ApiContext, camera: str, path: str, params: Mapping[str, str], base: str | None = None
) -> Response:
    return _get(f"{base or owner_url(ctx, camera)}/cameras/{camera}/{path}", params, camera)


def _get(url: str, params: Mapping[str, str], camera: str) -> Response:
    try:
        answer = httpx.get(url, params=dict(params), timeout=_TIMEOUT)
    except httpx.HTTPError as exc:
        raise HTTPException(502, unreachable(camera, exc)) from None
    headers = passed_headers(answer)
    return Response(answer.content, status_code=answer.status_code, headers=headers)


def unreachable(camera: str, exc: httpx.HTTPError) -> str:
    return f"the agent serving {camera!r} did not answer: {exc}"


def passed_headers(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.lower() in _PASSED_HEADERS}


@router.get("/cameras/{camera}/snapshot.jpg")
def snapshot(camera: str, request: Request, ctx: Ctx) -> Response:
    """The camera's latest frame, from its agent."""
    return _forward(ctx, camera, "snapshot.jpg", request.query_params)


@router.get("/cameras/{camera}/detection")
def detection(camera: str, ctx: Ctx) -> Response:
    """The camera's live detection state (ROIs where they are now, scores, thresholds), as
    JSON from its agent."""
    return _forward(ctx, camera, "detection", {})


@router.get("/cameras/{camera}/recordings")
def recordings(camera: str, request: Request, ctx: Ctx) -> Response:
    """Segments and gaps of the camera's recording (`from`, `to`), from its agent."""
    return _forward(ctx, camera, "recordings", request.query_params)


@router.get("/cameras/{camera}/clip")
def clip(camera: str, request: Request, ctx: Ctx) -> Response:
    """An MP4 of the recording between `from` and `to`, remuxed by the agent."""
    return _forward(ctx, camera, "clip", request.query_params)


@router.get("/cameras/{camera}/frame")
def frame(camera: str, request: Request, ctx: Ctx) -> Response:
    """The exact recorded frame at `at`, as JPEG."""
    return _forward(ctx, camera, "frame", request.query_params)


@router.get("/events/{event_id}/snapshot.jpg")
def event_snapshot(event_id: UUID, request: Request, ctx: Ctx) -> Response:
    """An ROI event's snapshot as its agent drew it (peak frame, ROI where it really was, the
    anomalous region); otherwise the recorded frame at the event's peak (the nearest one for
    events not stamped by a frame, such as health events)."""
    record = request.app.state.events.get(event_id)
    if record is None:
        raise HTTPException(404, f"no event {event_id}")
    base = _media_url(ctx, record.agent_id)
    if record.roi_id is not None:
        drawn = _get(f"{base}/events/{event_id}/snapshot.jpg", {}, record.camera)
        if drawn.status_code == 200:
            return drawn
    return _forward(
        ctx, record.camera, "frame", {"at": str(record.peak_us), "tolerance_us": "1000000"}, base
    )
