"""permitgate-client: ask a permitgate gate, and verify what it signed, offline.

    from permitgate_client import Client, Check, Verdict, verify_receipt

    with Client("127.0.0.1:50051", timeout=2.0) as client:
        d = client.check_connection("110228-0042-0007", utility="water", kind="permanent",
                                    application_id="A-1", receipt=True)
        if d.verdict is Verdict.ALLOW: ...
        keyset = client.keys()
        for answer in client.check_many(Check.connection(sid, utility="water") for sid in ids):
            ...  # a Decision, or a Refused, per check, in order
    verify_receipt(d.receipt, keyset)       # or with the registry key alone (registry.pub)

Errors: ``GateError`` and its subclasses when the gate does not answer, ``VerificationError`` and
its subclasses when signed data does not verify, both under ``PermitgateError``.

Depends on grpcio, protobuf and cryptography only. The generated stubs are
``permitgate_client.v1``; the signed formats' verifiers (for callers of other kinds) are in
``permitgate_client.formats``; the formats themselves are specified in the repository's
``spec/`` folder, with test vectors.
"""

from permitgate_client._client import (
    DEFAULT_TIMEOUT,
    DEFAULT_WINDOW,
    MAX_BATCH,
    AsyncClient,
    Client,
)
from permitgate_client._errors import (
    BadSignatureError,
    DeadlineError,
    ExpiredError,
    ForkError,
    FromTheFutureError,
    GateError,
    InvalidCheckError,
    MalformedError,
    MapMismatchError,
    OverloadedError,
    PermissionDeniedError,
    PermitgateError,
    ReceiptError,
    RollbackError,
    UnavailableError,
    VerificationError,
    WrongOriginError,
    WrongStructureError,
)
from permitgate_client._keyset import KeySet
from permitgate_client._models import (
    CONNECTION_KINDS,
    OFFICES,
    REGISTRATION_KINDS,
    UTILITIES,
    Check,
    Decision,
    Reason,
    Refused,
    Verdict,
)
from permitgate_client._receipts import Receipt, VerifiedReceipt, verify_receipt
from permitgate_client._trust import VerifierKey

__all__ = [
    "CONNECTION_KINDS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "MAX_BATCH",
    "OFFICES",
    "REGISTRATION_KINDS",
    "UTILITIES",
    "AsyncClient",
    "BadSignatureError",
    "Check",
    "Client",
    "DeadlineError",
    "Decision",
    "ExpiredError",
    "ForkError",
    "FromTheFutureError",
    "GateError",
    "InvalidCheckError",
    "KeySet",
    "MalformedError",
    "MapMismatchError",
    "OverloadedError",
    "PermissionDeniedError",
    "PermitgateError",
    "Reason",
    "Receipt",
    "ReceiptError",
    "Refused",
    "RollbackError",
    "UnavailableError",
    "Verdict",
    "VerificationError",
    "VerifiedReceipt",
    "VerifierKey",
    "WrongOriginError",
    "WrongStructureError",
    "verify_receipt",
]
