"""Signed receipts: what the gate answered, when, and on what registry data.

A receipt is a DSSE envelope signed by the gate's own key. Its payload (RFC 8785 JSON) holds the
check as asked, the verdict and reasons, the decision id and time, the registry checkpoint the
gate held (the registry-signed note itself, so the registry's signature can be checked too) and
the SHA-256 of the signed status record the answer used. ``verify_receipt`` needs only a
``KeySet`` (two public keys) and no network: a utility can show years later what it checked
(Art. 28). The format is specified in ``spec/receipt.md`` with test vectors beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from permitgate_client._errors import (
    FromTheFutureError,
    MalformedError,
    ReceiptError,
    VerificationError,
)
from permitgate_client._keyset import KeySet
from permitgate_client._times import format_time, parse_time
from permitgate_client._trust import Checkpoint, verify_checkpoint, verify_envelope

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
        }

    @classmethod
    def from_json(cls, obj: Any) -> Receipt:
        """Parse a decoded payload; ``MalformedError`` names what is missing or mistyped."""
        try:
            status = obj["status_record"]
            valid_until = obj["valid_until"]
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
            )
        except (KeyError, TypeError, ValueError) as exc:
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
    """A receipt whose two signatures verified, and the registry checkpoint it rests on."""

    receipt: Receipt
    checkpoint: Checkpoint


def verify_receipt(envelope: bytes, keyset: KeySet) -> VerifiedReceipt:
    """Verify a receipt offline, or raise ``ReceiptError`` (its ``__cause__`` says which check).

    Needs only the ``KeySet`` kept from ``Client.keys()`` (or ``permitgate keys``).
    """
    try:
        return _verify(envelope, keyset)
    except ReceiptError:
        raise
    except VerificationError as exc:
        raise ReceiptError(f"receipt not verified: {exc}") from exc


def _verify(envelope: bytes, keyset: KeySet) -> VerifiedReceipt:
    # Step 1: the gate's signature over the payload.
    payload = verify_envelope(envelope, [keyset.gate_key], RECEIPT_PAYLOAD_TYPE)
    # Step 2: the payload's shape.
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise MalformedError("receipt: payload is not JSON") from exc
    except RecursionError as exc:
        raise MalformedError("receipt: payload nested too deeply") from exc
    receipt = Receipt.from_json(obj)
    # Step 3: the registry's signature over the checkpoint the answer rests on, which must be
    # of the registry's own log (its origin is the registry key's name).
    checkpoint = verify_checkpoint(
        receipt.checkpoint_note, keyset.registry_key, origin=keyset.registry_key.name
    )
    # Step 4: the status record used is no newer than that checkpoint.
    tree_size = receipt.status_record_tree_size
    if tree_size is not None and tree_size > checkpoint.size:
        raise FromTheFutureError(
            f"receipt: status record of tree size {tree_size} is newer than the checkpoint "
            f"({checkpoint.size})"
        )
    return VerifiedReceipt(receipt, checkpoint)
