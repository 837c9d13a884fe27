"""Many gates over one Redis, run as deployed: the registry service (``permitgate registry serve
--redis``) over PostgreSQL publishing to a private ``redis-server``, and gate processes
(``permitgate serve --redis``) answering from it, each fault made to the real servers.

PostgreSQL and Redis are reached through a TCP proxy of the tests' own (``tcp_proxy``), so a
connection can be cut or slowed without touching the servers; Redis is also stopped, restarted
empty and flushed for real. All along, a thread asks each gate about a structure under a stop
order and about a clean one (``Asking``): the flagged one must never be ALLOWed, whatever
happens, and the clean one must be answered (from the gate's own cache, Redis or PostgreSQL)
unless the gate can no longer show its data fresh, when it answers REVIEW with
REGISTRY_STALE.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from gate_helpers import GateRegistry, Wire, case, codes, connection, urban_ok, verdict, wait_for
from processes import Served, free_port, spawn
from redis_support import PrivateRedis, private_redis
from tcp_proxy import TcpProxy

from registry.redis_layout import RedisLayout

CLEAN = [f"110101-0001-{n:04d}" for n in range(1, 41)]
FLAGGED = "110101-0002-0001"
TARGET = "110101-0003-0001"  # clean at first; a stop order arrives during a test
MAX_STALENESS = 3.0
LAYOUT = RedisLayout()


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@dataclass
class Gate:
    served: Served
    target: str
    state: Path
    args: list[str]


@dataclass
class Deployment:
    registry: GateRegistry
    redis: PrivateRedis
    pg_proxy: TcpProxy  # what the service and the gates reach PostgreSQL through
    redis_proxy: TcpProxy  # what the gates reach Redis through
    directory: Path
    stack: ExitStack
    service: Served | None = None
    gates: list[Gate] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return _through(self.registry.url, self.pg_proxy)

    def start_service(self) -> Served:
        port = free_port()
        self.service = self.stack.enter_context(
            spawn(
                [
                    "registry",
                    "serve",
                    "--db",
                    self.db_url,
                    "--keys",
                    str(self.registry.keys_dir),
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--heartbeat",
                    "0.2",
                    "--redis",
                    self.redis.url,
                ]
            )
        )
        wait_for(self.published, timeout=30)
        return self.service

    def published(self) -> int | None:
        try:
            value = self.redis.client().get(LAYOUT.published)
        except Exception:
            return None
        return None if value is None else int(value)

    def start_gate(self, name: str, *, port: int | None = None) -> Gate:
        port = port or free_port()
        state = self.directory / f"gate-{name}"
        args = [
            "serve",
            "--db", self.db_url,
            "--keys", str(self.registry.keys_dir),
            "--state", str(state),
            "--listen", f"127.0.0.1:{port}",
            "--redis", self.redis_proxy.url(),
            "--max-staleness", str(MAX_STALENESS),
            "--poll-interval", "0.2",
            "--cache-size", "1000",
        ]  # fmt: skip
        served = self.stack.enter_context(spawn(args))
        gate = Gate(served, f"127.0.0.1:{port}", state, args)
        served.wait_for(r"health: SERVING", timeout=60)
        self.gates.append(gate)
        return gate

    def restart_gate(self, gate: Gate, ready: str = r"health: SERVING") -> Gate:
        served = self.stack.enter_context(spawn(gate.args))
        served.wait_for(ready, timeout=60)
        fresh = Gate(served, gate.target, gate.state, gate.args)
        self.gates[self.gates.index(gate)] = fresh
        return fresh


@pytest.fixture
def deployment(pg_url: str, tmp_path: Path) -> Iterator[Deployment]:
    registry = GateRegistry(pg_url, tmp_path / "keys")
    registry.load(
        [line for sid in [*CLEAN, FLAGGED, TARGET] for line in urban_ok(sid)]
        + [case("C-FLAGGED", FLAGGED, "stop_order")]
    )
    pg = urlsplit(pg_url)
    with ExitStack() as stack:
        redis = stack.enter_context(private_redis())
        pg_proxy = stack.enter_context(TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432))
        redis_proxy = stack.enter_context(TcpProxy("127.0.0.1", redis.port))
        deployment = Deployment(registry, redis, pg_proxy, redis_proxy, tmp_path, stack)
        deployment.start_service()
        try:
            yield deployment
        finally:
            registry.close()


class Asking:
    """Asks a gate, in a thread, about the flagged structure and a clean one, over and over:
    every ALLOW for the flagged one is kept, and each answer for the clean one."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.flagged_allowed: list[str] = []
        self.clean: list[tuple[float, str, frozenset[str]]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Asking:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with Wire(self.target, timeout=5) as wire:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    flagged = wire.ask(connection(FLAGGED))
                    if verdict(flagged) == "ALLOW":
                        self.flagged_allowed.append(str(flagged))
                    clean = wire.ask(connection(CLEAN[n % len(CLEAN)]))
                    self.clean.append((time.monotonic(), verdict(clean), frozenset(codes(clean))))
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code()}: {exc.details()}")
                    time.sleep(0.05)

    def clean_since(self, moment: float) -> list[str]:
        return [v for at, v, _ in self.clean if at >= moment]


def _answer(target: str, sid: str) -> tuple[str, set[str]]:
    with Wire(target, timeout=5) as wire:
        decision = wire.ask(connection(sid))
        return verdict(decision), codes(decision)


def _allows_within(target: str, sid: str, seconds: float) -> None:
    wait_for(lambda: True if _answer(target, sid)[0] == "ALLOW" else None, timeout=seconds)


# --- the tests -----------------------------------------------------------------------------


def test_two_gates_answer_from_a_change_within_a_second(deployment: Deployment) -> None:
    a, b = deployment.start_gate("a"), deployment.start_gate("b")
    for gate in (a, b):
        assert _answer(gate.target, TARGET)[0] == "ALLOW"
        assert _answer(gate.target, FLAGGED)[0] == "DENY"
        assert _answer(gate.target, "110101-0099-0001") == ("DENY", {"NOT_IN_REGISTRY"})
    deployment.registry.load([case("C-TARGET", TARGET, "stop_order")])
    changed = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - changed < 10:
        for gate in (a, b):
            if gate.target not in seen and _answer(gate.target, TARGET)[0] == "DENY":
                seen[gate.target] = time.monotonic() - changed
        time.sleep(0.01)
    assert len(seen) == 2, f"only {seen} answered from the change"
    # The registry service looks for new heads every 0.2 s; the gates hear of them at once.
    assert max(seen.values()) < 1.0, seen


def test_redis_stopped_restarted_and_flushed(deployment: Deployment) -> None:
    gate = deployment.start_gate("a")
    with Asking(gate.target) as asking:
        wait_for(lambda: asking.clean or None, timeout=10)
        deployment.redis.stop()
        stopped = time.monotonic()
        time.sleep(1.5)
        # Answered from its own cache and from PostgreSQL meanwhile.
        assert "ALLOW" in asking.clean_since(stopped + 0.5)
        assert _answer(gate.target, CLEAN[-1])[0] == "ALLOW"  # a miss, from PostgreSQL
        deployment.redis.start()  # empty: the registry service publishes everything again
        wait_for(deployment.published, timeout=30)
        deployment.redis.client().flushall()
        wait_for(deployment.published, timeout=30)
        deployment.registry.load([case("C-TARGET", TARGET, "stop_order")])
        _denies = lambda: True if _answer(gate.target, TARGET)[0] == "DENY" else None  # noqa: E731
        wait_for(_denies, timeout=5)
    assert asking.flagged_allowed == []
    assert asking.failures == []


def test_redis_slow(deployment: Deployment) -> None:
    gate = deployment.start_gate("a")
    with Asking(gate.target) as asking:
        wait_for(lambda: asking.clean or None, timeout=10)
        deployment.redis_proxy.slow(0.2)
        slowed = time.monotonic()
        for sid in CLEAN[20:30]:  # misses while every Redis answer takes 200 ms more
            assert _answer(gate.target, sid)[0] == "ALLOW"
        deployment.registry.load([case("C-TARGET", TARGET, "stop_order")])
        _denies = lambda: True if _answer(gate.target, TARGET)[0] == "DENY" else None  # noqa: E731
        wait_for(_denies, timeout=10)
        assert "ALLOW" in asking.clean_since(slowed)
        deployment.redis_proxy.heal()
    assert asking.flagged_allowed == []
    assert asking.failures == []


def test_database_unreachable_turns_stale_then_recovers(deployment: Deployment) -> None:
    gate = deployment.start_gate("a")
    with Asking(gate.target) as asking:
        wait_for(lambda: asking.clean or None, timeout=10)
        deployment.pg_proxy.cut()  # the registry service cannot cosign, nor a gate read
        cut = time.monotonic()
        time.sleep(MAX_STALENESS + 2)
        later = [(v, c) for at, v, c in asking.clean if at > cut + MAX_STALENESS + 1.5]
        assert later, "no answer while the database was unreachable"
        assert all(v == "REVIEW" and "REGISTRY_STALE" in c for v, c in later), later
        deployment.pg_proxy.heal()
        _allows_within(gate.target, CLEAN[0], 15)
    assert asking.flagged_allowed == []
    assert asking.failures == []


def test_a_gate_killed_mid_stream_leaves_the_others_serving(deployment: Deployment) -> None:
    a, b = deployment.start_gate("a"), deployment.start_gate("b")
    old_head = deployment.redis.client().get(LAYOUT.head)
    with Wire(a.target) as wire:
        version_before = wire.ask(connection(CLEAN[0])).registry_version
    with Asking(b.target) as asking:
        wait_for(lambda: asking.clean or None, timeout=10)
        answered: list[int] = []
        stream = threading.Thread(target=_batches_until_cut, args=(a.target, answered), daemon=True)
        stream.start()
        time.sleep(0.3)
        os.kill(a.served.process.pid, signal.SIGKILL)  # in the middle of a BatchCheck stream
        killed = time.monotonic()
        stream.join(10)
        assert not stream.is_alive() and answered, "the stream was not answered, then cut"
        deployment.registry.load([case("C-TARGET", TARGET, "stop_order")])
        wait_for(lambda: True if _answer(b.target, TARGET)[0] == "DENY" else None, timeout=5)
        assert set(asking.clean_since(killed)) == {"ALLOW"}
        # Restarted on the same state directory, it catches up.
        a = deployment.restart_gate(a)
        assert _answer(a.target, TARGET)[0] == "DENY"
        with Wire(a.target) as wire:
            version_after = wire.ask(connection(CLEAN[0])).registry_version
        assert version_after > version_before
    assert asking.flagged_allowed == []
    assert asking.failures == []
    # With the registry service gone and Redis's head rolled back to the older one, a gate
    # restarted again keeps the head it verified: never the older one, never ALLOW for TARGET.
    assert deployment.service is not None and old_head is not None
    os.kill(deployment.service.process.pid, signal.SIGKILL)
    os.kill(a.served.process.pid, signal.SIGKILL)
    deployment.redis.client().set(LAYOUT.head, old_head)
    # Its head may be older than --max-staleness by the time it is up (nothing cosigns it now),
    # so it is ready once it holds a head, SERVING or not.
    a = deployment.restart_gate(a, ready=r"holding version \d+")
    with Wire(a.target) as wire:
        for _ in range(5):
            decision = wire.ask(connection(TARGET))
            assert verdict(decision) != "ALLOW"
            assert decision.registry_version == version_after
            time.sleep(0.3)


def _batches_until_cut(target: str, answered: list[int]) -> None:
    """BatchCheck batches on one stream until the gate goes away; ``answered`` counts the
    batches answered."""
    from gate_helpers import batch_check
    from permitgate_client.v1 import gate_pb2 as pb

    def batches() -> Iterator[pb.CheckBatch]:
        for n in range(100_000):
            yield pb.CheckBatch(checks=[batch_check(str(n), connection(CLEAN[n % len(CLEAN)]))])
            time.sleep(0.01)

    with Wire(target, timeout=30) as wire:
        try:
            for _ in wire.stub.BatchCheck(batches()):
                answered.append(1)
        except grpc.RpcError:
            return
