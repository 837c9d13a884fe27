"""The client package against real servers on loopback: ``Client`` (blocking) end to end.

A real gate serves the demo registry (one structure per scenario, SQLite) for most tests. Where
the gate cannot be made to show a behaviour (a status it never answers, a limit on concurrent
calls, a stream that must be watched from the server's side), a scripted ``grpc.aio`` server of
the same service stands in (``client_servers.py``). The asyncio twin is in
``test_client_async.py``; the fresh-venv install in ``test_client_install.py``.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import permitgate_client
import permitgate_client.formats
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    GateRegistry,
    Pki,
    RunningGate,
    make_pki,
    served_registry,
    start_gate,
    wait_for,
)
from permitgate_client import (
    AsyncClient,
    BadSignatureError,
    Check,
    Client,
    DeadlineError,
    Decision,
    FromTheFutureError,
    GateError,
    InvalidCheckError,
    KeySet,
    MalformedError,
    OverloadedError,
    PermitgateError,
    Reason,
    ReceiptError,
    Refused,
    UnavailableError,
    Verdict,
    VerificationError,
    VerifierKey,
    verify_receipt,
)
from permitgate_client._errors import from_rpc
from permitgate_client.formats import RECEIPT_PAYLOAD_TYPE, parse_time
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

from registry.canonical import canonical_json
from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.signing import Signer, load_signer
from server.app import TlsFiles

OK = structure_id(0)  # urban, every permit in force
REVOKED = structure_id(1)  # construction planning permit revoked
TEMPORARY_ONLY = structure_id(5)  # a temporary construction planning permit only
BUILDING = structure_id(6)  # under construction: a construction works permit
STOP_ORDER = structure_id(7)  # a case at the stop-order stage


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("client"), demo_lines(len(SCENARIOS))) as served:
        yield served


@pytest.fixture(scope="module")
def registry(served: tuple[GateRegistry, RunningGate]) -> GateRegistry:
    return served[0]


@pytest.fixture(scope="module")
def client(served: tuple[GateRegistry, RunningGate]) -> Iterator[Client]:
    with Client(served[1].target, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedGate]:
    with scripted_gate() as gate:
        yield gate


def _record(sid: str, kind: str) -> dict[str, Any]:
    """The demo record of ``kind`` (``case``, ``permit``) for structure ``sid``."""
    return next(
        r for r in demo_lines(len(SCENARIOS)) if r["type"] == kind and r.get("structure") == sid
    )


# --- the single calls and their typed results ----------------------------------------------------


def test_check_connection_answers_a_typed_decision(client: Client, registry: GateRegistry) -> None:
    before = datetime.now(UTC)
    decision = client.check_connection(REVOKED, utility="power", application_id="A-1")
    after = datetime.now(UTC)
    assert isinstance(decision, Decision)
    assert decision.verdict is Verdict.DENY and decision.verdict == "DENY"
    assert decision.reasons == (
        Reason(
            code="PERMIT_REVOKED",
            article=23,
            message=decision.reasons[0].message,
            permit_kind="construction_planning",
            case_id=None,
        ),
    )
    assert "revoked" in decision.reasons[0].message
    assert decision.registry_version == registry.version()
    assert len(decision.decision_id) >= 16
    assert decision.decided_at is not None and decision.decided_at.utcoffset() == timedelta(0)
    assert before <= decision.decided_at <= after
    assert decision.valid_until is None
    assert decision.notification_id is None
    assert decision.receipt is None
    assert decision.correlation_id == ""


def test_a_case_reason_names_the_case(client: Client) -> None:
    case = _record(STOP_ORDER, "case")
    decision = client.check_registration(STOP_ORDER, kind="transfer", application_id="R-1")
    assert decision.verdict is Verdict.DENY
    flagged = [r for r in decision.reasons if r.case_id is not None]
    assert [(r.code, r.case_id, r.article, r.permit_kind) for r in flagged] == [
        ("STRUCTURE_FLAGGED", case["id"], 11, None)
    ]


def test_allow_temporary_has_an_aware_valid_until(client: Client) -> None:
    """A temporary connection until a time given in +07:00 comes back bounded by it, in UTC."""
    until = (datetime.now(UTC) + timedelta(days=30)).astimezone(timezone(timedelta(hours=7)))
    decision = client.check_connection(
        BUILDING, utility="power", kind="temporary", requested_until=until, application_id="T-1"
    )
    assert decision.verdict is Verdict.ALLOW_TEMPORARY
    assert decision.verdict.allows
    assert decision.valid_until == until
    assert decision.valid_until is not None and decision.valid_until.utcoffset() == timedelta(0)


def test_allow_temporary_ends_with_the_temporary_permit(client: Client) -> None:
    permit = next(
        r
        for r in demo_lines(len(SCENARIOS))
        if r.get("structure") == TEMPORARY_ONLY and r["kind"] == "temporary_construction_planning"
    )
    decision = client.check_connection(TEMPORARY_ONLY, utility="heat")
    assert decision.verdict is Verdict.ALLOW_TEMPORARY
    assert [(r.code, r.permit_kind) for r in decision.reasons] == [
        ("TEMPORARY_ONLY", "temporary_construction_planning")
    ]
    assert decision.valid_until == parse_time(permit["expires"])


def test_notify_carries_the_notification_id(client: Client, registry: GateRegistry) -> None:
    decision = client.verify_premises(
        OK, office="tax", declared_use="karaoke", application_id="TAX-77"
    )
    assert decision.verdict is Verdict.NOTIFY and not decision.verdict.allows
    assert decision.notification_id
    rows = registry.sql(
        "SELECT structure_id, office, application_id FROM notification WHERE id = :id",
        id=decision.notification_id,
    )
    assert rows == [(OK, "tax", "TAX-77")]
    again = client.verify_premises(
        OK, office="tax", declared_use="karaoke", application_id="TAX-77"
    )
    assert again.notification_id == decision.notification_id


def test_receipt_comes_as_bytes_and_verifies(client: Client) -> None:
    decision = client.check_registration(OK, kind="mortgage", application_id="M-1", receipt=True)
    assert isinstance(decision.receipt, bytes)
    verified = verify_receipt(decision.receipt, client.keys())
    assert verified.receipt.decision_id == decision.decision_id
    assert verified.receipt.verdict == "ALLOW"
    assert verified.receipt.check["structure_id"] == OK
    assert verified.checkpoint.size == decision.registry_version


def test_decision_to_json_and_equality(client: Client) -> None:
    decision = client.check_connection(TEMPORARY_ONLY, utility="heat")
    data = decision.to_json()
    assert data["verdict"] == "ALLOW_TEMPORARY"
    assert data["reasons"] == [r.to_json() for r in decision.reasons]
    assert parse_time(data["valid_until"]) == decision.valid_until
    assert parse_time(data["decided_at"]) == decision.decided_at
    assert data["decision_id"] == decision.decision_id
    assert json.loads(json.dumps(data)) == data
    assert decision == decision and decision != client.check_connection(
        TEMPORARY_ONLY, utility="heat"
    )
    assert "ALLOW_TEMPORARY" in repr(decision)


# --- keys, KeySet, receipts ----------------------------------------------------------------------


def test_keys_is_a_typed_keyset(client: Client, registry: GateRegistry) -> None:
    keyset = client.keys()
    assert isinstance(keyset.registry_key, VerifierKey)
    assert keyset.registry_key.text == (registry.keys_dir / "registry.pub").read_text().strip()
    assert keyset.gate_key.text == (registry.keys_dir / "gate.pub").read_text().strip()
    assert keyset.checkpoint == registry.checkpoint_note()


def test_keyset_json_round_trip(client: Client) -> None:
    keyset = client.keys()
    text = json.dumps(keyset.to_json())
    assert KeySet.from_json(text) == keyset
    assert KeySet.from_json(text.encode()) == keyset


def test_keyset_from_proto(client: Client, served: tuple[GateRegistry, RunningGate]) -> None:
    with grpc.insecure_channel(served[1].target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
        message = stub.GetKeys(pb.GetKeysRequest(), timeout=5)
    keyset = KeySet.from_proto(message)
    assert keyset == client.keys()
    assert keyset.registry_key.text == message.registry_key
    assert keyset.checkpoint == message.checkpoint
    broken = pb.KeySet(registry_key=message.registry_key, gate_key="gate+00+AAAA")
    with pytest.raises(MalformedError, match=r"^keyset: "):
        KeySet.from_proto(broken)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "{}",
        '{"registry_key": 1, "gate_key": "x"}',
        '{"registry_key": "a+b+c", "gate_key": "a+b+c"}',
        "[" * 100_000,  # nested past the JSON parser's depth
        '{"registry_key": ' * 100_000,
    ],
)
def test_keyset_from_bad_json_is_malformed(text: str) -> None:
    with pytest.raises(MalformedError, match=r"^keyset: "):
        KeySet.from_json(text)


def test_keyset_checkpoint_must_be_utf8_text() -> None:
    """A checkpoint that is not UTF-8 is refused when parsed or built, so ``to_json`` of any
    ``KeySet`` succeeds."""
    key = _other_key()
    with pytest.raises(ValueError, match=r"^checkpoint: not UTF-8 text \(byte 3\)$"):
        KeySet(key, key, b"abc\xff\n")
    with pytest.raises(TypeError, match=r"^checkpoint: expected bytes, got str$"):
        KeySet(key, key, "abc")  # type: ignore[arg-type]
    message = pb.KeySet(registry_key=key.text, gate_key=key.text, checkpoint=b"abc\xff\n")
    with pytest.raises(MalformedError, match=r"^keyset: checkpoint: not UTF-8 text"):
        KeySet.from_proto(message)
    lone_surrogate = json.dumps({"registry_key": key.text, "gate_key": key.text})[:-1] + (
        ', "checkpoint": "\\ud800"}'
    )
    with pytest.raises(MalformedError, match=r"^keyset: "):
        KeySet.from_json(lone_surrogate)
    keyset = KeySet(key, key, "origin \u00e9\n".encode())
    assert KeySet.from_json(json.dumps(keyset.to_json())) == keyset


def _other_key() -> VerifierKey:
    return Signer("someone.example/else", Ed25519PrivateKey.generate()).verifier


def _receipt(client: Client) -> bytes:
    decision = client.check_connection(REVOKED, utility="gas", receipt=True)
    assert decision.receipt is not None
    return decision.receipt


def test_receipt_against_another_gate_key(client: Client) -> None:
    keyset = client.keys()
    stranger = KeySet(keyset.registry_key, _other_key(), keyset.checkpoint)
    with pytest.raises(ReceiptError) as info:
        verify_receipt(_receipt(client), stranger)
    assert isinstance(info.value.__cause__, BadSignatureError)


def test_receipt_against_another_registry_key(client: Client) -> None:
    """The gate's signature holds, but the checkpoint inside is not the trusted registry's."""
    keyset = client.keys()
    stranger = KeySet(_other_key(), keyset.gate_key, keyset.checkpoint)
    with pytest.raises(ReceiptError) as info:
        verify_receipt(_receipt(client), stranger)
    assert isinstance(info.value.__cause__, BadSignatureError)
    assert "note:" in str(info.value.__cause__)


def test_receipt_nested_too_deeply_is_a_receipt_error() -> None:
    """Deep nesting in the envelope, or in a payload the gate's key did sign: a ``ReceiptError``
    over a ``MalformedError``, never the JSON parser's RecursionError."""
    gate = Signer("gate.example", Ed25519PrivateKey.generate())
    keyset = KeySet(_other_key(), gate.verifier)
    signed = gate.sign_envelope(b"[" * 100_000, RECEIPT_PAYLOAD_TYPE)
    for envelope, says in ((b"[" * 100_000, "envelope"), (signed, "receipt: payload")):
        with pytest.raises(ReceiptError) as info:
            verify_receipt(envelope, keyset)
        assert type(info.value.__cause__) is MalformedError
        assert str(info.value.__cause__).startswith(says), info.value.__cause__


