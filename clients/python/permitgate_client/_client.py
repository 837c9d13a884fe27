"""``Client`` (blocking) and ``AsyncClient`` (asyncio): the gate's API as typed Python calls.

Both stand on ``_BaseClient``, which holds the options and the credentials, turns keyword
arguments into wire checks (``Check``) and cuts a stream of checks into batches; it does no I/O.
The two differ only in the send path: a blocking call or an awaited one, a thread feeding the
``BatchCheck`` stream or a task. Every failed call leaves as a ``GateError`` subclass
(``from_rpc``, the one translation point); in ``check_many`` a check the gate refused comes back
in its place as a ``Refused`` and the rest go on.

``check_many`` keeps at most ``window`` batches in flight: a batch is cut from the caller's
checks only when a slot is free, and a slot frees when the batch's answers arrive, so a slow
reader slows the sender and memory stays flat however many checks there are.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
)
from datetime import datetime
from types import TracebackType
from typing import Any, NoReturn

import grpc

from permitgate_client._errors import GateError, InvalidCheckError, from_rpc
from permitgate_client._keyset import KeySet
from permitgate_client._models import _VERDICTS, Check, Decision, Refused
from permitgate_client._watch import (
    RESUMABLE,
    StatusChange,
    WatchPosition,
    _Resumer,
    backoff,
    watch_request,
)
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "MAX_BATCH",
    "WATCH_RETRIES",
    "AsyncClient",
    "Client",
]

DEFAULT_TIMEOUT = 5.0
"""Seconds a single call (a check, ``keys``) may take before ``DeadlineError``."""

MAX_BATCH = 1000
"""The most checks the gate takes in one ``CheckBatch`` (``check_many``'s default batch size)."""

DEFAULT_WINDOW = 8
"""How many batches ``check_many`` keeps in flight by default."""

WATCH_RETRIES = 10
"""How many times in a row ``watch`` tries to resume a dropped stream before it gives up."""

Material = bytes | str | os.PathLike[str]
"""TLS material: the PEM bytes themselves, or the path of a file holding them."""

_RPC = {
    "connection": "CheckConnection",
    "registration": "CheckRegistration",
    "premises": "VerifyPremises",
    "applicant": "CheckApplicant",
}


def _pem(name: str, value: Material | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {os.fspath(value)!r}: {exc.strerror}") from exc


class _Batcher:
    """Cuts the caller's checks into ``CheckBatch`` messages, pulling only when asked."""

    def __init__(self, checks: Iterable[Check] | AsyncIterable[Check], size: int) -> None:
        if isinstance(checks, AsyncIterable):
            self._async: AsyncIterator[object] | None = aiter(checks)
            self._sync: Iterator[object] = iter(())
        elif isinstance(checks, Iterable):
            self._async = None
            self._sync = iter(checks)
        else:
            raise TypeError(f"checks: expected an iterable of Check, got {type(checks).__name__}")
        self._size = size
        self._pulled = 0
        self._done = False

    @property
    def exhausted(self) -> bool:
        """True once every check has been cut into a batch."""
        return self._done

    def next(self) -> pb.CheckBatch | None:
        """The next batch, or None once the checks are used up."""
        if self._done:
            return None
        batch = pb.CheckBatch()
        add = batch.checks.add
        size, n = self._size, 0
        for item in self._sync:
            if type(item) is not Check and not isinstance(item, Check):
                self._reject(item, n)
            item.write(add())
            n += 1
            if n == size:
                break
        else:
            self._done = True
        self._pulled += n
        return batch if n else None

    async def anext(self) -> pb.CheckBatch | None:
        """The next batch from a sync or an async iterable, or None once used up."""
        if self._async is None:
            return self.next()
        if self._done:
            return None
        batch = pb.CheckBatch()
        add = batch.checks.add
        n = 0
        while n < self._size:
            try:
                item = await anext(self._async)
            except StopAsyncIteration:
                self._done = True
                break
            if not isinstance(item, Check):
                self._reject(item, n)
            item.write(add())
            n += 1
        self._pulled += n
        return batch if n else None

    def _reject(self, item: object, n: int) -> NoReturn:
        raise TypeError(
            f"checks[{self._pulled + n}]: expected a Check (Check.connection(...) and its "
            f"twins), got {type(item).__name__}"
        )


def _results(answer: pb.DecisionBatch, sent: deque[int], index: int) -> list[Decision | Refused]:
    """The answers to the oldest unanswered batch (taken off ``sent``), in order, as
    ``Decision`` or ``Refused``."""
    if not sent:
        raise GateError("the gate answered more batches than were sent")
    size = sent.popleft()
    decisions = answer.decisions
    if len(decisions) != size:
        raise GateError(f"the gate answered {len(decisions)} decisions to a batch of {size}")
    verdicts = _VERDICTS
    out: list[Decision | Refused] = []
    append = out.append
    for message in decisions:
        verdict = verdicts.get(message.verdict)  # a refused check has none
        if verdict is not None:
            append(Decision(message, verdict))
        elif message.error:
            append(Refused(index, message.error, message.correlation_id))
        else:
            append(Decision.from_proto(message))  # raises: a verdict this client cannot read
        index += 1
    return out


def _check_ended(sent: deque[int], batcher: _Batcher, failure: list[Exception]) -> None:
    """At the end of the gate's answers: raise unless every check was sent and answered.

    A gate that ends the stream (with OK) early leaves batches unanswered, or checks unsent
    (the sender stops when the call ends); either way results are missing.
    """
    if sent:
        n = len(sent)
        raise GateError(f"the gate ended the stream with {n} batch{'es' * (n > 1)} unanswered")
    if not batcher.exhausted and not failure:
        raise GateError("the gate ended the stream before every check was sent")


class _BaseClient:
    """What both clients share: target, credentials, timeout, and turning checks into wire
    messages. No I/O here."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float,
        tls_ca: Material | None,
        tls_cert: Material | None,
        tls_key: Material | None,
        credentials: grpc.ChannelCredentials | None,
    ) -> None:
        if not isinstance(target, str) or not target:
            raise ValueError(f"target: give the gate's host:port, not {target!r}")
        if not timeout > 0:
            raise ValueError(f"timeout: must be more than 0 seconds, not {timeout!r}")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together (mutual TLS)")
        material = tls_ca is not None or tls_cert is not None
        if credentials is not None and material:
            raise ValueError("give credentials, or the tls_* material, not both")
        if material:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem("tls_ca", tls_ca),
                private_key=_pem("tls_key", tls_key),
                certificate_chain=_pem("tls_cert", tls_cert),
            )
        self.target = target
        self.timeout = timeout
        self.credentials = credentials

    def __repr__(self) -> str:
        security = "plaintext" if self.credentials is None else "TLS"
        return f"{type(self).__name__}({self.target!r}, {security}, timeout={self.timeout})"

    @staticmethod
    def _unary(check: Check) -> tuple[str, Any]:
        """The RPC that answers ``check`` alone, and its request message."""
        kind = check.kind
        return _RPC[kind], getattr(check.message, kind)

    @staticmethod
    def _resumer(
        question: Check,
        structure_ids: list[str] | tuple[str, ...] | None,
        district: str | None,
        all_structures: bool,
        after: WatchPosition | None,
        retries: int,
    ) -> _Resumer:
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: 0 or more, not {retries!r}")
        if after is not None and not isinstance(after, WatchPosition):
            raise TypeError(f"after: expected a WatchPosition, got {type(after).__name__}")
        if isinstance(question, Check) and question.kind == "applicant":
            raise InvalidCheckError(
                "question: an applicant check is about a party, not a structure, and cannot be"
                " watched; ask check_applicant"
            )
        return _Resumer(watch_request(question, structure_ids, district, all_structures), after)

    @staticmethod
    def _batcher(
        checks: Iterable[Check] | AsyncIterable[Check], batch_size: int, window: int
    ) -> _Batcher:
        if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size: 1 to {MAX_BATCH}, not {batch_size!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window: at least 1 batch in flight, not {window!r}")
        return _Batcher(checks, batch_size)


class Client(_BaseClient):
    """A blocking client for one gate. Use it as a context manager, or call ``close``.

    ``Client("gate.example:50051", timeout=2.0, tls_ca=Path("ca.pem"))``; add ``tls_cert`` and
    ``tls_key`` for mutual TLS (each a path or the PEM bytes), or pass ready ``credentials``.
    Without TLS material the channel is plaintext (for loopback and tests). ``timeout`` bounds
    each single call. One client may be shared by threads.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        tls_ca: Material | None = None,
        tls_cert: Material | None = None,
        tls_key: Material | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        super().__init__(
            target,
            timeout=timeout,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            credentials=credentials,
        )
        self._channel = (
            grpc.insecure_channel(target)
            if self.credentials is None
            else grpc.secure_channel(target, self.credentials)
        )
        self._stub = gate_pb2_grpc.PermitGateStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    # --- the send path ---------------------------------------------------------------------

    def _call(self, rpc: str, request: Any) -> Any:
        try:
            return getattr(self._stub, rpc)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc(exc) from exc

    def _decide(self, check: Check) -> Decision:
        return Decision.from_proto(self._call(*self._unary(check)))

    def _stream(
        self, batcher: _Batcher, window: int, timeout: float | None
    ) -> Generator[Decision | Refused, None, None]:
        slots = threading.Semaphore(window)
        stopped = threading.Event()
        sent: deque[int] = deque()
        failure: list[Exception] = []
        calls: list[grpc.Call] = []

        def requests() -> Iterator[pb.CheckBatch]:
            # Runs in gRPC's sending thread: a batch is cut only once a slot is free.
            while True:
                while not slots.acquire(timeout=0.25):
                    if stopped.is_set() or (calls and not calls[0].is_active()):
                        return
                if stopped.is_set():
                    return
                try:
                    batch = batcher.next()
                except Exception as exc:  # the caller's iterable: raised to the reader
                    failure.append(exc)
                    return
                if batch is None:
                    return
                sent.append(len(batch.checks))
                yield batch

        responses = self._stub.BatchCheck(requests(), timeout=timeout)
        calls.append(responses)
        index = 0
        try:
            for answer in responses:
                slots.release()
                results = _results(answer, sent, index)
                index += len(results)
                yield from results
            _check_ended(sent, batcher, failure)
        except grpc.RpcError as exc:
            raise from_rpc(exc) from exc
        finally:
            responses.cancel()  # first: the gate must see a cancelled call, not a finished one
            stopped.set()
            slots.release()  # wake the sender if it waits for a slot
        if failure:
            raise failure[0]

    # --- the calls -------------------------------------------------------------------------

    def check_connection(
        self,
        structure_id: str,
        *,
        utility: str,
        kind: str = "permanent",
        requested_until: datetime | None = None,
        application_id: str = "",
        receipt: bool = False,
    ) -> Decision:
        """Art. 23: may ``utility`` (water, power, gas, heat) connect this structure,
        ``permanent`` or ``temporary`` (until ``requested_until`` at most)?"""
        return self._decide(
            Check.connection(
                structure_id,
                utility=utility,
                kind=kind,
                requested_until=requested_until,
                application_id=application_id,
                receipt=receipt,
            )
        )

    def check_registration(
        self, structure_id: str, *, kind: str, application_id: str = "", receipt: bool = False
    ) -> Decision:
        """Art. 11: may an ``initial`` registration, a ``transfer`` or a ``mortgage`` be
        recorded?"""
        return self._decide(
            Check.registration(
                structure_id, kind=kind, application_id=application_id, receipt=receipt
            )
        )

    def verify_premises(
        self,
        structure_id: str,
        *,
        office: str,
        declared_use: str,
        application_id: str = "",
        receipt: bool = False,
    ) -> Decision:
        """Art. 13: do the premises hold their permits, for ``declared_use``? Notifying
        offices (market_regulation, culture, health, tax) must give ``application_id``."""
        return self._decide(
            Check.premises(
                structure_id,
                office=office,
                declared_use=declared_use,
                application_id=application_id,
                receipt=receipt,
            )
        )

    def check_applicant(
        self,
        party_id: str,
        *,
        asking: str,
        application_id: str = "",
        receipt: bool = False,
    ) -> Decision:
        """Art. 22: may ``planning`` (or ``housing``) accept an application of ``party_id``?
        DENY (``PARTY_SUSPENDED``, naming each case) while the party is suspended for ignoring
        a stop or demolition order. Only a gate that holds the whole registry answers (a gate
        over a shared cache refuses: ``GateError`` with FAILED_PRECONDITION)."""
        return self._decide(
            Check.applicant(party_id, asking=asking, application_id=application_id, receipt=receipt)
        )

    def check_many(
        self,
        checks: Iterable[Check],
        *,
        batch_size: int = MAX_BATCH,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = None,
    ) -> Generator[Decision | Refused, None, None]:
        """Answer any number of checks over one ``BatchCheck`` stream, one result per check,
        in order: a ``Decision``, or a ``Refused`` (with its ``index``) for a check the gate
        refused.

        ``checks`` may be any iterable (a generator reading a file, say); it is read from
        gRPC's sending thread, ``batch_size`` checks at a time, and never more than ``window``
        batches ahead of the answers received. Stopping the iteration early (``break``, or
        ``close()`` on the iterator) cancels the stream. If ``checks`` raises, the answers to
        what was already sent come first, then that exception. ``timeout`` bounds the whole
        stream (default: none). Other failures raise a ``GateError``.
        """
        return self._stream(self._batcher(checks, batch_size, window), window, timeout)

    def keys(self) -> KeySet:
        """The registry's and the gate's public keys (and the newest checkpoint), to keep."""
        return KeySet.from_proto(self._call("GetKeys", pb.GetKeysRequest()))

    def watch(
        self,
        question: Check,
        *,
        structure_ids: list[str] | tuple[str, ...] | None = None,
        district: str | None = None,
        all_structures: bool = False,
        after: WatchPosition | None = None,
        retries: int = WATCH_RETRIES,
    ) -> Generator[StatusChange, None, None]:
        """Every change to the answer ``question`` gets for the structures watched: first the
        current answers (from ``after``: only those that may have changed since), then each
        change as the gate finds it (a new case, a permit lapsing, stale data ...). Never ends
        on its own; ``break`` or ``close()`` ends the watch.

        ``question`` is a ``Check`` with its structure id left empty (``Check.connection("",
        utility="water")``); the structures are ``structure_ids`` (at most 10,000), a
        ``district``, or ``all_structures``. A dropped stream is resumed from the last progress
        marker, without yielding an answer already yielded for a structure; after ``retries``
        failed attempts in a row the last error is raised (a ``GateError``).
        """
        resumer = self._resumer(question, structure_ids, district, all_structures, after, retries)
        failures = 0
        while True:
            call = self._stub.WatchStatus(resumer.request())
            try:
                for message in call:
                    failures = 0
                    change = resumer.take(message)
                    if change is not None:
                        yield change
                error: grpc.RpcError | None = None
            except grpc.RpcError as exc:
                if exc.code() not in RESUMABLE:
                    raise from_rpc(exc) from exc
                error = exc
            finally:
                call.cancel()
            failures += 1
            if failures > retries:
                if error is None:
                    raise GateError("the gate kept ending the watch stream")
                raise from_rpc(error) from error
            time.sleep(backoff(failures))


class AsyncClient(_BaseClient):
    """The asyncio twin of ``Client``: the same options and calls, awaited; ``check_many`` is
    an async iterator. Use it as an async context manager, or await ``close``.

    Stopping ``check_many`` early cancels its stream once the iterator is closed: wrap it in
    ``contextlib.aclosing`` to close it at once (otherwise it closes when collected).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        tls_ca: Material | None = None,
        tls_cert: Material | None = None,
        tls_key: Material | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        super().__init__(
            target,
            timeout=timeout,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            credentials=credentials,
        )
        self._channel = (
            grpc.aio.insecure_channel(target)
            if self.credentials is None
            else grpc.aio.secure_channel(target, self.credentials)
        )
        self._stub = gate_pb2_grpc.PermitGateStub(self._channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    # --- the send path ---------------------------------------------------------------------

    async def _call(self, rpc: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, rpc)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc(exc) from exc

    async def _decide(self, check: Check) -> Decision:
        return Decision.from_proto(await self._call(*self._unary(check)))

    async def _stream(
        self, batcher: _Batcher, window: int, timeout: float | None
    ) -> AsyncGenerator[Decision | Refused, None]:
        slots = asyncio.Semaphore(window)
        sent: deque[int] = deque()
        failure: list[Exception] = []
        call = self._stub.BatchCheck(timeout=timeout)

        async def send() -> None:
            while True:
                await slots.acquire()  # a batch is cut only once a slot is free
                try:
                    batch = await batcher.anext()
                except Exception as exc:  # the caller's iterable: raised to the reader
                    failure.append(exc)
                    break
                if batch is None:
                    break
                sent.append(len(batch.checks))
                await call.write(batch)
            await call.done_writing()

        sender = asyncio.get_running_loop().create_task(send())
        index = 0
        try:
            while True:
                answer = await call.read()
                if answer is grpc.aio.EOF:
                    break
                slots.release()
                results = _results(answer, sent, index)
                index += len(results)
                for result in results:
                    yield result
            # Checked before awaiting the sender: after an early end it may wait for a slot that
            # no answer will free (the ``finally`` cancels it).
            _check_ended(sent, batcher, failure)
            await sender
        except grpc.RpcError as exc:
            raise from_rpc(exc) from exc
        finally:
            call.cancel()  # first: the gate must see a cancelled call, not a finished one
            if not sender.done():
                sender.cancel()
                await asyncio.wait([sender])
            elif not sender.cancelled():
                sender.exception()  # retrieved: the reader saw the call's own failure
        if failure:
            raise failure[0]

    # --- the calls -------------------------------------------------------------------------

    async def check_connection(
        self,
        structure_id: str,
        *,
        utility: str,
        kind: str = "permanent",
        requested_until: datetime | None = None,
        application_id: str = "",
        receipt: bool = False,
    ) -> Decision:
        """Art. 23: may ``utility`` (water, power, gas, heat) connect this structure,
        ``permanent`` or ``temporary`` (until ``requested_until`` at most)?"""
        return await self._decide(
            Check.connection(
                structure_id,
                utility=utility,
                kind=kind,
                requested_until=requested_until,
                application_id=application_id,
                receipt=receipt,
            )
        )

    async def check_registration(
        self, structure_id: str, *, kind: str, application_id: str = "", receipt: bool = False
    ) -> Decision:
        """Art. 11: may an ``initial`` registration, a ``transfer`` or a ``mortgage`` be
        recorded?"""
        return await self._decide(
            Check.registration(
                structure_id, kind=kind, application_id=application_id, receipt=receipt
            )
        )

    async def verify_premises(
        self,
        structure_id: str,
        *,
        office: str,
        declared_use: str,
        application_id: str = "",
        receipt: bool = False,
    ) -> Decision:
        """Art. 13: do the premises hold their permits, for ``declared_use``? Notifying
        offices (market_regulation, culture, health, tax) must give ``application_id``."""
        return await self._decide(
            Check.premises(
                structure_id,
                office=office,
                declared_use=declared_use,
                application_id=application_id,
                receipt=receipt,
            )
        )

    async def check_applicant(
        self,
        party_id: str,
        *,
        asking: str,
        application_id: str = "",
        receipt: bool = False,
    ) -> Decision:
        """Art. 22: may ``planning`` (or ``housing``) accept an application of ``party_id``?
        DENY (``PARTY_SUSPENDED``, naming each case) while the party is suspended for ignoring
        a stop or demolition order. Only a gate that holds the whole registry answers (a gate
        over a shared cache refuses: ``GateError`` with FAILED_PRECONDITION)."""
        return await self._decide(
            Check.applicant(party_id, asking=asking, application_id=application_id, receipt=receipt)
        )

    def check_many(
        self,
        checks: Iterable[Check] | AsyncIterable[Check],
        *,
        batch_size: int = MAX_BATCH,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = None,
    ) -> AsyncGenerator[Decision | Refused, None]:
        """``Client.check_many`` for asyncio: ``async for`` over the results, in order.

        ``checks`` may be a plain or an async iterable, read on the event loop no more than
        ``window`` batches ahead of the answers received.
        """
        return self._stream(self._batcher(checks, batch_size, window), window, timeout)

    async def keys(self) -> KeySet:
        """The registry's and the gate's public keys (and the newest checkpoint), to keep."""
        return KeySet.from_proto(await self._call("GetKeys", pb.GetKeysRequest()))

    async def watch(
        self,
        question: Check,
        *,
        structure_ids: list[str] | tuple[str, ...] | None = None,
        district: str | None = None,
        all_structures: bool = False,
        after: WatchPosition | None = None,
        retries: int = WATCH_RETRIES,
    ) -> AsyncGenerator[StatusChange, None]:
        """``Client.watch`` for asyncio: ``async for`` over the changes (wrap it in
        ``contextlib.aclosing`` to end the stream at once when you stop early)."""
        resumer = self._resumer(question, structure_ids, district, all_structures, after, retries)
        failures = 0
        while True:
            call = self._stub.WatchStatus(resumer.request())
            try:
                async for message in call:
                    failures = 0
                    change = resumer.take(message)
                    if change is not None:
                        yield change
                error: grpc.RpcError | None = None
            except grpc.RpcError as exc:
                if exc.code() not in RESUMABLE:
                    raise from_rpc(exc) from exc
                error = exc
            finally:
                call.cancel()
            failures += 1
            if failures > retries:
                if error is None:
                    raise GateError("the gate kept ending the watch stream")
                raise from_rpc(error) from error
            await asyncio.sleep(backoff(failures))
