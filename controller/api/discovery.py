"""`POST /api/v1/discover`: ask agents to probe their subnets now, then list what they found."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from controller.api.context import ApiContext, api_context
from controller.api.fleet import list_discovered
from controller.api.models import DiscoveredCamera
from controller.registry.health import effective_state
from fleet.messages import Action, CommandAck, Discover
from fleet.utc import now_us

router = APIRouter(prefix="/api/v1", tags=["fleet"])
Ctx = Annotated[ApiContext, Depends(api_context)]


class CommandSender(Protocol):
    def command(self, agent_id: str, action: Action, timeout_s: float) -> CommandAck | None: ...


class DiscoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str | None = None  # None: every online agent
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 3.0


@router.post("/discover")
def discover(body: DiscoverRequest, request: Request, ctx: Ctx) -> list[DiscoveredCamera]:
    """Probe with ONVIF WS-Discovery on the agents' subnets; answers when they have reported."""
    sender: CommandSender = request.app.state.service
    now = now_us()
    agents = [a for a in ctx.registry.agents() if effective_state(a, now) == "online"]
    if body.agent_id is not None:
        agents = [a for a in agents if a.agent_id == body.agent_id]
        if not agents:
            raise HTTPException(404, f"no online agent {body.agent_id!r}")
    failed = []
    for agent in agents:  # one at a time: a 2-core site need not probe in parallel
        ack = sender.command(agent.agent_id, Discover(timeout_s=body.timeout_s),
                             body.timeout_s + 10)  # fmt: skip
        if ack is None or not ack.ok:
            failed.append(f"{agent.agent_id}: {'no answer' if ack is None else ack.error}")
    if failed and len(failed) == len(agents):
        raise HTTPException(504, "discovery failed: " + "; ".join(failed))
    found = list_discovered(ctx)
    return found if body.agent_id is None else [f for f in found if f.agent_id == body.agent_id]
