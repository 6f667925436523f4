"""Proof bundles an auditor checks offline with only the log's public key.

Three JSON shapes: an inclusion bundle (one entry, its proof, the signed checkpoint), a
consistency bundle (two signed checkpoints and the proof between them) and an export (JSON Lines:
a header with the covering checkpoint, then one line per entry with its chain value and proof).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from thawline.oplog.merkle import leaf_hash, verify_consistency, verify_inclusion
from thawline.oplog.note import Checkpoint, NoteError, Verifier, open_note

INCLUSION = "thawline.inclusion.v1"
CONSISTENCY = "thawline.consistency.v1"
EXPORT = "thawline.export.v1"


class BundleError(ValueError):
    """The bundle does not prove what it claims; the message says what failed."""


@dataclass(frozen=True, slots=True)
class CheckedEntry:
    """An entry whose inclusion was proven."""

    seq: int
    data: bytes
    checkpoint: Checkpoint


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise BundleError(f"{what} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise BundleError(f"{what} is not valid base64") from exc


def _unhex_list(items: object, what: str) -> list[bytes]:
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise BundleError(f"{what} must be a list of hex strings")
    try:
        return [bytes.fromhex(i) for i in items]
    except ValueError as exc:
        raise BundleError(f"{what} holds a value that is not hex") from exc


def open_checkpoint(note: object, verifiers: Sequence[Verifier], origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body."""
    if not isinstance(note, str):
        raise BundleError("checkpoint must be the signed note text")
    try:
        checkpoint = Checkpoint.parse(open_note(note, verifiers))
    except (NoteError, ValueError) as exc:
        raise BundleError(f"checkpoint signature or format is invalid: {exc}") from exc
    if origin is not None and checkpoint.origin != origin:
        raise BundleError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint


def inclusion_bundle(
    seq: int, data: bytes, proof: Sequence[bytes], note: str, tree_size: int
) -> dict[str, Any]:
    """Build an inclusion bundle."""
    return {
        "type": INCLUSION,
        "seq": seq,
        "entry": b64(data),
        "leaf_hash": leaf_hash(data).hex(),
        "tree_size": tree_size,
        "proof": [p.hex() for p in proof],
        "checkpoint": note,
    }


def check_inclusion(bundle: dict[str, Any], verifiers: Sequence[Verifier]) -> CheckedEntry:
    """Check an inclusion bundle; raises BundleError with the reason."""
    if bundle.get("type") != INCLUSION:
        raise BundleError(f"not an inclusion bundle (type {bundle.get('type')!r})")
    checkpoint = open_checkpoint(bundle.get("checkpoint"), verifiers)
    data = _unb64(bundle.get("entry"), "entry")
    seq = bundle.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise BundleError("seq must be an integer")
    if bundle.get("tree_size") != checkpoint.size:
        raise BundleError("tree_size differs from the signed checkpoint")
    proof = _unhex_list(bundle.get("proof"), "proof")
    if not verify_inclusion(leaf_hash(data), seq, checkpoint.size, proof, checkpoint.root):
        raise BundleError(f"entry {seq} is not included in the signed tree of size {checkpoint.size}")
    return CheckedEntry(seq, data, checkpoint)


def consistency_bundle(
    old_note: str, new_note: str, old_size: int, new_size: int, proof: Sequence[bytes]
) -> dict[str, Any]:
    """Build a consistency bundle."""
    return {
        "type": CONSISTENCY,
        "old_size": old_size,
        "new_size": new_size,
        "proof": [p.hex() for p in proof],
        "old_checkpoint": old_note,
        "new_checkpoint": new_note,
    }


def check_consistency(bundle: dict[str, Any], verifiers: Sequence[Verifier]) -> tuple[Checkpoint, Checkpoint]:
    """Check a consistency bundle: the newer signed tree extends the older one."""
    if bundle.get("type") != CONSISTENCY:
        raise BundleError(f"not a consistency bundle (type {bundle.get('type')!r})")
    old = open_checkpoint(bundle.get("old_checkpoint"), verifiers)
    new = open_checkpoint(bundle.get("new_checkpoint"), verifiers, old.origin)
    if (bundle.get("old_size"), bundle.get("new_size")) != (old.size, new.size):
        raise BundleError("sizes differ from the signed checkpoints")
    proof = _unhex_list(bundle.get("proof"), "proof")
    if not verify_consistency(old.size, new.size, old.root, new.root, proof):
        raise BundleError(f"tree of size {new.size} does not extend tree of size {old.size}")
    return old, new


def export_header(
    origin: str, start: int, stop: int, *, prev_chain: bytes, note: str, tree_size: int
) -> dict[str, Any]:
    """The first line of an export."""
    return {
        "type": EXPORT,
        "origin": origin,
        "from": start,
        "to": stop,
        "prev_chain": prev_chain.hex(),
        "tree_size": tree_size,
        "checkpoint": note,
    }


def export_line(seq: int, data: bytes, chain: bytes, proof: Sequence[bytes]) -> dict[str, Any]:
    """One entry line of an export."""
    return {"seq": seq, "entry": b64(data), "chain": chain.hex(), "proof": [p.hex() for p in proof]}


def check_export(lines: Iterable[dict[str, Any]], verifiers: Sequence[Verifier]) -> int:
    """Check an export: signed checkpoint, contiguous range, chain, and every inclusion proof."""
    it = iter(lines)
    header = next(it, None)
    if header is None or header.get("type") != EXPORT:
        raise BundleError("export must start with a thawline.export.v1 header line")
    checkpoint = open_checkpoint(header.get("checkpoint"), verifiers, header.get("origin"))
    start, stop = header.get("from"), header.get("to")
    if not isinstance(start, int) or not isinstance(stop, int) or not 0 <= start <= stop <= checkpoint.size:
        raise BundleError("export range is not inside the signed checkpoint")
    chain = bytes.fromhex(str(header.get("prev_chain")))
    expected = start
    for line in it:
        if line.get("seq") != expected:
            raise BundleError(f"entry {expected} is missing from the export")
        data = _unb64(line.get("entry"), f"entry {expected}")
        leaf = leaf_hash(data)
        chain = hashlib.sha256(chain + leaf).digest()
        if line.get("chain") != chain.hex():
            raise BundleError(f"entry {expected} breaks the hash chain")
        proof = _unhex_list(line.get("proof"), f"proof of entry {expected}")
        if not verify_inclusion(leaf, expected, checkpoint.size, proof, checkpoint.root):
            raise BundleError(f"entry {expected} is not included in the signed tree")
        expected += 1
    if expected != stop:
        raise BundleError(f"export ends at {expected} but its header says {stop}")
    return expected - start
