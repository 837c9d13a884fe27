"""``DepartmentClient`` (blocking) and ``AsyncDepartmentClient`` (asyncio): a department writes
to the registry and reads it, as itself.

Every write is a statement (``_statements.WriteStatement``) signed with the department's own
Ed25519 key and sent over mutual TLS with the department's client certificate; the registry
accepts it only when the certificate's organisation, the statement's department and the signing
key's name are the same enrolled department, and the department's remit allows the write.

Each write has a request id (a fresh UUID4 unless the caller gives one). The statement is signed
once; when the registry cannot be reached or does not answer in time (``UNAVAILABLE``,
``DEADLINE_EXCEEDED``), or finds the same request still being written (``ABORTED``), the very
same signed bytes are sent again, a few times with backoff. The
registry does a request id's write once and answers a retry with the first result
(``WriteResult.replayed``), so a retry never opens a second case.

Reads return typed, frozen results (``PermitInfo``, ``CaseInfo``, ``ReferralInfo``,
``NoticeInfo``, ``PartyInfo``, ``MonthlyReport``); the list calls are iterators that follow the
registry's page tokens. Failed calls raise the package's ``GateError`` subclasses
(``from_rpc``): ``PermissionDeniedError`` with the rule that refused, ``ConflictError``,
``NotFoundError``, ``FailedPreconditionError``, ``InvalidCheckError`` naming the field at fault.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID
from google.protobuf.timestamp_pb2 import Timestamp

from permitgate_client._client import DEFAULT_TIMEOUT, Material, _pem
from permitgate_client._errors import GateError, from_rpc
from permitgate_client._statements import DepartmentKey
from permitgate_client._times import format_time
from permitgate_client._watch import backoff
from permitgate_client.v1 import registry_pb2 as pb
from permitgate_client.v1 import registry_pb2_grpc

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "WRITE_RETRIES",
    "AsyncDepartmentClient",
    "CaseInfo",
    "DepartmentClient",
    "MonthlyReport",
    "NewStructure",
    "NoticeInfo",
    "PartyInfo",
    "PermitInfo",
    "ReferralInfo",
    "ReportFigure",
    "WriteResult",
]

WRITE_RETRIES: Final = 4
"""How many times a call (a write, the same signed statement; or a read) is sent again after
``UNAVAILABLE`` or ``DEADLINE_EXCEEDED``."""

KEPT_STATEMENTS: Final = 1024
"""How many signed statements a client keeps by request id, to send the same bytes when a
caller retries a write under its request id."""

DEFAULT_PAGE_SIZE: Final = 100
"""Items asked for per page by the list iterators (the registry takes 1 to 1000)."""

CHANNEL_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
"""Reconnect soon after the registry comes back, so that a write's retries can reach it (gRPC's
own default waits a second, then longer, between attempts to connect)."""

RETRIED: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)
"""Failures after which the same signed write is sent again: it may not have arrived, its
answer may have been lost, or it met itself still being written (ABORTED); the request id
makes a second arrival harmless."""


# --- results ---------------------------------------------------------------------------------


def _time(message: Any, name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime; None when unset."""
    if not message.HasField(name):
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def _text(value: str) -> str | None:
    return value or None


@dataclass(frozen=True, slots=True)
class PermitInfo:
    """A permit as the registry holds it now."""

    id: str
    structure_id: str
    kind: str
    status: str
    issued: datetime | None
    expires: datetime | None
    use: str | None

    @classmethod
    def from_proto(cls, m: pb.PermitInfo) -> PermitInfo:
        return cls(
            m.id,
            m.structure_id,
            m.kind,
            m.status,
            _time(m, "issued"),
            _time(m, "expires"),
            _text(m.use),
        )


@dataclass(frozen=True, slots=True)
class CaseInfo:
    """A case: where it stands, who decides it (``decider``, a role) and leads (``lead``,
    Art. 20), and the party it names with whether it is suspended (Art. 22)."""

    id: str
    structure_id: str
    kind: str
    stage: str
    source: str
    opened: datetime | None
    party: str | None
    party_suspended: bool
    decider: str
    lead: str
    district: str
    blocking: bool

    @classmethod
    def from_proto(cls, m: pb.CaseInfo) -> CaseInfo:
        return cls(
            m.id,
            m.structure_id,
            m.kind,
            m.stage,
            m.source,
            _time(m, "opened"),
            _text(m.party),
            m.party_suspended,
            m.decider,
            m.lead,
            m.district,
            m.blocking,
        )


