"""Helpers for the department tests: a registry with every kind of department enrolled, its
service on loopback with departments' mutual TLS, and signed writes sent through real gRPC.

Certificates come from ``registry.demo_pki`` (a CA made per test); statements are signed with
the client package's ``DepartmentKey``. Nothing is mocked: the registry is a real database
(SQLite or PostgreSQL) and the service a real ``RegistryApp``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from gate_helpers import GateRegistry, LoopThread, gate_loop, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc
from permitgate_client._statements import DepartmentKey
from permitgate_client.v1 import registry_pb2 as pb
from permitgate_client.v1 import registry_pb2_grpc

from registry.admin import default_state_dir
from registry.demo_pki import DemoPki, make_demo_pki
from registry.department_keys import enrol_department
from registry.service import WRITE_METHODS, DepartmentTls, RegistryApp

DEPARTMENTS: dict[str, str] = {
    "city-planning": "planning",
    "city-land": "land",
    "city-housing": "housing",
    "city-enforcement": "enforcement",
    "town-east": "township",
    "working-group": "working_group",
    "city-water": "utility",
    "market-office": "licensing",
}
"""One enrolled department per role."""
BY_ROLE = {role: department for department, role in DEPARTMENTS.items()}
METHOD_OF = {action: method for method, action in WRITE_METHODS.items()}
S1, S2 = "110228-0001-0001", "110228-0001-0002"
HEARTBEAT = 0.2


def base_records() -> list[dict[str, Any]]:
    """Two structures; S1 with a construction planning permit and a filed case."""
    return [
        {"type": "structure", "id": S1, "area": "urban", "district": "110228"},
        {"type": "structure", "id": S2, "area": "urban", "district": "110229"},
        {
            "type": "permit",
            "id": "P-1",
            "structure": S1,
            "kind": "construction_planning",
            "status": "valid",
            "issued": "2026-01-05T00:00:00Z",
            "use": "residential",
        },
        {
            "type": "case",
            "id": "C-1",
            "structure": S1,
            "kind": "deviates_from_permit",
            "stage": "filed",
            "source": "patrol",
            "opened": "2026-02-01T00:00:00Z",
            "party": "91110000MA0000001X",
        },
    ]


@dataclass
class World:
    """A registry with the departments enrolled, their keys and certificates."""

    registry: GateRegistry
    pki: DemoPki
    keys: dict[str, DepartmentKey]
    scratch: Path
    app: RegistryApp | None = None
    loop: LoopThread = field(default_factory=gate_loop)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def state_dir(self) -> Path:
        return default_state_dir(self.registry.keys_dir)

    def request_id(self) -> str:
        return f"r-{next(self._ids)}"

    # --- the service ----------------------------------------------------------------------

    def start(self, **options: Any) -> RegistryApp:
        async def create() -> RegistryApp:
            app = await RegistryApp.create(
                db_url=self.registry.url,
                keys_dir=self.registry.keys_dir,
                state_dir=self.state_dir,
                listen="127.0.0.1:0",
                heartbeat=HEARTBEAT,
                tls=DepartmentTls(self.pki.server_cert, self.pki.server_key, self.pki.ca),
                departments_listen="127.0.0.1:0",
                **options,
            )
            await app.start()
            return app

        self.app = self.loop.run(create())
        wait_for(
            lambda: True if self.health() == health_pb2.HealthCheckResponse.SERVING else None, 20
        )
        return self.app

    def stop(self) -> None:
        if self.app is not None:
            app, self.app = self.app, None
            self.loop.run(app.stop(1.0))

    def health(self) -> int:
        assert self.app is not None
        with grpc.insecure_channel(self.app.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)

    @contextmanager
    def channel(
        self, department: str | None, *, pki: DemoPki | None = None
    ) -> Iterator[grpc.Channel]:
        """A mutual-TLS channel with ``department``'s certificate (None: no certificate)."""
        assert self.app is not None and self.app.departments_address is not None
        pki = pki or self.pki
        if department is None:
            credentials = grpc.ssl_channel_credentials(self.pki.ca.read_bytes())
        else:
            cert, key = pki.client(department)
            credentials = grpc.ssl_channel_credentials(
                self.pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes()
            )
        with grpc.secure_channel(self.app.departments_address, credentials) as channel:
            yield channel

    def statement(
        self,
        department: str,
        action: str,
        write: dict[str, Any],
        *,
        request_id: str | None = None,
        signed_at: datetime | None = None,
        key: DepartmentKey | None = None,
    ) -> bytes:
        key = key or self.keys[department]
        statement = key.statement(
            action,
            write,
            request_id=request_id or self.request_id(),
            signed_at=signed_at or datetime.now(UTC),
        )
        return key.sign(statement)

    def send(
        self, envelope: bytes, action: str, *, as_: str | None, **channel: Any
    ) -> pb.WriteResult:
        """Send a signed statement by ``action``'s RPC over ``as_``'s certificate."""
        with self.channel(as_, **channel) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)  # type: ignore[no-untyped-call]
            result: pb.WriteResult = getattr(stub, METHOD_OF[action])(
                pb.SignedWrite(statement=envelope), timeout=30
            )
            return result

    def write(
        self, department: str, action: str, write: dict[str, Any], **opts: Any
    ) -> pb.WriteResult:
        """``department`` signs and sends a write over its own certificate."""
        envelope = self.statement(department, action, write, **opts)
        return self.send(envelope, action, as_=department)

    def refused(
        self, department: str, action: str, write: dict[str, Any], **opts: Any
    ) -> tuple[grpc.StatusCode, str]:
        """A write that must be refused: its status code and details."""
        try:
            self.write(department, action, write, **opts)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            return exc.code(), exc.details() or ""
        raise AssertionError(f"{department} {action} {write} was not refused")

    def status(self, structure_id: str) -> pb.Status:
        assert self.app is not None
        with grpc.insecure_channel(self.app.address) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
            status: pb.Status = stub.GetStatus(
                pb.GetStatusRequest(structure_id=structure_id), timeout=10
            )
            return status

    def counts(self) -> tuple[int, int, int, int, int]:
        """Rows that a write adds: events, heads, department writes, cases, referrals."""
        sql = self.registry.sql
        return (
            int(sql("SELECT count(*) FROM event")[0][0]),
            int(sql("SELECT count(*) FROM head")[0][0]),
            int(sql("SELECT count(*) FROM department_write")[0][0]),
            int(sql("SELECT count(*) FROM violation_case")[0][0]),
            int(sql("SELECT count(*) FROM referral")[0][0]),
        )


def make_world(db_url: str, scratch: Path, records: list[dict[str, Any]] | None = None) -> World:
    """A registry holding ``records`` (default ``base_records``), every department enrolled."""
    registry = GateRegistry(db_url, scratch / "keys")
    registry.load(records if records is not None else base_records())
    pki = make_demo_pki(scratch / "pki", list(DEPARTMENTS))
    keys: dict[str, DepartmentKey] = {}
    for department, role in DEPARTMENTS.items():
        key = DepartmentKey.generate(department)
        key.save(scratch / "department-keys")
        keys[department] = key
        enrol_department(
            registry.db,
            registry.signer,
            default_state_dir(registry.keys_dir),
            department_id=department,
            role=role,
            name=department.replace("-", " ").title(),
            key=key.verifier,
        )
    return World(registry, pki, keys, scratch)
