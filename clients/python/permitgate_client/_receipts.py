"""Signed receipts: what the gate answered, when, and on what registry data.

A receipt is a DSSE envelope signed by the gate's own key. Its payload (RFC 8785 JSON) holds the
check as asked, the verdict and reasons, the decision id and time, the registry head the gate
held (the registry-signed note itself, with its timed cosignature, so the registry's signature
can be checked too and the data's age at the decision is known), the SHA-256 of the signed
status record the answer used, and the registry's statement vouching for the gate's key.
``verify_receipt`` needs only the registry key (or a ``KeySet``) and no network: a utility can
show years later what it checked (Art. 28). The format is specified in ``spec/receipt.md`` with
test vectors beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from permitgate_client._errors import (
    BadSignatureError,
    ExpiredError,
    FromTheFutureError,
    MalformedError,
    ReceiptError,
    VerificationError,
)
from permitgate_client._gatekeys import GateKeyStatement, verify_gate_key_statement
from permitgate_client._keyset import KeySet
from permitgate_client._proofs import CLOCK_SKEW, RegistryHead, verify_registry_head
from permitgate_client._times import format_time, parse_time
from permitgate_client._trust import (
    Checkpoint,
    VerifierKey,
    parse_envelope,
    verify_checkpoint,
    verify_envelope,
)

__all__ = ["RECEIPT_PAYLOAD_TYPE", "Receipt", "VerifiedReceipt", "verify_receipt"]

RECEIPT_PAYLOAD_TYPE = "application/vnd.permitgate.receipt+json"


@dataclass(frozen=True, slots=True)
class Receipt:
    """The payload of a receipt, typed. ``to_json`` is the object the gate signs (as JCS)."""

    decision_id: str
    decided_at: datetime
    check: dict[str, Any]
    verdict: str
    reasons: tuple[dict[str, Any], ...]
    valid_until: datetime | None
    notification_id: str | None
    checkpoint_note: bytes
    status_record_sha256: str | None  # hex; None when the structure is not in the registry
    status_record_tree_size: int | None
    gate_key_statement: dict[str, Any] | None = None
    """The registry's statement vouching for the gate's key: a DSSE envelope as a JSON object
    (``permitgate_client.formats.verify_gate_key_statement`` checks it); None when the gate
    held none."""

    def to_json(self) -> dict[str, Any]:
        """The payload as a JSON object; the gate signs its RFC 8785 form."""
        return {
            "decision_id": self.decision_id,
            "decided_at": format_time(self.decided_at),
            "check": self.check,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "valid_until": None if self.valid_until is None else format_time(self.valid_until),
            "notification_id": self.notification_id,
            "registry": {"checkpoint": self.checkpoint_note.decode()},
            "status_record": None
            if self.status_record_sha256 is None
            else {"sha256": self.status_record_sha256, "tree_size": self.status_record_tree_size},
            "gate_key_statement": self.gate_key_statement,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Receipt:
        """Parse a decoded payload; ``MalformedError`` names what is missing or mistyped."""
        try:
            status = obj["status_record"]
            valid_until = obj["valid_until"]
            statement = obj.get("gate_key_statement")  # absent from receipts signed before it
            if statement is not None and not isinstance(statement, dict):
                raise TypeError("gate_key_statement: expected an object or null")
            return cls(
                decision_id=_str(obj["decision_id"]),
                decided_at=parse_time(obj["decided_at"]),
                check=dict(obj["check"]),
                verdict=_str(obj["verdict"]),
                reasons=tuple(dict(r) for r in obj["reasons"]),
                valid_until=None if valid_until is None else parse_time(valid_until),
                notification_id=_optional_str(obj["notification_id"]),
                checkpoint_note=_str(obj["registry"]["checkpoint"]).encode(),
                status_record_sha256=None if status is None else _str(status["sha256"]),
                status_record_tree_size=None if status is None else _int(status["tree_size"]),
                gate_key_statement=statement,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedError(f"receipt: malformed payload ({exc!r})") from exc


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """A receipt whose signatures verified: what it says, the gate key that signed it, the
    registry's statement vouching for that key, and the registry head the answer rests on."""

    receipt: Receipt
    checkpoint: Checkpoint
    gate_key: VerifierKey
    """The key whose signature verified: the statement's, or the KeySet's when it has none."""
    statement: GateKeyStatement | None = None
    """The registry's statement vouching for ``gate_key`` (None: the receipt carries none)."""
    head: RegistryHead | None = None
    """The registry head (None only for a checkpoint signed before heads had a status map)."""

    @property
    def gate_key_id(self) -> str:
        """``name+keyid`` of the gate key that signed the receipt."""
        return self.gate_key.keyid_text

    @property
    def gate_key_valid_until(self) -> datetime | None:
        """Until when the registry vouches for the gate key (None: no statement)."""
        return None if self.statement is None else self.statement.not_after

    @property
    def cosigned_at(self) -> datetime | None:
        """When the registry last said, before the decision, that this was its newest head."""
        return None if self.head is None else self.head.cosigned_at

    @property
    def data_age(self) -> timedelta | None:
        """The data's age at the decision: ``decided_at - cosigned_at`` (None: not cosigned)."""
        cosigned = self.cosigned_at
        return None if cosigned is None else self.receipt.decided_at - cosigned

    def data_fresh(self, max_age: timedelta) -> bool:
        """True when the data was provably at most ``max_age`` old at the decision (a head
        cosigned more than ``CLOCK_SKEW`` after the decision proves no age)."""
        age = self.data_age
        return age is not None and -CLOCK_SKEW <= age <= max_age


