"""Protobuf encode and decode of the gate's messages (``permitgate.v1``), in-process.

What is measured: ``SerializeToString`` and ``FromString`` of a ``ConnectionCheck`` (what a
utility sends), of a ``Decision`` as the gate answers it (a DENY with three reasons, decision
id, time and registry version; no receipt), and of a ``CheckBatch`` and a ``DecisionBatch`` of
1,000 (``BatchCheck``'s messages: checks over 1,000 demo structures, and their answers).

Why it matters: the wire is most of a cached check's cost. The gate decodes every request and
encodes every answer; ``BatchCheck`` builds a thousand ``Decision`` objects per message, and
issue 8 found that building protobuf objects takes most of the batch path's time.
"""

from __future__ import annotations

from datetime import datetime
from itertools import cycle, islice
from typing import Any

import pytest
from google.protobuf.message import Message
from permitgate_client.v1 import gate_pb2 as pb

from benchmarks.micro.conftest import Demo
from registry.vocabulary import ConnectionKind, Utility
from server.checks import PERMIT_KINDS, REASON_CODES, VERDICTS
from server.rules import Decision, decide_connection

pytestmark = pytest.mark.benchmark(max_time=0.3)

BATCH = 1_000


def _check(sid: str) -> pb.ConnectionCheck:
    return pb.ConnectionCheck(
        structure_id=sid,
        utility=pb.UTILITY_WATER,
        kind=pb.CONNECTION_KIND_PERMANENT,
        application_id="APP-2026-000417",
    )


def _answer(decision: Decision, serial: int, now: datetime, out: pb.Decision) -> pb.Decision:
    """The gate's answer, field by field."""
    out.verdict = VERDICTS[decision.verdict]
    for reason in decision.reasons:
        r = out.reasons.add(code=REASON_CODES[reason.code], article=reason.article)
        r.message = reason.message
        if reason.permit_kind is not None:
            r.permit_kind = PERMIT_KINDS[reason.permit_kind]
        if reason.case_id is not None:
            r.case_id = reason.case_id
    if decision.valid_until is not None:
        out.valid_until.FromDatetime(decision.valid_until)
    out.registry_version = 5_000
    out.decision_id = f"D-5f0c2a9e41b7-{serial}"
    out.decided_at.FromDatetime(now)
    return out


def _decide(demo: Demo, sid: str) -> Decision:
    return decide_connection(
        demo.records[sid], utility=Utility.WATER, kind=ConnectionKind.PERMANENT, now=demo.now
    )


def _messages(demo: Demo) -> dict[str, Message]:
    ids = list(islice(cycle(demo.envelopes), BATCH))
    checks = pb.CheckBatch()
    answers = pb.DecisionBatch()
    for n, sid in enumerate(ids):
        checks.checks.add(correlation_id=str(n), connection=_check(sid))
        out = answers.decisions.add(correlation_id=str(n))
        _answer(_decide(demo, sid), n, demo.now, out)
    three = demo.cases["deny_three"]
    return {
        "ConnectionCheck": _check(three),
        "Decision": _answer(_decide(demo, three), 1, demo.now, pb.Decision()),
        "CheckBatch_1000": checks,
        "DecisionBatch_1000": answers,
    }


@pytest.fixture(scope="module")
def messages(demo: Demo) -> dict[str, Message]:
    return _messages(demo)


NAMES = ("ConnectionCheck", "Decision", "CheckBatch_1000", "DecisionBatch_1000")


@pytest.mark.parametrize("name", NAMES)
def test_encode(benchmark: Any, messages: dict[str, Message], name: str) -> None:
    message = messages[name]
    data = benchmark(message.SerializeToString)
    benchmark.extra_info["bytes"] = len(data)
    assert type(message).FromString(data) == message


@pytest.mark.parametrize("name", NAMES)
def test_decode(benchmark: Any, messages: dict[str, Message], name: str) -> None:
    message = messages[name]
    data = message.SerializeToString()
    decoded = benchmark(type(message).FromString, data)
    benchmark.extra_info["bytes"] = len(data)
    assert decoded == message
