"""The Registry service's reads for departments: Get/List of permits, cases, referrals, notices
and parties, and the monthly report (``permitgate.v1.Registry``, protos/permitgate/v1).

Each handler first awaits ``authorise(context)``, which the service supplies: it aborts the call
unless the caller is an enrolled department (its mutual-TLS certificate), so nothing is read for
anyone else. Then it checks the request, reads in a thread of its own (the database is never
read on the event loop) and answers from ``registry.inbox`` and ``registry.monthly_report``:

* a list refuses filters it does not take with ``INVALID_ARGUMENT`` naming each (the proto's
  ``ListRequest`` comments say which list takes which), and a ``page_size`` above 1000, a bad
  ``page_token``, an unknown ``state`` likewise;
* a get with an id that is not one is ``INVALID_ARGUMENT``; with an unknown id, ``NOT_FOUND``
  naming it;
* ages (``min_age_days``, ``max_age_days``; 0: no bound), states and lateness are as of the
  service's clock (``clock``), read once per call;
* a case or permit (``GetCase``, ``GetPermit``, each item of ``ListCases`` and ``ListPermits``)
  is answered only when its row is what the registry signed: it is compared with the current
  status record of its structure in the service's held, verified state (``signed``;
  ``registry.signed_reads``). On a difference the state is brought up to the newest head and the
  rows read again (a write just committed); a difference that remains is ``DATA_LOSS`` naming
  it, never the row. Referrals, notices and parties are answered from their rows (what
  ``registry.signed_reads`` says is not checked).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn, TypeVar

import grpc
from google.protobuf.message import Message
from permitgate_client.v1 import registry_pb2 as pb
from sqlalchemy.orm import Session

from registry import inbox
from registry.department_messages import (
    case_message,
    notice_message,
    party_message,
    permit_message,
    referral_message,
)
from registry.heartbeat import run_blocking
from registry.monthly_report import month_bounds, monthly_report
from registry.signed_reads import SignedState, disagreement
from registry.storage import Database
from registry.vocabulary import id_error

__all__ = ["LIST_FILTERS", "Authorise", "DepartmentReads"]

Context = Any  # grpc.aio.ServicerContext: the grpc package ships no type information
Authorise = Callable[[Context], Awaitable[object]]
"""Aborts the call (raises) unless the caller is an enrolled department."""

T = TypeVar("T")

_FILTERS: Final = (
    "structure_id",
    "district",
    "state",
    "department",
    "office",
    "kind",
    "min_age_days",
    "max_age_days",
    "overdue_only",
    "party",
)

LIST_FILTERS: Final[dict[str, frozenset[str]]] = {
    "ListPermits": frozenset({"structure_id", "kind"}),
    "ListCases": frozenset({"structure_id", "district", "kind", "party"}),
    "ListReferrals": frozenset(
        {
            "structure_id",
            "district",
            "state",
            "department",
            "min_age_days",
            "max_age_days",
            "overdue_only",
        }
    ),
    "ListNotices": frozenset(
        {"structure_id", "district", "state", "office", "min_age_days", "max_age_days"}
    ),
    "ListParties": frozenset(),
}
"""The filters each list takes (the others are refused)."""


class _Refused(Exception):
    """A request refused before any reading: the status code and why."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


async def _abort(context: Context, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)  # raises
    raise AssertionError("context.abort returned")  # pragma: no cover


def _given(request: pb.ListRequest, name: str) -> Any:
    """A filter's value, or None when the request leaves it at its default (not given)."""
    value = getattr(request, name)
    return value if value else None


def _check_filters(method: str, request: pb.ListRequest) -> dict[str, Any]:
    """The filters given, by name; ``_Refused`` naming those ``method`` does not take."""
    given = {name: _given(request, name) for name in _FILTERS}
    given = {name: value for name, value in given.items() if value is not None}
    foreign = sorted(set(given) - LIST_FILTERS[method])
    if foreign:
        takes = ", ".join(sorted(LIST_FILTERS[method])) or "none"
        raise _Refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{method} does not take the filter{'s' if len(foreign) > 1 else ''} "
            f"{', '.join(foreign)} (it takes: {takes})",
        )
    if request.page_size > inbox.MAX_PAGE_SIZE:
        raise _Refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"page_size: {request.page_size} is more than {inbox.MAX_PAGE_SIZE}",
        )
    return given


