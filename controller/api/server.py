"""Serving the API with uvicorn, so that it can stop while responses that never end (the update
feed, live video) are open: uvicorn waits for every open response before it shuts down, so
those responses watch `Closing` and end when the server begins to stop."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Final

import anyio
import uvicorn
from fastapi import FastAPI, Request

# Whatever has not finished this long after the server began to stop (an upstream that went
# quiet, a slow download) is cancelled, so a stop never hangs.
GRACEFUL_SHUTDOWN_S: Final = 5


class Closing:
    """Set once the server begins to stop (on the server's event loop)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout_s: float) -> bool:
        """Sleep `timeout_s` or until the server begins to stop; whether it has."""
        with anyio.move_on_after(timeout_s):
            await self._event.wait()
        return self._event.is_set()


def closing(request: Request) -> Closing:
    found: Any = request.app.state.closing
    assert isinstance(found, Closing)
    return found


class ApiServer(uvicorn.Server):
    """uvicorn serving `app` (made by `create_app`), ending its endless responses on stop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        super().__init__(
            uvicorn.Config(app, host=host, port=port, log_level="warning",
                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        )  # fmt: skip
        self._closing: Closing = app.state.closing

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._closing.set()
        await super().shutdown(sockets)
