"""CheckApplicant (Art. 22): may planning or housing accept an application of this party?

* The rule (``decide_applicant``) as a table: no case, a case naming the party that does not
  suspend it, a suspension in each blocking stage and after the case ended, several cases on
  several structures, two parties, stale data, records that cannot be verified.
* The embedded cache's index party -> structures (``RegistryCache.cases_naming``), kept as
  records are installed, replaced and removed, from verified records only.
* A real gate on loopback over a real registry (SQLite and PostgreSQL): ALLOW, then a
  suspension imported turns it to DENY within the poll interval, and lifted, back to ALLOW; a
  receipt that verifies offline; the decision log row; a batch; the client and the CLI; a
  forged case row in the database naming the party changes nothing; a shared gate (a private
  Redis) refuses with FAILED_PRECONDITION.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    GateRegistry,
    RunningGate,
    Wire,
    codes,
    connection,
    reasons,
    reseal_payload,
    signed_head,
    start_gate,
    urban_ok,
    verdict,
    wait_for,
)
from permitgate_client import (
    AsyncClient,
    Check,
    Client,
    KeySet,
    ReceiptError,
    VerifierKey,
    verify_receipt,
)
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc
from redis_layout_support import LayoutWriter
from redis_support import private_redis
from registry_support import case as case_line

from registry.records import Case, StatusRecord, Structure
from registry.signing import Signer
from registry.status import StatusSigner
from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage, party_key
from server.cache import CachedStatus, RegistryCache, _may_name_party
from server.checks import CHECK_KINDS, ApplicantRequest, Asking, InvalidCheck
from server.rules import ARTICLE_APPLICANT, Decision, ReasonCode, Verdict, decide_applicant

NOW = datetime.now(UTC).replace(microsecond=0)
PARTY = "91110000MA01ABCD2X"
OTHER = "91110000MA01WXYZ9Q"
ORIGIN = "permitgate.example/registry"

ALLOW, REVIEW, DENY = Verdict.ALLOW, Verdict.REVIEW, Verdict.DENY
SUSPENDED = ReasonCode.PARTY_SUSPENDED
STALE = ReasonCode.REGISTRY_STALE
UNVERIFIED = ReasonCode.RECORD_UNVERIFIED


def _case(
    cid: str,
    stage: CaseStage,
    *,
    party: str | None = PARTY,
    suspended: bool = False,
    structure: str = "S-1",
) -> Case:
    return Case(
        cid,
        structure,
        CaseKind.NO_PLANNING_PERMIT,
        stage,
        CaseSource.PATROL,
        NOW - timedelta(days=30),
        party,
        suspended,
    )


def _summary(decision: Decision) -> tuple[Verdict, list[tuple[ReasonCode, str | None]]]:
    return decision.verdict, [(r.code, r.case_id) for r in decision.reasons]


# --- the rule ------------------------------------------------------------------------------------

S = CaseStage
RULE_TABLE = [
    pytest.param([], False, (ALLOW, []), id="no-case"),
    pytest.param([_case("C-1", S.STOP_ORDER)], False, (ALLOW, []), id="named-not-suspended"),
    pytest.param(
        [_case("C-1", S.DEMOLITION_ORDER, suspended=False)],
        False,
        (ALLOW, []),
        id="named-at-demolition-not-suspended",
    ),
    *[
        pytest.param(
            [_case("C-1", stage, suspended=True)],
            False,
            (DENY, [(SUSPENDED, "C-1")]),
            id=f"suspended-{stage}",
        )
        for stage in (S.FILED, S.STOP_ORDER, S.RECTIFY_ORDER, S.DEMOLITION_ORDER)
    ],
    *[
        pytest.param(
            [_case("C-1", stage, suspended=True)],
            False,
            (ALLOW, []),
            id=f"suspended-but-{stage}",
        )
        for stage in (S.REPORTED, S.RECTIFIED, S.DEMOLISHED, S.CLOSED, S.DISMISSED)
    ],
    pytest.param(
        [
            _case("C-3", S.DEMOLITION_ORDER, suspended=True, structure="S-2"),
            _case("C-1", S.STOP_ORDER, suspended=True, structure="S-1"),
            _case("C-2", S.CLOSED, suspended=True, structure="S-1"),
            _case("C-4", S.FILED, structure="S-3"),
        ],
        False,
        (DENY, [(SUSPENDED, "C-1"), (SUSPENDED, "C-3")]),
        id="several-cases-several-structures",
    ),
    pytest.param(
        [
            _case("C-1", S.STOP_ORDER, suspended=True, party=OTHER),
            _case("C-2", S.STOP_ORDER, party=PARTY),
        ],
        False,
        (ALLOW, []),
        id="two-parties-the-other-suspended",
    ),
    pytest.param(
        [
            _case("C-1", S.STOP_ORDER, suspended=True, party=OTHER),
            _case("C-2", S.DEMOLITION_ORDER, suspended=True, party=PARTY),
        ],
        False,
        (DENY, [(SUSPENDED, "C-2")]),
        id="two-parties-both-suspended",
    ),
    pytest.param([], True, (REVIEW, [(STALE, None)]), id="stale-no-case"),
    pytest.param(
        [_case("C-1", S.STOP_ORDER)], True, (REVIEW, [(STALE, None)]), id="stale-not-suspended"
    ),
    pytest.param(
        [_case("C-1", S.STOP_ORDER, suspended=True)],
        True,
        (DENY, [(STALE, None), (SUSPENDED, "C-1")]),
        id="stale-suspended",
    ),
]


@pytest.mark.parametrize(("cases", "stale", "expected"), RULE_TABLE)
def test_the_rule(cases: list[Case], stale: bool, expected: tuple[Verdict, list[Any]]) -> None:
    decision = decide_applicant(cases, NOW, stale, party=PARTY)
    assert _summary(decision) == expected
    assert {r.article for r in decision.reasons} <= {ARTICLE_APPLICANT}
    assert decision.valid_until is None
    for reason in decision.reasons:
        if reason.code is SUSPENDED:
            assert reason.case_id is not None and reason.case_id in reason.message
            assert PARTY in reason.message


def test_the_rule_never_allows_over_records_it_cannot_verify() -> None:
    decision = decide_applicant([], NOW, False, unverified={"S-9", "S-8"})
    assert _summary(decision) == (REVIEW, [(UNVERIFIED, None)])
    assert "S-8, S-9" in decision.reasons[0].message
    many = decide_applicant([], NOW, False, unverified={f"S-{n:02d}" for n in range(25)})
    assert "and 15 more" in many.reasons[0].message
    suspended = decide_applicant(
        [_case("C-1", S.STOP_ORDER, suspended=True)], NOW, False, unverified={"S-9"}
    )
    assert _summary(suspended) == (DENY, [(UNVERIFIED, None), (SUSPENDED, "C-1")])


def test_without_a_party_every_case_given_counts() -> None:
    cases = [_case("C-1", S.STOP_ORDER, suspended=True, party=OTHER)]
    assert decide_applicant(cases, NOW, False).verdict is DENY
    assert decide_applicant(cases, NOW, False, party=PARTY).verdict is ALLOW


# --- the request ---------------------------------------------------------------------------------


def test_the_request_is_validated_field_by_field() -> None:
    kind = CHECK_KINDS["applicant"]
    assert kind.method == "CheckApplicant" and kind.whole_registry
    good = pb.ApplicantCheck(party_id=PARTY, asking=pb.ASKING_HOUSING, application_id="A-1")
    request = kind.from_wire(good, NOW)
    assert isinstance(request, ApplicantRequest)
    assert request.asking is Asking.HOUSING
    assert request.structure_id == "" and request.subject_id == PARTY
    assert request.to_json() == {
        "type": "applicant",
        "party_id": PARTY,
        "asking": "housing",
        "application_id": "A-1",
    }
    bad = [
        (pb.ApplicantCheck(asking=pb.ASKING_PLANNING), "party_id"),
        (pb.ApplicantCheck(party_id="no such id!", asking=pb.ASKING_PLANNING), "party_id"),
        (pb.ApplicantCheck(party_id=PARTY), "asking"),
        (pb.ApplicantCheck(party_id=PARTY, asking=7), "asking"),  # type: ignore[arg-type]
        (
            pb.ApplicantCheck(party_id=PARTY, asking=pb.ASKING_PLANNING, application_id="x" * 129),
            "application_id",
        ),
    ]
    for message, field in bad:
        with pytest.raises(InvalidCheck) as caught:
            kind.from_wire(message, NOW)
        assert caught.value.field == field


# --- the index of the embedded cache -------------------------------------------------------------


def _record(sid: str, tree_size: int, *cases: Case) -> StatusRecord:
    return StatusRecord(
        Structure(sid, Area.URBAN, "110228"),
        (),
        tuple(cases),
        tree_size,
        NOW,
        NOW + timedelta(days=7),
    )


class Installer:
    """Installs heads with their records as the embedded follower does: the whole mapping,
    each unchanged structure keeping its CachedStatus object."""

    def __init__(self, cache: RegistryCache) -> None:
        self.cache = cache
        self.signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
        self.records: dict[str, CachedStatus] = {}
        self.size = 0

    def put(self, *records: StatusRecord, drop: tuple[str, ...] = ()) -> None:
        changed = {}
        for record in records:
            envelope = StatusSigner(self.signer, now=NOW).envelope(record)
            changed[record.structure.id] = CachedStatus(envelope, hashlib.sha256(envelope).digest())
        kept = {sid: s for sid, s in self.records.items() if sid not in drop}
        self.records = {**kept, **changed}
        self.size += 10
        entries = {sid: s.digest for sid, s in self.records.items()}
        head = signed_head(self.signer, entries, size=self.size, cosigned_at=NOW)
        self.cache.install(
            head, self.records, replace=True, doubtful=frozenset(), superseded=None, now=NOW
        )


def _ids(cache: RegistryCache, party: str) -> list[str]:
    return [c.id for c in cache.cases_naming(party).cases]


def test_the_index_follows_records_installed_replaced_and_removed() -> None:
    cache = RegistryCache(max_staleness=300)
    install = Installer(cache)
    install.put(
        _record("S-1", 1, _case("C-1", S.STOP_ORDER, structure="S-1")),
        _record("S-2", 2),
        _record("S-3", 3, _case("C-3", S.FILED, party=OTHER, structure="S-3")),
    )
    assert _ids(cache, PARTY) == ["C-1"] and _ids(cache, OTHER) == ["C-3"]
    assert cache.get("S-2") is not None and cache.get("S-2").record is not None  # type: ignore[union-attr]
    # A new case naming the party on another structure; S-1's record unchanged.
    install.put(_record("S-2", 11, _case("C-2", S.STOP_ORDER, suspended=True, structure="S-2")))
    found = cache.cases_naming(PARTY)
    assert [c.id for c in found.cases] == ["C-1", "C-2"]
    assert found.next_update == NOW + timedelta(days=7) and not found.unverified
    # S-1's case now names the other party; S-3 leaves the registry.
    install.put(_record("S-1", 21, _case("C-1", S.STOP_ORDER, party=OTHER)), drop=("S-3",))
    assert _ids(cache, PARTY) == ["C-2"] and _ids(cache, OTHER) == ["C-1"]
    # The same mapping again (a poll with nothing new) changes nothing.
    cache.install(
        cache.head, install.records, replace=True, doubtful=frozenset(), superseded=None, now=NOW
    )
    assert _ids(cache, PARTY) == ["C-2"]
    install.put(_record("S-2", 31))
    assert _ids(cache, PARTY) == [] and "C-2" not in str(cache.cases_naming(OTHER))
    assert cache._parties.structures == {OTHER: {"S-1"}}  # nothing left behind


def test_records_naming_no_party_are_not_parsed() -> None:
    cache = RegistryCache(max_staleness=300)
    install = Installer(cache)
    install.put(_record("S-1", 1, _case("C-1", S.FILED, party=None)), _record("S-2", 2))
    assert all(s.record is None for s in install.records.values())  # looked into, not parsed
    assert cache.cases_naming(PARTY).cases == ()


def test_doubtful_structures_are_reported_with_every_party() -> None:
    cache = RegistryCache(max_staleness=300)
    install = Installer(cache)
    install.put(_record("S-1", 1))
    cache.install(
        cache.head, install.records, replace=True, doubtful=frozenset({"S-7"}), superseded=None
    )
    request = ApplicantRequest(PARTY, Asking.PLANNING, "", False, cache)
    decision = request.decide(None, NOW, False)
    assert _summary(decision) == (REVIEW, [(UNVERIFIED, None)])
    assert "S-7" in decision.reasons[0].message


def test_a_record_past_its_next_update_is_stale() -> None:
    cache = RegistryCache(max_staleness=300)
    install = Installer(cache)
    install.put(_record("S-1", 1, _case("C-1", S.STOP_ORDER, suspended=True)))
    request = ApplicantRequest(PARTY, Asking.PLANNING, "", False, cache)
    assert _summary(request.decide(None, NOW, False)) == (DENY, [(SUSPENDED, "C-1")])
    later = NOW + timedelta(days=8)
    assert _summary(request.decide(None, later, False)) == (
        DENY,
        [(STALE, None), (SUSPENDED, "C-1")],
    )


def test_a_payload_holding_party_is_always_seen_without_decoding() -> None:
    """At every place ``"party"`` can fall in base64's 3-byte groups, and with any bytes
    around it, the envelope is looked into; an envelope with an escape is too."""
    rng = random.Random(22)
    for offset in range(60):
        for _ in range(20):
            before = bytes(rng.randrange(256) for _ in range(offset))
            after = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
            payload = before + b'"party"' + after
            envelope = json.dumps(
                {
                    "payload": base64.b64encode(payload).decode(),
                    "payloadType": "application/vnd.permitgate.status+json",
                    "signatures": [{"keyid": "k", "sig": "AAAA"}],
                }
            ).encode()
            assert _may_name_party(envelope), (offset, payload)
    plain = json.dumps({"payload": base64.b64encode(b'{"cases":[]}').decode()}).encode()
    assert not _may_name_party(plain)
    assert _may_name_party(plain.replace(b'"payload"', b'"pay\\u006coad"'))


# --- a real gate ---------------------------------------------------------------------------------


def _applicant(
    party: str = PARTY, asking: int = pb.ASKING_PLANNING, *, receipt: bool = False
) -> pb.ApplicantCheck:
    return pb.ApplicantCheck(
        party_id=party,
        asking=asking,  # type: ignore[arg-type]
        application_id="PA-2026-0001",
        receipt=receipt,
    )


def _ask(gate: RunningGate, message: pb.ApplicantCheck) -> pb.Decision:
    with grpc.insecure_channel(gate.target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
        decision: pb.Decision = stub.CheckApplicant(message, timeout=10)
        return decision


def _suspension(cid: str, sid: str, *, suspended: bool, party: str = PARTY) -> dict[str, Any]:
    line = case_line(cid, sid, "stop_order", "no_planning_permit", "patrol")
    line["party"] = party
    if suspended:
        line["party_suspended"] = True
    return line


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[GateRegistry, RunningGate]]:
    registry = GateRegistry(db_url, tmp_path / "keys")
    registry.load(
        [
            *urban_ok("110228-0001-0001"),
            *urban_ok("110228-0001-0002"),
            _suspension("C-2026-0001", "110228-0001-0001", suspended=False),
        ]
    )
    gate = start_gate(registry.url, registry.keys_dir, poll_interval=0.2)
    try:
        yield registry, gate
    finally:
        gate.stop()
        registry.close()


def test_a_suspension_turns_the_answer_to_deny_within_the_poll_interval(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, gate = served
    first = _ask(gate, _applicant())
    assert (verdict(first), reasons(first)) == ("ALLOW", [])
    assert verdict(_ask(gate, _applicant(OTHER))) == "ALLOW"
    registry.load([_suspension("C-2026-0002", "110228-0001-0002", suspended=True)])
    started = time.monotonic()
    denied = wait_for(
        lambda: d if verdict(d := _ask(gate, _applicant())) == "DENY" else None, timeout=5
    )
    took = time.monotonic() - started
    assert took < 1.0, f"took {took:.2f} s"
    assert reasons(denied) == [("PARTY_SUSPENDED", None, "C-2026-0002", 22)]
    assert denied.registry_version == registry.version()
    housing = _ask(gate, _applicant(asking=pb.ASKING_HOUSING))
    assert verdict(housing) == "DENY"
    assert verdict(_ask(gate, _applicant(OTHER))) == "ALLOW"  # another party: untouched
    # Structure checks are as they were: the case at stop_order flags its structure.
    with Wire(gate.target) as wire:
        assert codes(wire.ask(connection("110228-0001-0002"))) == {"STRUCTURE_FLAGGED"}
    # Lifted: back to ALLOW.
    registry.load([_suspension("C-2026-0002", "110228-0001-0002", suspended=False)])
    wait_for(lambda: verdict(_ask(gate, _applicant())) == "ALLOW" or None, timeout=5)


def test_a_forged_case_row_changes_nothing(served: tuple[GateRegistry, RunningGate]) -> None:
    registry, gate = served
    registry.sql(
        "INSERT INTO violation_case (id, structure_id, kind, stage, source, opened, party,"
        " party_suspended) VALUES ('C-FORGED', '110228-0001-0002', 'no_planning_permit',"
        " 'stop_order', 'patrol', :opened, :party, :yes)",
        opened=NOW - timedelta(days=1),
        party=PARTY,
        yes=True,
    )
    registry.sql(
        "UPDATE violation_case SET party_suspended = :yes WHERE id = 'C-2026-0001'", yes=True
    )
    deadline = time.monotonic() + 1.0  # five polls
    while time.monotonic() < deadline:
        decision = _ask(gate, _applicant())
        assert (verdict(decision), reasons(decision)) == ("ALLOW", [])
        time.sleep(0.1)


def test_a_receipt_verifies_offline_and_the_log_names_the_party(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, gate = served
    registry.load([_suspension("C-2026-0003", "110228-0001-0002", suspended=True)])
    wait_for(lambda: verdict(_ask(gate, _applicant())) == "DENY" or None, timeout=5)
    decision = _ask(gate, _applicant(receipt=True))
    with Wire(gate.target) as wire:
        keyset = wire.keys()
    keys = KeySet(
        VerifierKey.from_text(keyset.registry_key), VerifierKey.from_text(keyset.gate_key)
    )
    receipt = verify_receipt(decision.receipt, keys).receipt
    assert receipt.decision_id == decision.decision_id
    assert receipt.verdict == "DENY"
    assert receipt.check == {
        "type": "applicant",
        "party_id": PARTY,
        "asking": "planning",
        "application_id": "PA-2026-0001",
    }
    assert [(r["code"], r["case_id"], r["article"]) for r in receipt.reasons] == [
        ("PARTY_SUSPENDED", "C-2026-0003", 22)
    ]
    assert receipt.status_record_sha256 is None
    tampered = reseal_payload(decision.receipt, lambda p: p.replace(b'"DENY"', b'"ALLOW"'))
    with pytest.raises(ReceiptError):
        verify_receipt(tampered, keys)

    def logged() -> list[tuple[Any, ...]] | None:
        rows = registry.sql(
            "SELECT check_type, structure_id, verdict, request FROM decision_log"
            " WHERE decision_id = :d",
            d=decision.decision_id,
        )
        return rows or None

    [(check_type, subject, logged_verdict, request)] = wait_for(logged, timeout=5)
    assert (check_type, subject, logged_verdict) == ("applicant", PARTY, "DENY")
    assert json.loads(request)["party_id"] == PARTY


def test_batches_the_client_and_bad_input(served: tuple[GateRegistry, RunningGate]) -> None:
    registry, gate = served
    registry.load([_suspension("C-2026-0004", "110228-0001-0001", suspended=True)])
    wait_for(lambda: verdict(_ask(gate, _applicant())) == "DENY" or None, timeout=5)
    with Client(gate.target) as client:
        one = client.check_applicant(PARTY, asking="housing", application_id="H-1")
        assert one.verdict == "DENY"
        assert [(r.code, r.case_id) for r in one.reasons] == [("PARTY_SUSPENDED", "C-2026-0004")]
        answers = list(
            client.check_many(
                [
                    Check.applicant(PARTY, asking="planning", correlation_id="a"),
                    Check.applicant(OTHER, asking="planning", correlation_id="b"),
                    Check.connection("110228-0001-0002", utility="water", correlation_id="c"),
                    Check.applicant("bad id!", asking="planning", correlation_id="d"),
                ]
            )
        )
        assert [getattr(a, "verdict", None) for a in answers[:3]] == ["DENY", "ALLOW", "ALLOW"]
        assert "party_id" in str(answers[3])
        with_receipt = client.check_applicant(PARTY, asking="planning", receipt=True)
        keys = client.keys()
        assert verify_receipt(with_receipt.receipt or b"", keys).receipt.verdict == "DENY"
        with pytest.raises(Exception, match="asking"):
            client.check_applicant(PARTY, asking="land")
        with pytest.raises(Exception, match="cannot be watched"):
            next(iter(client.watch(Check.applicant("", asking="planning"), all_structures=True)))

    async def asynchronously() -> str:
        async with AsyncClient(gate.target) as client:
            decision = await client.check_applicant(OTHER, asking="planning")
            return str(decision.verdict)

    assert gate.run(asynchronously()) == "ALLOW"
    with pytest.raises(grpc.RpcError) as caught:
        _ask(gate, pb.ApplicantCheck(party_id=PARTY))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "asking" in (caught.value.details() or "")


def test_a_shared_gate_refuses(pg_url: str, tmp_path: Path) -> None:
    registry = GateRegistry(pg_url, tmp_path / "keys")
    try:
        registry.load(
            [*urban_ok("110228-0001-0001"), _suspension("C-1", "110228-0001-0001", suspended=True)]
        )
        with private_redis() as redis:
            LayoutWriter(redis.client(), registry.sql).publish()
            gate = start_gate(
                registry.url,
                registry.keys_dir,
                redis_url=redis.url,
                state_dir=tmp_path / "gate-state",
            )
            try:
                with pytest.raises(grpc.RpcError) as caught:
                    _ask(gate, _applicant())
                assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
                assert "whole registry" in (caught.value.details() or "")
                with Client(gate.target) as client:
                    [refused] = list(client.check_many([Check.applicant(PARTY, asking="planning")]))
                    assert "whole registry" in str(refused)
                    assert not hasattr(refused, "verdict")
                    # The structure checks are answered as ever.
                    flagged = client.check_connection("110228-0001-0001", utility="water")
                    assert flagged.verdict == "DENY"
            finally:
                gate.stop()
    finally:
        registry.close()


# --- a party id however typed ---------------------------------------------------------------------


def test_a_party_id_is_compared_by_one_key_however_typed() -> None:
    assert party_key(" 91110000ma01abcd2x ") == PARTY
    assert party_key("\uff19\uff11110000MA01ABCD2X") == PARTY  # full-width digits
    assert party_key(PARTY) == PARTY
    assert party_key(OTHER) != PARTY


def test_a_case_naming_the_party_in_lower_case_counts_in_the_rule() -> None:
    lower = _case("C-1", CaseStage.STOP_ORDER, suspended=True, party=PARTY.lower())
    decision = decide_applicant([lower], NOW, False, party=PARTY)
    assert decision.verdict is Verdict.DENY, decision


def test_a_party_written_in_lower_case_is_still_suspended(db_url: str, tmp_path: Path) -> None:
    """A unified social credit code is one code however it is typed: the deciding department
    records the party as 91110000ma01abcd2x, planning asks about 91110000MA01ABCD2X; the gate
    answers DENY (compared byte for byte, the suspension would be missed: failing open)."""
    registry = GateRegistry(db_url, tmp_path / "keys")
    line = case_line(
        "C-2026-0001", "110228-0001-0001", "stop_order", "no_planning_permit", "patrol"
    )
    registry.load(
        [
            *urban_ok("110228-0001-0001"),
            {**line, "party": PARTY.lower(), "party_suspended": True},
        ]
    )
    gate = start_gate(registry.url, registry.keys_dir, poll_interval=0.2)
    try:
        ask = pb.ApplicantCheck(
            party_id=PARTY, asking=pb.ASKING_PLANNING, application_id="PA-2026-0001"
        )

        def answer() -> pb.Decision | None:
            with grpc.insecure_channel(gate.target) as channel:
                stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
                decision: pb.Decision = stub.CheckApplicant(ask, timeout=10)
            return decision if decision.registry_version == registry.version() else None

        decision = wait_for(answer, timeout=10)
        assert verdict(decision) == "DENY", reasons(decision)
        assert "PARTY_SUSPENDED" in codes(decision), reasons(decision)
    finally:
        gate.stop()
        registry.close()
