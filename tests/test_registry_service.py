"""The registry service over real gRPC on loopback, on SQLite and PostgreSQL.

Every answer is checked twice: with the client package's verifiers (``verify_registry_head``,
``verify_map_proof``, ``verify_consistency``), and by hand from the formats' definitions (the
signed note and its cosignature by ``registry_support.open_checkpoint``, map proofs walked here
with ``hashlib``, log roots recomputed from the event rows), so a bug shared by the service and
the client's verifier cannot hide. The database is changed under the service with raw SQL, as
someone who can write it but holds no key would.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from gate_helpers import GateRegistry, LoopThread, gate_loop, stderr_lines, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from permitgate_client import ForkError, MapMismatchError, VerifierKey
from permitgate_client._proofs import (
    MapProof,
    RegistryHead,
    verify_consistency,
    verify_map_proof,
    verify_registry_head,
)
from permitgate_client.v1 import registry_pb2 as pb
from permitgate_client.v1 import registry_pb2_grpc
from registry_support import (
    ParsedCheckpoint,
    invoke,
    open_checkpoint,
    open_envelope,
    parse_verifier_key,
    rfc6962_root,
)

from registry.demo import demo_lines, structure_id
from registry.service import RegistryApp
from registry.signing import load_verifier

SERVICE = "permitgate.v1.Registry"
HEARTBEAT = 0.2
PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
STRUCTURES = 12
ABSENT = "110228-9999-9999"
REFUSALS = (
    "registry service: the database disagrees with the signed registry: ",
    "registry service: the registry's writer refuses the database: ",
)


# --- a running service ---------------------------------------------------------------------------


@dataclass
class RunningService:
    """A ``RegistryApp`` on loopback, on the tests' shared loop, and calls to it."""

    app: RegistryApp
    loop: LoopThread
    stopped: bool = False

    @property
    def target(self) -> str:
        return self.app.address

    def stop(self, grace: float = 1.0) -> None:
        if not self.stopped:
            self.stopped = True
            self.loop.run(self.app.stop(grace))

    def call(self, method: str, request: Any) -> Any:
        with grpc.insecure_channel(self.target) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
            return getattr(stub, method)(request, timeout=10)

    def head(self) -> pb.Head:
        head: pb.Head = self.call("GetHead", pb.GetHeadRequest())
        return head

    def status(self, structure_id: str) -> pb.Status:
        status: pb.Status = self.call("GetStatus", pb.GetStatusRequest(structure_id=structure_id))
        return status

    def consistency(self, old: int, new: int) -> list[bytes]:
        answer = self.call("GetConsistency", pb.GetConsistencyRequest(from_size=old, to_size=new))
        return list(answer.hashes)

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=service)
            return int(stub.Check(request, timeout=10).status)

    def wait_health(self, status: int, timeout: float = 20) -> None:
        """Until both names the service reports (``""`` and its own) say ``status``."""
        try:
            wait_for(
                lambda: True if self.health("") == status == self.health(SERVICE) else None,
                timeout,
            )
        except AssertionError as exc:
            heartbeat = self.app.heartbeat
            raise AssertionError(
                f"health not {status}: {heartbeat.refusal!r} after {heartbeat.beat.runs} beats"
            ) from exc


def start_service(registry: GateRegistry, state_dir: Path, **options: Any) -> RunningService:
    loop = gate_loop()

    async def create() -> RegistryApp:
        app = await RegistryApp.create(
            db_url=registry.url,
            keys_dir=registry.keys_dir,
            state_dir=state_dir,
            listen="127.0.0.1:0",
            heartbeat=options.pop("heartbeat", HEARTBEAT),
            **options,
        )
        await app.start()
        return app

    return RunningService(loop.run(create()), loop)


