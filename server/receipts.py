"""The gate's signing key and the receipts it signs (one Ed25519 signature per receipt)."""

from __future__ import annotations

from clients.receipts import RECEIPT_PAYLOAD_TYPE, Receipt, receipt_payload
from registry.signing import Signer

__all__ = ["DEFAULT_GATE_NAME", "GATE_ROLE", "ReceiptSigner"]

GATE_ROLE = "gate"
DEFAULT_GATE_NAME = "permitgate.example/gate"


class ReceiptSigner:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.verifier = signer.verifier

    def sign(self, receipt: Receipt) -> bytes:
        """A DSSE envelope (JSON bytes) over the receipt's canonical payload."""
        return self._signer.sign_envelope(receipt_payload(receipt), RECEIPT_PAYLOAD_TYPE)
