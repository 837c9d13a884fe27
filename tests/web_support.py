"""Helpers for the web page's tests: a registry with something to show, a throwaway CA (the
page's certificate, an enrolled working group's client certificate and a stranger's), and the
page served over HTTPS from a thread of its own.

The registry's structures, permits and cases go in through the importer (signed, as in use);
the working group's notice and the referral are rows as the gate and the department write path
leave them. The clock is fixed (``NOW``) so that "overdue" is a fact of the data, not of the day
the tests run.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from permitgate_client._statements import DepartmentKey
from registry_support import Registry, case, permit, structure

from registry.admin import load_registry_signer
from registry.demo_pki import make_demo_pki
from registry.department_keys import DepartmentDirectory, enrol_department
from registry.storage import Database, NotificationRow, ReferralRow
from registry.web.client_proxy import ClientCertificateProxy
from registry.web.server import WebServer

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
"""The page's clock in these tests: a Monday, noon in the city."""

FLAGGED = "110228-0042-0007"
FLAGGED_CASE = "C-2026-0042"
FLAGGED_ADDRESS = "密云区鼓楼东大街 12 号 Gulou East Street 12"
SCRIPT_ADDRESS = "<script>alert('x')</script> Lane 3"
SCRIPT_STRUCTURE = "110228-0042-0666"
CLEAR = "110228-0042-0001"
NOTICE_ID = "N-0123456789abcdef"
REFERRED_CASE = "C-2026-0077"
LATE_DEPARTMENT = "city-land"


@dataclass(frozen=True)
class Sample:
    """What the sample registry holds, for the tests to look for."""

    flagged: list[str]  # structure ids with a blocking case, in id order
    notice_id: str
    overdue_case: str
    late_department: str


def fill(registry: Registry, *, extra_flagged: int = 0) -> Sample:
    """Import the sample structures and cases into an initialised registry, then add a notice
    and an overdue referral. ``extra_flagged`` more flagged structures, for paging."""
    records: list[dict[str, object]] = [
        structure(FLAGGED, address=FLAGGED_ADDRESS, declared_use="residential"),
        permit("P-2024-0001", FLAGGED, kind="land_certificate"),
        {
            **case(
                FLAGGED_CASE,
                FLAGGED,
                stage="stop_order",
                kind="no_planning_permit",
                opened="2026-11-03T02:00:00Z",
            ),
            "party": "91110228MA01ABCD1X",
        },
        structure(SCRIPT_STRUCTURE, address=SCRIPT_ADDRESS),
        case("C-2026-0666", SCRIPT_STRUCTURE, stage="filed", opened="2026-11-04T02:00:00Z"),
        structure(CLEAR, address="Quiet Road 1"),
        case("C-2026-0001", CLEAR, stage="closed", opened="2026-10-04T02:00:00Z"),
        structure("110228-0042-0100", address="Lead Road 1"),
        case("C-2026-0100", "110228-0042-0100", stage="reported", opened="2026-11-10T02:00:00Z"),
    ]
    extra = [f"110228-0099-{n:04d}" for n in range(extra_flagged)]
    for n, sid in enumerate(extra):
        records.append(structure(sid, address=f"Paging Road {n}"))
        records.append(case(f"C-P-{n:04d}", sid, stage="filed", opened="2026-11-05T02:00:00Z"))
    loaded = registry.load(records)
    assert loaded.exit_code == 0, loaded.output
    db = Database(registry.url)
    try:
        with db.session() as session:
            session.add(
                NotificationRow(
                    id=NOTICE_ID,
                    structure_id=FLAGGED,
                    office="market_regulation",
                    application_id="SAMR-2026-1188",
                    reasons=orjson.dumps(
                        [{"code": "STRUCTURE_FLAGGED", "case": FLAGGED_CASE, "article": "13"}]
                    ).decode(),
                    created_at=NOW - timedelta(days=2),
                )
            )
            found = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
            session.add(
                ReferralRow(
                    case_id=REFERRED_CASE,
                    structure_id=FLAGGED,
                    district="110228",
                    case_kind="illegal_land_use",
                    found_by=LATE_DEPARTMENT,
                    found_at=found,
                    referral_due=datetime(2026, 11, 24, 16, 0, tzinfo=UTC),
                )
            )
            session.add(  # referred in time, still waiting for a decision: not overdue
                ReferralRow(
                    case_id="C-2026-0078",
                    structure_id=CLEAR,
                    district="110228",
                    case_kind="no_planning_permit",
                    found_by="city-housing",
                    found_at=NOW - timedelta(days=1),
                    referral_due=NOW + timedelta(days=1),
                    referred_to="city-enforcement",
                    referred_at=NOW - timedelta(hours=2),
                )
            )
    finally:
        db.dispose()
    return Sample(
        flagged=sorted([FLAGGED, SCRIPT_STRUCTURE, *extra]),
        notice_id=NOTICE_ID,
        overdue_case=REFERRED_CASE,
        late_department=LATE_DEPARTMENT,
    )