def verify_receipt(envelope: bytes, keys: KeySet | VerifierKey) -> VerifiedReceipt:
    """Verify a receipt offline, or raise ``ReceiptError`` (its ``__cause__`` says which check).

    ``keys`` is the registry key alone (``registry.pub``: the receipt must carry the registry's
    statement vouching for the gate's key) or a ``KeySet`` kept from ``Client.keys()`` (or
    ``permitgate keys``), whose gate key verifies a receipt that carries no statement.
    """
    try:
        return _verify(envelope, keys)
    except ReceiptError:
        raise
    except VerificationError as exc:
        raise ReceiptError(f"receipt not verified: {exc}") from exc


def _verify(envelope: bytes, keys: KeySet | VerifierKey) -> VerifiedReceipt:
    registry_key = keys if isinstance(keys, VerifierKey) else keys.registry_key
    # Step 1: the envelope's shape and payload type.
    parsed = parse_envelope(envelope)
    if parsed.payload_type != RECEIPT_PAYLOAD_TYPE:
        raise MalformedError(
            f"envelope: payload type {parsed.payload_type!r}, expected {RECEIPT_PAYLOAD_TYPE!r}"
        )
    # Step 2: the payload's shape.
    try:
        obj = json.loads(parsed.payload)
    except ValueError as exc:
        raise MalformedError("receipt: payload is not JSON") from exc
    except RecursionError as exc:
        raise MalformedError("receipt: payload nested too deeply") from exc
    receipt = Receipt.from_json(obj)
    # Step 3: the gate key: the one the registry vouches for, else the one the caller kept.
    statement = None
    if receipt.gate_key_statement is not None:
        statement = verify_gate_key_statement(
            json.dumps(receipt.gate_key_statement).encode(), registry_key
        )
        gate_key = statement.gate_key
    elif isinstance(keys, KeySet):
        gate_key = keys.gate_key
    else:
        raise BadSignatureError(
            "receipt: carries no statement of the registry vouching for the gate's key; "
            "verify it with the KeySet kept from that gate"
        )
    # Step 4: the gate's signature over the payload.
    verify_envelope(envelope, [gate_key], RECEIPT_PAYLOAD_TYPE)
    # Step 5: the registry vouched for that key when the gate decided.
    if statement is not None and not statement.covers(receipt.decided_at):
        raise ExpiredError(
            f"receipt: decided at {format_time(receipt.decided_at)}, outside the registry's "
            f"statement for gate key {gate_key.keyid_text} (valid from "
            f"{format_time(statement.not_before)} until {format_time(statement.not_after)})"
        )
    # Step 6: the registry's signature over the head the answer rests on, which must be of the
    # registry's own log (its origin is the registry key's name), and its cosigned time.
    note = receipt.checkpoint_note
    checkpoint = verify_checkpoint(note, registry_key, origin=registry_key.name)
    head = None
    if checkpoint.extensions:  # a registry head: its status map line, its cosignature
        head = verify_registry_head(note, registry_key)
    # Step 7: the status record used is no newer than that head.
    tree_size = receipt.status_record_tree_size
    if tree_size is not None and tree_size > checkpoint.size:
        raise FromTheFutureError(
            f"receipt: status record of tree size {tree_size} is newer than the checkpoint "
            f"({checkpoint.size})"
        )
    return VerifiedReceipt(receipt, checkpoint, gate_key, statement, head)
