"""The agent's HTTP side: thin routes over the runtime and the media index.

Times go out as UTC ISO 8601 with microseconds and come in as that or epoch microseconds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from agent.api.jpeg import to_jpeg
from agent.api.metrics import render_metrics
from agent.ingest.backoff import ConnectionState
from agent.live.response import live_response
from agent.live.viewer import LiveUnavailable
from agent.recording.clip import ClipError, decode_frame_at, extract_clip
from agent.recording.index import Index
from fleet.messages import Event
from fleet.utc import iso_us, parse_time_us

if TYPE_CHECKING:
    from agent.runtime import AgentRuntime

MAX_CLIP_S = 15 * 60
MAX_FRAME_TOLERANCE_US = 5_000_000

# (camera, pre_s, post_s) -> the event raised: the fleet side's synthetic events (--test-hooks).
TestEventHook = Callable[[str, float, float], Event]


class SyntheticEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera: str
    pre_s: float = Field(2.0, ge=0, le=60)
    post_s: float = Field(2.0, ge=0, le=60)


def _time(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_time_us(value)
    except ValueError:
        raise HTTPException(
            422, f"{name}: not a UTC ISO 8601 time or epoch µs: {value!r}"
        ) from None


def _index(request: Request) -> Iterator[Index]:
    # One SQLite connection per request (the recorder writes through its own). FastAPI runs a
    # sync dependency's setup, the route and the teardown in worker threads that may differ.
    with Index.open(request.app.state.runtime.data_dir, handed_between_threads=True) as idx:
        yield idx


Idx = Annotated[Index, Depends(_index)]


def create_app(
    runtime: AgentRuntime,
    fleet_stats: Callable[[], dict[str, Any]] | None = None,
    test_events: TestEventHook | None = None,
) -> FastAPI:
    """`fleet_stats` adds a "fleet" section to /stats; `test_events` adds POST /test/events
    (the route does not exist without it)."""
    app = FastAPI(title="camfleet agent", docs_url=None, redoc_url=None)
    app.state.runtime = runtime

    def camera(name: str) -> str:
        if name not in runtime.cameras:
            raise HTTPException(404, f"no camera {name!r} on this agent")
        return name

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "cameras": len(runtime.cameras)}

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        result = runtime.stats()
        if fleet_stats is not None:
            result["fleet"] = fleet_stats()
        return result

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return render_metrics(runtime.stats())

    @app.get("/cameras/{name}/recordings")
    def recordings(
        name: str, idx: Idx, stream: str = "main", from_: str | None = Query(None, alias="from"),
        to: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        cam = camera(name)
        lo, hi = _time("from", from_), _time("to", to)
        segs = idx.segments(cam, stream, from_us=lo, to_us=hi)
        return {
            "camera": cam,
            "stream": stream,
            "segments": [
                {
                    "id": s.id,
                    "start": iso_us(s.start_us),
                    "end": iso_us(s.end_us) if s.end_us else None,
                    "frames": s.frames,
                    "bytes": s.bytes,
                    "sha256": s.sha256,
                    "status": s.status,
                }
                for s in segs
                if s.status != "deleted"
            ],
            "gaps": [
                {
                    "start": iso_us(g.start_us),
                    "end": iso_us(g.end_us),
                    "reason": g.reason,
                    "detail": g.detail,
                }
                for g in idx.gaps(cam, stream, lo, hi)
            ],
        }

    @app.get("/cameras/{name}/clip")
    def clip(
        name: str, idx: Idx, from_: str = Query(alias="from"), to: str = Query(),
        stream: str = "main",
    ) -> FileResponse:  # fmt: skip
        cam = camera(name)
        lo, hi = _time("from", from_), _time("to", to)
        assert lo is not None and hi is not None
        if hi - lo > MAX_CLIP_S * 1_000_000:
            raise HTTPException(422, f"a clip is at most {MAX_CLIP_S} s long")
        out = Path(tempfile.mkstemp(suffix=".mp4", prefix="clip-")[1])
        try:
            result = extract_clip(idx, cam, stream, lo, hi, out)
        except ClipError as exc:
            out.unlink(missing_ok=True)
            raise HTTPException(404, str(exc)) from None
        return FileResponse(
            out,
            media_type="video/mp4",
            headers={
                "X-Camfleet-First": iso_us(result.first_us),
                "X-Camfleet-Last": iso_us(result.last_us),
                "X-Camfleet-Frames": str(result.frames),
            },
            background=BackgroundTask(out.unlink, missing_ok=True),
        )

    @app.get("/cameras/{name}/frame")
    def frame(
        name: str,
        idx: Idx,
        at: str,
        stream: str = "main",
        tolerance_us: Annotated[int, Query(ge=0, le=MAX_FRAME_TOLERANCE_US)] = 0,
    ) -> Response:
        """The recorded frame stamped `at`, or the nearest within `tolerance_us`."""
        cam = camera(name)
        stamp = _time("at", at)
        assert stamp is not None
        try:
            image = decode_frame_at(idx, cam, stream, stamp, tolerance_us)
        except ClipError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(to_jpeg(image), media_type="image/jpeg",
                        headers={"X-Camfleet-Stamp": iso_us(stamp)})  # fmt: skip

    @app.get("/events")
    def events(
        camera: str | None = None,
        since: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """This agent's events (ROI anomalies, camera moved, view lost), newest first."""
        found = runtime.events.events(camera, _time("since", since), limit)
        return [e.model_dump(mode="json") for e in found]

    @app.get("/events/{event_id}/snapshot.jpg")
    def event_snapshot(event_id: UUID) -> FileResponse:
        """The event's peak frame with its ROI and the anomalous region drawn."""
        path = runtime.events.snapshot_path(event_id)
        if not path.exists():
            raise HTTPException(404, f"no snapshot of event {event_id}")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/cameras/{name}/snapshot.jpg")
    def snapshot(name: str, stream: str = "main") -> Response:
        cam = camera(name)
        pipeline = runtime.pipeline(cam, stream)
        latest = pipeline.live.latest if pipeline and pipeline.live else None
        if latest is None:
            raise HTTPException(503, f"no frame from {cam}/{stream} yet")
        sp, image = latest
        return Response(to_jpeg(image), media_type="image/jpeg",
                        headers={"X-Camfleet-Stamp": iso_us(sp.stamp.capture_us)})  # fmt: skip

    @app.get("/cameras/{name}/detection")
    def detection(name: str) -> dict[str, Any]:
        """The camera's live detection state: its ROIs where they are now, and their scores."""
        state = runtime.detection_state(camera(name))
        if state is None:  # removed since camera() looked
            raise HTTPException(404, f"no camera {name!r} on this agent")
        return state.model_dump(mode="json")

    @app.get("/cameras/{name}/live.mp4", response_class=StreamingResponse)
    async def live(name: str, stream: Literal["main", "sub"] | None = None) -> Response:
        """The stream's own H.264 as a never-ending fragmented MP4 (default: the sub stream if
        the camera has one); header X-Camfleet-Codec is its RFC 6381 codec string."""
        cam = camera(name)
        kind = stream or ("sub" if runtime.pipeline(cam, "sub") else "main")
        pipeline = runtime.pipeline(cam, kind)
        if pipeline is None:
            raise HTTPException(404, f"camera {cam!r} has no {kind} stream")
        state = pipeline.connection.status.state
        if state is not ConnectionState.STREAMING:
            raise HTTPException(503, f"{cam}/{kind} is not streaming ({state})")
        try:
            return await live_response(pipeline.hub, pipeline.gop)
        except LiveUnavailable as exc:
            raise HTTPException(503, str(exc)) from None

    if test_events is not None:
        raise_event = test_events

        @app.post("/test/events")
        def test_event(body: SyntheticEvent) -> dict[str, str | None]:
            """Raise a synthetic anomaly with a clip (only with --test-hooks)."""
            try:
                event = raise_event(camera(body.camera), body.pre_s, body.post_s)
            except ValueError as exc:  # a clip window the agent refuses
                raise HTTPException(422, str(exc)) from None
            return {"event_id": str(event.id), "clip_id": str(event.clip_id)}

    return app
