"""The real-time risk engine: events in, features and rules, decisions, freezes — in one transaction.

``RiskEngine.ingest`` takes a batch of validated events and, in one unit of work, stores the new
ones (a replayed event id is skipped), folds each into its account's features in time order,
evaluates the active ruleset, records every non-allow decision with the feature values the rule
read, and freezes or restricts through the freeze lifecycle (rule id and version, evidence events,
flagged transactions) — unless the rule is in shadow mode, suppressed for the account, or its
circuit breaker has tripped (then the hit goes to review and an alert is logged). The batch gets
one ``events.ingested`` log entry whose digest binds the stored events; each freeze its own entry.

Feature state lives in memory per account (bounded, least recently used first out) and is rebuilt
from the account's stored events when missing, e.g. after a restart. One engine owns its accounts'
state; running several engines over the same accounts needs the per-account routing of #8.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from thawline.adapters.db.bulk import insert_rows
from thawline.adapters.db.event_store import insert_events, stored_payloads
from thawline.adapters.db.schema import account, event, risk_decision, rule_suppression, ruleset
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.domain.events import Event
from thawline.domain.features import AccountState, IpRanges, Thresholds
from thawline.domain.freezes import FreezeStatus, Restriction, SourceKind
from thawline.domain.review import FlaggedTransaction
from thawline.domain.rules import DIAGNOSIS, Action, Hit, Ruleset
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, LogRecord, Subject
from thawline.services import freezes, links, lists, vault
from thawline.services.gc_pause import gc_paused
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
REBUILD_WINDOW = timedelta(days=30)
MAX_STATES = 200_000
ENGINE = Actor(ActorKind.RULE, "engine")


def default_ruleset_text() -> str:
    """The ruleset shipped with Thawline."""
    return resources.files("thawline.resources").joinpath("rules.yaml").read_text(encoding="utf-8")


def default_ip_ranges(path: Path | None = None) -> IpRanges:
    """The proxy/VPN/Tor and bad-reputation CIDR lists (``THAWLINE_IP_RANGES``, or the shipped ones)."""
    if path is not None:
        text = path.read_text("utf-8")
    else:
        text = resources.files("thawline.resources").joinpath("ip_ranges.toml").read_text("utf-8")
    doc = tomllib.loads(text)
    try:
        return IpRanges.parse(doc.get("proxy", []), doc.get("bad_reputation", []))
    except ValueError as exc:
        raise ValueError(f"IP ranges: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the engine decided about one event."""

    event_id: str
    account_id: str
    outcome: str  # allow | review | restrict | freeze
    hits: tuple[Hit, ...] = ()
    freeze_id: str | None = None

    def diagnosis(self, lang: str = "en") -> list[dict[str, Any]]:
        """The hits, strongest first, grouped under the source document's diagnosis categories."""
        ranked = sorted(self.hits, key=lambda h: (-int(h.rule.action), h.rule.id))
        return [
            {
                "category": h.rule.category.value,
                "diagnosis": DIAGNOSIS[h.rule.category][1 if lang == "zh-CN" else 0],
                "rule": h.rule.id,
                "name": h.rule.name.get(lang, h.rule.name["en"]),
                "action": h.rule.action.name.lower(),
                "shadow": h.rule.shadow,
                "condition": h.rule.when,
                "values": jsonable(h.values),
                "evidence": [f"event:{self.event_id}"],
            }
            for h in ranked
        ]


