"""The public keys a caller keeps to verify receipts offline, typed.

A ``KeySet`` comes from the gate (``Client.keys()``, the ``GetKeys`` RPC) or from the JSON that
``permitgate keys`` prints. Keep one from a moment you trust the gate: verifying a receipt against
keys fetched from the same gate later proves only that the gate agrees with itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from permitgate_client._errors import MalformedError
from permitgate_client._trust import VerifierKey
from permitgate_client.v1 import gate_pb2 as pb

__all__ = ["KeySet"]


@dataclass(frozen=True, slots=True)
class KeySet:
    """The public keys that verify what a gate hands out, and the checkpoint it held.

    ``registry_key`` signs the registry's checkpoints and status records, ``gate_key`` the
    gate's receipts; ``checkpoint`` is the newest registry checkpoint note the gate held when
    the keys were fetched (``b""`` if none), UTF-8 text as every note is (``ValueError`` when
    built otherwise, ``MalformedError`` when parsed), so ``to_json`` cannot fail. Round-trips
    through ``to_json``/``from_json``.
    """

    registry_key: VerifierKey
    gate_key: VerifierKey
    checkpoint: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint, bytes):
            raise TypeError(f"checkpoint: expected bytes, got {type(self.checkpoint).__name__}")
        try:
            self.checkpoint.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"checkpoint: not UTF-8 text (byte {exc.start})") from exc

    @classmethod
    def from_proto(cls, message: pb.KeySet) -> KeySet:
        """From a ``permitgate.v1.KeySet`` message (what ``GetKeys`` answers); ``MalformedError``
        if a key is not a well-formed verifier key."""
        return cls._parse(message.registry_key, message.gate_key, bytes(message.checkpoint))

    @classmethod
    def from_json(cls, data: bytes | str) -> KeySet:
        """From the JSON of ``to_json`` (what ``permitgate keys`` prints)."""
        try:
            obj = json.loads(data)
            registry_text, gate_text = obj["registry_key"], obj["gate_key"]
            checkpoint = obj.get("checkpoint") or ""
            if not all(isinstance(v, str) for v in (registry_text, gate_text, checkpoint)):
                raise TypeError("keys and checkpoint are strings")
            note = checkpoint.encode()  # a lone surrogate (JSON "\ud800") is no UTF-8
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedError(f"keyset: not a KeySet JSON object ({exc})") from exc
        except RecursionError as exc:
            raise MalformedError("keyset: not a KeySet JSON object (nested too deeply)") from exc
        return cls._parse(registry_text, gate_text, note)

    @classmethod
    def _parse(cls, registry_text: str, gate_text: str, checkpoint: bytes) -> KeySet:
        try:
            return cls(
                VerifierKey.from_text(registry_text), VerifierKey.from_text(gate_text), checkpoint
            )
        except ValueError as exc:
            raise MalformedError(f"keyset: {exc}") from exc

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict that ``from_json`` reads back (``permitgate keys`` prints it)."""
        return {
            "registry_key": self.registry_key.text,
            "gate_key": self.gate_key.text,
            "checkpoint": self.checkpoint.decode(),
        }
