"""Signed notes, checkpoints, DSSE envelopes and key files, against published vectors.

Sources of the published values:

* C2SP signed-note: ``golang/mod`` ``sumdb/note/note_test.go`` (TestNewVerifier, TestSign,
  TestOpen): the PeterNeumann and EnochRoot keys, the text and both signature lines.
* Ed25519: RFC 8032 section 7.1 TEST 1, as carried by ``ZcashFoundation/ed25519-zebra``
  ``tests/rfc8032.rs`` (``rfc8032_test_1``).
* DSSE: ``secure-systems-lab/dsse`` ``protocol.md`` ("Test Vectors": PAE and the JSON envelope).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from permitgate_client import (
    BadSignatureError,
    ExpiredError,
    FromTheFutureError,
    MalformedError,
    RollbackError,
    VerificationError,
    VerifierKey,
    WrongOriginError,
    WrongStructureError,
)
from permitgate_client.formats import (
    Checkpoint,
    key_id,
    pae,
    parse_envelope,
    verify_checkpoint,
    verify_envelope,
    verify_note,
)

from registry.canonical import canonical_json
from registry.merkle import leaf_hash, root_of
from registry.records import Case, Permit, StatusRecord, Structure
from registry.signing import KeyFileError, Signer, ensure_signer, load_signer, load_verifier
from registry.trust import STATUS_PAYLOAD_TYPE, verify_status_record
from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage, PermitKind, PermitStatus

# --- golang/mod sumdb/note/note_test.go --------------------------------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
NOTE_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = (NOTE_TEXT + "\n" + PETER_SIG).encode()

# --- RFC 8032 section 7.1 TEST 1 (ZcashFoundation/ed25519-zebra tests/rfc8032.rs) ---------------

RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

# --- secure-systems-lab/dsse protocol.md, "Test Vectors" ----------------------------------------

DSSE_TYPE = "http://example.com/HelloWorld"
DSSE_BODY = b"hello world"
DSSE_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
DSSE_ENVELOPE = (
    b'{"payload": "aGVsbG8gd29ybGQ=",\n'
    b' "payloadType": "http://example.com/HelloWorld",\n'
    b' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJ'
    b'PcIAriEGAHTVeCUjW2JIZA=="}]}'
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
T1 = datetime(2024, 3, 2, tzinfo=UTC)


def _go_signer_seed(skey: str) -> tuple[str, bytes]:
    """Decode a Go note signer key: PRIVATE+KEY+name+hash+base64(0x01 || 32-byte seed).

    The base64 part may itself contain '+', so split at most four times (not at the last '+').
    """
    prefix, key, name, _hash, blob = skey.split("+", 4)
    assert (prefix, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(blob, validate=True)
    assert len(raw) == 33
    assert raw[0] == 0x01
    return name, raw[1:]


def _peter_signer() -> Signer:
    name, seed = _go_signer_seed(PETER_SKEY)
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed))


def _seeded_signer(name: str, i: int) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"%d" % i).digest()))


def _signer_with_plus_in_key(name: str) -> Signer:
    """A deterministic signer whose verifier key's base64 part contains '+'."""
    for i in range(1000):
        signer = _seeded_signer(name, i)
        if "+" in signer.verifier.text.split("+", 2)[2]:
            return signer
    raise AssertionError("no seed gave a '+' in the key")  # pragma: no cover


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# =================================================================================================
# Verifier keys
# =================================================================================================


def test_published_verifier_key_parses() -> None:
    key = VerifierKey.from_text(PETER_VKEY)
    assert key.name == "PeterNeumann"
    assert key.id == bytes.fromhex("c74f20a3")
    assert key.text == PETER_VKEY
    raw = base64.b64decode(PETER_VKEY.split("+", 2)[2])
    assert key.public_key == raw[1:]
    # The key id recomputed independently: SHA-256(name || "\n" || 0x01 || key)[:4].
    assert hashlib.sha256(b"PeterNeumann\n" + raw).digest()[:4].hex() == "c74f20a3"
    assert key_id("PeterNeumann", raw[1:]).hex() == "c74f20a3"


def test_second_published_verifier_key_parses() -> None:
    key = VerifierKey.from_text(ENOCH_VKEY)
    assert (key.name, key.id.hex(), key.text) == ("EnochRoot", "af0cfe78", ENOCH_VKEY)


