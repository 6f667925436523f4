"""Real local receivers for delivery tests: an HTTP endpoint (webhooks, SMS gateway) and an SMTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """A threaded HTTP server answering POSTs with ``status`` (a callable may decide per request)."""

    status: int | Callable[[Received], int] = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                item = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                with outer.lock:
                    outer.received.append(item)
                code = outer.status(item) if callable(outer.status) else outer.status
                reply = b'{"id": "gw-%d"}' % len(outer.received)
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where to post."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self) -> list[str]:
        """``webhook-id`` of every request, in arrival order."""
        with self.lock:
            return [r.headers.get("webhook-id", "") for r in self.received]

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Sink:
    def __init__(self, smtp: SmtpServer) -> None:
        self.smtp = smtp

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.smtp.reply is not None:
            return self.smtp.reply
        data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.smtp.messages.append(message_from_bytes(data, policy=policy.default))
        return "250 OK"


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a free port; set ``reply`` to e.g. '451 try later' to fail."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.reply: str | None = None
        with socket.socket() as s:  # aiosmtpd checks readiness by connecting, so it needs a real port
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.controller = Controller(_Sink(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.controller.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``condition`` holds or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")
