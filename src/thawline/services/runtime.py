"""The runtime: everything a command needs (engine, clock, keys, the log writer), built once."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine

from thawline.adapters.blobs import BlobStore
from thawline.adapters.db.engine import create_db_engine
from thawline.adapters.db.migrate import upgrade
from thawline.adapters.face import FaceProvider, LocalFaceProvider
from thawline.adapters.keys import load_or_create_secret, load_or_create_signing_key
from thawline.adapters.sms import LocalSmsOutbox, SmsSender
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
        self.sms = LocalSmsOutbox(self.settings.sms_outbox_file)
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


def build_runtime(settings: Settings | None = None, *, clock: Clock | None = None) -> Runtime:
    """Build the runtime from settings: open the database, migrate, load or create keys."""
    settings = settings or Settings()
    engine = create_db_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
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
