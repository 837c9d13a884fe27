"""Mutated requests against a real gate: whatever bytes arrive, the gate answers OK or
INVALID_ARGUMENT, keeps answering, and logs no traceback.

20,000 requests (seeded: a failure replays) made from valid messages of every RPC by bit flips,
truncations, splices of two valid messages (of any two RPCs) and random bytes, sent as raw bytes
(no stub, no serializer) to every RPC of ``permitgate.v1.PermitGate``, BatchCheck included, at a
gate on loopback serving the demo registry. Afterwards the gate still answers normal checks
right. The same on PostgreSQL, smaller, with requests carrying NUL (which PostgreSQL text cannot
hold): they are refused, and the decision log keeps reaching the ``decision_log`` table.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from gate_helpers import (
    SERVICE,
    AnyCheck,
    GateRegistry,
    RunningGate,
    Wire,
    batch_check,
    codes,
    connection,
    premises,
    registration,
    running_gate,
    served_registry,
    verdict,
    wait_for,
)
from google.protobuf.message import Message
from permitgate_client.v1 import gate_pb2 as pb

from registry.demo import SCENARIOS, demo_lines, structure_id

SEED = 20_260_601
TOTAL = 20_000
WINDOW = 64  # unary calls in flight at once
OK_ID = structure_id(0)  # urban, every permit in force
REVOKED = structure_id(1)  # urban, construction planning permit revoked
ANSWERS: dict[str, type[Message]] = {
    "CheckConnection": pb.Decision,
    "CheckRegistration": pb.Decision,
    "VerifyPremises": pb.Decision,
    "CheckApplicant": pb.Decision,
    "GetKeys": pb.KeySet,
    "BatchCheck": pb.DecisionBatch,
}
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


def valid_requests() -> dict[str, list[bytes]]:
    """Valid request bytes for every RPC: the material the mutations start from."""
    soon = datetime.now(UTC) + timedelta(days=30)
    ids = [structure_id(i) for i in range(len(SCENARIOS))] + ["110999-9999-9999"]
    connections = [
        connection(sid, utility, kind, application_id=f"A-{n}", receipt=n % 5 == 0)
        for n, sid in enumerate(ids)
        for utility in (pb.UTILITY_WATER, pb.UTILITY_HEAT)
        for kind in (pb.CONNECTION_KIND_PERMANENT, pb.CONNECTION_KIND_TEMPORARY)
    ]
    connections.append(connection(OK_ID, kind=pb.CONNECTION_KIND_TEMPORARY, requested_until=soon))
    registrations = [
        registration(sid, kind, application_id=f"R-{n}", receipt=n % 7 == 0)
        for n, sid in enumerate(ids)
        for kind in (
            pb.REGISTRATION_KIND_INITIAL,
            pb.REGISTRATION_KIND_TRANSFER,
            pb.REGISTRATION_KIND_MORTGAGE,
        )
    ]
    premises_checks = [
        premises(sid, office, use, application_id=f"L-{n}", receipt=n % 11 == 0)
        for n, sid in enumerate(ids)
        for office in (pb.OFFICE_FIRE, pb.OFFICE_TAX, pb.OFFICE_CULTURE)
        for use in ("residential", " Office ")
    ]
    applicants = [
        pb.ApplicantCheck(
            party_id=party, asking=asking, application_id=f"PA-{n}", receipt=n % 3 == 0
        )
        for n, party in enumerate(["91110000MA01ABCD2X", *ids])
        for asking in (pb.ASKING_PLANNING, pb.ASKING_HOUSING)
    ]
    mixed: list[AnyCheck] = [*connections, *registrations, *premises_checks]
    batches = [
        pb.CheckBatch(
            checks=[batch_check(f"c-{n}-{i}", mixed[(n * 7 + i) % len(mixed)]) for i in range(n)]
        )
        for n in range(1, 9)
    ]
    return {
        "CheckConnection": [m.SerializeToString() for m in connections],
        "CheckRegistration": [m.SerializeToString() for m in registrations],
        "VerifyPremises": [m.SerializeToString() for m in premises_checks],
        "CheckApplicant": [m.SerializeToString() for m in applicants],
        "GetKeys": [pb.GetKeysRequest().SerializeToString()],
        "BatchCheck": [m.SerializeToString() for m in batches],
    }


class Mutator:
    """Seeded mutations of valid messages: bit flips, truncations, splices, random bytes."""

    KINDS = ("bit flips", "truncation", "splice", "random bytes")

    def __init__(self, seed: int, valid: dict[str, list[bytes]]) -> None:
        self.rng = random.Random(seed)
        self.valid = valid
        self.everything = [data for datas in valid.values() for data in datas]
        self.made: Counter[str] = Counter()

    def __call__(self, method: str) -> bytes:
        rng = self.rng
        data = rng.choice(self.valid[method])
        kind = rng.choice(self.KINDS)
        self.made[kind] += 1
        if kind == "bit flips":
            mutated = bytearray(data or b"\x00")
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            return bytes(mutated)
        if kind == "truncation":
            return data[: rng.randrange(len(data) + 1)]
        if kind == "splice":
            other = rng.choice(self.everything)
            return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
        return rng.randbytes(rng.randint(0, 64))


def fuzz(target: str, total: int, seed: int) -> Counter[tuple[str, grpc.StatusCode]]:
    """Send ``total`` mutated requests to every RPC; the count of answers by method and status."""
    mutate = Mutator(seed, valid_requests())
    rng = random.Random(seed + 1)
    methods = sorted(ANSWERS)
    outcomes: Counter[tuple[str, grpc.StatusCode]] = Counter()
    with grpc.insecure_channel(target) as channel:
        unary = {
            m: channel.unary_unary(f"/{SERVICE}/{m}") for m in methods if m != "BatchCheck"
        }  # no serializers: raw bytes in, raw bytes out
        batch = channel.stream_stream(f"/{SERVICE}/BatchCheck")
        in_flight: list[tuple[str, grpc.Future]] = []

        def settle(method: str, call: grpc.Future) -> None:
            error = call.exception()
            if error is None:
                ANSWERS[method].FromString(call.result())  # a well-formed answer
                outcomes[method, grpc.StatusCode.OK] += 1
            else:
                assert isinstance(error, grpc.Call)
                outcomes[method, error.code()] += 1
                assert error.code() in ALLOWED, (method, error.code(), error.details())
                assert error.details(), "INVALID_ARGUMENT says what is wrong"

        sent = 0
        while sent < total:
            method = rng.choice(methods)
            if method == "BatchCheck":
                stream = [mutate(method) for _ in range(min(rng.randint(1, 4), total - sent))]
                sent += len(stream)
                try:
                    for reply in batch(iter(stream), timeout=30):
                        pb.DecisionBatch.FromString(reply)
                except grpc.RpcError as exc:
                    assert isinstance(exc, grpc.Call)
                    outcomes[method, exc.code()] += 1
                    assert exc.code() in ALLOWED, (exc.code(), exc.details())
                else:
                    outcomes[method, grpc.StatusCode.OK] += 1
                continue
            in_flight.append((method, unary[method].future(mutate(method), timeout=30)))
            sent += 1
            if len(in_flight) >= WINDOW:
                settle(*in_flight.pop(0))
        for method, call in in_flight:
            settle(method, call)
    assert set(mutate.made) == set(Mutator.KINDS)
    return outcomes


def answers_right_afterwards(target: str) -> None:
    with Wire(target) as wire:
        assert verdict(wire.ask(connection(OK_ID))) == "ALLOW"
        revoked = wire.ask(connection(REVOKED))
        assert (verdict(revoked), codes(revoked)) == ("DENY", {"PERMIT_REVOKED"})
        [answer] = wire.batches(
            [pb.CheckBatch(checks=[batch_check("x", registration(OK_ID)), batch_check("y", None)])]
        )
        assert verdict(answer.decisions[0]) == "ALLOW" and answer.decisions[1].error
        assert wire.keys().registry_key


def no_traceback(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """Nothing worse than the malformed-request WARNING, and no traceback anywhere."""
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


@pytest.fixture(scope="module")
def sqlite_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGate]:
    with served_registry(tmp_path_factory.mktemp("fuzz"), demo_lines(len(SCENARIOS))) as served:
        yield served[1]


def test_twenty_thousand_mutated_requests(
    sqlite_gate: RunningGate,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    outcomes = fuzz(sqlite_gate.target, TOTAL, SEED)
    elapsed = time.monotonic() - started
    assert {code for _, code in outcomes} <= ALLOWED
    for method in ANSWERS:  # each RPC saw mutants it answered and mutants it refused
        assert outcomes[method, grpc.StatusCode.OK] > 0, (method, outcomes)
        assert outcomes[method, grpc.StatusCode.INVALID_ARGUMENT] > 0, (method, outcomes)
    answers_right_afterwards(sqlite_gate.target)
    no_traceback(caplog, capfd)
    warnings = [r for r in caplog.records if r.name == "server.guard"]
    assert 1 <= len(warnings) <= elapsed / 10 + 1  # counted, one line per 10 s at most
    print(f"\n{TOTAL} mutated requests in {elapsed:.1f} s: {dict(outcomes)}")


GARBAGE = (b"\xff\xff\xff", b"\x0a\x05ab", b"\x80")  # a bad tag, a short field, a cut varint
OTHER_SERVICES = [
    ("/grpc.health.v1.Health/Check", "unary"),
    ("/grpc.health.v1.Health/Watch", "server stream"),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "bidi stream"),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "bidi stream"),
]


@pytest.mark.parametrize(("method", "shape"), OTHER_SERVICES)
def test_the_other_services_on_the_port_refuse_garbage_too(
    sqlite_gate: RunningGate,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    method: str,
    shape: str,
) -> None:
    """Health and reflection share the port: their garbage is INVALID_ARGUMENT, no traceback."""
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(sqlite_gate.target) as channel:
        for data in GARBAGE:
            with pytest.raises(grpc.RpcError) as caught:
                if shape == "unary":
                    channel.unary_unary(method)(data, timeout=10)
                elif shape == "server stream":
                    list(channel.unary_stream(method)(data, timeout=10))
                else:
                    list(channel.stream_stream(method)(iter([data]), timeout=10))
            error = caught.value
            assert isinstance(error, grpc.Call)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert "not a valid grpc." in (error.details() or "")
    answers_right_afterwards(sqlite_gate.target)
    no_traceback(caplog, capfd)


# --- PostgreSQL: NUL is refused, and the decision log keeps being written ------------------------


@pytest.fixture
def pg_registry(pg_database: str, tmp_path: Path) -> Iterator[GateRegistry]:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    registry = GateRegistry(pg_database, tmp_path / "keys")
    try:
        registry.load(demo_lines(len(SCENARIOS)))
        yield registry
    finally:
        registry.close()


NUL_CHECKS: list[tuple[AnyCheck, str, str]] = [
    (connection(OK_ID + "\x00"), "connection", "structure_id"),
    (connection("\x00"), "connection", "structure_id"),
    (registration(OK_ID, application_id="R-\x00"), "registration", "application_id"),
    (premises(OK_ID, pb.OFFICE_TAX, "shop\x00", application_id="L-1"), "premises", "declared_use"),
    (premises(OK_ID, pb.OFFICE_TAX, "shop", application_id="\x00"), "premises", "application_id"),
]


def test_nul_on_postgresql_is_refused_and_the_decision_log_keeps_being_written(
    pg_registry: GateRegistry,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    with (
        running_gate(pg_registry.url, pg_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        for check, _, field in NUL_CHECKS:
            with pytest.raises(grpc.RpcError) as info:
                wire.ask(check)
            assert isinstance(info.value, grpc.Call)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith(f"{field}:")
        batch = [batch_check(str(i), check) for i, (check, _, _) in enumerate(NUL_CHECKS)]
        batch.append(batch_check("good", connection(OK_ID)))
        [answer] = wire.batches([pb.CheckBatch(checks=batch)])
        *refused, good = answer.decisions
        for i, (decision, (_, kind, field)) in enumerate(zip(refused, NUL_CHECKS, strict=True)):
            assert decision.error.startswith(f"checks[{i}].{kind}.{field}:"), decision.error
        assert verdict(good) == "ALLOW"
        outcomes = fuzz(gate.target, 2_000, SEED + 2)
        assert {code for _, code in outcomes} <= ALLOWED
        later = wire.ask(connection(REVOKED))
        assert verdict(later) == "DENY"

        def logged(decision_id: str, expected: str) -> bool | None:
            rows = pg_registry.sql(
                "SELECT verdict FROM decision_log WHERE decision_id = :d", d=decision_id
            )
            return True if rows == [(expected,)] else None

        wait_for(lambda: logged(good.decision_id, "ALLOW"), timeout=5.0)
        wait_for(lambda: logged(later.decision_id, "DENY"), timeout=5.0)
        answers_right_afterwards(gate.target)
    no_traceback(caplog, capfd)