def test_receipt_that_is_not_an_envelope(client: Client) -> None:
    with pytest.raises(ReceiptError) as info:
        verify_receipt(b"{not an envelope", client.keys())
    assert isinstance(info.value.__cause__, MalformedError)
    assert isinstance(info.value, VerificationError) and isinstance(info.value, PermitgateError)


def test_receipt_citing_a_newer_record_than_its_checkpoint(
    client: Client, registry: GateRegistry
) -> None:
    """Signed with the gate's own key, so only the tree-size step can refuse it."""
    envelope = json.loads(_receipt(client))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload["status_record"] is not None
    payload["status_record"]["tree_size"] = registry.version() + 1
    gate = load_signer(registry.keys_dir, "gate")
    forged = gate.sign_envelope(canonical_json(payload), envelope["payloadType"])
    with pytest.raises(ReceiptError) as info:
        verify_receipt(forged, client.keys())
    assert isinstance(info.value.__cause__, FromTheFutureError)


# --- errors, each from a real condition ----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.check_connection("", utility="water"), "structure_id"),
        (lambda c: c.check_registration("x" * 129, kind="initial"), "structure_id"),
        (lambda c: c.verify_premises(OK, office="fire", declared_use=""), "declared_use"),
        (
            lambda c: c.check_connection(
                OK,
                utility="water",
                kind="temporary",
                requested_until=datetime.now(UTC) - timedelta(minutes=5),
            ),
            "requested_until",
        ),
    ],
)
def test_the_gate_refuses_an_invalid_check_naming_the_field(
    client: Client, call: Any, field: str
) -> None:
    with pytest.raises(InvalidCheckError) as info:
        call(client)
    assert str(info.value).startswith(f"{field}:")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(info.value.__cause__, grpc.RpcError)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Check.connection(OK, utility="wine"), "utility"),
        (lambda: Check.connection(OK, utility="water", kind="forever"), "kind"),
        (lambda: Check.registration(OK, kind="gift"), "kind"),
        (lambda: Check.premises(OK, office="police", declared_use="shop"), "office"),
        (
            lambda: Check.connection(
                OK, utility="water", kind="temporary", requested_until=datetime(2030, 1, 1)
            ),
            "requested_until",
        ),
        (
            lambda: Check.connection(
                OK,
                utility="water",
                requested_until=datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
            ),
            "requested_until",
        ),
    ],
)
def test_check_refuses_a_bad_value_before_sending(build: Any, field: str) -> None:
    with pytest.raises(InvalidCheckError, match=f"^{field}: "):
        build()


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Check.connection(7, utility="water"), "structure_id"),  # type: ignore[arg-type]
        (lambda: Check.registration(OK, kind="initial", application_id=None), "application_id"),  # type: ignore[arg-type]
        (lambda: Check.premises(OK, office="fire", declared_use=None), "declared_use"),  # type: ignore[arg-type]
        (
            lambda: Check.connection(OK, utility="water", requested_until="2030-01-01"),  # type: ignore[arg-type]
            "requested_until",
        ),
    ],
)
def test_check_refuses_a_wrong_type_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(TypeError, match=f"^{field}: "):
        build()


