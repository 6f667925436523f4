"""Correlation ids, request metrics and one log line per request, as plain ASGI middleware.

Every HTTP response carries ``X-Request-ID``: the caller's (when it is a sane token) or a new one.
The id is in every log line written while the request runs. Requests are counted and timed by
route *template* (``/v1/accounts/{account_id}``), so neither the metrics' labels nor the log lines
hold an account id or other identifier from the path.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thawline.services import logs
from thawline.services.metrics import HTTP_LATENCY, HTTP_REQUESTS

access = logging.getLogger("thawline.http")
HEADER = "X-Request-ID"


def route_template(scope: Scope) -> str:
    """The matched route's path template, the mount for static files, or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return str(path) if path else "unmatched"


class RequestContext:
    """Assign the request id, time the request, count it and log it (streams pass through unbuffered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                presented = value.decode("latin-1")
                break
        rid = logs.accept_request_id(presented)
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            access.info(
                "%s %s %d %.1f ms",
                method,
                route,
                status,
                elapsed * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
            logs.request_id.reset(token)
