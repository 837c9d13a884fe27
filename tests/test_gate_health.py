"""A gate listens at once and says by its health whether its data may be relied on.

* It answers while its first load is still running (here: held up by a table lock), never
  ALLOW, always with REGISTRY_STALE, and health (both "" and the service) is NOT_SERVING until
  that load is verified, SERVING after.
* When the registry becomes unreachable, health turns NOT_SERVING once the held head's
  cosignature is older than ``max_staleness``, and SERVING again when the registry is back.
* A gate that cannot load at all (a mistyped database name) stays NOT_SERVING and says why in
  its log, once, not at every poll.
* ``max_concurrent_rpcs``: calls beyond it get RESOURCE_EXHAUSTED (``OverloadedError``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from click.testing import CliRunner
from conftest import PG_URL
from gate_helpers import (
    SERVICE,
    GateRegistry,
    Heartbeat,
    Wire,
    batch_check,
    codes,
    connection,
    start_gate,
    urban_ok,
    verdict,
    wait_for,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from permitgate_client import Client, OverloadedError
from permitgate_client.v1 import gate_pb2 as pb

from permitgate.cli import main
from registry.signing import ensure_signer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(target: str) -> set[int]:
    """The status the gate reports for "" and for its service (one value when they agree)."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {
            stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            for name in ("", SERVICE)
        }


