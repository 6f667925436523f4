"""Table definitions. Migrations in ``thawline/migrations`` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    false,
)

from thawline.adapters.db.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The operation log. Append-only: triggers reject UPDATE and DELETE on the three log tables.
# One bundle row per committed unit of work: its entries' exact RFC 8785 bytes joined by "\n"
# (canonical JSON never contains a raw newline) and each entry's 32-byte chain value. One row
# and no secondary index per commit is what lets batched appends run at disk speed.
oplog_bundle = Table(
    "oplog_bundle",
    metadata,
    Column("first_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("n_entries", Integer, nullable=False),
    Column("ts", UTCDateTime, nullable=False),  # every entry of a bundle has this time
    Column("data", LargeBinary, nullable=False),  # the entries themselves, b"\n"-joined
    Column("chains", LargeBinary, nullable=False),  # SHA-256(previous chain || leaf hash), 32 bytes each
    Column("accounts", Text, nullable=False),  # subject account id per entry ("" for none), "\n"-joined
)

# Derived per-account index (not evidence): filled after commit by the indexer; readers cover the
# not-yet-indexed tail from oplog_bundle.accounts, so a query is always complete.
oplog_account = Table(
    "oplog_account",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
)

# Hashes of complete, aligned Merkle subtrees at levels 8, 16, 24, ... (256, 65536, ... leaves).
oplog_node = Table(
    "oplog_node",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

oplog_checkpoint = Table(
    "oplog_checkpoint",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),  # C2SP signed note, verbatim
    Column("created_at", UTCDateTime, nullable=False),
)

# The log head: one row, the append lock on PostgreSQL, and the running Merkle frontier.
# Derived state: `thawline log verify` recomputes it from the entries.
oplog_head = Table(
    "oplog_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("chain", LargeBinary(32), nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("last_ts", UTCDateTime),
    Column("checkpoint_size", BigInteger, nullable=False),
    Column("checkpoint_at", UTCDateTime),
    Column("indexed_size", BigInteger, nullable=False),  # oplog_account covers entries below this
)

legal_hold = Table(
    "legal_hold",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(64)),  # NULL: the whole log
    Column("reason", Text, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime),
)

api_key = Table(
    "api_key",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

# The personal-data vault: one data key per data subject, wrapped by the master key.
vault_subject = Table(
    "vault_subject",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("wrapped_key", LargeBinary),  # NULL once erased (crypto-shredding)
    Column("created_at", UTCDateTime, nullable=False),
    Column("erased_at", UTCDateTime),
)

vault_value = Table(
    "vault_value",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("subject_id", String(40), ForeignKey("vault_subject.id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("blind_index", LargeBinary(32), index=True),  # HMAC for matching; NULL once erased
    Column("nonce", LargeBinary(12), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

APPEND_ONLY_TABLES = ("oplog_bundle", "oplog_node", "oplog_checkpoint")

# Accounts registered by integrators. Holder identifiers live in the vault; only vault ids here.
account = Table(
    "account",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("integrator", String(64), nullable=False),
    Column("holder_subject_id", String(40), ForeignKey("vault_subject.id"), nullable=False),
    Column("identity_refs", Text, nullable=False),  # JSON: kind -> vault value id(s)
    Column("identity_digest", LargeBinary(32), nullable=False),  # keyed hash of the registration, for replays
    Column("kyc_level", String(16), nullable=False),
    Column("vip_tier", SmallInteger, nullable=False),
    Column("language", String(8), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("probation_until", UTCDateTime),  # the gateway's hot path reads it with the account
)

freeze = Table(
    "freeze",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("limit_amount", Numeric(24, 6)),
    Column("currency", String(3)),
    Column("channel", String(64)),
    Column("counterparty", String(128)),
    Column("category", String(24), nullable=False),
    Column("reason_codes", Text, nullable=False),  # space-separated
    Column("source", String(24), nullable=False),
    Column("source_ref", String(128), nullable=False),
    Column("legal_basis", Text, nullable=False),
    Column("internal_reason", Text, nullable=False),
    Column("holder_reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),  # space-separated kind:id references
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("review_by", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("ended_at", UTCDateTime),
    Column("ended_by", String(128)),
    Column("end_reason", Text),
    Column("idempotency_key", String(128), unique=True),
    Column("rereview_flagged_at", UTCDateTime),  # the re-review date passed; waiting for a reviewer
    Index("ix_freeze_account_status", "account_id", "status"),
)

appeal = Table(
    "appeal",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("freeze_id", String(40), ForeignKey("freeze.id"), nullable=False, index=True),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False, index=True),
    Column("round", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("explanation", Text, nullable=False),
    Column("contact_channel", String(16), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("submitted_at", UTCDateTime),
    Column("first_response_due", UTCDateTime),
    Column("expedited", Boolean, nullable=False, server_default=false()),
    Column("assignee", String(128)),  # the reviewer holding the case
    Column("claimed_at", UTCDateTime),
    Column("first_responded_at", UTCDateTime),  # the first human action after (re)submission
    Column("escalated_at", UTCDateTime),  # the first-response deadline passed unanswered
    Column("first_approver", String(128)),  # four eyes: the first of two approvals
    Column("decided_at", UTCDateTime),
    Column("idle_expires_at", UTCDateTime),  # a draft or needs-more-info appeal lapses then
    Column("version", Integer, nullable=False, server_default="0"),  # optimistic lock: +1 per change
    Column("sla_warned_at", UTCDateTime),  # staff were warned the first-response deadline is near
)

appeal_material = Table(
    "appeal_material",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("appeal_id", String(40), ForeignKey("appeal.id"), nullable=False, index=True),
    Column("kind", String(24), nullable=False),
    Column("sha256", String(64), nullable=False),  # the upload, content-addressed in the blob store
    Column("media_type", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("transaction_ids", Text, nullable=False),  # space-separated, for vouchers
    Column("created_at", UTCDateTime, nullable=False),
    # What the holder declares a voucher shows; the machine pre-review compares it with the freeze.
    Column("declared_order_ref", String(128)),
    Column("declared_amount", Numeric(24, 6)),
    Column("declared_at", UTCDateTime),
)

# VIP expedite quota: one row per account and calendar year, spent by a conditional UPDATE.
vip_expedite = Table(
    "vip_expedite",
    metadata,
    Column("account_id", String(64), ForeignKey("account.id"), primary_key=True),
    Column("year", SmallInteger, primary_key=True, autoincrement=False),
    Column("used", SmallInteger, nullable=False),
)

# What the freeze's source knew about each flagged transaction; the machine pre-review checks
# the holder's vouchers against it (the risk engine fills it from its transaction log).
freeze_transaction = Table(
    "freeze_transaction",
    metadata,
    Column("freeze_id", String(40), ForeignKey("freeze.id"), primary_key=True),
    Column("transaction_id", String(128), primary_key=True),
    Column("amount", Numeric(24, 6)),
    Column("currency", String(3)),
    Column("occurred_at", UTCDateTime),
    Column("order_ref", String(128)),
)

# The dual review: the machine pre-review first, then people. One row per recorded opinion.
appeal_review = Table(
    "appeal_review",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("appeal_id", String(40), ForeignKey("appeal.id"), nullable=False, index=True),
    Column("reviewer", String(128), nullable=False),  # "machine:pre_review" or "reviewer:<key id>"
    Column("kind", String(8), nullable=False),  # machine | human
    Column("decision", String(24), nullable=False),
    Column("reason_codes", Text, nullable=False),  # space-separated
    Column("note", Text, nullable=False),
    Column("confidence", Numeric(4, 3)),  # machine only
    Column("findings", Text, nullable=False),  # JSON list of the checks and their outcomes
    Column("agrees_with_machine", Boolean),  # human only; NULL when there was no machine opinion
    Column("created_at", UTCDateTime, nullable=False),
)

# Conflicts of interest: a reviewer never reviews an account they are linked to.
reviewer_conflict = Table(
    "reviewer_conflict",
    metadata,
    Column("reviewer", String(128), primary_key=True),
    Column("account_id", String(64), ForeignKey("account.id"), primary_key=True),
    Column("note", Text, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Second verification before an approved appeal releases its freeze: SMS code and face match.
release_verification = Table(
    "release_verification",
    metadata,
    Column("appeal_id", String(40), ForeignKey("appeal.id"), primary_key=True),
    Column("freeze_id", String(40), ForeignKey("freeze.id"), nullable=False),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False),
    Column("required", Text, nullable=False),  # space-separated steps: sms_code face
    Column("status", String(16), nullable=False),  # pending | completed
    Column("otp_hash", LargeBinary(32)),  # keyed hash of the current code; never the code
    Column("otp_expires_at", UTCDateTime),
    Column("otp_attempts", SmallInteger, nullable=False),
    Column("otp_sent_at", UTCDateTime),
    Column("otp_sends", SmallInteger, nullable=False),  # in the current throttle window
    Column("otp_window_start", UTCDateTime),
    Column("sms_verified_at", UTCDateTime),
    Column("face_session", String(64), unique=True),
    Column("face_started_at", UTCDateTime),
    Column("face_failures", SmallInteger, nullable=False),
    Column("face_failed_session", String(64)),  # the last failed session, so a replayed result is harmless
    Column("face_verified_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
)

# Probation after a release: large transactions are denied until ends_at.
probation = Table(
    "probation",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False, index=True),
    Column("freeze_id", String(40), ForeignKey("freeze.id"), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False, index=True),
    Column("ended_at", UTCDateTime),  # set by the scheduler when it records the end
)

# What the scheduler scans for: each timer is a stored deadline with an index.
Index("ix_appeal_first_response_due", appeal.c.first_response_due)
Index("ix_appeal_idle_expires_at", appeal.c.idle_expires_at)
Index("ix_freeze_review_by", freeze.c.review_by)
Index("ix_freeze_expires_at", freeze.c.expires_at)
# The review queue (review.queue: open statuses, by first-response deadline), read by the console's
# queue page, GET /v1/review/queue and `thawline review queue`.
Index("ix_appeal_status_due", appeal.c.status, appeal.c.first_response_due)

# Events integrators send (the login and transaction logs). Personal values are stored as keyed hashes.
# On PostgreSQL (migration 0013) the table is partitioned by month of occurred_at (event_y2026m11, …,
# event_default), its primary key is (id, occurred_at), and event_key below keeps ids unique.
event = Table(
    "event",
    metadata,
    Column("id", String(128), primary_key=True),  # the integrator's event id: a replay is a no-op
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False),
    Column("type", String(16), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("payload", Text, nullable=False),  # the validated event as JSON, identifiers hashed
    Column("outcome", String(16), nullable=False),  # allow | review | restrict | freeze
    Index("ix_event_account_occurred", "account_id", "occurred_at"),
)

# PostgreSQL only (migration 0013): one row per stored event id, written with the event. A partitioned
# table cannot have a unique index on id alone, so this primary key is what makes a replayed id a
# replay across months and concurrent writers; event.id and risk_decision.event_id refer to it there.
event_key = Table(
    "event_key",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),  # names the month partition holding the event
)

# The engine's decisions that were not a plain allow: which rules fired, on what values, what was done.
risk_decision = Table(
    "risk_decision",
    metadata,
    Column("id", String(40), primary_key=True),
    # Refers to event.id on SQLite, to event_key.id on PostgreSQL (migration 0013).
    Column("event_id", String(128), ForeignKey("event.id"), nullable=False, index=True),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False, index=True),
    Column("rule_id", String(64), nullable=False),
    Column("ruleset_version", Integer, nullable=False),
    Column("category", String(24), nullable=False),
    Column("action", String(24), nullable=False),  # what the rule asked for
    Column("applied", String(24), nullable=False),  # what happened: freeze, restrict, review, shadow, …
    Column("values", Text, nullable=False),  # JSON: the feature values the rule read
    Column("freeze_id", String(40)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_risk_decision_rule_created", "rule_id", "created_at"),
    # The console's rules page: hits per rule over the last seven days (rulesets.rule_stats).
    Index("ix_risk_decision_created", "created_at"),
)

# Ruleset versions; exactly one is active.
ruleset = Table(
    "ruleset",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("sha256", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Per-account suppression of one rule, with a reason and an end.
rule_suppression = Table(
    "rule_suppression",
    metadata,
    Column("account_id", String(64), ForeignKey("account.id"), primary_key=True),
    Column("rule_id", String(64), primary_key=True),
    Column("until", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# ---------------------------------------------------------------------------------------------------
# Block- and allow-lists (issue 4). Every change to either list (an import, an added or a removed
# entry) is a new version. Identifiers are kept only as the vault's blind index of the normalised
# value, so they match vault_value.blind_index directly; names are kept normalised because fuzzy
# matching needs the text (and are cleared when the entry is removed).
list_version = Table(
    "list_version",
    metadata,
    Column("version", Integer, primary_key=True),  # increases with every change to either list
    Column("list_type", String(8), nullable=False),  # block | allow
    Column("change", String(8), nullable=False),  # import | add | remove
    Column("source_name", String(256), nullable=False),  # the imported file's name, or how it was made
    Column("entries", Integer, nullable=False),  # entries this version added (or removed)
    Column("duplicates", Integer, nullable=False),  # valid lines already on the list
    Column("rejected", Integer, nullable=False),  # lines refused as invalid
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

list_entry = Table(
    "list_entry",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("list_type", String(8), nullable=False),  # block | allow
    Column("kind", String(16), nullable=False),  # resident_id | phone | bank_card | device | ip | name
    Column("value_hash", LargeBinary(32), nullable=False),  # blind_index(keys, kind, normalised value)
    Column("name", Text),  # kind "name" only: the normalised name; NULL for other kinds and once removed
    Column("reason", Text, nullable=False),
    Column("version", Integer, ForeignKey("list_version.version"), nullable=False),
    Column("added_by", String(128), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("removed_version", Integer, ForeignKey("list_version.version")),
    Column("removed_at", UTCDateTime),
    Column("removed_by", String(128)),
    Column("removal_reason", Text),
    Column("erroneous", Boolean),  # removed because the entry was wrong (bad third-party data)
)
# One active entry per value and list (also what loading the index reads); removed entries stay
# for the audit trail.
Index(
    "uq_list_entry_active",
    list_entry.c.list_type,
    list_entry.c.kind,
    list_entry.c.value_hash,
    unique=True,
    sqlite_where=list_entry.c.removed_at.is_(None),
    postgresql_where=list_entry.c.removed_at.is_(None),
)

# Linked accounts: every key an account was seen with (device, IP, card reference, counterparty).
# Two accounts sharing a key are linked; the graph is queried, never stored as edges.
account_key = Table(
    "account_key",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("account_id", String(64), ForeignKey("account.id"), primary_key=True),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Index("ix_account_key_account", "account_id"),
)

# Broker mode: which worker owns a partition of the event stream, and since which epoch. A worker
# raises the epoch when it takes a partition, and every round it commits first checks (FOR SHARE on
# PostgreSQL) that the epochs it holds are still current: a worker whose lease lapsed while it was
# paused can never commit after its successor took over (the fence behind the JetStream leases).
partition_owner = Table(
    "partition_owner",
    metadata,
    Column("stream", String(64), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(128), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("taken_at", UTCDateTime, nullable=False),
)

# Re-screening runs: every account re-evaluated against the current lists and ruleset; resumable.
rescreen_job = Table(
    "rescreen_job",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("ruleset_version", Integer, nullable=False),
    Column("list_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # running | finished
    Column("cursor", String(64), nullable=False),  # the last account id done ("" before the first)
    Column("total", Integer, nullable=False),
    Column("processed", Integer, nullable=False),
    Column("flagged", Integer, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)

# Notifications (issue #5). Outgoing messages are written in the transaction of the change that
# causes them (the transactional outbox) and sent by the dispatcher; `source_seq` names that change's
# log entry. A lease (lease_until) keeps two dispatchers from sending the same message at once.
notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", String(40), primary_key=True),  # also the idempotency key receivers see
    Column("channel", String(16), nullable=False),  # email | sms | webhook
    Column("account_id", String(64), index=True),
    Column("template", String(40)),  # email and SMS
    Column("lang", String(8)),
    Column("subscription_id", String(40), index=True),  # webhook
    Column("event_type", String(48)),  # webhook
    Column("payload", Text, nullable=False),  # JSON: template variables, or the webhook body
    Column("sealed", LargeBinary),  # AES-GCM secret variables (a one-time code), never plain
    Column("mandatory", Boolean, nullable=False),
    Column("source_seq", BigInteger),
    Column("status", String(16), nullable=False),  # pending | delivered | dead | suppressed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_status", Integer),  # HTTP status or SMTP reply code of the last attempt
    Column("receipt", String(128)),  # the provider's message id on success
    Index("ix_notification_outbox_due", "status", "next_attempt_at"),
)

# The holder's in-site messages (站内信): written in the same transaction as the change, rendered.
inbox_message = Table(
    "inbox_message",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False),
    Column("template", String(40), nullable=False),
    Column("lang", String(8), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("mandatory", Boolean, nullable=False),
    Column("source_seq", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("read_at", UTCDateTime),
    Index("ix_inbox_message_account", "account_id", "created_at"),
    Index("ix_inbox_message_source_seq", "source_seq"),
)

# Reviewers' and leads' notices: a named reviewer ("reviewer:rv_1") or a role ("role:reviewers").
staff_notice = Table(
    "staff_notice",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("recipient", String(128), nullable=False, index=True),
    Column("template", String(40), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("appeal_id", String(40)),
    Column("account_id", String(64)),
    Column("source_seq", BigInteger, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("read_at", UTCDateTime),
)

# Integrators' webhook subscriptions; secrets sealed with a key derived from the vault master key.
webhook_subscription = Table(
    "webhook_subscription",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("integrator", String(64), nullable=False, index=True),  # the API key id that owns it
    Column("url", Text, nullable=False),
    Column("event_types", Text, nullable=False),  # space-separated; "appeal.*" and "*" allowed
    Column("description", Text, nullable=False),
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("previous_sealed", LargeBinary),  # the rotated-out secret, still signed with until …
    Column("previous_until", UTCDateTime),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime),
)

# What a holder chose: opt-outs of non-mandatory email/SMS, SMS quiet hours in their time zone.
notification_preference = Table(
    "notification_preference",
    metadata,
    Column("account_id", String(64), ForeignKey("account.id"), primary_key=True),
    Column("email_opt_out", Boolean, nullable=False),
    Column("sms_opt_out", Boolean, nullable=False),
    Column("quiet_start", SmallInteger),  # minutes after local midnight
    Column("quiet_end", SmallInteger),
    Column("time_zone", String(64), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The holder portal (issue #6): one-time entry links issued through the integrator's API, and the
# sessions they open. Only SHA-256 hashes of the tokens are stored.
portal_link = Table(
    "portal_link",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("issued_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
)

portal_session = Table(
    "portal_session",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(64), ForeignKey("account.id"), nullable=False),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
)

# Staff of the console (issue #6): argon2id password hashes, roles (space-separated), the sign-in
# lockout, an optional TOTP secret sealed with the vault's secrets key, and the sessions they open.
# Only SHA-256 hashes of session tokens are stored.
staff_user = Table(
    "staff_user",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("roles", String(200), nullable=False),
    Column("totp_secret", LargeBinary),  # sealed; NULL: no second factor enrolled
    Column("totp_last_step", BigInteger),  # the newest time step used, so a code works once
    Column("failed_count", Integer, nullable=False),
    Column("locked_until", UTCDateTime),
    Column("disabled_at", UTCDateTime),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_sign_in_at", UTCDateTime),
)

staff_session = Table(
    "staff_session",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), ForeignKey("staff_user.id"), nullable=False, index=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
)
