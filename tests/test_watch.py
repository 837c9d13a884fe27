"""WatchStatus over a real gate on loopback: the current answers first, then every change to a
watched structure's answer (a new case, a permit lapsing, stale data and fresh again), resuming
without loss or repetition, the limits, and ``Client.watch`` / ``permitgate watch``.

Time is moved by the gate's clock (``Gate.clock``), which the watch reads, rather than waited for.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import aclosing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from gate_helpers import (
    GateRegistry,
    RunningGate,
    case,
    day,
    permit,
    served_registry,
    structure,
    urban_ok,
)
from permitgate_client import (
    AsyncClient,
    ChangeCause,
    Check,
    Client,
    InvalidCheckError,
    StatusChange,
    Verdict,
    WatchPosition,
)
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc
from tcp_proxy import TcpProxy

from permitgate.cli import main
from server.watch import MAX_WATCHED_IDS, TICK, WatchHub

WAIT = 5.0  # the longest a test waits for a message it expects
SOON = 1.5  # an import must reach a watcher within this (the gate polls every 0.2 s)

WATER = Check.connection("", utility="water")


def water_request(
    structure_ids: Iterable[str] = (), *, after: pb.StatusChange | None = None, **fields: Any
) -> pb.WatchRequest:
    request = pb.WatchRequest(structure_ids=list(structure_ids), **fields)
    if "question" not in fields:
        request.question.connection.utility = pb.UTILITY_WATER
        request.question.connection.kind = pb.CONNECTION_KIND_PERMANENT
    if after is not None:
        request.after_version = after.registry_version
        request.after_time.CopyFrom(after.at)
    return request


class Stream:
    """A WatchStatus call read by a thread of its own into a queue, so reads can time out."""

    def __init__(self, target: str, request: pb.WatchRequest) -> None:
        self._channel = grpc.insecure_channel(target)
        stub = gate_pb2_grpc.PermitGateStub(self._channel)  # type: ignore[no-untyped-call]
        self.call = stub.WatchStatus(request)
        self._queue: queue.Queue[pb.StatusChange | grpc.RpcError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self._queue.put(message)
        except grpc.RpcError as exc:
            self._queue.put(exc)

    def next(self, timeout: float = WAIT) -> pb.StatusChange:
        item = self._queue.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def until_marker(
        self, timeout: float = WAIT
    ) -> tuple[list[tuple[str, str, str, list[str]]], pb.StatusChange]:
        """The answers before the next progress marker (id, verdict, cause, reason codes)."""
        out: list[tuple[str, str, str, list[str]]] = []
        while True:
            message = self.next(timeout)
            if message.cause == pb.CHANGE_CAUSE_PROGRESS:
                return out, message
            out.append(summary(message))

    def pending(self) -> bool:
        """Whether messages wait to be read (after a short pause for any in flight)."""
        time.sleep(0.7)  # longer than the watch's tick: both ways of finding a change have run
        return not self._queue.empty()

    def error(self, timeout: float = WAIT) -> grpc.RpcError:
        while True:
            item = self._queue.get(timeout=timeout)
            if isinstance(item, grpc.RpcError):
                return item

    def close(self) -> None:
        self.call.cancel()
        self._channel.close()


def summary(message: pb.StatusChange) -> tuple[str, str, str, list[str]]:
    return (
        message.structure_id,
        pb.Verdict.Name(message.decision.verdict).removeprefix("VERDICT_"),
        pb.ChangeCause.Name(message.cause).removeprefix("CHANGE_CAUSE_"),
        [pb.ReasonCode.Name(r.code).removeprefix("REASON_CODE_") for r in message.decision.reasons],
    )


@contextmanager
def watching(target: str, request: pb.WatchRequest) -> Iterator[Stream]:
    stream = Stream(target, request)
    try:
        yield stream
    finally:
        stream.close()


def set_clock(gate: RunningGate, ahead: timedelta) -> None:
    """Run the gate's clock ``ahead`` of the wall clock (the watch and the checks read it)."""
    gate.app.gate.clock = lambda: datetime.now(UTC) + ahead


def hub_of(gate: RunningGate) -> WatchHub:
    hub = gate.app.watch
    assert hub is not None and hub.changed in gate.app.cache.listeners
    return hub


