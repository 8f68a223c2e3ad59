"""Debian's Firefox driven over WebDriver BiDi, the protocol it speaks by itself: Playwright drives
only a Firefox it builds, and no geckodriver can be had offline. Just what the browser tests need:
open a page, run JavaScript in it, wait for a condition, see the page's uncaught errors.

`BidiConnection` is the protocol (numbered commands, their answers, events between them);
`Firefox` is the process (a throwaway profile, the port it listens on, shutting it down).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from conftest import require_tool, wait_for
from websockets.sync.client import ClientConnection, connect

# Prefs beyond the ones Firefox's remote agent sets by itself (remote.prefs.recommended: no
# first-run pages, no updates, no telemetry).
PREFS: Final[dict[str, object]] = {
    "remote.active-protocols": 1,  # BiDi only (not the deprecated CDP)
    "media.autoplay.default": 0,  # the live view plays by itself; headless, nobody clicks
    "browser.startup.page": 0,  # start on a blank page, not about:home
}
COMMAND_TIMEOUT_S: Final = 30.0
START_TIMEOUT_S: Final = 60.0
# A serialised object nested deeper than this comes back without its contents.
MAX_DEPTH: Final = 8
# Run in every document before its own scripts: what reaches the window uncaught is sent to us
# (Firefox's log also has network failures, e.g. a 401 to an EventSource, among its errors).
UNCAUGHT: Final = "uncaught"
REPORT_UNCAUGHT: Final = """(send) => {
    addEventListener('error', (e) => send(String(e.error ?? e.message)));
    addEventListener('unhandledrejection', (e) => send(`unhandled rejection: ${e.reason}`));
}"""


class BidiError(RuntimeError):
    """Firefox refused a command (bad context, navigation failed...): its error code and message."""


class ScriptError(RuntimeError):
    """The evaluated script threw (or its promise rejected)."""


class BidiConnection:
    """WebDriver BiDi over one websocket: each command gets the next id and waits for the answer
    carrying it; events arriving meanwhile are kept in `events` for whoever subscribed."""

    def __init__(self, url: str) -> None:
        self._ws: ClientConnection = connect(url, max_size=None, open_timeout=COMMAND_TIMEOUT_S)
        self._last_id = 0
        self.events: list[dict[str, Any]] = []

    def command(
        self, method: str, params: dict[str, Any], timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any]:
        """The result of `method`; BidiError when Firefox answers with an error."""
        self._last_id += 1
        sent = self._last_id
        self._ws.send(json.dumps({"id": sent, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to BiDi {method} within {timeout:g}s")
            message: dict[str, Any] = json.loads(self._ws.recv(timeout=left))
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("id") == sent:
                if message.get("type") == "error":
                    raise BidiError(f"{method}: {message['error']}: {message['message']}")
                result: dict[str, Any] = message["result"]
                return result
            elif message.get("id") is None:  # an error not tied to a command: a bad message
                raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")

    def close(self) -> None:
        self._ws.close()


def remote_value(value: dict[str, Any]) -> Any:
    """A serialised JavaScript value as Python; what JSON cannot hold (nodes, functions, maps...)
    stays BiDi's own description of it."""
    kind, inner = value["type"], value.get("value")
    if kind in ("undefined", "null"):
        return None
    if kind == "number" and isinstance(inner, str):  # NaN, -0, Infinity, -Infinity
        return float(inner.replace("Infinity", "inf"))
    if kind in ("string", "number", "boolean"):
        return inner
    if kind == "array" and inner is not None:
        return [remote_value(v) for v in inner]
    if kind == "object" and inner is not None:  # [[key, value], ...], keys strings
        return {k: remote_value(v) for k, v in inner}
    return value


class Firefox:
    """Headless Firefox on a fresh profile, with one tab: `navigate`, `evaluate`, `wait_for`,
    then `close` (also on leaving a `with` block) ends it and removes the profile."""

    def __init__(self, prefs: dict[str, object] = PREFS) -> None:
        executable = require_tool("firefox-esr")
        self._dir = Path(tempfile.mkdtemp(prefix="camfleet-firefox-"))
        self.log = self._dir / "firefox.log"
        profile = self._dir / "profile"
        profile.mkdir()
        (profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
        )
        with self.log.open("wb") as out:
            # Port 0: Firefox picks a free one and writes it into the profile (no race). Its
            # own process group, so content processes go down with it.
            self._proc = subprocess.Popen(
                [executable, "--headless", "--profile", str(profile),
                 "--remote-debugging-port", "0"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            announced = profile / "WebDriverBiDiServer.json"
            port = wait_for(lambda: self._port(announced), START_TIMEOUT_S, 0.2,
                            "Firefox to listen for WebDriver BiDi")  # fmt: skip
            self.bidi = BidiConnection(f"ws://127.0.0.1:{port}/session")
            self.bidi.command("session.new", {"capabilities": {}})
            self.bidi.command("session.subscribe", {"events": ["script.message"]})
            self.bidi.command("script.addPreloadScript", {
                "functionDeclaration": REPORT_UNCAUGHT,
                "arguments": [{"type": "channel", "value": {"channel": UNCAUGHT}}],
            })  # fmt: skip
            tabs = self.bidi.command("browsingContext.getTree", {"maxDepth": 0})["contexts"]
            self.context: str = tabs[0]["context"]
        except BaseException:
            self.close()
            raise

    def _port(self, announced: Path) -> int | None:
        if self._proc.poll() is not None:
            raise RuntimeError(f"Firefox exited {self._proc.returncode}: {self.log_tail()}")
        return int(json.loads(announced.read_text())["ws_port"]) if announced.exists() else None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def navigate(self, url: str) -> None:
        """Open `url` in the tab and wait for its load event (for a change of the #fragment
        alone: until the fragment changed)."""
        self.bidi.command("browsingContext.navigate",
                          {"context": self.context, "url": url, "wait": "complete"})  # fmt: skip

    def evaluate(self, expression: str, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """The value of a JavaScript expression in the page, a promise awaited; ScriptError if
        it throws."""
        answer = self.bidi.command(
            "script.evaluate",
            {"expression": expression, "target": {"context": self.context},
             "awaitPromise": True, "resultOwnership": "none",
             "serializationOptions": {"maxObjectDepth": MAX_DEPTH}},
            timeout,
        )  # fmt: skip
        if answer["type"] == "exception":
            raise ScriptError(f"{answer['exceptionDetails']['text']} in: {expression[:200]}")
        return remote_value(answer["result"])

    def wait_for(
        self, expression: str, timeout: float, *, what: str, explain: str | None = None
    ) -> Any:
        """The first truthy value of `expression`, polled; on a timeout the failure says what
        `explain` (an expression) found in the page."""
        try:
            return wait_for(lambda: self.evaluate(expression), timeout, 0.2, what)
        except AssertionError as failed:
            if explain is None:
                raise
            raise AssertionError(f"{failed}; the page has: {self.evaluate(explain)!r}") from None

    def uncaught_errors(self) -> list[str]:
        """Errors the page's scripts threw (or promises rejected) that nobody caught, so far."""
        return [
            str(remote_value(e["params"]["data"]))
            for e in self.bidi.events
            if e["method"] == "script.message" and e["params"]["channel"] == UNCAUGHT
        ]

    def close(self) -> None:
        bidi: BidiConnection | None = getattr(self, "bidi", None)
        if bidi is not None:
            # Ends the session and Firefox; one already gone or stuck is ended below.
            with contextlib.suppress(Exception):
                bidi.command("browser.close", {}, timeout=10)
            bidi.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(15)
        # Its group also holds the content processes, which may outlive it by a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Firefox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
