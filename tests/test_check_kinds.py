"""The table of check kinds (``server.checks.CHECK_KINDS``) and the gate's dispatch through it.

* The table and the proto agree: each field of the ``Check`` oneof and each unary check RPC is
  one row, with the right message types; the service serves exactly the proto's methods, each
  with a request deserializer that turns bytes that are not a message into ``Unparsable``.
* ``Gate.decide`` over every combination of what the gate holds (the structure, not, or a record
  it cannot verify) and how fresh its data is (fresh, stale, never loaded), for one check of each
  kind and both kinds of office: DOMAIN.md's "Readings settled".
* The memo never outlives a change of staleness or of doubt.
* ``MalformedRequests`` counts every bad request and logs one WARNING per interval.

Real signatures, a real cache and a real ``Gate``; no server (the wire is tested elsewhere).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import signed_head
from permitgate_client.v1 import gate_pb2 as pb

from registry.decisions import SqlDecisionStore
from registry.notifications import SqlNotificationStore
from registry.records import Permit, StatusRecord, Structure
from registry.signing import Signer
from registry.status import StatusSigner
from registry.storage import Database
from registry.vocabulary import (
    Area,
    ConnectionKind,
    Office,
    PermitKind,
    PermitStatus,
    RegistrationKind,
    Utility,
)
from server.cache import CachedStatus, RegistryCache
from server.checks import (
    CHECK_KINDS,
    CheckRequest,
    ConnectionRequest,
    PremisesRequest,
    RegistrationRequest,
)
from server.decision_log import DecisionLog
from server.gate import Gate
from server.guard import MalformedRequests, Unparsable, guard_handlers
from server.receipts import ReceiptSigner
from server.rules import ReasonCode, Verdict
from server.service import SERVICE_NAME, PermitGateService

ORIGIN = "permitgate.example/registry"
NOW = datetime.now(UTC).replace(microsecond=0)
SERVICE = pb.DESCRIPTOR.services_by_name["PermitGate"]


# --- the table against the proto ---------------------------------------------------------------


def test_one_row_per_field_of_the_check_oneof() -> None:
    oneof = pb.Check.DESCRIPTOR.oneofs_by_name["check"]
    assert sorted(CHECK_KINDS) == sorted(field.name for field in oneof.fields)
    for field in oneof.fields:
        kind = CHECK_KINDS[field.name]
        assert kind.name == field.name
        assert field.message_type is kind.message.DESCRIPTOR


def test_one_row_per_unary_check_rpc() -> None:
    checks = [m for m in SERVICE.methods if m.output_type is pb.Decision.DESCRIPTOR]
    assert sorted(k.method for k in CHECK_KINDS.values()) == sorted(m.name for m in checks)
    for kind in CHECK_KINDS.values():
        method = SERVICE.methods_by_name[kind.method]
        assert method.input_type is kind.message.DESCRIPTOR
        assert not method.client_streaming and not method.server_streaming


VALID: dict[str, object] = {
    "connection": pb.ConnectionCheck(
        structure_id="S-1", utility="UTILITY_WATER", kind="CONNECTION_KIND_PERMANENT"
    ),
    "registration": pb.RegistrationCheck(structure_id="S-1", kind="REGISTRATION_KIND_TRANSFER"),
    "premises": pb.PremisesCheck(
        structure_id="S-1", office="OFFICE_TAX", declared_use="shop", application_id="L-1"
    ),
    "applicant": pb.ApplicantCheck(party_id="S-1", asking="ASKING_PLANNING"),
}


@pytest.mark.parametrize("name", sorted(CHECK_KINDS))
def test_each_row_converts_its_own_message(name: str) -> None:
    request = CHECK_KINDS[name].from_wire(VALID[name], NOW)
    assert request.check_type == name
    assert request.to_json()["type"] == name
    assert request.subject_id == "S-1"
    # A check about a party (Art. 22) names no structure for the gate to look up.
    assert request.structure_id == ("" if CHECK_KINDS[name].whole_registry else "S-1")


# --- a real gate over a real cache -------------------------------------------------------------


@pytest.fixture
def signer() -> Signer:
    return Signer(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture
def gate(signer: Signer, tmp_path: Path) -> Iterator[Gate]:
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")  # decide() never touches it
    cache = RegistryCache(max_staleness=300)
    gate_signer = Signer("permitgate.example/gate", Ed25519PrivateKey.generate())
    yield Gate(
        notifications=SqlNotificationStore(db),
        cache=cache,
        receipts=ReceiptSigner(gate_signer),
        decision_log=DecisionLog(SqlDecisionStore(db), state_dir=tmp_path / "state"),
    )
    db.dispose()


def test_the_service_serves_exactly_the_protos_methods(gate: Gate) -> None:
    plain = PermitGateService(gate, pb.KeySet).method_handlers()
    handlers = guard_handlers(SERVICE_NAME, plain, MalformedRequests())
    assert sorted(handlers) == sorted(m.name for m in SERVICE.methods)
    for method in SERVICE.methods:
        handler = handlers[method.name]
        assert handler.request_streaming == method.client_streaming
        assert handler.response_streaming == method.server_streaming
        garbage = handler.request_deserializer(b"\xff\xff\xff")
        assert garbage == Unparsable(method.input_type.full_name)


HELD, UNKNOWN, FORGED = "S-HELD", "S-UNKNOWN", "S-FORGED"


def _record(sid: str, tree_size: int, status: PermitStatus = PermitStatus.VALID) -> StatusRecord:
    kinds = [
        PermitKind.LAND_USE_PLANNING,
        PermitKind.LAND_CERTIFICATE,
        PermitKind.CONSTRUCTION_PLANNING,
        PermitKind.PROPERTY_OWNERSHIP,
    ]
    permits = tuple(
        Permit(
            f"P-{sid}-{kind}",
            sid,
            kind,
            status if kind is PermitKind.CONSTRUCTION_PLANNING else PermitStatus.VALID,
            NOW - timedelta(days=100),
            use="residential",
        )
        for kind in kinds
    )
    return StatusRecord(
        Structure(sid, Area.URBAN, "110228"), permits, (), tree_size, NOW, NOW + timedelta(days=7)
    )


def _load(
    gate: Gate,
    signer: Signer,
    size: int,
    records: list[StatusRecord],
    cosigned_at: datetime = NOW,
) -> None:
    """Install a head of log ``size`` cosigned at ``cosigned_at`` holding ``records``, whose
    status map they give, as the follower does."""
    statuses = {}
    for record in records:
        envelope = StatusSigner(signer, now=NOW).envelope(record)
        statuses[record.structure.id] = CachedStatus(envelope, hashlib.sha256(envelope).digest())
    entries = {sid: status.digest for sid, status in statuses.items()}
    head = signed_head(signer, entries, size=size, cosigned_at=cosigned_at)
    gate.cache.install(head, statuses, replace=False, doubtful=frozenset(), superseded=None)


def _hold_as_is(gate: Gate, *, doubtful: frozenset[str] = frozenset()) -> None:
    """Keep the head and records held; ``doubtful`` the structures with no verifiable record."""
    cache = gate.cache
    cache.install(cache.head, {}, replace=False, doubtful=doubtful, superseded=None)


def _checks(sid: str) -> dict[str, CheckRequest]:
    return {
        "connection": ConnectionRequest(
            sid, Utility.WATER, ConnectionKind.PERMANENT, None, "A-1", False
        ),
        "registration": RegistrationRequest(sid, RegistrationKind.TRANSFER, "R-1", False),
        "blocking office": PremisesRequest(sid, Office.FIRE, "residential", "L-1", False),
        "notifying office": PremisesRequest(sid, Office.TAX, "residential", "L-1", False),
    }


ALLOW, NOTIFY, REVIEW, DENY = Verdict.ALLOW, Verdict.NOTIFY, Verdict.REVIEW, Verdict.DENY
NIR = ReasonCode.NOT_IN_REGISTRY
STALE = ReasonCode.REGISTRY_STALE
UNVERIFIED = ReasonCode.RECORD_UNVERIFIED

# structure, data -> (verdict for a strict check, for a notifying office), the reason codes
COMBINATIONS = [
    pytest.param("held", "fresh", (ALLOW, ALLOW), [], id="held-fresh"),
    pytest.param("held", "stale", (REVIEW, REVIEW), [STALE], id="held-stale"),
    pytest.param("unknown", "fresh", (DENY, NOTIFY), [NIR], id="unknown-fresh"),
    pytest.param("unknown", "stale", (REVIEW, REVIEW), [STALE], id="unknown-stale"),
    pytest.param("unknown", "never loaded", (REVIEW, REVIEW), [STALE], id="unknown-never-loaded"),
    pytest.param("held, unverified", "fresh", (REVIEW, REVIEW), [UNVERIFIED], id="doubt-fresh"),
    pytest.param("held, unverified", "stale", (REVIEW, REVIEW), [UNVERIFIED], id="doubt-stale"),
    pytest.param("forged", "fresh", (REVIEW, REVIEW), [UNVERIFIED], id="forged-fresh"),
    pytest.param("forged", "stale", (REVIEW, REVIEW), [UNVERIFIED], id="forged-stale"),
    pytest.param("forged", "never loaded", (REVIEW, REVIEW), [UNVERIFIED], id="forged-no-data"),
]


@pytest.mark.parametrize(("structure", "data", "verdicts", "expected"), COMBINATIONS)
@pytest.mark.parametrize(
    "check", ["connection", "registration", "blocking office", "notifying office"]
)
def test_what_the_gate_holds_and_how_fresh(
    gate: Gate,
    signer: Signer,
    structure: str,
    data: str,
    verdicts: tuple[Verdict, Verdict],
    expected: list[ReasonCode],
    check: str,
) -> None:
    if data != "never loaded":
        cosigned_at = NOW - timedelta(seconds=1000 if data == "stale" else 0)
        _load(gate, signer, 10, [_record(HELD, 3)], cosigned_at)
    sid = {"held": HELD, "unknown": UNKNOWN, "held, unverified": HELD, "forged": FORGED}[structure]
    if structure == "held, unverified":
        _hold_as_is(gate, doubtful=frozenset({HELD}))  # the record held is not the map's
    elif structure == "forged":
        _hold_as_is(gate, doubtful=frozenset({FORGED}))  # no record with the map's hash
    request = _checks(sid)[check]
    decision, status = gate.decide(request, NOW)
    assert decision.verdict is verdicts[check == "notifying office"]
    assert [r.code for r in decision.reasons] == expected
    assert {r.article for r in decision.reasons} <= {request.article}
    # The record a decision rests on: none for an unknown structure, and none for one whose
    # record is not known to be current (a receipt must not cite the older record).
    assert (status is None) == (sid != HELD or structure == "held, unverified")


def test_the_memo_follows_staleness_doubt_and_new_records(gate: Gate, signer: Signer) -> None:
    request = _checks(HELD)["connection"]

    def codes() -> tuple[Verdict, list[ReasonCode]]:
        decision, _ = gate.decide(request, NOW)
        return decision.verdict, [r.code for r in decision.reasons]

    _load(gate, signer, 10, [_record(HELD, 3)])
    fresh = gate.cache.head
    assert fresh is not None
    assert codes() == (ALLOW, []) and codes() == (ALLOW, [])  # the second from the memo
    held = gate.cache.get(HELD)
    assert held is not None
    entries = {HELD: held.digest}
    old = signed_head(signer, entries, size=10, cosigned_at=NOW - timedelta(seconds=1000))
    gate.cache.install(old, {}, replace=False, doubtful=frozenset(), superseded=None)
    assert codes() == (REVIEW, [STALE])
    gate.cache.install(fresh, {}, replace=False, doubtful=frozenset(), superseded=None)
    assert codes() == (ALLOW, [])
    _hold_as_is(gate, doubtful=frozenset({HELD}))
    assert codes() == (REVIEW, [UNVERIFIED])
    _load(gate, signer, 12, [_record(HELD, 6, PermitStatus.REVOKED)])  # covers the change
    assert not gate.cache.is_doubtful(HELD)
    assert codes() == (DENY, [ReasonCode.PERMIT_REVOKED])


# --- counting bytes that are not a message -----------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_malformed_requests_are_all_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    counter = MalformedRequests(interval=10.0, clock=clock)
    bad = Unparsable("permitgate.v1.ConnectionCheck")
    with caplog.at_level(logging.WARNING, logger="server.guard"):
        for step in range(25):
            clock.now = float(step)
            counter.note("/permitgate.v1.PermitGate/CheckConnection", bad, "ipv4:127.0.0.1:1")
    assert counter.total == 25
    lines = [r for r in caplog.records if r.name == "server.guard"]
    assert [r.levelno for r in lines] == [logging.WARNING] * 3  # at 0 s, 10 s and 20 s
    assert [r.getMessage().split(" ", 1)[0] for r in lines] == ["1", "10", "10"]
    assert "(21 in all)" in lines[-1].getMessage()  # the report at 20 s; four since
    assert "not a valid permitgate.v1.ConnectionCheck" in lines[-1].getMessage()
    assert all(r.exc_info is None for r in lines)
