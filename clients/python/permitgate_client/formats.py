"""The signed formats' building blocks, for the registry, the gate and callers of other kinds.

C2SP signed notes and checkpoints, registry heads (the status map's proofs, consistency proofs,
timed cosignatures), DSSE envelopes, receipts, gate key statements and RFC 3339 times: the
verifying side, pure (bytes and keys in, typed objects or a typed ``VerificationError`` out).
The signing side belongs to the registry and the gate. ``spec/`` in the repository specifies
each format.
"""

from permitgate_client._gatekeys import (
    GATE_KEY_PAYLOAD_TYPE,
    GateKeyStatement,
    verify_gate_key_statement,
)
from permitgate_client._proofs import (
    CLOCK_SKEW,
    MapProof,
    RegistryHead,
    verify_consistency,
    verify_fresh,
    verify_map_proof,
    verify_registry_head,
)
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
    "CLOCK_SKEW",
    "GATE_KEY_PAYLOAD_TYPE",
    "RECEIPT_PAYLOAD_TYPE",
    "Checkpoint",
    "Envelope",
    "GateKeyStatement",
    "MapProof",
    "Receipt",
    "RegistryHead",
    "VerifiedReceipt",
    "VerifierKey",
    "format_time",
    "key_id",
    "pae",
    "parse_envelope",
    "parse_time",
    "verify_checkpoint",
    "verify_consistency",
    "verify_envelope",
    "verify_fresh",
    "verify_gate_key_statement",
    "verify_map_proof",
    "verify_note",
    "verify_registry_head",
]
