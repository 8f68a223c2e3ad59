"""The fleet as of now: health, discovered cameras, Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from controller.api.context import ApiContext, api_context
from controller.api.metrics import render_metrics
from controller.api.models import DiscoveredCamera, FleetHealth
from controller.api.views import discovered_view, fleet_health
from fleet.utc import now_us

router = APIRouter(tags=["fleet"])
Ctx = Annotated[ApiContext, Depends(api_context)]


def _health(ctx: ApiContext) -> FleetHealth:
    return fleet_health(ctx.registry.agents(), ctx.registry.cameras(), now_us())


@router.get("/fleet/health")
def get_fleet_health(ctx: Ctx) -> FleetHealth:
    """Per agent its state computed now (online needs fresh heartbeats); per camera its owner,
    target and the connection state the owner reports."""
    return _health(ctx)


@router.get("/discovered")
def list_discovered(ctx: Ctx) -> list[DiscoveredCamera]:
    """Cameras the agents' last discovery probes found, with any camera registered for them."""
    return [
        discovered_view(
            agent_id, found, seen_us,
            ctx.registry.camera_reading(found.main_url) if found.main_url else None,
        )
        for agent_id, found, seen_us in ctx.registry.discovered()
    ]  # fmt: skip


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(ctx: Ctx) -> PlainTextResponse:
    text = render_metrics(_health(ctx), ctx.registry.enrollment_counts()) + ctx.extra_metrics()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
