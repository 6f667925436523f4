"""Errors as RFC 9457 ``application/problem+json``, naming the offending field."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from thawline.domain.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ThawlineError,
)
from thawline.i18n import pick_language, t
from thawline.services.appeals import IncompleteAppealError

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://thawline.dev/problems/"
log = logging.getLogger("thawline.api")

_STATUS_KEYS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "validation",
    500: "internal",
    503: "unavailable",
}


class AuthError(ThawlineError):
    """No valid credentials were presented."""


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build a problem response in the caller's language."""
    key = _STATUS_KEYS.get(status, "bad_request")
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or key.replace("_", "-")),
        "title": t(key, pick_language(request.headers.get("accept-language"))),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers) if headers else None
    )


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "items", 3, "amount") -> "items[3].amount"; the request part is implied.
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(request, 422, detail, slug="validation", errors=errors)

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        lang = pick_language(request.headers.get("accept-language"))
        if isinstance(exc, IncompleteAppealError):
            missing = [
                {
                    "field": "materials",
                    "code": m.code,
                    "kind": m.kind,
                    "transaction_ids": list(m.transaction_ids),
                    "message": m.message(lang),
                }
                for m in exc.missing
            ]
            return problem(request, 422, str(exc), slug="incomplete-appeal", errors=missing)
        errors = [{"field": exc.field, "message": str(exc)}] if exc.field else None
        return problem(request, 422, str(exc), slug="validation", errors=errors)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return problem(request, 404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return problem(request, 409, str(exc))

    @app.exception_handler(PermissionDeniedError)
    async def _forbidden(request: Request, exc: PermissionDeniedError) -> JSONResponse:
        return problem(request, 403, str(exc))

    @app.exception_handler(AuthError)
    async def _unauthorized(request: Request, exc: AuthError) -> JSONResponse:
        return problem(request, 401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="thawline"'})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
        log.exception("unhandled error on %s", request.url.path)
        return problem(request, 500, "an unexpected error occurred; it has been logged")
