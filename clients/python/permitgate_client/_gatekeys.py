"""The registry's word that a gate's key may sign receipts, and for how long.

A **gate key statement** is a DSSE envelope signed by the registry key, payload type
``application/vnd.permitgate.gate-key+json``, whose payload is the RFC 8785 JSON object
``{"gate_key": <verifier key text>, "not_after": <time>, "not_before": <time>}``. A gate puts its
statement into every receipt, so a receipt verifies with the registry key alone: whoever holds
``registry.pub`` can check the receipts of every gate the registry vouches for, and a gate whose
key the registry never vouched for (a copy of the database with a key of its own) cannot make
one that verifies. ``spec/gate-key.md`` specifies the format; ``spec/vectors`` has its cases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from permitgate_client._errors import MalformedError
from permitgate_client._times import format_time, parse_time
from permitgate_client._trust import VerifierKey, verify_envelope

__all__ = ["GATE_KEY_PAYLOAD_TYPE", "GateKeyStatement", "verify_gate_key_statement"]

GATE_KEY_PAYLOAD_TYPE = "application/vnd.permitgate.gate-key+json"


@dataclass(frozen=True, slots=True)
class GateKeyStatement:
    """A gate key and the times between which the registry vouches for it.

    Valid from ``not_before`` (included) until ``not_after`` (excluded), as a status record is
    good until just before its ``next_update``.
    """

    gate_key: VerifierKey
    not_before: datetime
    not_after: datetime

    def covers(self, at: datetime) -> bool:
        """True when a receipt decided ``at`` falls inside the validity."""
        return self.not_before <= at < self.not_after

    def to_json(self) -> dict[str, str]:
        """The payload as a JSON object; the registry signs its RFC 8785 form."""
        return {
            "gate_key": self.gate_key.text,
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
        }

    @classmethod
    def from_json(cls, obj: Any) -> GateKeyStatement:
        """Parse a decoded payload; ``MalformedError`` names what is missing or wrong."""
        if not isinstance(obj, dict):
            raise MalformedError("gate key statement: the payload is not a JSON object")
        values: list[str] = []
        for name in ("gate_key", "not_before", "not_after"):
            value = obj.get(name)
            if not isinstance(value, str):
                raise MalformedError(f"gate key statement: {name} is missing or not a string")
            values.append(value)
        try:
            key = VerifierKey.from_text(values[0])
        except ValueError as exc:
            raise MalformedError(f"gate key statement: gate_key: {exc}") from exc
        try:
            not_before, not_after = parse_time(values[1]), parse_time(values[2])
        except ValueError as exc:
            raise MalformedError(f"gate key statement: {exc}") from exc
        if not_after <= not_before:
            raise MalformedError("gate key statement: not_after is not later than not_before")
        return cls(key, not_before, not_after)


def verify_gate_key_statement(envelope: bytes, registry_key: VerifierKey) -> GateKeyStatement:
    """Verify a gate key statement signed by ``registry_key`` and return it, or raise
    ``MalformedError`` / ``BadSignatureError``. Whether it covers a given moment is the caller's
    step (``GateKeyStatement.covers``)."""
    # Steps 1-3: the envelope, its payload type, the registry's signature over PAE.
    payload = verify_envelope(envelope, [registry_key], GATE_KEY_PAYLOAD_TYPE)
    # Step 4: the payload's shape.
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise MalformedError("gate key statement: the payload is not JSON") from exc
    statement = GateKeyStatement.from_json(obj)
    # Step 5: a gate key, not the registry's own (its signatures stay with its three roles).
    if statement.gate_key == registry_key:
        raise MalformedError("gate key statement: vouches for the registry's own key")
    return statement
