"""The naive server: what a first version of the gate would be, for scale.

    python -m benchmarks.naive DB_URL

A ``grpc.aio`` server (on uvloop) whose ``CheckConnection`` makes one SQLAlchemy ORM query per
check on the registry database (the structure joined with its permits and cases), applies the
gate's own rules (``server.rules`` through ``server.checks``) and answers with the gate's
``Decision`` message. No cache, no signatures, no verification, no decision log, no receipts:
the gate does all of these, and still has to be faster than this. The query runs on the event
loop, as the obvious first version would write it.

Binds 127.0.0.1 on a free port, prints ``port N`` once serving, and stops when standard input
closes or on SIGTERM (as ``benchmarks.servers`` does).
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import uvloop
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc
from sqlalchemy import select

from benchmarks.servers import serve_servicer
from registry.records import Case, Permit, StatusRecord, Structure
from registry.storage import CaseRow, Database, PermitRow, StructureRow
from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage, PermitKind, PermitStatus
from server.checks import ConnectionRequest
from server.wire import wire_decision

__all__ = ["NaiveGate", "main"]

_RECORD_LIFETIME = timedelta(hours=1)


class NaiveGate(gate_pb2_grpc.PermitGateServicer):
    """Answers CheckConnection from one database query per call."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def status_of(self, structure_id: str, now: datetime) -> StatusRecord | None:
        """The structure, its permits and cases, from one query (outer joins)."""
        query = (
            select(StructureRow, PermitRow, CaseRow)
            .outerjoin(PermitRow, PermitRow.structure_id == StructureRow.id)
            .outerjoin(CaseRow, CaseRow.structure_id == StructureRow.id)
            .where(StructureRow.id == structure_id)
        )
        with self._db.session() as session:
            rows = session.execute(query).all()
        if not rows:
            return None
        s = rows[0][0]
        structure = Structure(s.id, Area(s.area), s.district, s.address, s.declared_use)
        permits = {
            p.id: Permit(
                p.id,
                p.structure_id,
                PermitKind(p.kind),
                PermitStatus(p.status),
                p.issued,
                p.expires,
                p.use,
            )
            for _, p, _ in rows
            if p is not None
        }
        cases = {
            c.id: Case(
                c.id,
                c.structure_id,
                CaseKind(c.kind),
                CaseStage(c.stage),
                CaseSource(c.source),
                c.opened,
            )
            for _, _, c in rows
            if c is not None
        }
        return StatusRecord(
            structure,
            tuple(permits.values()),
            tuple(cases.values()),
            tree_size=1,
            this_update=now,
            next_update=now + _RECORD_LIFETIME,
        )

    async def CheckConnection(  # noqa: N802  (gRPC method names)
        self, request: pb.ConnectionCheck, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Decision:
        now = datetime.now(UTC)
        check = ConnectionRequest.from_wire(request, now)
        decision = check.decide(self.status_of(check.structure_id, now), now, False)
        out = pb.Decision()
        out.MergeFrom(wire_decision(decision))
        out.decision_id = str(uuid.uuid4())
        out.decided_at.FromDatetime(now)
        return out


async def serve(db_url: str) -> None:
    db = Database(db_url, create=False)
    try:
        await serve_servicer(NaiveGate(db))
    finally:
        db.dispose()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    uvloop.run(serve(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
