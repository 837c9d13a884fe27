"""The decision rules (``server/rules.py``) over realistic status records, in-process.

What is measured: one call of ``decide_connection`` (Art. 23, a permanent water connection) on
the demo registry's records, for each kind of answer the gate gives most: ALLOW, DENY with one
reason, DENY with three (flagged, a permit missing, one revoked), the ALLOW's record on stale
data (REVIEW), and a structure the registry does not hold; then ``decide_registration`` and
``decide_premises`` on the ALLOW record, and one pass over all 1,400 demo records (14 scenarios).

Why it matters: the rules run on every check the memo cannot answer (a first question about a
structure, a temporary connection, every check after a record changes), so their cost is the
floor of a memo miss and of a batch over many structures.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.micro.conftest import Demo
from registry.vocabulary import ConnectionKind, Office, RegistrationKind, Utility
from server.rules import (
    ReasonCode,
    Verdict,
    decide_connection,
    decide_premises,
    decide_registration,
)

pytestmark = pytest.mark.benchmark(max_time=0.3)

CONNECTION: dict[str, tuple[str | None, bool, Verdict, list[ReasonCode]]] = {
    # case: (structure, stale, verdict, reasons)
    "allow": ("allow", False, Verdict.ALLOW, []),
    "deny_one_reason": ("deny_one", False, Verdict.DENY, [ReasonCode.PERMIT_SUSPENDED]),
    "deny_three_reasons": (
        "deny_three",
        False,
        Verdict.DENY,
        [ReasonCode.STRUCTURE_FLAGGED, ReasonCode.MISSING_PERMIT, ReasonCode.PERMIT_REVOKED],
    ),
    "stale": ("allow", True, Verdict.REVIEW, [ReasonCode.REGISTRY_STALE]),
    "not_in_registry": (None, False, Verdict.DENY, [ReasonCode.NOT_IN_REGISTRY]),
}


@pytest.mark.parametrize("case", sorted(CONNECTION))
def test_decide_connection(benchmark: Any, demo: Demo, case: str) -> None:
    which, stale, verdict, reasons = CONNECTION[case]
    record = None if which is None else demo.records[demo.cases[which]]
    now = demo.now

    def decide() -> Any:
        return decide_connection(
            record, utility=Utility.WATER, kind=ConnectionKind.PERMANENT, now=now, stale=stale
        )

    decision = benchmark(decide)
    assert decision.verdict is verdict
    assert sorted(r.code for r in decision.reasons) == sorted(reasons)


def test_decide_registration(benchmark: Any, demo: Demo) -> None:
    record = demo.records[demo.cases["allow"]]
    decision = benchmark(decide_registration, record, kind=RegistrationKind.TRANSFER, now=demo.now)
    assert decision.verdict is Verdict.ALLOW and not decision.reasons


def test_decide_premises(benchmark: Any, demo: Demo) -> None:
    record = demo.records[demo.cases["allow"]]
    decision = benchmark(
        decide_premises, record, office=Office.FIRE, declared_use="residential", now=demo.now
    )
    assert decision.verdict is Verdict.ALLOW and not decision.reasons


def test_decide_connection_every_demo_record(benchmark: Any, demo: Demo) -> None:
    """One pass over the 1,400 records: the mean per decision is this figure / 1,400."""
    records = list(demo.records.values())
    now = demo.now

    def every() -> list[Verdict]:
        return [
            decide_connection(
                r, utility=Utility.POWER, kind=ConnectionKind.PERMANENT, now=now
            ).verdict
            for r in records
        ]

    verdicts = benchmark(every)
    benchmark.extra_info["decisions_per_call"] = len(records)
    # every scenario answers as the demo's catalogue says: some of each of these verdicts
    assert {Verdict.ALLOW, Verdict.ALLOW_TEMPORARY, Verdict.REVIEW, Verdict.DENY} <= set(verdicts)
    assert len(verdicts) == len(records)
