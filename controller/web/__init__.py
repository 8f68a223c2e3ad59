"""The web client: static files (vanilla ES modules, no build step) served at / by the controller.

They hold no data and need no login: the page asks the API under /api/v1, which does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).parent / "static"
_API: Final = "/api"


class _WebClient(Mount):
    """A mount at / that leaves /api/... alone: the router then answers an unknown API path
    with its JSON 404, and a known one called with the wrong method with 405, rather than
    this mount claiming every path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope.get("path", "")
        path = path.removeprefix(scope.get("root_path", ""))
        if path == _API or path.startswith(_API + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def mount_web_client(app: Starlette) -> None:
    """Serve the client at / (index.html there, assets by path); add it after every route."""
    app.router.routes.append(
        _WebClient("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="web")
    )
