"""What the browser tests share: a running camfleet (simulator, controller, one enrolled agent
scoring cam1 with a model trained on the simulator's own loop), Debian's Chromium driven by
Playwright, and where screenshots and figures go.

Screenshots go to test-artifacts/web/ (ignored by git); with CAMFLEET_SCREENSHOTS=docs the ones
the README shows are also written to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from conftest import REPO, SimProcess, free_port, require_tool, start_sim, wait_for
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout

# The fleet's process harness and the trainer live beside the tests that made them; reused,
# not copied (running this folder alone, pytest has not put their folders on the path).
for _folder in ("controller", "agent"):
    _path = os.path.join(REPO, "tests", _folder)
    if _path not in sys.path:
        sys.path.append(_path)

from fleet_processes import PASSWORD as PASSWORD  # noqa: E402  (the tests log in with it)
from fleet_processes import Controller, FleetAgent  # noqa: E402
from test_detection_e2e import DETECT_FPS, SIM_ARGS, train_on_the_served_loop  # noqa: E402

from agent.evaluation.run import rois  # noqa: E402
from controller.client import ControllerClient  # noqa: E402

CAMERAS: Final = ("cam1", "cam2")  # cam1 has the model; cam2 shows the same scene, no model
SCORED: Final = "cam1"
AGENT: Final = "edge-01"
ARTIFACTS: Final = Path(REPO) / "test-artifacts" / "web"
DOCS_SCREENSHOTS: Final = Path(REPO) / "docs" / "screenshots"
# The live view and clips start playing by themselves; headless, no user ever clicks to allow it.
CHROMIUM_ARGS: Final = ("--autoplay-policy=no-user-gesture-required",)
VIEWPORT: Final[ViewportSize] = {"width": 1280, "height": 800}
# How long the page may take to show something (loaded over a busy 2-core machine).
UI_TIMEOUT_MS: Final = 20_000
expect.set_options(timeout=UI_TIMEOUT_MS)


@dataclass
class Stack:
    sim: SimProcess
    controller: Controller
    agent: FleetAgent
    api: ControllerClient  # the admin API, to check what the page did

    @property
    def url(self) -> str:
        return self.controller.url

    def camera(self, name: str = SCORED) -> dict[str, Any]:
        found: dict[str, Any] = self.api._call("GET", f"/cameras/{name}")
        return found

    def detection(self, name: str = SCORED) -> dict[str, Any]:
        """The agent's detection state, through the controller as the page sees it."""
        state: dict[str, Any] = self.api._call("GET", f"/cameras/{name}/detection")
        return state

    def agent_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.agent.http}/stats", timeout=5).json()
        return stats

    def alive(self) -> None:
        self.controller.alive()
        self.agent.alive()


@contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    """Simulator, controller with its embedded broker and an enrolled agent, as real processes;
    cam1 (main + sub stream, the evaluation's ROIs, its model) and cam2 added through the API and
    streaming, cam1 scored by the model when this yields."""
    model = tmp / f"{SCORED}.camfleet-model"
    with ExitStack() as cleanup, ThreadPoolExecutor(1) as pool:
        # Training (~20 s) overlaps the processes starting.
        trained = pool.submit(train_on_the_served_loop, model)
        # One scene for both cameras: one loop to encode, and it is the one the model knows.
        sim = start_sim(str(tmp), *SIM_ARGS, "--distinct-scenes", "1", cameras=len(CAMERAS))
        cleanup.callback(sim.stop)
        ctl = Controller(tmp / "controller", "--mqtt-port", str(free_port()))
        cleanup.callback(ctl.stop)
        agent = FleetAgent(ctl, AGENT, tmp / AGENT)
        cleanup.callback(agent.stop)
        api = cleanup.enter_context(ctl.client())
        trained.result()
        sha = str(api.upload_model(model.read_bytes())["sha256"])
        served = {c["name"]: c["streams"] for c in sim.get("/cameras")}  # type: ignore[attr-defined]
        for name in CAMERAS:
            streams = served[name]
            api.add_camera({
                "name": name, "profile": "generic-onvif", "detect_fps": DETECT_FPS,
                "main_url": streams["main"]["url"], "sub_url": streams["sub"]["url"],
                "site": "depot",
                **({"rois": [r.model_dump(mode="json") for r in rois()], "model": sha}
                   if name == SCORED else {}),
            })  # fmt: skip
        stack = Stack(sim, ctl, agent, api)

        def streaming() -> bool:
            rows = api.fleet_health()["cameras"]
            return {r["name"] for r in rows if r["state"] == "streaming"} == set(CAMERAS)

        wait_for(streaming, timeout=60, interval=0.3, what="both cameras streaming on the agent")
        wait_for(
            lambda: stack.agent_stats()["detection"]["cameras"].get(SCORED, {}).get("model"),
            timeout=30, interval=0.3, what=f"the agent scoring {SCORED} with the model",
        )  # fmt: skip
        yield stack
        stack.alive()


