"""The gate's signing key and the receipts it signs (one Ed25519 signature per receipt).

The receipt format (``Receipt``) and its verifier belong to the client package; the gate only
signs the RFC 8785 form of ``Receipt.to_json``.
"""

from __future__ import annotations

from permitgate_client.formats import RECEIPT_PAYLOAD_TYPE, Receipt

from registry.canonical import canonical_json
from registry.signing import Signer

__all__ = ["DEFAULT_GATE_NAME", "GATE_ROLE", "ReceiptSigner", "receipt_payload"]

GATE_ROLE = "gate"
DEFAULT_GATE_NAME = "permitgate.example/gate"


def receipt_payload(receipt: Receipt) -> bytes:
    """The exact bytes the gate signs."""
    return canonical_json(receipt.to_json())


class ReceiptSigner:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.verifier = signer.verifier

    def sign(self, receipt: Receipt) -> bytes:
        """A DSSE envelope (JSON bytes) over the receipt's canonical payload."""
        return self._signer.sign_envelope(receipt_payload(receipt), RECEIPT_PAYLOAD_TYPE)
