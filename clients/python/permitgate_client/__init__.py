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
    for change in client.watch(Check.connection("", utility="water"), structure_ids=ids):
        ...  # each structure's answer, then every change to it (resumed after a dropped stream)

A department writes and reads as itself (its signing key and its mutual-TLS certificate)::

    from permitgate_client import DepartmentClient

    with DepartmentClient("registry:50060", key="keys/city-planning.key",
                          cert="city-planning.crt", cert_key="city-planning.tls.key",
                          ca="registry-ca.crt") as dept:
        result = dept.open_case("C-1", "110228-0042-0007", "deviates_from_permit", "filed",
                                "patrol", opened=datetime.now(UTC))
        for referral in dept.referrals(overdue=True): ...

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
    WATCH_RETRIES,
    AsyncClient,
    Client,
)
from permitgate_client._departments import (
    DEFAULT_PAGE_SIZE,
    WRITE_RETRIES,
    AsyncDepartmentClient,
    CaseInfo,
    DepartmentClient,
    MonthlyReport,
    NewStructure,
    NoticeInfo,
    PartyInfo,
    PermitInfo,
    ReferralInfo,
    ReportFigure,
    WriteResult,
)
from permitgate_client._errors import (
    BadSignatureError,
    ConflictError,
    DeadlineError,
    ExpiredError,
    FailedPreconditionError,
    ForkError,
    FromTheFutureError,
    GateError,
    InvalidCheckError,
    MalformedError,
    MapMismatchError,
    NotFoundError,
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
    ASKING,
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
from permitgate_client._statements import DepartmentKey
from permitgate_client._trust import VerifierKey
from permitgate_client._watch import MAX_WATCHED_IDS, ChangeCause, StatusChange, WatchPosition

__all__ = [
    "ASKING",
    "CONNECTION_KINDS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "MAX_BATCH",
    "MAX_WATCHED_IDS",
    "OFFICES",
    "REGISTRATION_KINDS",
    "UTILITIES",
    "WATCH_RETRIES",
    "WRITE_RETRIES",
    "AsyncClient",
    "AsyncDepartmentClient",
    "BadSignatureError",
    "CaseInfo",
    "ChangeCause",
    "Check",
    "Client",
    "ConflictError",
    "DeadlineError",
    "Decision",
    "DepartmentClient",
    "DepartmentKey",
    "ExpiredError",
    "FailedPreconditionError",
    "ForkError",
    "FromTheFutureError",
    "GateError",
    "InvalidCheckError",
    "KeySet",
    "MalformedError",
    "MapMismatchError",
    "MonthlyReport",
    "NewStructure",
    "NotFoundError",
    "NoticeInfo",
    "OverloadedError",
    "PartyInfo",
    "PermissionDeniedError",
    "PermitInfo",
    "PermitgateError",
    "Reason",
    "Receipt",
    "ReceiptError",
    "ReferralInfo",
    "Refused",
    "ReportFigure",
    "RollbackError",
    "StatusChange",
    "UnavailableError",
    "Verdict",
    "VerificationError",
    "VerifiedReceipt",
    "VerifierKey",
    "WatchPosition",
    "WriteResult",
    "WrongOriginError",
    "WrongStructureError",
    "verify_receipt",
]
