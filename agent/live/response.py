"""The live stream over HTTP: a viewer read on the event loop as the client takes the bytes.

Reading pulls: the next packets are taken only once the previous bytes went out, so a client
that cannot keep up lets its viewer's queue fill and skip ahead, instead of the server's memory
growing. The hub wakes the reading task through the consumer's wakeup (no thread per viewer).
However the response ends (the client went away, the stream ended, the server shut down), the
viewer is closed, which unsubscribes it; a shutdown ends the stream as a normal end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from agent.fanout.hub import HubError, StreamHub
from agent.live.gop import GopCache
from agent.live.viewer import LiveUnavailable, LiveViewer

START_TIMEOUT_S = 10.0  # for the first keyframe, when no GOP is cached
_RECHECK_S = 1.0  # a closing hub sets no wakeup: look at the viewer this often


class LoopWakeup(threading.Event):
    """A consumer's wakeup (set on the hub's thread) that also wakes a task on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._ready = asyncio.Event()

    def set(self) -> None:
        super().set()
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one is waiting
            self._loop.call_soon_threadsafe(self._ready.set)

    def rearm(self) -> None:
        """Before reading the queue: whatever is queued after this wakes the next wait."""
        self.clear()
        self._ready.clear()

    async def queued(self, timeout: float) -> None:
        """Until something was queued since `rearm`, or `timeout` s."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)


async def _next(viewer: LiveViewer, wakeup: LoopWakeup, timeout: float) -> bytes:
    """The viewer's next bytes; b"" once it ended or after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not viewer.ended:
        wakeup.rearm()
        data = viewer.read()
        if data:
            return data
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await wakeup.queued(min(remaining, _RECHECK_S))
    return b""


async def _chunks(viewer: LiveViewer, wakeup: LoopWakeup, first: bytes) -> AsyncIterator[bytes]:
    yield first
    while data := await _next(viewer, wakeup, math.inf):
        yield data


class LiveResponse(StreamingResponse):
    def __init__(self, viewer: LiveViewer, wakeup: LoopWakeup, first: bytes, codec: str) -> None:
        headers = {"X-Camfleet-Codec": codec, "Cache-Control": "no-store"}
        super().__init__(_chunks(viewer, wakeup, first), media_type="video/mp4", headers=headers)
        self.viewer = viewer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # The server shutting down cancels what still runs after its grace period: for a
            # stream that never ends by itself that is its normal end, not an error to log.
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.viewer.close()


async def live_response(
    hub: StreamHub, gop: GopCache | None, start_timeout: float = START_TIMEOUT_S
) -> LiveResponse:
    """A new viewer's response, once its first bytes (the init segment) are there: the codec
    string goes in a header. Raises LiveUnavailable if no keyframe came in `start_timeout` s."""
    wakeup = LoopWakeup(asyncio.get_running_loop())
    try:
        viewer = LiveViewer(hub, gop, wakeup)
    except HubError as exc:  # the camera was removed meanwhile
        raise LiveUnavailable(str(exc)) from None
    try:
        first = await _next(viewer, wakeup, start_timeout)
        if viewer.codec is None:
            raise LiveUnavailable(f"{hub.name}: no keyframe within {start_timeout:g} s")
    except BaseException:
        viewer.close()
        raise
    return LiveResponse(viewer, wakeup, first, viewer.codec)
