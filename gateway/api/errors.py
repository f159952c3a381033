"""JSON errors: every error response is ``{"error": <code>, "detail": <text or list>}``.

Operator actions map the alarm engine's exceptions (alerting/README.md): ``AlarmNotFound``
-> 404 ``not_found``, ``InvalidTransition`` -> 409 ``invalid_transition``, ``NotPermitted``
-> 403 ``not_permitted`` (e.g. shelving a gas alarm), ``ValueError`` -> 400 ``bad_request``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerting import AlarmNotFound, InvalidTransition, NotPermitted
from gateway.api.middleware import redact_path

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    410: "gone",
    413: "too_large",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}
_CODES = CODES


class ErrorOut(BaseModel):
    error: str
    detail: Any = None


class ApiError(StarletteHTTPException):
    def __init__(self, status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail=detail, headers=headers)
        self.code = code


def engine_error(exc: Exception) -> ApiError:
    """The HTTP error for an exception of an alarm-engine operator action."""
    if isinstance(exc, AlarmNotFound):
        return ApiError(404, "not_found", str(exc).strip("'\""))
    if isinstance(exc, InvalidTransition):
        return ApiError(409, "invalid_transition", str(exc))
    if isinstance(exc, NotPermitted):
        return ApiError(403, "not_permitted", str(exc))
    if isinstance(exc, ValueError):
        return ApiError(400, "bad_request", str(exc))
    raise exc


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error codes."""
    return {c: {"model": ErrorOut, "description": _CODES.get(c, "error")} for c in codes}


def install(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
        return JSONResponse({"error": code, "detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("API error on %s %s", request.method, redact_path(request.url.path), exc_info=exc)
        return JSONResponse({"error": "internal", "detail": "internal error (logged)"}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
