"""The FastAPI application and its lifespan (including the timed checkpoint signer)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from thawline import __version__
from thawline.api import problems
from thawline.api.routes import (
    accounts,
    appeals,
    events,
    health,
    log,
    notifications,
    review,
    verification,
    webhooks,
)
from thawline.api.routes import lists as list_routes
from thawline.services.apikeys import KeyCache
from thawline.services.authorizer import Authorizer
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
        try:
            yield
        finally:
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
    return app
