"""What the web-view tests share: the controller's app (create_app with the event center, the
media proxies and the update feed) served by ApiServer on a free port, a stand-in for an agent's
local HTTP (live video in slow chunks, a detection state), and a reader for the SSE feed."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from conftest import free_port, wait_for
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from controller.api.app import create_app
from controller.api.context import ApiContext
from controller.api.events import router as events_router
from controller.api.live import router as live_router
from controller.api.proxy import router as proxy_router
from controller.api.server import ApiServer
from controller.api.update_plan import Cadence
from controller.api.updates import UpdateSource
from controller.api.updates import router as updates_router
from controller.auth import set_admin_password
from controller.events.store import EventStore
from controller.registry import CameraRecord, Registry
from fleet.enrollment import EnrollRequest
from fleet.messages import IDENTITY, AgentStatus, Event
from fleet.utc import now_us

PASSWORD = "web-view-admin-password"
CODEC = "avc1.64000a"
# Quick enough for tests to see every kind of frame within a second or two.
QUICK = Cadence(tick_s=0.05, snapshot_s=0.1, fleet_resend_s=1.0, keep_alive_s=0.5,
                detection_s=0.2)  # fmt: skip


# -- the controller -----------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    registry: Registry
    events: EventStore
    server: ApiServer
    thread: threading.Thread

    def client(self, cookies: httpx.Cookies | None = None) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/api/v1", timeout=10, cookies=cookies)

    def browser(self) -> httpx.Client:
        """Logged in as the web client is: by the session cookie alone."""
        body = {"username": "admin", "password": PASSWORD}
        login = httpx.post(f"{self.url}/api/v1/login", json=body, timeout=10)
        return self.client(login.raise_for_status().cookies)

    def agent_serving(self, name: str, http_url: str) -> str:
        """An enrolled agent, online, that says its media is served at `http_url`."""
        token = self.registry.create_token(name, 60)
        request = EnrollRequest(token=SecretStr(token), hostname=f"{name}-host",
                                software_version="0.1.0")  # fmt: skip
        agent_id = self.registry.enroll(request).agent_id
        status = AgentStatus(agent_id=agent_id, state="online", session=1,
                             software_version="0.1.0", http_url=http_url, ts=now_us())  # fmt: skip
        self.registry.apply_status(agent_id, status, now_us())
        return agent_id

    def camera(self, name: str, owner: str | None) -> None:
        self.registry.add_camera(CameraRecord(name=name, main_url=f"rtsp://10.0.0.9/{name}"))
        if owner is not None:
            self.registry.update_camera(name, owner=owner, target=owner)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextmanager
def served_controller(data_dir: Path, cadence: Cadence = QUICK) -> Iterator[Served]:
    registry = Registry.open(data_dir)
    events = EventStore.open(data_dir)
    set_admin_password(registry, "admin", PASSWORD)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ctx = ApiContext(
        registry=registry, broker_host="127.0.0.1", broker_port=1883, controller_url=url,
        routers=[events_router, proxy_router, live_router, updates_router],
        app_state={"events": events, "updates": UpdateSource(registry, events, cadence)},
    )  # fmt: skip
    server = ApiServer(create_app(ctx), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name="controller-api", daemon=True)
    thread.start()
    served = Served(url, registry, events, server, thread)
    try:
        wait_for(lambda: server.started, 10, what="uvicorn to serve the API")
        yield served
    finally:
        served.stop()
        events.close()
        registry.close()


def anomaly(camera: str = "cam1", **fields: Any) -> Event:
    """An ROI event as an agent sends it (open unless told otherwise)."""
    start = now_us()
    values: dict[str, Any] = {
        "id": uuid.uuid4(), "camera": camera, "roi_id": "door", "kind": "anomaly",
        "start_us": start, "end_us": start, "peak_us": start, "peak_score": 1.7,
        "adjustment": IDENTITY, "open": True, "threshold": 1.0,
        "scores": [(start - 200_000, 0.4), (start, 1.7)],
    }  # fmt: skip
    return Event(**{**values, **fields})


# -- a stand-in for the agent's local HTTP ------------------------------------------------------


@dataclass
class StandInAgent:
    """Serves camera "cam1": live.mp4 as `video` in `chunk`-byte pieces, a pause after each
    (over and over if `endless`), and `detection` as its detection state."""

    video: bytes = b""
    chunk: int = 512
    endless: bool = False
    detection: dict[str, Any] = field(default_factory=dict)
    refuse_live: int | None = None  # answer live.mp4 with this status instead
    live_requests: list[dict[str, str]] = field(default_factory=list)  # their query parameters
    live_ended: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/cameras/{name}/live.mp4", self._live),
            Route("/cameras/{name}/detection", self._detection),
        ])  # fmt: skip

    async def _live(self, request: Request) -> Response:
        if request.path_params["name"] != "cam1":
            return JSONResponse({"detail": "no camera here"}, 404)
        if self.refuse_live is not None:
            return JSONResponse({"detail": "stream not streaming"}, self.refuse_live)
        self.live_requests.append(dict(request.query_params))
        return StreamingResponse(self._pieces(), media_type="video/mp4",
                                 headers={"X-Camfleet-Codec": CODEC})  # fmt: skip

    async def _pieces(self) -> AsyncIterator[bytes]:
        try:
            while True:
                for start in range(0, len(self.video), self.chunk):
                    yield self.video[start : start + self.chunk]
                    await anyio.sleep(0.01)
                if not self.endless:
                    return
        finally:  # also when the viewer went away: the request was cancelled
            self.live_ended.set()

    async def _detection(self, request: Request) -> Response:
        if request.path_params["name"] != "cam1":
            return JSONResponse({"detail": "no camera here"}, 404)
        return JSONResponse(self.detection)


@contextmanager
def stand_in_agent(agent: StandInAgent) -> Iterator[StandInAgent]:
    port = free_port()
    agent.url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(agent.app(), host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="stand-in-agent", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, what="the stand-in agent to serve")
        yield agent
    finally:
        server.should_exit = True
        thread.join(10)


# -- the update feed as a browser reads it ------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    event: str  # "comment" for a comment line
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class Feed:
    """An open GET /updates, read by a thread into a queue of frames."""

    def __init__(self, client: httpx.Client, **request: Any) -> None:
        self._stream = client.stream("GET", "/updates", **request)
        self.response = self._stream.__enter__()
        self._frames: queue.Queue[Frame | BaseException | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        if self.response.status_code == 200:
            self._reader.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self._frames.put(Frame("comment", line[1:].strip()))
                elif line:
                    name, _, value = line.partition(": ")
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
                elif fields or data:
                    self._frames.put(Frame(fields["event"], "\n".join(data), fields.get("id")))
                    fields, data = {}, []
        except BaseException as exc:  # the stream broke rather than ended
            self._frames.put(exc)
            return
        self._frames.put(None)

    def next(self, event: str, where: Any = lambda data: True, timeout: float = 10) -> Frame:
        """The next frame of kind `event` whose data (JSON, except for comments) satisfies
        `where`, skipping others; fails after `timeout` s or if the stream ends first."""
        end = time.monotonic() + timeout
        while True:
            item = self._take(end, f"a matching {event} frame")
            if not isinstance(item, Frame):
                raise AssertionError(f"the feed ended while waiting for {event}: {item!r}")
            if item.event == event and where(item.data if event == "comment" else item.json()):
                return item

    def ended(self, timeout: float = 10) -> BaseException | None:
        """Wait for the stream's end: None if it ended cleanly, else what broke it."""
        end = time.monotonic() + timeout
        while isinstance(item := self._take(end, "the feed to end"), Frame):
            pass
        return item

    def _take(self, end: float, what: str) -> Frame | BaseException | None:
        try:
            return self._frames.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"timed out waiting for {what}") from None

    def close(self) -> None:
        self._stream.__exit__(None, None, None)
        self._reader.join(10)
