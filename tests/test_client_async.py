"""``AsyncClient`` end to end: the asyncio twin answers, fails and streams like ``Client``.

The coroutines run on the loop the test gates run on (``gate_helpers.gate_loop``), against the
same kinds of servers as ``test_client.py``: a real gate on the demo registry, and the scripted
``grpc.aio`` server for statuses, concurrency limits and the server's view of a stream.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import grpc
import pytest
from client_servers import (
    ALL_STATUSES,
    TYPED,
    CountingChecks,
    ScriptedGate,
    closed_port,
    expected_answers,
    interleaved_checks,
    scripted_gate,
    silent_peer,
)
from gate_helpers import (
    GateRegistry,
    Pki,
    RunningGate,
    gate_loop,
    make_pki,
    served_registry,
    start_gate,
)
from permitgate_client import (
    AsyncClient,
    Check,
    Client,
    DeadlineError,
    Decision,
    GateError,
    InvalidCheckError,
    KeySet,
    OverloadedError,
    Refused,
    UnavailableError,
    Verdict,
    verify_receipt,
)

from registry.demo import SCENARIOS, demo_lines, structure_id
from server.app import TlsFiles

OK = structure_id(0)
REVOKED = structure_id(1)
BUILDING = structure_id(6)
T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """Run a coroutine on the test gates' loop and wait for it (bounded)."""

    async def main() -> T:
        return await make()

    return gate_loop().run(main(), timeout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("aclient"), demo_lines(len(SCENARIOS))) as served:
        yield served


@pytest.fixture(scope="module")
def target(served: tuple[GateRegistry, RunningGate]) -> str:
    return served[1].target


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedGate]:
    with scripted_gate() as gate:
        yield gate


# --- the single calls ----------------------------------------------------------------------------


def test_async_calls_answer_typed_decisions(
    target: str, served: tuple[GateRegistry, RunningGate]
) -> None:
    until = (datetime.now(UTC) + timedelta(days=20)).astimezone(timezone(timedelta(hours=-5)))

    async def ask() -> tuple[Decision, Decision, Decision, KeySet]:
        async with AsyncClient(target, timeout=10) as client:
            return (
                await client.check_connection(
                    BUILDING, utility="water", kind="temporary", requested_until=until
                ),
                await client.check_registration(REVOKED, kind="initial", receipt=True),
                await client.verify_premises(
                    OK, office="health", declared_use="clinic", application_id="H-9"
                ),
                await client.keys(),
            )

    temporary, denied, notified, keyset = run(ask)
    assert temporary.verdict is Verdict.ALLOW_TEMPORARY
    assert temporary.valid_until == until
    assert temporary.valid_until is not None and temporary.valid_until.utcoffset() == timedelta(0)
    assert denied.verdict is Verdict.DENY
    assert [(r.code, r.permit_kind, r.article) for r in denied.reasons] == [
        ("PERMIT_REVOKED", "construction_planning", 11)
    ]
    assert denied.registry_version == served[0].version()
    assert denied.receipt is not None
    assert verify_receipt(denied.receipt, keyset).receipt.decision_id == denied.decision_id
    assert notified.verdict is Verdict.NOTIFY and notified.notification_id
    with Client(target) as blocking:
        assert blocking.keys() == keyset


def test_async_invalid_check_names_the_field(target: str) -> None:
    async def ask() -> None:
        async with AsyncClient(target) as client:
            await client.verify_premises(OK, office="fire", declared_use="")

    with pytest.raises(InvalidCheckError, match=r"^declared_use:") as info:
        run(ask)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)


@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: s.name)
def test_async_every_status_maps_to_its_error(
    scripted: ScriptedGate, status: grpc.StatusCode
) -> None:
    async def ask() -> None:
        async with AsyncClient(scripted.target) as client:
            await client.check_connection(f"abort:{status.name}", utility="water")

    with pytest.raises(GateError) as info:
        run(ask)
    assert type(info.value) is TYPED.get(status, GateError)
    assert info.value.code == status
    assert str(info.value) == f"scripted {status.name}"