@dataclass(slots=True)
class IngestResult:
    """Which events were stored (with their outcome), which were replays, which were refused."""

    accepted: list[Outcome] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str, str, str]] = field(default_factory=list)  # index, id, field, message
    ruleset_version: int = 0


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Feature values for the log: floats as shortest decimal strings (the log refuses floats)."""
    return {k: (repr(round(v, 6)) if isinstance(v, float) else v) for k, v in values.items()}


def _stored_payload(e: Any, index_key: bytes) -> bytes:
    data = e.model_dump(mode="json")
    if data.get("type") == "profile_change" and data.get("value"):
        # A new phone number or card: keep only its keyed hash, comparable with the vault's.
        digest = vault.blind_index(vault.VaultKeys(b"", index_key, b"", b""), data["field"], data["value"])
        data["value"] = "hmac:" + digest.hex()
    return orjson.dumps(data)


class RiskEngine:
    """Per-process engine: the active ruleset, IP ranges, and per-account feature state."""

    def __init__(self, runtime: Runtime, *, ip_ranges: IpRanges | None = None) -> None:
        self.runtime = runtime
        self.ip_ranges = ip_ranges or default_ip_ranges(runtime.settings.ip_ranges)
        self.thresholds = Thresholds()
        self._states: OrderedDict[str, AccountState] = OrderedDict()
        self.lock = threading.RLock()  # one batch (or ruleset bootstrap) at a time in this process
        self._ruleset: tuple[int, Ruleset] | None = None
        self._index: lists.ListIndex | None = None
        self._account_matches: dict[str, list[lists.ListMatch]] = {}
        self._recorded_keys: dict[tuple[str, str, str], datetime] = {}

    # -- rulesets ---------------------------------------------------------------------------------

    def active_ruleset(self, uow: UnitOfWork) -> tuple[int, Ruleset]:
        """The active ruleset version (the shipped default becomes version 1 on first use)."""
        row = uow.conn.execute(
            select(ruleset.c.version, ruleset.c.sha256, ruleset.c.source).where(ruleset.c.active.is_(True))
        ).first()
        if row is None:
            version = load_ruleset(uow, default_ruleset_text(), ENGINE, note="the shipped default")
            row = uow.conn.execute(
                select(ruleset.c.version, ruleset.c.sha256, ruleset.c.source).where(
                    ruleset.c.version == version
                )
            ).one()
        if self._ruleset is None or self._ruleset[0] != row.version:
            self._ruleset = (row.version, Ruleset.from_yaml(row.source))
        return self._ruleset

    # -- lists ------------------------------------------------------------------------------------

    def list_index(self, uow: UnitOfWork) -> lists.ListIndex:
        """The block- and allow-lists in memory, reloaded when a new list version appears."""
        version = lists.current_version(uow)
        if self._index is None or self._index.version != version:
            self._index = lists.load_index(uow)
            self._account_matches.clear()
        return self._index

    def _blocked(self, uow: UnitOfWork, index: lists.ListIndex, e: Any) -> list[str]:
        """The block-list entries this event's account or device/IP match (allow-list wins per kind)."""
        if not index.size:
            return []
        found = self._account_matches.get(e.account_id)
        if found is None:
            found = self._account_matches[e.account_id] = lists.account_matches(uow, e.account_id, index)
            if len(self._account_matches) > MAX_STATES:
                self._account_matches.clear()
        device = (
            getattr(e, "device_id", None) if e.type in ("login", "transaction", "device_binding") else None
        )
        ip = getattr(e, "ip", None) if e.type in ("login", "transaction") else None
        matches = [*found, *(index.match(device=device, ip=ip) if device or ip else [])]
        allowed = {m.kind for m in matches if m.list_type == "allow"}
        return sorted({m.entry_id for m in matches if m.list_type == "block" and m.kind not in allowed})

    # -- state ------------------------------------------------------------------------------------

    def _state(self, uow: UnitOfWork, account_id: str, kyc_level: str, before: datetime) -> AccountState:
        st = self._states.get(account_id)
        if st is not None:
            self._states.move_to_end(account_id)
            return st
        st = AccountState(account_id, kyc_level=kyc_level)
        rows = uow.conn.execute(
            select(event.c.payload)
            .where(
                event.c.account_id == account_id,
                event.c.occurred_at >= before - REBUILD_WINDOW,
            )
            .order_by(event.c.occurred_at, event.c.id)
        )
        for (payload,) in rows:
            st.observe(EVENT_ADAPTER.validate_json(payload), self.ip_ranges, self.thresholds)
        st.kyc_level = kyc_level
        self._states[account_id] = st
        if len(self._states) > MAX_STATES:
            self._states.popitem(last=False)
        return st

    def _prime(self, uow: UnitOfWork, fresh: Sequence[Any], known: dict[str, Any]) -> None:
        """Give accounts with no stored history an empty state at once (one query for the whole batch)."""
        missing = sorted({e.account_id for e in fresh} - self._states.keys())
        if not missing:
            return
        since = min(e.occurred_at for e in fresh) - REBUILD_WINDOW
        with_history: set[str] = set()
        for chunk in _chunks(missing, 500):
            with_history.update(
                uow.conn.execute(
                    select(event.c.account_id)
                    .where(event.c.account_id.in_(chunk), event.c.occurred_at >= since)
                    .distinct()
                ).scalars()
            )
        for account_id in missing:
            if account_id not in with_history:
                self._states[account_id] = AccountState(account_id, kyc_level=known[account_id].kyc_level)
        while len(self._states) > MAX_STATES:
            self._states.popitem(last=False)

    def forget(self, account_ids: Iterable[str]) -> None:
        """Drop in-memory state (after a rolled-back batch); it is rebuilt from stored events."""
        for a in account_ids:
            self._states.pop(a, None)
        self._recorded_keys.clear()  # what the rolled-back batch "wrote" was never stored

    # -- ingestion --------------------------------------------------------------------------------

    def ingest(
        self, events: Sequence[Any], actor: Actor, *, fence: Callable[[UnitOfWork], None] | None = None
    ) -> IngestResult:
        """Store, evaluate and act on a batch of validated events in one transaction.

        ``fence`` runs first inside that transaction (broker mode: are this worker's partition
        epochs still current?); if it raises, nothing is stored.
        """
        with self.lock, gc_paused():
            touched: set[str] = set()
            try:
                with UnitOfWork(self.runtime) as uow:
                    if fence is not None:
                        fence(uow)
                    result = self._ingest(uow, events, actor, touched)
                    uow.commit()
                return result
            except BaseException:
                self.forget(touched)
                raise

    def _ingest(  # noqa: PLR0912, PLR0915 — the one place a batch becomes decisions
        self, uow: UnitOfWork, events: Sequence[Any], actor: Actor, touched: set[str]
    ) -> IngestResult:
        result = IngestResult()
        version, rules = self.active_ruleset(uow)
        result.ruleset_version = version
        ids = [e.id for e in events]
        index_key = vault.derive_keys(uow.runtime.vault_master_key).index_key
        existing = stored_payloads(uow.conn, ids)
        account_ids = sorted({e.account_id for e in events})
        known: dict[str, Any] = {}
        for chunk in _chunks(account_ids, 500):
            for row in uow.conn.execute(
                select(account.c.id, account.c.kyc_level, account.c.language).where(account.c.id.in_(chunk))
            ):
                known[row.id] = row
        fresh = []
        seen_in_batch: dict[str, str] = {}
        for i, e in enumerate(events):
            stored = existing.get(e.id) or seen_in_batch.get(e.id)
            if stored is None and e.id in existing:
                # PostgreSQL: the id is taken, but its event's month was detached (retention).
                result.rejected.append(
                    (i, e.id, "id", "this event id was already used (its event is archived)")
                )
            elif stored is not None:
                # A replay is harmless; the same id for a different event is refused, never swallowed.
                if stored == _stored_payload(e, index_key).decode():
                    result.duplicates.append(e.id)
                else:
                    result.rejected.append(
                        (i, e.id, "id", "this event id was already used for a different event")
                    )
            elif e.account_id not in known:
                result.rejected.append((i, e.id, "account_id", f"account {e.account_id} is not registered"))
            else:
                seen_in_batch[e.id] = _stored_payload(e, index_key).decode()
                fresh.append(e)
        if not fresh:
            return result
        now = uow.runtime.clock.now()
        fresh.sort(key=lambda e: e.occurred_at)
        self._prime(uow, fresh, known)
        links.record(
            uow,
            ((k, v, e.account_id, e.occurred_at) for e in fresh for k, v in links.event_keys(e)),
            self._recorded_keys,
        )
        paying = {e.account_id for e in fresh if e.type == "transaction" and e.direction == "debit"}
        risky = links.risky_links(uow, paying, now)
        index = self.list_index(uow)  # once per batch
        rows: list[list[Any]] = []
        decided: list[tuple[str, str, list[Hit]]] = []
        decisions: list[dict[str, Any]] = []
        acting: list[tuple[Any, Hit]] = []
        list_hits: dict[str, list[str]] = {}
        for e in fresh:
            touched.add(e.account_id)
            acct = known[e.account_id]
            st = self._state(uow, e.account_id, acct.kyc_level, e.occurred_at)
            st.kyc_level = acct.kyc_level  # KYC changes made through the accounts API
            features = st.observe(e, self.ip_ranges, self.thresholds)
            paths = risky.get(e.account_id, [])
            features["linked_risk_accounts"] = len(paths)
            blocked = self._blocked(uow, index, e)
            features["blacklisted"] = bool(blocked)
            if blocked:
                list_hits[e.id] = blocked
            hits = rules.evaluate(features)
            decided.append((e.id, e.account_id, hits))
            rows.append([e.id, e.account_id, e.type, e.occurred_at, now, seen_in_batch[e.id], "allow"])
            for h in hits:
                decisions.append(
                    {
                        "id": "rd_" + secrets.token_hex(8),
                        "event_id": e.id,
                        "account_id": e.account_id,
                        "rule_id": h.rule.id,
                        "ruleset_version": version,
                        "category": h.rule.category.value,
                        "action": h.rule.action.name.lower(),
                        "applied": "shadow" if h.rule.shadow else h.rule.action.name.lower(),
                        "values": orjson.dumps(_with_links(h, paths)).decode(),
                        "freeze_id": None,
                        "created_at": now,
                    }
                )
                if not h.rule.shadow and h.rule.action >= Action.RESTRICT:
                    acting.append((e, h))
        applied = self._act(uow, acting, version, known, list_hits)
        for d in decisions:
            key = (d["event_id"], d["rule_id"])
            if key in applied:
                d["applied"], d["freeze_id"] = applied[key]
        # The outcome is what was done, after suppressions, breakers and existing freezes.
        effective: dict[str, Action] = {}
        for d in decisions:
            applied_as = d["action"] if d["applied"] == "already_frozen" else d["applied"]
            done = _EFFECT.get(applied_as, Action.ALLOW)
            if done > effective.get(d["event_id"], Action.ALLOW):
                effective[d["event_id"]] = done
        if effective:
            for r in rows:
                strongest = effective.get(r[0])
                if strongest is not None:
                    r[6] = strongest.name.lower()
        try:
            insert_events(uow.conn, rows)
            insert_rows(
                uow.conn,
                risk_decision,
                _DECISION_COLUMNS,
                [[d[c] for c in _DECISION_COLUMNS] for d in decisions],
            )
        except IntegrityError:
            # Another request stored one of these ids meanwhile (PostgreSQL): retry, and it is a duplicate.
            raise ConflictError("some of these events were stored by a concurrent request; retry") from None
        uow.mark_changed()
        # One Outcome per event, built once the actions are known (most events: allowed, no hits).
        result.accepted = [
            Outcome(event_id, account_id, "allow")
            if not hits
            else Outcome(
                event_id,
                account_id,
                effective.get(event_id, Action.ALLOW).name.lower(),
                tuple(hits),
                _freeze_of(applied, event_id, hits),
            )
            for event_id, account_id, hits in decided
        ]
        outcomes: dict[str, int] = {}
        for o in result.accepted:
            outcomes[o.outcome] = outcomes.get(o.outcome, 0) + 1
        digest = hashlib.sha256(b"\n".join(r[0].encode() + b"\x00" + r[5].encode() for r in rows))
        uow.record(
            LogRecord(
                action="events.ingested",
                actor=actor,
                subject=Subject(ref=f"batch:{rows[0][0]}"[:128]),
                details={
                    "accepted": len(rows),
                    "duplicates": len(result.duplicates),
                    "rejected": len(result.rejected),
                    "outcomes": outcomes,
                    "ruleset_version": version,
                    "events_sha256": digest.hexdigest(),
                },
            )
        )
        return result

    def _act(
        self,
        uow: UnitOfWork,
        acting: list[tuple[Any, Hit]],
        version: int,
        known: dict[str, Any],
        list_hits: dict[str, list[str]],
    ) -> dict[tuple[str, str], tuple[str, str | None]]:
        """Freeze or restrict for the acting hits, honouring suppressions, breakers and existing freezes."""
        applied: dict[tuple[str, str], tuple[str, str | None]] = {}
        if not acting:
            return applied
        now = uow.runtime.clock.now()
        # Two workers can evaluate one account at the same moment while its partition changes hands:
        # lock the accounts about to be frozen, in id order (no deadlock), so that the "already frozen
        # by this rule?" check below and the freeze are one step. (SQLite's single writer already is.)
        targets = sorted({e.account_id for e, _h in acting})
        uow.conn.execute(
            select(account.c.id).where(account.c.id.in_(targets)).order_by(account.c.id).with_for_update()
        ).all()
        # Under those locks, one query for the rule freezes already in force on them (kept current below).
        frozen_by: dict[tuple[str, str], str] = {
            (r.account_id, r.source_ref): r.id
            for r in uow.conn.execute(
                select(freeze_table.c.id, freeze_table.c.account_id, freeze_table.c.source_ref).where(
                    freeze_table.c.account_id.in_(targets),
                    freeze_table.c.status == FreezeStatus.ACTIVE.value,
                    freeze_table.c.source_ref.in_(sorted({h.rule.id for _e, h in acting})),
                )
            )
        }
        suppressed = {
            (r.account_id, r.rule_id)
            for r in uow.conn.execute(
                select(rule_suppression.c.account_id, rule_suppression.c.rule_id).where(
                    rule_suppression.c.until > now,
                    rule_suppression.c.account_id.in_(sorted({e.account_id for e, _h in acting})),
                )
            )
        }
        budget: dict[str, int] = {}
        tripped: set[str] = set()
        for e, h in acting:
            rule = h.rule
            key = (e.id, rule.id)
            if (e.account_id, rule.id) in suppressed:
                applied[key] = ("suppressed", None)
                continue
            active = frozen_by.get((e.account_id, rule.id))
            if active is not None:
                applied[key] = ("already_frozen", active)
                continue
            if rule.breaker is not None:
                if rule.id not in budget:
                    since = now - timedelta(minutes=rule.breaker.per_minutes)
                    used = uow.conn.execute(
                        select(func.count())
                        .select_from(risk_decision)
                        .where(
                            risk_decision.c.rule_id == rule.id,
                            risk_decision.c.created_at >= since,
                            risk_decision.c.applied.in_(["freeze", "restrict"]),
                        )
                    ).scalar_one()
                    budget[rule.id] = rule.breaker.max - int(used)
                if budget[rule.id] <= 0:
                    applied[key] = ("review_breaker", None)
                    tripped.add(rule.id)
                    continue
                budget[rule.id] -= 1
            lang = known[e.account_id].language
            made, _created = freezes.freeze_account(
                uow,
                freezes.FreezeAccount(
                    account_id=e.account_id,
                    restriction=Restriction(rule.scope),
                    category=rule.category,
                    reason_codes=(rule.id.upper(),),
                    source=SourceKind.RULE,
                    source_ref=rule.id,
                    legal_basis="terms of service; risk rule " + rule.id,
                    internal_reason=rule.name["en"] + ": " + rule.when,
                    holder_reason=rule.explanation.get(lang, rule.explanation["en"]),
                    # A blocklist hit names its entries: removing one as erroneous finds this freeze.
                    evidence=(
                        EvidenceRef("event", e.id),
                        *(
                            EvidenceRef("list_entry", x)
                            for x in list_hits.get(e.id, [])
                            if "blacklisted" in rule.reads
                        ),
                    ),
                    rule_version=version,
                    transactions=_flagged(e),
                    details={"features": jsonable(h.values), "condition": rule.when},
                ),
                ENGINE,
            )
            applied[key] = ("freeze" if rule.action is Action.FREEZE else "restrict", made.id)
            frozen_by[(e.account_id, rule.id)] = made.id
        for rule_id in sorted(tripped):
            uow.record(
                LogRecord(
                    action="rule.breaker_tripped",
                    actor=ENGINE,
                    subject=Subject(ref=f"rule:{rule_id}"),
                    details={
                        "ruleset_version": version,
                        "alert": "automated freezes paused; hits go to review",
                    },
                )
            )
        return applied


