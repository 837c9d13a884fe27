"""A department-facing registry on loopback for the client and command-line tests: a small
``grpc.aio`` servicer of ``permitgate.v1.Registry`` over mutual TLS, with test certificates.

It does what a department's client relies on, the way the contract says the registry does it:
the client certificate's organisation (O), the statement's department and the signing key's name
must be one enrolled department (``verify_statement`` with that department's key); the statement's
action must be the method's; the remit comes from ``registry.departments`` (PERMISSION_DENIED
names the rule); a request id's write is done once and a retry answers the first result with
``replayed`` when its statement is the same (its payload's SHA-256), else ALREADY_EXISTS; lists
are paged. It can also be told to lose the answer of a write it made (``lose_answers``), which
the real service cannot be made to do on demand. State is kept in memory; the tests read it to
check what was written.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gate_helpers import gate_loop
from google.protobuf.timestamp_pb2 import Timestamp
from permitgate_client import DepartmentKey, VerificationError, VerifierKey
from permitgate_client._statements import statement_department, verify_statement
from permitgate_client.formats import parse_time
from permitgate_client.v1 import registry_pb2 as pb
from permitgate_client.v1 import registry_pb2_grpc

from registry.departments import (
    CASE_REMIT,
    ORDER_STAGES,
    Role,
    may_acknowledge,
    may_change_permit,
    may_issue_permit,
    may_move_case,
    may_open_case,
    may_receive_referral,
    may_suspend_party,
)
from registry.vocabulary import BLOCKING_STAGES, CaseKind, CaseStage, PermitKind

# --- test certificates -----------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """One department's files: signing key, client certificate and its key."""

    department: str
    key: Path
    cert: Path
    cert_key: Path