def test_async_deadline_error_from_a_silent_peer() -> None:
    async def ask(peer: str) -> None:
        async with AsyncClient(peer, timeout=0.3) as client:
            await client.keys()

    with silent_peer() as peer, pytest.raises(DeadlineError):
        run(lambda: ask(peer))


def test_async_unavailable_error_from_a_closed_port() -> None:
    async def ask(peer: str) -> None:
        async with AsyncClient(peer) as client:
            await client.check_connection(OK, utility="gas")

    with closed_port() as peer, pytest.raises(UnavailableError) as info:
        run(lambda: ask(peer))
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_async_overloaded_error_from_a_concurrency_limit() -> None:
    with scripted_gate(maximum_concurrent_rpcs=1) as gate:

        async def ask() -> None:
            async with AsyncClient(gate.target) as client:
                held = asyncio.ensure_future(client.check_connection("hold", utility="water"))
                await asyncio.to_thread(gate.wait_held, 1)
                try:
                    with pytest.raises(OverloadedError) as info:
                        await client.check_connection(OK, utility="water")
                    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                finally:
                    gate.release()
                assert (await held).verdict is Verdict.ALLOW

        run(ask)


# --- check_many ----------------------------------------------------------------------------------


def test_async_check_many_keeps_order_across_many_batches(target: str) -> None:
    checks, invalid = interleaved_checks(5_000)
    with Client(target, timeout=10) as blocking:
        expected = expected_answers(blocking, checks)

    async def ask() -> list[Decision | Refused]:
        async with AsyncClient(target) as client:
            return [result async for result in client.check_many(checks, batch_size=97)]

    results = run(ask)
    assert len(results) == len(checks)
    for i, (check, result) in enumerate(zip(checks, results, strict=True)):
        assert result.correlation_id == f"c{i}"
        if i in invalid:
            assert isinstance(result, Refused) and result.index == i, (i, result)
            assert result.error.startswith(f"checks[{i % 97}].{check.kind}.structure_id:")
        else:
            assert isinstance(result, Decision), (i, result)
            assert (result.verdict, result.reasons) == expected[i], i


def test_async_check_many_takes_an_async_iterable(target: str) -> None:
    async def checks() -> AsyncIterator[Check]:
        for i in range(250):
            await asyncio.sleep(0)
            yield Check.connection(structure_id(i % 14), utility="heat", correlation_id=f"a{i}")

    async def ask() -> list[Decision | Refused]:
        async with AsyncClient(target) as client:
            return [result async for result in client.check_many(checks(), batch_size=40)]

    results = run(ask)
    assert [r.correlation_id for r in results] == [f"a{i}" for i in range(250)]
    with Client(target) as blocking:
        alone = [blocking.check_connection(structure_id(i), utility="heat") for i in range(14)]
    assert [r.verdict for r in results] == [  # type: ignore[union-attr]
        alone[i % 14].verdict for i in range(250)
    ]


def test_async_check_many_stops_early_and_cancels(scripted: ScriptedGate) -> None:
    checks = CountingChecks()
    cancelled, finished = scripted.cancelled, scripted.finished

    async def ask() -> None:
        async with (
            AsyncClient(scripted.target) as client,
            aclosing(client.check_many(checks, batch_size=10, window=2)) as answers,
        ):
            n = 0
            async for _ in answers:
                n += 1
                if n == 25:
                    break

    run(ask)
    scripted.wait_for(lambda: scripted.cancelled == cancelled + 1)
    assert scripted.finished == finished
    pulled = checks.pulled
    assert pulled <= 10 * (3 + 2)
    run(lambda: asyncio.sleep(0.3))
    assert checks.pulled == pulled


