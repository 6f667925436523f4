"""Property tests for the Merkle tree: proofs verify, any corruption fails, builders stay cache-friendly."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thawline.oplog.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    consistency_proof_from,
    inclusion_proof,
    inclusion_proof_from,
    leaf_hash,
    root,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

MAX_LEAVES = 200


def make_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """Return n distinct leaf hashes."""
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def flip_bit(value: bytes, bit: int) -> bytes:
    """Return value with one bit flipped (bit taken modulo the bit length)."""
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def is_aligned(start: int, end: int) -> bool:
    """Whether [start, end) is a complete aligned power-of-two range."""
    n = end - start
    return n > 0 and n & (n - 1) == 0 and start % n == 0


def is_right_edge(start: int, end: int, size: int) -> bool:
    """Whether [start, end) ends at size and starts on a boundary of its own bit_ceil width."""
    n = end - start
    return end == size and n > 0 and start % (1 << (n - 1).bit_length()) == 0


@st.composite
def trees(draw: st.DrawFn, min_size: int = 1) -> list[bytes]:
    """Draw a list of leaf hashes."""
    n = draw(st.integers(min_value=min_size, max_value=MAX_LEAVES))
    return make_leaves(n, draw(st.binary(max_size=4)))


# One shared tree lets the exhaustive tests reuse memoised subtree hashes.
SHARED = make_leaves(MAX_LEAVES, b"shared")


@cache
def shared_subtree(start: int, end: int) -> bytes:
    """Memoised subtree hash of the shared tree."""
    return subtree_hash(SHARED, start, end)


@cache
def shared_root(size: int) -> bytes:
    """Memoised root of the shared tree's prefix."""
    return root(SHARED[:size])


@given(trees(), st.data())
def test_generated_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(leaves, index)
    assert verify_inclusion(leaves[index], index, len(leaves), proof, root(leaves))


@given(trees(), st.data())
def test_generated_consistency_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    old = data.draw(st.integers(1, len(leaves)))
    proof = consistency_proof(leaves, old)
    assert verify_consistency(old, len(leaves), root(leaves[:old]), root(leaves), proof)


def test_every_inclusion_proof_up_to_the_maximum_size_verifies() -> None:
    for size in range(1, MAX_LEAVES + 1, 7):
        for index in range(size):
            proof = inclusion_proof_from(shared_subtree, index, size)
            assert verify_inclusion(SHARED[index], index, size, proof, shared_root(size))


def test_every_consistency_proof_up_to_the_maximum_size_verifies() -> None:
    for new in range(1, MAX_LEAVES + 1, 5):
        for old in range(1, new + 1):
            proof = consistency_proof_from(shared_subtree, old, new)
            assert verify_consistency(old, new, shared_root(old), shared_root(new), proof)


