"""Tampering behind the triggers' back is caught by verification, at the right sequence number."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from tests.helpers import append
from tests.integration.tamper import bypassing_triggers, edit_bundle, truncate
from thawline.oplog.merkle import leaf_hash
from thawline.oplog.note import Checkpoint, Signer
from thawline.services.runtime import Runtime
from thawline.services.verify import verify_log

N = 600  # checkpoints at 100, 200, ..., 600; stored level-8 nodes 0 and 1


@pytest.fixture
def log(runtime: Runtime) -> Runtime:
    """A verified log of N entries."""
    append(runtime, N, batch=100)
    assert verify_log(runtime).ok
    return runtime


def _fail_at(rt: Runtime) -> tuple[int, str]:
    """Verify in one chunk inline, and in 32-entry chunks on two worker processes: same verdict."""
    report = verify_log(rt)
    assert report.problem is not None
    chunked = verify_log(rt, chunk_level=5, workers=2)
    assert chunked.problem == report.problem
    return report.problem.seq, report.problem.what


def test_changing_one_byte_is_caught_at_that_entry(log: Runtime) -> None:
    def flip(entries: list[bytes], _c: list[bytes], _a: list[str], i: int) -> None:
        data = bytearray(entries[i])
        data[data.index(b"frozen")] ^= 0x01  # "frozen" -> "grozen"
        entries[i] = bytes(data)

    edit_bundle(log.engine, 321, flip)
    seq, what = _fail_at(log)
    assert seq == 321
    assert "hash chain" in what


def test_deleting_an_entry_is_caught_where_it_was(log: Runtime) -> None:
    def drop(entries: list[bytes], chains: list[bytes], accounts: list[str], i: int) -> None:
        del entries[i], chains[i], accounts[i]

    edit_bundle(log.engine, 42, drop)
    assert _fail_at(log)[0] == 42


def test_deleting_a_whole_commit_is_caught_at_the_gap(log: Runtime) -> None:
    with bypassing_triggers(log.engine) as conn:
        conn.execute(text("DELETE FROM oplog_bundle WHERE first_seq = 200"))
    seq, what = _fail_at(log)
    assert seq == 200
    assert "missing" in what


def test_swapping_two_entries_is_caught_at_the_first(log: Runtime) -> None:
    def swap(entries: list[bytes], _c: list[bytes], _a: list[str], i: int) -> None:
        entries[i], entries[i + 1] = entries[i + 1], entries[i]

    edit_bundle(log.engine, 250, swap)
    assert _fail_at(log)[0] == 250


def test_swapping_two_entries_with_their_chain_values_is_caught(log: Runtime) -> None:
    def swap(entries: list[bytes], chains: list[bytes], _a: list[str], i: int) -> None:
        entries[i], entries[i + 1] = entries[i + 1], entries[i]
        chains[i], chains[i + 1] = chains[i + 1], chains[i]

    edit_bundle(log.engine, 10, swap)
    assert _fail_at(log)[0] == 10


def test_a_malformed_bundle_is_caught_at_its_first_entry(log: Runtime) -> None:
    with bypassing_triggers(log.engine) as conn:
        conn.execute(text("UPDATE oplog_bundle SET n_entries = 99 WHERE first_seq = 300"))
    assert _fail_at(log)[0] == 300


def test_truncating_the_tail_is_caught_where_the_log_now_ends(log: Runtime) -> None:
    truncate(log.engine, 550)
    seq, what = _fail_at(log)
    assert seq == 550
    assert "truncated" in what


def test_truncating_entries_and_checkpoints_is_caught_by_the_head(log: Runtime) -> None:
    truncate(log.engine, 550)
    with bypassing_triggers(log.engine) as conn:
        conn.execute(text("DELETE FROM oplog_checkpoint WHERE tree_size > 500"))
    seq, what = _fail_at(log)
    assert seq == 550
    assert "head" in what


def test_replacing_a_checkpoint_signed_by_another_key_is_caught(log: Runtime) -> None:
    with log.engine.connect() as conn:
        root = bytes(
            conn.execute(text("SELECT root FROM oplog_checkpoint WHERE tree_size = 300")).scalar_one()
        )
    forged = Signer(log.settings.log_origin, Ed25519PrivateKey.generate()).sign_note(
        Checkpoint(log.settings.log_origin, 300, root).body()
    )
    with bypassing_triggers(log.engine) as conn:
        conn.execute(text("UPDATE oplog_checkpoint SET note = :n WHERE tree_size = 300"), {"n": forged})
    seq, what = _fail_at(log)
    assert seq == 299
    assert "signature" in what


def test_a_rechained_log_is_caught_by_the_signed_checkpoint(log: Runtime) -> None:
    """An attacker who rewrites an entry and recomputes every later chain value still meets the signature."""
    state: dict[str, bytes] = {}

    def rechain(entries: list[bytes], chains: list[bytes], _a: list[str], i: int) -> None:
        entries[i] = entries[i].replace(b"HF_10MIN", b"HF_99MIN")
        chain = chains[i - 1]
        for j in range(i, len(entries)):
            chain = chains[j] = hashlib.sha256(chain + leaf_hash(entries[j])).digest()
        state["last"] = chain

    edit_bundle(log.engine, 150, rechain)  # the bundle [100, 200); later bundles re-chained below
    for first in range(200, N, 100):

        def follow(entries: list[bytes], chains: list[bytes], _a: list[str], _i: int) -> None:
            chain = state["last"]
            for j in range(len(entries)):
                chain = chains[j] = hashlib.sha256(chain + leaf_hash(entries[j])).digest()
            state["last"] = chain

        edit_bundle(log.engine, first, follow)
    with bypassing_triggers(log.engine) as conn:
        conn.execute(text("UPDATE oplog_head SET chain = :c"), {"c": state["last"]})
    seq, what = _fail_at(log)
    assert seq == 199  # the first signed checkpoint after the change
    assert "signed root does not match" in what


def test_a_forged_merkle_node_is_caught(log: Runtime) -> None:
    with bypassing_triggers(log.engine) as conn:
        conn.execute(text("UPDATE oplog_node SET hash = :h WHERE level = 8 AND idx = 1"), {"h": b"\x01" * 32})
    seq, what = _fail_at(log)
    assert seq == 511
    assert "Merkle node" in what


def test_chunked_parallel_verification_agrees_with_a_single_pass(log: Runtime) -> None:
    single = verify_log(log)
    for level, workers in ((3, 1), (5, 2), (8, 2)):
        chunked = verify_log(log, chunk_level=level, workers=workers)
        assert chunked.ok, chunked.problem
        assert (chunked.entries, chunked.root, chunked.checkpoint_roots) == (
            single.entries,
            single.root,
            single.checkpoint_roots,
        )