def test_single_calls_validate_before_sending() -> None:
    """Against a closed port: an invalid choice is refused here, not by a gate (none is there)."""
    with closed_port() as target, Client(target) as client:
        with pytest.raises(InvalidCheckError, match=r"^utility: "):
            client.check_connection(OK, utility="wine")
        with pytest.raises(UnavailableError):
            client.check_connection(OK, utility="water")


def test_deadline_error_from_a_silent_peer() -> None:
    with silent_peer() as target, Client(target, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineError) as info:
            client.keys()
        assert 0.25 < time.monotonic() - started < 3
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert isinstance(info.value, GateError)


def test_unavailable_error_from_a_closed_port() -> None:
    with (
        closed_port() as target,
        Client(target) as client,
        pytest.raises(UnavailableError) as info,
    ):
        client.check_registration(OK, kind="initial")
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_overloaded_error_from_a_concurrency_limit() -> None:
    """``maximum_concurrent_rpcs=1``: while one call is held, the next is RESOURCE_EXHAUSTED."""
    with scripted_gate(maximum_concurrent_rpcs=1) as gate, Client(gate.target) as client:
        held = threading.Thread(target=lambda: client.check_connection("hold", utility="water"))
        held.start()
        try:
            gate.wait_held(1)
            with pytest.raises(OverloadedError) as info:
                client.check_connection(OK, utility="water")
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            # the same condition, through from_rpc directly
            with grpc.insecure_channel(gate.target) as channel:
                stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
                with pytest.raises(grpc.RpcError) as raw:
                    stub.GetKeys(pb.GetKeysRequest(), timeout=5)
            assert type(from_rpc(raw.value)) is OverloadedError
        finally:
            gate.release()
            held.join(10)
    assert not held.is_alive()


