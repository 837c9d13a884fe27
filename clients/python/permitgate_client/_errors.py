"""Every error the client package raises, under one root.

``GateError`` covers talking to the gate: one class per gRPC status a caller can act on, each
class knows its status, and ``from_rpc`` is the one place an ``RpcError`` is translated.
``VerificationError`` covers checking signed data: what failed is the class (match the class,
never the message text)::

    PermitgateError
    ├── GateError                   the gate did not answer; ``code`` is the gRPC status
    │   ├── InvalidCheckError       INVALID_ARGUMENT: the message names the field at fault
    │   ├── DeadlineError           DEADLINE_EXCEEDED: no answer within the timeout
    │   ├── UnavailableError        UNAVAILABLE: unreachable, loading, or cannot log; retry later
    │   ├── OverloadedError         RESOURCE_EXHAUSTED: too many calls in flight; retry later
    │   ├── PermissionDeniedError   PERMISSION_DENIED / UNAUTHENTICATED (a refused department
    │   │                           write: the message names the rule, e.g. "Art. 9: ...")
    │   ├── NotFoundError           NOT_FOUND: no permit, case, notice ... of that id
    │   ├── ConflictError           ALREADY_EXISTS: the id is taken, or the request id was
    │   │                           used for another write
    │   └── FailedPreconditionError FAILED_PRECONDITION: not now (a case not at an order stage,
    │                               a referral not yet decided ...)
    └── VerificationError
        ├── MalformedError          not the documented shape (bad JSON, base64, note layout ...)
        ├── BadSignatureError       no valid signature by a trusted key
        ├── WrongOriginError        a checkpoint of another log
        ├── RollbackError           older than what is already trusted
        ├── ForkError               two different roots for one tree size, or a tree
        │                           that does not extend the one trusted
        ├── MapMismatchError        a record (or an absence) the signed status map disagrees with
        ├── WrongStructureError     a status record filed under another structure
        ├── FromTheFutureError      signed data citing a log newer than its checkpoint, or
        │                           dated after the moment it is checked at
        ├── ExpiredError            past the time it may be relied on (a record past its
        │                           next_update, a head cosigned too long ago or never, a
        │                           receipt decided outside its gate key's statement)
        └── ReceiptError            a receipt that does not prove what it says; ``__cause__``
                                    holds the typed failure underneath

``InvalidCheckError`` is also a ``ValueError``: ``Check`` raises it before anything is sent when
a choice (``utility="wine"``) or a naive ``requested_until`` cannot be right.
"""

from __future__ import annotations

import grpc

__all__ = [
    "BadSignatureError",
    "ConflictError",
    "DeadlineError",
    "ExpiredError",
    "FailedPreconditionError",
    "ForkError",
    "FromTheFutureError",
    "GateError",
    "InvalidCheckError",
    "MalformedError",
    "MapMismatchError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PermitgateError",
    "ReceiptError",
    "RollbackError",
    "UnavailableError",
    "VerificationError",
    "WrongOriginError",
    "WrongStructureError",
    "from_rpc",
]


class PermitgateError(Exception):
    """The root of every error this package raises: catch it to catch them all."""


class GateError(PermitgateError):
    """The gate did not answer the call.

    ``code`` is the gRPC status of the failed call (each subclass stands for one status and
    carries it as its class default); None when there was no status to read.
    """

    code: grpc.StatusCode | None = None

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidCheckError(GateError, ValueError):
    """The check cannot be answered as asked; the message names the field and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineError(GateError):
    """No answer within the timeout."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(GateError):
    """The gate cannot be reached or cannot answer right now; retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


class OverloadedError(GateError):
    """The gate has as many calls in flight as it accepts; retry with backoff."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDeniedError(GateError):
    """The gate does not accept this caller (its mutual TLS identity, or none)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(GateError):
    """The registry holds nothing of that id (a permit, case, referral, notice or party)."""

    code = grpc.StatusCode.NOT_FOUND


class ConflictError(GateError):
    """The write would make something that exists already (a permit or case id taken), or its
    request id was used before for a different write."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(GateError):
    """The write is allowed but not in the record's present state (a party suspended before
    its order, a referral answered before it was decided, a stage it cannot move to)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


_BY_CODE: dict[grpc.StatusCode, type[GateError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidCheckError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverloadedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: ConflictError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
}


def from_rpc(exc: grpc.RpcError) -> GateError:
    """The typed error for a failed call, blocking or asyncio (raise it ``from exc``).

    Status and details are read through ``code()`` and ``details()``, which the blocking
    calls' errors (``grpc.Call``) and ``grpc.aio.AioRpcError`` both have; the status picks the
    class and is kept on the error, the details become its message.
    """
    code = _status(exc)
    details = getattr(exc, "details", None)
    text = details() if callable(details) else None
    cls = GateError if code is None else _BY_CODE.get(code, GateError)
    message = text or (str(exc) if code is None else code.name)
    return cls(message, code=code)


def _status(exc: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(exc, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else None


class VerificationError(PermitgateError):
    """Signed data could not be shown to be genuine; the class says which check failed."""


class MalformedError(VerificationError):
    """The bytes are not in the documented format."""


class BadSignatureError(VerificationError):
    """No trusted key's signature verifies (or a trusted key's signature is wrong)."""


class WrongOriginError(VerificationError):
    """A checkpoint of another log than the one trusted."""


class RollbackError(VerificationError):
    """Older than what is already trusted: a smaller tree, or an older record."""


class ForkError(VerificationError):
    """Two different roots for the same tree size, or a newer tree that does not extend the one
    trusted (its consistency proof fails): the log was rewritten."""


class MapMismatchError(VerificationError):
    """A status record, or a structure's absence, that the signed status map does not show."""


class WrongStructureError(VerificationError):
    """A status record stored under another structure's id."""


class FromTheFutureError(VerificationError):
    """Data that cites a log position beyond the checkpoint it comes with, or a head cosigned
    later than the moment it is checked at (beyond the clocks' tolerance)."""


class ExpiredError(VerificationError):
    """Past the time until which it may be relied on, or not shown to be current: a status
    record past its ``next_update``, a head whose cosignature is older than allowed (or
    missing), a receipt decided outside the validity of its gate key's statement."""


class ReceiptError(VerificationError):
    """A receipt does not prove what it claims; ``__cause__`` is the typed failure."""