@contextmanager
def running_service(
    registry: GateRegistry, tmp_path: Path, *, serving: bool = True, **options: Any
) -> Iterator[RunningService]:
    service = start_service(registry, tmp_path / "registry-state", **options)
    try:
        if serving:
            service.wait_health(health_pb2.HealthCheckResponse.SERVING)
        yield service
    finally:
        service.stop()


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[GateRegistry]:
    """A registry (SQLite, then PostgreSQL) holding ``STRUCTURES`` demo structures."""
    registry = GateRegistry(db_url, tmp_path / "keys")
    registry.load(demo_lines(STRUCTURES))
    try:
        yield registry
    finally:
        registry.close()


def key_of(registry: GateRegistry) -> VerifierKey:
    return load_verifier(registry.keys_dir, "registry")


def opened(registry: GateRegistry, note: bytes) -> ParsedCheckpoint:
    """The head, opened by hand: the registry's signature and the cosignature both verify."""
    return open_checkpoint(
        note, parse_verifier_key((registry.keys_dir / "registry.pub").read_text())
    )


def verified(registry: GateRegistry, note: bytes) -> RegistryHead:
    head = verify_registry_head(note, key_of(registry))
    by_hand = opened(registry, note)
    assert (by_hand.map_serial, by_hand.size, by_hand.map_root) == (
        head.map.serial,
        head.size,
        head.map.root,
    )
    assert by_hand.cosigned_at is not None and head.cosigned_at is not None
    assert by_hand.cosigned_at == int(head.cosigned_at.timestamp())
    return head


def stamp(head: RegistryHead) -> int:
    """When ``head`` was cosigned, in POSIX seconds."""
    assert head.cosigned_at is not None
    return int(head.cosigned_at.timestamp())


def newest_row(registry: GateRegistry) -> dict[str, Any]:
    columns = "serial, size, root_hash, map_root, note, tree_state, signed_at, cosignature, "
    columns += "cosigned_at"
    [row] = registry.sql(f"SELECT {columns} FROM head ORDER BY serial DESC LIMIT 1")
    return dict(zip(columns.split(", "), row, strict=True))


def cosigned_at(registry: GateRegistry) -> int:
    """The newest head's cosigned time as stored, read from the cosignature line by hand."""
    row = newest_row(registry)
    stamp = opened(registry, bytes(row["note"]) + bytes(row["cosignature"])).cosigned_at
    assert stamp is not None
    return stamp


def rpc_error(exc: object) -> grpc.RpcError:
    assert isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call)
    return exc