@dataclass(frozen=True, slots=True)
class _Get:
    noun: str
    fetch: Callable[[Session, str, datetime], Any]
    convert: Callable[[Any], Any]
    response: type[Message]
    signed: bool = False  # checked against the registry's signed record


class DepartmentReads:
    """The read RPCs over ``db``; ``clock`` gives the moment ages and lateness are taken at;
    ``signed``, the registry's signed state cases and permits are checked against (the service
    always gives it; without it they are answered from their rows)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] | None = None,
        signed: SignedState | None = None,
    ) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        self._signed = signed

    def method_handlers(self, authorise: Authorise) -> dict[str, grpc.RpcMethodHandler]:
        """Every read method by name, each calling ``authorise(context)`` first."""

        def unary(
            call: Callable[[Any, Context], Awaitable[Any]],
            request: type[Message],
            response: type[Message],
        ) -> grpc.RpcMethodHandler:
            async def handler(message: Any, context: Context) -> Any:
                await authorise(context)
                try:
                    return await call(message, context)
                except _Refused as refused:
                    await _abort(context, refused.code, refused.details)

            return grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )

        gets = {
            "GetPermit": _Get(
                "permit",
                lambda s, i, _: inbox.get_permit(s, i),
                permit_message,
                pb.PermitInfo,
                True,
            ),
            "GetCase": _Get(
                "case", lambda s, i, _: inbox.get_case(s, i), case_message, pb.CaseInfo, True
            ),
            "GetReferral": _Get(
                "referral of case",
                lambda s, i, now: inbox.get_referral(s, i, now=now),
                referral_message,
                pb.Referral,
            ),
            "GetNotice": _Get(
                "notice", lambda s, i, _: inbox.get_notice(s, i), notice_message, pb.Notice
            ),
            "GetParty": _Get(
                "party", lambda s, i, _: inbox.get_party(s, i), party_message, pb.Party
            ),
        }
        handlers = {
            name: unary(self._get_call(get), pb.GetRequest, get.response)
            for name, get in gets.items()
        }
        lists: dict[
            str, tuple[Callable[..., inbox.Page[Any]], Callable[[Any], Any], type[Message], str]
        ] = {
            "ListPermits": (self._permits, permit_message, pb.PermitPage, "permits"),
            "ListCases": (self._cases, case_message, pb.CasePage, "cases"),
            "ListReferrals": (self._referrals, referral_message, pb.ReferralPage, "referrals"),
            "ListNotices": (self._notices, notice_message, pb.NoticePage, "notices"),
            "ListParties": (self._parties, party_message, pb.PartyPage, "parties"),
        }
        for name, (fetch, convert, page_type, field) in lists.items():
            handlers[name] = unary(
                self._list_call(name, fetch, convert, page_type, field), pb.ListRequest, page_type
            )
        handlers["Report"] = unary(self._report, pb.ReportRequest, pb.MonthlyReport)
        return handlers

    # --- gets ----------------------------------------------------------------------------------

    def _get_call(self, get: _Get) -> Callable[[pb.GetRequest, Context], Awaitable[Any]]:
        async def call(request: pb.GetRequest, context: Context) -> Any:
            why = id_error(request.id)
            if why is not None:
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"id: {why}")
            now = self._clock()

            def read_one() -> Awaitable[Any]:
                return self._read(lambda session: get.fetch(session, request.id, now))

            view = await (self._signed_read(read_one, lambda v: [v]) if get.signed else read_one())
            if view is None:
                raise _Refused(grpc.StatusCode.NOT_FOUND, f"no {get.noun} {request.id}")
            return get.convert(view)

        return call

    async def _signed_read(
        self, fetch: Callable[[], Awaitable[T]], views: Callable[[T], Iterable[Any]]
    ) -> T:
        """``fetch()``'s answer once every case or permit in it (``views``) is what the registry
        signed; read again once after the held state has followed the newest head."""
        answer = await fetch()
        if self._signed is None:
            return answer
        try:
            state = self._signed.held()
        except Exception as exc:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, f"registry service: {exc}") from None
        if disagreement(state, [v for v in views(answer) if v is not None]) is None:
            return answer
        state = await self._signed.caught_up()
        answer = await fetch()
        why = disagreement(state, [v for v in views(answer) if v is not None])
        if why is None:
            return answer
        raise _Refused(
            grpc.StatusCode.DATA_LOSS,
            f"registry service: {why}; the database's tables disagree with what the registry "
            "signed, so the read is refused rather than answered from the table",
        )

    # --- lists ---------------------------------------------------------------------------------

    def _list_call(
        self,
        method: str,
        fetch: Callable[..., inbox.Page[Any]],
        convert: Callable[[Any], Any],
        page_type: type[Message],
        field: str,
    ) -> Callable[[pb.ListRequest, Context], Awaitable[Any]]:
        async def call(request: pb.ListRequest, context: Context) -> Any:
            filters = _check_filters(method, request)
            now = self._clock()

            def read(session: Session) -> inbox.Page[Any]:
                return fetch(
                    session,
                    filters,
                    now=now,
                    page_size=request.page_size,
                    page_token=request.page_token,
                )

            def read_page() -> Awaitable[inbox.Page[Any]]:
                return self._read(read)

            try:
                if method in ("ListCases", "ListPermits"):
                    page = await self._signed_read(read_page, lambda p: p.items)
                else:
                    page = await read_page()
            except ValueError as exc:  # a bad token, state or size: the caller's to mend
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            return page_type(
                **{field: [convert(item) for item in page.items]},
                next_page_token=page.next_page_token or "",
            )

        return call

    @staticmethod
    def _permits(session: Session, f: dict[str, Any], *, now: datetime, **paging: Any) -> Any:
        return inbox.permits(session, structure=f.get("structure_id"), kind=f.get("kind"), **paging)

    @staticmethod
    def _cases(session: Session, f: dict[str, Any], *, now: datetime, **paging: Any) -> Any:
        return inbox.cases(
            session,
            structure=f.get("structure_id"),
            district=f.get("district"),
            kind=f.get("kind"),
            party=f.get("party"),
            **paging,
        )

    @staticmethod
    def _referrals(session: Session, f: dict[str, Any], *, now: datetime, **paging: Any) -> Any:
        return inbox.referrals(
            session,
            now=now,
            department=f.get("department"),
            district=f.get("district"),
            state=f.get("state"),
            overdue_only=bool(f.get("overdue_only")),
            min_age_days=f.get("min_age_days"),
            max_age_days=f.get("max_age_days"),
            structure=f.get("structure_id"),
            **paging,
        )

    @staticmethod
    def _notices(session: Session, f: dict[str, Any], *, now: datetime, **paging: Any) -> Any:
        return inbox.notices(
            session,
            now=now,
            office=f.get("office"),
            district=f.get("district"),
            state=f.get("state"),
            min_age_days=f.get("min_age_days"),
            max_age_days=f.get("max_age_days"),
            structure=f.get("structure_id"),
            **paging,
        )

    @staticmethod
    def _parties(session: Session, f: dict[str, Any], *, now: datetime, **paging: Any) -> Any:
        return inbox.parties(session, **paging)

    # --- the report ----------------------------------------------------------------------------

    async def _report(self, request: pb.ReportRequest, context: Context) -> pb.MonthlyReport:
        try:
            month_bounds(request.month)
        except ValueError as exc:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        now = self._clock()
        district = request.district or None
        report = await run_blocking(
            lambda: monthly_report(self._db, request.month, district, now=now), "report"
        )
        return pb.MonthlyReport(
            month=report.month,
            district=report.district or "",
            figures=[
                pb.ReportFigure(section=f.section, key=f.key, value=f.value) for f in report.figures
            ],
        )

    async def _read(self, work: Callable[[Session], T]) -> T:
        """``work`` in one read snapshot, in a thread of its own."""

        def run() -> T:
            with self._db.snapshot() as session:
                return work(session)

        return await run_blocking(run, "department-read")
