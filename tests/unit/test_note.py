"""Signed notes (c2sp.org/signed-note) with Ed25519 and tlog checkpoint bodies."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from tests.testdata import shared_testdata
from thawline.oplog.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    format_vkey,
    key_id,
    open_note,
    parse_vkey,
)

VECTORS_PATH = shared_testdata("merkle_vectors.json")
EXAMPLE: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["signed_note_ed25519"]

ROOT = bytes(range(32))
ORIGIN = "thawline.example/log"


def seeded_signer(name: str, seed: int) -> Signer:
    """Return a signer with a deterministic key."""
    return Signer(name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def example_verifier() -> Verifier:
    """Return the verifier of the spec's example key."""
    return Verifier(
        EXAMPLE["key_name"], Ed25519PublicKey.from_public_bytes(bytes.fromhex(EXAMPLE["public_key_hex"]))
    )


def test_example_key_id_matches_the_spec() -> None:
    got = key_id(EXAMPLE["key_name"], bytes.fromhex(EXAMPLE["public_key_hex"]))
    assert got.hex() == EXAMPLE["key_id_hex"]


def test_example_vkey_parses_to_the_published_key_and_formats_back() -> None:
    verifier = parse_vkey(EXAMPLE["vkey"])
    assert verifier.name == EXAMPLE["key_name"]
    assert verifier.key_id.hex() == EXAMPLE["key_id_hex"]
    assert verifier.public_key.hex() == EXAMPLE["public_key_hex"]
    assert verifier.vkey == EXAMPLE["vkey"]
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(EXAMPLE["public_key_hex"]))
    assert format_vkey(EXAMPLE["key_name"], public_key) == EXAMPLE["vkey"]


def test_example_note_opens_to_its_text() -> None:
    assert EXAMPLE["full_note"] == EXAMPLE["note_text"] + "\n" + EXAMPLE["signature_line"] + "\n"
    assert open_note(EXAMPLE["full_note"], [parse_vkey(EXAMPLE["vkey"])]) == EXAMPLE["note_text"]


def test_example_note_is_refused_when_its_text_is_changed() -> None:
    tampered = EXAMPLE["full_note"].replace("example message", "exemplary message")
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, [example_verifier()])


def test_signed_note_opens_to_the_same_text() -> None:
    signer = seeded_signer(ORIGIN, 1)
    text = "hello\n\nwith an empty line inside\n"
    note = signer.sign_note(text)
    assert note.startswith(text + "\n\u2014 " + ORIGIN + " ")
    assert open_note(note, [parse_vkey(signer.vkey)]) == text
    assert parse_vkey(signer.vkey).key_id == signer.key_id == signer.verifier().key_id


def test_a_note_signed_by_another_key_with_the_same_name_is_refused() -> None:
    note = seeded_signer(ORIGIN, 1).sign_note("text\n")
    with pytest.raises(NoteError, match="not signed by any known key"):
        open_note(note, [seeded_signer(ORIGIN, 2).verifier()])


def test_a_note_from_a_known_key_with_a_broken_signature_is_refused() -> None:
    signer = seeded_signer(ORIGIN, 1)
    note = signer.sign_note("text\n")
    head, sig64 = note[:-1].rsplit(" ", 1)
    sig = bytearray(base64.b64decode(sig64))
    sig[-1] ^= 1
    broken = f"{head} {base64.b64encode(bytes(sig)).decode()}\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(broken, [signer.verifier()])


def test_unknown_signatures_are_ignored_when_a_known_key_verifies() -> None:
    known, witness = seeded_signer(ORIGIN, 1), seeded_signer("witness.example/w1", 3)
    text = "text\n"
    note = known.sign_note(text) + witness.sign_note(text).split("\n\n", 1)[1]
    assert note.count("\u2014 ") == 2
    assert open_note(note, [known.verifier()]) == text
    assert open_note(note, [witness.verifier()]) == text
    assert open_note(note, [known.verifier(), witness.verifier()]) == text


def test_a_note_signed_only_by_unknown_keys_is_refused() -> None:
    note = seeded_signer("stranger.example", 4).sign_note("text\n")
    with pytest.raises(NoteError, match="not signed by any known key"):
        open_note(note, [seeded_signer(ORIGIN, 1).verifier()])


