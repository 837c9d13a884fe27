"""The answers' bytes, put together by ``server.wire``, against messages built through protobuf.

Every shape of decision (each verdict, reasons with and without permit kind and case, with and
without valid_until), ids, registry versions up to 2**64 - 1, times before and after 1970 to
the microsecond, empty optional fields: parsed back with the generated classes, the bytes must
give the message that the protobuf API builds from the same answer; and they are the very bytes
``SerializeToString`` writes for it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from permitgate_client.v1 import gate_pb2 as pb

from registry.vocabulary import PermitKind
from server.checks import PERMIT_KINDS, REASON_CODES, VERDICTS
from server.gate import Answer
from server.rules import Decision, Reason, ReasonCode, Verdict
from server.wire import (
    answer_bytes,
    batch_field,
    decided_at_field,
    decision_fixed,
    error_decision,
    varint,
)

_TIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
).map(lambda naive: naive.replace(tzinfo=UTC))
_TEXT = st.text(max_size=200)  # any code point, beyond 127 bytes too

_REASONS = st.builds(
    Reason,
    code=st.sampled_from(list(ReasonCode)),
    article=st.integers(min_value=0, max_value=2**31 - 1),
    message=_TEXT,
    permit_kind=st.none() | st.sampled_from(list(PermitKind)),
    case_id=st.none() | _TEXT,
)
_DECISIONS = st.builds(
    Decision,
    verdict=st.sampled_from(list(Verdict)),
    reasons=st.lists(_REASONS, max_size=4).map(tuple),
    valid_until=st.none() | _TIMES,
)
_ANSWERS = st.builds(
    Answer,
    decision=_DECISIONS,
    decision_id=_TEXT,
    decided_at=_TIMES,
    registry_version=st.integers(min_value=0, max_value=2**64 - 1),
    notification_id=st.none() | _TEXT,
    receipt=st.none() | st.binary(max_size=300),
)


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _reference(answer: Answer, correlation_id: str = "") -> pb.Decision:
    """The answer as a message built field by field through the protobuf API."""
    decision = answer.decision
    out = pb.Decision(
        verdict=VERDICTS[decision.verdict],
        registry_version=answer.registry_version,
        decision_id=answer.decision_id,
        correlation_id=correlation_id,
        decided_at=_stamp(answer.decided_at),
    )
    for reason in decision.reasons:
        out.reasons.add(
            code=REASON_CODES[reason.code],
            article=reason.article,
            message=reason.message,
            permit_kind=None if reason.permit_kind is None else PERMIT_KINDS[reason.permit_kind],
            case_id=reason.case_id,
        )
    if decision.valid_until is not None:
        out.valid_until.CopyFrom(_stamp(decision.valid_until))
    if answer.notification_id is not None:
        out.notification_id = answer.notification_id
    if answer.receipt is not None:
        out.receipt = answer.receipt
    return out


@given(_ANSWERS, _TEXT)
def test_an_answer_is_the_message_protobuf_builds(answer: Answer, correlation_id: str) -> None:
    reference = _reference(answer, correlation_id)
    data = answer_bytes(answer, correlation_id)
    assert pb.Decision.FromString(data) == reference
    assert data == reference.SerializeToString()


@given(st.lists(st.tuples(_ANSWERS, _TEXT) | st.tuples(_TEXT, _TEXT), max_size=5))
def test_a_batch_is_its_decisions_concatenated(
    items: list[tuple[Answer, str] | tuple[str, str]],
) -> None:
    reference = pb.DecisionBatch()
    parts = []
    for first, second in items:
        if isinstance(first, Answer):
            reference.decisions.append(_reference(first, second))
            parts.append(batch_field(answer_bytes(first, second)))
        else:
            reference.decisions.add(correlation_id=first, error=second)
            parts.append(batch_field(error_decision(first, second)))
    data = b"".join(parts)
    assert pb.DecisionBatch.FromString(data) == reference
    assert data == reference.SerializeToString()


def test_a_batch_shares_one_time_and_version_yet_each_answer_is_its_own() -> None:
    """The encoder keeps the last time and version it wrote; a change must show."""
    decision = Decision(Verdict.ALLOW, ())
    first = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    for at, version in ((first, 5), (first, 5), (later, 5), (later, 6), (first, 0)):
        answer = Answer(decision, "D-1", at, version, None, None)
        parsed = pb.Decision.FromString(answer_bytes(answer))
        assert parsed.decided_at.ToDatetime(tzinfo=UTC) == at
        assert parsed.registry_version == version


@given(_TIMES)
def test_times_to_the_microsecond(at: datetime) -> None:
    parsed = pb.Decision.FromString(decided_at_field(at))
    assert parsed.decided_at == _stamp(at)
    assert parsed.HasField("decided_at")  # even at the epoch itself: the field is set


def test_times_at_the_edges() -> None:
    for at in (
        datetime(1970, 1, 1, tzinfo=UTC),  # seconds and nanos both 0
        datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # seconds -1
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ):
        assert pb.Decision.FromString(decided_at_field(at)).decided_at == _stamp(at)


@given(st.integers(min_value=-(2**63), max_value=-1))
def test_negative_varints_are_int64s(n: int) -> None:
    assert b"\x08" + varint(n) == Timestamp(seconds=n).SerializeToString()


@given(st.integers(min_value=1, max_value=2**64 - 1))
def test_unsigned_varints_are_protobufs(n: int) -> None:
    assert b"\x28" + varint(n) == pb.Decision(registry_version=n).SerializeToString()


def test_the_fixed_part_follows_the_decision_not_its_identity() -> None:
    """Equal decisions that are different objects, and a decision's id reused after it is
    gone, never mix up the bytes kept per decision."""
    for verdict in Verdict:
        one = Decision(verdict, (Reason(ReasonCode.NOT_IN_REGISTRY, 23, "not held"),))
        data = decision_fixed(one)
        assert pb.Decision.FromString(data).verdict == VERDICTS[verdict]
        del one  # its id may now be reused by the next decision made
