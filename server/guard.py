"""Every service on the gate's port parses its requests without raising.

A request deserializer that raises makes gRPC answer ``UNKNOWN`` and log a traceback per request,
so anyone who reaches the port could fill the log. ``GuardedServer`` stands between a server and
the code that registers services on it (ours, and the generated ``add_*_to_server`` of health and
reflection): every method handler it passes on parses with a deserializer that never raises.
Bytes that are not a valid message become an ``Unparsable`` value, which the wrapped handler
answers with ``INVALID_ARGUMENT`` naming the message type, before the service's own code runs;
``MalformedRequests`` counts them and logs a WARNING at most once per interval.

The same front keeps the port's ``CallLimit``: calls in flight beyond it are refused with
``RESOURCE_EXHAUSTED``, as grpc.aio's ``maximum_concurrent_rpcs`` would refuse them.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

__all__ = [
    "CallLimit",
    "GuardedServer",
    "MalformedRequests",
    "UnguardedService",
    "Unparsable",
    "guard_handlers",
]

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext: the grpc package ships no type information


@dataclass(frozen=True, slots=True)
class Unparsable:
    """What a guarded deserializer returns for bytes that are not a valid ``message``."""

    message: str  # the full name of the message type expected, e.g. permitgate.v1.CheckBatch


class MalformedRequests:
    """Counts requests whose bytes were not a valid message; one WARNING per ``interval`` s.

    A flood of garbage costs one log line per interval, not one (with a traceback) per request.
    """

    def __init__(
        self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total = 0
        self._interval = interval
        self._clock = clock
        self._unreported = 0
        self._next_report = float("-inf")

    def note(self, method: str, unparsable: Unparsable, peer: str) -> None:
        self.total += 1
        self._unreported += 1
        now = self._clock()
        if now < self._next_report:
            return
        log.warning(
            "%d request(s) whose bytes are not a valid message since the last report (%d in all);"
            " the latest: %s from %s, not a valid %s",
            self._unreported,
            self.total,
            method,
            peer,
            unparsable.message,
        )
        self._unreported = 0
        self._next_report = now + self._interval


class CallLimit:
    """At most ``maximum`` calls running on a port (streams and health checks included).

    grpc.aio's own ``maximum_concurrent_rpcs`` cost 5-10% of a bare server's CPU per call here
    (measured side by side, with and without it). Every handler runs on the event loop's one
    thread, so a plain counter does: raised as a call enters its handler, lowered however it
    ends. It counts running handlers only; calls whose request has not arrived yet are bounded
    per connection by the server's ``grpc.max_concurrent_streams``, set to twice the limit (at
    the limit itself, a client sharing one connection would queue its calls beyond it instead
    of hearing ``RESOURCE_EXHAUSTED``).
    """

    def __init__(self, maximum: int | None = None) -> None:
        if maximum is not None and maximum < 1:
            raise ValueError(f"maximum: {maximum} is not a positive number")
        self.maximum = maximum if maximum is not None else 1 << 62
        self.active = 0


async def _overloaded(context: Context, limit: CallLimit) -> NoReturn:
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the server has {limit.maximum} calls in flight, its limit; try again later",
    )
    raise AssertionError("context.abort returned")  # pragma: no cover


def _total(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserialize`` made total: bytes it cannot parse become an ``Unparsable``."""
    owner = getattr(deserialize, "__self__", None)  # Message.FromString is a bound classmethod
    name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request")
    unparsable = Unparsable(name)

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError, and whatever else a hostile input finds: never raise
            return unparsable

    return parse


async def _refuse(
    method: str, unparsable: Unparsable, context: Context, malformed: MalformedRequests
) -> NoReturn:
    malformed.note(method, unparsable, context.peer() or "unknown")
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {unparsable.message} message"
    )
    raise AssertionError("context.abort returned")  # pragma: no cover


