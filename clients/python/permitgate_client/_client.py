"""``Client`` (blocking) and ``AsyncClient`` (asyncio): the gate's API as typed Python calls.

Both take their options from ``_Options`` (no I/O) and differ only in how they send. Every
failed call leaves as a ``GateError`` subclass (``from_rpc``); in ``check_many`` a check the gate
refused comes back in its place as a ``Refused`` and the rest go on.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc

from permitgate_client._errors import from_rpc
from permitgate_client._keyset import KeySet
from permitgate_client._models import Check, Decision, Refused
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

__all__ = ["DEFAULT_TIMEOUT", "MAX_BATCH", "AsyncClient", "Client"]

DEFAULT_TIMEOUT = 5.0
MAX_BATCH = 1000
"""The most checks the gate takes in one ``CheckBatch``."""

Material = bytes | str | os.PathLike[str]
"""TLS material: the PEM bytes themselves, or the path of a file holding them."""


def _pem(value: Material | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def _result(message: pb.Decision) -> Decision | Refused:
    if message.error:
        return Refused(message.error, message.correlation_id)
    return Decision.from_proto(message)


class _Options:
    """What both clients share: target, credentials, timeout, batching. No I/O here."""

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
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together (mutual TLS)")
        if credentials is not None and (tls_ca or tls_cert):
            raise ValueError("give credentials, or the tls_* material, not both")
        if credentials is None and (tls_ca is not None or tls_cert is not None):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(tls_ca),
                private_key=_pem(tls_key),
                certificate_chain=_pem(tls_cert),
            )
        self.target = target
        self.timeout = timeout
        self.credentials = credentials

    @staticmethod
    def batches(checks: Iterable[Check], size: int) -> Iterator[pb.CheckBatch]:
        if not 1 <= size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}")
        batch = pb.CheckBatch()
        add = batch.checks.append
        for check in checks:
            add(check.message)
            if len(batch.checks) >= size:
                yield batch
                batch = pb.CheckBatch()
                add = batch.checks.append
        if batch.checks:
            yield batch


class Client(_Options):
    """A blocking client. Use it as a context manager, or call ``close``.

    ``Client("gate.example:50051", timeout=2.0, tls_ca=Path("ca.pem"))``; add ``tls_cert`` and
    ``tls_key`` for mutual TLS, or pass ready ``credentials``. Without TLS material the channel is
    plaintext (for loopback and tests).
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

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc(exc) from exc

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
        """Art. 23: may ``utility`` connect this structure (``permanent`` or ``temporary``)?"""
        check = Check.connection(
            structure_id,
            utility=utility,
            kind=kind,
            requested_until=requested_until,
            application_id=application_id,
            receipt=receipt,
        )
        return Decision.from_proto(self._call(self._stub.CheckConnection, check.message.connection))

    def check_registration(
        self, structure_id: str, *, kind: str, application_id: str = "", receipt: bool = False
    ) -> Decision:
        """Art. 11: may an ``initial`` registration, ``transfer`` or ``mortgage`` be recorded?"""
        check = Check.registration(
            structure_id, kind=kind, application_id=application_id, receipt=receipt
        )
        return Decision.from_proto(
            self._call(self._stub.CheckRegistration, check.message.registration)
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
        """Art. 13: do the premises hold their permits, for ``declared_use``?"""
        check = Check.premises(
            structure_id,
            office=office,
            declared_use=declared_use,
            application_id=application_id,
            receipt=receipt,
        )
        return Decision.from_proto(self._call(self._stub.VerifyPremises, check.message.premises))

    def check_many(
        self, checks: Iterable[Check], *, batch_size: int = MAX_BATCH, window: int = 8
    ) -> Iterator[Decision | Refused]:
        """Answer any number of checks over one ``BatchCheck`` stream, in order.

        At most ``window`` batches are in flight: a slow reader slows the sender, so memory stays
        flat whatever the number of checks. Stopping the iteration early cancels the stream.
        """
        slots = threading.Semaphore(window)
        stopped = threading.Event()
        failure: list[Exception] = []

        def requests() -> Iterator[pb.CheckBatch]:
            try:
                for batch in self.batches(checks, batch_size):
                    while not slots.acquire(timeout=0.1):
                        if stopped.is_set():
                            return
                    yield batch
            except Exception as exc:  # surfaced to the reader below (not gRPC's GeneratorExit)
                failure.append(exc)
                raise

        responses = self._stub.BatchCheck(requests())
        try:
            for out in responses:
                slots.release()
                for message in out.decisions:
                    yield _result(message)
        except grpc.RpcError as exc:
            if failure:
                raise failure[0] from None
            raise from_rpc(exc) from exc
        finally:
            stopped.set()
            responses.cancel()

    def keys(self) -> KeySet:
        """The registry's and the gate's public keys (and the newest checkpoint), to keep."""
        return KeySet.from_proto(self._call(self._stub.GetKeys, pb.GetKeysRequest()))


class AsyncClient(_Options):
    """The asyncio twin of ``Client``: the same calls, awaited; ``check_many`` is async."""

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

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc(exc) from exc

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
        """Art. 23: may ``utility`` connect this structure (``permanent`` or ``temporary``)?"""
        check = Check.connection(
            structure_id,
            utility=utility,
            kind=kind,
            requested_until=requested_until,
            application_id=application_id,
            receipt=receipt,
        )
        message = await self._call(self._stub.CheckConnection, check.message.connection)
        return Decision.from_proto(message)

    async def check_registration(
        self, structure_id: str, *, kind: str, application_id: str = "", receipt: bool = False
    ) -> Decision:
        """Art. 11: may an ``initial`` registration, ``transfer`` or ``mortgage`` be recorded?"""
        check = Check.registration(
            structure_id, kind=kind, application_id=application_id, receipt=receipt
        )
        message = await self._call(self._stub.CheckRegistration, check.message.registration)
        return Decision.from_proto(message)

    async def verify_premises(
        self,
        structure_id: str,
        *,
        office: str,
        declared_use: str,
        application_id: str = "",
        receipt: bool = False,
    ) -> Decision:
        """Art. 13: do the premises hold their permits, for ``declared_use``?"""
        check = Check.premises(
            structure_id,
            office=office,
            declared_use=declared_use,
            application_id=application_id,
            receipt=receipt,
        )
        message = await self._call(self._stub.VerifyPremises, check.message.premises)
        return Decision.from_proto(message)

    async def check_many(
        self,
        checks: Iterable[Check] | AsyncIterable[Check],
        *,
        batch_size: int = MAX_BATCH,
        window: int = 8,
    ) -> AsyncIterator[Decision | Refused]:
        """Answer any number of checks over one ``BatchCheck`` stream, in order, with at most
        ``window`` batches in flight (see ``Client.check_many``)."""
        slots = asyncio.Semaphore(window)
        call = self._stub.BatchCheck()

        async def send() -> None:
            async for batch in _abatches(checks, batch_size, self.batches):
                await slots.acquire()
                await call.write(batch)
            await call.done_writing()

        sender = asyncio.get_running_loop().create_task(send())
        try:
            while True:
                out = await call.read()
                if out is grpc.aio.EOF:
                    break
                slots.release()
                for message in out.decisions:
                    yield _result(message)
            await sender
        except grpc.RpcError as exc:
            if sender.done() and not sender.cancelled() and sender.exception() is not None:
                raise sender.exception() from None  # type: ignore[misc]
            raise from_rpc(exc) from exc
        finally:
            if not sender.done():
                sender.cancel()
            call.cancel()

    async def keys(self) -> KeySet:
        """The registry's and the gate's public keys (and the newest checkpoint), to keep."""
        return KeySet.from_proto(await self._call(self._stub.GetKeys, pb.GetKeysRequest()))


async def _abatches(
    checks: Iterable[Check] | AsyncIterable[Check], size: int, batches: Any
) -> AsyncIterator[pb.CheckBatch]:
    if isinstance(checks, AsyncIterable):
        gathered: list[Check] = []
        async for check in checks:
            gathered.append(check)
            if len(gathered) >= size:
                for batch in batches(gathered, size):
                    yield batch
                gathered = []
        for batch in batches(gathered, size):
            yield batch
        return
    for batch in batches(checks, size):
        yield batch
