"""The operation log over HTTP: entries, signed checkpoints, proofs and exports."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from thawline.adapters.db.oplog_store import StoredCheckpoint
from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.domain.apikeys import Scope
from thawline.domain.errors import NotFoundError
from thawline.oplog.entry import decode_entry
from thawline.services import proofs
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1/log", tags=["operation log"])
CanRead = Annotated[ApiKeyInfo, Depends(require(Scope.LOG_READ))]
CanExport = Annotated[ApiKeyInfo, Depends(require(Scope.LOG_EXPORT))]
CanAdmin = Annotated[ApiKeyInfo, Depends(require(Scope.LOG_ADMIN))]


class CheckpointOut(BaseModel):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note)."""

    tree_size: int
    root_hex: str
    note: str = Field(description="The signed note, verbatim; verify it with the log's public key.")
    created_at: datetime

    @classmethod
    def of(cls, cp: StoredCheckpoint) -> CheckpointOut:
        """Render a stored checkpoint."""
        return cls(tree_size=cp.tree_size, root_hex=cp.root.hex(), note=cp.note, created_at=cp.created_at)


class PublicKeyOut(BaseModel):
    """The log's verification key."""

    origin: str
    vkey: str = Field(description="Signed-note verifier key: name+keyid+base64(0x01||ed25519 key).")


class EntryOut(BaseModel):
    """One log entry: the exact stored bytes plus their parsed form."""

    seq: int
    entry: dict[str, Any]
    data_b64: str = Field(description="The canonical RFC 8785 bytes that were hashed.")
    chain_hex: str


@router.get("/public-key", response_model=PublicKeyOut)
def public_key(runtime: RuntimeDep) -> PublicKeyOut:
    """The key that signs checkpoints (compare it with the one you got out of band)."""
    return PublicKeyOut(origin=runtime.settings.log_origin, vkey=runtime.signer.vkey)


@router.get("/checkpoint", response_model=CheckpointOut)
def latest_checkpoint(uow: ReadUow, _key: CanRead) -> CheckpointOut:
    """The latest signed checkpoint."""
    cp = uow.oplog.checkpoint()
    if cp is None:
        raise NotFoundError("no checkpoint has been signed yet")
    return CheckpointOut.of(cp)


@router.get("/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(
    uow: ReadUow,
    _key: CanRead,
    min_size: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CheckpointOut]:
    """Signed checkpoints from ``min_size`` on."""
    return [CheckpointOut.of(c) for c in uow.oplog.checkpoints(min_size, limit)]


@router.post("/checkpoints", response_model=CheckpointOut, status_code=201)
def create_checkpoint(runtime: RuntimeDep, _key: CanAdmin, response: Response) -> CheckpointOut:
    """Sign a checkpoint of the current tree now (returns the latest one if nothing is new)."""
    with UnitOfWork(runtime) as uow:
        before = uow.oplog.head().checkpoint_size
        cp = runtime.log.checkpoint(uow)
        uow.commit()
    if cp is None:
        raise NotFoundError("the log is empty; there is nothing to sign")
    if cp.tree_size == before:
        response.status_code = 200
    return CheckpointOut.of(cp)


def _entry_out(seq: int, data: bytes, chain: bytes) -> EntryOut:
    return EntryOut(
        seq=seq, entry=decode_entry(data), data_b64=base64.b64encode(data).decode(), chain_hex=chain.hex()
    )


@router.get("/entries", response_model=list[EntryOut])
def list_entries(
    uow: ReadUow,
    _key: CanRead,
    from_seq: Annotated[int, Query(ge=0, description="First sequence number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    account_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> list[EntryOut]:
    """Entries in sequence order, optionally for one account or action."""
    rows = uow.oplog.entries(start=from_seq, account_id=account_id, action=action, limit=limit)
    return [_entry_out(seq, bytes(data), bytes(chain)) for seq, data, chain in rows]


@router.get("/entries/{seq}", response_model=EntryOut)
def get_entry(uow: ReadUow, _key: CanRead, seq: int) -> EntryOut:
    """One entry."""
    for row in uow.oplog.entries(start=seq, stop=seq + 1):
        return _entry_out(row[0], bytes(row[1]), bytes(row[2]))
    raise NotFoundError(f"log entry {seq} does not exist")


@router.get("/entries/{seq}/inclusion")
def inclusion_proof(
    uow: ReadUow, _key: CanRead, seq: int, tree_size: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    """Inclusion bundle: the entry, its Merkle audit path and the signed checkpoint it is proven against."""
    return proofs.inclusion(uow, seq, tree_size)


@router.get("/consistency")
def consistency_proof(
    uow: ReadUow,
    _key: CanRead,
    old_size: Annotated[int, Query(ge=1)],
    new_size: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Consistency bundle between two signed checkpoints (the latest if ``new_size`` is omitted)."""
    return proofs.consistency(uow, old_size, new_size)


@router.get("/export", response_class=StreamingResponse)
def export(
    runtime: RuntimeDep,
    _key: CanExport,
    from_seq: Annotated[int, Query(ge=0)] = 0,
    to_seq: Annotated[int | None, Query(ge=1, description="Exclusive end.")] = None,
) -> StreamingResponse:
    """JSON Lines export of a range with per-entry proofs and the covering checkpoint."""
    # The unit of work must outlive this function: the response streams from it afterwards.
    stack = ExitStack()
    uow = stack.enter_context(UnitOfWork(runtime, read_only=True))
    try:
        lines = proofs.export(uow, from_seq, to_seq, runtime.settings.log_origin)
        first = next(lines)  # raises problems (no checkpoint, bad range) before streaming starts
    except BaseException:
        stack.close()
        raise

    def stream() -> Iterator[bytes]:
        with stack:
            yield orjson.dumps(first) + b"\n"
            for line in lines:
                yield orjson.dumps(line) + b"\n"

    return StreamingResponse(
        stream(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="thawline-log-export.jsonl"'},
    )