def held(gate: RunningGate, version: int) -> int:
    """Wait until the gate holds registry ``version`` (it polls every 0.2 s); return it."""
    deadline = time.monotonic() + WAIT
    while gate.app.cache.size < version:
        assert time.monotonic() < deadline, f"the gate never loaded version {version}"
        time.sleep(0.02)
    return version


def in_a_minute() -> str:
    """A permit's expiry a minute from now: the gate's clock is moved past it (61 s ahead,
    well within the staleness bound), not waited for."""
    return day(60 / 86400)


def lapsing(sid: str, expires: str) -> list[dict[str, Any]]:
    """An urban structure whose construction planning permit expires at ``expires``."""
    return [
        structure(sid),
        permit(f"P-{sid}-lup", sid, "land_use_planning"),
        permit(f"P-{sid}-lc", sid, "land_certificate"),
        permit(f"P-{sid}-cp", sid, "construction_planning", expires=expires),
    ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GateRegistry, RunningGate]]:
    lines = [
        *urban_ok("S-1"),
        *urban_ok("S-2"),
        *urban_ok("S-3"),
        *lapsing("S-4", in_a_minute()),
        structure("S-7"),
        permit("P-S-7-lup", "S-7", "land_use_planning"),
        permit("P-S-7-lc", "S-7", "land_certificate"),
        permit("P-S-7-tcp", "S-7", "temporary_construction_planning", expires=in_a_minute()),
    ]
    with served_registry(tmp_path, lines) as (registry, gate):
        yield registry, gate


ALLOW, DENY, REVIEW = "ALLOW", "DENY", "REVIEW"


# --- the stream ----------------------------------------------------------------------------------