@dataclass(frozen=True, slots=True)
class ReferralInfo:
    """A case found outside its finder's remit, on the Art. 19 clock: referred within 2 working
    days of ``found_at`` (``referral_due``), the decision reported back within 2 working days
    of ``decided_at`` (``answer_due``). ``state``: awaiting_referral, referred, decided or
    answered; ``overdue``: "referral", "answer" or None."""

    case_id: str
    structure_id: str
    district: str
    case_kind: str
    found_by: str
    found_at: datetime | None
    referral_due: datetime | None
    referred_to: str | None
    referred_at: datetime | None
    decided_at: datetime | None
    decision: str | None
    answer_due: datetime | None
    answered_at: datetime | None
    answer: str | None
    state: str
    overdue: str | None

    @classmethod
    def from_proto(cls, m: pb.Referral) -> ReferralInfo:
        return cls(
            m.case_id,
            m.structure_id,
            m.district,
            m.case_kind,
            m.found_by,
            _time(m, "found_at"),
            _time(m, "referral_due"),
            _text(m.referred_to),
            _time(m, "referred_at"),
            _time(m, "decided_at"),
            _text(m.decision),
            _time(m, "answer_due"),
            _time(m, "answered_at"),
            _text(m.answer),
            m.state,
            _text(m.overdue),
        )


@dataclass(frozen=True, slots=True)
class NoticeInfo:
    """A licensing office's notice to the working group (Art. 13); ``state``: open or
    acknowledged."""

    id: str
    structure_id: str
    district: str
    office: str
    application_id: str
    reasons: tuple[str, ...]
    created_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    state: str

    @classmethod
    def from_proto(cls, m: pb.Notice) -> NoticeInfo:
        return cls(
            m.id,
            m.structure_id,
            m.district,
            m.office,
            m.application_id,
            tuple(m.reasons),
            _time(m, "created_at"),
            _time(m, "acknowledged_at"),
            _text(m.acknowledged_by),
            m.state,
        )


@dataclass(frozen=True, slots=True)
class PartyInfo:
    """A builder or owner named by cases (an organisation id), and whether a case that
    suspends it blocks (Art. 22)."""

    id: str
    suspended: bool
    cases: tuple[str, ...]
    suspending_cases: tuple[str, ...]

    @classmethod
    def from_proto(cls, m: pb.Party) -> PartyInfo:
        return cls(m.id, m.suspended, tuple(m.cases), tuple(m.suspending_cases))


@dataclass(frozen=True, slots=True)
class ReportFigure:
    """One figure of the monthly report: its section, the key inside it, the value."""

    section: str
    key: str
    value: int


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    """The working group's figures for one month (YYYY-MM) and district (None: the city)."""

    month: str
    district: str | None
    figures: tuple[ReportFigure, ...]

    @classmethod
    def from_proto(cls, m: pb.MonthlyReport) -> MonthlyReport:
        figures = tuple(ReportFigure(f.section, f.key, f.value) for f in m.figures)
        return cls(m.month, _text(m.district), figures)

    def section(self, name: str) -> dict[str, int]:
        """The figures of one section, by key."""
        return {f.key: f.value for f in self.figures if f.section == name}


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The registry's answer to a write: where its event is in the log (``seq``), the registry
    version once it is in, whether it was a replay of an earlier write with the same request id
    (nothing written again), and what the write changed."""

    department: str
    request_id: str
    action: str
    seq: int
    registry_version: int
    replayed: bool
    written_at: datetime | None
    permit: PermitInfo | None
    case: CaseInfo | None
    referral: ReferralInfo | None
    notice: NoticeInfo | None

    @classmethod
    def from_proto(cls, m: pb.WriteResult) -> WriteResult:
        return cls(
            m.department,
            m.request_id,
            m.action,
            m.seq,
            m.registry_version,
            m.replayed,
            _time(m, "written_at"),
            PermitInfo.from_proto(m.permit) if m.HasField("permit") else None,
            CaseInfo.from_proto(m.case) if m.HasField("case") else None,
            ReferralInfo.from_proto(m.referral) if m.HasField("referral") else None,
            NoticeInfo.from_proto(m.notice) if m.HasField("notice") else None,
        )


@dataclass(frozen=True, slots=True)
class NewStructure:
    """A structure a case creates when it is found without any record (no permit at all):
    ``open_case(..., structure=NewStructure("urban", "110228"))``."""

    area: str
    district: str
    address: str | None = None
    declared_use: str | None = None

    def to_json(self, structure_id: str) -> dict[str, Any]:
        """The structure as a write's ``structure`` member."""
        out: dict[str, Any] = {"id": structure_id, "area": self.area, "district": self.district}
        if self.address is not None:
            out["address"] = self.address
        if self.declared_use is not None:
            out["declared_use"] = self.declared_use
        return out


