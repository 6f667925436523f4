"""The runtime: everything a command needs (engine, clock, keys, the log writer), built once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine

from thawline.adapters.blobs import BlobStore
from thawline.adapters.db.engine import create_db_engine
from thawline.adapters.db.migrate import upgrade
from thawline.adapters.email import SmtpConfig, SmtpSender
from thawline.adapters.face import FaceProvider, LocalFaceProvider
from thawline.adapters.keys import load_or_create_secret, load_or_create_signing_key
from thawline.adapters.sms import HttpSmsSender, LocalSmsOutbox, SmsSender
from thawline.config import Settings
from thawline.domain.appeals import RequirementsMatrix
from thawline.domain.clock import Clock, SystemClock
from thawline.domain.freezes import ReasonCategory
from thawline.oplog.note import Signer, Verifier
from thawline.services.oplog import LogWriter


@dataclass
class Runtime:
    """Long-lived collaborators shared by all units of work."""

    settings: Settings
    engine: Engine
    clock: Clock
    signer: Signer
    vault_master_key: bytes
    log: LogWriter = field(init=False)
    blobs: BlobStore = field(init=False)
    appeal_requirements: RequirementsMatrix = field(init=False)
    high_severity: frozenset[ReasonCategory] = field(init=False)
    sms: SmsSender = field(init=False)
    face: FaceProvider = field(init=False)
    face_callback_key: bytes = field(init=False)
    email: SmtpSender | None = field(init=False)
    # Set after a commit that queued messages: the in-process dispatcher wakes at once.
    outbox_wake: threading.Event = field(init=False, default_factory=threading.Event)
    # Called with the appended range after every commit (the live feed wakes its SSE streams).
    commit_listeners: list[Callable[[range], None]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.log = LogWriter(
            clock=self.clock,
            signer=self.signer,
            origin=self.settings.log_origin,
            checkpoint_every=self.settings.checkpoint_every_entries,
        )
        self.blobs = BlobStore(self.settings.blob_root, max_bytes=self.settings.max_upload_bytes)
        self.appeal_requirements = load_requirements(self.settings.appeal_requirements)
        try:
            self.high_severity = frozenset(
                ReasonCategory(c.strip())
                for c in self.settings.high_severity_categories.split(",")
                if c.strip()
            )
        except ValueError as exc:
            raise ValueError(f"THAWLINE_HIGH_SEVERITY_CATEGORIES: {exc}") from exc
        # Local providers by default; a deployment swaps in its carrier and face provider here.
        self.sms = build_sms(self.settings)
        self.email = build_email(self.settings)
        self.face = LocalFaceProvider()
        self.face_callback_key = load_or_create_secret(self.settings.face_callback_key_file)

    @property
    def verifier(self) -> Verifier:
        """The verifier for this log's checkpoints."""
        return self.signer.verifier()

    def public_key_pem(self) -> bytes:
        """The signing key's public half as PEM (SubjectPublicKeyInfo)."""
        key = load_or_create_signing_key(self.settings.signing_key_file)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def committed(self, appended: range, queued: int) -> None:
        """After COMMIT: wake the dispatcher if messages were queued, and every live-feed listener."""
        if queued:
            self.outbox_wake.set()
        for listener in list(self.commit_listeners):
            listener(appended)

    def deliver_now(self, ids: list[str]) -> None:
        """Send these outbox messages right away (a code the holder waits for); the dispatcher retries."""
        from thawline.services.dispatcher import Dispatcher  # noqa: PLC0415 - built on the runtime

        Dispatcher(self).deliver_now(ids)

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()


def load_requirements(path: Path | None) -> RequirementsMatrix:
    """The appeal requirements matrix from ``path``, or the one shipped with Thawline."""
    if path is not None:
        text = path.read_text(encoding="utf-8")
    else:
        text = (
            resources.files("thawline.resources")
            .joinpath("appeal_requirements.toml")
            .read_text(encoding="utf-8")
        )
    return RequirementsMatrix.from_toml(text)


def build_sms(settings: Settings) -> SmsSender:
    """The SMS carrier the settings name."""
    if settings.sms_provider == "http":
        if not settings.sms_http_url or not settings.sms_http_secret:
            raise ValueError(
                "THAWLINE_SMS_PROVIDER=http needs THAWLINE_SMS_HTTP_URL and THAWLINE_SMS_HTTP_SECRET"
            )
        return HttpSmsSender(settings.sms_http_url, settings.sms_http_secret)
    return LocalSmsOutbox(settings.sms_outbox_file)


def build_email(settings: Settings) -> SmtpSender | None:
    """The SMTP sender, or None when no SMTP server is configured."""
    if settings.smtp_host is None:
        return None
    return SmtpSender(
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            ca_file=None if settings.smtp_ca_file is None else str(settings.smtp_ca_file),
            timeout=settings.smtp_timeout_seconds,
        )
    )


def build_runtime(settings: Settings | None = None, *, clock: Clock | None = None) -> Runtime:
    """Build the runtime from settings: open the database, migrate, load or create keys."""
    settings = settings or Settings()
    engine = create_db_engine(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
    )
    if settings.auto_migrate:
        upgrade(engine)
    key = load_or_create_signing_key(settings.signing_key_file)
    return Runtime(
        settings=settings,
        engine=engine,
        clock=clock or SystemClock(),
        signer=Signer(settings.log_origin, key),
        vault_master_key=load_or_create_secret(settings.vault_key_file),
    )