@given(trees(), st.data())
def test_flipping_any_bit_of_an_inclusion_proof_makes_it_fail(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof, top, leaf = inclusion_proof(leaves, index), root(leaves), leaves[index]
    bit = data.draw(st.integers(0, 255))
    for i in range(len(proof)):
        bad = [*proof[:i], flip_bit(proof[i], bit), *proof[i + 1 :]]
        assert not verify_inclusion(leaf, index, n, bad, top)
    assert not verify_inclusion(flip_bit(leaf, bit), index, n, proof, top)
    assert not verify_inclusion(leaf, index, n, proof, flip_bit(top, bit))


@given(trees(), st.data())
def test_changing_the_length_of_an_inclusion_proof_makes_it_fail(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof, top, leaf = inclusion_proof(leaves, index), root(leaves), leaves[index]
    extra = data.draw(st.binary(min_size=32, max_size=32))
    assert not verify_inclusion(leaf, index, n, [*proof, extra], top)
    assert not verify_inclusion(leaf, index, n, [extra, *proof], top)
    if proof:
        assert not verify_inclusion(leaf, index, n, proof[:-1], top)
        assert not verify_inclusion(leaf, index, n, [proof[0][:-1], *proof[1:]], top)
        assert not verify_inclusion(leaf, index, n, [proof[0] + b"\x00", *proof[1:]], top)
    assert not verify_inclusion(leaf[:-1], index, n, proof, top)
    assert not verify_inclusion(leaf, index, n, proof, top + b"\x00")
    assert not verify_inclusion(leaf, index, n, proof, top[:-1])


@given(trees(), st.data())
def test_flipping_any_bit_of_a_consistency_proof_makes_it_fail(
    leaves: list[bytes], data: st.DataObject
) -> None:
    new = len(leaves)
    old = data.draw(st.integers(1, new))
    proof, old_root, new_root = consistency_proof(leaves, old), root(leaves[:old]), root(leaves)
    bit = data.draw(st.integers(0, 255))
    for i in range(len(proof)):
        bad = [*proof[:i], flip_bit(proof[i], bit), *proof[i + 1 :]]
        assert not verify_consistency(old, new, old_root, new_root, bad)
    assert not verify_consistency(old, new, flip_bit(old_root, bit), new_root, proof)
    assert not verify_consistency(old, new, old_root, flip_bit(new_root, bit), proof)


@given(trees(), st.data())
def test_changing_the_length_of_a_consistency_proof_makes_it_fail(
    leaves: list[bytes], data: st.DataObject
) -> None:
    new = len(leaves)
    old = data.draw(st.integers(1, new))
    proof, old_root, new_root = consistency_proof(leaves, old), root(leaves[:old]), root(leaves)
    extra = data.draw(st.binary(min_size=32, max_size=32))
    assert not verify_consistency(old, new, old_root, new_root, [*proof, extra])
    assert not verify_consistency(old, new, old_root, new_root, [extra, *proof])
    if proof:
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
        assert not verify_consistency(old, new, old_root, new_root, [proof[0][:-1], *proof[1:]])
        assert not verify_consistency(old, new, old_root, new_root, [*proof[:-1], proof[-1] + b"\x00"])
    if old != new:
        assert not verify_consistency(old, new, old_root[:-1], new_root, proof)
        assert not verify_consistency(old, new, old_root, new_root + b"\x00", proof)


@given(trees(), st.data())
def test_a_proof_for_the_wrong_index_fails(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof, top = inclusion_proof(leaves, index), root(leaves)
    other = data.draw(st.integers(-1, 2 * n).filter(lambda i: i != index))
    assert not verify_inclusion(leaves[index], other, n, proof, top)
    too_small = data.draw(st.integers(-1, index))
    assert not verify_inclusion(leaves[index], index, too_small, proof, top)


def test_an_inclusion_proof_alone_does_not_bind_the_tree_size() -> None:
    # Leaf 0's path in trees of 129 and 130 leaves has the same shape, so the size must come from a
    # signed checkpoint next to the root; verify_inclusion cannot tell the two apart.
    leaves = SHARED[:129]
    proof = inclusion_proof(leaves, 0)
    assert verify_inclusion(leaves[0], 0, 129, proof, root(leaves))
    assert verify_inclusion(leaves[0], 0, 130, proof, root(leaves))


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.binary(max_size=40),
    st.text(max_size=5),
    st.lists(st.binary(max_size=40), max_size=4),
    st.lists(st.integers(), max_size=3),
    st.floats(allow_nan=True),
)


@given(JUNK, JUNK, JUNK, JUNK, JUNK)
def test_verifiers_return_false_instead_of_raising_on_garbage(
    a: object, b: object, c: object, d: object, e: object
) -> None:
    assert verify_inclusion(a, b, c, d, e) is False  # type: ignore[arg-type]
    assert verify_consistency(a, b, c, d, e) is False  # type: ignore[arg-type]


@settings(max_examples=50)
@given(trees(min_size=0))
def test_compact_range_root_equals_the_tree_root_at_every_size(leaves: list[bytes]) -> None:
    cr = CompactRange()
    assert cr.root() == EMPTY_ROOT
    for i, leaf in enumerate(leaves, start=1):
        cr.append(leaf)
        assert cr.size == i
        assert len(cr.hashes) == i.bit_count()
        assert cr.root() == root(leaves[:i])


@settings(max_examples=50)
@given(trees(min_size=0))
def test_compact_range_append_reports_exactly_the_aligned_subtrees_it_completed(leaves: list[bytes]) -> None:
    cr = CompactRange()
    for size, leaf in enumerate(leaves, start=1):
        completed = cr.append(leaf)
        expected = []
        level = 1
        while size % (1 << level) == 0:
            expected.append((level, size // (1 << level) - 1))
            level += 1
        assert [(lv, idx) for lv, idx, _ in completed] == expected
        for lv, idx, digest in completed:
            assert digest == subtree_hash(leaves, idx << lv, (idx + 1) << lv)


@given(trees(min_size=0))
def test_compact_range_survives_a_bytes_round_trip_at_every_size(leaves: list[bytes]) -> None:
    cr = CompactRange()
    for leaf in leaves:
        cr.append(leaf)
    data = cr.to_bytes()
    assert len(data) == 8 + 32 * cr.size.bit_count()
    again = CompactRange.from_bytes(data)
    assert again == cr
    assert again.root() == cr.root()
    assert CompactRange(cr.size, cr.hashes) == cr
    with pytest.raises(ValueError, match="compact range"):
        CompactRange.from_bytes(data + b"\x00")
    if cr.size:
        with pytest.raises(ValueError, match="compact range"):
            CompactRange.from_bytes(data[:-1])


def test_a_restored_compact_range_keeps_growing_like_the_original() -> None:
    leaves = make_leaves(77)
    cr = CompactRange()
    for leaf in leaves[:45]:
        cr.append(leaf)
    restored = CompactRange.from_bytes(cr.to_bytes())
    for leaf in leaves[45:]:
        restored.append(leaf)
    assert restored.root() == root(leaves)


@pytest.mark.parametrize(
    ("size", "hashes"),
    [(-1, ()), (3, (b"\x00" * 32,)), (1, (b"\x00" * 31,)), (0, (b"\x00" * 32,)), (True, (b"\x00" * 32,))],
)
def test_compact_range_refuses_a_size_and_hashes_that_disagree(size: int, hashes: tuple[bytes, ...]) -> None:
    with pytest.raises(ValueError, match="size"):
        CompactRange(size, hashes)


def test_compact_range_refuses_a_leaf_hash_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append(b"short")


@given(st.integers(1, MAX_LEAVES), st.data())
def test_inclusion_builder_only_asks_for_aligned_or_right_edge_subtrees(
    size: int, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, size - 1))
    asked: list[tuple[int, int]] = []

    def subtree(start: int, end: int) -> bytes:
        asked.append((start, end))
        return shared_subtree(start, end)

    proof = inclusion_proof_from(subtree, index, size)
    assert proof == inclusion_proof(SHARED[:size], index)
    assert all(is_aligned(s, e) or is_right_edge(s, e, size) for s, e in asked), asked


@given(st.integers(1, MAX_LEAVES), st.data())
def test_consistency_builder_only_asks_for_aligned_or_right_edge_subtrees(
    new: int, data: st.DataObject
) -> None:
    old = data.draw(st.integers(1, new))
    asked: list[tuple[int, int]] = []

    def subtree(start: int, end: int) -> bytes:
        asked.append((start, end))
        return shared_subtree(start, end)

    proof = consistency_proof_from(subtree, old, new)
    assert proof == consistency_proof(SHARED[:new], old)
    assert all(is_aligned(s, e) or is_right_edge(s, e, new) for s, e in asked), asked


@pytest.mark.parametrize(("index", "size"), [(0, 0), (3, 3), (-1, 4), (5, 4)])
def test_inclusion_builder_refuses_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof_from(shared_subtree, index, size)


@pytest.mark.parametrize(("old", "new"), [(0, 0), (0, 5), (6, 5), (-1, 3)])
def test_consistency_builder_refuses_sizes_that_cannot_be_proved(old: int, new: int) -> None:
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof_from(shared_subtree, old, new)


def test_builders_refuse_a_storage_layer_that_returns_a_bad_hash() -> None:
    with pytest.raises(ValueError, match="32-byte hash"):
        inclusion_proof_from(lambda _s, _e: b"bad", 0, 2)


@given(
    st.integers(min_value=0, max_value=70),
    st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=6),
    st.sampled_from([1, 2, 3]),
)
def test_extend_matches_appending_leaf_by_leaf(prefix: int, batches: list[int], step: int) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(prefix + sum(batches))]
    one_by_one = CompactRange()
    expected = []
    for leaf in leaves[:prefix]:
        one_by_one.append(leaf)
    bulk = CompactRange(one_by_one.size, one_by_one.hashes)
    got = []
    at = prefix
    for n in batches:
        for leaf in leaves[at : at + n]:
            expected += [c for c in one_by_one.append(leaf) if c[0] % step == 0]
        got += bulk.extend(leaves[at : at + n], step)
        at += n
        assert bulk == one_by_one
    assert sorted(got) == sorted(expected)