_DECISION_COLUMNS = (
    "id",
    "event_id",
    "account_id",
    "rule_id",
    "ruleset_version",
    "category",
    "action",
    "applied",
    "values",
    "freeze_id",
    "created_at",
)

# What each applied decision amounts to, for the event's outcome.
_EFFECT = {
    "freeze": Action.FREEZE,
    "restrict": Action.RESTRICT,
    "review": Action.REVIEW,
    "review_breaker": Action.REVIEW,
    "allow": Action.ALLOW,
}


def _with_links(h: Hit, paths: list[list[links.Link]]) -> dict[str, Any]:
    """The values a rule read, and for linked-risk rules the paths to the frozen accounts."""
    values = jsonable(h.values)
    if "linked_risk_accounts" in h.values and paths:
        values["links"] = [[step.as_json() for step in path] for path in paths[:10]]
    return values


def _freeze_of(
    applied: dict[tuple[str, str], tuple[str, str | None]], event_id: str, hits: list[Hit]
) -> str | None:
    for h in hits:
        got = applied.get((event_id, h.rule.id))
        if got is not None and got[1] is not None:
            return got[1]
    return None


def _flagged(e: Any) -> tuple[FlaggedTransaction, ...]:
    if e.type != "transaction":
        return ()
    return (FlaggedTransaction(e.transaction_id, e.amount, e.currency, e.occurred_at, e.order_ref),)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_ruleset(uow: UnitOfWork, source: str, actor: Actor, *, note: str = "") -> int:
    """Store a new ruleset version and make it the active one (it must compile)."""
    try:
        compiled = Ruleset.from_yaml(source)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="ruleset") from None
    current = uow.conn.execute(select(func.max(ruleset.c.version))).scalar()
    version = int(current or 0) + 1
    uow.conn.execute(update(ruleset).where(ruleset.c.active.is_(True)).values(active=False))
    try:
        with uow.conn.begin_nested():
            uow.conn.execute(
                insert(ruleset).values(
                    version=version,
                    sha256=compiled.sha256,
                    source=source,
                    active=True,
                    created_by=actor.ref,
                    created_at=uow.runtime.clock.now(),
                )
            )
    except IntegrityError:
        raise ConflictError("another ruleset version was loaded at the same moment; retry") from None
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="ruleset.activated",
            actor=actor,
            subject=Subject(ref=f"ruleset:{version}"),
            details={
                "version": version,
                "sha256": compiled.sha256,
                "rules": [r.id for r in compiled.rules],
                "shadow": [r.id for r in compiled.rules if r.shadow],
                "note": note,
            },
        )
    )
    return version
