"""The FastAPI application and its lifespan (including the timed checkpoint signer)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thawline import __version__
from thawline.api import problems
from thawline.api.observability import RequestContext
from thawline.api.routes import (
    accounts,
    appeals,
    console,
    console_account,  # noqa: F401 (its pages join the console router on import)
    console_admin,  # noqa: F401 (its pages join the console router on import)
    console_audit,  # noqa: F401 (its pages join the console router on import)
    console_dashboard,  # noqa: F401 (its pages join the console router on import)
    console_rules,  # noqa: F401 (its pages join the console router on import)
    events,
    health,
    log,
    notifications,
    portal,
    portal_appeals,
    reports,
    review,
    verification,
    webhooks,
)
from thawline.api.routes import lists as list_routes
from thawline.api.routes import metrics as metrics_routes
from thawline.services.apikeys import KeyCache
from thawline.services.authorizer import Authorizer
from thawline.services.broker import BrokerConfig, Publisher
from thawline.services.dispatcher import DispatcherThread
from thawline.services.engine import RiskEngine
from thawline.services.live import LiveFeed
from thawline.services.runtime import Runtime
from thawline.services.scheduler import Scheduler
from thawline.services.unit_of_work import UnitOfWork

logger = logging.getLogger("thawline.checkpoints")


class CheckpointTimer:
    """Signs a checkpoint every ``checkpoint_every_seconds`` when the log has grown."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thawline-checkpoints", daemon=True)

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def tick(self) -> None:
        """Sign a checkpoint now if one is due, and bring the per-account index up to date."""
        every = self.runtime.settings.checkpoint_every_seconds
        with UnitOfWork(self.runtime) as uow:
            if self.runtime.log.checkpoint_due(uow, every) is not None:
                uow.commit()
        with UnitOfWork(self.runtime) as uow:
            if uow.oplog.index_accounts():
                uow.commit()

    def _run(self) -> None:
        interval = min(self.runtime.settings.checkpoint_every_seconds, 5.0)
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:  # keep the timer alive; the next tick retries
                logger.exception("timed checkpoint failed")


# The portal's pages load only their own script and styles; nothing may frame them.
PORTAL_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# The staff console runs no script at all: its own styles and same-origin forms only.
CONSOLE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """ASGI middleware (streams untouched, unlike BaseHTTPMiddleware): nosniff everywhere; on the
    portal and the staff console also a strict CSP, no framing, no referrer, and no caching of pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if path.startswith(("/portal", "/console")):
                    staff_page = path.startswith("/console")
                    headers["Content-Security-Policy"] = CONSOLE_CSP if staff_page else PORTAL_CSP
                    headers["X-Frame-Options"] = "DENY"
                    headers["Referrer-Policy"] = "no-referrer"
                    if not path.startswith("/portal/static"):
                        headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(runtime: Runtime, *, background: bool = True) -> FastAPI:
    """Build the app around ``runtime``; ``background`` starts the checkpoint timer and the scheduler."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        jobs: list[CheckpointTimer | Scheduler | DispatcherThread | LiveFeed] = (
            [CheckpointTimer(runtime), Scheduler(runtime), DispatcherThread(runtime)] if background else []
        )
        jobs.append(app.state.live)  # SSE streams need the feed even without the other jobs
        for job in jobs:
            job.start()
        if app.state.broker is not None:  # broker mode: POST /v1/events publishes to JetStream
            await app.state.broker.start()
        try:
            yield
        finally:
            if app.state.broker is not None:
                await app.state.broker.stop()
            for job in jobs:
                job.stop()
            app.state.authorizer.close()

    app = FastAPI(
        title="Thawline",
        version=__version__,
        description=(
            "Freeze risky payment accounts, explain why, and bring wrongly frozen ones back — "
            "with a tamper-evident operation log. / 冻结风险账户、说明原因、快速解封，全程可验证的操作日志。"
        ),
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.authorizer = Authorizer(runtime)
    app.state.engine = RiskEngine(runtime)
    app.state.keys = KeyCache(runtime)
    app.state.live = LiveFeed(runtime)
    app.state.portal_limiters = portal.limiters()
    broker_url = runtime.settings.broker_url
    app.state.broker = Publisher(BrokerConfig.from_settings(runtime.settings)) if broker_url else None
    problems.install(app)
    app.include_router(health.router)
    app.include_router(log.router)
    app.include_router(accounts.router)
    app.include_router(appeals.router)
    app.include_router(events.router)
    app.include_router(review.router)
    app.include_router(verification.router)
    app.include_router(list_routes.router)
    app.include_router(notifications.router)
    app.include_router(webhooks.router)
    app.include_router(reports.router)
    app.include_router(portal.api)
    app.include_router(portal.router)
    app.include_router(portal_appeals.router)
    app.include_router(console.router)
    app.include_router(metrics_routes.router)
    static = resources.files("thawline.resources").joinpath("web/static")
    app.mount("/portal/static", StaticFiles(directory=str(static)), name="portal-static")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext)  # outermost: request id, metrics and the access line
    return app
