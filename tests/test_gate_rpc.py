"""End to end over loopback: every RPC of ``permitgate.v1.PermitGate``, bad requests, deadlines,
the Python clients, health and reflection.

One gate (SQLite, the demo registry) serves the module; tests that stop a gate start their own.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from gate_helpers import (
    SERVICE,
    AnyCheck,
    GateRegistry,
    RunningGate,
    Why,
    Wire,
    batch_check,
    checkpoint_of,
    codes,
    connection,
    gate_loop,
    open_note,
    parse_key,
    premises,
    reasons,
    registration,
    running_gate,
    served_registry,
    start_gate,
    verdict,
)
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from permitgate_client import (
    AsyncClient,
    Client,
    DeadlineError,
    Decision,
    InvalidCheckError,
    VerifierKey,
)
from permitgate_client.v1 import gate_pb2 as pb

from registry.demo import SCENARIOS, demo_lines, structure_id

OK = structure_id(0)  # urban, every permit in force
REVOKED = structure_id(1)  # urban, construction planning permit revoked
HEALTH_SERVICE = "grpc.health.v1.Health"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("rpc"), demo_lines(len(SCENARIOS))) as served:
        yield served


@pytest.fixture(scope="module")
def wire(served: tuple[GateRegistry, RunningGate]) -> Iterator[Wire]:
    with Wire(served[1].target) as w:
        yield w


@pytest.fixture
def target(served: tuple[GateRegistry, RunningGate]) -> str:
    return served[1].target


def _rpc_error(call: object) -> grpc.RpcError:
    assert isinstance(call, grpc.RpcError) and isinstance(call, grpc.Call)
    return call


# --- the three unary checks ----------------------------------------------------------------------


def test_check_connection(wire: Wire, served: tuple[GateRegistry, RunningGate]) -> None:
    decision = wire.ask(connection(REVOKED, pb.UTILITY_POWER, application_id="APP-1"))
    assert decision.verdict == pb.VERDICT_DENY
    [reason] = decision.reasons
    assert reason.code == pb.REASON_CODE_PERMIT_REVOKED
    assert reason.permit_kind == pb.PERMIT_KIND_CONSTRUCTION_PLANNING
    assert reason.article == 23
    assert "revoked" in reason.message
    assert decision.registry_version == served[0].version()
    assert not decision.correlation_id and not decision.error and not decision.receipt


def test_check_registration(wire: Wire) -> None:
    decision = wire.ask(registration(REVOKED, pb.REGISTRATION_KIND_MORTGAGE))
    assert decision.verdict == pb.VERDICT_DENY
    assert [(r.code, r.permit_kind, r.article) for r in decision.reasons] == [
        (pb.REASON_CODE_MISSING_PERMIT, pb.PERMIT_KIND_PROPERTY_OWNERSHIP, 11)
    ]


def test_verify_premises(wire: Wire) -> None:
    decision = wire.ask(premises(OK, pb.OFFICE_CIVIL_DEFENSE, "restaurant"))
    assert decision.verdict == pb.VERDICT_DENY
    assert [(r.code, r.permit_kind, r.article) for r in decision.reasons] == [
        (pb.REASON_CODE_USE_MISMATCH, pb.PERMIT_KIND_CONSTRUCTION_PLANNING, 13),
        (pb.REASON_CODE_USE_MISMATCH, pb.PERMIT_KIND_PROPERTY_OWNERSHIP, 13),
    ]
    assert all("restaurant" in r.message for r in decision.reasons)


def test_decision_ids_are_unique(wire: Wire) -> None:
    ids = {wire.ask(connection(OK)).decision_id for _ in range(20)}
    assert len(ids) == 20


def test_decided_at_is_now(wire: Wire) -> None:
    before = datetime.now(UTC)
    decision = wire.ask(connection(OK))
    after = datetime.now(UTC)
    assert before <= decision.decided_at.ToDatetime(tzinfo=UTC) <= after


# --- bad requests ----------------------------------------------------------------------------


PAST = datetime.now(UTC) - timedelta(minutes=1)
INVALID: list[tuple[str, AnyCheck, str]] = [
    ("connection-empty-id", connection(""), "structure_id"),
    ("connection-blank-id", connection("   "), "structure_id"),
    ("connection-long-id", connection("x" * 129), "structure_id"),
    ("connection-no-utility", connection(OK, pb.UTILITY_UNSPECIFIED), "utility"),
    ("connection-unknown-utility", connection(OK, 99), "utility"),
    ("connection-no-kind", connection(OK, kind=pb.CONNECTION_KIND_UNSPECIFIED), "kind"),
    (
        "connection-past-end",
        connection(OK, kind=pb.CONNECTION_KIND_TEMPORARY, requested_until=PAST),
        "requested_until",
    ),
    ("registration-empty-id", registration(""), "structure_id"),
    ("registration-no-kind", registration(OK, pb.REGISTRATION_KIND_UNSPECIFIED), "kind"),
    ("premises-empty-id", premises("", pb.OFFICE_FIRE, "shop"), "structure_id"),
    ("premises-no-office", premises(OK, pb.OFFICE_UNSPECIFIED, "shop"), "office"),
    ("premises-no-use", premises(OK, pb.OFFICE_TAX, ""), "declared_use"),
    ("premises-blank-use", premises(OK, pb.OFFICE_FIRE, " \t "), "declared_use"),
    (
        "premises-long-application",
        premises(OK, pb.OFFICE_FIRE, "shop", application_id="a" * 129),
        "application_id",
    ),
    # the one id rule (the importer's): nothing the registry could not hold reaches the rules
    ("connection-trailing-space", connection(OK + " "), "structure_id"),
    ("connection-leading-space", connection(" " + OK), "structure_id"),
    ("connection-nul-id", connection(OK + "\x00"), "structure_id"),
    ("connection-tab-id", connection("S\tOK"), "structure_id"),
    ("connection-c1-control-id", connection("S\u0085OK"), "structure_id"),
    ("connection-non-ascii-id", connection("S-\u00e9"), "structure_id"),
    ("connection-65-character-id", connection("x" * 65), "structure_id"),
    ("registration-nul-id", registration("\x00"), "structure_id"),
    ("registration-trailing-space", registration(OK + " "), "structure_id"),
    ("premises-nul-id", premises(OK + "\x00", pb.OFFICE_FIRE, "shop"), "structure_id"),
    # text fields: no control characters, length limits kept
    ("connection-nul-application", connection(OK, application_id="A\x00"), "application_id"),
    ("registration-newline-application", registration(OK, application_id="A\n1"), "application_id"),
    (
        "premises-escape-application",
        premises(OK, pb.OFFICE_FIRE, "shop", application_id="\x1b[31mA"),
        "application_id",
    ),
    ("premises-nul-use", premises(OK, pb.OFFICE_FIRE, "sh\x00op"), "declared_use"),
    ("premises-escape-use", premises(OK, pb.OFFICE_FIRE, "shop\x1b[0m"), "declared_use"),
    ("premises-newline-in-use", premises(OK, pb.OFFICE_FIRE, "re\nsidential"), "declared_use"),
    # around the use only white space: str.strip() would also take these control characters
    ("premises-control-before-use", premises(OK, pb.OFFICE_FIRE, "\x1fshop"), "declared_use"),
    ("premises-c1-after-use", premises(OK, pb.OFFICE_FIRE, "shop\x85"), "declared_use"),
    ("premises-vertical-tab-around", premises(OK, pb.OFFICE_FIRE, "\x0bshop"), "declared_use"),
    ("premises-long-use", premises(OK, pb.OFFICE_FIRE, "u" * 501), "declared_use"),
    # a notifying office must name its application: one notice per (office, application, structure)
    ("tax-no-application", premises(OK, pb.OFFICE_TAX, "shop"), "application_id"),
    ("culture-no-application", premises(OK, pb.OFFICE_CULTURE, "shop"), "application_id"),
    ("health-no-application", premises(OK, pb.OFFICE_HEALTH, "shop"), "application_id"),
    (
        "market-blank-application",
        premises(OK, pb.OFFICE_MARKET_REGULATION, "shop", application_id="  "),
        "application_id",
    ),
]


@pytest.mark.parametrize(("check", "field"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID])
def test_invalid_argument_names_the_field(wire: Wire, check: AnyCheck, field: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        wire.ask(check)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}:"), error.details()


_KIND_OF = {pb.ConnectionCheck: "connection", pb.RegistrationCheck: "registration"}


@pytest.mark.parametrize(("check", "field"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID])
def test_invalid_check_in_a_batch_names_the_field(wire: Wire, check: AnyCheck, field: str) -> None:
    """The batch path refuses what the unary path refuses, and answers the rest of the batch."""
    checks = [
        batch_check("before", connection(OK)),
        batch_check("bad", check),
        batch_check("after", registration(OK)),
    ]
    [answer] = wire.batches([pb.CheckBatch(checks=checks)])
    before, bad, after = answer.decisions
    kind = _KIND_OF.get(type(check), "premises")
    assert bad.error.startswith(f"checks[1].{kind}.{field}:"), bad.error
    assert bad.verdict == pb.VERDICT_UNSPECIFIED and not bad.decision_id
    assert (verdict(before), verdict(after)) == ("ALLOW", "ALLOW")
    assert not before.error and not after.error


def test_the_id_error_states_the_rule(wire: Wire) -> None:
    with pytest.raises(grpc.RpcError) as info:
        wire.ask(connection("S-OK-1 "))
    assert _rpc_error(info.value).details() == (
        "structure_id: not a valid id: 'S-OK-1 ' (an id is 1 to 64 characters, each an ASCII"
        " letter, a digit or one of . _ : / -, and starts with a letter or digit)"
    )


def test_a_valid_id_of_64_characters_is_answered(wire: Wire) -> None:
    decision = wire.ask(connection("A" + "-._:/" * 12 + "0" * 3))
    assert verdict(decision) == "DENY" and codes(decision) == {"NOT_IN_REGISTRY"}


def test_surrounding_white_space_in_the_declared_use_is_ignored(wire: Wire) -> None:
    decision = wire.ask(premises(OK, pb.OFFICE_FIRE, "\t Residential \r\n"))
    assert verdict(decision) == "ALLOW"


# --- bytes that are not a message ------------------------------------------------------------

NOT_A_MESSAGE = [
    b"\xff\xff\xff",  # a tag whose varint never ends
    b"\x0a\x05S-1",  # field 1 says 5 bytes, 3 follow
    b"\x0a\x02\xc3\x28",  # field 1 (a string) is not UTF-8
    b"\x0b",  # a group start: a wire type proto3 messages never hold
]
UNARY = {
    "CheckConnection": "ConnectionCheck",
    "CheckRegistration": "RegistrationCheck",
    "VerifyPremises": "PremisesCheck",
    "GetKeys": "GetKeysRequest",
}


def _raw(target: str, method: str, data: bytes) -> tuple[grpc.StatusCode, str]:
    """Send ``data`` as the request bytes of a unary ``method``, as no stub would."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{method}")  # no serializers: bytes in and out
        try:
            call(data, timeout=5)
        except grpc.RpcError as exc:
            error = _rpc_error(exc)
            return error.code(), error.details()
        return grpc.StatusCode.OK, ""


