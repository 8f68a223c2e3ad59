"""Enrollment: an agent trades its one-time token for its identity. No login: the token is the
credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from controller.api.context import ApiContext, api_context
from controller.registry import Enrolled
from fleet.enrollment import ENROLL_PATH, BrokerAccess, EnrollRequest, EnrollResponse

router = APIRouter(tags=["enrollment"])
Ctx = Annotated[ApiContext, Depends(api_context)]


def enroll_response(ctx: ApiContext, enrolled: Enrolled) -> EnrollResponse:
    return EnrollResponse(
        agent_id=enrolled.agent_id,
        name=enrolled.name,
        broker=BrokerAccess(
            host=ctx.broker_host,
            port=ctx.broker_port,
            username=enrolled.agent_id,
            password=SecretStr(enrolled.broker_password),
        ),
        controller_url=ctx.controller_url,
        signing_public_key=ctx.registry.signing_public_key_b64(),
    )


@router.post(
    ENROLL_PATH,
    response_model=EnrollResponse,
    responses={403: {"description": "token unknown, already used or expired"}},
)
def enroll(req: EnrollRequest, ctx: Ctx) -> JSONResponse:
    enrolled = ctx.registry.enroll(req)  # EnrollmentRefused: 403 with the reason
    ctx.changed()
    body = enroll_response(ctx, enrolled).model_dump(mode="json")
    # SecretStr serialises masked; this one answer is where the agent learns its password.
    body["broker"]["password"] = enrolled.broker_password
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
