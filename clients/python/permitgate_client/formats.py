"""The signed formats' building blocks, for the registry, the gate and callers of other kinds.

C2SP signed notes and checkpoints, DSSE envelopes, receipts and RFC 3339 times: the verifying
side, pure (bytes and keys in, typed objects or a typed ``VerificationError`` out). The signing
side belongs to the registry and the gate. ``spec/`` in the repository specifies each format.
"""

from permitgate_client._receipts import RECEIPT_PAYLOAD_TYPE, Receipt, VerifiedReceipt
from permitgate_client._times import format_time, parse_time
from permitgate_client._trust import (
    Checkpoint,
    Envelope,
    VerifierKey,
    key_id,
    pae,
    parse_envelope,
    verify_checkpoint,
    verify_envelope,
    verify_note,
)

__all__ = [
    "RECEIPT_PAYLOAD_TYPE",
    "Checkpoint",
    "Envelope",
    "Receipt",
    "VerifiedReceipt",
    "VerifierKey",
    "format_time",
    "key_id",
    "pae",
    "parse_envelope",
    "parse_time",
    "verify_checkpoint",
    "verify_envelope",
    "verify_note",
]