# --- building requests -----------------------------------------------------------------------


def _when(name: str, value: datetime) -> str:
    if not isinstance(value, datetime):
        raise TypeError(f"{name}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: give an aware datetime (with its time zone), not {value}")
    return format_time(value)


def _id(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: a non-empty string, not {value!r}")
    return value


def _certificate_organisation(pem: bytes) -> str | None:
    """The subject's organisation (O) of the first certificate in ``pem``; None when it has
    none or the bytes are not a PEM certificate (the TLS handshake then says why)."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    names = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


# --- what each write sends ------------------------------------------------------------------


def _issue_permit(
    permit_id: str,
    structure_id: str,
    kind: str,
    issued: datetime,
    status: str,
    expires: datetime | None,
    use: str | None,
) -> dict[str, Any]:
    permit: dict[str, Any] = {
        "id": _id("permit_id", permit_id),
        "structure": _id("structure_id", structure_id),
        "kind": _id("kind", kind),
        "status": _id("status", status),
        "issued": _when("issued", issued),
    }
    if expires is not None:
        permit["expires"] = _when("expires", expires)
    if use is not None:
        permit["use"] = use
    return {"permit": permit}


def _open_case(
    case_id: str,
    structure_id: str,
    kind: str,
    stage: str,
    source: str,
    opened: datetime,
    party: str | None,
    structure: NewStructure | None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": _id("case_id", case_id),
        "structure": _id("structure_id", structure_id),
        "kind": _id("kind", kind),
        "stage": _id("stage", stage),
        "source": _id("source", source),
        "opened": _when("opened", opened),
    }
    if party is not None:
        case["party"] = _id("party", party)
    write: dict[str, Any] = {"case": case}
    if structure is not None:
        if not isinstance(structure, NewStructure):
            raise TypeError(f"structure: a NewStructure, not {type(structure).__name__}")
        write["structure"] = structure.to_json(structure_id)
    return write


def _suspend_party(case_id: str, suspended: bool) -> dict[str, Any]:
    if not isinstance(suspended, bool):
        raise TypeError(f"suspended: True or False, not {suspended!r}")
    return {"case": _id("case_id", case_id), "suspended": suspended}


def _list(page_size: int, **filters: Any) -> pb.ListRequest:
    if not isinstance(page_size, int) or not 1 <= page_size <= 1000:
        raise ValueError(f"page_size: 1 to 1000, not {page_size!r}")
    request = pb.ListRequest(page_size=page_size)
    for name, value in filters.items():
        if value is None or value is False:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{name}: 0 or more, not {value!r}")
        setattr(request, name, value)
    return request


def _next_token(rpc: str, page: Any, seen: set[str]) -> str | None:
    """The page's next token; None at the end; a token given twice is the registry's fault
    (following it would loop forever)."""
    token: str = page.next_page_token
    if not token:
        return None
    if token in seen:
        raise GateError(f"{rpc}: the registry gave page token {token!r} twice")
    seen.add(token)
    return token


# --- the clients -----------------------------------------------------------------------------


class _DepartmentBase:
    """What both clients share: the options, the TLS credentials, the signing of a statement.
    No I/O here."""

    def __init__(
        self,
        target: str,
        *,
        key: DepartmentKey | str | Path | None,
        cert: Material,
        cert_key: Material,
        ca: Material | None,
        timeout: float,
        retries: int,
    ) -> None:
        if not isinstance(target, str) or not target:
            raise ValueError(f"target: give the registry's host:port, not {target!r}")
        if not timeout > 0:
            raise ValueError(f"timeout: must be more than 0 seconds, not {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: 0 or more, not {retries!r}")
        if isinstance(key, str | Path):
            key = DepartmentKey.load(Path(key))
        elif key is not None and not isinstance(key, DepartmentKey):
            raise TypeError(f"key: a DepartmentKey or a key file's path, not {type(key).__name__}")
        certificate = _pem("cert", cert)
        if certificate is None:
            raise ValueError("cert: the department's client certificate is required")
        private_key = _pem("cert_key", cert_key)
        if private_key is None:
            raise ValueError("cert_key: the key of the department's certificate is required")
        organisation = _certificate_organisation(certificate)
        if key is not None and organisation is not None and organisation != key.department:
            raise ValueError(
                f"key: {key.department!r}'s signing key, but the certificate names "
                f"{organisation!r}: the registry refuses a write whose two do not agree"
            )
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.key = key
        self.department = key.department if key is not None else organisation
        self._sent: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.credentials = grpc.ssl_channel_credentials(
            root_certificates=_pem("ca", ca),
            private_key=private_key,
            certificate_chain=certificate,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r}, department={self.department!r})"

    def _signed(self, action: str, write: dict[str, Any], request_id: str | None) -> pb.SignedWrite:
        """The statement, signed once: every attempt sends these same bytes. Asked again for
        the same request id, action and arguments (a caller retrying a call that failed), the
        bytes signed the first time are sent again, so the registry answers with the first
        result; a request id the client has not kept gets a new statement."""
        if self.key is None:
            raise ValueError(f"{action}: a write needs the department's signing key (key=...)")
        if request_id is None:
            request_id = str(uuid.uuid4())
        _id("request_id", request_id)
        what = json.dumps([action, write], sort_keys=True, separators=(",", ":"))
        with self._lock:
            kept = self._sent.get(request_id)
            if kept is not None and kept[0] == what:
                self._sent.move_to_end(request_id)
                return pb.SignedWrite(statement=kept[1])
        statement = self.key.statement(action, write, request_id=request_id)
        envelope = self.key.sign(statement)
        with self._lock:
            self._sent[request_id] = (what, envelope)
            while len(self._sent) > KEPT_STATEMENTS:
                self._sent.popitem(last=False)
        return pb.SignedWrite(statement=envelope)

    def _retry(self, exc: grpc.RpcError, failures: int) -> GateError:
        """The typed error; raised at once unless it is worth sending the call again."""
        error = from_rpc(exc)
        if error.code not in RETRIED or failures >= self.retries:
            raise error from exc
        return error


class DepartmentClient(_DepartmentBase):
    """A blocking client for one department at the registry service. Use it as a context
    manager, or call ``close``.

    ``DepartmentClient("registry.example:50060", key=Path("city-planning.key"),
    cert=Path("city-planning.pem"), cert_key=Path("city-planning.tls.key"), ca=Path("ca.pem"))``:
    ``key`` is the department's signing key (a ``DepartmentKey``, or the path of its
    ``<department>.key``; without it the client only reads); ``cert`` and ``cert_key`` its
    mutual-TLS client certificate and key; ``ca`` the CA that signed the registry's server
    certificate (each a path or the PEM bytes; None: the system's roots). ``timeout`` bounds
    each call (each attempt of a write); ``retries`` how often a write is sent again when the
    registry is unreachable or silent. One client may be shared by threads.
    """

    def __init__(
        self,
        target: str,
        *,
        key: DepartmentKey | str | Path | None,
        cert: Material,
        cert_key: Material,
        ca: Material | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = WRITE_RETRIES,
    ) -> None:
        super().__init__(
            target,
            key=key,
            cert=cert,
            cert_key=cert_key,
            ca=ca,
            timeout=timeout,
            retries=retries,
        )
        self._channel = grpc.secure_channel(target, self.credentials, options=CHANNEL_OPTIONS)
        self._stub = registry_pb2_grpc.RegistryStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> DepartmentClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    # --- the send path ---------------------------------------------------------------------

    def _call(self, rpc: str, request: Any) -> Any:
        """A read, asked again (it changes nothing) when the registry is unreachable or
        silent, as a write is."""
        method = getattr(self._stub, rpc)
        failures = 0
        while True:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                self._retry(exc, failures)
            failures += 1
            time.sleep(backoff(failures))

    def _write(
        self, rpc: str, action: str, write: dict[str, Any], request_id: str | None
    ) -> WriteResult:
        """Sign the statement once, then send it until answered (the same bytes each time)."""
        request = self._signed(action, write, request_id)
        method = getattr(self._stub, rpc)
        failures = 0
        while True:
            try:
                return WriteResult.from_proto(method(request, timeout=self.timeout))
            except grpc.RpcError as exc:
                self._retry(exc, failures)
            failures += 1
            time.sleep(backoff(failures))

    def _pages(self, rpc: str, request: pb.ListRequest, items: str, convert: Any) -> Iterator[Any]:
        """Every item of a list, page after page, until the registry gives no next token."""
        seen: set[str] = set()
        while True:
            page = self._call(rpc, request)
            for item in getattr(page, items):
                yield convert(item)
            token = _next_token(rpc, page, seen)
            if token is None:
                return
            request.page_token = token

    # --- writes ----------------------------------------------------------------------------

    def issue_permit(
        self,
        permit_id: str,
        *,
        structure_id: str,
        kind: str,
        issued: datetime,
        status: str = "valid",
        expires: datetime | None = None,
        use: str | None = None,
        request_id: str | None = None,
    ) -> WriteResult:
        """Issue a permit of ``kind`` for an existing structure (only the kind's issuer may)."""
        write = _issue_permit(permit_id, structure_id, kind, issued, status, expires, use)
        return self._write("IssuePermit", "issue_permit", write, request_id)

    def change_permit_status(
        self, permit_id: str, status: str, *, request_id: str | None = None
    ) -> WriteResult:
        """Suspend, revoke or restore (``valid``) a permit its department issued."""
        write = {"permit": _id("permit_id", permit_id), "status": _id("status", status)}
        return self._write("ChangePermitStatus", "change_permit_status", write, request_id)

    def open_case(
        self,
        case_id: str,
        structure_id: str,
        kind: str,
        stage: str,
        source: str,
        opened: datetime,
        *,
        party: str | None = None,
        structure: NewStructure | None = None,
        request_id: str | None = None,
    ) -> WriteResult:
        """Open a case found at ``opened``. Outside the department's remit only as
        ``reported``; it then awaits referral (Art. 19). ``structure`` creates the structure
        when the registry has none (a building found without any permit)."""
        write = _open_case(case_id, structure_id, kind, stage, source, opened, party, structure)
        return self._write("OpenCase", "open_case", write, request_id)

    def move_case(self, case_id: str, stage: str, *, request_id: str | None = None) -> WriteResult:
        """File or decide a case in the department's remit (move it to ``stage``)."""
        write = {"case": _id("case_id", case_id), "stage": _id("stage", stage)}
        return self._write("MoveCase", "move_case", write, request_id)

    def refer_case(self, case_id: str, to: str, *, request_id: str | None = None) -> WriteResult:
        """Refer a case this department found to department ``to`` (Art. 19)."""
        write = {"case": _id("case_id", case_id), "to": _id("to", to)}
        return self._write("ReferCase", "refer_case", write, request_id)

    def answer_referral(
        self, case_id: str, answer: str, *, request_id: str | None = None
    ) -> WriteResult:
        """Report the decision on a case referred to this department back (1-2000 chars)."""
        write = {"case": _id("case_id", case_id), "answer": _id("answer", answer)}
        return self._write("AnswerReferral", "answer_referral", write, request_id)

    def acknowledge_notice(self, notice_id: str, *, request_id: str | None = None) -> WriteResult:
        """The working group acknowledges a notice in its inbox."""
        write = {"notice": _id("notice_id", notice_id)}
        return self._write("AcknowledgeNotice", "acknowledge_notice", write, request_id)

    def suspend_party(
        self, case_id: str, suspended: bool = True, *, request_id: str | None = None
    ) -> WriteResult:
        """Suspend the party a case names, its order ignored (Art. 22), or lift that
        (``suspended=False``)."""
        write = _suspend_party(case_id, suspended)
        return self._write("SuspendParty", "suspend_party", write, request_id)

    # --- reads -----------------------------------------------------------------------------

    def get_permit(self, permit_id: str) -> PermitInfo:
        """Permit ``permit_id`` as the registry holds it; ``NotFoundError`` when none."""
        return PermitInfo.from_proto(self._call("GetPermit", pb.GetRequest(id=permit_id)))

    def get_case(self, case_id: str) -> CaseInfo:
        """Case ``case_id`` (with its district, decider and lead); ``NotFoundError`` when none."""
        return CaseInfo.from_proto(self._call("GetCase", pb.GetRequest(id=case_id)))

    def get_referral(self, case_id: str) -> ReferralInfo:
        """The referral of a case (by the case's id)."""
        return ReferralInfo.from_proto(self._call("GetReferral", pb.GetRequest(id=case_id)))

    def get_notice(self, notice_id: str) -> NoticeInfo:
        """Notice ``notice_id`` of the working group's inbox; ``NotFoundError`` when none."""
        return NoticeInfo.from_proto(self._call("GetNotice", pb.GetRequest(id=notice_id)))

    def get_party(self, party_id: str) -> PartyInfo:
        """Party ``party_id``: the cases naming it and those that suspend it."""
        return PartyInfo.from_proto(self._call("GetParty", pb.GetRequest(id=party_id)))

    def permits(
        self,
        *,
        structure_id: str | None = None,
        kind: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[PermitInfo]:
        """Every permit (of a structure, of a kind), following the pages."""
        request = _list(page_size, structure_id=structure_id, kind=kind)
        return self._pages("ListPermits", request, "permits", PermitInfo.from_proto)

    def cases(
        self,
        *,
        structure_id: str | None = None,
        district: str | None = None,
        kind: str | None = None,
        party: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[CaseInfo]:
        """Every case (of a structure, district, kind or party), following the pages."""
        request = _list(
            page_size, structure_id=structure_id, district=district, kind=kind, party=party
        )
        return self._pages("ListCases", request, "cases", CaseInfo.from_proto)

    def referrals(
        self,
        *,
        structure_id: str | None = None,
        district: str | None = None,
        state: str | None = None,
        department: str | None = None,
        min_age_days: int | None = None,
        max_age_days: int | None = None,
        overdue: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[ReferralInfo]:
        """Every referral (by structure, district, state, finding or receiving department,
        age; ``overdue``: late ones only), following the pages."""
        request = _list(
            page_size,
            structure_id=structure_id,
            district=district,
            state=state,
            department=department,
            min_age_days=min_age_days,
            max_age_days=max_age_days,
            overdue_only=overdue,
        )
        return self._pages("ListReferrals", request, "referrals", ReferralInfo.from_proto)

    def notices(
        self,
        *,
        structure_id: str | None = None,
        district: str | None = None,
        state: str | None = None,
        office: str | None = None,
        min_age_days: int | None = None,
        max_age_days: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[NoticeInfo]:
        """Every notice to the working group (by structure, district, state, office, age),
        following the pages."""
        request = _list(
            page_size,
            structure_id=structure_id,
            district=district,
            state=state,
            office=office,
            min_age_days=min_age_days,
            max_age_days=max_age_days,
        )
        return self._pages("ListNotices", request, "notices", NoticeInfo.from_proto)

    def parties(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[PartyInfo]:
        """Every party named by a case, following the pages."""
        return self._pages("ListParties", _list(page_size), "parties", PartyInfo.from_proto)

    def report(self, month: str, district: str | None = None) -> MonthlyReport:
        """The monthly figures (Art. 6) for ``month`` (YYYY-MM) and a district (None: city)."""
        request = pb.ReportRequest(month=_id("month", month), district=district or "")
        return MonthlyReport.from_proto(self._call("Report", request))


class AsyncDepartmentClient(_DepartmentBase):
    """The asyncio twin of ``DepartmentClient``: the same options and calls, awaited; the
    lists are async iterators. Use it as an async context manager, or await ``close``."""

    def __init__(
        self,
        target: str,
        *,
        key: DepartmentKey | str | Path | None,
        cert: Material,
        cert_key: Material,
        ca: Material | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = WRITE_RETRIES,
    ) -> None:
        super().__init__(
            target,
            key=key,
            cert=cert,
            cert_key=cert_key,
            ca=ca,
            timeout=timeout,
            retries=retries,
        )
        self._channel = grpc.aio.secure_channel(target, self.credentials, options=CHANNEL_OPTIONS)
        self._stub = registry_pb2_grpc.RegistryStub(self._channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> AsyncDepartmentClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    # --- the send path ---------------------------------------------------------------------

    async def _call(self, rpc: str, request: Any) -> Any:
        method = getattr(self._stub, rpc)
        failures = 0
        while True:
            try:
                return await method(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                self._retry(exc, failures)
            failures += 1
            await asyncio.sleep(backoff(failures))

    async def _write(
        self, rpc: str, action: str, write: dict[str, Any], request_id: str | None
    ) -> WriteResult:
        request = self._signed(action, write, request_id)
        method = getattr(self._stub, rpc)
        failures = 0
        while True:
            try:
                return WriteResult.from_proto(await method(request, timeout=self.timeout))
            except grpc.RpcError as exc:
                self._retry(exc, failures)
            failures += 1
            await asyncio.sleep(backoff(failures))

    async def _pages(
        self, rpc: str, request: pb.ListRequest, items: str, convert: Any
    ) -> AsyncIterator[Any]:
        seen: set[str] = set()
        while True:
            page = await self._call(rpc, request)
            for item in getattr(page, items):
                yield convert(item)
            token = _next_token(rpc, page, seen)
            if token is None:
                return
            request.page_token = token

    # --- writes ----------------------------------------------------------------------------

    async def issue_permit(
        self,
        permit_id: str,
        *,
        structure_id: str,
        kind: str,
        issued: datetime,
        status: str = "valid",
        expires: datetime | None = None,
        use: str | None = None,
        request_id: str | None = None,
    ) -> WriteResult:
        """``DepartmentClient.issue_permit``, awaited."""
        write = _issue_permit(permit_id, structure_id, kind, issued, status, expires, use)
        return await self._write("IssuePermit", "issue_permit", write, request_id)

    async def change_permit_status(
        self, permit_id: str, status: str, *, request_id: str | None = None
    ) -> WriteResult:
        """``DepartmentClient.change_permit_status``, awaited."""
        write = {"permit": _id("permit_id", permit_id), "status": _id("status", status)}
        return await self._write("ChangePermitStatus", "change_permit_status", write, request_id)

    async def open_case(
        self,
        case_id: str,
        structure_id: str,
        kind: str,
        stage: str,
        source: str,
        opened: datetime,
        *,
        party: str | None = None,
        structure: NewStructure | None = None,
        request_id: str | None = None,
    ) -> WriteResult:
        """``DepartmentClient.open_case``, awaited."""
        write = _open_case(case_id, structure_id, kind, stage, source, opened, party, structure)
        return await self._write("OpenCase", "open_case", write, request_id)

    async def move_case(
        self, case_id: str, stage: str, *, request_id: str | None = None
    ) -> WriteResult:
        """``DepartmentClient.move_case``, awaited."""
        write = {"case": _id("case_id", case_id), "stage": _id("stage", stage)}
        return await self._write("MoveCase", "move_case", write, request_id)

    async def refer_case(
        self, case_id: str, to: str, *, request_id: str | None = None
    ) -> WriteResult:
        """``DepartmentClient.refer_case``, awaited."""
        write = {"case": _id("case_id", case_id), "to": _id("to", to)}
        return await self._write("ReferCase", "refer_case", write, request_id)

    async def answer_referral(
        self, case_id: str, answer: str, *, request_id: str | None = None
    ) -> WriteResult:
        """``DepartmentClient.answer_referral``, awaited."""
        write = {"case": _id("case_id", case_id), "answer": _id("answer", answer)}
        return await self._write("AnswerReferral", "answer_referral", write, request_id)

    async def acknowledge_notice(
        self, notice_id: str, *, request_id: str | None = None
    ) -> WriteResult:
        """``DepartmentClient.acknowledge_notice``, awaited."""
        write = {"notice": _id("notice_id", notice_id)}
        return await self._write("AcknowledgeNotice", "acknowledge_notice", write, request_id)

    async def suspend_party(
        self, case_id: str, suspended: bool = True, *, request_id: str | None = None
    ) -> WriteResult:
        """``DepartmentClient.suspend_party``, awaited."""
        write = _suspend_party(case_id, suspended)
        return await self._write("SuspendParty", "suspend_party", write, request_id)

    # --- reads -----------------------------------------------------------------------------

    async def get_permit(self, permit_id: str) -> PermitInfo:
        """``DepartmentClient.get_permit``, awaited."""
        return PermitInfo.from_proto(await self._call("GetPermit", pb.GetRequest(id=permit_id)))

    async def get_case(self, case_id: str) -> CaseInfo:
        """``DepartmentClient.get_case``, awaited."""
        return CaseInfo.from_proto(await self._call("GetCase", pb.GetRequest(id=case_id)))

    async def get_referral(self, case_id: str) -> ReferralInfo:
        """``DepartmentClient.get_referral``, awaited."""
        request = pb.GetRequest(id=case_id)
        return ReferralInfo.from_proto(await self._call("GetReferral", request))

    async def get_notice(self, notice_id: str) -> NoticeInfo:
        """``DepartmentClient.get_notice``, awaited."""
        return NoticeInfo.from_proto(await self._call("GetNotice", pb.GetRequest(id=notice_id)))

    async def get_party(self, party_id: str) -> PartyInfo:
        """``DepartmentClient.get_party``, awaited."""
        return PartyInfo.from_proto(await self._call("GetParty", pb.GetRequest(id=party_id)))

    def permits(
        self,
        *,
        structure_id: str | None = None,
        kind: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[PermitInfo]:
        """``DepartmentClient.permits``, awaited."""
        request = _list(page_size, structure_id=structure_id, kind=kind)
        return self._pages("ListPermits", request, "permits", PermitInfo.from_proto)

    def cases(
        self,
        *,
        structure_id: str | None = None,
        district: str | None = None,
        kind: str | None = None,
        party: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[CaseInfo]:
        """``DepartmentClient.cases``, awaited."""
        request = _list(
            page_size, structure_id=structure_id, district=district, kind=kind, party=party
        )
        return self._pages("ListCases", request, "cases", CaseInfo.from_proto)

    def referrals(
        self,
        *,
        structure_id: str | None = None,
        district: str | None = None,
        state: str | None = None,
        department: str | None = None,
        min_age_days: int | None = None,
        max_age_days: int | None = None,
        overdue: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[ReferralInfo]:
        """``DepartmentClient.referrals``, awaited."""
        request = _list(
            page_size,
            structure_id=structure_id,
            district=district,
            state=state,
            department=department,
            min_age_days=min_age_days,
            max_age_days=max_age_days,
            overdue_only=overdue,
        )
        return self._pages("ListReferrals", request, "referrals", ReferralInfo.from_proto)

    def notices(
        self,
        *,
        structure_id: str | None = None,
        district: str | None = None,
        state: str | None = None,
        office: str | None = None,
        min_age_days: int | None = None,
        max_age_days: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[NoticeInfo]:
        """``DepartmentClient.notices``, awaited."""
        request = _list(
            page_size,
            structure_id=structure_id,
            district=district,
            state=state,
            office=office,
            min_age_days=min_age_days,
            max_age_days=max_age_days,
        )
        return self._pages("ListNotices", request, "notices", NoticeInfo.from_proto)

    def parties(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[PartyInfo]:
        """``DepartmentClient.parties``, awaited."""
        return self._pages("ListParties", _list(page_size), "parties", PartyInfo.from_proto)

    async def report(self, month: str, district: str | None = None) -> MonthlyReport:
        """``DepartmentClient.report``, awaited."""
        request = pb.ReportRequest(month=_id("month", month), district=district or "")
        return MonthlyReport.from_proto(await self._call("Report", request))