@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: s.name)
def test_every_status_maps_to_its_error(scripted: ScriptedGate, status: grpc.StatusCode) -> None:
    """The scripted gate aborts with ``status``: the error is its class, and keeps the status."""
    with Client(scripted.target) as client, pytest.raises(GateError) as info:
        client.check_connection(f"abort:{status.name}", utility="water")
    assert type(info.value) is TYPED.get(status, GateError)
    assert info.value.code == status
    assert str(info.value) == f"scripted {status.name}"


def test_each_error_class_knows_its_status() -> None:
    for status, cls in TYPED.items():
        if status is not grpc.StatusCode.UNAUTHENTICATED:  # shares PERMISSION_DENIED's class
            assert cls.code == status
    assert GateError.code is None


def test_an_unknown_verdict_is_an_error(scripted: ScriptedGate) -> None:
    with Client(scripted.target) as client, pytest.raises(GateError, match="no verdict"):
        client.check_connection("verdict:99", utility="water")


# --- check_many ----------------------------------------------------------------------------------


def test_check_many_keeps_order_across_many_batches(client: Client) -> None:
    """5,000 checks of every kind in batches of 97; invalid ones come back as Refused in place."""
    checks, invalid = interleaved_checks(5_000)
    expected = expected_answers(client, checks)
    results = list(client.check_many(iter(checks), batch_size=97))
    assert len(results) == len(checks)
    for i, (check, result) in enumerate(zip(checks, results, strict=True)):
        assert result.correlation_id == f"c{i}"
        if i in invalid:
            assert isinstance(result, Refused), (i, result)
            assert result.index == i
            body = check.kind
            assert result.error.startswith(f"checks[{i % 97}].{body}.structure_id:"), result
        else:
            assert isinstance(result, Decision), (i, result)
            assert (result.verdict, result.reasons) == expected[i], i
    decided = [r.decision_id for r in results if isinstance(r, Decision)]
    assert len(set(decided)) == len(decided) == len(checks) - len(invalid)


