"""The events API served by uvicorn on a free port, over real HTTP: filters and cursor pages,
acknowledgement by the requesting user, clear 404s, and clips with Range requests."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import free_port, wait_for
from fastapi import Depends, FastAPI, Request

from controller.api.events import router
from controller.events.clips import ClipStore
from controller.events.store import EventStore
from fleet.messages import IDENTITY, ClipChunk, ClipManifest, Event

S = 1_000_000


@dataclass
class Served:
    http: httpx.Client
    events: EventStore
    clips: ClipStore


def as_user(request: Request) -> None:
    # Stands in for the app's admin dependency, which names the user on request.state.
    if name := request.headers.get("x-test-user"):
        request.state.user = name


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    events = EventStore.open(tmp_path)
    clips = ClipStore(
        tmp_path / "clips", on_complete=lambda info: events.link_clip(
            info.manifest.event_id if info.manifest else None, info.clip_id
        ),
    )  # fmt: skip
    app = FastAPI()
    app.include_router(router, dependencies=[Depends(as_user)])
    app.state.events, app.state.clips = events, clips
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10, what="uvicorn to start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10) as http:
            yield Served(http, events, clips)
    finally:
        server.should_exit = True
        thread.join(10)
        events.close()
        clips.close()


def make_event(**fields: Any) -> Event:
    start = fields.pop("start_us", 1_718_000_000 * S)
    values: dict[str, Any] = {
        "id": uuid.uuid4(), "camera": "gate", "kind": "anomaly", "start_us": start,
        "end_us": start + 4 * S, "peak_us": start, "peak_score": 0.5, "adjustment": IDENTITY,
    }  # fmt: skip
    values.update(fields)
    return Event(**values)


def deliver_clip(
    clips: ClipStore, data: bytes, chunk_size: int, event_id: uuid.UUID | None, upto: int | None
) -> uuid.UUID:
    """Send the manifest and the first `upto` chunks (all if None); the clip id."""
    clip_id = uuid.uuid4()
    count = -(-len(data) // chunk_size)
    clips.manifest(
        "edge-01",
        ClipManifest(
            clip_id=clip_id, event_id=event_id, camera="gate", from_us=0, to_us=10 * S,
            sha256=hashlib.sha256(data).hexdigest(), size=len(data), chunk_size=chunk_size,
            chunk_count=count, content_type="video/mp4",
        ),
        now_us=1,
    )  # fmt: skip
    for i in range(count if upto is None else upto):
        clips.chunk(
            "edge-01", ClipChunk.of(clip_id, i, data[i * chunk_size : (i + 1) * chunk_size]), 2
        )
    return clip_id


def test_listing_filters_and_pages_over_http(served: Served) -> None:
    gate = [make_event(start_us=(100 + i) * S, kind="anomaly") for i in range(5)]
    other = [
        make_event(camera="yard", start_us=50 * S, kind="camera_offline", peak_score=0.0),
        make_event(camera="gate", start_us=40 * S, kind="camera_moved", peak_score=0.9),
    ]
    served.events.store_many([("edge-01", e, 0) for e in gate + other])

    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"camera": "gate", "kind": "anomaly", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = served.http.get("/events", params=params).raise_for_status().json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == [str(e.id) for e in reversed(gate)]

    several = served.http.get(
        "/events", params={"kind": ["camera_offline", "camera_moved"], "min_score": 0.5}
    )
    assert [item["id"] for item in several.json()["items"]] == [str(other[1].id)]
    window = served.http.get("/events", params={"since_us": 45 * S, "until_us": 60 * S})
    assert [item["id"] for item in window.json()["items"]] == [str(other[0].id)]
    item = served.http.get("/events", params={"agent_id": "edge-01", "limit": 1}).json()["items"][0]
    assert item["agent_id"] == "edge-01"
    assert item["start_us"] == 104 * S


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"cursor": "garbage"}, 400, "invalid cursor"),
        ({"since_us": 10, "until_us": 5}, 400, "since_us must not be after until_us"),
        ({"limit": 0}, 422, "limit"),
        ({"limit": 501}, 422, "limit"),
        ({"kind": "explosion"}, 422, "kind"),
        ({"camera": "Not A Slug"}, 422, "camera"),
    ],
)
def test_bad_queries_are_refused_with_the_reason(
    served: Served, params: dict[str, Any], status: int, text: str
) -> None:
    response = served.http.get("/events", params=params)
    assert response.status_code == status
    assert text in response.text


def test_open_events_and_their_scores(served: Served) -> None:
    start = 200 * S
    going_on = make_event(start_us=start, end_us=start, peak_us=start, open=True, threshold=1.2,
                          scores=[(start - S, 0.3), (start, 1.9)])  # fmt: skip
    over = make_event(start_us=100 * S)
    served.events.store_many([("edge-01", going_on, 0), ("edge-01", over, 0)])

    (item,) = served.http.get("/events", params={"open": "true"}).json()["items"]
    assert (item["id"], item["open"], item["threshold"]) == (str(going_on.id), True, 1.2)
    assert item["scores"] == [[start - S, 0.3], [start, 1.9]]
    closed = served.http.get("/events", params={"open": "false"}).json()["items"]
    assert [i["id"] for i in closed] == [str(over.id)]
    assert served.http.get(f"/events/{over.id}").json()["open"] is False
    bad = served.http.get("/events", params={"open": "maybe"})
    assert bad.status_code == 422 and "open" in bad.text


def test_one_event_and_clear_404s(served: Served) -> None:
    event = make_event(detail="camera cable cut", kind="camera_offline")
    served.events.store("edge-01", event, 5)
    got = served.http.get(f"/events/{event.id}").raise_for_status().json()
    assert (got["id"], got["detail"], got["received_us"]) == (str(event.id), "camera cable cut", 5)

    missing = uuid.uuid4()
    response = served.http.get(f"/events/{missing}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"no event {missing}"
    assert served.http.get("/events/not-a-uuid").status_code == 422


def test_acknowledging_names_the_user_and_is_idempotent(served: Served) -> None:
    event, other = make_event(), make_event()
    served.events.store_many([("edge-01", event, 0), ("edge-01", other, 0)])
    first = served.http.post(f"/events/{event.id}/ack", headers={"x-test-user": "alice"})
    assert first.status_code == 200
    assert first.json()["acknowledged_by"] == "alice"
    again = served.http.post(f"/events/{event.id}/ack").raise_for_status().json()
    assert (again["acknowledged_by"], again["acknowledged_us"]) == (
        "alice",
        first.json()["acknowledged_us"],
    )
    served.http.post(f"/events/{other.id}/ack").raise_for_status()
    record = served.events.get(other.id)
    assert record is not None
    assert record.acknowledged_by == "admin"  # no user on the request: the default

    unacked = served.http.get("/events", params={"acknowledged": False}).json()["items"]
    assert unacked == []
    response = served.http.post(f"/events/{uuid.uuid4()}/ack")
    assert response.status_code == 404
    assert "no event" in response.json()["detail"]


def test_clip_is_served_whole_and_by_range(served: Served) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    event = make_event()
    served.events.store("edge-01", event, 0)
    deliver_clip(served.clips, data, 1024, event.id, upto=None)

    record = served.http.get(f"/events/{event.id}").json()
    assert record["clip_complete"] is True
    whole = served.http.get(f"/events/{event.id}/clip")
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.content == data

    part = served.http.get(f"/events/{event.id}/clip", headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1123/{len(data)}"
    assert part.content == data[100:1124]
    tail = served.http.get(f"/events/{event.id}/clip", headers={"Range": "bytes=-500"})
    assert tail.status_code == 206
    assert tail.content == data[-500:]
    beyond = served.http.get(f"/events/{event.id}/clip", headers={"Range": "bytes=20000-"})
    assert beyond.status_code == 416


def test_clips_not_there_yet_say_why(served: Served) -> None:
    partial_clip = deliver_clip(served.clips, bytes(3000), 1000, None, upto=1)
    no_clip, partial, corrupt = (
        make_event(), make_event(clip_id=partial_clip), make_event(clip_id=uuid.uuid4())
    )  # fmt: skip
    served.events.store_many([("edge-01", e, 0) for e in (no_clip, partial, corrupt)])

    response = served.http.get(f"/events/{no_clip.id}/clip")
    assert (response.status_code, response.json()["detail"]) == (
        404,
        f"event {no_clip.id} has no clip",
    )

    response = served.http.get(f"/events/{partial.id}/clip")
    assert response.status_code == 404
    assert response.json()["detail"] == f"clip {partial_clip} not received yet (1 of 3 chunks)"

    assert corrupt.clip_id is not None
    response = served.http.get(f"/events/{corrupt.id}/clip")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"clip {corrupt.clip_id} not received yet (no manifest or chunks)"
    )
    served.clips.chunk("edge-01", ClipChunk.of(corrupt.clip_id, 0, b"abc"), 1)
    served.clips.manifest(
        "edge-01",
        ClipManifest(
            clip_id=corrupt.clip_id, camera="gate", from_us=0, to_us=1, sha256="0" * 64,
            size=3, chunk_size=3, chunk_count=1, content_type="video/mp4",
        ),
        now_us=2,
    )  # fmt: skip
    response = served.http.get(f"/events/{corrupt.id}/clip")
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"clip {corrupt.clip_id} was rejected: ")


def test_clip_info_and_video_by_clip_id(served: Served) -> None:
    data = b"\x00\x00\x00\x18ftypmp42" * 300
    clip_id = deliver_clip(served.clips, data, 1000, None, upto=2)
    info = served.http.get(f"/clips/{clip_id}").raise_for_status().json()
    assert (info["state"], info["chunks_received"], info["agent_id"]) == ("pending", 2, "edge-01")
    assert info["manifest"]["size"] == len(data)
    response = served.http.get(f"/clips/{clip_id}/video")
    assert response.status_code == 404
    assert "not received yet (2 of 4 chunks)" in response.json()["detail"]

    served.clips.chunk("edge-01", ClipChunk.of(clip_id, 2, data[2000:3000]), 3)
    served.clips.chunk("edge-01", ClipChunk.of(clip_id, 3, data[3000:]), 3)
    assert served.http.get(f"/clips/{clip_id}").json()["state"] == "complete"
    assert served.http.get(f"/clips/{clip_id}/video").content == data

    unknown = uuid.uuid4()
    response = served.http.get(f"/clips/{unknown}")
    assert response.status_code == 404
    assert str(unknown) in response.json()["detail"]