def test_current_answers_first_then_a_new_case_within_a_second(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, gate = served
    with watching(gate.target, water_request(["S-1", "S-2", "S-9"])) as stream:
        answers, marker = stream.until_marker()
        assert answers == [
            ("S-1", ALLOW, "CURRENT", []),
            ("S-2", ALLOW, "CURRENT", []),
            ("S-9", DENY, "CURRENT", ["NOT_IN_REGISTRY"]),
        ]
        assert marker.registry_version == registry.version()
        version = registry.load([case("C-1", "S-1", "filed")])
        answers, marker = stream.until_marker(timeout=SOON)
        assert answers == [("S-1", DENY, "RECORD_CHANGED", ["STRUCTURE_FLAGGED"])]
        assert marker.registry_version == version


def test_a_change_that_leaves_the_answer_alone_is_not_sent(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, gate = served
    with watching(gate.target, water_request(["S-1", "S-2"])) as stream:
        stream.until_marker()
        works = registry.load([permit("P-S-2-cw", "S-2", "construction_works")])
        answers, marker = stream.until_marker()
        assert (answers, marker.registry_version) == ([], works)
        flagged = registry.load([case("C-2", "S-2", "reported")])
        answers, marker = stream.until_marker()
        assert answers == [("S-2", REVIEW, "RECORD_CHANGED", ["CASE_PENDING"])]
        assert marker.registry_version == flagged


def test_the_embedded_gate_tells_its_watches_exactly_the_structures_a_head_changed(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    """A head that changes S-1 and adds S-5: the watches are told those two ids (not "any",
    which would decide every watched structure again at each head), and a district watch hears
    the new structure."""
    registry, gate = served
    told: list[tuple[int, frozenset[str] | None]] = []
    gate.app.cache.listeners.append(
        lambda version, ids: told.append((version, None if ids is None else frozenset(ids)))
    )
    with watching(gate.target, water_request(district="110228")) as stream:
        stream.until_marker()
        version = registry.load([case("C-1", "S-1", "filed"), structure("S-5")])
        answers, marker = stream.until_marker(timeout=SOON)
        assert ("S-1", DENY, "RECORD_CHANGED", ["STRUCTURE_FLAGGED"]) in answers
        assert any(sid == "S-5" for sid, *_ in answers), answers
        assert marker.registry_version == version
    assert (version, frozenset({"S-1", "S-5"})) in told, told


def test_an_answer_decided_stale_between_two_looks_is_decided_again_when_fresh(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    """S-1 told changed while the data is fresh, the cosignature aging out before the reader
    decides it (REVIEW, REGISTRY_STALE), then a fresh head that changes only S-2 before the
    hub looks at the clock again: S-1 is decided again and its ALLOW sent, though the hub never
    saw the data stale."""
    registry, gate = served
    hub = hub_of(gate)
    hub.tick = 3600.0  # the clock's look is left to the installs (after the current tick ends)
    time.sleep(TICK + 0.2)
    ahead = [timedelta(0)]
    gate.app.gate.clock = lambda: datetime.now(UTC) + ahead[0]
    with watching(gate.target, water_request(["S-1", "S-2"])) as stream:
        stream.until_marker()

        async def told_then_aged() -> None:  # one step of the loop: the reader runs after it
            hub.changed(gate.app.cache.size, frozenset({"S-1"}))
            ahead[0] = timedelta(hours=1)

        gate.run(told_then_aged())
        answers, _ = stream.until_marker()
        assert answers == [("S-1", REVIEW, "RECORD_CHANGED", ["REGISTRY_STALE"])]
        ahead[0] = timedelta(0)
        registry.load([permit("P-S-2-cw", "S-2", "construction_works")])
        answers, _ = stream.until_marker(timeout=SOON)
        assert answers == [("S-1", ALLOW, "REGISTRY_FRESH", [])]


def test_a_head_changing_more_than_a_wide_watch_can_queue_is_scanned_not_overflowed(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    """A head that changes more structures than half a district watch's queue holds: they are
    decided in chunks, as a scan, so the watch hears each change instead of being ended for
    falling behind."""
    registry, gate = served
    hub_of(gate).queue_limit = 2
    with watching(gate.target, water_request(district="110228")) as stream:
        stream.until_marker()
        registry.load([case(f"C-{sid}", sid, "filed") for sid in ("S-1", "S-2", "S-3")])
        answers, _ = stream.until_marker(timeout=SOON)
        assert sorted(answers) == [
            (sid, DENY, "RECORD_CHANGED", ["STRUCTURE_FLAGGED"]) for sid in ("S-1", "S-2", "S-3")
        ]


def test_changed_ids_told_by_a_shared_cache_are_decided_again_and_sent_only_if_changed(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    """A cache that knows which records changed (the shared one) names them to the listeners;
    the watch decides those again, and sends only an answer that differs."""
    _, gate = served
    hub = hub_of(gate)

    async def tell(structure_ids: list[str]) -> None:
        hub.changed(gate.app.cache.size + 1, structure_ids)

    with watching(gate.target, water_request(["S-1", "S-4"])) as stream:
        stream.until_marker()
        gate.run(tell(["S-1", "S-2"]))
        answers, marker = stream.until_marker()
        assert (answers, marker.registry_version) == ([], gate.app.cache.size + 1)
        set_clock(gate, timedelta(seconds=61))  # S-4's permit lapses, and S-4 is told of too:
        gate.run(tell(["S-4"]))  # whichever finds the new answer first, it is sent once
        answers = []
        while len(answers) < 1 or stream.pending():
            batch, _ = stream.until_marker()
            answers += batch
        assert [a[:2] for a in answers] == [("S-4", DENY)]


def test_a_permit_lapsing_is_reported_when_its_time_comes(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    _, gate = served
    with watching(gate.target, water_request(["S-4", "S-1"])) as stream:
        answers, _ = stream.until_marker()
        assert answers == [("S-4", ALLOW, "CURRENT", []), ("S-1", ALLOW, "CURRENT", [])]
        set_clock(gate, timedelta(seconds=61))  # past S-4's permit's expiry
        answers, marker = stream.until_marker()
        assert answers == [("S-4", DENY, "TIME_PASSED", ["PERMIT_EXPIRED"])]
        at = marker.at.ToDatetime(tzinfo=UTC)
        assert at > datetime.now(UTC) + timedelta(seconds=60)  # the marker is on the gate's clock


def test_a_temporary_grant_ending_is_reported(served: tuple[GateRegistry, RunningGate]) -> None:
    _, gate = served  # S-7 holds a temporary planning permit only, lapsing in a minute
    with watching(gate.target, water_request(["S-7"])) as stream:
        answers, _ = stream.until_marker()
        assert answers == [("S-7", "ALLOW_TEMPORARY", "CURRENT", ["TEMPORARY_ONLY"])]
        set_clock(gate, timedelta(seconds=61))
        answers, _ = stream.until_marker()
        assert [a[:3] for a in answers] == [("S-7", DENY, "TIME_PASSED")]


def test_stale_data_is_reported_as_review_and_fresh_data_again(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    _, gate = served
    with watching(gate.target, water_request(["S-1", "S-2"])) as stream:
        stream.until_marker()
        set_clock(gate, timedelta(seconds=gate.app.cache.max_staleness + 5))
        answers, _ = stream.until_marker()
        assert answers == [
            ("S-1", REVIEW, "REGISTRY_STALE", ["REGISTRY_STALE"]),
            ("S-2", REVIEW, "REGISTRY_STALE", ["REGISTRY_STALE"]),
        ]
        set_clock(gate, timedelta(0))
        answers, _ = stream.until_marker()
        assert answers == [
            ("S-1", ALLOW, "REGISTRY_FRESH", []),
            ("S-2", ALLOW, "REGISTRY_FRESH", []),
        ]


def test_a_notifying_offices_watch_records_no_notice(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, gate = served
    request = pb.WatchRequest(structure_ids=["S-1"])
    request.question.premises.office = pb.OFFICE_TAX
    request.question.premises.declared_use = "retail"  # S-1's permits say residential
    with watching(gate.target, request) as stream:
        answer = stream.next()
        assert summary(answer) == ("S-1", "NOTIFY", "CURRENT", ["USE_MISMATCH", "USE_MISMATCH"])
        assert answer.decision.notification_id == ""
    assert registry.sql("SELECT count(*) FROM notification") == [(0,)]


def test_a_record_that_can_no_longer_be_verified_is_reported_without_a_new_head(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    """The same head installed again, but S-1's record no longer verifiable (as when the
    database was found altered under the gate): the watch hears REVIEW, then ALLOW again."""
    _, gate = served
    app = gate.app
    gate.run(app.follower.close())  # the test installs, as the follower would

    async def install(doubtful: frozenset[str]) -> None:
        cache = app.cache
        records = app.verifier.records
        cache.install(cache.head, records, replace=True, doubtful=doubtful, superseded=None)

    with watching(gate.target, water_request(["S-1", "S-2"])) as stream:
        stream.until_marker()
        gate.run(install(frozenset({"S-1"})))
        answers, _ = stream.until_marker()
        assert answers == [("S-1", REVIEW, "RECORD_CHANGED", ["RECORD_UNVERIFIED"])]
        gate.run(install(frozenset()))
        answers, _ = stream.until_marker()
        assert answers == [("S-1", ALLOW, "RECORD_CHANGED", [])]


def test_a_district_watch_sees_only_its_district(tmp_path: Path) -> None:
    lines = [*urban_ok("S-1"), structure("S-5", district="110229")]
    with (
        served_registry(tmp_path, lines) as (registry, gate),
        watching(gate.target, water_request(district="110229")) as stream,
    ):
        answers, _ = stream.until_marker()
        assert answers == [("S-5", DENY, "CURRENT", ["MISSING_PERMIT"] * 3)]
        registry.load([case("C-1", "S-1", "filed"), structure("S-6", district="110229")])
        answers, _ = stream.until_marker()
        assert [a[:3] for a in answers] == [("S-6", DENY, "RECORD_CHANGED")]


# --- resuming ------------------------------------------------------------------------------------


def test_resuming_from_a_marker_sends_what_changed_since_and_nothing_else(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, gate = served
    watched = ["S-1", "S-2", "S-3", "S-4"]
    with watching(gate.target, water_request(watched)) as stream:
        _, marker = stream.until_marker()
    held(gate, registry.load([case("C-1", "S-1", "filed")]))
    set_clock(gate, timedelta(seconds=61))  # S-4's permit lapsed meanwhile
    with watching(gate.target, water_request(watched, after=marker)) as stream:
        answers, resumed = stream.until_marker()
        assert answers == [
            ("S-1", DENY, "CURRENT", ["STRUCTURE_FLAGGED"]),
            ("S-4", DENY, "CURRENT", ["PERMIT_EXPIRED"]),
        ]
        assert resumed.registry_version == registry.version()
    with watching(gate.target, water_request(watched, after=resumed)) as stream:
        answers, _ = stream.until_marker()
        assert answers == []  # nothing changed since: nothing is repeated


def test_the_client_resumes_a_dropped_stream_without_loss_or_repeat(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, gate = served
    host, port = gate.target.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy, Client(f"127.0.0.1:{proxy.port}") as client:
        changes = pump(client.watch(WATER, structure_ids=["S-1", "S-2", "S-3"]))
        assert [(c.structure_id, c.cause) for c in take(changes, 3)] == [
            ("S-1", ChangeCause.CURRENT),
            ("S-2", ChangeCause.CURRENT),
            ("S-3", ChangeCause.CURRENT),
        ]
        proxy.cut()
        registry.load([case("C-1", "S-1", "filed")])  # lost unless resumed
        registry.load([permit("P-S-2-cw", "S-2", "construction_works")])  # sent again on resume
        proxy.heal()
        (flagged,) = take(changes, 1)
        assert (flagged.structure_id, flagged.decision.verdict) == ("S-1", Verdict.DENY)
        registry.load([case("C-3", "S-3", "filed")])
        (after,) = take(changes, 1)  # S-2's unchanged answer was not yielded again
        assert (after.structure_id, after.cause) == ("S-3", ChangeCause.RECORD_CHANGED)
        assert after.position is not None  # the resumed stream's marker, at or after S-1's
        assert after.position.version >= flagged.registry_version


def test_a_structure_added_to_an_empty_registry_is_heard_of(tmp_path: Path) -> None:
    with (
        served_registry(tmp_path) as (registry, gate),
        Client(gate.target) as client,
    ):
        changes = pump(client.watch(WATER, structure_ids=["S-1"]))
        (first,) = take(changes, 1)
        assert (first.registry_version, first.decision.verdict) == (0, Verdict.DENY)
        registry.load(urban_ok("S-1"))
        (added,) = take(changes, 1)
        assert (added.structure_id, added.decision.verdict) == ("S-1", Verdict.ALLOW)


def test_a_later_watch_starts_from_a_position(served: tuple[GateRegistry, RunningGate]) -> None:
    registry, gate = served
    with Client(gate.target) as client:
        first = client.watch(WATER, structure_ids=["S-1", "S-2"])
        next(first)
        second = next(first)
        first.close()
        assert second.position is None  # no marker before the first answers
    version = held(gate, registry.load([case("C-2", "S-2", "filed")]))
    position = WatchPosition(version - 1, datetime.now(UTC))
    with Client(gate.target) as client:
        changes = pump(client.watch(WATER, structure_ids=["S-1", "S-2"], after=position))
        (change,) = take(changes, 1)
        assert (change.structure_id, change.decision.verdict) == ("S-2", Verdict.DENY)


def test_the_async_client_watches(served: tuple[GateRegistry, RunningGate]) -> None:
    _, gate = served

    async def first_two() -> list[StatusChange]:
        async with AsyncClient(gate.target) as client:
            out = []
            async with aclosing(client.watch(WATER, structure_ids=["S-1", "S-9"])) as changes:
                async for change in changes:
                    out.append(change)
                    if len(out) == 2:
                        break
            return out

    changes = asyncio.run(asyncio.wait_for(first_two(), WAIT))
    assert [(c.structure_id, c.decision.verdict) for c in changes] == [
        ("S-1", Verdict.ALLOW),
        ("S-9", Verdict.DENY),
    ]


# --- limits and bad requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "structure_ids: set exactly one"),
        ({"structure_ids": ["S-1"], "all_structures": True}, "structure_ids: set exactly one"),
        ({"structure_ids": ["S-1", "bad id"]}, "structure_ids[1]: not a valid id"),
        ({"structure_ids": ["S-1", "S-1"]}, "structure_ids[1]: S-1 is named twice"),
        (
            {"structure_ids": [f"S-{n}" for n in range(MAX_WATCHED_IDS + 1)]},
            f"structure_ids: at most {MAX_WATCHED_IDS}",
        ),
        ({"structure_ids": ["S-1"], "question": pb.Check()}, "question: required"),
        (
            {"structure_ids": ["S-1"], "question": pb.Check(registration=pb.RegistrationCheck())},
            "question.registration.kind: must be set",
        ),
        (
            {
                "structure_ids": ["S-1"],
                "question": pb.Check(
                    connection=pb.ConnectionCheck(structure_id="S-1", utility=pb.UTILITY_WATER)
                ),
            },
            "question.connection.structure_id: leave empty",
        ),
        (
            {
                "structure_ids": ["S-1"],
                "question": pb.Check(
                    connection=pb.ConnectionCheck(
                        utility=pb.UTILITY_WATER, kind=pb.CONNECTION_KIND_TEMPORARY
                    )
                ),
            },
            "question.connection.requested_until: a temporary connection watch names the end",
        ),
        ({"all_structures": True, "after_time": {"seconds": 1}}, "after_time: only with"),
    ],
)
def test_a_bad_watch_is_invalid_argument_naming_the_field(
    served: tuple[GateRegistry, RunningGate], fields: dict[str, Any], field: str
) -> None:
    _, gate = served
    request = water_request(**fields)
    with watching(gate.target, request) as stream:
        error = stream.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field), error.details()


def test_a_reader_that_falls_behind_is_ended_with_a_status_to_resume_from(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    _, gate = served
    hub_of(gate).queue_limit = 1
    with watching(gate.target, water_request(["S-1", "S-4", "S-7"])) as stream:
        stream.until_marker()
        set_clock(gate, timedelta(seconds=61))  # two answers to decide again: one too many
        error = stream.error()
    assert error.code() == grpc.StatusCode.ABORTED
    assert "resume from the last progress marker" in error.details()


def test_too_many_watches_are_refused(served: tuple[GateRegistry, RunningGate]) -> None:
    _, gate = served
    hub_of(gate).max_watches = 1
    with watching(gate.target, water_request(["S-1"])) as first:
        first.until_marker()
        with watching(gate.target, water_request(["S-2"])) as second:
            error = second.error()
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 1 watches" in error.details()


def test_a_gate_stopping_ends_its_watches_to_be_resumed(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    _, gate = served
    with watching(gate.target, water_request(["S-1"])) as stream:
        stream.until_marker()
        stopping = gate.loop.submit(gate.app.stop(grace=30.0))
        gate.stopped = True
        error = stream.error()
        stopping.result(timeout=WAIT)  # the stop did not wait out its grace for the watch
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "stopping: resume" in error.details()


def test_the_client_refuses_a_question_naming_a_structure() -> None:
    with Client("127.0.0.1:9") as client, pytest.raises(InvalidCheckError, match="structure_id"):
        next(client.watch(Check.connection("S-1", utility="water"), structure_ids=["S-1"]))


# --- the command ---------------------------------------------------------------------------------


def test_the_command_prints_one_line_per_change(served: tuple[GateRegistry, RunningGate]) -> None:
    _, gate = served
    runner = CliRunner()
    args = ["watch", "connection", "--utility", "water", "S-1", "S-9", "--target", gate.target]
    result = runner.invoke(main, [*args, "--count", "2", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(x["structure_id"], x["verdict"], x["cause"]) for x in lines] == [
        ("S-1", "ALLOW", "current"),
        ("S-9", "DENY", "current"),
    ]
    result = runner.invoke(main, [*args, "--count", "2"])
    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert "  S-1  ALLOW  current  v" in first
    assert second.endswith("NOT_IN_REGISTRY") and "  S-9  DENY  current  v" in second


def test_the_command_names_the_field_of_a_bad_watch(
    served: tuple[GateRegistry, RunningGate],
) -> None:
    _, gate = served
    result = CliRunner().invoke(
        main, ["watch", "registration", "--kind", "initial", "bad id", "--target", gate.target]
    )
    assert result.exit_code == 2
    assert "structure_ids[0]: not a valid id" in result.output


# --- helpers -------------------------------------------------------------------------------------


def pump(changes: Iterator[StatusChange]) -> queue.Queue[StatusChange | BaseException]:
    """Read a blocking watch in a thread of its own, so that the test can wait with a limit."""
    out: queue.Queue[StatusChange | BaseException] = queue.Queue()

    def run() -> None:
        try:
            for change in changes:
                out.put(change)
        except BaseException as exc:  # handed to the test
            out.put(exc)

    threading.Thread(target=run, daemon=True).start()
    return out


def take(changes: queue.Queue[StatusChange | BaseException], n: int) -> list[StatusChange]:
    out = []
    for _ in range(n):
        item = changes.get(timeout=WAIT)
        if isinstance(item, BaseException):
            raise item
        out.append(item)
    return out
