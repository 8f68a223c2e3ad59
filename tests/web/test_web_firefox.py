"""The web view in Debian's Firefox (ESR), driven over WebDriver BiDi, against the same running
camfleet as the Chromium tests: log in through the form, the grid, live video through
MediaSource (H.264 in fragmented MP4, decoded by the system's libavcodec) with its ROI scores,
the events list. What Chromium proves in depth, this proves works in the other engine too.

The tests share one stack and one browser and run in file order (the first one logs in).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final

import pytest
from conftest import wait_for
from firefox_bidi import Firefox
from web_stack import AGENT, CAMERAS, PASSWORD, SCORED, Stack, running_stack

from agent.evaluation.run import ROI_NAMES

pytestmark = pytest.mark.slow
# How long the page may take to show something (a busy 2-core machine).
UI_TIMEOUT_S: Final = 20.0
# The live view must advance by this much playing time (not just show a frame).
PLAYED_S: Final = 1.0
# Anomalies come four times per 20 s loop; an event needs one to end.
EVENT_TIMEOUT_S: Final = 60.0
# What a failed wait shows by default: the start of the page's text.
PAGE_TEXT: Final = "document.body ? document.body.innerText.slice(0, 400) : null"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("web-firefox")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Firefox]:
    with Firefox() as firefox:
        yield firefox


@pytest.fixture
def page(browser: Firefox) -> Iterator[Firefox]:
    """The browser, failing the test if the client's scripts threw meanwhile (a bug the DOM may
    hide)."""
    before = len(browser.uncaught_errors())
    yield browser
    thrown = browser.uncaught_errors()[before:]
    assert not thrown, f"uncaught errors in the page: {thrown}"


def js(value: object) -> str:
    """`value` as a JavaScript literal, to put into an expression."""
    return json.dumps(value)


def test_the_login_form_opens_the_grid(page: Firefox, stack: Stack) -> None:
    page.navigate(f"{stack.url}/")
    page.wait_for("document.querySelector('form#login')", UI_TIMEOUT_S, what="the login form")
    page.evaluate(
        f"""(() => {{ const form = document.querySelector('form#login');
            form.elements.username.value = 'admin';
            form.elements.password.value = {js(PASSWORD)};
            form.requestSubmit(); }})()"""
    )
    cell = f".cell[data-camera={js(SCORED)}]"
    page.wait_for(f"document.querySelector({js(cell)})", UI_TIMEOUT_S,
                  what="the grid after logging in", explain=PAGE_TEXT)  # fmt: skip
    assert page.evaluate("document.querySelector('form#login')") is None


def test_the_grid_shows_both_cameras_streaming_with_pictures(page: Firefox, stack: Stack) -> None:
    page.navigate(f"{stack.url}/#/grid")
    cells = page.wait_for(
        f"""(() => {{
            const cells = [...document.querySelectorAll('.cell')].map(c => ({{
                name: c.dataset.camera,
                state: c.querySelector('[data-state]')?.dataset.state,
                agent: c.querySelector('.agent')?.textContent,
                picture: c.querySelector('img')?.naturalWidth > 0 }}));
            return cells.length === {len(CAMERAS)}
                && cells.every(c => c.state === 'streaming' && c.picture) && cells; }})()""",
        UI_TIMEOUT_S, what="every camera streaming, with a snapshot",
        explain="[...document.querySelectorAll('.cell')].map(c => c.outerHTML.slice(0, 300))",
    )  # fmt: skip
    assert sorted(c["name"] for c in cells) == sorted(CAMERAS)
    assert all(c["agent"] == AGENT for c in cells), cells


def test_live_video_plays_through_media_source_with_roi_scores(page: Firefox, stack: Stack) -> None:
    # Firefox takes the codec the agent announces (else the client falls back to a plain src).
    codec, supported = page.evaluate(
        f"""(async () => {{
            const abort = new AbortController();
            const r = await fetch({js(f"/api/v1/cameras/{SCORED}/live.mp4")},
                                  {{signal: abort.signal, cache: 'no-store'}});
            const codec = r.headers.get('X-Camfleet-Codec');
            abort.abort();
            return [codec, MediaSource.isTypeSupported(`video/mp4; codecs="${{codec}}"`)]; }})()"""
    )  # fmt: skip
    assert codec and supported, (
        f"Firefox's MediaSource refuses video/mp4 codecs={codec!r}: Debian's Firefox decodes H.264"
        " only through the system's libavcodec (scripts/install-system-deps.sh --only firefox)"
    )

    page.navigate(f"{stack.url}/#/camera/{SCORED}")
    page.wait_for(
        f"""(() => {{
            const v = document.querySelector('video#live');
            if (!v || !(v.currentTime > 0)) return false;
            v.dataset.testFirstTime ??= String(v.currentTime);
            return v.currentTime - Number(v.dataset.testFirstTime) > {PLAYED_S}; }})()""",
        UI_TIMEOUT_S, what=f"video#live to play {PLAYED_S} s", explain=VIDEO_STATE,
    )  # fmt: skip
    live: dict[str, Any] = page.evaluate(VIDEO_STATE)
    assert live["src"].startswith("blob:"), f"not played through MediaSource: {live}"
    assert live["state"] == "playing", live
    assert [live["width"], live["height"]] == [426, 240], f"not the sub stream: {live}"

    scores = page.wait_for(
        f"""(() => {{
            const rows = {js(list(ROI_NAMES))}.map(roi =>
                document.querySelector(`#roi-scores [data-roi="${{roi}}"] .score`)?.textContent);
            return rows.every(text => /\\d/.test(text ?? '')) && rows; }})()""",
        UI_TIMEOUT_S, what="a score for every ROI",
        explain="document.querySelector('#roi-scores')?.outerHTML",
    )  # fmt: skip
    assert len(scores) == len(ROI_NAMES)


# The live video's state, for the assertions above and for a failed wait.
VIDEO_STATE: Final = """(() => {
    const v = document.querySelector('video#live');
    if (!v) return 'no video#live';
    const b = v.buffered;
    return {currentTime: v.currentTime, readyState: v.readyState, paused: v.paused,
            error: v.error && v.error.message, src: v.src, width: v.videoWidth,
            height: v.videoHeight, state: document.querySelector('.live-state')?.textContent,
            buffered: [...Array(b.length).keys()].map(i => [b.start(i), b.end(i)])}; })()"""


def test_the_events_page_lists_the_events(page: Firefox, stack: Stack) -> None:
    def stored() -> set[str] | None:
        return {e["id"] for e in stack.api.events(camera=SCORED)["items"]} or None

    ids = wait_for(stored, EVENT_TIMEOUT_S, 0.5, f"an event of {SCORED} at the controller")
    page.navigate(f"{stack.url}/#/events")
    listed: list[str] = page.wait_for(
        "(() => { const ids = [...document.querySelectorAll('.event-row')]"
        ".map(r => r.dataset.event); return ids.length > 0 && ids; })()",
        UI_TIMEOUT_S, what="event rows", explain=PAGE_TEXT,
    )  # fmt: skip
    assert ids & set(listed), f"none of the listed {listed} is among the stored {ids}"
