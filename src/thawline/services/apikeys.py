"""Creating, listing, revoking and checking integrator API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update

from thawline.adapters.db.schema import api_key
from thawline.domain.apikeys import KEY_PREFIX, Scope, allows, parse_scopes, split_presented_key
from thawline.domain.errors import ConflictError, NotFoundError
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as listed (never with its secret)."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: Scope) -> bool:
        """True when this key grants ``scope``."""
        return self.revoked_at is None and allows(self.scopes, scope)


def _hash(secret: str) -> bytes:
    # The secret is 256 random bits, so a fast hash is enough (argon2 is for human passwords).
    return hashlib.sha256(secret.encode("ascii")).digest()


def create_key(uow: UnitOfWork, name: str, scopes: list[str], actor: Actor) -> tuple[ApiKeyInfo, str]:
    """Create a key; returns its info and the presented key, shown once and stored only hashed."""
    granted = parse_scopes(scopes)
    key_id = "ak_" + secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    now = uow.runtime.clock.now()
    uow.conn.execute(
        insert(api_key).values(
            id=key_id,
            name=name,
            secret_hash=_hash(secret),
            scopes=" ".join(sorted(s.value for s in granted)),
            created_at=now,
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="apikey.created",
            actor=actor,
            subject=Subject(ref=f"apikey:{key_id}"),
            state_after={"name": name, "scopes": sorted(s.value for s in granted)},
        )
    )
    return ApiKeyInfo(key_id, name, granted, now, None), f"{KEY_PREFIX}_{key_id}.{secret}"


def list_keys(uow: UnitOfWork) -> list[ApiKeyInfo]:
    """All keys, newest first."""
    rows = uow.conn.execute(select(api_key).order_by(api_key.c.created_at.desc(), api_key.c.id))
    return [_info(r) for r in rows]


# Keys revoked by this process: every KeyCache here drops them at once (other processes within ttl).
_REVOKED: set[str] = set()


def revoke_key(uow: UnitOfWork, key_id: str, actor: Actor) -> ApiKeyInfo:
    """Revoke a key: at once in this process, within a second in every other (see KeyCache)."""
    row = uow.conn.execute(select(api_key).where(api_key.c.id == key_id)).first()
    if row is None:
        raise NotFoundError(f"API key {key_id} does not exist")
    if row.revoked_at is not None:
        raise ConflictError(f"API key {key_id} is already revoked")
    now = uow.runtime.clock.now()
    uow.conn.execute(update(api_key).where(api_key.c.id == key_id).values(revoked_at=now))
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="apikey.revoked",
            actor=actor,
            subject=Subject(ref=f"apikey:{key_id}"),
            state_before={"revoked": False},
            state_after={"revoked": True},
        )
    )
    uow.after_commit(lambda: _REVOKED.add(key_id))
    info = _info(row)
    return ApiKeyInfo(info.id, info.name, info.scopes, info.created_at, now)


def authenticate(uow: UnitOfWork, presented: str) -> ApiKeyInfo | None:
    """The active key matching ``presented``, or None."""
    parts = split_presented_key(presented)
    if parts is None:
        return None
    key_id, secret = parts
    row = uow.conn.execute(select(api_key).where(api_key.c.id == key_id)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(bytes(row.secret_hash), _hash(secret)):
        return None
    return _info(row)


def _info(r: Row[Any]) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=r.id,
        name=r.name,
        scopes=frozenset(Scope(s) for s in r.scopes.split()),
        created_at=r.created_at,
        revoked_at=r.revoked_at,
    )


class KeyCache:
    """Recently authenticated keys, trusted for ``ttl`` seconds without a database round trip.

    Only successful authentications are cached, and only with the secret's hash, so a new key works
    at once and a wrong secret never matches. A revoked key stops working within ``ttl`` seconds
    (default 1) in every process. The gateway's hot path needs this: a key lookup per request cost
    more than the authorisation itself.
    """

    def __init__(self, runtime: Runtime, ttl: float = 1.0) -> None:
        self.runtime = runtime
        self.ttl = ttl
        self._entries: dict[str, tuple[float, bytes, ApiKeyInfo]] = {}
        self._lock = threading.Lock()

    def cached(self, presented: str) -> ApiKeyInfo | None:
        """The key if it is in the cache, fresh and the secret matches; else None (ask the database)."""
        parts = split_presented_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        hit = self._entries.get(key_id)
        if (
            hit is not None
            and hit[0] > time.monotonic()
            and key_id not in _REVOKED
            and hmac.compare_digest(hit[1], _hash(secret))
        ):
            return hit[2]
        return None

    def authenticate(self, presented: str) -> ApiKeyInfo | None:
        """Like :func:`authenticate`, answered from the cache while fresh."""
        hit = self.cached(presented)
        if hit is not None:
            return hit
        parts = split_presented_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        digest = _hash(secret)
        with UnitOfWork(self.runtime, read_only=True) as uow:
            info = authenticate(uow, presented)
        if info is not None:
            with self._lock:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[key_id] = (time.monotonic() + self.ttl, digest, info)
        return info
