"""The working group's page as an ASGI app (Starlette): routes, language, and the read-only guard.

Pages, all server-rendered HTML (Jinja2, every value escaped):

    /                       flagged structures (a blocking case) with their cases, paged
                            (?page=N), and this month's figures as a chart
    /structures/{id}        one structure: its standing, permits, cases, parties, notices,
                            referrals
    /inbox                  Art. 13 notices and Art. 19 referrals, filtered by ?office=,
                            ?district=, ?state=, ?age= (days), each paged by token
                            (?notices_from=, ?referrals_from=)
    /overdue                the overdue referrals (?from= a token), counted per department
    /figures                the month's figures (?month=YYYY-MM, ?district=) as a chart and
                            a table
    /search                 ?q= a structure id (exact) or a part of an address
    /static/...             the style sheet and the one small script (month switch)

Notices, referrals, parties and the monthly figures are read through ``registry.inbox`` and
``registry.monthly_report`` (as the read RPCs and ``permitgate report monthly`` read them); the
flagged structures and the search through ``registry.web.queries``.

The page only reads: any method other than GET and HEAD is answered 405 before routing, and
each read is one snapshot session (the monthly report takes its own), run in a worker thread so
the event loop (which the registry service shares) never waits on the database. A database out
of reach is a 503 page, not a stack trace. Every answer carries a strict
Content-Security-Policy (scripts and styles from this origin only, no framing) and ``nosniff``.
The language comes from ``?lang=en|zh`` (remembered in a cookie), else the cookie, else the
browser's Accept-Language (``registry.web.catalog``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import jinja2
from markupsafe import Markup
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import inbox
from registry.monthly_report import CITY_TZ, MonthlyReport, month_bounds, monthly_report
from registry.storage import Database
from registry.web import queries
from registry.web.catalog import Words, choose_language
from registry.web.chart import Chart, lay_out

__all__ = ["READ_METHODS", "SECURITY_HEADERS", "create_app"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
READ_METHODS: Final = frozenset({"GET", "HEAD"})
LANG_COOKIE: Final = "lang"
SEARCH_MAX: Final = 200  # characters of a search query
SEARCH_LIMIT: Final = 50  # structures a search lists
INBOX_PAGE: Final = 100  # notices and referrals a page of the inbox lists, each
NOTICE_STATES: Final = tuple(state.value for state in inbox.NoticeState)
REFERRAL_STATES: Final = tuple(state.value for state in inbox.ReferralState)
TEXT_MAX: Final = 500  # characters of a filter value (a district, an office)
AGE_MAX: Final = 3650  # days

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
"""Sent with every answer, pages, static files and errors alike."""

T = TypeVar("T")


class ReadOnlyGuard:
    """Answers 405 to every method but GET and HEAD, and adds ``SECURITY_HEADERS`` to all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            refused = Response(
                "405 Method Not Allowed: this page is read-only (GET and HEAD only).\n",
                status_code=405,
                media_type="text/plain",
                headers={"allow": "GET, HEAD", **SECURITY_HEADERS},
            )
            await refused(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _city_time(value: datetime | None) -> str:
    """A time as the city reads it (Asia/Shanghai), to the minute."""
    if value is None:
        return ""
    return value.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,  # every template, .html and .svg alike
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["city_time"] = _city_time
    return Jinja2Templates(env=env)


def _bad(name: str, value: str, why: str) -> HTTPException:
    return HTTPException(400, f"?{name}={value[:80]!r}: {why}")


def _int_param(request: Request, name: str, *, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        number = int(raw)
    except ValueError:
        raise _bad(name, raw, f"not a whole number ({low} to {high})") from None
    if not low <= number <= high:
        raise _bad(name, raw, f"out of range ({low} to {high})")
    return number


def _text_param(request: Request, name: str, *, allowed: tuple[str, ...] = ()) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    if allowed and value not in allowed:
        raise _bad(name, raw, "not one of " + ", ".join(allowed))
    if len(value) > TEXT_MAX or not value.isprintable():
        raise _bad(name, raw, f"at most {TEXT_MAX} printable characters")
    return value


def _relative(url: URL) -> str:
    """A URL of this site as a path and query (links never name the host they were asked as)."""
    return f"{url.path}?{url.query}" if url.query else url.path


def _shift_month(month: str, by: int) -> str:
    """``YYYY-MM`` moved by ``by`` months (a month already checked by ``month_bounds``)."""
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + number - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_options(this_month: str, count: int = 12) -> list[str]:
    """The months the month menu offers: this one and the ones before it."""
    return [_shift_month(this_month, -back) for back in range(count)]


def _next_page(request: Request, name: str, token: str | None) -> str | None:
    """This page's link with ``name`` set to the next page's token; None on the last page."""
    if token is None:
        return None
    return _relative(request.url.include_query_params(**{name: token}))


def create_app(
    db: Database,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    page_size: int = 20,
) -> ASGIApp:
    """The page over ``db`` (read only). ``now`` is the clock that overdue referrals and the
    current month are judged by; ``page_size`` is the number of flagged structures a page shows."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    templates = _templates()

    async def read(job: Callable[[Session], T]) -> T:
        def in_snapshot() -> T:
            with db.snapshot() as session:
                return job(session)

        return await run_in_threadpool(in_snapshot)

    def words_of(request: Request) -> Words:
        return Words(
            choose_language(
                request.query_params.get("lang"),
                request.cookies.get(LANG_COOKIE),
                request.headers.get("accept-language"),
            )
        )

    def render(
        request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        words = words_of(request)

        def term(value: str | None) -> Markup:
            if not words.knows(value):
                return Markup("{}").format(value or "")
            return Markup('<span class="term">{}</span> <code class="id">{}</code>').format(
                words.term(value), value
            )

        response = templates.TemplateResponse(
            request,
            template,
            {
                "w": words,
                "term": term,
                "switch_url": _relative(request.url.include_query_params(lang=words.other)),
                "now": now(),
                **context,
            },
            status_code=status_code,
        )
        if request.query_params.get("lang") == words.lang:
            response.set_cookie(
                LANG_COOKIE,
                words.lang,
                max_age=365 * 24 * 3600,
                httponly=True,
                secure=request.url.scheme == "https",
                samesite="lax",
            )
        return response

    def this_month() -> str:
        return f"{now().astimezone(CITY_TZ):%Y-%m}"

    def chart_of(words: Words, report: MonthlyReport) -> Chart:
        shown = [figure for figure in report.figures if figure.value > 0]
        return lay_out(shown, section_name=words.term, key_name=words.key)

    def report_of(month: str, district: str | None) -> Callable[[], MonthlyReport]:
        at = now()
        return lambda: monthly_report(db, month, district, now=at)

    async def home(request: Request) -> Response:
        page = _int_param(request, "page", low=1, high=1_000_000) or 1
        month = this_month()
        flagged = await read(
            lambda s: queries.flagged_structures(s, page=page, page_size=page_size)
        )
        if page > flagged.pages:
            raise HTTPException(404, f"page {page} of {flagged.pages}")
        report = await run_in_threadpool(report_of(month, None))
        return render(
            request,
            "home.html",
            {"flagged": flagged, "month": month, "chart": chart_of(words_of(request), report)},
        )

    async def structure(request: Request) -> Response:
        structure_id: str = request.path_params["structure_id"]
        at = now()
        detail = await read(lambda s: queries.structure_detail(s, structure_id, now=at))
        if detail is None:
            raise HTTPException(404, f"no structure {structure_id[:80]!r}")
        return render(request, "structure.html", {"d": detail})

    async def inbox_page(request: Request) -> Response:
        office = _text_param(request, "office")
        district = _text_param(request, "district")
        state = _text_param(request, "state", allowed=NOTICE_STATES + REFERRAL_STATES)
        age = _int_param(request, "age", low=0, high=AGE_MAX)
        notices_from = _text_param(request, "notices_from") or ""
        referrals_from = _text_param(request, "referrals_from") or ""
        at = now()
        # A state names notices or referrals; the other list is then empty.
        notice_state = state if state in NOTICE_STATES else None
        referral_state = state if state in REFERRAL_STATES else None

        no_notices: inbox.Page[inbox.NoticeView] = inbox.Page((), None)
        no_referrals: inbox.Page[inbox.ReferralView] = inbox.Page((), None)

        def load(
            session: Session,
        ) -> tuple[inbox.Page[inbox.NoticeView], inbox.Page[inbox.ReferralView]]:
            notices = (
                no_notices
                if referral_state is not None
                else inbox.notices(
                    session,
                    now=at,
                    office=office,
                    district=district,
                    state=notice_state,
                    min_age_days=age,
                    page_size=INBOX_PAGE,
                    page_token=notices_from,
                )
            )
            referrals = (
                no_referrals
                if notice_state is not None
                else inbox.referrals(
                    session,
                    now=at,
                    department=office,
                    district=district,
                    state=referral_state,
                    min_age_days=age,
                    page_size=INBOX_PAGE,
                    page_token=referrals_from,
                )
            )
            return notices, referrals

        try:
            notices, referrals = await read(load)
        except inbox.BadPageToken as exc:
            raise HTTPException(400, str(exc)) from None
        return render(
            request,
            "inbox.html",
            {
                "notices": notices.items,
                "referrals": referrals.items,
                "more_notices": _next_page(request, "notices_from", notices.next_page_token),
                "more_referrals": _next_page(request, "referrals_from", referrals.next_page_token),
                "filters": {
                    "office": office or "",
                    "district": district or "",
                    "state": state or "",
                    "age": "" if age is None else str(age),
                },
                "states": NOTICE_STATES + REFERRAL_STATES,
            },
        )

    async def overdue(request: Request) -> Response:
        start = _text_param(request, "from") or ""
        at = now()

        def load(session: Session) -> tuple[inbox.Page[inbox.ReferralView], dict[str, int]]:
            late = inbox.referrals(
                session, now=at, overdue_only=True, page_size=INBOX_PAGE, page_token=start
            )
            return late, inbox.overdue_by_department(session, at)

        try:
            late, per_department = await read(load)
        except inbox.BadPageToken as exc:
            raise HTTPException(400, str(exc)) from None
        return render(
            request,
            "overdue.html",
            {
                "referrals": late.items,
                "more": _next_page(request, "from", late.next_page_token),
                "per_department": sorted(per_department.items(), key=lambda kv: (-kv[1], kv[0])),
            },
        )

    async def figures(request: Request) -> Response:
        month = request.query_params.get("month", "").strip() or this_month()
        try:
            month_bounds(month)
        except ValueError as exc:
            raise _bad("month", month, str(exc)) from None
        district = _text_param(request, "district")
        report = await run_in_threadpool(report_of(month, district))
        return render(
            request,
            "figures.html",
            {
                "month": month,
                "previous_month": _shift_month(month, -1),
                "next_month": _shift_month(month, 1),
                "months": _month_options(this_month()),
                "district": district or "",
                "figures": [f for f in report.figures if f.value > 0],
                "chart": chart_of(words_of(request), report),
            },
        )

    async def search(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        problem: str | None = None
        result = queries.SearchResult([], more=False)
        if not query:
            problem = "search_empty"
        elif len(query) > SEARCH_MAX or not query.isprintable():
            problem = "search_too_long"
        else:
            result = await read(lambda s: queries.search_structures(s, query, limit=SEARCH_LIMIT))
        return render(
            request,
            "search.html",
            {
                "q": query[:SEARCH_MAX],
                "problem": problem,
                "result": result,
                "max": SEARCH_MAX,
                "limit": SEARCH_LIMIT,
            },
            status_code=400 if problem == "search_too_long" else 200,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            title = "not_found_title"
        elif exc.status_code == 400:
            title = "bad_request_title"
        else:
            return Response(exc.detail, status_code=exc.status_code, media_type="text/plain")
        return render(
            request,
            "error.html",
            {"title": title, "detail": exc.detail, "status": exc.status_code},
            status_code=exc.status_code,
        )

    async def database_down(request: Request, exc: Exception) -> Response:
        log.warning("the page cannot read %s: %s", db, exc)
        return render(
            request,
            "error.html",
            {
                "title": "unavailable_title",
                "detail": words_of(request).t("unavailable"),
                "status": 503,
            },
            status_code=503,
        )

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        OperationalError: database_down,  # the database is down or cannot be reached
    }
    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/structures/{structure_id:path}", structure, methods=["GET"]),
            Route("/inbox", inbox_page, methods=["GET"]),
            Route("/overdue", overdue, methods=["GET"]),
            Route("/figures", figures, methods=["GET"]),
            Route("/search", search, methods=["GET"]),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ],
        exception_handlers=handlers,
    )
    return ReadOnlyGuard(app)  # outermost: errors Starlette answers get the headers too