def test_async_check_many_break_without_aclosing_still_cancels(scripted: ScriptedGate) -> None:
    """A plain ``break``: the stream is cancelled once the iterator is collected."""
    checks = CountingChecks()
    cancelled, finished = scripted.cancelled, scripted.finished

    async def ask() -> None:
        async with AsyncClient(scripted.target) as client:
            async for n, _ in _enumerate(client.check_many(checks, batch_size=10, window=2)):
                if n == 5:
                    break
            gc.collect()
            for _ in range(100):
                if scripted.cancelled == cancelled + 1:
                    break
                await asyncio.sleep(0.02)

    run(ask)
    assert scripted.cancelled == cancelled + 1
    assert scripted.finished == finished


async def _enumerate(items: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    n = 0
    async for item in items:
        yield n, item
        n += 1


def test_async_check_many_back_pressure(scripted: ScriptedGate) -> None:
    size, window = 10, 3
    checks = CountingChecks()
    before = scripted.received

    async def ask() -> None:
        async with (
            AsyncClient(scripted.target) as client,
            aclosing(client.check_many(checks, batch_size=size, window=window)) as answers,
        ):
            consumed = 0
            async for _ in answers:
                consumed += 1
                read = -(-consumed // size)
                if consumed % 50 == 0:
                    for _ in range(200):  # the sender runs ahead as far as it may
                        if scripted.received - before == read + window:
                            break
                        await asyncio.sleep(0.005)
                    assert scripted.received - before == read + window
                    await asyncio.sleep(0.05)
                assert scripted.received - before <= read + window
                assert checks.pulled <= (read + window) * size
                if consumed == 200:
                    break

    run(ask)


def test_async_check_many_reraises_the_iterables_error(target: str) -> None:
    failure = KeyError("row 1,234")

    def rows() -> Iterator[Check]:
        for i in range(1_233):
            yield Check.registration(OK, kind="transfer", correlation_id=f"r{i}")
        raise failure

    async def arows() -> AsyncIterator[Check]:
        for check in rows():
            yield check

    async def ask(checks: Any) -> tuple[list[str], BaseException | None]:
        seen: list[str] = []
        async with AsyncClient(target) as client:
            try:
                async for result in client.check_many(checks, batch_size=500):
                    seen.append(result.correlation_id)
            except KeyError as exc:
                return seen, exc
        return seen, None

    for checks in (rows, arows):
        seen, raised = run(lambda checks=checks: ask(checks()))  # type: ignore[misc]
        assert raised is failure
        assert seen == [f"r{i}" for i in range(1_000)]


def test_async_check_many_refuses_what_is_not_a_check(target: str) -> None:
    async def ask() -> None:
        async with AsyncClient(target) as client:
            checks: list[Any] = [Check.connection(OK, utility="water"), "S-2"]
            async for _ in client.check_many(checks):
                pass

    with pytest.raises(TypeError, match=r"^checks\[1\]: expected a Check"):
        run(ask)


def test_async_check_many_failures_are_typed(scripted: ScriptedGate) -> None:
    checks = [Check.connection(OK, utility="water") for _ in range(60)]
    checks[33] = Check.connection("abort:RESOURCE_EXHAUSTED", utility="water")
    seen: list[Decision | Refused] = []

    async def ask(target: str, timeout: float | None = None) -> None:
        async with AsyncClient(target) as client:
            async for result in client.check_many(checks, batch_size=10, timeout=timeout):
                seen.append(result)

    with pytest.raises(OverloadedError):
        run(lambda: ask(scripted.target))
    assert len(seen) == 30
    with silent_peer() as target, pytest.raises(DeadlineError):
        run(lambda: ask(target, timeout=0.3))
    with closed_port() as target, pytest.raises(UnavailableError):
        run(lambda: ask(target))


def test_async_check_many_a_gate_ending_early_leaves_batches_unanswered(
    scripted: ScriptedGate,
) -> None:
    """The scripted gate takes two batches (the window) and ends the stream with OK, answering
    neither, while the sender waits for a slot no answer will free: an error, not a hang."""
    checks = [Check.connection("end:2", utility="water")] + [
        Check.connection(OK, utility="water") for _ in range(19_999)
    ]
    ended = scripted.ended
    seen: list[Decision | Refused] = []

    async def ask() -> None:
        async with AsyncClient(scripted.target) as client:
            async for result in client.check_many(checks, batch_size=100, window=2):
                seen.append(result)

    with pytest.raises(GateError) as info:
        run(lambda: asyncio.wait_for(ask(), 10))
    assert type(info.value) is GateError
    assert str(info.value) == "the gate ended the stream with 2 batches unanswered"
    assert seen == []
    assert scripted.ended == ended + 1


def test_async_check_many_a_gate_ending_early_leaves_checks_unsent(
    scripted: ScriptedGate,
) -> None:
    ended = scripted.ended

    async def rows() -> AsyncIterator[Check]:
        yield Check.connection("end-after", utility="water")
        for _ in range(9):
            yield Check.connection(OK, utility="water")
        while scripted.ended == ended:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)  # the reader sees the end meanwhile
        for _ in range(10):
            yield Check.connection(OK, utility="water")

    seen: list[Decision | Refused] = []

    async def ask() -> None:
        async with AsyncClient(scripted.target) as client:
            async for result in client.check_many(rows(), batch_size=10, window=1):
                seen.append(result)

    with pytest.raises(GateError) as info:
        run(lambda: asyncio.wait_for(ask(), 10))
    assert str(info.value) == "the gate ended the stream before every check was sent"
    assert len(seen) == 10


def test_async_check_many_a_gate_answering_more_batches_than_sent(scripted: ScriptedGate) -> None:
    checks = [Check.connection(OK, utility="water") for _ in range(30)]
    checks[25] = Check.connection("twice", utility="water")
    seen: list[Decision | Refused] = []

    async def ask() -> None:
        async with AsyncClient(scripted.target) as client:
            async for result in client.check_many(checks, batch_size=10):
                seen.append(result)

    with pytest.raises(GateError) as info:
        run(ask)
    assert str(info.value) == "the gate answered more batches than were sent"
    assert len(seen) == 30


def test_async_check_many_bad_options_raise_at_once() -> None:
    async def ask() -> None:
        async with AsyncClient("127.0.0.1:1") as client:
            client.check_many([], batch_size=0)

    with pytest.raises(ValueError, match=r"^batch_size: "):
        run(ask)


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("aclient-pki"), "async-client-tests")