def test_published_verifier_key_surrounding_whitespace_is_ignored() -> None:
    assert VerifierKey.from_text(PETER_VKEY + "\n") == VerifierKey.from_text(PETER_VKEY)


def test_verifier_key_manglings_rejected() -> None:
    """golang/mod TestNewVerifier: every proper substring and every one-byte change fails."""
    b = PETER_VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if i == 0 and j == len(b):
                continue
            with pytest.raises(ValueError):
                VerifierKey.from_text(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(ValueError):
            VerifierKey.from_text(mangled.decode())
    # Wrong-length key and unknown algorithm, each with an adjusted key hash (from note_test.go).
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        VerifierKey.from_text(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        VerifierKey.from_text("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_verifier_key_with_wrong_key_id_rejected() -> None:
    with pytest.raises(ValueError, match="verifier key id does not match its name and key"):
        VerifierKey.from_text(PETER_VKEY.replace("c74f20a3", "c74f20a4"))
    # Same key under another name: the id no longer matches either.
    with pytest.raises(ValueError, match="verifier key id does not match its name and key"):
        VerifierKey.from_text(PETER_VKEY.replace("PeterNeumann", "PeterNeuman"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("PeterNeumann+c74f20a3", r"a verifier key has the form name\+keyid\+key"),
        ("PeterNeumann+zz4f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not well formed"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T!", "not well formed"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name must be non-empty"),
    ],
)
def test_malformed_verifier_keys(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        VerifierKey.from_text(text)


def test_verifier_key_derived_forms_are_stored_once_and_do_not_change_equality() -> None:
    """The key id and both texts are computed when the key is made (the gate reads them for
    every record it verifies); a key still equals, and hashes as, any key of the same name and
    public key, and a replaced key gets its own derived forms."""
    key = VerifierKey.from_text(PETER_VKEY)
    stored = vars(key)
    assert stored["id"] == bytes.fromhex("c74f20a3")
    assert stored["keyid_text"] == "PeterNeumann+c74f20a3"
    assert stored["text"] == PETER_VKEY
    assert key.keyid_text is key.keyid_text  # the same object: not rebuilt on access
    twin = VerifierKey(key.name, key.public_key)
    assert twin == key and hash(twin) == hash(key) and {twin, key} == {key}
    assert repr(key) == f"VerifierKey(name='PeterNeumann', public_key={key.public_key!r})"
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.id = b"\0\0\0\0"  # type: ignore[misc]
    renamed = dataclasses.replace(key, name="PeterNeumann2")
    assert renamed != key
    assert renamed.id == key_id("PeterNeumann2", key.public_key)
    assert renamed.text.startswith(f"PeterNeumann2+{renamed.id.hex()}+")
    assert VerifierKey.from_text(renamed.text) == renamed


def test_verifier_key_whose_base64_contains_plus_round_trips() -> None:
    # Base64 may hold '+', so a verifier key has more than two '+' characters about half the time.
    signer = _signer_with_plus_in_key("registry.example")
    assert signer.verifier.text.count("+") > 2
    assert VerifierKey.from_text(signer.verifier.text) == signer.verifier
    for i in range(64):
        verifier = _seeded_signer("log", i).verifier
        assert VerifierKey.from_text(verifier.text) == verifier


# =================================================================================================
# Ed25519: RFC 8032 TEST 1
# =================================================================================================


def test_rfc8032_test_1() -> None:
    private = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    signer = Signer("rfc8032", private)
    assert signer.verifier.public_key == RFC8032_PUBLIC
    assert signer.sign(b"") == RFC8032_SIGNATURE
    verifier = VerifierKey("rfc8032", RFC8032_PUBLIC)
    assert verifier.verify(RFC8032_SIGNATURE, b"")
    assert not verifier.verify(RFC8032_SIGNATURE, b"\x00")
    assert not verifier.verify(_flip(RFC8032_SIGNATURE, 0), b"")
    assert not verifier.verify(_flip(RFC8032_SIGNATURE, 63), b"")


# =================================================================================================
# Signed notes
# =================================================================================================


def test_published_note_verifies() -> None:
    peter = VerifierKey.from_text(PETER_VKEY)
    body, signers = verify_note(PETER_NOTE, [peter])
    assert body == NOTE_TEXT.encode()
    assert signers == [peter]


def test_signer_reproduces_published_note_byte_for_byte() -> None:
    signer = _peter_signer()
    assert signer.name == "PeterNeumann"
    assert signer.verifier.text == PETER_VKEY
    assert signer.sign_note(NOTE_TEXT.encode()) == PETER_NOTE


def test_published_cosigned_note() -> None:
    """golang/mod TestOpen: a note signed by PeterNeumann and EnochRoot."""
    peter, enoch = VerifierKey.from_text(PETER_VKEY), VerifierKey.from_text(ENOCH_VKEY)
    note = (NOTE_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    # One known key: the other signature is ignored as a cosignature.
    assert verify_note(note, [peter]) == (NOTE_TEXT.encode(), [peter])
    assert verify_note(note, [enoch]) == (NOTE_TEXT.encode(), [enoch])
    # Both known: both verify, in line order.
    assert verify_note(note, [enoch, peter]) == (NOTE_TEXT.encode(), [peter, enoch])
    # None known.
    with pytest.raises(BadSignatureError):
        verify_note(note, [])


def test_published_invalid_signature() -> None:
    """golang/mod TestOpen: 'ABCD' spliced into the signature keeps the key id, breaks the sig."""
    peter = VerifierKey.from_text(PETER_VKEY)
    note = (NOTE_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]).encode()
    with pytest.raises(BadSignatureError):
        verify_note(note, [peter])


@pytest.mark.parametrize(
    ("note", "error"),
    [
        (NOTE_TEXT, MalformedError),
        (NOTE_TEXT + "\n", BadSignatureError),  # a blank line, then no signature at all
        (NOTE_TEXT + "\n" + PETER_SIG[:-1], MalformedError),
        ("\x01" + NOTE_TEXT + "\n" + PETER_SIG, BadSignatureError),
        (NOTE_TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name")[:-1], MalformedError),
        (NOTE_TEXT + "\n" + PETER_SIG + "Unexpected line.\n", MalformedError),
    ],
)
def test_published_malformed_notes_rejected(note: str, error: type[VerificationError]) -> None:
    """golang/mod TestOpen badMsgs (all rejected; the step named may differ from Go's)."""
    with pytest.raises(error):
        verify_note(note.encode(), [VerifierKey.from_text(PETER_VKEY)])


def test_published_note_with_invalid_utf8_rejected() -> None:
    note = b"\xff" + PETER_NOTE
    with pytest.raises(MalformedError):
        verify_note(note, [VerifierKey.from_text(PETER_VKEY)])


def test_note_from_signer_checked_by_hand() -> None:
    """Parse a Signer note without registry.trust and verify it with cryptography directly."""
    signer = _seeded_signer("registry.example/log", 7)
    body = b"registry.example/log\n42\n" + base64.b64encode(bytes(32)) + b"\n"
    note = signer.sign_note(body)
    text = note.decode()
    head, _, sig_block = text.rpartition("\n\n")
    assert (head + "\n").encode() == body
    lines = sig_block.split("\n")
    assert lines[-1] == ""
    assert len(lines) == 2
    dash, name, blob = lines[0].split(" ")
    assert dash == "\u2014"
    assert name == "registry.example/log"
    raw = base64.b64decode(blob, validate=True)
    assert len(raw) == 4 + 64
    public = signer.verifier.public_key
    assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], body)  # raises if invalid
    # And the published verifier-key form, rebuilt by hand.
    blob64 = base64.b64encode(b"\x01" + public).decode()
    assert signer.verifier.text == f"{name}+{raw[:4].hex()}+{blob64}"


def test_sign_note_requires_trailing_newline() -> None:
    with pytest.raises(ValueError, match="ends with a newline"):
        _peter_signer().sign_note(b"no newline")


class TestNoteTampering:
    signer = _seeded_signer("registry.example", 1)
    body = b"line one\nline two\n"

    def note(self) -> bytes:
        return self.signer.sign_note(self.body)

    def test_untampered(self) -> None:
        assert verify_note(self.note(), [self.signer.verifier]) == (
            self.body,
            [self.signer.verifier],
        )

    def test_flipped_body_byte(self) -> None:
        note = _flip(self.note(), 3)
        with pytest.raises(BadSignatureError):
            verify_note(note, [self.signer.verifier])

    def test_flipped_signature_byte(self) -> None:
        note = self.note()
        prefix, blob = note.rstrip(b"\n").rsplit(b" ", 1)
        raw = base64.b64decode(blob)
        for index in (4, 30, 67):  # first, middle and last signature byte (after the key id)
            tampered = prefix + b" " + base64.b64encode(_flip(raw, index)) + b"\n"
            with pytest.raises(BadSignatureError):
                verify_note(tampered, [self.signer.verifier])

    def test_flipped_key_id_byte_means_unknown_key(self) -> None:
        note = self.note()
        prefix, blob = note.rstrip(b"\n").rsplit(b" ", 1)
        tampered = prefix + b" " + base64.b64encode(_flip(base64.b64decode(blob), 0)) + b"\n"
        with pytest.raises(BadSignatureError):
            verify_note(tampered, [self.signer.verifier])

    def test_signature_by_another_key_with_the_same_name(self) -> None:
        other = _seeded_signer("registry.example", 2)
        with pytest.raises(BadSignatureError):
            verify_note(other.sign_note(self.body), [self.signer.verifier])

    def test_signature_line_copied_under_another_key_id(self) -> None:
        # Another key's signature presented with our key id: a known key that does not verify.
        other = _seeded_signer("registry.example", 2)
        theirs = other.sign_note(self.body)
        blob = base64.b64decode(theirs.rstrip(b"\n").rsplit(b" ", 1)[1])
        forged = self.body + b"\n\xe2\x80\x94 registry.example "
        forged += base64.b64encode(self.signer.verifier.id + blob[4:]) + b"\n"
        with pytest.raises(BadSignatureError):
            verify_note(forged, [self.signer.verifier])

    def test_unknown_key_only(self) -> None:
        stranger = _seeded_signer("stranger", 3)
        with pytest.raises(BadSignatureError):
            verify_note(stranger.sign_note(self.body), [self.signer.verifier])

    def test_malformed_base64(self) -> None:
        note = self.body + "\n\u2014 registry.example !!!!not-base64!!!!\n".encode()
        with pytest.raises(MalformedError):
            verify_note(note, [self.signer.verifier])

    def test_signature_too_short(self) -> None:
        note = self.body + "\n\u2014 registry.example AAAA\n".encode()
        with pytest.raises(MalformedError):
            verify_note(note, [self.signer.verifier])

    def test_malformed_signature_line(self) -> None:
        note = self.note() + b"- registry.example AAAAAAAA\n"
        with pytest.raises(MalformedError):
            verify_note(note, [self.signer.verifier])

    def test_no_blank_line(self) -> None:
        with pytest.raises(MalformedError):
            verify_note(self.note().replace(b"\n\n", b"\n"), [self.signer.verifier])

    def test_too_large(self) -> None:
        big = self.signer.sign_note(b"x" * (1 << 20) + b"\n")
        with pytest.raises(MalformedError):
            verify_note(big, [self.signer.verifier])


# =================================================================================================
# Checkpoints
# =================================================================================================

ORIGIN = "registry.example/log"


def _checkpoint(size: int = 8, extensions: tuple[str, ...] = ()) -> Checkpoint:
    leaves = [leaf_hash(b"%d" % i) for i in range(size)]
    return Checkpoint(ORIGIN, size, root_of(leaves), extensions)


def test_checkpoint_body_format() -> None:
    cp = _checkpoint(8, ("ext one",))
    expected = f"{ORIGIN}\n8\n{base64.b64encode(cp.root_hash).decode()}\next one\n".encode()
    assert cp.body() == expected
    assert Checkpoint.from_body(expected) == cp


def test_signed_checkpoint_round_trip() -> None:
    signer = _seeded_signer(ORIGIN, 4)
    cp = _checkpoint(5)
    note = signer.sign_note(cp.body())
    assert verify_checkpoint(note, signer.verifier) == cp
    assert verify_checkpoint(note, signer.verifier, origin=ORIGIN) == cp


def test_checkpoint_wrong_origin() -> None:
    signer = _seeded_signer(ORIGIN, 4)
    note = signer.sign_note(_checkpoint().body())
    with pytest.raises(WrongOriginError) as raised:
        verify_checkpoint(note, signer.verifier, origin="other.example/log")
    # The message names both origins, so an operator sees which log was offered.
    assert "registry.example/log" in str(raised.value)
    assert "other.example/log" in str(raised.value)


def test_checkpoint_by_another_key() -> None:
    signer, other = _seeded_signer(ORIGIN, 4), _seeded_signer(ORIGIN, 5)
    with pytest.raises(BadSignatureError):
        verify_checkpoint(other.sign_note(_checkpoint().body()), signer.verifier)


@pytest.mark.parametrize("size", ["01", "-1", "x", "", " 8", "8 ", "1e3"])
def test_checkpoint_bad_size_line(size: str) -> None:
    signer = _seeded_signer(ORIGIN, 4)
    root = base64.b64encode(bytes(32)).decode()
    note = signer.sign_note(f"{ORIGIN}\n{size}\n{root}\n".encode())
    with pytest.raises(MalformedError):
        verify_checkpoint(note, signer.verifier)


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n8\n".encode(),  # fewer than three lines
        f"{ORIGIN}\n8\nAAAA\n".encode(),  # a root hash of 3 bytes
        f"{ORIGIN}\n8\n!!!!\n".encode(),  # a root hash that is not base64
    ],
)
def test_checkpoint_bad_body(body: bytes) -> None:
    signer = _seeded_signer(ORIGIN, 4)
    with pytest.raises(MalformedError):
        verify_checkpoint(signer.sign_note(body), signer.verifier)


def test_checkpoint_body_not_utf8_is_malformed() -> None:
    with pytest.raises(MalformedError, match=r"^checkpoint: not UTF-8$"):
        Checkpoint.from_body(
            b"\xff" + f"{ORIGIN}\n8\n{base64.b64encode(bytes(32)).decode()}\n".encode()
        )


# =================================================================================================
# DSSE
# =================================================================================================


def test_pae_published_vector() -> None:
    assert pae(DSSE_TYPE, DSSE_BODY) == DSSE_PAE


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t/\u00e9", "\u00e9".encode()) == b"DSSEv1 4 t/\xc3\xa9 2 \xc3\xa9"
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_published_envelope_parses() -> None:
    env = parse_envelope(DSSE_ENVELOPE)
    assert env.payload_type == DSSE_TYPE
    assert env.payload == DSSE_BODY
    assert len(env.signatures) == 1
    keyid, sig = env.signatures[0]
    assert keyid == ""
    assert len(sig) == 64  # raw r || s of P-256


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"payload":' * 100_000])
def test_envelope_nested_too_deeply_is_malformed(data: bytes) -> None:
    """Past the JSON parser's depth: a ``MalformedError``, not the parser's RecursionError."""
    with pytest.raises(MalformedError, match=r"^envelope: malformed \(nested too deeply\)$"):
        parse_envelope(data)
    signer = _seeded_signer("registry.example", 12)
    with pytest.raises(MalformedError):
        verify_envelope(data, [signer.verifier], STATUS_PAYLOAD_TYPE)


def test_envelope_from_signer_checked_by_hand() -> None:
    signer = _peter_signer()
    payload = b'{"a":1}'
    data = signer.sign_envelope(payload, "application/vnd.example+json")
    obj = json.loads(data)
    # Canonical serialisation: sorted keys, no white space.
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert sorted(obj) == ["payload", "payloadType", "signatures"]
    assert base64.b64decode(obj["payload"], validate=True) == payload
    assert obj["payloadType"] == "application/vnd.example+json"
    [entry] = obj["signatures"]
    assert entry["keyid"] == "PeterNeumann+c74f20a3"
    sig = base64.b64decode(entry["sig"], validate=True)
    message = b"DSSEv1 %d application/vnd.example+json %d %s" % (
        len(b"application/vnd.example+json"),
        len(payload),
        payload,
    )
    Ed25519PublicKey.from_public_bytes(signer.verifier.public_key).verify(sig, message)
    assert verify_envelope(data, [signer.verifier], "application/vnd.example+json") == payload


def test_envelope_keyid_is_name_and_hex_id_for_any_key() -> None:
    # Even when the key's base64 holds '+', the keyid is exactly name+hex(key id).
    signer = _signer_with_plus_in_key("registry.example")
    obj = json.loads(signer.sign_envelope(b"{}", STATUS_PAYLOAD_TYPE))
    assert obj["signatures"][0]["keyid"] == f"registry.example+{signer.verifier.id.hex()}"


def test_envelope_keys_with_plus_still_verify() -> None:
    signer = _signer_with_plus_in_key("registry.example")
    data = signer.sign_envelope(b"{}", STATUS_PAYLOAD_TYPE)
    assert verify_envelope(data, [signer.verifier], STATUS_PAYLOAD_TYPE) == b"{}"


class TestEnvelopeTampering:
    signer = _seeded_signer("registry.example", 11)
    kind = "application/vnd.example+json"
    payload = b'{"status":"valid"}'

    def envelope(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(self.signer.sign_envelope(self.payload, self.kind))
        return loaded

    def check(
        self, obj: dict[str, Any], error: type[VerificationError], kind: str | None = None
    ) -> None:
        with pytest.raises(error):
            verify_envelope(orjson.dumps(obj), [self.signer.verifier], kind or self.kind)

    def test_untampered(self) -> None:
        assert verify_envelope(orjson.dumps(self.envelope()), [self.signer.verifier], self.kind)

    def test_flipped_payload_byte(self) -> None:
        obj = self.envelope()
        obj["payload"] = base64.b64encode(_flip(self.payload, 2)).decode()
        self.check(obj, BadSignatureError)

    def test_flipped_signature_byte(self) -> None:
        obj = self.envelope()
        [entry] = obj["signatures"]
        sig = base64.b64decode(entry["sig"])
        entry["sig"] = base64.b64encode(_flip(sig, 17)).decode()
        self.check(obj, BadSignatureError)

    def test_signature_by_another_key(self) -> None:
        other = _seeded_signer("registry.example", 12)
        data = other.sign_envelope(self.payload, self.kind)
        with pytest.raises(BadSignatureError):
            verify_envelope(data, [self.signer.verifier], self.kind)

    def test_other_keys_signature_under_our_keyid(self) -> None:
        other = _seeded_signer("registry.example", 12)
        obj: dict[str, Any] = orjson.loads(other.sign_envelope(self.payload, self.kind))
        [entry] = obj["signatures"]
        entry["keyid"] = f"registry.example+{self.signer.verifier.id.hex()}"
        self.check(obj, BadSignatureError)

    def test_wrong_payload_type(self) -> None:
        self.check(self.envelope(), MalformedError, kind="text/plain")

    def test_payload_type_changed_after_signing(self) -> None:
        obj = self.envelope()
        obj["payloadType"] = "text/plain"
        self.check(obj, BadSignatureError, kind="text/plain")

    def test_no_signatures(self) -> None:
        obj = self.envelope()
        obj["signatures"] = []
        self.check(obj, BadSignatureError)

    def test_unknown_key_only(self) -> None:
        stranger = _seeded_signer("stranger", 13)
        data = stranger.sign_envelope(self.payload, self.kind)
        with pytest.raises(BadSignatureError):
            verify_envelope(data, [self.signer.verifier], self.kind)

    def test_unknown_key_alongside_trusted_key(self) -> None:
        stranger = _seeded_signer("stranger", 13)
        obj = self.envelope()
        theirs: dict[str, Any] = orjson.loads(stranger.sign_envelope(self.payload, self.kind))
        obj["signatures"] = [*theirs["signatures"], *obj["signatures"]]
        assert verify_envelope(orjson.dumps(obj), [self.signer.verifier], self.kind)

    def test_malformed_base64_payload(self) -> None:
        obj = self.envelope()
        obj["payload"] = "!!!not base64!!!"
        self.check(obj, MalformedError)

    def test_malformed_base64_signature(self) -> None:
        obj = self.envelope()
        [entry] = obj["signatures"]
        entry["sig"] = "***"
        self.check(obj, MalformedError)

    @pytest.mark.parametrize(
        "data",
        [b"not json", b"[]", b'{"payloadType": "x", "signatures": []}', b'{"payload": 5}'],
    )
    def test_malformed_json(self, data: bytes) -> None:
        with pytest.raises(MalformedError):
            verify_envelope(data, [self.signer.verifier], self.kind)

    def test_payload_type_not_a_string(self) -> None:
        obj = self.envelope()
        obj["payloadType"] = 7
        self.check(obj, MalformedError)


# =================================================================================================
# Status records
# =================================================================================================


def _status_record() -> StatusRecord:
    structure = Structure("S-1", Area.URBAN, "Xicheng", address="1 Main St")
    permit = Permit(
        "P-1", "S-1", PermitKind.CONSTRUCTION_PLANNING, PermitStatus.VALID, T0, use="housing"
    )
    case = Case(
        "C-1",
        "S-1",
        CaseKind.NO_PLANNING_PERMIT,
        CaseStage.REPORTED,
        CaseSource.PATROL,
        T0,
    )
    return StatusRecord(structure, (permit,), (case,), 3, T0, T1)


def test_status_record_round_trip() -> None:
    signer = _seeded_signer("registry.example", 21)
    record = _status_record()
    data = signer.sign_envelope(canonical_json(record.to_json()), STATUS_PAYLOAD_TYPE)
    assert verify_status_record(data, signer.verifier) == record


def test_status_record_wrong_payload_type() -> None:
    signer = _seeded_signer("registry.example", 21)
    data = signer.sign_envelope(canonical_json(_status_record().to_json()), "application/json")
    with pytest.raises(MalformedError):
        verify_status_record(data, signer.verifier)


def test_status_record_by_another_key() -> None:
    signer, other = _seeded_signer("registry.example", 21), _seeded_signer("registry.example", 22)
    data = other.sign_envelope(canonical_json(_status_record().to_json()), STATUS_PAYLOAD_TYPE)
    with pytest.raises(BadSignatureError):
        verify_status_record(data, signer.verifier)


@pytest.mark.parametrize("payload", [b"not json", b"[]", b"{}"])
def test_signed_but_invalid_status_payload(payload: bytes) -> None:
    signer = _seeded_signer("registry.example", 21)
    data = signer.sign_envelope(payload, STATUS_PAYLOAD_TYPE)
    with pytest.raises(MalformedError):
        verify_status_record(data, signer.verifier)


def test_signed_status_payload_with_another_structures_permit() -> None:
    signer = _seeded_signer("registry.example", 21)
    obj = _status_record().to_json()
    obj["permits"][0]["structure"] = "S-2"
    data = signer.sign_envelope(canonical_json(obj), STATUS_PAYLOAD_TYPE)
    with pytest.raises(MalformedError):
        verify_status_record(data, signer.verifier)


def test_signed_status_payload_with_non_string_time() -> None:
    # parse_time runs inside from_json's try block: a non-string time is a MalformedError.
    signer = _seeded_signer("registry.example", 21)
    obj = _status_record().to_json()
    obj["this_update"] = 5
    data = signer.sign_envelope(canonical_json(obj), STATUS_PAYLOAD_TYPE)
    with pytest.raises(MalformedError):
        verify_status_record(data, signer.verifier)


def _signed(record: StatusRecord) -> bytes:
    signer = _seeded_signer("registry.example", 21)
    return signer.sign_envelope(canonical_json(record.to_json()), STATUS_PAYLOAD_TYPE)


def test_status_record_passes_every_step_when_it_fits() -> None:
    record = _status_record()  # S-1, tree size 3, good from T0 until T1
    key = _seeded_signer("registry.example", 21).verifier
    older = StatusRecord(record.structure, record.permits, record.cases, 2, T0, T1)
    assert (
        verify_status_record(
            _signed(record), key, structure_id="S-1", checkpoint_size=3, held=older, at=T0
        )
        == record
    )
    # The same record again, or re-signed later at the same tree size, is not a rollback.
    assert verify_status_record(_signed(record), key, held=record) == record
    resigned = StatusRecord(
        record.structure, record.permits, record.cases, 3, T1, T1.replace(day=9)
    )
    assert verify_status_record(_signed(resigned), key, held=record) == resigned


def test_status_record_filed_under_another_structure() -> None:
    key = _seeded_signer("registry.example", 21).verifier
    with pytest.raises(WrongStructureError) as raised:
        verify_status_record(_signed(_status_record()), key, structure_id="S-2")
    assert "'S-1'" in str(raised.value) and "'S-2'" in str(raised.value)


def test_status_record_beyond_the_checkpoint() -> None:
    key = _seeded_signer("registry.example", 21).verifier
    with pytest.raises(FromTheFutureError):
        verify_status_record(_signed(_status_record()), key, checkpoint_size=2)


@pytest.mark.parametrize(
    ("tree_size", "this_update"),
    [(4, T0), (3, datetime(2024, 3, 1, 0, 0, 1, tzinfo=UTC))],  # a larger tree; signed later
)
def test_status_record_older_than_the_one_held(tree_size: int, this_update: datetime) -> None:
    record = _status_record()
    held = StatusRecord(record.structure, record.permits, record.cases, tree_size, this_update, T1)
    key = _seeded_signer("registry.example", 21).verifier
    with pytest.raises(RollbackError):
        verify_status_record(_signed(record), key, held=held)


def test_status_record_past_its_next_update() -> None:
    key = _seeded_signer("registry.example", 21).verifier
    assert verify_status_record(
        _signed(_status_record()), key, at=datetime(2024, 3, 1, 23, 59, tzinfo=UTC)
    )
    with pytest.raises(ExpiredError):
        verify_status_record(_signed(_status_record()), key, at=T1)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_status_record(_signed(_status_record()), key, at=datetime(2024, 3, 1))


# =================================================================================================
# Key files
# =================================================================================================


def test_ensure_signer_creates_private_key_0600_then_loads_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    signer, created = ensure_signer(keys, "log", "registry.example/log")
    assert created
    private = keys / "log.key"
    public = keys / "log.pub"
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_text() == signer.verifier.text + "\n"
    again, created_again = ensure_signer(keys, "log", "ignored-name")
    assert not created_again
    assert again.verifier == signer.verifier
    assert again.name == "registry.example/log"
    note = again.sign_note(b"hello\n")
    assert verify_note(note, [signer.verifier])[1] == [signer.verifier]
    assert load_verifier(keys, "log") == signer.verifier
    assert load_signer(keys, "log").verifier == signer.verifier


def test_ensure_signer_round_trips_many_keys(tmp_path: Path) -> None:
    # About half of all Ed25519 keys have a '+' in their base64 form; all must load back.
    for i in range(16):
        signer, created = ensure_signer(tmp_path, f"role{i}", f"name{i}")
        assert created
        loaded, created = ensure_signer(tmp_path, f"role{i}", f"name{i}")
        assert not created
        assert loaded.verifier == signer.verifier


def test_load_signer_detects_mismatched_public_key(tmp_path: Path) -> None:
    ensure_signer(tmp_path, "log", "registry.example/log")
    other, _ = ensure_signer(tmp_path, "other", "registry.example/log")
    (tmp_path / "log.pub").write_text(other.verifier.text + "\n")
    with pytest.raises(KeyFileError, match=r"log\.pub: does not match .*log\.key"):
        load_signer(tmp_path, "log")
    with pytest.raises(KeyFileError, match="does not match"):
        ensure_signer(tmp_path, "log", "registry.example/log")


def test_load_signer_detects_renamed_public_key(tmp_path: Path) -> None:
    signer, _ = ensure_signer(tmp_path, "log", "registry.example/log")
    renamed = VerifierKey("someone.else", signer.verifier.public_key)
    (tmp_path / "log.pub").write_text(renamed.text + "\n")
    # The same key under another name loads as that name (the .pub names the key).
    assert load_signer(tmp_path, "log").verifier == renamed


def test_missing_and_broken_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="missing"):
        load_signer(tmp_path, "log")
    with pytest.raises(KeyFileError, match="missing"):
        load_verifier(tmp_path, "log")
    ensure_signer(tmp_path, "log", "registry.example/log")
    (tmp_path / "log.key").write_bytes(b"not a pem")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_signer(tmp_path, "log")
    (tmp_path / "log.pub").write_text("garbage\n")
    with pytest.raises(KeyFileError, match="a verifier key has the form name\\+keyid\\+key"):
        load_verifier(tmp_path, "log")
