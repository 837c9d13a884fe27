"""The gRPC transport: protobuf in, typed checks to the gate, protobuf out.

Errors leave here and only here: a request the gate cannot answer is aborted with
``INVALID_ARGUMENT`` and a message naming the field; in a batch, the bad check gets a decision
carrying ``error`` so that the rest of the batch is still answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

from server.checks import (
    PERMIT_KINDS,
    REASON_CODES,
    VERDICTS,
    CheckRequest,
    InvalidCheck,
    connection_request,
    premises_request,
    registration_request,
)
from server.gate import Answer, Gate, GateUnavailable
from server.rules import Decision

__all__ = ["MAX_BATCH", "PermitGateService", "decision_message"]

MAX_BATCH = 1000

_CONVERT: dict[str, Callable[[Any, datetime], CheckRequest]] = {
    "connection": connection_request,
    "registration": registration_request,
    "premises": premises_request,
}


_TEMPLATE_LIMIT = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _set_time(stamp: Timestamp, at: datetime) -> None:
    """``Timestamp.FromDatetime`` for aware datetimes, without its calendar arithmetic."""
    stamp.seconds = (at - _EPOCH) // _SECOND  # exact, unlike float timestamp()
    stamp.nanos = at.microsecond * 1000


_templates: dict[Decision, pb.Decision] = {}


def _template(decision: Decision) -> pb.Decision:
    """The wire form of a decision's verdict, reasons and valid_until, built once per decision.

    Keyed by value (decisions are frozen and hashable), so equal decisions share one template.
    """
    template = _templates.get(decision)
    if template is not None:
        return template
    template = pb.Decision(verdict=VERDICTS[decision.verdict])
    for reason in decision.reasons:
        r = template.reasons.add()
        r.code = REASON_CODES[reason.code]
        r.article = reason.article
        r.message = reason.message
        if reason.permit_kind is not None:
            r.permit_kind = PERMIT_KINDS[reason.permit_kind]
        if reason.case_id is not None:
            r.case_id = reason.case_id
    if decision.valid_until is not None:
        _set_time(template.valid_until, decision.valid_until)
    if len(_templates) >= _TEMPLATE_LIMIT:
        _templates.clear()
    _templates[decision] = template
    return template


def decision_message(answer: Answer, out: pb.Decision) -> pb.Decision:
    """Fill ``out`` (empty, or holding only a correlation id) from an answer."""
    out.MergeFrom(_template(answer.decision))
    if answer.notification_id is not None:
        out.notification_id = answer.notification_id
    out.registry_version = answer.registry_version
    out.decision_id = answer.decision_id
    _set_time(out.decided_at, answer.decided_at)
    if answer.receipt is not None:
        out.receipt = answer.receipt
    return out


def caller_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Who asked: the client certificate's common name under mutual TLS, else the peer."""
    names = context.auth_context().get("x509_common_name")
    peer = context.peer() or "unknown"
    return f"{names[0].decode()} ({peer})" if names else peer


class PermitGateService(gate_pb2_grpc.PermitGateServicer):
    def __init__(self, gate: Gate, keys: Callable[[], pb.KeySet]) -> None:
        self._gate = gate
        self._keys = keys

    async def _one(
        self,
        convert: Callable[[Any, datetime], CheckRequest],
        message: Message,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.Decision:
        try:
            request = convert(message, self._gate.clock())
        except InvalidCheck as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            answer = await self._gate.answer(request, caller=caller_of(context))
        except GateUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return decision_message(answer, pb.Decision())

    async def CheckConnection(  # noqa: N802  (gRPC method names)
        self, request: pb.ConnectionCheck, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Decision:
        return await self._one(connection_request, request, context)

    async def CheckRegistration(  # noqa: N802
        self, request: pb.RegistrationCheck, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Decision:
        return await self._one(registration_request, request, context)

    async def VerifyPremises(  # noqa: N802
        self, request: pb.PremisesCheck, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Decision:
        return await self._one(premises_request, request, context)

    async def BatchCheck(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.CheckBatch],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DecisionBatch]:
        caller = caller_of(context)
        gate = self._gate
        async for batch in request_iterator:
            if len(batch.checks) > MAX_BATCH:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"checks: at most {MAX_BATCH} per batch, got {len(batch.checks)}",
                )
            out = pb.DecisionBatch()
            now = gate.clock()
            for index, check in enumerate(batch.checks):
                decision = out.decisions.add()
                decision.correlation_id = check.correlation_id
                which = check.WhichOneof("check")
                if which is None:
                    decision.error = f"checks[{index}]: no check set"
                    continue
                try:
                    request = _CONVERT[which](getattr(check, which), now)
                except InvalidCheck as exc:
                    decision.error = f"checks[{index}].{which}.{exc}"
                    continue
                try:
                    answer = await gate.answer(request, caller=caller)
                except GateUnavailable as exc:
                    decision.error = f"checks[{index}]: {exc}"
                    continue
                decision_message(answer, decision)
            yield out

    async def GetKeys(  # noqa: N802
        self, request: pb.GetKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.KeySet:
        return self._keys()
