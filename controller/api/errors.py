"""Registry refusals as HTTP answers ({detail: text}), and request validation errors that name
the fields at fault without echoing what was sent (it may be a password or a camera URL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from controller.registry import (
    CameraExists,
    EnrollmentRefused,
    InvalidCamera,
    RegistryError,
    UnknownAgent,
    UnknownCamera,
)

# Order does not matter: Starlette picks the handler along the exception's MRO.
STATUS_OF: Final[dict[type[Exception], int]] = {
    EnrollmentRefused: 403,
    UnknownAgent: 404,
    UnknownCamera: 404,
    CameraExists: 409,
    InvalidCamera: 422,
    RegistryError: 409,  # the rest: a name in use or reserved
}


def _answer(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    where = (".".join(str(p) for p in e["loc"]) for e in errors)
    text = "; ".join(f"{w}: {e['msg']}" for w, e in zip(where, errors, strict=True))
    return JSONResponse({"detail": f"invalid request: {text}", "errors": errors}, 422)


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, status in STATUS_OF.items():
        app.add_exception_handler(exc_type, _answer(status))
    app.add_exception_handler(RequestValidationError, _invalid_request)