def test_check_many_takes_any_iterable(client: Client) -> None:
    checks = [Check.connection(OK, utility="water"), Check.registration(REVOKED, kind="initial")]
    from_list = [r.verdict for r in client.check_many(checks)]  # type: ignore[union-attr]
    from_tuple = [r.verdict for r in client.check_many(tuple(checks))]  # type: ignore[union-attr]
    from_generator = [r.verdict for r in client.check_many(c for c in checks)]  # type: ignore[union-attr]
    assert from_list == from_tuple == from_generator == ["ALLOW", "DENY"]
    assert list(client.check_many([])) == []


def test_check_many_takes_the_single_calls_arguments(client: Client) -> None:
    until = datetime.now(UTC) + timedelta(days=10)
    singles = [
        client.check_connection(
            BUILDING, utility="gas", kind="temporary", requested_until=until, application_id="A"
        ),
        client.check_registration(STOP_ORDER, kind="mortgage", application_id="R"),
        client.verify_premises(OK, office="fire", declared_use="restaurant", application_id="F"),
    ]
    checks = [
        Check.connection(
            BUILDING, utility="gas", kind="temporary", requested_until=until, application_id="A"
        ),
        Check.registration(STOP_ORDER, kind="mortgage", application_id="R"),
        Check.premises(OK, office="fire", declared_use="restaurant", application_id="F"),
    ]
    batched = list(client.check_many(checks))
    assert [
        (d.verdict, d.reasons, d.valid_until)  # type: ignore[union-attr]
        for d in batched
    ] == [(d.verdict, d.reasons, d.valid_until) for d in singles]


def test_check_many_receipts_verify(client: Client) -> None:
    keyset = client.keys()
    checks = [Check.connection(structure_id(i), utility="water", receipt=True) for i in range(14)]
    for decision in client.check_many(checks, batch_size=5):
        assert isinstance(decision, Decision) and decision.receipt is not None
        verified = verify_receipt(decision.receipt, keyset)
        assert verified.receipt.decision_id == decision.decision_id


def test_check_many_stops_early_and_cancels(scripted: ScriptedGate) -> None:
    """Breaking out ends the stream on the server's side and stops reading the iterable."""
    checks = CountingChecks()  # endless
    cancelled, finished = scripted.cancelled, scripted.finished
    with Client(scripted.target) as client:
        for n, _ in enumerate(client.check_many(checks, batch_size=10, window=2)):
            if n == 24:
                break
    scripted.wait_for(lambda: scripted.cancelled == cancelled + 1)
    assert scripted.finished == finished
    pulled = checks.pulled
    assert pulled <= 10 * (3 + 2)
    time.sleep(0.3)
    assert checks.pulled == pulled


def test_check_many_stops_early_against_the_gate(client: Client) -> None:
    checks = CountingChecks(OK)
    answers = client.check_many(checks, batch_size=100, window=3)
    first = [next(answers) for _ in range(150)]
    answers.close()
    assert all(isinstance(d, Decision) and d.verdict is Verdict.ALLOW for d in first)
    pulled = checks.pulled
    assert pulled <= 100 * (2 + 3)
    time.sleep(0.3)
    assert checks.pulled == pulled


