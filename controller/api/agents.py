"""Enrollment tokens and enrolled agents."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from controller.api.context import ApiContext, api_context
from controller.api.models import AgentView, TokenRequest, TokenResponse
from controller.api.views import agent_view
from controller.registry import UnknownAgent
from controller.registry.enrollment import token_expiry_us
from fleet.utc import now_us

router = APIRouter(tags=["agents"])
Ctx = Annotated[ApiContext, Depends(api_context)]
_404: dict[int | str, dict[str, Any]] = {404: {"description": "no such agent"}}


@router.post("/tokens", status_code=201, responses={409: {"description": "name in use"}})
def create_token(body: TokenRequest, ctx: Ctx) -> TokenResponse:
    """A one-time token that enrolls an agent under `name`; shown only in this answer."""
    now = now_us()
    token = ctx.registry.create_token(body.name, body.ttl_s, now)
    expires_us = token_expiry_us(now, body.ttl_s)
    return TokenResponse(token=token, name=body.name, expires_us=expires_us)


@router.get("/agents")
def list_agents(ctx: Ctx) -> list[AgentView]:
    cameras, now = ctx.registry.cameras(), now_us()
    return [agent_view(a, cameras, now) for a in ctx.registry.agents()]


@router.get("/agents/{agent_id}", responses=_404)
def get_agent(agent_id: str, ctx: Ctx) -> AgentView:
    agent = ctx.registry.agent(agent_id)
    if agent is None:
        raise UnknownAgent(agent_id)
    return agent_view(agent, ctx.registry.cameras(), now_us())


@router.post("/agents/{agent_id}/revoke", responses=_404)
def revoke_agent(agent_id: str, ctx: Ctx) -> AgentView:
    """The broker and the API refuse the agent from now on; its cameras are re-assigned."""
    agent = ctx.registry.revoke(agent_id)
    ctx.on_revoke(agent_id)
    ctx.changed()
    return agent_view(agent, ctx.registry.cameras(), now_us())
