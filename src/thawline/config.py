"""Runtime configuration, read from ``THAWLINE_*`` environment variables (see README, Configuration)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///thawline.db"


class Settings(BaseSettings):
    """Every setting Thawline reads; each maps to ``THAWLINE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="THAWLINE_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, description="SQLAlchemy URL; SQLite file or PostgreSQL."
    )
    data_dir: Path = Field(default=Path("thawline-data"), description="Directory for keys (created 0700).")
    signing_key_path: Path | None = Field(
        default=None, description="Ed25519 log signing key; default <data_dir>/."
    )
    vault_key_path: Path | None = Field(
        default=None, description="Personal-data vault master key; default <data_dir>/."
    )
    log_origin: str = Field(
        default="thawline.local/oplog", description="Checkpoint origin line and signing key name."
    )
    checkpoint_every_entries: int = Field(
        default=1000, ge=1, description="Sign a checkpoint after this many entries."
    )
    checkpoint_every_seconds: float = Field(
        default=60.0, gt=0, description="Sign a checkpoint this often when new."
    )
    retention_days: int = Field(
        default=1826, ge=1826, description="Minimum log retention; 5 years by regulation."
    )
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = Field(
        default="FULL", description="SQLite durability; FULL survives power loss after commit."
    )
    db_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="PostgreSQL connections kept open per process (and as many more at peaks).",
    )
    db_pool_timeout: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Seconds to wait for a free PostgreSQL connection before failing.",
    )
    db_pool_recycle: int = Field(
        default=1800,
        ge=0,
        description="Seconds after which a pooled PostgreSQL connection is replaced (0: never).",
    )
    auto_migrate: bool = Field(default=True, description="Apply database migrations on start.")
    blob_dir: Path | None = Field(
        default=None, description="Uploaded appeal materials; default <data_dir>/blobs."
    )
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest accepted upload.")
    vip_expedites_per_year: int = Field(
        default=3, ge=0, description="Expedited appeals a VIP holder may use per year."
    )
    appeal_requirements: Path | None = Field(
        default=None, description="Appeal requirements matrix (TOML); default: the one shipped with Thawline."
    )

    appeal_idle_days: float = Field(
        default=14, gt=0, description="A draft or needs-more-info appeal lapses after this many idle days."
    )
    probation_hours: float = Field(
        default=24, ge=0, description="After a reviewed release, large transactions are denied this long."
    )
    probation_large_amounts: str = Field(
        default="CNY=50000,USD=7000,EUR=6500,HKD=55000",
        description="Large-amount limits during probation, CUR=amount; other currencies are denied.",
    )
    high_severity_categories: str = Field(
        default="aml,blacklist,linked_risk,regulator",
        description="Freeze categories whose release needs four eyes (comma-separated).",
    )
    face_callback_key_path: Path | None = Field(
        default=None, description="HMAC key the face provider signs callbacks with; default <data_dir>/."
    )
    sms_outbox_path: Path | None = Field(
        default=None, description="Local SMS carrier: messages appended here; default <data_dir>/."
    )
    ip_ranges: Path | None = Field(
        default=None,
        description="TOML with `proxy` and `bad_reputation` CIDR lists; default: the shipped sample ranges.",
    )
    scheduler_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often serve/worker look for due timers."
    )
    list_removal_action: Literal["rereview", "release"] = Field(
        default="rereview",
        description="When a list entry is removed as erroneous, what happens to the freezes it caused.",
    )

    portal_url: str = Field(
        default="http://127.0.0.1:8000/portal",
        description="Base URL of the holder portal; messages link to <portal_url>/accounts/<id>.",
    )
    portal_secure_cookies: bool = Field(
        default=True,
        description="Portal session cookie only over HTTPS (browsers also allow it on localhost).",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server; unset: no email is sent.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP session with STARTTLS.")
    smtp_ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) to trust for STARTTLS (a private relay); default: system.",
    )
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, description="SMTP connection and reply timeout.")
    smtp_username: str | None = Field(default=None, description="SMTP login (with smtp_password).")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(default="Thawline <no-reply@thawline.local>", description="Sender address.")
    sms_provider: Literal["local", "http"] = Field(
        default="local", description="local: a JSON Lines file in data_dir; http: THAWLINE_SMS_HTTP_URL."
    )
    sms_http_url: str | None = Field(default=None, description="The HTTP SMS gateway's URL.")
    sms_http_secret: str | None = Field(
        default=None, description="whsec_… secret the SMS gateway checks our signature with."
    )
    sms_per_hour: int = Field(default=5, ge=1, description="SMS per holder per hour (codes not counted).")
    sms_per_day: int = Field(default=20, ge=1, description="SMS per holder per day (codes not counted).")
    outbox_max_attempts: int = Field(default=8, ge=1, description="Attempts before a message is dead.")
    outbox_backoff_seconds: float = Field(
        default=10.0, gt=0, description="First retry delay; doubles per attempt, with jitter."
    )
    outbox_backoff_cap_seconds: float = Field(default=3600.0, gt=0, description="Longest retry delay.")
    dispatcher_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often serve/worker look for messages to send."
    )
    dispatcher_batch: int = Field(default=500, ge=1, description="Messages claimed per dispatcher round.")
    dispatcher_concurrency: int = Field(default=64, ge=1, description="Deliveries in flight at once.")
    dispatcher_lease_seconds: float = Field(
        default=120.0, gt=0, description="A claimed message is re-sent after this if its sender died."
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, description="Webhook request timeout.")
    webhook_allow_private_urls: bool = Field(
        default=False, description="Allow webhook URLs on loopback, private and link-local addresses."
    )
    webhook_rotation_overlap_hours: float = Field(
        default=24.0, ge=0, description="After a secret rotation, the old secret also signs this long."
    )
    staff_language: Literal["zh-CN", "en"] = Field(
        default="zh-CN", description="Language of reviewers' notices."
    )
    sla_warning_hours: float = Field(
        default=12.0, ge=0, description="Warn staff this long before a first-response deadline."
    )
    console_secure_cookies: bool = Field(
        default=True,
        description="Staff console cookies only over HTTPS (browsers also allow them on localhost).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="serve/worker log lines: text, or one JSON object per line."
    )
    broker_url: str | None = Field(
        default=None, description="nats://… : POST /v1/events publishes to JetStream; workers consume."
    )
    broker_stream: str = Field(
        default="THAWLINE_EVENTS",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="JetStream stream name; also the subject prefix and the lease bucket's name.",
    )
    broker_partitions: int = Field(
        default=16, ge=1, le=1024, description="Partitions (subjects) events are hashed into by account."
    )
    broker_lease_seconds: float = Field(
        default=10.0, ge=1, description="A partition lease lapses this long after its owner's last renewal."
    )
    broker_batch: int = Field(default=500, ge=1, le=10_000, description="Events per partition per round.")

    @cached_property
    def large_amounts(self) -> dict[str, Decimal]:
        """The probation limits by currency."""
        out = {}
        for part in self.probation_large_amounts.split(","):
            if not part.strip():
                continue
            currency, _, amount = part.partition("=")
            try:
                out[currency.strip().upper()] = Decimal(amount.strip())
            except InvalidOperation as exc:
                raise ValueError(f"THAWLINE_PROBATION_LARGE_AMOUNTS: bad amount in {part!r}") from exc
        return out

    @property
    def face_callback_key_file(self) -> Path:
        """Where the face-provider callback key lives."""
        return self.face_callback_key_path or self.data_dir / "face-callback-hmac.key"

    @property
    def sms_outbox_file(self) -> Path:
        """Where the local SMS carrier writes."""
        return self.sms_outbox_path or self.data_dir / "sms-outbox.jsonl"

    @property
    def signing_key_file(self) -> Path:
        """Where the log signing key lives."""
        return self.signing_key_path or self.data_dir / "log-signing-ed25519.pem"

    @property
    def blob_root(self) -> Path:
        """Where uploads are stored."""
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def vault_key_file(self) -> Path:
        """Where the vault master key lives."""
        return self.vault_key_path or self.data_dir / "vault-master.key"
