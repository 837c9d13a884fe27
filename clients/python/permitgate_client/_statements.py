"""A department's signed write: what it asks the registry to do, under its own key.

A **write statement** is a DSSE envelope, payload type ``application/vnd.permitgate.write+json``,
signed by the department's Ed25519 key (a signed-note key named by the department's id). Its
payload is a JSON object::

    {"action": "open_case", "department": "city-planning", "request_id": "r-2026-0001",
     "signed_at": "2026-11-30T08:00:00Z", "write": {...}}

``action`` is one of the Registry service's write methods in snake case; ``write`` holds its
arguments (``spec/department-write.md``). The registry keeps the envelope as signed in its log,
so anyone holding the department's public key can later prove who asked for each change.
``DepartmentKey`` signs (the department's side); ``verify_statement`` checks (the registry's,
and an auditor's), and the registry also checks that the key was the department's current one.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from permitgate_client._errors import MalformedError
from permitgate_client._times import format_time, parse_time
from permitgate_client._trust import VerifierKey, pae, parse_envelope, verify_envelope

__all__ = [
    "ACTIONS",
    "WRITE_PAYLOAD_TYPE",
    "DepartmentKey",
    "WriteStatement",
    "statement_department",
    "verify_statement",
]

WRITE_PAYLOAD_TYPE: Final = "application/vnd.permitgate.write+json"

ACTIONS: Final = (
    "issue_permit",
    "change_permit_status",
    "open_case",
    "move_case",
    "refer_case",
    "answer_referral",
    "acknowledge_notice",
    "suspend_party",
)
"""The actions a statement may name, one per write method of the Registry service."""

_REQUEST_ID_MAX: Final = 128
_PAYLOAD_MAX: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class WriteStatement:
    """What a department asks for: ``action`` with its arguments ``write``, as ``department``,
    once per ``request_id`` (a retry with the same id is not a second write)."""

    action: str
    department: str
    request_id: str
    signed_at: datetime
    write: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "department": self.department,
            "request_id": self.request_id,
            "signed_at": format_time(self.signed_at),
            "write": self.write,
        }

    def payload(self) -> bytes:
        """The bytes signed: compact JSON with sorted keys, UTF-8."""
        return json.dumps(
            self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> WriteStatement:
        """Parse a payload; ``MalformedError`` names the field at fault."""
        if len(payload) > _PAYLOAD_MAX:
            raise MalformedError(f"write statement: longer than {_PAYLOAD_MAX} bytes")
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise MalformedError(f"write statement: not JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise MalformedError("write statement: not a JSON object")
        extra = sorted(obj.keys() - {"action", "department", "request_id", "signed_at", "write"})
        if extra:
            raise MalformedError(f"write statement: {extra[0]}: unknown field")
        texts: dict[str, str] = {}
        for name in ("action", "department", "request_id", "signed_at"):
            value = obj.get(name)
            if not isinstance(value, str) or not value.strip():
                raise MalformedError(f"write statement: {name}: missing or not a string")
            texts[name] = value
        if texts["action"] not in ACTIONS:
            raise MalformedError(
                f"write statement: action: unknown {texts['action']!r} (one of: "
                + ", ".join(ACTIONS)
                + ")"
            )
        request_id = texts["request_id"]
        if len(request_id) > _REQUEST_ID_MAX or not request_id.isprintable():
            raise MalformedError(
                f"write statement: request_id: at most {_REQUEST_ID_MAX} printable characters"
            )
        try:
            signed_at = parse_time(texts["signed_at"])
        except ValueError as exc:
            raise MalformedError(f"write statement: signed_at: {exc}") from exc
        write = obj.get("write")
        if not isinstance(write, dict):
            raise MalformedError("write statement: write: missing or not a JSON object")
        return cls(texts["action"], texts["department"], request_id, signed_at, write)


def statement_department(envelope: bytes) -> str:
    """The department a statement claims to be from, read before any key is chosen (the
    registry looks up that department's keys, then ``verify_statement`` checks)."""
    parsed = parse_envelope(envelope)
    if parsed.payload_type != WRITE_PAYLOAD_TYPE:
        raise MalformedError(
            f"envelope: payload type {parsed.payload_type!r}, expected {WRITE_PAYLOAD_TYPE!r}"
        )
    return WriteStatement.from_payload(parsed.payload).department


def verify_statement(envelope: bytes, keys: list[VerifierKey]) -> WriteStatement:
    """The statement, once a signature by one of ``keys`` verifies over it
    (``BadSignatureError`` otherwise), and its key name is the department it claims to be."""
    payload = verify_envelope(envelope, keys, WRITE_PAYLOAD_TYPE)
    statement = WriteStatement.from_payload(payload)
    signers = {key.name for key in keys}
    if statement.department not in signers:
        raise MalformedError(
            f"write statement: department {statement.department!r} is not the signing key's "
            f"name ({', '.join(sorted(signers))})"
        )
    return statement


class DepartmentKey:
    """A department's signing key: Ed25519, named by the department's id.

    Kept as ``<dir>/<department>.key`` (PKCS#8 PEM, mode 0600) and ``<dir>/<department>.pub``
    (the verifier key text, which the registry's operator enrols).
    """

    def __init__(self, department: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = VerifierKey(department, raw)

    @property
    def department(self) -> str:
        """The department's id, the key's name."""
        return self.verifier.name

    @classmethod
    def generate(cls, department: str) -> DepartmentKey:
        """A new key for ``department``."""
        return cls(department, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> DepartmentKey:
        """Load ``<department>.key``; the department is the file's stem."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise ValueError(f"{path}: missing") from exc
        except ValueError as exc:
            raise ValueError(f"{path}: not a PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key")
        return cls(path.stem, key)

    def save(self, directory: Path) -> Path:
        """Write ``<department>.key`` (never over an existing one) and ``.pub``; the key path."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_path = directory / f"{self.department}.key"
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        (directory / f"{self.department}.pub").write_text(self.verifier.text + "\n")
        return private_path

    def statement(
        self,
        action: str,
        write: dict[str, Any],
        *,
        request_id: str,
        signed_at: datetime | None = None,
    ) -> WriteStatement:
        """A statement of ``action`` with ``write``, as this department, not yet signed."""
        return WriteStatement(
            action, self.department, request_id, signed_at or datetime.now(UTC), write
        )

    def sign(self, statement: WriteStatement) -> bytes:
        """The DSSE envelope (compact JSON) of ``statement``, signed by this key."""
        if statement.department != self.department:
            raise ValueError(
                f"a statement of {statement.department!r} signed by {self.department!r}'s key"
            )
        payload = statement.payload()
        signature = self._key.sign(pae(WRITE_PAYLOAD_TYPE, payload))
        envelope = {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": WRITE_PAYLOAD_TYPE,
            "signatures": [
                {"keyid": self.verifier.keyid_text, "sig": base64.b64encode(signature).decode()}
            ],
        }
        return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()
