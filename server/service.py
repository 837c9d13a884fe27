"""The gRPC transport: bytes in, typed checks to the gate, protobuf bytes out.

The service builds its method handlers itself (``method_handlers``) rather than through the
generated servicer: the unary checks come from ``CHECK_KINDS``, one handler per row, so a new
kind of check needs no method here. It registers them through ``server.guard``, like every
service on the port, so bytes that are not a valid message are answered ``INVALID_ARGUMENT``
before any code here runs.

Errors leave here and only here: a request the gate cannot answer is aborted with
``INVALID_ARGUMENT`` and a message naming the field; a check about a party (CheckApplicant,
Art. 22) asked of a gate that does not hold the whole registry, with ``FAILED_PRECONDITION``;
in a batch, the bad check gets a decision carrying ``error`` so that the rest of the batch is
still answered. The wire names are those of
the proto: ``permitgate.v1.PermitGate/<Method>``.

Answers leave as bytes that ``server.wire`` puts together (no protobuf object per answer); the
handlers are registered with no response serializer, so gRPC sends those bytes as they are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, NoReturn

import grpc
from google.protobuf.message import Message
from permitgate_client.v1 import gate_pb2 as pb

from server.cache import WholeRegistryNeeded
from server.checks import CHECK_KINDS, CheckKind, InvalidCheck
from server.decision_log import LogEntry
from server.gate import Gate, GateUnavailable
from server.guard import GuardedServer
from server.watch import WatchHub
from server.wire import answer_bytes, batch_field, error_decision

__all__ = [
    "MAX_BATCH",
    "SERVICE_NAME",
    "PermitGateService",
    "caller_of",
    "peer_of",
]

log = logging.getLogger(__name__)

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["PermitGate"].full_name
MAX_BATCH: Final = 1000

Context = Any  # grpc.aio.ServicerContext: the grpc package ships no type information


def caller_of(context: Context) -> str:
    """Who asked: the client certificate's common name under mutual TLS, else the peer.

    The name is decoded leniently: a certificate whose name is not UTF-8 must not fail the call.
    """
    names = context.auth_context().get("x509_common_name")
    peer = context.peer() or "unknown"
    return f"{names[0].decode(errors='replace')} ({peer})" if names else peer


def peer_of(context: Context) -> str:
    """Who asked, on a port without client certificates: the peer (``auth_context`` builds a
    dictionary per call that could name no one there)."""
    return context.peer() or "unknown"


# --- The service ---------------------------------------------------------------------------------

UnaryHandler = Callable[[Any, Context], Awaitable[bytes]]


async def _abort(context: Context, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)  # raises
    raise AssertionError("context.abort returned")  # pragma: no cover


class PermitGateService:
    """``permitgate.v1.PermitGate``: the unary checks of ``CHECK_KINDS``, BatchCheck, GetKeys,
    and WatchStatus (``server.watch``)."""

    def __init__(
        self,
        gate: Gate,
        keys: Callable[[], pb.KeySet],
        *,
        client_certificates: bool = True,
        watch: WatchHub | None = None,
    ) -> None:
        """``client_certificates``: whether the port asks callers for one (mutual TLS); without,
        a caller is named by its address alone. ``watch``: the hub WatchStatus streams come
        from (by default one of its own over the gate's cache)."""
        self._gate = gate
        self.watch = WatchHub(gate) if watch is None else watch
        self._keys = keys
        self._caller = caller_of if client_certificates else peer_of
        # A gate over a shared cache proves the records it lacks before deciding; the embedded
        # gate holds them all, and its hot path awaits nothing for it.
        self._ensure = None if gate.cache.holds_every_record else gate.ensure
        # Why each kind cannot be answered here (a check about a party on a shared gate), fixed
        # for the gate's life: decided once, not per check.
        self._refusals = {
            name: refusal
            for name, kind in CHECK_KINDS.items()
            if (refusal := _whole_registry_refusal(kind, gate)) is not None
        }

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Every method of the service by name (register them through a ``GuardedServer``)."""
        handlers: dict[str, grpc.RpcMethodHandler] = {
            kind.method: grpc.unary_unary_rpc_method_handler(
                self._unary_check(kind),
                request_deserializer=kind.message.FromString,
                response_serializer=None,  # the handler returns the bytes
            )
            for kind in CHECK_KINDS.values()
        }
        handlers["BatchCheck"] = grpc.stream_stream_rpc_method_handler(
            self.batch_check,
            request_deserializer=pb.CheckBatch.FromString,
            response_serializer=None,
        )
        handlers["WatchStatus"] = grpc.unary_stream_rpc_method_handler(
            self.watch.watch_status,
            request_deserializer=pb.WatchRequest.FromString,
            response_serializer=pb.StatusChange.SerializeToString,
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
        convert = kind.convert
        name_caller = self._caller
        cache: Any = gate.cache  # with ``ensure``: a SharedCache, which answers ``in``
        # A check about a party needs every verified record; it names no structure to fetch.
        refuse = self._refusals.get(kind.name)
        ensure = None if kind.whole_registry else self._ensure

        async def check(message: Message, context: Context) -> bytes:
            now = gate.clock()
            try:
                request = convert(message, now, cache)
            except InvalidCheck as exc:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if refuse is not None:
                await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, refuse)
            if ensure is not None and request.structure_id not in cache:
                await ensure((request.structure_id,))
                now = gate.clock()
            caller = name_caller(context)
            try:
                answer = gate.answer_now(request, caller=caller, now=now)
                if answer is None:  # NOTIFY: the notification is recorded first
                    answer = await gate.answer(request, caller=caller)
            except GateUnavailable as exc:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
            except WholeRegistryNeeded as exc:
                await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            return answer_bytes(answer)

        check.__name__ = check.__qualname__ = kind.method
        return check

    async def batch_check(
        self, batches: AsyncIterator[pb.CheckBatch], context: Context
    ) -> AsyncIterator[bytes]:
        """Each batch answered in order, as it arrives; a bad check gets its own ``error``.

        One moment per batch: its checks are validated and decided at the same ``now``, read
        again after a NOTIFY's notification is recorded (a wait on the database must not leave
        the checks after it decided by an older clock), and its answers are logged together.
        """
        caller = self._caller(context)
        gate = self._gate
        refusals = self._refusals
        async for batch in batches:
            checks = batch.checks
            if len(checks) > MAX_BATCH:
                await _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"checks: at most {MAX_BATCH} per batch, got {len(checks)}",
                )
            if self._ensure is not None:
                await self._ensure(_structure_ids(checks))
            now = gate.clock()
            out: list[bytes] = []
            entries: list[LogEntry] = []
            for index, check in enumerate(checks):
                which = check.WhichOneof("check")
                if which is None:
                    error = f"checks[{index}]: no check set"
                elif (kind := CHECK_KINDS.get(which)) is None:
                    error = f"checks[{index}]: this gate does not answer {which} checks"
                else:
                    try:
                        request = kind.convert(getattr(check, which), now, gate.cache)
                        refusal = refusals.get(which)
                        if refusal is not None:
                            raise WholeRegistryNeeded(refusal)
                        answer = gate.answer_at(request, now)
                        if answer is None:  # NOTIFY: logged in the batch's order
                            gate.log(entries)
                            entries = []
                            answer = await gate.answer(request, caller=caller)
                            now = gate.clock()
                        else:
                            entries.append((request, caller, answer))
                    except InvalidCheck as exc:
                        error = f"checks[{index}].{which}.{exc}"
                    except (GateUnavailable, WholeRegistryNeeded) as exc:
                        error = f"checks[{index}]: {exc}"
                    else:
                        out.append(batch_field(answer_bytes(answer, check.correlation_id)))
                        continue
                out.append(batch_field(error_decision(check.correlation_id, error)))
            gate.log(entries)
            yield b"".join(out)

    async def get_keys(self, request: pb.GetKeysRequest, context: Context) -> pb.KeySet:
        return self._keys()


def _structure_ids(checks: Any) -> list[str]:
    """The structure ids a batch's checks name (those without one are refused later; a check
    about a party names none)."""
    ids: list[str] = []
    for check in checks:
        which = check.WhichOneof("check")
        kind = None if which is None else CHECK_KINDS.get(which)
        if kind is None or kind.whole_registry:
            continue
        structure_id = getattr(check, which).structure_id
        if structure_id:
            ids.append(structure_id)
    return ids


def _whole_registry_refusal(kind: CheckKind[Any], gate: Gate) -> str | None:
    """Why ``kind`` cannot be answered by this gate, or None: a check about a party needs a gate
    that holds every verified record (as WatchStatus for a district does)."""
    if not kind.whole_registry or gate.cache.holds_every_record:
        return None
    return (
        f"{kind.method} needs a gate that holds the whole registry: a gate over the shared "
        "Redis cache holds only the structures asked of it and cannot prove that no record "
        "names the party; ask a gate served without --redis"
    )