def becomes(target: str, status: int, timeout: float) -> bool:
    return wait_for(lambda: True if health(target) == {status} else None, timeout)


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_gate_serves_during_its_first_load_and_is_serving_after(
    pg_url: str, tmp_path: Path
) -> None:
    """The first load blocks on a lock held on the status records: the gate already answers
    (REVIEW, REGISTRY_STALE) and reports NOT_SERVING; once the load is verified, SERVING."""
    registry = GateRegistry(pg_url, tmp_path / "keys")
    registry.load(urban_ok("S-1"))
    lock = psycopg.connect(pg_url)
    gate = None
    try:
        lock.execute("LOCK TABLE status_record IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        gate = start_gate(pg_url, tmp_path / "keys", poll_interval=0.1, wait_first_poll=False)
        assert time.monotonic() - started < 10
        assert not gate.app.follower.attempted.is_set()  # the first load is under way
        assert health(gate.target) == {NOT_SERVING}
        with Wire(gate.target) as wire:
            # Nothing loaded: S-1 (held, not yet read) and S-unknown alike answer REVIEW with
            # REGISTRY_STALE alone, never ALLOW, and never DENY + NOT_IN_REGISTRY.
            for structure_id in ("S-1", "S-unknown"):
                during = wire.ask(connection(structure_id))
                assert (verdict(during), codes(during)) == ("REVIEW", {"REGISTRY_STALE"})
            lock.rollback()  # the load goes on
            becomes(gate.target, SERVING, timeout=10)
            assert verdict(wire.ask(connection("S-1"))) == "ALLOW"
    finally:
        lock.close()
        if gate is not None:
            gate.stop()
        registry.close()


@pytest.fixture
def pg_connections_back(pg_url: str) -> Iterator[str]:
    """The test database, allowed to take connections again whatever the test did."""
    yield pg_url
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{_database_name(pg_url)}" ALLOW_CONNECTIONS true')


def test_health_follows_freshness_when_the_registry_is_unreachable(
    pg_connections_back: str, tmp_path: Path
) -> None:
    """The registry cosigns its head every 0.2 s. Cut off from the database, the gate keeps the
    head it holds and turns NOT_SERVING once that head's cosignature is older than
    max_staleness (not before); with the database back, SERVING again."""
    url = pg_connections_back
    name = _database_name(url)
    registry = GateRegistry(url, tmp_path / "keys")
    registry.load(urban_ok("S-1"))
    max_staleness = 2.0
    gate = start_gate(url, tmp_path / "keys", poll_interval=0.1, max_staleness=max_staleness)
    try:
        with Heartbeat(registry):
            becomes(gate.target, SERVING, timeout=5)
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
            cut = time.monotonic()
            becomes(gate.target, NOT_SERVING, timeout=10)
            head = gate.app.cache.head
            assert head is not None and head.cosigned_at is not None
            # not before the staleness bound: the held cosignature is that old, and it was at
            # most a poll and a beat (and the second it is rounded to) old at the cut
            assert (datetime.now(UTC) - head.cosigned_at).total_seconds() > max_staleness
            assert time.monotonic() - cut >= max_staleness - 1.0 - 0.3
            assert gate.app.follower.failure is not None
            with Wire(gate.target) as wire:
                stale = wire.ask(connection("S-1"))
                assert verdict(stale) == "REVIEW" and codes(stale) == {"REGISTRY_STALE"}
                with psycopg.connect(PG_URL, autocommit=True) as admin:
                    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                becomes(gate.target, SERVING, timeout=10)
                assert verdict(wire.ask(connection("S-1"))) == "ALLOW"
    finally:
        gate.stop()
        registry.close()


def test_gate_that_cannot_load_stays_not_serving_and_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    keys = tmp_path / "keys"
    ensure_signer(keys, "registry", "permitgate.example/registry")
    mistyped = PG_URL.rsplit("/", 1)[0] + "/permitgate_no_such_database"
    gate = start_gate(mistyped, keys, poll_interval=0.05)
    try:
        wait_for(lambda: True if gate.app.follower.failed >= 8 else None, timeout=10)
        assert health(gate.target) == {NOT_SERVING}
        said = [r for r in caplog.records if r.name == "server.follower"]
        assert len(said) == 1, [r.getMessage() for r in said]
        assert said[0].levelno == logging.ERROR
        assert 'database "permitgate_no_such_database" does not exist' in said[0].getMessage()
        assert "no data loaded yet: no check is allowed" in said[0].getMessage()
        with Wire(gate.target) as wire:
            never_loaded = wire.ask(connection("S-1"))
            assert (verdict(never_loaded), codes(never_loaded)) == ("REVIEW", {"REGISTRY_STALE"})
    finally:
        gate.stop(grace=0.1)


def test_health_is_not_serving_while_the_decision_log_is_full(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The decision log's table is away and 5 answers wait (the limit here): every call answers
    UNAVAILABLE, so health is NOT_SERVING, though the registry data is fresh; once the answers
    are written, SERVING again."""
    caplog.set_level(logging.INFO, logger="server.health")
    registry = GateRegistry(pg_url, tmp_path / "keys")
    registry.load(urban_ok("S-1"))
    gate = start_gate(
        pg_url,
        tmp_path / "keys",
        poll_interval=0.1,
        state_dir=tmp_path / "state",
        decision_log_limit=5,
    )
    try:
        becomes(gate.target, SERVING, timeout=5)
        registry.sql("ALTER TABLE decision_log RENAME TO decision_log_away")
        with Wire(gate.target) as wire:
            for _ in range(5):
                assert verdict(wire.ask(connection("S-1"))) == "ALLOW"
            becomes(gate.target, NOT_SERVING, timeout=5)
            assert gate.app.gate.decision_log.full and not gate.app.cache.is_stale()
            with pytest.raises(grpc.RpcError) as refused:
                wire.ask(connection("S-1"))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert (
                "health: NOT_SERVING: the decision log is full (5 answers wait to be written): "
                "every call answers UNAVAILABLE"
            ) in caplog.messages
            registry.sql("ALTER TABLE decision_log_away RENAME TO decision_log")
            becomes(gate.target, SERVING, timeout=15)
            assert verdict(wire.ask(connection("S-1"))) == "ALLOW"
    finally:
        gate.stop()
        registry.close()


# --- concurrent calls ----------------------------------------------------------------------------


def test_calls_beyond_max_concurrent_rpcs_are_refused_as_overloaded(tmp_path: Path) -> None:
    """Two BatchCheck streams held open fill a gate limited to 2; a third call is refused with
    RESOURCE_EXHAUSTED, which the client raises as OverloadedError; once a stream ends, calls
    are answered again."""
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    registry.load(urban_ok("S-1"))
    gate = start_gate(registry.url, registry.keys_dir, max_concurrent_rpcs=2)
    release = threading.Event()

    def held_open() -> Iterator[pb.CheckBatch]:
        yield pb.CheckBatch(checks=[batch_check("1", connection("S-1"))])
        release.wait(30)

    try:
        with Wire(gate.target) as first, Wire(gate.target) as second:
            streams = [wire.stub.BatchCheck(held_open(), timeout=30) for wire in (first, second)]
            for stream in streams:  # each stream is open and answered
                assert verdict(next(stream).decisions[0]) == "ALLOW"
            with Client(gate.target, timeout=5) as client, pytest.raises(OverloadedError):
                client.check_connection("S-1", utility="water")
            release.set()
            for stream in streams:
                assert list(stream) == []
            with Client(gate.target, timeout=5) as client:
                assert client.check_connection("S-1", utility="water").verdict == "ALLOW"
    finally:
        release.set()
        gate.stop()
        registry.close()


def test_serve_refuses_a_max_concurrent_rpcs_below_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--keys", str(tmp_path / "keys"), "--max-concurrent-rpcs", "0"]
    )
    assert result.exit_code == 2
    assert "--max-concurrent-rpcs" in result.output and "0" in result.output