def test_check_many_back_pressure(scripted: ScriptedGate) -> None:
    """A slow reader: the server never holds more than ``window`` batches beyond those read,
    and the sender does fill the window (the stream is pipelined, not one batch at a time)."""
    size, window = 10, 3
    checks = CountingChecks()
    before = scripted.received
    with Client(scripted.target) as client:
        answers = client.check_many(checks, batch_size=size, window=window)
        for consumed in range(1, 201):
            next(answers)
            read = -(-consumed // size)  # batches whose answers have reached the reader
            if consumed % 50 == 0:  # pause: the sender runs ahead as far as it may, no further
                scripted.wait_for(lambda r=read: scripted.received - before == r + window)  # type: ignore[misc]
                time.sleep(0.05)
            assert scripted.received - before <= read + window
            assert checks.pulled <= (read + window) * size
        answers.close()


def test_check_many_back_pressure_against_the_gate(client: Client) -> None:
    """Reading 1,000 answers from an endless iterable, with pauses: what was pulled stays within
    the window, and during each pause the sender fills the window and stops there."""
    size, window = 50, 4
    checks = CountingChecks(REVOKED)
    answers = client.check_many(checks, batch_size=size, window=window)
    for consumed in range(1, 1001):
        next(answers)
        limit = (-(-consumed // size) + window) * size
        if consumed % 100 == 0:
            wait_for(lambda limit=limit: checks.pulled == limit or None, timeout=10)  # type: ignore[misc]
            time.sleep(0.05)
        assert checks.pulled <= limit
    answers.close()


def test_check_many_reraises_the_iterables_error(client: Client) -> None:
    """The answers to every batch sent come first, then the iterable's own exception."""
    failure = LookupError("row 2,501: no such column")

    def rows() -> Iterator[Check]:
        for i in range(2_500):
            yield Check.connection(structure_id(i % 14), utility="water", correlation_id=f"r{i}")
        raise failure

    results: list[Decision | Refused] = []
    with pytest.raises(LookupError) as info:
        for result in client.check_many(rows(), batch_size=1000):
            results.append(result)
    assert info.value is failure
    assert [r.correlation_id for r in results] == [f"r{i}" for i in range(2_000)]


def test_check_many_refuses_what_is_not_a_check(client: Client) -> None:
    checks: list[Any] = [Check.connection(OK, utility="water")] * 3 + [("S-1", "water")]
    with pytest.raises(TypeError, match=r"^checks\[3\]: expected a Check"):
        list(client.check_many(checks, batch_size=2))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1001}, "batch_size"),
        ({"window": 0}, "window"),
    ],
)
def test_check_many_bad_options_raise_at_once(options: dict[str, int], message: str) -> None:
    with closed_port() as target, Client(target) as client:
        with pytest.raises(ValueError, match=f"^{message}: "):
            client.check_many([], **options)
        with pytest.raises(TypeError, match=r"^checks: "):
            client.check_many(42)  # type: ignore[arg-type]


def test_check_many_timeout_and_closed_port() -> None:
    with silent_peer() as target, Client(target) as client, pytest.raises(DeadlineError):
        list(client.check_many([Check.connection(OK, utility="water")], timeout=0.3))
    with closed_port() as target, Client(target) as client, pytest.raises(UnavailableError):
        list(client.check_many([Check.connection(OK, utility="water")]))


def test_check_many_a_failed_stream_is_a_typed_error(scripted: ScriptedGate) -> None:
    """The scripted gate aborts the stream UNAVAILABLE at its third batch."""
    checks = [Check.connection(OK, utility="water") for _ in range(100)]
    checks[25] = Check.connection("abort:UNAVAILABLE", utility="water")
    results = []
    with Client(scripted.target) as client, pytest.raises(UnavailableError):
        for result in client.check_many(checks, batch_size=10):
            results.append(result)
    assert len(results) == 20


def test_check_many_a_gate_ending_early_leaves_batches_unanswered(scripted: ScriptedGate) -> None:
    """The scripted gate takes two batches (the window) and ends the stream with OK, answering
    neither."""
    checks = [Check.connection("end:2", utility="water")] + [
        Check.connection(OK, utility="water") for _ in range(19_999)
    ]
    ended = scripted.ended
    results = []
    with Client(scripted.target) as client, pytest.raises(GateError) as info:
        for result in client.check_many(checks, batch_size=100, window=2):
            results.append(result)
    assert type(info.value) is GateError
    assert str(info.value) == "the gate ended the stream with 2 batches unanswered"
    assert results == []
    assert scripted.ended == ended + 1


def test_check_many_a_gate_ending_early_leaves_checks_unsent(scripted: ScriptedGate) -> None:
    """The gate answers the first batch and ends the stream while the iterable is still being
    read: the results stop short, so the stream fails rather than look complete."""
    ended = scripted.ended

    def rows() -> Iterator[Check]:
        yield Check.connection("end-after", utility="water")
        for _ in range(9):
            yield Check.connection(OK, utility="water")
        scripted.wait_for(lambda: scripted.ended == ended + 1)
        time.sleep(0.3)  # the reader sees the end meanwhile
        yield from (Check.connection(OK, utility="water") for _ in range(10))

    results = []
    with Client(scripted.target) as client, pytest.raises(GateError) as info:
        for result in client.check_many(rows(), batch_size=10, window=1):
            results.append(result)
    assert str(info.value) == "the gate ended the stream before every check was sent"
    assert len(results) == 10