def refused(service: RunningService, method: str, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        service.call(method, request)
    error = rpc_error(info.value)
    return error.code(), error.details()


# --- a map proof, walked by hand -----------------------------------------------------------------


def root_by_hand(proof: bytes, structure_id: str, value: bytes | None) -> bytes:
    """The root a map proof leads to, from its byte format and the map's hashing rules alone
    (key SHA-256(id); leaf SHA-256(0x00||key||value); node SHA-256(0x01||left||right); an empty
    subtree is 32 zero bytes), after checking that it proves ``value`` (None: absence)."""
    count = int.from_bytes(proof[:2], "big")
    at = 2 + (count + 7) // 8
    bitmap = proof[2:at]
    siblings = []
    for level in range(count):
        if bitmap[level // 8] >> (level % 8) & 1:
            siblings.append(bytes(32))
        else:
            siblings.append(proof[at : at + 32])
            at += 32
    key = hashlib.sha256(structure_id.encode()).digest()

    def bit(of: bytes, depth: int) -> int:
        return of[depth // 8] >> (7 - depth % 8) & 1

    tail = proof[at:]
    if tail == b"\x00":
        bottom, found = bytes(32), None
    else:
        assert tail[:1] == b"\x01" and len(tail) == 65, tail
        other, other_value = tail[1:33], tail[33:]
        assert all(bit(other, d) == bit(key, d) for d in range(count))
        bottom = hashlib.sha256(b"\x00" + other + other_value).digest()
        found = other_value if other == key else None
    assert found == value
    node = bottom
    for depth in reversed(range(count)):
        pair = siblings[depth] + node if bit(key, depth) else node + siblings[depth]
        node = hashlib.sha256(b"\x01" + pair).digest()
    return node


# --- GetHead -------------------------------------------------------------------------------------


def test_get_head_is_the_newest_head_and_its_cosigned_time_advances(
    registry: GateRegistry, tmp_path: Path
) -> None:
    row = newest_row(registry)
    with running_service(registry, tmp_path) as service:
        first = verified(registry, service.head().note)
        assert first.map.serial == row["serial"] and first.size == registry.version()
        assert service.head().note.startswith(bytes(row["note"]))  # the stored head, cosigned
        # Nothing changes in the registry, yet the head is cosigned again and again.
        heads = [first]
        for _ in range(2):
            heads.append(
                wait_for(
                    lambda: (
                        h
                        if stamp(h := verified(registry, service.head().note)) > stamp(heads[-1])
                        else None
                    ),
                    timeout=5,
                )
            )
        assert all(h.same_head(first) and h.map.serial == first.map.serial for h in heads)
        assert abs(stamp(heads[-1]) - time.time()) < 3
        assert service.app.heartbeat.cosigned >= 2
        # The database's row carries the same cosignatures (gates read it there).
        wait_for(lambda: True if cosigned_at(registry) >= stamp(heads[-1]) else None, timeout=5)
    assert registry.sql("SELECT count(*) FROM head") == [(2,)]  # cosigning adds no head


# --- GetStatus -----------------------------------------------------------------------------------


def test_get_status_proves_a_record_and_an_absence_against_the_head(
    registry: GateRegistry, tmp_path: Path
) -> None:
    key = parse_verifier_key((registry.keys_dir / "registry.pub").read_text())
    with running_service(registry, tmp_path) as service:
        for sid in (structure_id(0), structure_id(STRUCTURES - 1), ABSENT, "x", "a/b:c.d-e_f"):
            status = service.status(sid)
            head = verified(registry, status.head)
            proof = MapProof.from_bytes(status.map_proof)
            if sid.startswith("110228-00"):
                assert status.envelope == registry.status_envelope(sid)  # the current record
                assert open_envelope(status.envelope, key)["structure"]["id"] == sid
                value: bytes | None = hashlib.sha256(status.envelope).digest()
            else:
                assert status.envelope == b""
                value = None
            verify_map_proof(head.map.root, sid, value, proof)
            assert root_by_hand(status.map_proof, sid, value) == head.map.root
            # The same proof does not pass for another answer.
            other = None if value is not None else hashlib.sha256(b"forged").digest()
            with pytest.raises(MapMismatchError):
                verify_map_proof(head.map.root, sid, other, proof)


def test_get_status_refuses_an_id_that_is_not_one(registry: GateRegistry, tmp_path: Path) -> None:
    with running_service(registry, tmp_path) as service:
        for bad in ("", " S-1", "x" * 65, "é"):
            code, details = refused(service, "GetStatus", pb.GetStatusRequest(structure_id=bad))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert details.startswith("structure_id: not a valid id:"), details


# --- GetConsistency and following imports ---------------------------------------------------------


def import_beside(registry: GateRegistry, tmp_path: Path, records: list[dict[str, Any]]) -> None:
    """``permitgate registry import`` as its own process, as an operator runs it."""
    data = tmp_path / f"import-{time.monotonic_ns()}.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    result = subprocess.run(
        [
            PERMITGATE,
            "registry",
            "import",
            str(data),
            "--db",
            registry.url,
            "--keys",
            str(registry.keys_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def new_structure(sid: str) -> dict[str, Any]:
    return {"type": "structure", "id": sid, "area": "urban", "district": "110228"}


def test_an_import_beside_the_service_is_followed_and_cosigned(
    registry: GateRegistry, tmp_path: Path
) -> None:
    with running_service(registry, tmp_path) as service:
        before = verified(registry, service.head().note)
        import_beside(registry, tmp_path, [new_structure("NEW-1"), new_structure("NEW-2")])
        row = newest_row(registry)
        assert row["serial"] == before.map.serial + 1
        signed_at = opened(registry, bytes(row["note"]) + bytes(row["cosignature"])).cosigned_at
        assert signed_at is not None

        def followed() -> RegistryHead | None:
            head = verified(registry, service.head().note)
            assert head.map.serial in (before.map.serial, before.map.serial + 1)
            ok = head.map.serial == row["serial"] and head.cosigned_at is not None
            return head if ok and head.cosigned_at.timestamp() > signed_at else None  # type: ignore[union-attr]

        after = wait_for(followed, timeout=10)  # the service cosigned the import's head
        assert after.size == before.size + 2 == registry.version()
        assert cosigned_at(registry) > signed_at  # and wrote its cosignature to the row
        status = service.status("NEW-2")
        assert verify_registry_head(status.head, key_of(registry)).same_head(after)
        verify_map_proof(
            after.map.root,
            "NEW-2",
            hashlib.sha256(status.envelope).digest(),
            MapProof.from_bytes(status.map_proof),
        )
        assert status.envelope == registry.status_envelope("NEW-2")


def test_get_consistency_proves_a_head_extends_an_older_one(
    registry: GateRegistry, tmp_path: Path
) -> None:
    with running_service(registry, tmp_path) as service:
        old = verified(registry, service.head().note)
        registry.load([new_structure(f"NEW-{i}") for i in range(5)])
        new = wait_for(
            lambda: h if (h := verified(registry, service.head().note)).size > old.size else None,
            timeout=10,
        )
        # The roots, recomputed from the event rows by the RFC's definition, are the signed ones.
        bodies = [bytes(b) for (b,) in registry.sql("SELECT body FROM event ORDER BY seq")]
        assert rfc6962_root(bodies[: old.size]) == old.checkpoint.root_hash
        assert rfc6962_root(bodies[: new.size]) == new.checkpoint.root_hash
        proof = service.consistency(old.size, new.size)
        assert proof and all(len(h) == 32 for h in proof)
        verify_consistency(
            old.size, old.checkpoint.root_hash, new.size, new.checkpoint.root_hash, proof
        )
        with pytest.raises(ForkError):  # one hash changed: it proves nothing
            forged = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
            verify_consistency(
                old.size, old.checkpoint.root_hash, new.size, new.checkpoint.root_hash, forged
            )
        # Any two sizes up to the newest (the proof between them checked on recomputed roots).
        for m, n in [
            (0, new.size),
            (1, new.size),
            (old.size, old.size),
            (3, old.size),
            (new.size - 1, new.size),
            (7, 8),
            (new.size, new.size),
        ]:
            verify_consistency(
                m, rfc6962_root(bodies[:m]), n, rfc6962_root(bodies[:n]), service.consistency(m, n)
            )


def test_get_consistency_refuses_sizes_it_cannot_prove(
    registry: GateRegistry, tmp_path: Path
) -> None:
    size = registry.version()
    with running_service(registry, tmp_path) as service:
        code, details = refused(
            service, "GetConsistency", pb.GetConsistencyRequest(from_size=5, to_size=4)
        )
        assert (code, details) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "from_size: 5 is larger than to_size 4",
        )
        code, details = refused(
            service, "GetConsistency", pb.GetConsistencyRequest(from_size=1, to_size=size + 1)
        )
        assert (code, details) == (
            grpc.StatusCode.OUT_OF_RANGE,
            f"to_size: {size + 1} is beyond the newest head's size, {size}",
        )


# --- freeze --------------------------------------------------------------------------------------


def test_a_stopped_service_cosigns_nothing_more(registry: GateRegistry, tmp_path: Path) -> None:
    service = start_service(registry, tmp_path / "registry-state")
    try:
        service.wait_health(health_pb2.HealthCheckResponse.SERVING)
        start = cosigned_at(registry)
        wait_for(lambda: True if cosigned_at(registry) > start else None, timeout=5)  # advancing
    finally:
        service.stop()
    frozen = cosigned_at(registry)
    time.sleep(2.5)  # a running service would have cosigned twice by now (whole seconds)
    assert cosigned_at(registry) == frozen
    assert abs(frozen - time.time()) < 5


# --- the database disagrees ----------------------------------------------------------------------


def insert_head(registry: GateRegistry, row: dict[str, Any]) -> None:
    names = ", ".join(row)
    marks = ", ".join(f":{name}" for name in row)
    registry.sql(f"INSERT INTO head ({names}) VALUES ({marks})", **row)


@pytest.mark.parametrize("how", ["rolled back", "deleted"])
def test_a_head_taken_from_the_database_stops_the_service_until_it_is_back(
    registry: GateRegistry, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    NOT_SERVING, SERVING = (  # noqa: N806
        health_pb2.HealthCheckResponse.NOT_SERVING,
        health_pb2.HealthCheckResponse.SERVING,
    )
    with running_service(registry, tmp_path) as service:
        rows = registry.sql("SELECT serial FROM head ORDER BY serial")
        taken = [newest_row(registry)] if how == "rolled back" else []
        if how == "deleted":
            for _ in rows:
                taken.insert(0, newest_row(registry))
                registry.sql("DELETE FROM head WHERE serial = :s", s=taken[0]["serial"])
        else:
            registry.sql("DELETE FROM head WHERE serial = :s", s=taken[0]["serial"])
        service.wait_health(NOT_SERVING, timeout=5)
        expected = "rolled back" if how == "rolled back" else "the database holds no head"
        # (The writer may refuse first, if a cosignature was under way; the next beat names it.)
        wait_for(
            lambda: (
                True if expected in refused(service, "GetHead", pb.GetHeadRequest())[1] else None
            ),
            timeout=5,
        )
        for method, request in [
            ("GetHead", pb.GetHeadRequest()),
            ("GetStatus", pb.GetStatusRequest(structure_id=structure_id(0))),
            ("GetConsistency", pb.GetConsistencyRequest(from_size=0, to_size=1)),
        ]:
            code, details = refused(service, method, request)
            assert code == grpc.StatusCode.UNAVAILABLE, details
            # Found by the service's own check, or refused by the writer first: both name it.
            assert details.startswith(REFUSALS), details
            assert expected in details, details
            assert f"head serial {taken[-1]['serial']}" in details, details
        if how == "rolled back":  # the older head left is not cosigned by the service
            left = cosigned_at(registry)
        beats = service.app.heartbeat.beat.runs
        wait_for(lambda: True if service.app.heartbeat.beat.runs >= beats + 3 else None, 10)
        if how == "rolled back":
            assert cosigned_at(registry) == left
        failures = [
            r
            for r in caplog.records
            if r.levelno == logging.ERROR and r.getMessage().startswith("heartbeat failed:")
        ]
        reasons = [r.getMessage().split(" (trying again in")[0] for r in failures]
        # Each reason once while it lasts (a failure that repeats is not logged again).
        assert all(a != b for a, b in itertools.pairwise(reasons)), reasons
        # Once in the service's words and at most once in the writer's, not at every beat.
        assert 1 <= len([r for r in reasons if expected in r]) <= 2, reasons
        assert service.app.heartbeat.beat.failures >= 3
        # Put back, the database agrees again: serving, and cosigning, as before.
        for row in taken:
            insert_head(registry, row)
        service.wait_health(SERVING, timeout=10)
        assert verified(registry, service.head().note).map.serial == taken[-1]["serial"]
        stamp = cosigned_at(registry)
        wait_for(lambda: True if cosigned_at(registry) > stamp else None, timeout=5)
    assert any("heartbeat works again" in r.getMessage() for r in caplog.records)


def test_a_rewritten_head_row_stops_the_service(registry: GateRegistry, tmp_path: Path) -> None:
    with running_service(registry, tmp_path) as service:
        [(older,)] = registry.sql("SELECT note FROM head WHERE serial = 1")
        registry.sql("UPDATE head SET note = :n WHERE serial = 2", n=bytes(older))
        service.wait_health(health_pb2.HealthCheckResponse.NOT_SERVING, timeout=5)
        code, details = refused(service, "GetHead", pb.GetHeadRequest())
        assert code == grpc.StatusCode.UNAVAILABLE
        assert details.startswith(REFUSALS), details
        assert "serial 2" in details, details


def test_records_that_do_not_give_the_signed_map_root_are_not_served(
    registry: GateRegistry, tmp_path: Path
) -> None:
    # A clean structure's record copied onto another: signed by the registry, but not current.
    registry.sql(
        "UPDATE status_record SET envelope = :e WHERE structure_id = :s",
        e=registry.status_envelope(structure_id(0)),
        s=structure_id(1),
    )
    with running_service(registry, tmp_path, serving=False) as service:
        wait_for(lambda: service.app.heartbeat.beat.runs or None, timeout=10)
        assert service.health() == health_pb2.HealthCheckResponse.NOT_SERVING
        code, details = refused(service, "GetStatus", pb.GetStatusRequest(structure_id="S-1"))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert f"the status records ({STRUCTURES}) do not give the map root" in details, details
        assert service.app.heartbeat.cosigned == 0


def test_events_that_do_not_give_the_signed_log_root_are_not_served(
    registry: GateRegistry, tmp_path: Path
) -> None:
    registry.sql("UPDATE event SET body = :b WHERE seq = 3", b=b'{"forged":true}')
    with running_service(registry, tmp_path, serving=False) as service:
        wait_for(lambda: service.app.heartbeat.beat.runs or None, timeout=10)
        code, details = refused(service, "GetHead", pb.GetHeadRequest())
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "the events do not hash to the log root the head of serial 2 signs" in details


# --- refresh -------------------------------------------------------------------------------------


def test_records_due_are_re_signed_at_start_and_followed(db_url: str, tmp_path: Path) -> None:
    registry = GateRegistry(db_url, tmp_path / "keys")
    try:
        six_days_ago = datetime.now(UTC) - timedelta(days=6)
        registry.load(demo_lines(3, now=six_days_ago), now=six_days_ago)  # due in a day
        size = registry.version()
        key = parse_verifier_key((registry.keys_dir / "registry.pub").read_text())
        with running_service(registry, tmp_path) as service:
            head = wait_for(
                lambda: (
                    h if (h := verified(registry, service.head().note)).map.serial == 3 else None
                ),
                timeout=10,
            )
            assert head.size == size  # a new head over the same log
            status = service.status(structure_id(0))
            record = open_envelope(status.envelope, key)
            next_update = datetime.fromisoformat(record["next_update"].replace("Z", "+00:00"))
            assert next_update > datetime.now(UTC) + timedelta(days=6)
            verify_map_proof(
                head.map.root,
                structure_id(0),
                hashlib.sha256(status.envelope).digest(),
                MapProof.from_bytes(status.map_proof),
            )
    finally:
        registry.close()


# --- bytes that are not a message, reflection ----------------------------------------------------

NOT_A_MESSAGE = [
    b"\xff\xff\xff",  # a tag whose varint never ends
    b"\x0a\x05S-1",  # field 1 says 5 bytes, 3 follow
    b"\x0b",  # a group start: a wire type proto3 messages never hold
]


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("GetHead", "GetHeadRequest"),
        ("GetStatus", "GetStatusRequest"),
        ("GetConsistency", "GetConsistencyRequest"),
    ],
)
def test_bytes_that_are_not_a_message_are_invalid_argument(
    tmp_path: Path, method: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    try:
        with running_service(registry, tmp_path) as service:
            garbage = NOT_A_MESSAGE + ([b"\x0a\x02\xc3\x28"] if method == "GetStatus" else [])
            with grpc.insecure_channel(service.target) as channel:
                call = channel.unary_unary(f"/{SERVICE}/{method}")  # bytes in, bytes out
                for data in garbage:
                    with pytest.raises(grpc.RpcError) as info:
                        call(data, timeout=5)
                    error = rpc_error(info.value)
                    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, data
                    assert (
                        error.details() == f"request: not a valid permitgate.v1.{message} message"
                    )
                valid = pb.GetStatusRequest(structure_id="S-1") if method == "GetStatus" else None
                answer = call(b"" if valid is None else valid.SerializeToString(), timeout=5)
                assert isinstance(answer, bytes)  # the same method, sent a message: answered
    finally:
        registry.close()
    assert not [r for r in caplog.records if r.exc_info]


def test_reflection_describes_the_registry_service(registry: GateRegistry, tmp_path: Path) -> None:
    with (
        running_service(registry, tmp_path) as service,
        grpc.insecure_channel(service.target) as channel,
    ):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in response.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names


# --- permitgate registry serve, as a process -----------------------------------------------------


def children(pid: int) -> set[int]:
    """Every process below ``pid``, read from /proc."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            pending += list(kids - found)
            found |= kids
    return found


def test_serve_starts_with_one_line_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    registry.load(demo_lines(3))
    process = subprocess.Popen(
        [
            PERMITGATE,
            "registry",
            "serve",
            "--db",
            registry.url,
            "--keys",
            str(registry.keys_dir),
            "--listen",
            "127.0.0.1:0",
            "--heartbeat",
            "0.5",
            "--refresh-every",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines, reader = stderr_lines(process)
    try:
        line = lines.get(timeout=20)
        match = re.search(
            r"registry service listening on (127\.0\.0\.1:\d+) \(plaintext\); "
            r"registry key (\S+); data: the SQLite file (\S+); state: (\S+); "
            r"heartbeat every 0\.5 s, refresh every 2 s$",
            line.strip(),
        )
        assert match, line
        name = VerifierKey.from_text((registry.keys_dir / "registry.pub").read_text()).keyid_text
        assert match.group(2) == name
        assert match.group(3) == str(tmp_path / "registry.db")
        assert match.group(4) == str(tmp_path / "registry-state")  # beside the keys
        target = match.group(1)

        def serving() -> bool | None:
            with grpc.insecure_channel(target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                status = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
            return True if status.status == health_pb2.HealthCheckResponse.SERVING else None

        wait_for(serving, timeout=20)
        start = cosigned_at(registry)
        wait_for(lambda: True if cosigned_at(registry) > start else None, timeout=5)
        time.sleep(2.5)  # a refresh has run meanwhile
        below = children(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert not [pid for pid in below if Path(f"/proc/{pid}").exists()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        registry.close()
    reader.join(5)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert "Traceback" not in "".join(rest)
    assert any("stopping: finishing calls in flight" in r for r in rest)


def test_serve_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    missing = invoke(
        [
            "registry",
            "serve",
            "--db",
            f"sqlite:///{tmp_path / 'none.db'}",
            "--keys",
            str(tmp_path / "keys"),
        ]
    )
    assert missing.exit_code == 2
    assert "no registry at" in missing.stderr
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    registry.close()
    other_keys = tmp_path / "other" / "keys"  # another registry: its state beside its own keys
    GateRegistry(f"sqlite:///{tmp_path / 'other.db'}", other_keys).close()
    wrong = invoke(["registry", "serve", "--db", registry.url, "--keys", str(other_keys)])
    assert wrong.exit_code == 2
    assert "this registry was made with the key" in wrong.stderr
    bad = invoke(
        [
            "registry",
            "serve",
            "--db",
            registry.url,
            "--keys",
            str(registry.keys_dir),
            "--listen",
            "127.0.0.1",
        ]
    )
    assert bad.exit_code == 2 and "--listen '127.0.0.1': no port" in bad.stderr
