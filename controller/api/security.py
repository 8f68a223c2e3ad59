"""Who may call the API: an admin session, from the `camfleet_session` cookie (the web client)
or `Authorization: Bearer <token>` (scripts). `require_admin` is the dependency that says so."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from controller.auth import AdminAuth

SESSION_COOKIE: Final = "camfleet_session"
_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}

_bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/login")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="set by login")


def admin_auth(request: Request) -> AdminAuth:
    auth: Any = request.app.state.admin_auth
    assert isinstance(auth, AdminAuth)
    return auth


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def session_token(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> str | None:
    """The session token the request carries (the header wins over the cookie), if any."""
    return bearer.credentials if bearer else cookie


def require_admin(
    request: Request,
    auth: Annotated[AdminAuth, Depends(admin_auth)],
    token: Annotated[str | None, Depends(session_token)],
) -> str:
    """The logged-in admin's name (also put on `request.state.user`); 401 without a valid
    session."""
    if not token:
        raise HTTPException(
            401,
            "not logged in: POST /api/v1/login, then send the camfleet_session cookie or "
            "Authorization: Bearer <token>",
            headers=_CHALLENGE,
        )
    user = auth.session_user(token)
    if user is None:
        raise HTTPException(401, "session unknown or expired: log in again", headers=_CHALLENGE)
    request.state.user = user
    return user


AdminUser = Annotated[str, Depends(require_admin)]
