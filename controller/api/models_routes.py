"""Model artifacts: admins upload and list them; agents (and admins) download them.

An agent downloads with HTTP Basic, its id and its broker password, checked as the broker checks
them (the registry's identity, `verify_password`), so a revoked agent is refused; it gets only
the models of cameras it runs. Assigning a model is a camera change (PATCH /cameras/{name}).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from controller.api.context import ApiContext, api_context
from controller.api.models import ModelView
from controller.api.security import admin_auth, require_admin, session_token
from controller.auth import AdminAuth
from controller.broker.passwd import verify_password
from controller.models.artifact import MAX_BYTES, ArtifactTooLarge, InvalidArtifact
from controller.models.records import ModelRecord
from controller.models.store import SUFFIX, ModelStore, UnknownModel
from controller.registry import CameraRecord
from fleet.messages import Sha256Hex

router = APIRouter(tags=["models"])
Ctx = Annotated[ApiContext, Depends(api_context)]
_basic = HTTPBasic(auto_error=False, description="an agent: its id and its broker password")
_ARTIFACT_BODY: Final[dict[str, Any]] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}  # fmt: skip


def model_store(ctx: Ctx) -> ModelStore:
    return ModelStore(ctx.registry)


Store = Annotated[ModelStore, Depends(model_store)]


def model_reader(
    request: Request,
    ctx: Ctx,
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    auth: Annotated[AdminAuth, Depends(admin_auth)],
    token: Annotated[str | None, Depends(session_token)],
) -> str | None:
    """The agent id of an agent's HTTP Basic credentials, or None for an admin session."""
    if basic is None:
        require_admin(request, auth, token)
        return None
    identity = ctx.registry.identity(basic.username)
    if (
        identity is None
        or identity.role != "agent"
        or not verify_password(basic.password, identity.password_hash)
    ):
        raise HTTPException(401, "unknown or revoked agent, or wrong password",
                            headers={"WWW-Authenticate": "Basic"})  # fmt: skip
    return identity.username


def _view(rec: ModelRecord, cameras: list[CameraRecord]) -> ModelView:
    return ModelView(
        sha256=rec.sha256, model_version=rec.model_version, camera=rec.camera, size=rec.size,
        created_us=rec.created_us, signature=base64.b64encode(rec.signature).decode("ascii"),
        cameras=[c.name for c in cameras if c.model == rec.sha256],
    )  # fmt: skip


@router.post(
    "/models", status_code=201, dependencies=[Depends(require_admin)],
    openapi_extra=_ARTIFACT_BODY,
    responses={200: {"description": "the same artifact was uploaded before"},
               413: {"description": f"larger than {MAX_BYTES} bytes"},
               422: {"description": "not a model artifact"}},
)  # fmt: skip
async def upload_model(request: Request, response: Response, store: Store, ctx: Ctx) -> ModelView:
    """Store a model artifact (the file `camfleet model train` writes, as the body) and sign it;
    assign it with PATCH /cameras/{name} {"model": sha256}."""
    try:
        if int(request.headers.get("content-length") or 0) > MAX_BYTES:
            raise ArtifactTooLarge()
        with store.upload() as upload:
            async for chunk in request.stream():
                upload.write(chunk)
            rec, new = await run_in_threadpool(store.commit, upload)
    except ArtifactTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except InvalidArtifact as exc:
        raise HTTPException(422, str(exc)) from None
    if not new:
        response.status_code = 200
    return _view(rec, await run_in_threadpool(ctx.registry.cameras))


@router.get("/models", dependencies=[Depends(require_admin)])
def list_models(store: Store, ctx: Ctx) -> list[ModelView]:
    """Newest first, with the cameras using each."""
    cameras = ctx.registry.cameras()
    return [_view(m, cameras) for m in store.models()]


@router.get(
    "/models/{sha256}", response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}},
               404: {"description": "no such model (or not one of the agent's cameras')"}},
)  # fmt: skip
def download_model(
    sha256: Sha256Hex, store: Store, agent_id: Annotated[str | None, Depends(model_reader)]
) -> FileResponse:
    """The artifact's bytes: for an admin session, or an agent (HTTP Basic) whose cameras use
    it. Check them against the sha256 and signature of the desired state's ModelRef."""
    try:
        path = store.readable_file(sha256, agent_id)
    except UnknownModel as exc:
        raise HTTPException(404, str(exc)) from None
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{sha256}{SUFFIX}")  # fmt: skip