@pytest.fixture(scope="module")
def mtls_gate(pki: Pki, served: tuple[GateRegistry, RunningGate]) -> Iterator[RunningGate]:
    registry = served[0]
    tls = TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca_cert)
    gate = start_gate(registry.url, registry.keys_dir, tls=tls)
    try:
        yield gate
    finally:
        gate.stop()


@pytest.mark.parametrize("form", ["path", "bytes"])
def test_async_tls_material(mtls_gate: RunningGate, pki: Pki, form: str) -> None:
    files = (pki.ca_cert, pki.client_cert, pki.client_key)
    ca, cert, key = files if form == "path" else tuple(f.read_bytes() for f in files)

    async def ask() -> list[Verdict]:
        async with AsyncClient(mtls_gate.target, tls_ca=ca, tls_cert=cert, tls_key=key) as client:
            single = await client.check_connection(REVOKED, utility="water")
            many = [r async for r in client.check_many([Check.registration(OK, kind="initial")])]
            return [single.verdict, *(r.verdict for r in many)]  # type: ignore[union-attr]

    assert run(ask) == [Verdict.DENY, Verdict.ALLOW]


def test_async_tls_without_a_client_certificate_is_refused(
    mtls_gate: RunningGate, pki: Pki
) -> None:
    async def ask() -> None:
        async with AsyncClient(mtls_gate.target, tls_ca=pki.ca_cert) as client:
            await client.keys()

    with pytest.raises(UnavailableError):
        run(ask)
