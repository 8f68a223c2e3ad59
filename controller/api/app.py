"""The controller's HTTP API under /api/v1: thin routes over the registry and the admin auth.

Public: GET /health, POST /login, POST /logout, POST /enroll (the token is the credential).
GET /models/{sha256} takes an agent's credentials too (see models_routes). Everything else, the
lead's extra routers included, needs an admin session. The web client's static files are served
at / (they hold no data: the page asks the API, which wants the login).
"""

from __future__ import annotations

from typing import Final

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from controller.api import agents, cameras, enroll, models_routes, sessions
from controller.api import fleet as fleet_routes
from controller.api.context import ApiContext
from controller.api.errors import install_error_handlers
from controller.api.security import require_admin
from controller.api.server import Closing
from controller.api.sessions import VERSION
from controller.auth import AdminAuth
from controller.web import mount_web_client

API_PREFIX: Final = "/api/v1"
_RESERVED_STATE: Final = frozenset({"ctx", "admin_auth", "closing"})


def create_app(ctx: ApiContext) -> FastAPI:
    clash = _RESERVED_STATE & ctx.app_state.keys()
    if clash:
        raise ValueError(f"app_state must not set {', '.join(sorted(clash))}: the API uses it")
    # No /docs: Swagger UI loads from a CDN a site network may not reach; /openapi.json stays.
    app = FastAPI(title="camfleet controller", version=VERSION, docs_url=None, redoc_url=None)
    for key, value in ctx.app_state.items():
        setattr(app.state, key, value)
    app.state.ctx = ctx
    app.state.admin_auth = AdminAuth(ctx.registry)
    app.state.closing = Closing()
    install_error_handlers(app)
    app.include_router(sessions.router, prefix=API_PREFIX)
    app.include_router(enroll.router)  # at fleet.enrollment.ENROLL_PATH
    app.include_router(models_routes.router, prefix=API_PREFIX)  # guards each route itself
    ctx.registry.models_url = f"{ctx.controller_url}{API_PREFIX}/models"
    admin_only = [Depends(require_admin)]
    for router in (agents.router, cameras.router, fleet_routes.router):
        app.include_router(router, prefix=API_PREFIX, dependencies=admin_only)
    # Where Prometheus looks by default, as well as under the API prefix.
    app.add_api_route("/metrics", fleet_routes.metrics, dependencies=admin_only,
                      response_class=PlainTextResponse, include_in_schema=False)  # fmt: skip
    for router in ctx.routers:  # as they are: they carry their own prefix (/api/v1)
        app.include_router(router, dependencies=admin_only)
    mount_web_client(app)  # last: every API route wins over it
    return app
