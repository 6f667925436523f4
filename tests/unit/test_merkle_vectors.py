"""Every vector in the shared Merkle test-vector file, checked against thawline.oplog.merkle."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.testdata import shared_testdata
from thawline.oplog.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS_PATH = shared_testdata("merkle_vectors.json")
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

TREE = VECTORS["reference_tree_8"]
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in TREE["leaf_inputs_hex"]]
PROBES = VECTORS["probes"]


def h(hex_text: str) -> bytes:
    """Decode a hex string from the vector file."""
    return bytes.fromhex(hex_text)


def hs(hex_list: list[str]) -> list[bytes]:
    """Decode a list of hex strings from the vector file."""
    return [bytes.fromhex(x) for x in hex_list]


@pytest.mark.parametrize("case", VECTORS["hasher"], ids=lambda c: c["desc"])
def test_hasher_operation_matches_the_vector(case: dict[str, Any]) -> None:
    if case["op"] == "empty_root":
        got = root([])
        assert got == EMPTY_ROOT
    elif case["op"] == "leaf":
        got = leaf_hash(h(case["input_hex"]))
    else:
        assert case["op"] == "node"
        got = node_hash(h(case["left_hex"]), h(case["right_hex"]))
    assert got.hex() == case["want"]


def test_reference_tree_lists_a_root_for_every_size_from_zero_to_eight() -> None:
    assert sorted(int(n) for n in TREE["root_by_tree_size"]) == list(range(9))


@pytest.mark.parametrize("size", range(9))
def test_reference_tree_root_matches_for_each_size(size: int) -> None:
    assert root(LEAVES[:size]).hex() == TREE["root_by_tree_size"][str(size)]


@pytest.mark.parametrize("level", range(4))
def test_reference_tree_interior_nodes_match_at_each_level(level: int) -> None:
    width = 1 << level
    want = TREE["node_hashes_by_level"][level]
    got = [subtree_hash(LEAVES, i * width, (i + 1) * width).hex() for i in range(len(want))]
    assert got == want


@pytest.mark.parametrize(
    "case", TREE["inclusion_proofs"], ids=lambda c: f"leaf{c['leaf_index']}-size{c['tree_size']}"
)
def test_reference_inclusion_proof_is_generated_exactly_and_verifies(case: dict[str, Any]) -> None:
    leaves = LEAVES[: case["tree_size"]]
    assert leaf_hash(h(case["leaf_input_hex"])) == h(case["leaf_hash"])
    assert root(leaves) == h(case["root"])
    proof = inclusion_proof(leaves, case["leaf_index"])
    assert [p.hex() for p in proof] == case["proof"]
    assert verify_inclusion(
        h(case["leaf_hash"]), case["leaf_index"], case["tree_size"], proof, h(case["root"])
    )


@pytest.mark.parametrize("case", TREE["consistency_proofs"], ids=lambda c: f"{c['size1']}to{c['size2']}")
def test_reference_consistency_proof_is_generated_exactly_and_verifies(case: dict[str, Any]) -> None:
    leaves = LEAVES[: case["size2"]]
    assert root(LEAVES[: case["size1"]]) == h(case["root1"])
    assert root(leaves) == h(case["root2"])
    proof = consistency_proof(leaves, case["size1"])
    assert [p.hex() for p in proof] == case["proof"]
    assert verify_consistency(case["size1"], case["size2"], h(case["root1"]), h(case["root2"]), proof)


def test_every_proof_in_the_reference_tree_verifies_as_the_self_check_claims() -> None:
    inclusion = consistency = 0
    for size in range(1, 9):
        top = root(LEAVES[:size])
        for index in range(size):
            proof = inclusion_proof(LEAVES[:size], index)
            assert verify_inclusion(LEAVES[index], index, size, proof, top)
            inclusion += 1
        for old in range(1, size):
            proof = consistency_proof(LEAVES[:size], old)
            assert verify_consistency(old, size, root(LEAVES[:old]), top, proof)
            consistency += 1
    assert (inclusion, consistency) == (36, 28)


def test_probe_counts_match_the_declared_counts() -> None:
    assert len(PROBES["inclusion"]) == PROBES["counts"]["inclusion"]
    assert len(PROBES["consistency"]) == PROBES["counts"]["consistency"]


@pytest.mark.parametrize("probe", PROBES["inclusion"], ids=lambda p: p["file"])
def test_inclusion_probe_is_accepted_or_rejected_as_transparency_dev_does(probe: dict[str, Any]) -> None:
    ok = verify_inclusion(
        h(probe["leaf_hash"]), probe["leaf_index"], probe["tree_size"], hs(probe["proof"]), h(probe["root"])
    )
    assert ok is not probe["want_error"]


@pytest.mark.parametrize("probe", PROBES["consistency"], ids=lambda p: p["file"])
def test_consistency_probe_is_accepted_or_rejected_as_transparency_dev_does(probe: dict[str, Any]) -> None:
    ok = verify_consistency(
        probe["size1"], probe["size2"], h(probe["root1"]), h(probe["root2"]), hs(probe["proof"])
    )
    assert ok is not probe["want_error"]


def _is_valid_subtree(start: int, end: int) -> bool:
    """Apply the vector file's validity rule for a subtree [start, end)."""
    if start > end:
        return False
    if start in (0, end):
        return True
    bit_ceil = 1 << (end - start - 1).bit_length()
    return start % bit_ceil == 0


def test_accumulated_subtree_hashes_reproduce_the_draft_vector() -> None:
    acc = VECTORS["subtree_accumulated"]
    leaves = [leaf_hash(bytes([i])) for i in range(130)]
    running = hashlib.sha256()
    # The published value folds in empty ranges too (start == end, hashed as SHA-256("")).
    for end in range(131):
        for start in range(end + 1):
            if _is_valid_subtree(start, end):
                running.update(f"[{start}, {end}) {subtree_hash(leaves, start, end).hex()}\n".encode())
    assert running.hexdigest() == acc["subtree_hash_sha256"]


@pytest.mark.parametrize("case", VECTORS["extra_small_vectors"]["cases"], ids=lambda c: str(c["leaves_utf8"]))
def test_small_tree_root_matches_the_published_value(case: dict[str, Any]) -> None:
    leaves = [leaf_hash(x.encode("utf-8")) for x in case["leaves_utf8"]]
    assert len(leaves) == case["tree_size"]
    assert root(leaves).hex() == case["root"]