def test_two_different_keys_behind_one_name_and_key_id_are_refused() -> None:
    real = seeded_signer(ORIGIN, 1).verifier()
    impostor = seeded_signer(ORIGIN, 2).verifier()
    impostor.key_id = real.key_id  # simulate a key-ID collision
    with pytest.raises(NoteError, match="share name"):
        open_note(seeded_signer(ORIGIN, 1).sign_note("text\n"), [real, impostor])


GOOD = seeded_signer(ORIGIN, 1)
GOOD_NOTE = GOOD.sign_note("text\n")
GOOD_LINE = GOOD_NOTE.split("\n\n", 1)[1]
GOOD_SIG64 = GOOD_LINE.rsplit(" ", 1)[1][:-1]


@pytest.mark.parametrize(
    "note",
    [
        pytest.param("text\n" + GOOD_LINE, id="no-blank-line"),
        pytest.param(GOOD_NOTE[:-1], id="no-final-newline"),
        pytest.param("text\n\n", id="no-signature-lines"),
        pytest.param(GOOD_NOTE.replace("\u2014", "-"), id="hyphen-not-em-dash"),
        pytest.param(GOOD_NOTE.replace("\u2014 ", "\u2014"), id="no-space-after-dash"),
        pytest.param(GOOD_NOTE + "trailing garbage\n", id="garbage-line"),
        pytest.param(GOOD_NOTE.replace(GOOD_SIG64, GOOD_SIG64[:-1]), id="truncated-base64"),
        pytest.param(GOOD_NOTE.replace(GOOD_SIG64, "!" + GOOD_SIG64[1:]), id="bad-base64-character"),
        pytest.param(
            GOOD_NOTE.replace(GOOD_SIG64, base64.b64encode(b"abcd").decode()), id="signature-too-short"
        ),
        pytest.param(GOOD_NOTE.replace(f" {GOOD_SIG64}", ""), id="no-signature"),
        pytest.param(f"text\n\n\u2014 thawline+example/log {GOOD_SIG64}\n", id="plus-in-name"),
        pytest.param(f"text\n\n\u2014  {GOOD_SIG64}\n", id="empty-name"),
        pytest.param("te\x07xt\n" + GOOD_NOTE[4:], id="control-character"),
        pytest.param("text\r\n\n" + GOOD_LINE, id="carriage-return"),
        pytest.param("text\n\n" + GOOD_LINE * 101, id="too-many-signatures"),
        pytest.param("\ud800\n\n" + GOOD_LINE, id="lone-surrogate"),
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [GOOD.verifier()])


def test_a_signature_whose_base64_has_nonzero_padding_bits_is_refused() -> None:
    # The last character of a 68-byte payload carries 2 padding bits; setting them keeps the bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = GOOD_SIG64.rstrip("=")
    sloppy = body[:-1] + alphabet[alphabet.index(body[-1]) | 1] + GOOD_SIG64[len(body) :]
    assert base64.b64decode(sloppy) == base64.b64decode(GOOD_SIG64)
    with pytest.raises(NoteError, match="non-canonical"):
        open_note(GOOD_NOTE.replace(GOOD_SIG64, sloppy), [GOOD.verifier()])


@pytest.mark.parametrize("text", ["no newline", "", "bell\x07\n"])
def test_signing_refuses_text_that_is_not_a_note(text: str) -> None:
    with pytest.raises(NoteError):
        GOOD.sign_note(text)


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\tname", "nbsp\u00a0name"])
def test_key_names_with_spaces_or_plus_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        Signer(name, Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))


