"""Python clients for the gate: ``GateClient`` (blocking) and ``AsyncGateClient`` (asyncio).

Both share ``_Requests``, which builds the protobuf requests from plain arguments; they differ
only in how they send. Answers come back as ``Decision`` objects with string codes. gRPC errors
are translated once, in ``error_from_rpc``, into this tree::

    GateError
    ├── InvalidCheckError   (INVALID_ARGUMENT: the message names the field)
    ├── DeadlineError       (DEADLINE_EXCEEDED)
    └── UnavailableError    (UNAVAILABLE: the gate cannot be reached)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import grpc

from permitgate.v1 import gate_pb2 as pb
from permitgate.v1 import gate_pb2_grpc
from registry.records import format_time

__all__ = [
    "AsyncGateClient",
    "DeadlineError",
    "Decision",
    "GateClient",
    "GateError",
    "InvalidCheckError",
    "Reason",
    "UnavailableError",
    "error_from_rpc",
]


class GateError(Exception):
    code: grpc.StatusCode | None = None


class InvalidCheckError(GateError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineError(GateError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(GateError):
    code = grpc.StatusCode.UNAVAILABLE


_ERRORS = {cls.code: cls for cls in (InvalidCheckError, DeadlineError, UnavailableError)}


def error_from_rpc(exc: grpc.RpcError) -> GateError:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return _ERRORS.get(code, GateError)(details or str(code))


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def _time(msg: Any, field: str) -> datetime | None:
    return getattr(msg, field).ToDatetime(tzinfo=UTC) if msg.HasField(field) else None


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    article: int
    message: str
    permit_kind: str | None = None
    case_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: str  # ALLOW, ALLOW_TEMPORARY, NOTIFY, REVIEW or DENY
    reasons: tuple[Reason, ...]
    registry_version: int
    decision_id: str
    decided_at: datetime | None
    valid_until: datetime | None = None
    notification_id: str | None = None
    correlation_id: str = ""
    receipt: bytes | None = None
    error: str | None = None

    @classmethod
    def from_proto(cls, msg: pb.Decision) -> Decision:
        reasons = tuple(
            Reason(
                code=_name(pb.ReasonCode, r.code, "REASON_CODE_"),
                article=r.article,
                message=r.message,
                permit_kind=None
                if r.permit_kind == pb.PERMIT_KIND_UNSPECIFIED
                else _name(pb.PermitKind, r.permit_kind, "PERMIT_KIND_").lower(),
                case_id=r.case_id or None,
            )
            for r in msg.reasons
        )
        return cls(
            verdict=_name(pb.Verdict, msg.verdict, "VERDICT_"),
            reasons=reasons,
            registry_version=msg.registry_version,
            decision_id=msg.decision_id,
            decided_at=_time(msg, "decided_at"),
            valid_until=_time(msg, "valid_until"),
            notification_id=msg.notification_id or None,
            correlation_id=msg.correlation_id,
            receipt=msg.receipt or None,
            error=msg.error or None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": [
                {
                    "code": r.code,
                    "article": r.article,
                    "permit_kind": r.permit_kind,
                    "case_id": r.case_id,
                    "message": r.message,
                }
                for r in self.reasons
            ],
            "valid_until": None if self.valid_until is None else format_time(self.valid_until),
            "notification_id": self.notification_id,
            "registry_version": self.registry_version,
            "decision_id": self.decision_id,
            "decided_at": None if self.decided_at is None else format_time(self.decided_at),
            "receipt": None if self.receipt is None else self.receipt.decode(),
        }


def _enum(enum: Any, prefix: str, value: str) -> int:
    try:
        return int(enum.Value(prefix + value.upper()))
    except ValueError:
        raise InvalidCheckError(f"unknown {prefix.lower().rstrip('_')}: {value!r}") from None


class _Requests:
    """Builds requests from plain arguments; shared by the blocking and the async client."""

    @staticmethod
    def connection(
        structure_id: str,
        *,
        utility: str,
        kind: str = "permanent",
        requested_until: datetime | None = None,
        application_id: str = "",
        receipt: bool = False,
    ) -> pb.ConnectionCheck:
        msg = pb.ConnectionCheck(
            structure_id=structure_id,
            utility=_enum(pb.Utility, "UTILITY_", utility),  # type: ignore[arg-type]
            kind=_enum(pb.ConnectionKind, "CONNECTION_KIND_", kind),  # type: ignore[arg-type]
            application_id=application_id,
            receipt=receipt,
        )
        if requested_until is not None:
            msg.requested_until.FromDatetime(requested_until)
        return msg

    @staticmethod
    def registration(
        structure_id: str, *, kind: str, application_id: str = "", receipt: bool = False
    ) -> pb.RegistrationCheck:
        return pb.RegistrationCheck(
            structure_id=structure_id,
            kind=_enum(pb.RegistrationKind, "REGISTRATION_KIND_", kind),  # type: ignore[arg-type]
            application_id=application_id,
            receipt=receipt,
        )

    @staticmethod
    def premises(
        structure_id: str,
        *,
        office: str,
        declared_use: str,
        application_id: str = "",
        receipt: bool = False,
    ) -> pb.PremisesCheck:
        return pb.PremisesCheck(
            structure_id=structure_id,
            office=_enum(pb.Office, "OFFICE_", office),  # type: ignore[arg-type]
            declared_use=declared_use,
            application_id=application_id,
            receipt=receipt,
        )


class GateClient:
    """A blocking client. Use as a context manager, or call ``close``."""

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._channel = (
            grpc.insecure_channel(target)
            if credentials is None
            else grpc.secure_channel(target, credentials)
        )
        self._stub = gate_pb2_grpc.PermitGateStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout = timeout

    def __enter__(self) -> GateClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    def check_connection(self, structure_id: str, **kwargs: Any) -> Decision:
        request = _Requests.connection(structure_id, **kwargs)
        return Decision.from_proto(self._call(self._stub.CheckConnection, request))

    def check_registration(self, structure_id: str, **kwargs: Any) -> Decision:
        request = _Requests.registration(structure_id, **kwargs)
        return Decision.from_proto(self._call(self._stub.CheckRegistration, request))

    def verify_premises(self, structure_id: str, **kwargs: Any) -> Decision:
        request = _Requests.premises(structure_id, **kwargs)
        return Decision.from_proto(self._call(self._stub.VerifyPremises, request))

    def keys(self) -> pb.KeySet:
        result: pb.KeySet = self._call(self._stub.GetKeys, pb.GetKeysRequest())
        return result


class AsyncGateClient:
    """The asyncio twin of ``GateClient``."""

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._channel = (
            grpc.aio.insecure_channel(target)
            if credentials is None
            else grpc.aio.secure_channel(target, credentials)
        )
        self._stub = gate_pb2_grpc.PermitGateStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout = timeout

    async def __aenter__(self) -> AsyncGateClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    async def check_connection(self, structure_id: str, **kwargs: Any) -> Decision:
        request = _Requests.connection(structure_id, **kwargs)
        return Decision.from_proto(await self._call(self._stub.CheckConnection, request))

    async def check_registration(self, structure_id: str, **kwargs: Any) -> Decision:
        request = _Requests.registration(structure_id, **kwargs)
        return Decision.from_proto(await self._call(self._stub.CheckRegistration, request))

    async def verify_premises(self, structure_id: str, **kwargs: Any) -> Decision:
        request = _Requests.premises(structure_id, **kwargs)
        return Decision.from_proto(await self._call(self._stub.VerifyPremises, request))

    async def keys(self) -> pb.KeySet:
        result: pb.KeySet = await self._call(self._stub.GetKeys, pb.GetKeysRequest())
        return result
