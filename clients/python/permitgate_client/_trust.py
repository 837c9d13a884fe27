"""Every trust decision in one pure module: bytes and keys in, typed objects or an error out.

Formats:

* Verifier keys and signed notes follow C2SP signed-note: a key is
  ``name+hex(keyid)+base64(0x01 || ed25519 public key)`` with
  ``keyid = SHA-256(name || "\\n" || 0x01 || public key)[:4]``; a note is UTF-8 text, a blank line,
  then lines ``— name base64(keyid || signature)`` signing the text above the blank line.
* Checkpoints follow C2SP tlog-checkpoint: origin, tree size, base64 root hash, extension lines.
* Status records and receipts are DSSE envelopes (JSON) whose signatures cover
  ``PAE(payloadType, payload)``; payloads are RFC 8785 canonical JSON.

Nothing here touches a database, a file or the network, so the registry, the gate and the
offline client verify with the same code. Each verification returns the typed result or raises a
``VerificationError`` subclass naming the check that failed; there is no boolean to forget.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from permitgate_client._errors import (
    BadSignatureError,
    MalformedError,
    WrongOriginError,
)

__all__ = [
    "Checkpoint",
    "Envelope",
    "VerifierKey",
    "key_id",
    "pae",
    "parse_envelope",
    "verify_checkpoint",
    "verify_envelope",
    "verify_note",
]

_ED25519 = 0x01
_NAME = re.compile(r"[^\s+]+")
_SIG_LINE = re.compile(r"— (\S+) (\S+)")
_MAX_NOTE = 1 << 20


def key_id(name: str, public_key: bytes) -> bytes:
    """The C2SP signed-note key id of an Ed25519 key: 4 bytes of a hash over name and key."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A named Ed25519 public key, as in a C2SP signed-note verifier key.

    Equal (and hashed) by name and public key. The key id and both text forms are computed once,
    when the key is made: the gate looks one up for every status record it verifies.
    """

    name: str
    public_key: bytes
    key: Ed25519PublicKey = field(init=False, repr=False, compare=False)
    id: bytes = field(init=False, repr=False, compare=False)
    """The 4-byte C2SP key id (``key_id`` of the name and key)."""
    keyid_text: str = field(init=False, repr=False, compare=False)
    """``name+keyid``: how envelopes name the key that signed them."""
    text: str = field(init=False, repr=False, compare=False)
    """``name+keyid+base64(0x01||key)``, the form published in a KeySet."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"key name must be non-empty with no spaces or '+': {self.name!r}")
        if len(self.public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        set_field = object.__setattr__  # frozen: the derived fields are set once, here
        set_field(self, "key", Ed25519PublicKey.from_public_bytes(self.public_key))
        key_id_bytes = key_id(self.name, self.public_key)
        keyid_text = f"{self.name}+{key_id_bytes.hex()}"
        blob = base64.b64encode(bytes([_ED25519]) + self.public_key).decode()
        set_field(self, "id", key_id_bytes)
        set_field(self, "keyid_text", keyid_text)
        set_field(self, "text", f"{keyid_text}+{blob}")

    @classmethod
    def from_text(cls, text: str) -> VerifierKey:
        """Parse a verifier key, checking that its key id matches its name and key."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise ValueError("a verifier key has the form name+keyid+key")
        name, hex_id, blob = parts
        try:
            raw = base64.b64decode(blob, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"verifier key is not well formed: {exc}") from exc
        if len(raw) != 33 or raw[0] != _ED25519:
            raise ValueError("verifier key is not an Ed25519 key")
        key = cls(name, raw[1:])
        if key.id != wanted:
            raise ValueError("verifier key id does not match its name and key")
        return key

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is this key's over ``message`` (a low-level check: the
        ``verify_*`` functions raise instead)."""
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def verify_note(note: bytes, keys: Iterable[VerifierKey]) -> tuple[bytes, list[VerifierKey]]:
    """Check a signed note; return its body and the known keys that signed it.

    Signatures by unknown keys are ignored (notes may carry cosignatures). A signature line by a
    known key that does not verify is an error, and so is a note no known key signed.
    """
    # Step 1: the note's shape.
    if len(note) > _MAX_NOTE:
        raise MalformedError("note: too large")
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("note: not UTF-8") from exc
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise MalformedError("note: no blank line before the signatures")
    body, sig_block = text[: split + 1], text[split + 2 :]
    # Step 2: each signature line by a key we know.
    known = {(k.name, k.id): k for k in keys}
    signers: list[VerifierKey] = []
    for line in sig_block.splitlines():
        m = _SIG_LINE.fullmatch(line)
        if not m:
            raise MalformedError(f"note: malformed signature line {line!r}")
        try:
            blob = base64.b64decode(m.group(2), validate=True)
        except binascii.Error as exc:
            raise MalformedError("note: signature is not base64") from exc
        if len(blob) < 5:
            raise MalformedError("note: signature too short")
        key = known.get((m.group(1), blob[:4]))
        if key is None:
            continue
        if not key.verify(blob[4:], body.encode()):
            raise BadSignatureError(f"note: signature by {key.name} does not verify")
        signers.append(key)
    # Step 3: at least one trusted signature.
    if not signers:
        raise BadSignatureError("note: not signed by any trusted key")
    return body.encode(), signers


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: the registry's log at one size."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise ValueError("checkpoint origin must be one non-empty line")
        if self.size < 0:
            raise ValueError("checkpoint size must not be negative")
        if len(self.root_hash) != 32:
            raise ValueError("checkpoint root hash must be 32 bytes")
        if any(not e or "\n" in e for e in self.extensions):
            raise ValueError("checkpoint extension lines must be non-empty single lines")

    def body(self) -> bytes:
        """The checkpoint's text, as signed (the note's body)."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return ("\n".join([*lines, *self.extensions]) + "\n").encode()

    @classmethod
    def from_body(cls, body: bytes) -> Checkpoint:
        """Parse a checkpoint body (``MalformedError`` if it is not one); verifies nothing."""
        try:
            lines = body.decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise MalformedError("checkpoint: not UTF-8") from exc
        if len(lines) < 4 or lines[-1] != "":
            raise MalformedError("checkpoint: fewer than three lines")
        origin, size, root, *extensions = lines[:-1]
        if not re.fullmatch(r"0|[1-9][0-9]*", size):
            raise MalformedError(f"checkpoint: bad tree size {size!r}")
        try:
            root_hash = base64.b64decode(root, validate=True)
            return cls(origin, int(size), root_hash, tuple(extensions))
        except (binascii.Error, ValueError) as exc:
            raise MalformedError(f"checkpoint: {exc}") from exc


def verify_checkpoint(note: bytes, key: VerifierKey, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note from ``key`` and return its parsed body."""
    body, _ = verify_note(note, [key])
    checkpoint = Checkpoint.from_body(body)
    if origin is not None and checkpoint.origin != origin:
        raise WrongOriginError(f"checkpoint: origin {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what an envelope's signatures actually sign."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed (not yet verified) DSSE envelope."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)


def _b64(text: str) -> bytes:
    """Standard or URL-safe base64, as DSSE verifiers must accept both."""
    if "-" in text or "_" in text:
        text = text.translate(_URLSAFE)
    return base64.b64decode(text, validate=True)


_URLSAFE = str.maketrans("-_", "+/")


def parse_envelope(data: bytes) -> Envelope:
    """Parse a DSSE envelope's JSON (``MalformedError`` if it is not one); verifies nothing."""
    try:
        obj = json.loads(data)
        payload = _b64(obj["payload"])
        sigs = tuple((str(s.get("keyid", "")), _b64(s["sig"])) for s in obj["signatures"])
        payload_type = obj["payloadType"]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise MalformedError(f"envelope: malformed ({exc})") from exc
    except RecursionError as exc:  # arrays or objects nested past the parser's depth
        raise MalformedError("envelope: malformed (nested too deeply)") from exc
    if not isinstance(payload_type, str):
        raise MalformedError("envelope: payloadType is not a string")
    return Envelope(payload_type, payload, sigs)


def verify_envelope(data: bytes, keys: Iterable[VerifierKey], payload_type: str) -> bytes:
    """Verify a DSSE envelope signed by one of ``keys``; return its payload bytes."""
    # Step 1: parse.
    env = parse_envelope(data)
    # Step 2: the payload type is the one the caller expects (no type confusion).
    if env.payload_type != payload_type:
        raise MalformedError(
            f"envelope: payload type {env.payload_type!r}, expected {payload_type!r}"
        )
    # Step 3: a signature by a trusted key over PAE(type, payload).
    message = pae(env.payload_type, env.payload)
    by_id = {k.keyid_text: k for k in keys}
    for keyid, sig in env.signatures:
        key = by_id.get(keyid)
        if key is not None and key.verify(sig, message):
            return env.payload
    raise BadSignatureError("envelope: no valid signature by a trusted key")