def _no_traceback(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


@pytest.mark.parametrize("method", sorted(UNARY))
def test_bytes_that_are_not_a_message_are_invalid_argument(
    target: str,
    method: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """INVALID_ARGUMENT naming the message type (not UNKNOWN), counted, and no traceback."""
    caplog.set_level(logging.INFO)
    wrong = [d for d in NOT_A_MESSAGE if method != "GetKeys" or d != NOT_A_MESSAGE[2]]
    for data in wrong * 5:  # (GetKeysRequest has no field 1: any bytes there are unknown, kept)
        code, details = _raw(target, method, data)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (data, details)
        assert details == f"request: not a valid permitgate.v1.{UNARY[method]} message"
    warnings = [r for r in caplog.records if r.name == "server.service"]
    assert len(warnings) <= 1  # one line per 10 s, however many requests
    assert all(r.levelno == logging.WARNING for r in warnings)
    _no_traceback(caplog, capfd)
    assert verdict(Wire(target).ask(connection(OK))) == "ALLOW"


def test_a_batch_that_is_not_a_message_ends_the_stream_invalid_argument(
    target: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    good = pb.CheckBatch(checks=[batch_check("g", connection(OK))]).SerializeToString()
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(f"/{SERVICE}/BatchCheck")
        replies = call(iter([good, NOT_A_MESSAGE[2], good]), timeout=5)
        first = pb.DecisionBatch.FromString(next(replies))
        assert [verdict(d) for d in first.decisions] == ["ALLOW"]
        with pytest.raises(grpc.RpcError) as info:
            next(replies)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "request: not a valid permitgate.v1.CheckBatch message"
    _no_traceback(caplog, capfd)


def test_requested_until_out_of_range_names_the_field(wire: Wire) -> None:
    check = connection(OK, kind=pb.CONNECTION_KIND_TEMPORARY)
    check.requested_until.seconds = 2**62  # far beyond year 9999: no datetime can hold it
    with pytest.raises(grpc.RpcError) as info:
        wire.ask(check)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("requested_until: not a valid time"), error.details()


def test_unknown_structure_is_not_an_error(wire: Wire) -> None:
    decision = wire.ask(connection("nowhere-0000"))
    assert verdict(decision) == "DENY" and codes(decision) == {"NOT_IN_REGISTRY"}


# --- BatchCheck --------------------------------------------------------------------------------


def _single(wire: Wire, check: AnyCheck) -> tuple[str, list[Why]]:
    decision = wire.ask(check)
    return verdict(decision), reasons(decision)


def test_batch_check_answers_every_batch_in_order(wire: Wire) -> None:
    mixed: list[AnyCheck] = [
        connection(OK),
        registration(REVOKED, pb.REGISTRATION_KIND_TRANSFER),
        premises(structure_id(8), pb.OFFICE_FIRE, "residential"),
        connection(structure_id(5)),
        premises("nowhere-0001", pb.OFFICE_FIRE, "shop"),
    ]
    full = [connection(structure_id(i % len(SCENARIOS))) for i in range(1000)]
    batches = [
        pb.CheckBatch(checks=[batch_check(f"a-{i}", c) for i, c in enumerate(mixed)]),
        pb.CheckBatch(checks=[batch_check(f"b-{i}", c) for i, c in enumerate(full)]),
        pb.CheckBatch(),
        pb.CheckBatch(checks=[batch_check("c-0", mixed[1]), batch_check("c-1", mixed[0])]),
    ]
    answers = wire.batches(batches)
    assert [len(a.decisions) for a in answers] == [5, 1000, 0, 2]
    for sent, got in zip(batches, answers, strict=True):
        assert [d.correlation_id for d in got.decisions] == [c.correlation_id for c in sent.checks]
        assert not any(d.error for d in got.decisions)
    expected = {id(c): _single(wire, c) for c in mixed}
    for check, decision in zip(mixed, answers[0].decisions, strict=True):
        assert (verdict(decision), reasons(decision)) == expected[id(check)]
    by_structure = {
        structure_id(i): _single(wire, connection(structure_id(i))) for i in range(len(SCENARIOS))
    }
    for check, decision in zip(full, answers[1].decisions, strict=True):
        assert (verdict(decision), reasons(decision)) == by_structure[check.structure_id]
    assert [verdict(d) for d in answers[3].decisions] == [
        expected[id(mixed[1])][0],
        expected[id(mixed[0])][0],
    ]
    ids = [d.decision_id for a in answers for d in a.decisions]
    assert len(set(ids)) == len(ids) == 1007


def test_batch_check_streams_each_answer_before_the_next_batch(wire: Wire) -> None:
    """A reply comes back while the stream is still open: decisions are not held to the end."""
    requests: queue.Queue[pb.CheckBatch | None] = queue.Queue()

    def feed() -> Iterator[pb.CheckBatch]:
        while (batch := requests.get(timeout=10)) is not None:
            yield batch

    replies = wire.stub.BatchCheck(feed(), timeout=10)
    try:
        for n in range(3):
            requests.put(pb.CheckBatch(checks=[batch_check(f"s-{n}", connection(OK))]))
            reply = next(replies)
            assert [d.correlation_id for d in reply.decisions] == [f"s-{n}"]
            assert verdict(reply.decisions[0]) == "ALLOW"
    finally:
        requests.put(None)
    assert list(replies) == []


def test_batch_check_reports_a_bad_check_and_answers_the_rest(wire: Wire) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    checks = [
        batch_check("good-1", connection(REVOKED)),
        batch_check("empty-id", connection("")),
        batch_check("nothing", None),
        batch_check("no-office", premises(OK, pb.OFFICE_UNSPECIFIED, "shop")),
        batch_check(
            "past-end",
            connection(OK, kind=pb.CONNECTION_KIND_TEMPORARY, requested_until=past),
        ),
        batch_check("no-use", premises(OK, pb.OFFICE_TAX, "")),
        batch_check("good-2", registration(OK)),
    ]
    [answer] = wire.batches([pb.CheckBatch(checks=checks)])
    by_id = {d.correlation_id: d for d in answer.decisions}
    assert [d.correlation_id for d in answer.decisions] == [c.correlation_id for c in checks]
    assert by_id["empty-id"].error.startswith("checks[1].connection.structure_id:")
    assert by_id["nothing"].error.startswith("checks[2]:")
    assert by_id["no-office"].error.startswith("checks[3].premises.office:")
    assert by_id["past-end"].error.startswith("checks[4].connection.requested_until:")
    assert by_id["no-use"].error.startswith("checks[5].premises.declared_use:")
    for bad in ("empty-id", "nothing", "no-office", "past-end", "no-use"):
        assert by_id[bad].verdict == pb.VERDICT_UNSPECIFIED and not by_id[bad].decision_id
    assert verdict(by_id["good-1"]) == "DENY" and not by_id["good-1"].error
    assert verdict(by_id["good-2"]) == "ALLOW" and not by_id["good-2"].error


def test_batch_check_refuses_more_than_1000_checks(wire: Wire) -> None:
    batch = pb.CheckBatch(checks=[batch_check(str(i), connection(OK)) for i in range(1001)])
    with pytest.raises(grpc.RpcError) as info:
        wire.batches([batch])
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("checks:") and "1000" in error.details()


# --- GetKeys -----------------------------------------------------------------------------------


def test_get_keys(wire: Wire, served: tuple[GateRegistry, RunningGate]) -> None:
    registry, _ = served
    keyset = wire.keys()
    registry_key = VerifierKey.from_text(keyset.registry_key)
    gate_key = VerifierKey.from_text(keyset.gate_key)
    assert sorted(keyset.verifier_keys) == sorted([keyset.registry_key, keyset.gate_key])
    assert registry_key != gate_key
    assert keyset.registry_key == registry.signer.verifier.text
    assert keyset.registry_key == (registry.keys_dir / "registry.pub").read_text().strip()
    assert keyset.gate_key == (registry.keys_dir / "gate.pub").read_text().strip()
    body = open_note(keyset.checkpoint, parse_key(keyset.registry_key))
    origin, size, _ = checkpoint_of(body)
    assert origin == registry_key.name
    assert size == registry.version()
    assert keyset.checkpoint == registry.checkpoint_note()


# --- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize("rpc", ["CheckConnection", "GetKeys"])
def test_tiny_deadline_never_hangs(wire: Wire, rpc: str) -> None:
    """A 1 µs deadline: DEADLINE_EXCEEDED, or (gRPC keeps time in milliseconds, and a loopback
    answer can beat the timer) a correct answer; either way promptly, and nothing else."""
    request = connection(REVOKED) if rpc == "CheckConnection" else pb.GetKeysRequest()
    for _ in range(20):
        started = time.monotonic()
        try:
            answer = getattr(wire.stub, rpc)(request, timeout=1e-6)
        except grpc.RpcError as exc:
            assert _rpc_error(exc).code() == grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            assert answer == wire.keys() if rpc == "GetKeys" else verdict(answer) == "DENY"
        assert time.monotonic() - started < 1


def test_deadline_shorter_than_the_work(wire: Wire) -> None:
    """20,000 checks cannot be answered in 20 ms: the call ends DEADLINE_EXCEEDED, promptly."""
    batch = pb.CheckBatch(checks=[batch_check(str(i), connection(OK)) for i in range(1000)])
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        list(wire.stub.BatchCheck(iter([batch] * 20), timeout=0.02))
    assert _rpc_error(info.value).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2


def test_deadline_ends_an_open_batch_stream(wire: Wire) -> None:
    """A stream the client keeps open past its deadline ends DEADLINE_EXCEEDED; no hang."""
    release = threading.Event()

    def feed() -> Iterator[pb.CheckBatch]:
        yield pb.CheckBatch(checks=[batch_check("only", connection(OK))])
        release.wait(10)  # keep the request stream open

    started = time.monotonic()
    replies = wire.stub.BatchCheck(feed(), timeout=0.5)
    try:
        assert [d.correlation_id for d in next(replies).decisions] == ["only"]
        with pytest.raises(grpc.RpcError) as info:
            next(replies)
    finally:
        release.set()
    assert _rpc_error(info.value).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3


def test_client_deadline_error() -> None:
    """A peer that accepts the connection but never speaks: DeadlineError after the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with Client(target, timeout=0.3) as client, pytest.raises(DeadlineError):
            client.check_connection(OK, utility="water")
        assert time.monotonic() - started < 3


# --- the Python clients ------------------------------------------------------------------------


def test_gate_client_answers(target: str) -> None:
    with Client(target) as client:
        decision = client.check_connection(REVOKED, utility="gas")
        assert decision.verdict == "DENY"
        [reason] = decision.reasons
        assert (reason.code, reason.permit_kind, reason.article) == (
            "PERMIT_REVOKED",
            "construction_planning",
            23,
        )
        assert client.check_registration(OK, kind="transfer").verdict == "ALLOW"
        notified = client.verify_premises(
            OK, office="tax", declared_use="office", application_id="L-1"
        )
        assert notified.verdict == "NOTIFY" and notified.notification_id


def test_gate_client_invalid_check(target: str) -> None:
    with Client(target) as client, pytest.raises(InvalidCheckError, match=r"^structure_id:"):
        client.check_registration("", kind="initial")


def test_async_client_answers_like_the_blocking_one(target: str) -> None:
    async def ask() -> list[Decision]:
        async with AsyncClient(target) as client:
            return [
                await client.check_connection(structure_id(5), utility="heat"),
                await client.check_registration(REVOKED, kind="initial"),
                await client.verify_premises(OK, office="fire", declared_use="residential"),
            ]

    answers = gate_loop().run(ask())
    with Client(target) as client:
        expected = [
            client.check_connection(structure_id(5), utility="heat"),
            client.check_registration(REVOKED, kind="initial"),
            client.verify_premises(OK, office="fire", declared_use="residential"),
        ]
    assert [(a.verdict, a.reasons, a.valid_until) for a in answers] == [
        (e.verdict, e.reasons, e.valid_until) for e in expected
    ]
    assert [a.verdict for a in answers] == ["ALLOW_TEMPORARY", "DENY", "ALLOW"]


# --- health and reflection -----------------------------------------------------------------------


def test_health_serving(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert _rpc_error(info.value).code() == grpc.StatusCode.NOT_FOUND


def test_health_not_serving_once_stop_begins(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    gate = start_gate(registry.url, registry.keys_dir)
    try:
        with grpc.insecure_channel(gate.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopping = gate.loop.submit(gate.app.stop(grace=1.0))
            gate.stopped = True
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            stopping.result(10)
    finally:
        gate.stop()
        registry.close()


def _reflect(target: str, request: reflection_pb2.ServerReflectionRequest) -> object:
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        return response


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


def _reflect_v1(target: str, request: reflection_pb2.ServerReflectionRequest) -> object:
    """Ask reflection by its v1 name (the same messages as v1alpha, field for field)."""
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(
            f"/{REFLECTION_V1}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        [response] = list(call(iter([request]), timeout=5))
        return response


@pytest.mark.parametrize("reflect", [_reflect, _reflect_v1], ids=["v1alpha", "v1"])
def test_reflection_lists_the_services(target: str, reflect: Any) -> None:
    response = reflect(target, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in response.list_services_response.service}
    assert {SERVICE, HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA} <= names


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_describes_itself_under_both_names(target: str, version: str) -> None:
    name = f"grpc.reflection.{version}.ServerReflection"
    response = _reflect_v1(
        target, reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
    )
    files = response.file_descriptor_response.file_descriptor_proto  # type: ignore[attr-defined]
    [described] = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    assert described.package == f"grpc.reflection.{version}"
    [method] = described.service[0].method
    assert method.input_type == f".grpc.reflection.{version}.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming


def test_reflection_describes_the_gate(target: str) -> None:
    response = _reflect(
        target, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
    )
    files = response.file_descriptor_response.file_descriptor_proto  # type: ignore[attr-defined]
    parsed = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    [gate_file] = [f for f in parsed if f.package == "permitgate.v1"]
    [service] = gate_file.service
    assert [m.name for m in service.method] == [
        "CheckConnection",
        "CheckRegistration",
        "VerifyPremises",
        "CheckApplicant",
        "BatchCheck",
        "GetKeys",
        "WatchStatus",
    ]
    options = gate_file.options
    assert options.go_package.endswith("/permitgate/v1;permitgatev1")
    assert (options.java_package, options.java_outer_classname) == (
        "example.permitgate.v1",
        "GateProto",
    )
    assert options.java_multiple_files
    assert (options.csharp_namespace, options.objc_class_prefix) == ("Permitgate.V1", "PGX")
    [codes_enum] = [e for e in gate_file.enum_type if e.name == "ReasonCode"]
    assert {v.name: v.number for v in codes_enum.value}["REASON_CODE_RECORD_UNVERIFIED"] == 11
    assert {v.name: v.number for v in codes_enum.value}["REASON_CODE_PARTY_SUSPENDED"] == 12


def test_gate_answers_on_an_empty_registry(tmp_path: Path) -> None:
    """An initialised registry with nothing in it: a fresh, empty answer, not an error."""
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    try:
        with running_gate(registry.url, registry.keys_dir) as gate, Wire(gate.target) as w:
            decision = w.ask(connection(OK))
            assert (verdict(decision), codes(decision)) == ("DENY", {"NOT_IN_REGISTRY"})
            assert decision.registry_version == 0
    finally:
        registry.close()
