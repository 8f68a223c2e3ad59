"""Managed cameras. Answers never carry a camera password (see redact)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from controller.api.context import ApiContext, api_context
from controller.api.models import CameraPatch, CameraView
from controller.api.views import camera_view
from controller.registry import CameraRecord, CameraSettings, UnknownCamera

router = APIRouter(tags=["cameras"])
Ctx = Annotated[ApiContext, Depends(api_context)]
_404: dict[int | str, dict[str, Any]] = {404: {"description": "no such camera"}}


@router.get("/cameras")
def list_cameras(ctx: Ctx) -> list[CameraView]:
    return [camera_view(c) for c in ctx.registry.cameras()]


@router.post(
    "/cameras", status_code=201,
    responses={409: {"description": "name taken, or its main stream is registered already"}},
)  # fmt: skip
def add_camera(body: CameraSettings, ctx: Ctx) -> CameraView:
    """Register a camera; the controller assigns it to an agent (or to `placement`)."""
    rec = ctx.registry.add_camera(CameraRecord.model_validate(body.model_dump()))
    ctx.changed()
    return camera_view(ctx.registry.camera(rec.name) or rec)


@router.get("/cameras/{name}", responses=_404)
def get_camera(name: str, ctx: Ctx) -> CameraView:
    rec = ctx.registry.camera(name)
    if rec is None:
        raise UnknownCamera(name)
    return camera_view(rec)


@router.patch("/cameras/{name}", responses=_404)
def update_camera(name: str, body: CameraPatch, ctx: Ctx) -> CameraView:
    """Change only the fields given."""
    rec = ctx.registry.update_camera(name, **body.model_dump(exclude_unset=True))
    ctx.changed()
    return camera_view(ctx.registry.camera(name) or rec)


@router.delete("/cameras/{name}", status_code=204, responses=_404)
def remove_camera(name: str, ctx: Ctx) -> Response:
    """Its agent closes the connection; recordings stay on the agent."""
    ctx.registry.remove_camera(name)
    ctx.changed()
    return Response(status_code=204)
