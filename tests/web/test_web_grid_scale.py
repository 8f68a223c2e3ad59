"""The grid with 128 cameras in Debian's Chromium: how long the page takes to show them and how
much JavaScript heap it holds, and that only cameras on screen fetch snapshots.

The controller is the real service in this process (its embedded broker included); its agents
are registered directly in the registry, online, and say their media is served by a stand-in: a
small HTTP server answering /cameras/NAME/snapshot.jpg with a real JPEG per camera (frames of the
simulator's scenes) and counting what it was asked.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import av
import pytest
import uvicorn
from conftest import free_port, wait_for
from playwright.sync_api import Browser, Page, expect
from web_stack import (
    PASSWORD,
    artifact,
    chromium,
    new_context,
    publish,
    screenshot,
    wait_js,
    watched_page,
)

from agent.api.jpeg import to_jpeg
from controller.registry import CameraRecord, Registry
from controller.service import ControllerService
from fleet.config import ControllerConfig, ControllerHttpConfig, MqttConfig
from fleet.enrollment import EnrollRequest
from fleet.messages import AgentStatus, CameraReport, Capacity, Heartbeat, ReportedState
from fleet.sim.scene import SceneRenderer, default_scene
from fleet.utc import now_us

pytestmark = pytest.mark.slow
CAMERAS: Final = 128
AGENTS: Final = ("edge-a", "edge-b", "edge-c", "edge-d")
SCENES: Final = 8  # distinct places; each camera shows one of them at its own moment
HEAP_LIMIT_BYTES: Final = 100 * 1024 * 1024
LOAD_TIMEOUT_MS: Final = 60_000
MAX_SNAPSHOTS_PER_S: Final = 10


def camera_names() -> list[str]:
    return [f"cam{i:03d}" for i in range(1, CAMERAS + 1)]


def snapshots(names: list[str]) -> dict[str, bytes]:
    """A real 320x180 JPEG per camera: frames of the simulator's scenes, neighbours in the
    grid showing different places."""
    renderers = [SceneRenderer(default_scene(seed, 320, 180, 10.0, 10, loop_seconds=10))
                 for seed in range(SCENES)]  # fmt: skip
    images = {}
    for i, name in enumerate(names):
        scene = renderers[i % SCENES].render_i420(i // SCENES * 6)
        images[name] = to_jpeg(av.VideoFrame.from_ndarray(scene, format="yuv420p"))
    return images


class StandInAgent:
    """Serves each camera's snapshot as an agent would, and counts the requests per camera."""

    PATH = re.compile(r"^/cameras/([^/?]+)/snapshot\.jpg(\?.*)?$")

    def __init__(self, images: dict[str, bytes]) -> None:
        self.requests: Counter[str] = Counter()
        lock = threading.Lock()
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                match = StandInAgent.PATH.match(self.path)
                name = match.group(1) if match else ""
                image = images.get(name)
                if image is None:
                    self.send_error(404)
                    return
                with lock:
                    requests[name] += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per snapshot would drown the test's output

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requested(self) -> set[str]:
        return {name for name, n in self.requests.items() if n}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def register_fleet(registry: Registry, names: list[str], media_url: str) -> None:
    """Agents enrolled, online (status and a heartbeat that stays fresh for the test), owning
    the cameras round-robin and reporting them streaming; their media at `media_url`."""
    now = now_us()
    owned: dict[str, list[str]] = {a: names[i :: len(AGENTS)] for i, a in enumerate(AGENTS)}
    for agent_id, cameras in owned.items():
        token = registry.create_token(agent_id, 600)
        registry.enroll(EnrollRequest(token=token, hostname=f"{agent_id}-host",
                                      software_version="0.1.0", max_cameras=64))  # fmt: skip
        registry.apply_status(agent_id, AgentStatus(
            agent_id=agent_id, state="online", session=1, software_version="0.1.0",
            http_url=media_url, ts=now), now)  # fmt: skip
        for i, name in enumerate(cameras):
            registry.add_camera(CameraRecord(
                name=name, main_url=f"rtsp://127.0.0.1:554/{agent_id}/{i}",
                placement=agent_id, site=f"site-{i % 3 + 1}"))  # fmt: skip
            registry.update_camera(name, owner=agent_id, target=agent_id)
        registry.apply_heartbeat(agent_id, Heartbeat(
            ts=now, interval_s=600, cameras=[], disk_used_bytes=10**9,
            disk_free_bytes=10**11, clock_synced=True,
            capacity=Capacity(max_cameras=64, load=0.3)), now)  # fmt: skip
        registry.apply_reported(agent_id, ReportedState(
            ts=now, desired_version=None,
            cameras=[CameraReport(name=n, state="streaming", inspection=True) for n in cameras],
        ), now)  # fmt: skip