# -- the browser ----------------------------------------------------------------------------------


# What a failed wait shows by default: the start of the page's text.
_PAGE_TEXT: Final = "() => document.body ? document.body.innerText.slice(0, 400) : null"
# And always: the page's last requests that got an error status (Resource Timing).
_FAILED_REQUESTS: Final = """() => performance.getEntriesByType('resource')
    .filter(e => e.responseStatus >= 400).slice(-5)
    .map(e => `${e.responseStatus} ${e.name.replace(location.origin, '')}`)"""


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; Playwright never downloads a browser of its own."""
    executable = require_tool("chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=list(CHROMIUM_ARGS))  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Browser, url: str, logged_in: bool = True) -> BrowserContext:
    """A fresh browser profile on the controller; logged in through the API (the cookie the
    login sets lands in the context, as it would after the form)."""
    context = browser.new_context(base_url=url, viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    if logged_in:
        answer = context.request.post("/api/v1/login",
                                      data={"username": "admin", "password": PASSWORD})  # fmt: skip
        assert answer.ok, f"login through the API: {answer.status} {answer.text()}"
    return context


class PageErrors:
    """Uncaught errors in the page's scripts, and console errors, for the test to show."""

    def __init__(self, page: Page) -> None:
        self.uncaught: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda exc: self.uncaught.append(str(exc)))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(message.text)


@contextmanager
def watched_page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test if the client's scripts threw (a bug the DOM may hide)."""
    page = context.new_page()
    errors = PageErrors(page)
    try:
        yield page
    finally:
        page.close()
    assert not errors.uncaught, f"uncaught errors in the page: {errors.uncaught}; " \
        f"console errors: {errors.console}"  # fmt: skip


def wait_js(
    page: Page,
    script: str,
    arg: object = None,
    *,
    what: str,
    explain: str = _PAGE_TEXT,
    timeout_ms: int = UI_TIMEOUT_MS,
) -> Any:
    """The first truthy value of `script` (a JS function of `arg`) in the page; on a timeout
    the failure says what `explain` (a JS function of `arg`) found there."""
    try:
        return page.wait_for_function(script, arg=arg, timeout=timeout_ms).json_value()
    except PlaywrightTimeout:
        found = page.evaluate(explain, arg)
        failed = page.evaluate(_FAILED_REQUESTS)
        raise AssertionError(
            f"timed out after {timeout_ms / 1000:g}s waiting for {what}; {page.url} has:"
            f" {found!r}; requests refused: {failed}"
        ) from None


def screenshot(page: Page, name: str, for_docs: bool = False) -> Path:
    """test-artifacts/web/NAME.png; the README's ones also to docs/screenshots/ when
    CAMFLEET_SCREENSHOTS=docs (so ordinary runs leave the checkout clean)."""
    path = artifact(f"{name}.png")
    page.screenshot(path=str(path))
    if for_docs:
        publish(path)
    return path


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def publish(path: Path) -> None:
    if os.environ.get("CAMFLEET_SCREENSHOTS") == "docs":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