@pytest.mark.parametrize(
    "vkey",
    [
        pytest.param("example.com/foo+530d903a", id="missing-key"),
        pytest.param("example.com/foo", id="name-only"),
        pytest.param(EXAMPLE["vkey"].replace("530d903a", "530d903b"), id="wrong-key-id"),
        pytest.param(EXAMPLE["vkey"].replace("530d903a", "530D903A"), id="uppercase-key-id"),
        pytest.param(EXAMPLE["vkey"].replace("530d903a", "530d903"), id="short-key-id"),
        pytest.param(EXAMPLE["vkey"].replace("example.com/foo", "example.com/bar"), id="renamed"),
        pytest.param(EXAMPLE["vkey"].replace("+Aek", "+Auk"), id="wrong-type-byte"),
        pytest.param(EXAMPLE["vkey"][:-4], id="short-key"),
        pytest.param(EXAMPLE["vkey"] + "AAAA", id="long-key"),
        pytest.param(EXAMPLE["vkey"] + "!", id="bad-base64"),
        pytest.param("+530d903a+" + EXAMPLE["vkey"].rsplit("+", 1)[1], id="empty-name"),
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # each case fails for its own reason
        parse_vkey(vkey)


def test_checkpoint_body_has_origin_size_and_base64_root_lines() -> None:
    root64 = base64.b64encode(ROOT).decode()
    assert Checkpoint(ORIGIN, 5, ROOT).body() == f"{ORIGIN}\n5\n{root64}\n"
    assert (
        Checkpoint(ORIGIN, 0, ROOT, ("ext one", "ext two")).body()
        == f"{ORIGIN}\n0\n{root64}\next one\next two\n"
    )


def test_the_spec_example_checkpoint_parses() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = Checkpoint.parse(body)
    assert (cp.origin, cp.size, len(cp.root), cp.extensions) == (
        "example.com/behind-the-sofa",
        20852163,
        32,
        (),
    )
    assert cp.body() == body


def test_a_signed_checkpoint_opens_and_parses_back() -> None:
    cp = Checkpoint(ORIGIN, 42, ROOT, ("note: test",))
    note = GOOD.sign_note(cp.body())
    assert Checkpoint.parse(open_note(note, [GOOD.verifier()])) == cp


ROOT64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f"{ORIGIN}\n05\n{ROOT64}\n", id="leading-zero"),
        pytest.param(f"{ORIGIN}\n00\n{ROOT64}\n", id="double-zero"),
        pytest.param(f"{ORIGIN}\n+5\n{ROOT64}\n", id="plus-sign"),
        pytest.param(f"{ORIGIN}\n-1\n{ROOT64}\n", id="negative"),
        pytest.param(f"{ORIGIN}\n 5\n{ROOT64}\n", id="space"),
        pytest.param(f"{ORIGIN}\n1_000\n{ROOT64}\n", id="underscore"),
        pytest.param(f"{ORIGIN}\n\uff15\n{ROOT64}\n", id="fullwidth-digit"),
        pytest.param(f"{ORIGIN}\n0x5\n{ROOT64}\n", id="hex"),
        pytest.param(f"{ORIGIN}\n18446744073709551616\n{ROOT64}\n", id="over-64-bits"),
        pytest.param(f"{ORIGIN}\n{'9' * 5000}\n{ROOT64}\n", id="huge-number"),
        pytest.param(f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", id="short-root"),
        pytest.param(f"{ORIGIN}\n5\n{base64.b64encode(ROOT + b'x').decode()}\n", id="long-root"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT64.rstrip('=')}\n", id="unpadded-root"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT64[:-2]}B=\n", id="nonzero-padding-bits"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT64}", id="no-final-newline"),
        pytest.param(f"{ORIGIN}\n5\n", id="no-root"),
        pytest.param(f"\n5\n{ROOT64}\n", id="empty-origin"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT64}\n\next\n", id="empty-extension-line"),
        pytest.param(f"{ORIGIN}\n5\n{ROOT64}\n\n", id="trailing-blank-line"),
        pytest.param(f"{ORIGIN}\r\n5\n{ROOT64}\n", id="carriage-return"),
    ],
)
def test_checkpoint_parsing_is_strict(body: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(body)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("two\nlines",)),
    ],
)
def test_checkpoint_refuses_values_it_could_not_write(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="must"):
        Checkpoint(origin, size, root, extensions)


LINE = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n", min_codepoint=0x20),
    min_size=1,
    max_size=20,
)


@given(LINE, st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32), st.lists(LINE, max_size=3))
def test_checkpoint_body_round_trips(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert Checkpoint.parse(cp.body()) == cp


@given(st.text(max_size=120))
def test_checkpoint_parsing_only_ever_raises_note_error(body: str) -> None:
    with contextlib.suppress(NoteError):
        Checkpoint.parse(body)


@given(st.text(max_size=200))
def test_opening_arbitrary_text_only_ever_raises_note_error(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [GOOD.verifier()])