@contextmanager
def controller(data: Path, media_url: str) -> Iterator[str]:
    """The controller service on a free port with the fleet registered; its URL."""
    port = free_port()
    config = ControllerConfig(
        data_dir=data, http=ControllerHttpConfig(port=port),
        mqtt=MqttConfig(embedded_port=free_port()),
    )  # fmt: skip
    service = ControllerService(config)
    service.set_admin_password(PASSWORD)
    register_fleet(service.registry, camera_names(), media_url)
    service.start()
    server = uvicorn.Server(uvicorn.Config(service.app, host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, name="controller-http", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, what="the controller's HTTP")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        service.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


# Every cell there, and every cell on screen showing its snapshot: the time since navigation
# started, or false while not yet.
_LOADED = """count => {
    const cells = document.querySelectorAll('.cell');
    if (cells.length !== count) return false;
    for (const cell of cells) {
        const r = cell.getBoundingClientRect();
        const onScreen = r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
        const img = cell.querySelector('img');
        if (onScreen && !(img && img.complete && img.naturalWidth > 0)) return false;
    }
    return performance.now();
}"""
_GRID_STATE = """() => {
    const imgs = [...document.querySelectorAll('.cell img')];
    return {cells: document.querySelectorAll('.cell').length,
            images_loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
            text: document.body ? document.body.innerText.slice(0, 200) : null};
}"""
_ON_SCREEN = """() => [...document.querySelectorAll('.cell')].filter(c => {
    const r = c.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
}).map(c => c.dataset.camera)"""


def heap_used(page: Page) -> int:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    cdp.detach()
    return int(metrics["JSHeapUsedSize"])


def test_the_grid_of_128_cameras_loads_only_what_is_on_screen(
    browser: Browser, tmp_path: Path
) -> None:
    names = camera_names()
    standin = StandInAgent(snapshots(names))
    try:
        with controller(tmp_path / "controller", standin.url) as url:
            context = new_context(browser, url)
            try:
                with watched_page(context) as page:
                    figures = measure_grid(page, standin, names)
            finally:
                context.close()
    finally:
        standin.close()
    print(f"\ngrid of {CAMERAS} cameras: {json.dumps(figures)}")
    path = artifact("grid-128.json")
    path.write_text(json.dumps(figures, indent=2) + "\n")
    publish(path)
    assert figures["heap_used_bytes"] < HEAP_LIMIT_BYTES, figures
    assert figures["heap_used_after_scroll_bytes"] < HEAP_LIMIT_BYTES, figures


def measure_grid(page: Page, standin: StandInAgent, names: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    page.goto("/#/grid")
    loaded = wait_js(page, _LOADED, len(names), what="every cell, on-screen ones with snapshots",
                     explain=_GRID_STATE, timeout_ms=LOAD_TIMEOUT_MS)  # fmt: skip
    load_ms = float(loaded)
    on_screen: list[str] = page.evaluate(_ON_SCREEN)
    assert 0 < len(on_screen) < len(names), f"{len(on_screen)} cells on screen"
    # Each on-screen cell refreshes every ~5 s: once the first has come back for its second
    # snapshot, every cell on screen has had its chance, and only those may have asked.
    wait_for(lambda: standin.requests[on_screen[0]] >= 2, 30, 0.2,
             "the first cell to refresh its snapshot")  # fmt: skip
    asked = standin.requested()
    # "A few per second in all": the whole grid never floods the controller and its agents.
    rate = standin.requests.total() / (time.monotonic() - started)
    assert rate <= MAX_SNAPSHOTS_PER_S, f"{rate:.1f} snapshots/s"
    assert len(asked) < len(names), f"all {len(asked)} cameras fetched with only some on screen"
    in_order: list[str] = page.evaluate(
        "() => [...document.querySelectorAll('.cell')].map(c => c.dataset.camera)"
    )
    assert sorted(in_order) == names, "one cell per camera"
    last_row = in_order[-4:]
    assert not asked & set(last_row), f"off-screen cells fetched: {sorted(asked & set(last_row))}"
    heap = heap_used(page)
    screenshot(page, "grid", for_docs=True)

    # Scrolled to the bottom, the last cells fetch and show theirs.
    page.locator(f'.cell[data-camera="{last_row[-1]}"]').scroll_into_view_if_needed()
    for name in last_row:
        expect(page.locator(f'.cell[data-camera="{name}"]')).to_be_in_viewport()
    wait_for(lambda: set(last_row) <= standin.requested(), 30, 0.2,
             "the last cells' snapshots after scrolling")  # fmt: skip
    wait_js(
        page,
        _LOADED,
        len(names),
        what="the on-screen snapshots after scrolling",
        explain=_GRID_STATE,
        timeout_ms=LOAD_TIMEOUT_MS,
    )
    return {
        "cameras": len(names),
        "load_ms": round(load_ms),
        "cells_on_screen": len(on_screen),
        "snapshots_fetched_before_scroll": len(asked),
        "snapshots_per_s": round(rate, 1),
        "heap_used_bytes": heap,
        "heap_used_after_scroll_bytes": heap_used(page),
        "viewport": page.viewport_size,
    }
