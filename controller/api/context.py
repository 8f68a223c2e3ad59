"""What the API needs from the rest of the controller, handed to `create_app`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from pydantic import SecretStr, TypeAdapter, ValidationError

from controller.registry import Registry
from fleet.enrollment import BrokerAccess
from fleet.messages import HttpUrl, format_validation_error

log = logging.getLogger("camfleet.controller.api")


def _nothing() -> None:
    pass


def _nothing_for(agent_id: str) -> None:
    pass


@dataclass
class ApiContext:
    registry: Registry
    broker_host: str  # what enrolled agents connect to
    broker_port: int
    controller_url: str  # given to agents at enrollment
    # Called after every change to cameras or agents, so the controller republishes.
    on_change: Callable[[], None] = _nothing
    on_revoke: Callable[[str], None] = _nothing_for  # e.g. drop its broker connection
    # Extra routers, included as they are (with their own /api/v1 prefix) behind the login.
    routers: list[APIRouter] = field(default_factory=list)
    app_state: dict[str, object] = field(default_factory=dict)  # set on `app.state`
    extra_metrics: Callable[[], str] = str  # more Prometheus text for /metrics

    def __post_init__(self) -> None:
        # Checked now, not at the first enrollment: that would use up the agent's token.
        try:
            TypeAdapter(HttpUrl).validate_python(self.controller_url)
            BrokerAccess(
                host=self.broker_host, port=self.broker_port, username="check",
                password=SecretStr("check"),
            )  # fmt: skip
        except ValidationError as exc:
            raise ValueError("API settings: " + "; ".join(format_validation_error(exc))) from None

    def changed(self) -> None:
        """Tell the controller; the change is committed already, so a failing callback is
        logged rather than reported to the client as a failed request."""
        try:
            self.on_change()
        except Exception:
            log.exception("on_change failed after a committed change")


def api_context(request: Request) -> ApiContext:
    ctx: Any = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx
