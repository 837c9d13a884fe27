"""``permitgate serve --workers N``: N gate processes on one port, and their supervisor.

The command runs as a real process over a demo registry on loopback: both workers answer (each
gate has its own decision-id prefix, and connections are spread among them), the supervisor
holds no gRPC (one thread: gRPC's core starts threads of its own), a notice is one notice
whichever worker records it, SIGTERM stops every worker and every decision is written, and a
SIGKILLed worker is started again while the other answers. The supervisor's restart policy is
tested apart, on workers that are plain functions, with short pauses.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from gate_helpers import (
    GateRegistry,
    Wire,
    case,
    connection,
    premises,
    verdict,
    wait_for,
)
from permitgate_client.v1 import gate_pb2 as pb
from processes import Served, free_port, spawn

from permitgate.cli import main
from registry.demo import SCENARIOS, demo_lines, structure_id
from server.workers import Supervisor, SupervisorLink

OK = structure_id(0)


@contextmanager
def serve(args: list[str]) -> Iterator[Served]:
    with spawn(["serve", *args]) as served:
        yield served


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[GateRegistry]:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    registry.load(demo_lines(len(SCENARIOS)))
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def any_registry(db_url: str, keys_dir: Path) -> Iterator[GateRegistry]:
    """The demo registry on SQLite and on PostgreSQL."""
    registry = GateRegistry(db_url, keys_dir)
    registry.load(demo_lines(len(SCENARIOS)))
    try:
        yield registry
    finally:
        registry.close()


def _args(registry: GateRegistry, state: Path, port: int, workers: int = 2) -> list[str]:
    return [
        "--db",
        registry.url,
        "--keys",
        str(registry.keys_dir),
        "--state",
        str(state),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]


def _gate_of(decision: pb.Decision) -> str:
    """The decision-id prefix, one per gate process."""
    return decision.decision_id.rsplit("-", 1)[0]


def _prefixes(target: str, connections: int) -> set[str]:
    """The gates that answered one ALLOW check on each of ``connections`` new connections."""
    seen = set()
    for _ in range(connections):
        with Wire(target, own_connection=True) as wire:
            decision = wire.ask(connection(OK))
            assert verdict(decision) == "ALLOW", decision
            seen.add(_gate_of(decision))
    return seen


def _threads(pid: int) -> list[str]:
    return [
        Path(f"/proc/{pid}/task/{t}/comm").read_text().strip()
        for t in os.listdir(f"/proc/{pid}/task")
    ]


def test_two_workers_answer_on_one_port_and_stop_together(
    any_registry: GateRegistry, tmp_path: Path
) -> None:
    registry = any_registry
    state, port = tmp_path / "state", free_port()
    target = f"127.0.0.1:{port}"
    with serve(_args(registry, state, port)) as gate:
        pids = [int(gate.wait_for(rf"worker {n} started \(pid (\d+)\)").group(1)) for n in (1, 2)]
        gate.wait_for("all 2 workers serving")
        gate.wait_for(r"worker \d: health: SERVING", times=2)
        # The supervisor created no gRPC object: its one thread is Python's; each worker's
        # gRPC core runs threads of its own.
        assert len(_threads(gate.process.pid)) == 1, _threads(gate.process.pid)
        for pid in pids:
            assert len(_threads(pid)) > 1
        # Connections are spread among the workers: both gates answer.
        gates = _prefixes(target, 40)
        assert len(gates) == 2, gates
        # A notice is one notice, whichever worker records it.
        notices = set()
        for _ in range(20):
            with Wire(target) as wire:
                check = premises(OK, pb.OFFICE_CULTURE, "bar", application_id="APP-W")
                decision = wire.ask(check)
                assert verdict(decision) == "NOTIFY", decision
                notices.add((decision.notification_id, _gate_of(decision)))
        assert len({n for n, _ in notices}) == 1 and len({g for _, g in notices}) == 2
        gate.process.send_signal(signal.SIGTERM)
        assert gate.process.wait(timeout=30) == 0
        text = gate.text()
        for number in (1, 2):
            assert f"supervisor: worker {number} stopped (exit status 0)" in text
    # Every decision was written on the way out, and each worker kept its own verified state.
    assert registry.sql("SELECT count(*) FROM decision_log") == [(60,)]
    assert len(registry.sql("SELECT id FROM notification")) == 1
    for number in (1, 2):
        assert (state / f"worker-{number}" / "gate.sqlite").exists()
    assert not (state / "gate.sqlite").exists()


def test_a_killed_worker_is_started_again_while_the_other_answers(
    registry: GateRegistry, tmp_path: Path
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    with serve(_args(registry, tmp_path / "state", port)) as gate:
        killed = int(gate.wait_for(r"worker 1 started \(pid (\d+)\)").group(1))
        gate.wait_for("all 2 workers serving")
        gate.wait_for(r"worker \d: health: SERVING", times=2)
        before = _prefixes(target, 30)
        os.kill(killed, signal.SIGKILL)
        gate.wait_for(r"worker 1 died \(killed by SIGKILL\); starting it again in [\d.]+s")
        # The other worker answers meanwhile (each new connection reaches a listening worker).
        assert len(_prefixes(target, 5)) >= 1
        restarted = int(gate.wait_for(r"worker 1 started \(pid (\d+)\)", times=2).group(1))
        assert restarted != killed
        gate.wait_for(r"worker 1 serving", times=2)
        gate.wait_for(r"worker 1: health: SERVING", times=2)
        after = _prefixes(target, 40)
        assert len(after) == 2 and len(after - before) == 1  # the new worker is a new gate
        gate.process.send_signal(signal.SIGTERM)
        assert gate.process.wait(timeout=30) == 0


def _verdicts_of_new_connections(target: str, sid: str, seconds: float) -> list[str]:
    """The verdict for ``sid`` on a new connection every 50 ms ("error: CODE" if refused)."""
    seen = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            with Wire(target, timeout=2) as wire:
                seen.append(verdict(wire.ask(connection(sid))))
        except Exception as exc:  # a worker being restarted, or none left: no answer at all
            seen.append(f"error: {type(exc).__name__}")
        time.sleep(0.05)
    return seen


def test_a_worker_restarted_on_a_rolled_back_database_never_allows(
    registry: GateRegistry, tmp_path: Path
) -> None:
    """Someone who can write the database but holds no key deletes the newest head (the one
    that signs OK's stop order) and kills a worker. The worker started again has its own
    anti-rollback state: no answer for OK is ALLOW, from it or from the other worker."""
    port = free_port()
    target = f"127.0.0.1:{port}"
    with serve(_args(registry, tmp_path / "state", port)) as gate:
        killed = int(gate.wait_for(r"worker 1 started \(pid (\d+)\)").group(1))
        gate.wait_for("all 2 workers serving")
        gate.wait_for(r"worker \d: health: SERVING", times=2)
        registry.load([case(f"C-{OK}-stop", OK, "stop_order")])
        wait_for(
            lambda: (
                True if set(_verdicts_of_new_connections(target, OK, 1.0)) == {"DENY"} else None
            ),
            timeout=20,
        )
        [(newest,)] = registry.sql("SELECT max(serial) FROM head")
        registry.sql("DELETE FROM head WHERE serial = :s", s=newest)
        os.kill(killed, signal.SIGKILL)
        gate.wait_for(r"worker 1 died \(killed by SIGKILL\)")
        seen = _verdicts_of_new_connections(target, OK, 8.0)
        assert "ALLOW" not in seen, seen
        assert "DENY" in seen, seen  # the worker not killed answers from what it verified
        gate.process.send_signal(signal.SIGTERM)
        gate.process.wait(timeout=30)


def test_a_worker_that_cannot_start_stops_all(registry: GateRegistry, tmp_path: Path) -> None:
    state, port = tmp_path / "state", free_port()
    (state / "worker-2").mkdir(parents=True)
    held = os.open(state / "worker-2" / "gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another gate on worker 2's directory would
        with serve(_args(registry, state, port)) as gate:
            assert gate.process.wait(timeout=30) == 2
            text = gate.text()
        assert (
            f"permitgate: worker 2: another gate uses the state directory {state}/worker-2" in text
        )
        assert "worker 2 could not start (exit status 2): stopping all" in text
        assert re.search(
            r"INFO supervisor: worker 1 stopped \((exit status 0|killed by SIGTERM)\)", text
        )
    finally:
        os.close(held)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--workers", "0"], "Invalid value for '--workers': 0 is not in the range x>=1"),
        (["--workers", "two"], "Invalid value for '--workers': 'two' is not a valid integer"),
        (
            ["--workers", "2", "--listen", "127.0.0.1:0"],
            "--listen 127.0.0.1:0: port 0 would give each of the 2 workers a port of its own",
        ),
    ],
    ids=["zero", "not-a-number", "port-0"],
)
def test_bad_workers_are_refused_before_anything_starts(
    registry: GateRegistry, tmp_path: Path, options: list[str], message: str
) -> None:
    state = tmp_path / "state"
    args = ["serve", "--db", registry.url, "--keys", str(registry.keys_dir)]
    result = CliRunner().invoke(main, [*args, "--state", str(state), *options])
    assert result.exit_code == 2
    assert message in result.output
    assert not state.exists()


def test_a_second_set_of_workers_on_the_same_state_is_refused(
    registry: GateRegistry, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    held = os.open(state / "gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a single gate on this directory would
        args = ["serve", *_args(registry, state, free_port())]
        result = CliRunner().invoke(main, args)
    finally:
        os.close(held)
    assert result.exit_code == 2
    assert f"permitgate: another gate uses the state directory {state}" in result.output
    assert not (state / "worker-1").exists()


# --- the supervisor's restart policy, on plain functions ----------------------------------------


def _serve_until_terminated(link: SupervisorLink) -> int:
    stop = False

    def terminated(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, terminated)
    link.serving()
    while not stop:
        time.sleep(0.01)
    return 0


def _run_in_child(supervisor: Supervisor, stop_after: float | None = None) -> int:
    """Run the supervisor in a child process of its own (it forks, and takes signals)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            if stop_after is not None:
                signal.setitimer(signal.ITIMER_REAL, stop_after)
                signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
            status = supervisor.run()
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def test_the_supervisor_gives_up_on_a_worker_that_keeps_failing_to_start(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"

    def work(number: int, link: SupervisorLink) -> int:
        with starts.open("a") as f:
            f.write(f"{number}\n")
        if number == 2 and starts.read_text().count("2\n") > 1:
            return 3  # worker 2 cannot start again
        if number == 2:
            link.serving()
            return 4  # it dies once it served
        return _serve_until_terminated(link)

    supervisor = Supervisor(
        2, work, first_backoff=0.01, max_backoff=0.05, max_failed_starts=3, steady=0.0
    )
    assert _run_in_child(supervisor) == 1
    assert starts.read_text().count("2\n") == 4  # the first start, then 3 failed starts


def test_a_worker_that_dies_soon_after_serving_counts_as_failing_to_start(
    tmp_path: Path,
) -> None:
    """A worker listens before its registry is loaded: one that keeps dying then (out of memory
    while loading, say) is given up on, not restarted for ever."""
    starts = tmp_path / "starts"

    def work(number: int, link: SupervisorLink) -> int:
        if number == 2:
            with starts.open("a") as f:
                f.write("2\n")
            link.serving()
            time.sleep(0.05)
            return 4  # dies while it would still be loading
        return _serve_until_terminated(link)

    supervisor = Supervisor(2, work, first_backoff=0.01, max_backoff=0.05, max_failed_starts=3)
    assert _run_in_child(supervisor, stop_after=20.0) == 1
    assert starts.read_text().count("2\n") == 3


def test_the_supervisor_restarts_a_worker_that_dies_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"

    def work(number: int, link: SupervisorLink) -> int:
        with starts.open("a") as f:
            f.write(f"{number}\n")
        if number == 1 and starts.read_text().count("1\n") <= 2:
            link.serving()
            os.kill(os.getpid(), signal.SIGKILL)
        return _serve_until_terminated(link)

    supervisor = Supervisor(2, work, first_backoff=0.01, max_backoff=0.05)
    assert _run_in_child(supervisor, stop_after=1.0) == 0
    assert sorted(starts.read_text().split()) == ["1", "1", "1", "2"]


def test_the_supervisor_stops_all_when_a_worker_cannot_start_at_first(tmp_path: Path) -> None:
    def work(number: int, link: SupervisorLink) -> int:
        return 2 if number == 3 else _serve_until_terminated(link)

    assert _run_in_child(Supervisor(3, work)) == 2


def test_workers_stop_when_the_supervisor_is_killed(registry: GateRegistry, tmp_path: Path) -> None:
    port = free_port()
    with serve(_args(registry, tmp_path / "state", port)) as gate:
        pids = [int(gate.wait_for(rf"worker {n} started \(pid (\d+)\)").group(1)) for n in (1, 2)]
        gate.wait_for(r"worker \d: health: SERVING", times=2)
        _prefixes(f"127.0.0.1:{port}", 10)
        gate.process.kill()
        gate.process.wait()
        gate.wait_for(r"worker 1: the supervisor is gone: stopping")
        gate.wait_for(r"worker 2: the supervisor is gone: stopping")
        wait_for(lambda: True if not any(_alive(pid) for pid in pids) else None, timeout=20)
    assert registry.sql("SELECT count(*) FROM decision_log") == [(10,)]  # written on the way out


def _alive(pid: int) -> bool:
    """``pid`` runs (orphaned, it is no child of this process; a zombie has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status