def test_check_many_a_gate_answering_more_batches_than_sent(scripted: ScriptedGate) -> None:
    """The scripted gate answers the last batch twice."""
    checks = [Check.connection(OK, utility="water") for _ in range(30)]
    checks[25] = Check.connection("twice", utility="water")
    results = []
    with Client(scripted.target) as client, pytest.raises(GateError) as info:
        for result in client.check_many(checks, batch_size=10):
            results.append(result)
    assert str(info.value) == "the gate answered more batches than were sent"
    assert len(results) == 30


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("client-pki"), "client-tests")


@pytest.fixture(scope="module")
def mtls_gate(pki: Pki, registry: GateRegistry) -> Iterator[RunningGate]:
    tls = TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca_cert)
    gate = start_gate(registry.url, registry.keys_dir, tls=tls)
    try:
        yield gate
    finally:
        gate.stop()


def test_tls_material_as_paths(mtls_gate: RunningGate, pki: Pki) -> None:
    with Client(
        mtls_gate.target, tls_ca=pki.ca_cert, tls_cert=pki.client_cert, tls_key=pki.client_key
    ) as client:
        assert client.check_connection(REVOKED, utility="water").verdict is Verdict.DENY
        assert "TLS" in repr(client)


def test_tls_material_as_str_paths(mtls_gate: RunningGate, pki: Pki) -> None:
    with Client(
        mtls_gate.target,
        tls_ca=str(pki.ca_cert),
        tls_cert=str(pki.client_cert),
        tls_key=str(pki.client_key),
    ) as client:
        assert client.check_registration(OK, kind="initial").verdict is Verdict.ALLOW


def test_tls_material_as_bytes(mtls_gate: RunningGate, pki: Pki) -> None:
    with Client(
        mtls_gate.target,
        tls_ca=pki.ca_cert.read_bytes(),
        tls_cert=pki.client_cert.read_bytes(),
        tls_key=pki.client_key.read_bytes(),
    ) as client:
        results = list(client.check_many([Check.connection(OK, utility="gas")] * 3))
        assert [r.verdict for r in results] == ["ALLOW"] * 3  # type: ignore[union-attr]


def test_tls_without_a_client_certificate_is_refused(mtls_gate: RunningGate, pki: Pki) -> None:
    with Client(mtls_gate.target, tls_ca=pki.ca_cert) as client, pytest.raises(UnavailableError):
        client.keys()


def test_plaintext_to_a_tls_gate_is_refused(mtls_gate: RunningGate) -> None:
    with Client(mtls_gate.target) as client, pytest.raises(UnavailableError):
        client.keys()


def test_tls_options_are_checked(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        Client("127.0.0.1:1", tls_ca=pki.ca_cert, tls_cert=pki.client_cert)
    with pytest.raises(ValueError, match="not both"):
        Client("127.0.0.1:1", tls_ca=pki.ca_cert, credentials=grpc.ssl_channel_credentials())
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ValueError, match=f"^tls_ca: cannot read '{missing}'"):
        Client("127.0.0.1:1", tls_ca=missing)
    with pytest.raises(ValueError, match=r"^timeout: "):
        Client("127.0.0.1:1", timeout=0)
    with pytest.raises(TypeError):
        Client("127.0.0.1:1", 2.0)  # type: ignore[call-arg]  # options are keyword-only


# --- the public surface --------------------------------------------------------------------------


@pytest.mark.parametrize("module", [permitgate_client, permitgate_client.formats])
def test_public_names_are_curated_and_documented(module: Any) -> None:
    names = module.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    undocumented = []
    for name in names:
        value = getattr(module, name)
        if not inspect.isclass(value) and not callable(value):
            continue  # constants: documented where defined
        if not inspect.getdoc(value):
            undocumented.append(name)
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                    continue
                if isinstance(member, classmethod | staticmethod):
                    member = member.__func__
                if not (member.__doc__ or "").strip():
                    undocumented.append(f"{name}.{attr}")
    assert undocumented == []
    for private in ("_client", "_errors", "_keyset", "_models", "_receipts", "_trust", "_times"):
        assert getattr(permitgate_client, private).__doc__


