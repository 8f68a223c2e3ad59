"""The web view in Debian's Chromium against a running camfleet: real simulator, controller and
agent processes, the agent scoring cam1's sub stream with a model trained on the simulator's
loop (whose scheduled anomalies raise real events). Log in, the grid, live video with ROI scores,
an event and its clip, the recording at an event and from the timeline, an ROI drawn and
reported by the agent, inspection off and on, the fleet.

The tests share one stack and run in file order; each leaves the cameras as it found them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import wait_for
from playwright.sync_api import Browser, BrowserContext, Page, expect
from web_stack import (
    AGENT,
    CAMERAS,
    PASSWORD,
    SCORED,
    Stack,
    chromium,
    new_context,
    running_stack,
    screenshot,
    wait_js,
    watched_page,
)

from agent.evaluation.run import ROI_NAMES
from fleet.utc import now_us

pytestmark = pytest.mark.slow
# Anomalies come four times per 20 s loop; an event needs the anomaly to end, its clip to be cut
# and sent: a few loops at most.
EVENT_TIMEOUT_S = 90
# The live view must advance by this much playing time (not just show a frame).
PLAYED_S = 1.0
_NUMBER = re.compile(r"\d")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def session(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    context = new_context(browser, stack.url)
    yield context
    context.close()


@pytest.fixture
def page(session: BrowserContext) -> Iterator[Page]:
    with watched_page(session) as opened:
        yield opened


def wait_played(page: Page, video: str, seconds: float) -> None:
    """`video` (a selector) plays: its currentTime moves on by `seconds` from when it first
    moved, so a single decoded frame or a stalled stream does not pass."""
    wait_js(
        page,
        """([sel, seconds]) => {
            const v = document.querySelector(sel);
            if (!v || !(v.currentTime > 0)) return false;
            v.dataset.testFirstTime ??= String(v.currentTime);
            return v.currentTime - Number(v.dataset.testFirstTime) > seconds;
        }""",
        [video, seconds], what=f"{video} to play {seconds} s", explain=_VIDEO_STATE,
    )  # fmt: skip


_VIDEO_STATE = """([sel]) => {
    const v = document.querySelector(sel);
    if (!v) return `no ${sel}`;
    const b = v.buffered;
    const ranges = [...Array(b.length).keys()].map(i => [b.start(i), b.end(i)]);
    return {currentTime: v.currentTime, readyState: v.readyState, paused: v.paused,
            networkState: v.networkState, error: v.error && v.error.message, buffered: ranges,
            src: v.src, status: document.querySelector('#status')?.textContent,
            notes: [...document.querySelectorAll('[data-kind]')].map(e => e.textContent)};
}"""


def shows_a_picture(page: Page, selector: str) -> None:
    """The image `selector` has loaded and is a picture, not a flat fill (as a frame decoded
    without its references is)."""
    wait_js(page, _PICTURE, selector, what=f"{selector} to show a picture", explain=_IMAGE_STATE)


# The spread of the image's luma, sampled at 64x36: a camera picture, or false.
_PICTURE = """sel => {
    const img = document.querySelector(sel);
    if (!img || !img.complete || !img.naturalWidth) return false;
    const c = document.createElement('canvas');
    c.width = 64; c.height = 36;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0, 64, 36);
    const px = ctx.getImageData(0, 0, 64, 36).data;
    let sum = 0, sq = 0, n = px.length / 4;
    for (let i = 0; i < px.length; i += 4) {
        const y = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
        sum += y; sq += y * y;
    }
    const std = Math.sqrt(sq / n - (sum / n) ** 2);
    img.dataset.testLumaStd = std.toFixed(1);
    return std > 5 && std;
}"""
_IMAGE_STATE = """sel => { const i = document.querySelector(sel);
    return i ? {html: i.outerHTML.slice(0, 200), width: i.naturalWidth,
                luma_std: i.dataset.testLumaStd} : 'none'; }"""


# -- login and the grid ---------------------------------------------------------------------------


def test_login_refuses_a_wrong_password_then_opens_the_grid(browser: Browser, stack: Stack) -> None:
    context = new_context(browser, stack.url, logged_in=False)
    try:
        with watched_page(context) as page:
            page.goto("/")
            form = page.locator("form#login")
            expect(form).to_be_visible()
            screenshot(page, "login")
            form.locator("input[name=username]").fill("admin")
            form.locator("input[name=password]").fill("not-the-password")
            form.locator("button[type=submit]").click()
            expect(page.locator("#login-error")).not_to_be_empty()
            expect(page.locator(f'.cell[data-camera="{SCORED}"]')).to_have_count(0)

            form.locator("input[name=password]").fill(PASSWORD)
            form.locator("button[type=submit]").click()
            expect(page.locator(f'.cell[data-camera="{SCORED}"]')).to_be_visible()
            expect(form).to_be_hidden()
            for route in ("#/grid", "#/events", "#/fleet"):
                expect(page.locator(f'nav a[href="{route}"]')).to_be_visible()
            cookies = {c["name"]: c for c in context.cookies()}
            assert cookies["camfleet_session"]["httpOnly"], cookies

            page.locator("button#logout").click()
            expect(page.locator("form#login")).to_be_visible()
            assert "camfleet_session" not in {c["name"] for c in context.cookies()}
    finally:
        context.close()


def test_the_grid_shows_every_simulated_camera_streaming(page: Page, stack: Stack) -> None:
    page.goto("/#/grid")
    expect(page.locator(".cell")).to_have_count(len(CAMERAS))
    for name in CAMERAS:
        cell = page.locator(f'.cell[data-camera="{name}"]')
        expect(cell.locator(".name")).to_have_text(name)
        expect(cell.locator(".agent")).to_contain_text(AGENT)
        expect(cell.locator("[data-state]")).to_have_attribute("data-state", "streaming")
        expect(cell.locator(".inspection")).to_be_visible()
        shows_a_picture(page, f'.cell[data-camera="{name}"] img')
    # The scored camera goes into alarm while an anomaly's event is open (pushed to the page).
    expect(page.locator(f'.cell[data-camera="{SCORED}"]')).to_have_class(
        re.compile(r"\balarm\b"), timeout=EVENT_TIMEOUT_S * 1000
    )
    screenshot(page, "grid-stack")

    page.select_option("select#filter-state", "backoff")
    expect(page.locator(".cell:visible")).to_have_count(0)
    page.select_option("select#filter-state", "streaming")
    expect(page.locator(".cell:visible")).to_have_count(len(CAMERAS))

    page.locator(f'.cell[data-camera="{SCORED}"]').click()
    page.wait_for_url(f"**/#/camera/{SCORED}*")
    expect(page.locator("video#live")).to_be_attached()


# -- one camera -----------------------------------------------------------------------------------


def test_a_camera_plays_live_video_with_its_roi_scores(page: Page, stack: Stack) -> None:
    page.goto(f"/#/camera/{SCORED}")
    wait_played(page, "video#live", PLAYED_S)
    size = page.evaluate("() => { const v = document.querySelector('video#live');"
                         " return [v.videoWidth, v.videoHeight]; }")  # fmt: skip
    assert size == [426, 240], f"live view should show the sub stream, got {size}"
    for roi in ROI_NAMES:
        expect(page.locator(f'#roi-scores [data-roi="{roi}"]')).to_contain_text(_NUMBER)
    # The ROIs are drawn on the overlay: some of its pixels are painted.
    painted = page.evaluate(
        """() => { const c = document.querySelector('canvas#overlay');
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
            return [c.width, c.height, n]; }"""
    )
    assert painted[0] > 0 and painted[1] > 0 and painted[2] > 0, f"overlay w, h, painted: {painted}"
    screenshot(page, "camera", for_docs=True)


# -- events ---------------------------------------------------------------------------------------


def test_an_anomaly_becomes_an_event_whose_clip_plays_and_is_acknowledged(
    page: Page, stack: Stack
) -> None:
    page.goto("/#/events")
    expect(page.locator("select#ev-camera")).to_be_attached()
    opened_us = now_us()

    def new_anomaly() -> dict[str, Any] | None:
        events = stack.api.events(camera=SCORED, kind="anomaly")["items"]
        fresh = [e for e in events if e["received_us"] > opened_us and e["roi_id"] in ROI_NAMES]
        return fresh[-1] if fresh else None

    event = wait_for(new_anomaly, EVENT_TIMEOUT_S, 0.5, "an anomaly event from the simulator")
    # It arrives on the open page by itself (server-sent events), no reload.
    row = page.locator(f'.event-row[data-event="{event["id"]}"]')
    expect(row).to_be_visible()
    shows_a_picture(page, f'.event-row[data-event="{event["id"]}"] img')
    expect(row.locator("canvas.scores")).to_be_visible()
    expect(page.locator("#events-timeline")).to_be_visible()

    wait_for(lambda: stack.api._call("GET", f"/events/{event['id']}")["clip_complete"],
             EVENT_TIMEOUT_S, 0.5, "the event's clip at the controller")  # fmt: skip
    row.locator("button.play").click()
    wait_played(page, "video.clip", PLAYED_S)
    screenshot(page, "events", for_docs=True)

    row.locator("button.ack").click()
    acked = wait_for(
        lambda: (e := stack.api._call("GET", f"/events/{event['id']}"))["acknowledged_us"] and e,
        10, what="the acknowledgement stored",
    )  # fmt: skip
    assert acked["acknowledged_by"] == "admin"


def test_the_event_filters_narrow_the_list(page: Page, stack: Stack) -> None:
    """After the acknowledgement above: each filter leaves only rows that match it."""
    page.goto("/#/events")
    expect(page.locator(".event-row").first).to_be_visible()

    def listed_match(what: str, matches: Any) -> None:
        def ok() -> bool:
            ids = page.evaluate("() => [...document.querySelectorAll('.event-row')]"
                                ".map((r) => r.dataset.event)")  # fmt: skip
            return bool(ids) and all(matches(stack.api._call("GET", f"/events/{i}")) for i in ids)

        wait_for(ok, 15, 0.5, f"only {what} listed")

    page.select_option("select#ev-camera", SCORED)
    listed_match(f"{SCORED}'s events", lambda e: e["camera"] == SCORED)
    page.select_option("select#ev-ack", "true")
    listed_match("acknowledged events", lambda e: e["acknowledged_us"] is not None)
    page.select_option("select#ev-ack", "false")
    listed_match("unacknowledged events", lambda e: e["acknowledged_us"] is None)
    page.fill("input#ev-min-score", "1e9")
    expect(page.locator(".event-row")).to_have_count(0)


def test_an_event_opens_the_recording_at_its_moment(page: Page, stack: Stack) -> None:
    def closed_anomaly() -> dict[str, Any] | None:
        events = stack.api.events(camera=SCORED, kind="anomaly", open="false")["items"]
        return events[0] if events else None

    event = wait_for(closed_anomaly, EVENT_TIMEOUT_S, 0.5, "a closed anomaly event")
    page.goto("/#/events")
    row = page.locator(f'.event-row[data-event="{event["id"]}"]')
    row.locator("a.open-recording").click()
    page.wait_for_url(f"**/#/camera/{SCORED}?at=*")
    wait_played(page, "video#playback", PLAYED_S)
    timeline = page.locator("#timeline")
    expect(timeline.locator(".segment").first).to_be_visible()
    expect(timeline.locator(f'.event-mark[data-event="{event["id"]}"]')).to_be_attached()


def test_a_click_on_the_timeline_plays_the_recording_from_there(page: Page, stack: Stack) -> None:
    page.goto(f"/#/camera/{SCORED}")
    segment = page.locator("#timeline .segment").last
    box = segment.bounding_box()
    assert box is not None and box["width"] > 0, box
    # A quarter into the newest segment: recorded video follows for a while.
    page.mouse.click(box["x"] + box["width"] / 4, box["y"] + box["height"] / 2)
    wait_played(page, "video#playback", PLAYED_S)


# -- editing the camera ---------------------------------------------------------------------------

# A square clicked on the overlay, in normalised frame coordinates, away from the trained ROIs.
DRAWN = [(0.40, 0.10), (0.55, 0.10), (0.55, 0.30), (0.40, 0.30)]


def test_a_drawn_roi_is_saved_and_reported_by_the_agent(page: Page, stack: Stack) -> None:
    page.goto(f"/#/camera/{SCORED}")
    wait_played(page, "video#live", 0.2)  # the frame is there to draw on
    page.locator("button#roi-draw").click()
    box = page.locator("canvas#overlay").bounding_box()
    assert box is not None
    for x, y in DRAWN:
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.locator("button#roi-finish").click()
    page.locator("input#roi-id").fill("web")
    page.locator("input#roi-sensitivity").fill("0.6")
    page.locator("button#roi-save").click()

    def saved() -> dict[str, Any] | None:
        return {r["id"]: r for r in stack.camera()["rois"]}.get("web")

    web = wait_for(saved, 10, what="the ROI saved on the controller")
    assert web["sensitivity"] == pytest.approx(0.6)
    assert len(web["polygon"]) == len(DRAWN)
    for (x, y), (sx, sy) in zip(DRAWN, web["polygon"], strict=True):
        assert abs(x - sx) < 0.02 and abs(y - sy) < 0.02, web["polygon"]
    assert {r["id"] for r in stack.camera()["rois"]} == {*ROI_NAMES, "web"}  # the others kept

    # The agent runs it: its detection state (through the controller) and the page list it.
    wait_for(lambda: "web" in {r["id"] for r in stack.detection()["rois"]}, 20,
             what="the agent reporting the new ROI")  # fmt: skip
    expect(page.locator('#roi-scores [data-roi="web"]')).to_be_attached()
    screenshot(page, "camera-roi")

    page.locator("button#roi-delete-web").click()
    wait_for(lambda: {r["id"] for r in stack.camera()["rois"]} == set(ROI_NAMES), 10,
             what="the ROI deleted on the controller")  # fmt: skip
    expect(page.locator('#roi-scores [data-roi="web"]')).to_have_count(0)


def test_inspection_stops_and_starts(page: Page, stack: Stack) -> None:
    page.goto(f"/#/camera/{SCORED}")
    button = page.locator("button#inspection")
    expect(button).to_have_attribute("data-inspection", "on")
    expect(button).to_have_text("Stop inspection")

    button.click()
    expect(button).to_have_attribute("data-inspection", "off")
    expect(button).to_have_text("Start inspection")
    assert stack.camera()["inspection"] is False
    wait_for(lambda: stack.detection()["inspection"] is False, 20,
             what="the agent reporting inspection off")  # fmt: skip

    button.click()
    expect(button).to_have_attribute("data-inspection", "on")
    assert stack.camera()["inspection"] is True
    wait_for(lambda: stack.detection()["inspection"] is True, 20,
             what="the agent reporting inspection on")  # fmt: skip


# -- the fleet ------------------------------------------------------------------------------------


def test_the_fleet_page_lists_the_agent(page: Page, stack: Stack) -> None:
    page.goto("/#/fleet")
    row = page.locator(f'.agent-row[data-agent="{AGENT}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("online")
    screenshot(page, "fleet", for_docs=True)
    # The model the agent runs on cam1 is among the row's model versions.
    expect(row).to_contain_text(str(stack.detection()["model_version"]))
    stack.alive()
