"""Every error the client package raises, in two trees.

Talking to the gate (one class per gRPC status a caller can act on; ``from_rpc`` translates)::

    GateError
    ├── InvalidCheckError       INVALID_ARGUMENT: the message names the field at fault
    ├── DeadlineError           DEADLINE_EXCEEDED
    ├── UnavailableError        UNAVAILABLE: unreachable, loading, or cannot log; retry later
    ├── OverloadedError         RESOURCE_EXHAUSTED: too many calls in flight; retry later
    └── PermissionDeniedError   PERMISSION_DENIED / UNAUTHENTICATED

Checking signed data (what failed, as a type: match the class, never the message text)::

    VerificationError
    ├── MalformedError          not the documented shape (bad JSON, base64, note layout ...)
    ├── BadSignatureError       no valid signature by a trusted key
    ├── WrongOriginError        a checkpoint of another log
    ├── RollbackError           older than what is already trusted
    ├── ForkError               two different roots for one tree size
    ├── WrongStructureError     a status record filed under another structure
    ├── FromTheFutureError      signed data citing a log newer than its checkpoint
    ├── ExpiredError            past the time it may be relied on
    └── ReceiptError            a receipt that does not prove what it says; ``__cause__`` holds
                                the typed failure underneath
"""

from __future__ import annotations

from typing import ClassVar

import grpc

__all__ = [
    "BadSignatureError",
    "DeadlineError",
    "ExpiredError",
    "ForkError",
    "FromTheFutureError",
    "GateError",
    "InvalidCheckError",
    "MalformedError",
    "OverloadedError",
    "PermissionDeniedError",
    "ReceiptError",
    "RollbackError",
    "UnavailableError",
    "VerificationError",
    "WrongOriginError",
    "WrongStructureError",
    "from_rpc",
]


class GateError(Exception):
    """The gate did not answer the call; ``code`` is the gRPC status, when there was one."""

    code: ClassVar[grpc.StatusCode | None] = None


class InvalidCheckError(GateError, ValueError):
    """The check was refused as asked; the message names the field and why."""

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
    """The gate does not accept this caller (mutual TLS identity)."""

    code = grpc.StatusCode.PERMISSION_DENIED


_BY_CODE: dict[grpc.StatusCode, type[GateError]] = {
    cls.code: cls
    for cls in (InvalidCheckError, DeadlineError, UnavailableError, OverloadedError)
    if cls.code is not None
}
_BY_CODE[grpc.StatusCode.PERMISSION_DENIED] = PermissionDeniedError
_BY_CODE[grpc.StatusCode.UNAUTHENTICATED] = PermissionDeniedError


def from_rpc(exc: grpc.RpcError) -> GateError:
    """The typed error for a failed call (raise it ``from exc``)."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else None
    cls = GateError if code is None else _BY_CODE.get(code, GateError)
    message = details or (str(exc) if code is None else code.name)
    return cls(message)


class VerificationError(Exception):
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
    """Two different roots for the same tree size: the log was rewritten."""


class WrongStructureError(VerificationError):
    """A status record stored under another structure's id."""


class FromTheFutureError(VerificationError):
    """Data that cites a log position beyond the checkpoint it comes with."""


class ExpiredError(VerificationError):
    """Past the time until which it may be relied on."""


class ReceiptError(VerificationError):
    """A receipt does not prove what it claims; ``__cause__`` is the typed failure."""