def _name(common: str, organisation: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if organisation is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class DepartmentPKI:
    """A CA, the registry's server certificate (127.0.0.1, localhost) and client certificates
    whose subject's O is the department id, written under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(_name("permitgate test CA"))
            .issuer_name(_name("permitgate test CA"))
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = folder / "ca.crt"
        self.ca.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._issue(
            "registry",
            None,
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
        )

    def _issue(
        self, common: str, organisation: str | None, san: x509.SubjectAlternativeName | None
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common, organisation))
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        cert_path = self.folder / f"{common}.crt"
        key_path = self.folder / f"{common}.tls.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path

    def client(self, department: str, organisation: str | None = None) -> Identity:
        """A department's signing key and client certificate (O = ``organisation``, by
        default the department itself)."""
        keys = self.folder / "keys" / (organisation or department)
        key_path = keys / f"{department}.key"
        if not key_path.exists():
            DepartmentKey.generate(department).save(keys)
        cert, cert_key = self._issue(
            f"{department}-as-{organisation or department}", organisation or department, None
        )
        return Identity(department, key_path, cert, cert_key)


# --- the registry ----------------------------------------------------------------------------


def _stamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


@dataclass
class Registry:
    """What the loopback registry holds and saw."""

    structures: dict[str, str] = field(default_factory=dict)  # id -> district
    departments: dict[str, tuple[Role, VerifierKey]] = field(default_factory=dict)
    permits: dict[str, pb.PermitInfo] = field(default_factory=dict)
    cases: dict[str, pb.CaseInfo] = field(default_factory=dict)
    referrals: dict[str, pb.Referral] = field(default_factory=dict)
    notices: dict[str, pb.Notice] = field(default_factory=dict)
    writes: dict[tuple[str, str], tuple[bytes, pb.WriteResult]] = field(default_factory=dict)
    statements: list[bytes] = field(default_factory=list)  # every statement received, in order
    lose_answers: dict[str, int] = field(default_factory=dict)  # request id -> answers to lose
    lost_status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE  # what a lost answer says
    figures: list[tuple[str, str, int]] = field(default_factory=list)
    target: str = ""
    ca: Path = Path()

    def enrol(self, identity: Identity, role: Role) -> None:
        key = DepartmentKey.load(identity.key)
        self.departments[identity.department] = (role, key.verifier)

    def add_notice(self, notice_id: str, structure_id: str, office: str, age_days: int) -> None:
        created = datetime.now(UTC) - timedelta(days=age_days)
        self.notices[notice_id] = pb.Notice(
            id=notice_id,
            structure_id=structure_id,
            district=self.structures[structure_id],
            office=office,
            application_id=f"A-{notice_id}",
            reasons=["MISSING_PERMIT"],
            created_at=_stamp(created),
            state="open",
        )


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _refuse(code: grpc.StatusCode, message: str) -> _Refused:
    return _Refused(code, message)


def _peer_organisation(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        raise _refuse(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
    cert = x509.load_pem_x509_certificate(pems[0])
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not names:
        raise _refuse(grpc.StatusCode.PERMISSION_DENIED, "the certificate names no organisation")
    return str(names[0].value)


_RPC_ACTION = {
    "IssuePermit": "issue_permit",
    "ChangePermitStatus": "change_permit_status",
    "OpenCase": "open_case",
    "MoveCase": "move_case",
    "ReferCase": "refer_case",
    "AnswerReferral": "answer_referral",
    "AcknowledgeNotice": "acknowledge_notice",
    "SuspendParty": "suspend_party",
}


def _state(referral: pb.Referral) -> str:
    if not referral.HasField("referred_at"):
        return "awaiting_referral"
    if not referral.HasField("decided_at"):
        return "referred"
    if not referral.HasField("answered_at"):
        return "decided"
    return "answered"


class _Servicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, registry: Registry) -> None:
        self.r = registry

    # --- writes ------------------------------------------------------------------------------

    async def _write(
        self, rpc: str, request: pb.SignedWrite, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.WriteResult:
        r = self.r
        r.statements.append(request.statement)
        try:
            organisation = _peer_organisation(context)
            department = statement_department(request.statement)
            enrolled = r.departments.get(department)
            if enrolled is None:
                raise _refuse(grpc.StatusCode.PERMISSION_DENIED, f"{department}: not enrolled")
            role, key = enrolled
            statement = verify_statement(request.statement, [key])
            if organisation != department:
                raise _refuse(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the client certificate names {organisation!r}, the statement {department!r}",
                )
            if statement.action != _RPC_ACTION[rpc]:
                raise _refuse(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"action: {statement.action!r} sent to {rpc}",
                )
            digest = hashlib.sha256(statement.payload()).digest()  # as the registry: the payload
            done = r.writes.get((department, statement.request_id))
            if done is not None:
                if done[0] != digest:
                    raise _refuse(
                        grpc.StatusCode.ALREADY_EXISTS,
                        f"request_id {statement.request_id!r} was used for another write",
                    )
                result = pb.WriteResult()
                result.CopyFrom(done[1])
                result.replayed = True
            else:
                result = self._apply(role, department, statement.action, statement.write)
                result.department = department
                result.request_id = statement.request_id
                result.action = statement.action
                result.seq = len(r.writes) + 1
                result.registry_version = len(r.writes) + 2
                result.written_at.FromDatetime(datetime.now(UTC))
                r.writes[(department, statement.request_id)] = (digest, result)
        except _Refused as exc:
            await context.abort(exc.code, str(exc))
        except VerificationError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except (ValueError, KeyError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        lost = r.lose_answers.get(statement.request_id, 0)
        if lost:
            r.lose_answers[statement.request_id] = lost - 1
            await context.abort(r.lost_status, "answer lost (scripted)")
        return result

    def _apply(self, role: Role, department: str, action: str, w: dict[str, Any]) -> pb.WriteResult:
        r = self.r
        denied = grpc.StatusCode.PERMISSION_DENIED
        if action == "issue_permit":
            p = w["permit"]
            kind = PermitKind(p["kind"])
            refusal = may_issue_permit(role, kind)
            if refusal:
                raise _refuse(denied, str(refusal))
            if p["structure"] not in r.structures:
                raise _refuse(grpc.StatusCode.NOT_FOUND, f"permit.structure: {p['structure']}")
            if p["id"] in r.permits:
                raise _refuse(grpc.StatusCode.ALREADY_EXISTS, f"permit.id: {p['id']} exists")
            permit = pb.PermitInfo(
                id=p["id"],
                structure_id=p["structure"],
                kind=kind.value,
                status=p["status"],
                issued=_stamp(parse_time(p["issued"])),
                expires=_stamp(parse_time(p["expires"])) if "expires" in p else None,
                use=p.get("use", ""),
            )
            r.permits[permit.id] = permit
            return pb.WriteResult(permit=permit)
        if action == "change_permit_status":
            permit = self._permit(w["permit"])
            refusal = may_change_permit(role, PermitKind(permit.kind))
            if refusal:
                raise _refuse(denied, str(refusal))
            permit.status = w["status"]
            return pb.WriteResult(permit=permit)
        if action == "open_case":
            c = w["case"]
            kind_ = CaseKind(c["kind"])
            stage = CaseStage(c["stage"])
            refusal = may_open_case(role, kind_, stage)
            if refusal:
                raise _refuse(denied, str(refusal))
            if "structure" in w:
                r.structures[w["structure"]["id"]] = w["structure"]["district"]
            if c["structure"] not in r.structures:
                raise _refuse(grpc.StatusCode.NOT_FOUND, f"case.structure: {c['structure']}")
            if c["id"] in r.cases:
                raise _refuse(grpc.StatusCode.ALREADY_EXISTS, f"case.id: {c['id']} exists")
            opened = parse_time(c["opened"])
            case = pb.CaseInfo(
                id=c["id"],
                structure_id=c["structure"],
                kind=kind_.value,
                stage=stage.value,
                source=c["source"],
                opened=_stamp(opened),
                party=c.get("party", ""),
                decider=CASE_REMIT[kind_].value,
                lead=CASE_REMIT[kind_].value,
                district=r.structures[c["structure"]],
                blocking=stage in BLOCKING_STAGES,
            )
            r.cases[case.id] = case
            result = pb.WriteResult(case=case)
            if CASE_REMIT[kind_] is not role:
                referral = pb.Referral(
                    case_id=case.id,
                    structure_id=case.structure_id,
                    district=case.district,
                    case_kind=case.kind,
                    found_by=department,
                    found_at=_stamp(opened),
                    referral_due=_stamp(opened + timedelta(days=2)),
                )
                referral.state = _state(referral)
                r.referrals[case.id] = referral
                result.referral.CopyFrom(referral)
            return result
        if action == "move_case":
            case = self._case(w["case"])
            refusal = may_move_case(role, CaseKind(case.kind))
            if refusal:
                raise _refuse(denied, str(refusal))
            case.stage = w["stage"]
            case.blocking = CaseStage(case.stage) in BLOCKING_STAGES
            return pb.WriteResult(case=case)
        if action == "refer_case":
            referral = self._referral(w["case"])
            if referral.found_by != department:
                raise _refuse(denied, f"Art. 19: {referral.found_by} refers it, not {department}")
            to = r.departments.get(w["to"])
            if to is None:
                raise _refuse(grpc.StatusCode.NOT_FOUND, f"to: {w['to']}: not enrolled")
            refusal = may_receive_referral(to[0], CaseKind(referral.case_kind))
            if refusal:
                raise _refuse(denied, str(refusal))
            referral.referred_to = w["to"]
            referral.referred_at.FromDatetime(datetime.now(UTC))
            referral.state = _state(referral)
            return pb.WriteResult(referral=referral)
        if action == "answer_referral":
            referral = self._referral(w["case"])
            if referral.state != "decided":
                raise _refuse(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"case {w['case']}: the referral is {referral.state}, not decided",
                )
            referral.answer = w["answer"]
            referral.answered_at.FromDatetime(datetime.now(UTC))
            referral.state = _state(referral)
            return pb.WriteResult(referral=referral)
        if action == "acknowledge_notice":
            refusal = may_acknowledge(role)
            if refusal:
                raise _refuse(denied, str(refusal))
            notice = self.r.notices.get(w["notice"])
            if notice is None:
                raise _refuse(grpc.StatusCode.NOT_FOUND, f"notice {w['notice']}: none")
            notice.state = "acknowledged"
            notice.acknowledged_by = department
            notice.acknowledged_at.FromDatetime(datetime.now(UTC))
            return pb.WriteResult(notice=notice)
        if action == "suspend_party":
            case = self._case(w["case"])
            refusal = may_suspend_party(role, CaseKind(case.kind))
            if refusal:
                raise _refuse(denied, str(refusal))
            if w["suspended"] and (not case.party or CaseStage(case.stage) not in ORDER_STAGES):
                raise _refuse(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"case {case.id}: names no party or is not at an order stage",
                )
            case.party_suspended = bool(w["suspended"])
            return pb.WriteResult(case=case)
        raise _refuse(grpc.StatusCode.INVALID_ARGUMENT, f"action: {action}")

    def _permit(self, permit_id: str) -> pb.PermitInfo:
        if permit_id not in self.r.permits:
            raise _refuse(grpc.StatusCode.NOT_FOUND, f"permit {permit_id}: none")
        return self.r.permits[permit_id]

    def _case(self, case_id: str) -> pb.CaseInfo:
        if case_id not in self.r.cases:
            raise _refuse(grpc.StatusCode.NOT_FOUND, f"case {case_id}: none")
        return self.r.cases[case_id]

    def _referral(self, case_id: str) -> pb.Referral:
        if case_id not in self.r.referrals:
            raise _refuse(grpc.StatusCode.NOT_FOUND, f"referral of case {case_id}: none")
        return self.r.referrals[case_id]

    # --- reads -------------------------------------------------------------------------------

    async def _reader(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            organisation = _peer_organisation(context)
        except _Refused as exc:
            await context.abort(exc.code, str(exc))
        if organisation not in self.r.departments:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{organisation}: unknown")

    async def _get(self, table: dict[str, Any], key: str, context: Any) -> Any:
        await self._reader(context)
        if key not in table:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{key}: none")
        return table[key]

    async def _page(
        self,
        items: list[Any],
        request: pb.ListRequest,
        context: Any,
        keep: Callable[[Any], bool],
    ) -> tuple[list[Any], str]:
        await self._reader(context)
        chosen = [item for item in items if keep(item)]
        start = int(request.page_token.removeprefix("p") or 0)
        size = request.page_size or 100
        end = start + size
        return chosen[start:end], f"p{end}" if end < len(chosen) else ""

    async def GetPermit(self, request: pb.GetRequest, context: Any) -> pb.PermitInfo:  # noqa: N802
        result: pb.PermitInfo = await self._get(self.r.permits, request.id, context)
        return result

    async def GetCase(self, request: pb.GetRequest, context: Any) -> pb.CaseInfo:  # noqa: N802
        result: pb.CaseInfo = await self._get(self.r.cases, request.id, context)
        return result

    async def GetReferral(self, request: pb.GetRequest, context: Any) -> pb.Referral:  # noqa: N802
        result: pb.Referral = await self._get(self.r.referrals, request.id, context)
        return result

    async def GetNotice(self, request: pb.GetRequest, context: Any) -> pb.Notice:  # noqa: N802
        result: pb.Notice = await self._get(self.r.notices, request.id, context)
        return result

    async def ListPermits(self, request: pb.ListRequest, context: Any) -> pb.PermitPage:  # noqa: N802
        items, token = await self._page(
            list(self.r.permits.values()),
            request,
            context,
            lambda p: (
                (not request.structure_id or p.structure_id == request.structure_id)
                and (not request.kind or p.kind == request.kind)
            ),
        )
        return pb.PermitPage(permits=items, next_page_token=token)

    async def ListCases(self, request: pb.ListRequest, context: Any) -> pb.CasePage:  # noqa: N802
        items, token = await self._page(
            list(self.r.cases.values()),
            request,
            context,
            lambda c: (
                (not request.district or c.district == request.district)
                and (not request.kind or c.kind == request.kind)
            ),
        )
        return pb.CasePage(cases=items, next_page_token=token)

    async def ListReferrals(self, request: pb.ListRequest, context: Any) -> pb.ReferralPage:  # noqa: N802
        items, token = await self._page(
            list(self.r.referrals.values()),
            request,
            context,
            lambda f: (
                (not request.district or f.district == request.district)
                and (not request.state or f.state == request.state)
                and (not request.overdue_only or bool(f.overdue))
            ),
        )
        return pb.ReferralPage(referrals=items, next_page_token=token)

    async def ListNotices(self, request: pb.ListRequest, context: Any) -> pb.NoticePage:  # noqa: N802
        now = datetime.now(UTC)

        def keep(n: pb.Notice) -> bool:
            age = (now - n.created_at.ToDatetime(tzinfo=UTC)).days
            return (
                (not request.district or n.district == request.district)
                and (not request.office or n.office == request.office)
                and (not request.state or n.state == request.state)
                and age >= request.min_age_days
                and (not request.max_age_days or age <= request.max_age_days)
            )

        items, token = await self._page(list(self.r.notices.values()), request, context, keep)
        return pb.NoticePage(notices=items, next_page_token=token)

    async def Report(self, request: pb.ReportRequest, context: Any) -> pb.MonthlyReport:  # noqa: N802
        await self._reader(context)
        figures = [pb.ReportFigure(section=s, key=k, value=v) for s, k, v in self.r.figures]
        return pb.MonthlyReport(month=request.month, district=request.district, figures=figures)


for _rpc in _RPC_ACTION:

    def _method(rpc: str) -> Any:
        async def write(
            self: _Servicer, request: pb.SignedWrite, context: grpc.aio.ServicerContext[Any, Any]
        ) -> pb.WriteResult:
            return await self._write(rpc, request, context)

        return write

    setattr(_Servicer, _rpc, _method(_rpc))


@contextmanager
def loopback_registry(pki: DepartmentPKI, structures: dict[str, str]) -> Iterator[Registry]:
    """The loopback registry over mutual TLS on 127.0.0.1 (a free port), holding
    ``structures`` (id -> district)."""
    registry = Registry(structures=dict(structures), ca=pki.ca)
    loop = gate_loop()

    async def start() -> grpc.aio.Server:
        server = grpc.aio.server()
        registry_pb2_grpc.add_RegistryServicer_to_server(_Servicer(registry), server)  # type: ignore[no-untyped-call]
        credentials = grpc.ssl_server_credentials(
            [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
            root_certificates=pki.ca.read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        registry.target = f"127.0.0.1:{port}"
        return server

    server = loop.run(start())
    try:
        yield registry
    finally:
        loop.run(server.stop(0.5))
