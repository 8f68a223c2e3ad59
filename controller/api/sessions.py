"""Service health and admin sessions: the routes that need no login."""

from __future__ import annotations

import math
from importlib import metadata
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from controller.api.models import LoginRequest, LoginResponse, ServiceHealth
from controller.api.security import SESSION_COOKIE, admin_auth, client_address, session_token
from controller.auth import SESSION_TTL_US, AdminAuth, LoginRefused, LoginThrottled
from fleet.utc import now_us

# From the installed distribution: under pytest `fleet` can resolve to a namespace package.
VERSION = metadata.version("camfleet")
router = APIRouter(tags=["session"])
Auth = Annotated[AdminAuth, Depends(admin_auth)]


@router.get("/health")
def health() -> ServiceHealth:
    return ServiceHealth(ok=True, version=VERSION)


@router.post(
    "/login",
    responses={401: {"description": "wrong username or password"},
               429: {"description": "too many failed logins from this address"}},
)  # fmt: skip
def login(body: LoginRequest, request: Request, response: Response, auth: Auth) -> LoginResponse:
    """A session: the token in the answer (for `Authorization: Bearer`) and as an HttpOnly
    cookie (for the web client)."""
    now = now_us()
    try:
        token = auth.login(
            body.username, body.password.get_secret_value(), client_address(request), now
        )
    except LoginThrottled as exc:
        retry = str(math.ceil(exc.retry_after_s))
        raise HTTPException(429, str(exc), headers={"Retry-After": retry}) from None
    except LoginRefused as exc:
        raise HTTPException(401, str(exc)) from None
    response.set_cookie(
        SESSION_COOKIE, token, max_age=SESSION_TTL_US // 1_000_000, path="/", httponly=True,
        samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip
    return LoginResponse(token=token, expires_us=now + SESSION_TTL_US)


@router.post("/logout", status_code=204)
def logout(
    response: Response, auth: Auth, token: Annotated[str | None, Depends(session_token)]
) -> None:
    """Ends the session the request carries (if any) and clears the cookie."""
    if token:
        auth.logout(token)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
