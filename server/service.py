"""The gRPC transport: bytes in, typed checks to the gate, protobuf out.

The service builds its method handlers itself (``method_handlers``) rather than through the
generated servicer: the unary checks come from ``CHECK_KINDS``, one handler per row, so a new
kind of check needs no method here. It registers them through ``server.guard``, like every
service on the port, so bytes that are not a valid message are answered ``INVALID_ARGUMENT``
before any code here runs.

Errors leave here and only here: a request the gate cannot answer is aborted with
``INVALID_ARGUMENT`` and a message naming the field; in a batch, the bad check gets a decision
carrying ``error`` so that the rest of the batch is still answered. The wire names are those of
the proto: ``permitgate.v1.PermitGate/<Method>``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from permitgate_client.v1 import gate_pb2 as pb

from server.checks import (
    CHECK_KINDS,
    PERMIT_KINDS,
    REASON_CODES,
    VERDICTS,
    CheckKind,
    InvalidCheck,
)
from server.gate import Answer, Gate, GateUnavailable
from server.guard import GuardedServer
from server.rules import Decision

__all__ = [
    "MAX_BATCH",
    "SERVICE_NAME",
    "PermitGateService",
    "decision_message",
    "wire_decision",
]

log = logging.getLogger(__name__)

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["PermitGate"].full_name
MAX_BATCH: Final = 1000

_TEMPLATE_LIMIT = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)

Context = Any  # grpc.aio.ServicerContext: the grpc package ships no type information


# --- Decisions on the wire -----------------------------------------------------------------------


def _set_time(stamp: Timestamp, at: datetime) -> None:
    """``Timestamp.FromDatetime`` for aware datetimes, without its calendar arithmetic."""
    stamp.seconds = (at - _EPOCH) // _SECOND  # exact, unlike float timestamp()
    stamp.nanos = at.microsecond * 1000


_templates: dict[Decision, pb.Decision] = {}


def wire_decision(decision: Decision) -> pb.Decision:
    """The wire form of a decision's verdict, reasons and valid_until, built once per decision
    (the gate's answers and the offline ones from a snapshot alike; never change it: merge it).

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
    out.MergeFrom(wire_decision(answer.decision))
    if answer.notification_id is not None:
        out.notification_id = answer.notification_id
    out.registry_version = answer.registry_version
    out.decision_id = answer.decision_id
    _set_time(out.decided_at, answer.decided_at)
    if answer.receipt is not None:
        out.receipt = answer.receipt
    return out


def caller_of(context: Context) -> str:
    """Who asked: the client certificate's common name under mutual TLS, else the peer.

    The name is decoded leniently: a certificate whose name is not UTF-8 must not fail the call.
    """
    names = context.auth_context().get("x509_common_name")
    peer = context.peer() or "unknown"
    return f"{names[0].decode(errors='replace')} ({peer})" if names else peer


# --- The service ---------------------------------------------------------------------------------

UnaryHandler = Callable[[Any, Context], Awaitable[Message]]


async def _abort(context: Context, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)  # raises
    raise AssertionError("context.abort returned")  # pragma: no cover


class PermitGateService:
    """``permitgate.v1.PermitGate``: the unary checks of ``CHECK_KINDS``, BatchCheck, GetKeys."""

    def __init__(self, gate: Gate, keys: Callable[[], pb.KeySet]) -> None:
        self._gate = gate
        self._keys = keys

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Every method of the service by name (register them through a ``GuardedServer``)."""
        handlers: dict[str, grpc.RpcMethodHandler] = {
            kind.method: grpc.unary_unary_rpc_method_handler(
                self._unary_check(kind),
                request_deserializer=kind.message.FromString,
                response_serializer=pb.Decision.SerializeToString,
            )
            for kind in CHECK_KINDS.values()
        }
        handlers["BatchCheck"] = grpc.stream_stream_rpc_method_handler(
            self.batch_check,
            request_deserializer=pb.CheckBatch.FromString,
            response_serializer=pb.DecisionBatch.SerializeToString,
        )
        handlers["GetKeys"] = grpc.unary_unary_rpc_method_handler(
            self.get_keys,
            request_deserializer=pb.GetKeysRequest.FromString,
            response_serializer=pb.KeySet.SerializeToString,
        )
        return handlers

    def add_to_server(self, server: GuardedServer) -> None:
        """Serve every method under its wire name, ``permitgate.v1.PermitGate/<Method>``."""
        server.add_registered_method_handlers(SERVICE_NAME, self.method_handlers())

    def _unary_check(self, kind: CheckKind[Any]) -> UnaryHandler:
        gate = self._gate
        convert = kind.from_wire

        async def check(message: Message, context: Context) -> pb.Decision:
            try:
                request = convert(message, gate.clock())
            except InvalidCheck as exc:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            try:
                answer = await gate.answer(request, caller=caller_of(context))
            except GateUnavailable as exc:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
            return decision_message(answer, pb.Decision())

        check.__name__ = check.__qualname__ = kind.method
        return check

    async def batch_check(
        self, batches: AsyncIterator[pb.CheckBatch], context: Context
    ) -> AsyncIterator[pb.DecisionBatch]:
        """Each batch answered in order, as it arrives; a bad check gets its own ``error``."""
        caller = caller_of(context)
        gate = self._gate
        async for batch in batches:
            if len(batch.checks) > MAX_BATCH:
                await _abort(
                    context,
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
                kind = CHECK_KINDS.get(which)
                if kind is None:
                    decision.error = f"checks[{index}]: this gate does not answer {which} checks"
                    continue
                try:
                    request = kind.from_wire(getattr(check, which), now)
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

    async def get_keys(self, request: pb.GetKeysRequest, context: Context) -> pb.KeySet:
        return self._keys()