def test_client_and_async_client_offer_the_same_calls() -> None:
    for name in (
        "check_connection",
        "check_registration",
        "verify_premises",
        "check_applicant",
        "check_many",
    ):
        blocking = inspect.signature(getattr(Client, name))
        awaited = inspect.signature(getattr(AsyncClient, name))
        assert list(blocking.parameters) == list(awaited.parameters), name
        for param in list(blocking.parameters.values())[2:]:
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, (name, param)
            assert awaited.parameters[param.name].default == param.default
    assert inspect.iscoroutinefunction(AsyncClient.check_connection)
    assert list(inspect.signature(Client).parameters) == list(
        inspect.signature(AsyncClient).parameters
    )


@pytest.mark.parametrize(
    ("call", "factory"),
    [
        ("check_connection", "connection"),
        ("check_registration", "registration"),
        ("verify_premises", "premises"),
        ("check_applicant", "applicant"),
    ],
)
def test_check_takes_the_single_calls_keyword_arguments(call: str, factory: str) -> None:
    single = inspect.signature(getattr(Client, call)).parameters
    check = inspect.signature(getattr(Check, factory)).parameters
    wanted = {n: (p.kind, p.default, p.annotation) for n, p in single.items() if n != "self"}
    offered = {n: (p.kind, p.default, p.annotation) for n, p in check.items()}
    assert wanted.items() <= offered.items()
    assert set(offered) - set(wanted) == {"correlation_id"}


def test_verdict_is_a_str_enum() -> None:
    assert issubclass(Verdict, str)
    assert [v.value for v in Verdict] == ["ALLOW", "ALLOW_TEMPORARY", "NOTIFY", "REVIEW", "DENY"]
    assert Verdict("DENY") is Verdict.DENY
    assert f"{Verdict.NOTIFY}" == "NOTIFY"
    assert [v for v in Verdict if v.allows] == [Verdict.ALLOW, Verdict.ALLOW_TEMPORARY]


def test_verdict_allows_says_what_it_does() -> None:
    """The first line of ``allows``' docstring names the verdicts it is True and False for."""
    doc = inspect.getdoc(Verdict.allows)
    assert doc is not None
    true_part, false_part = (
        re.findall(r"[A-Z_]{4,}", part) for part in doc.splitlines()[0].split(";")
    )
    assert true_part == [v.value for v in Verdict if v.allows]
    assert false_part == [v.value for v in Verdict if not v.allows]


def test_the_choice_tables_are_what_the_wire_offers() -> None:
    """``UTILITIES`` and its twins list every value of their wire enum but the unspecified one,
    in the wire's order, spelled as ``Check`` takes them; each builds a check."""

    def offered(enum: Any, prefix: str) -> tuple[str, ...]:
        names = [v.name for v in enum.DESCRIPTOR.values if v.number != 0]
        return tuple(name.removeprefix(prefix).lower() for name in names)

    assert offered(pb.Utility, "UTILITY_") == permitgate_client.UTILITIES
    assert permitgate_client.UTILITIES == ("water", "power", "gas", "heat")
    assert offered(pb.ConnectionKind, "CONNECTION_KIND_") == permitgate_client.CONNECTION_KINDS
    assert (
        offered(pb.RegistrationKind, "REGISTRATION_KIND_") == permitgate_client.REGISTRATION_KINDS
    )
    assert offered(pb.Office, "OFFICE_") == permitgate_client.OFFICES
    assert len(permitgate_client.OFFICES) == 7
    for utility in permitgate_client.UTILITIES:
        for kind in permitgate_client.CONNECTION_KINDS:
            Check.connection(OK, utility=utility, kind=kind)
    for kind in permitgate_client.REGISTRATION_KINDS:
        Check.registration(OK, kind=kind)
    for office in permitgate_client.OFFICES:
        Check.premises(OK, office=office, declared_use="x")


def test_every_choice_the_wire_offers_is_accepted() -> None:
    """The choices come from the wire enums: each builds, and its number is not unspecified."""
    for name in pb.Utility.keys():  # noqa: SIM118  (an enum wrapper)
        if not name.endswith("UNSPECIFIED"):
            choice = name.removeprefix("UTILITY_").lower()
            assert Check.connection(OK, utility=choice).message.connection.utility != 0
    for name in pb.Office.keys():  # noqa: SIM118
        if not name.endswith("UNSPECIFIED"):
            office = name.removeprefix("OFFICE_").lower()
            assert Check.premises(OK, office=office, declared_use="x").message.premises.office


def test_check_is_comparable_and_readable() -> None:
    one = Check.registration(OK, kind="transfer", application_id="A")
    assert one == Check.registration(OK, kind="transfer", application_id="A")
    assert one != Check.registration(OK, kind="transfer", application_id="B")
    assert one.kind == "registration"
    assert repr(one) == f"Check.registration({OK!r})"
