"""Signing keys on disk, and the signer that writes notes and DSSE envelopes.

Keys live in a directory (default ``.permitgate/keys``): ``<role>.key`` is the PKCS#8 PEM private
key, created with mode 0600, and ``<role>.pub`` the C2SP verifier key line. The formats
themselves are defined in ``registry.trust``; this module only produces them.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client._proofs import CosignerKey, cosignature_message
from permitgate_client.formats import VerifierKey, pae

from registry.canonical import canonical_json

__all__ = [
    "DEFAULT_KEYS_DIR",
    "KeyFileError",
    "Signer",
    "ensure_signer",
    "load_signer",
    "load_verifier",
]

DEFAULT_KEYS_DIR = Path(".permitgate/keys")


class KeyFileError(Exception):
    """A key file is missing, unreadable or inconsistent."""


class Signer:
    """An Ed25519 private key with a signed-note name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = VerifierKey(name, raw)
        self._note_prefix = f"— {name} ".encode()
        self._keyid = self.verifier.keyid_text
        self.cosigner = CosignerKey.of(self.verifier)

    @property
    def name(self) -> str:
        return self.verifier.name

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key, to hand to a worker process of this registry."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_private_bytes(cls, name: str, raw: bytes) -> Signer:
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def sign_note(self, body: bytes) -> bytes:
        """A C2SP signed note: ``body`` (ending in a newline), a blank line, our signature."""
        if not body.endswith(b"\n"):
            raise ValueError("a note body ends with a newline")
        sig = base64.b64encode(self.verifier.id + self._key.sign(body))
        return body + b"\n" + self._note_prefix + sig + b"\n"

    def cosign(self, body: bytes, timestamp: int) -> bytes:
        """A C2SP tlog-cosignature v1 line over a checkpoint ``body``, dated ``timestamp``
        (POSIX seconds): appended to the signed note, it says "at that time, this was the
        newest head". Same key, signature type 0x04, domain-separated message."""
        signature = self._key.sign(cosignature_message(body, timestamp))
        blob = base64.b64encode(self.cosigner.id + timestamp.to_bytes(8, "big") + signature)
        return self._note_prefix + blob + b"\n"

    def sign_envelope(self, payload: bytes, payload_type: str) -> bytes:
        """A DSSE envelope over ``payload``, serialised as canonical JSON."""
        sig = self._key.sign(pae(payload_type, payload))
        return canonical_json(
            {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": payload_type,
                "signatures": [{"keyid": self._keyid, "sig": base64.b64encode(sig).decode()}],
            }
        )


def _paths(keys_dir: Path, role: str) -> tuple[Path, Path]:
    return keys_dir / f"{role}.key", keys_dir / f"{role}.pub"


def load_signer(keys_dir: Path, role: str) -> Signer:
    """Load ``<role>.key`` and check it against ``<role>.pub``."""
    private_path, public_path = _paths(keys_dir, role)
    try:
        pem = private_path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(f"{private_path}: missing (run 'permitgate registry init')") from exc
    except OSError as exc:
        raise KeyFileError(f"{private_path}: {exc.strerror}") from exc
    verifier = load_verifier(keys_dir, role)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{private_path}: not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{private_path}: not an Ed25519 key")
    signer = Signer(verifier.name, key)
    if signer.verifier != verifier:
        raise KeyFileError(f"{public_path}: does not match {private_path}")
    return signer


def load_verifier(keys_dir: Path, role: str) -> VerifierKey:
    """Load only the public ``<role>.pub`` (what a verifier needs)."""
    _, public_path = _paths(keys_dir, role)
    try:
        return VerifierKey.from_text(public_path.read_text())
    except FileNotFoundError as exc:
        raise KeyFileError(f"{public_path}: missing") from exc
    except ValueError as exc:
        raise KeyFileError(f"{public_path}: {exc}") from exc


def ensure_signer(keys_dir: Path, role: str, name: str) -> tuple[Signer, bool]:
    """Load the ``role`` key, creating it (private file mode 0600) when absent.

    Returns the signer and whether it was created.
    """
    private_path, public_path = _paths(keys_dir, role)
    if private_path.exists():
        return load_signer(keys_dir, role), False
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    signer = Signer(name, key)
    public_path.write_text(signer.verifier.text + "\n")
    return signer, True
