"""Process logging: text or one JSON object per line, each line carrying the correlation id.

The correlation id is the HTTP request's id (``X-Request-ID``, or one generated), kept in a
context variable: it follows the request into thread-pool calls, and the API passes it on to the
broker with each event so a worker's lines about that event carry it too. Lines name routes and
ids, never personal identifiers.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

request_id: ContextVar[str | None] = ContextVar("thawline_request_id", default=None)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


def accept_request_id(presented: str | None) -> str:
    """The caller's request id if it is a sane token, else a new one (never echo arbitrary bytes)."""
    if presented and _VALID_ID.match(presented):
        return presented
    return secrets.token_hex(16)


class CorrelationFilter(logging.Filter):
    """Stamp each record with the current correlation id (or ``-``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record."""
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure(fmt: Literal["text", "json"], level: int = logging.INFO) -> logging.Handler:
    """Send the process's log lines to stderr in ``fmt``; returns the installed handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_thawline", False)]:
        root.removeHandler(old)
    handler._thawline = True  # type: ignore[attr-defined]  # replaced, not stacked, on a second call
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every URL it calls at INFO: webhook URLs may carry tokens, so only its warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # uvicorn's own loggers propagate to ours (its access log is replaced by thawline.http).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler
