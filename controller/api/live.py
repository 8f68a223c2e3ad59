"""A camera's live video (the agent's never-ending fragmented MP4) streamed through the
controller to the browser, byte for byte.

Each viewer is one upstream request to the owning agent, closed when the viewer goes away (or
the controller stops), so the agent drops that viewer's fan-out consumer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from typing import Annotated, Final

import anyio
import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from controller.api.context import ApiContext, api_context
from controller.api.proxy import owner_url, passed_headers, unreachable
from controller.api.server import Closing, closing

log = logging.getLogger("camfleet.controller.api")

router = APIRouter(prefix="/api/v1", tags=["media"])
# A live stream sends a fragment per frame or so: one quiet this long has stalled.
_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)


@router.get("/cameras/{camera}/live.mp4", response_class=StreamingResponse)
async def live(
    camera: str,
    request: Request,
    ctx: Annotated[ApiContext, Depends(api_context)],
    stopping: Annotated[Closing, Depends(closing)],
) -> Response:
    """The camera's live fragmented MP4 (`stream=sub|main`), from its agent; the
    `X-Camfleet-Codec` header holds the codec string for MediaSource."""
    base = await anyio.to_thread.run_sync(owner_url, ctx, camera)
    url = f"{base}/cameras/{camera}/live.mp4"
    async with AsyncExitStack() as opened:
        client = await opened.enter_async_context(httpx.AsyncClient(timeout=_TIMEOUT))
        try:
            upstream = await client.send(
                client.build_request("GET", url, params=request.query_params), stream=True
            )
            if upstream.status_code != 200:  # the agent's refusal (404, 503), passed on
                body = await upstream.aread()
                return Response(body, upstream.status_code, headers=passed_headers(upstream))
        except httpx.HTTPError as exc:
            raise HTTPException(502, unreachable(camera, exc)) from None
        opened.pop_all()  # from here on the relay closes them
    body_iterator = _relay(camera, upstream, client, stopping)
    # Run after the response, also when the viewer left mid-stream: closes the upstream.
    return StreamingResponse(
        body_iterator, headers=passed_headers(upstream),
        background=BackgroundTask(body_iterator.aclose),
    )  # fmt: skip


async def _relay(
    camera: str, upstream: httpx.Response, client: httpx.AsyncClient, stopping: Closing
) -> AsyncGenerator[bytes]:
    try:
        async for chunk in upstream.aiter_bytes():
            yield chunk
            if stopping.is_set():
                return
    except httpx.HTTPError as exc:
        log.info("live video of %s ended: %s", camera, unreachable(camera, exc))
    finally:
        # Shielded: when the viewer left, this runs inside a cancelled task.
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
            await client.aclose()