def _guard(
    method: str, handler: Any, malformed: MalformedRequests, limit: CallLimit
) -> grpc.RpcMethodHandler:
    """One handler of any of the four kinds, with a total deserializer and a refusing front."""
    deserialize = handler.request_deserializer
    parse = None if deserialize is None else _total(deserialize)  # None: it takes raw bytes
    serialize = handler.response_serializer
    if not handler.request_streaming:
        behaviour = handler.unary_unary or handler.unary_stream
        if inspect.isasyncgenfunction(behaviour):

            async def one_in_stream_out(request: Any, context: Context) -> AsyncIterator[Any]:
                if limit.active >= limit.maximum:
                    await _overloaded(context, limit)
                limit.active += 1
                try:
                    if isinstance(request, Unparsable):
                        await _refuse(method, request, context, malformed)
                    async for response in behaviour(request, context):
                        yield response
                finally:
                    limit.active -= 1

            wrapped: Any = one_in_stream_out
        else:

            async def one_in(request: Any, context: Context) -> Any:
                if limit.active >= limit.maximum:
                    await _overloaded(context, limit)
                limit.active += 1
                try:
                    if isinstance(request, Unparsable):
                        await _refuse(method, request, context, malformed)
                    return await behaviour(request, context)
                finally:
                    limit.active -= 1

            wrapped = one_in
        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary is not None
            else grpc.unary_stream_rpc_method_handler
        )
        return make(wrapped, request_deserializer=parse, response_serializer=serialize)

    behaviour = handler.stream_unary or handler.stream_stream

    async def checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Unparsable):
                await _refuse(method, request, context, malformed)
            yield request

    if inspect.isasyncgenfunction(behaviour):

        async def many_in_stream_out(requests: Any, context: Context) -> AsyncIterator[Any]:
            if limit.active >= limit.maximum:
                await _overloaded(context, limit)
            limit.active += 1
            try:
                async for response in behaviour(checked(requests, context), context):
                    yield response
            finally:
                limit.active -= 1

        wrapped = many_in_stream_out
    else:

        async def many_in(requests: Any, context: Context) -> Any:
            if limit.active >= limit.maximum:
                await _overloaded(context, limit)
            limit.active += 1
            try:
                return await behaviour(checked(requests, context), context)
            finally:
                limit.active -= 1

        wrapped = many_in
    make = (
        grpc.stream_unary_rpc_method_handler
        if handler.stream_unary is not None
        else grpc.stream_stream_rpc_method_handler
    )
    return make(wrapped, request_deserializer=parse, response_serializer=serialize)


def guard_handlers(
    service: str,
    handlers: Mapping[str, grpc.RpcMethodHandler],
    malformed: MalformedRequests,
    limit: CallLimit | None = None,
) -> dict[str, grpc.RpcMethodHandler]:
    """``handlers`` (by method name) guarded: none of them sees bytes that do not parse, and
    none runs beyond ``limit`` (none: no limit)."""
    limit = CallLimit() if limit is None else limit
    return {
        name: _guard(f"/{service}/{name}", handler, malformed, limit)
        for name, handler in handlers.items()
    }


class UnguardedService(Exception):
    """A service was registered only as a generic handler, which the guard cannot guard."""


class GuardedServer:
    """What ``add_*_to_server`` functions register on, standing in for the real server.

    Generated code registers each service twice, as a generic handler and by name with its
    handler table; only the table can be guarded, so the generic registration is held back here
    and made again, guarded, from the table. A generic registration that no table of the same
    service follows would be lost: ``check``, called once every service is added, raises
    ``UnguardedService`` naming it, so that a service cannot go missing without a word.
    """

    def __init__(
        self, server: grpc.aio.Server, malformed: MalformedRequests, limit: CallLimit | None = None
    ) -> None:
        self._server = server
        self.malformed = malformed
        self.limit = CallLimit() if limit is None else limit
        self.services: list[str] = []
        self._held_back: list[tuple[str | None, object]] = []  # (service name, generic handler)

    def add_generic_rpc_handlers(self, handlers: Iterable[object]) -> None:
        """Held back until ``add_registered_method_handlers`` registers the same service."""
        for handler in handlers:
            service_name = getattr(handler, "service_name", None)
            name = service_name() if callable(service_name) else None
            self._held_back.append((name if isinstance(name, str) else None, handler))

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        guarded = guard_handlers(service, handlers, self.malformed, self.limit)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, guarded),)
        )
        self._server.add_registered_method_handlers(service, guarded)
        self.services.append(service)
        self._held_back = [(name, h) for name, h in self._held_back if name != service]

    def check(self) -> None:
        """Raise ``UnguardedService`` if a generic registration was never made by name."""
        if self._held_back:
            names = ", ".join(name or repr(handler) for name, handler in self._held_back)
            raise UnguardedService(
                f"registered only as a generic handler, which cannot be guarded: {names} "
                "(register the service with add_registered_method_handlers, as grpcio's "
                "generated add_*_to_server functions do)"
            )
