"""The gate's look-up: ``RegistryCache.get`` and ``Gate.decide``, in-process.

What is measured, over the 1,400 demo structures held in a real ``RegistryCache`` under a real
signed head:

* ``RegistryCache.get`` of a held structure whose record was parsed already (every call after a
  structure's first), and of one asked for the first time (its envelope parsed and checked
  against where it is filed: ``read_status_record``);
* ``Gate.decide`` (a permanent water connection, the memo-able question): a **memo hit** (the
  same structure asked again, nothing changed) and a **memo miss** (a gate whose memo is empty:
  the rules run over the record, and the answer is memoised with the moment it could change).

Why it matters: this is all the gate does per check between reading the request and writing the
answer; a hit is the common case under load (the same structures asked about again and again),
a miss the cost of the first question about a structure and of every temporary connection.
"""

from __future__ import annotations

import hashlib
from itertools import cycle
from typing import Any

import pytest

from benchmarks.micro.conftest import Demo, connection_request
from registry.vocabulary import ConnectionKind, Utility
from server.cache import CachedStatus, RegistryCache
from server.gate import Gate
from server.rules import Verdict, decide_connection

pytestmark = pytest.mark.benchmark(max_time=0.3)


def test_cache_get_held(benchmark: Any, demo: Demo) -> None:
    ids = list(demo.envelopes)
    for sid in ids:
        demo.cache.get(sid)  # parsed once, as after the first check of each
    upcoming = cycle(ids)

    def get() -> CachedStatus | None:
        return demo.cache.get(next(upcoming))

    status = benchmark(get)
    assert status is not None and status.record is not None
    assert status.record.structure.id in demo.records


def test_cache_get_first_time(benchmark: Any, demo: Demo) -> None:
    """Each round reads another structure for the first time (one round per structure)."""
    fresh = {
        sid: CachedStatus(envelope, hashlib.sha256(envelope).digest())
        for sid, envelope in demo.envelopes.items()
    }
    cache = RegistryCache(max_staleness=3600)
    cache.install(
        demo.cache.head, fresh, replace=True, doubtful=frozenset(), superseded=None, now=demo.now
    )
    upcoming = iter(fresh)
    read: list[str] = []

    def first_get() -> CachedStatus | None:
        sid = next(upcoming)
        read.append(sid)
        return cache.get(sid)

    benchmark.pedantic(first_get, rounds=len(fresh), iterations=1)
    assert all(fresh[sid].record == demo.records[sid] for sid in read)
    assert not any(cache.is_doubtful(sid) for sid in read)


def test_gate_decide_memo_hit(benchmark: Any, demo: Demo) -> None:
    request = connection_request(demo.cases["deny_three"])
    demo.gate.decide(request, demo.now)  # memoised
    decision, status = benchmark(demo.gate.decide, request, demo.now)
    assert decision.verdict is Verdict.DENY and len(decision.reasons) == 3
    assert status is demo.cache.get(request.structure_id)


def test_gate_decide_memo_miss(benchmark: Any, demo: Demo) -> None:
    """Each round asks a gate with an empty memo about the next demo structure."""
    ids = cycle(demo.envelopes)
    asked: list[tuple[str, Verdict]] = []

    def fresh_gate() -> tuple[tuple[Gate, Any], dict[str, Any]]:
        gate = Gate(
            notifications=demo.gate.notifications,
            cache=demo.cache,
            receipts=demo.gate.receipts,
            decision_log=demo.gate.decision_log,
        )
        return (gate, connection_request(next(ids))), {}

    def decide(gate: Gate, request: Any) -> None:
        decision, _ = gate.decide(request, demo.now)
        asked.append((request.structure_id, decision.verdict))

    for sid in demo.envelopes:
        demo.cache.get(sid)  # parsed: a miss of the memo, not of the cache
    benchmark.pedantic(decide, setup=fresh_gate, rounds=2_000)
    for sid, verdict in asked:
        expected = decide_connection(
            demo.records[sid], utility=Utility.WATER, kind=ConnectionKind.PERMANENT, now=demo.now
        )
        assert verdict is expected.verdict