WORKING_GROUP = "working-group"
"""The department the tests read the page as (enrolled, role working_group)."""
STRANGER = "not-enrolled"
"""A department with a client certificate from the same CA, never enrolled."""


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    ca: Path  # the CA of the page's certificate, to trust; it also issues client certificates
    client_ca: Path
    state_dir: Path  # the registry state where enrolment is read

    def client_certificate(self, department: str = WORKING_GROUP) -> tuple[Path, Path]:
        return self.ca.parent / f"{department}.pem", self.ca.parent / f"{department}.key"

    def context(self, department: str | None = WORKING_GROUP) -> ssl.SSLContext:
        """What a reader's TLS is: trusting the page's CA, presenting ``department``'s client
        certificate (None: none)."""
        context = ssl.create_default_context(cafile=self.ca)
        if department is not None:
            cert, key = self.client_certificate(department)
            context.load_cert_chain(cert, key)
        return context


def page_tls(folder: Path, registry: Registry) -> Tls:
    """A throwaway CA with the page's certificate (127.0.0.1, localhost) and client certificates
    for ``WORKING_GROUP`` and ``STRANGER``; ``WORKING_GROUP`` is enrolled in ``registry`` (made
    already), as ``registry department enrol`` does."""
    pki = make_demo_pki(folder, [WORKING_GROUP, STRANGER], days=1)
    db = Database(registry.url, create=False)
    try:
        enrol_department(
            db,
            load_registry_signer(db, registry.keys),
            registry.state_dir,
            department_id=WORKING_GROUP,
            role="working_group",
            name="Working group",
            key=DepartmentKey.generate(WORKING_GROUP).verifier,
        )
    finally:
        db.dispose()
    return Tls(pki.server_cert, pki.server_key, pki.ca, pki.ca, registry.state_dir)


@contextmanager
def serving(db_url: str, tls: Tls, *, page_size: int = 20) -> Iterator[WebServer]:
    """The page over ``db_url`` on 127.0.0.1 (a free port), on an event loop in a thread of its
    own; stopped, and the loop closed, when the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="web page loop", daemon=True)
    thread.start()
    db = Database(db_url, create=False)
    directory = DepartmentDirectory(tls.state_dir)
    page = WebServer(
        db,
        "127.0.0.1:0",
        tls.cert,
        tls.key,
        client_ca=tls.client_ca,
        directory=directory,
        now=lambda: NOW,
        page_size=page_size,
    )
    try:
        asyncio.run_coroutine_threadsafe(page.start(), loop).result(timeout=20)
        try:
            yield page
        finally:
            asyncio.run_coroutine_threadsafe(page.stop(grace=2), loop).result(timeout=20)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        directory.close()
        db.dispose()


@contextmanager
def through_proxy(page: WebServer, tls: Tls, department: str = WORKING_GROUP) -> Iterator[str]:
    """The page as a browser without a certificate store reads it: through a loopback
    ``ClientCertificateProxy`` presenting ``department``'s client certificate; its URL."""
    assert page.address is not None
    host, port = page.address.rsplit(":", 1)
    cert, key = tls.client_certificate(department)
    proxy = ClientCertificateProxy(
        host,
        int(port),
        trust=tls.ca,
        client_cert=cert,
        client_key=key,
        serve_cert=tls.cert,
        serve_key=tls.key,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="page proxy loop", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=20)
        try:
            yield proxy.url
        finally:
            asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=20)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
