"""The working group's page at the HTTP level: what it answers, over real TLS, on both backends.

Each test serves the page (``registry.web.WebServer``) over a registry filled by
``web_support.fill`` and asks it with httpx, trusting the test's throwaway certificate. The
browser's view of the same page is ``test_web_page.py``; this file checks what a browser cannot
be relied on to show: escaping, headers, methods, paging, errors, filters, the language choice;
and the pure rules under them (the language choice, Art. 19 lateness, month bounds).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from registry_support import Registry
from web_support import (
    CLEAR,
    FLAGGED,
    FLAGGED_CASE,
    SCRIPT_STRUCTURE,
    Sample,
    fill,
    serving,
    throwaway_tls,
)

from registry.storage import ReferralRow
from registry.web.catalog import LABELS, TERMS, choose_language
from registry.web.queries import month_bounds, overdue_kind, parse_month, referral_state

PAGE_SIZE = 2


@dataclass(frozen=True)
class Page:
    client: httpx.Client
    sample: Sample


@pytest.fixture
def page(reg: Registry, tmp_path: Path) -> Iterator[Page]:
    sample = fill(reg, extra_flagged=2)
    tls = throwaway_tls(tmp_path / "tls")
    with (
        serving(reg.url, tls, page_size=PAGE_SIZE) as server,
        httpx.Client(
            base_url=server.url, verify=ssl.create_default_context(cafile=tls.ca), timeout=10
        ) as client,
    ):
        yield Page(client, sample)


def flagged_ids(html: str) -> list[str]:
    return re.findall(r'class="structure-id">([^<]+)</a></h2>', html)


# --- What it shows ------------------------------------------------------------------------------


def test_flagged_structures_are_listed_by_id_with_their_cases_and_others_are_not(
    page: Page,
) -> None:
    first = page.client.get("/")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/html; charset=utf-8"
    assert flagged_ids(first.text) == page.sample.flagged[:PAGE_SIZE]
    assert FLAGGED_CASE in first.text and "no_planning_permit" in first.text
    assert f'<span id="flagged-total">{len(page.sample.flagged)}</span>' in first.text
    pages = -(-len(page.sample.flagged) // PAGE_SIZE)
    everything = "".join(page.client.get(f"/?page={n}").text for n in range(1, pages + 1))
    assert CLEAR not in everything  # its case is closed
    assert "110228-0042-0100" not in everything  # a reported lead only: not flagged


def test_pages_follow_one_another_and_a_page_past_the_end_is_404(page: Page) -> None:
    pages = -(-len(page.sample.flagged) // PAGE_SIZE)
    seen: list[str] = []
    for n in range(1, pages + 1):
        answer = page.client.get("/", params={"page": n})
        assert answer.status_code == 200
        assert f"Page {n} of {pages}" in answer.text
        seen += flagged_ids(answer.text)
    assert seen == page.sample.flagged
    assert page.client.get("/", params={"page": pages + 1}).status_code == 404
    for odd in ("0", "-1", "two", "1.5", "9" * 30):
        refused = page.client.get("/", params={"page": odd})
        assert refused.status_code == 400, odd
        assert "?page=" in refused.text


def test_a_structure_shows_its_standing_permits_cases_party_notice_and_referral(
    page: Page,
) -> None:
    answer = page.client.get(f"/structures/{FLAGGED}")
    assert answer.status_code == 200
    text = answer.text
    assert 'id="standing">Flagged: a blocking case<' in text
    for shown in ("P-2024-0001", "land_certificate", FLAGGED_CASE, "stop_order"):
        assert shown in text
    assert "91110228MA01ABCD1X" in text  # the party
    assert page.sample.notice_id in text
    assert page.sample.overdue_case in text
    assert 'id="standing">No open case<' in page.client.get(f"/structures/{CLEAR}").text


def test_unknown_structures_and_pages_are_404_in_the_readers_language(page: Page) -> None:
    for path in ("/structures/110228-9999-9999", "/structures/not%20an%20id", "/nowhere"):
        answer = page.client.get(path)
        assert answer.status_code == 404, path
        assert "There is no such page or structure." in answer.text
    chinese = page.client.get("/nowhere", headers={"accept-language": "zh-CN,zh;q=0.9"})
    assert chinese.status_code == 404
    assert "没有这个页面或建筑。" in chinese.text


def test_an_address_holding_markup_is_shown_as_text_everywhere(page: Page) -> None:
    for path in ("/", f"/structures/{SCRIPT_STRUCTURE}", "/search?q=script"):
        text = page.client.get(path).text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Lane 3" in text, path
        assert "<script>alert" not in text, path
    echoed = page.client.get("/search", params={"q": '"><img src=x onerror=alert(1)>'}).text
    assert "<img src=x" not in echoed
    assert "&lt;img src=x onerror=alert(1)&gt;" in echoed


def test_the_inbox_lists_the_notice_and_referrals_and_filters_them(page: Page) -> None:
    def listed(**params: str) -> tuple[bool, bool]:
        answer = page.client.get("/inbox", params=params)
        assert answer.status_code == 200, params
        return page.sample.notice_id in answer.text, page.sample.overdue_case in answer.text

    assert listed() == (True, True)
    assert listed(state="open") == (True, False)
    assert listed(state="acknowledged") == (False, False)
    assert listed(state="awaiting_referral") == (False, True)
    assert listed(state="referred") == (False, False)
    assert listed(office="market_regulation") == (True, False)
    assert listed(office="city-land") == (False, True)
    assert listed(office="culture") == (False, False)
    assert listed(district="110228") == (True, True)
    assert listed(district="110229") == (False, False)
    assert listed(age="1") == (True, True)  # the notice is 2 days old, the referral 10
    assert listed(age="3") == (False, True)
    assert listed(age="11") == (False, False)
    for name, odd in (("state", "lost"), ("age", "-1"), ("age", "ten"), ("office", "x" * 501)):
        refused = page.client.get("/inbox", params={name: odd})
        assert refused.status_code == 400, (name, odd)
        assert f"?{name}=" in refused.text


def test_overdue_referrals_are_counted_per_department(page: Page) -> None:
    text = page.client.get("/overdue").text
    rows = re.findall(r'<td class="department">([^<]+)</td><td class="count">(\d+)</td>', text)
    assert rows == [(page.sample.late_department, "1")]
    assert page.sample.overdue_case in text
    assert "C-2026-0078" not in text  # referred in time, its decision not yet due


def test_the_months_figures_are_a_chart_and_a_table(page: Page) -> None:
    november = page.client.get("/figures", params={"month": "2026-11"}).text
    assert '<svg id="figures-chart"' in november
    assert len(re.findall(r"<rect ", november)) >= 4
    assert 'id="month">2026-11<' in november
    october = page.client.get("/figures", params={"month": "2026-10"}).text
    cases_found = re.search(
        r"Cases found</span> <code class=\"id\">cases_opened</code></td><td>"
        r"<span class=\"term\">No construction planning permit</span> "
        r"<code class=\"id\">no_planning_permit</code></td><td>(\d+)</td>",
        october,
    )
    assert cases_found is not None and cases_found.group(1) == "1"  # CLEAR's, opened 4 Oct
    empty = page.client.get("/figures", params={"month": "2025-01", "district": "999"}).text
    assert "No figures for this month." in empty and "<svg" not in empty
    for odd in ("2026-13", "2026-1", "November", "1999-12"):
        refused = page.client.get("/figures", params={"month": odd})
        assert refused.status_code == 400, odd
        assert "?month=" in refused.text
    home = page.client.get("/").text
    assert '<svg id="home-chart"' in home


def test_search_finds_an_id_exactly_and_an_address_by_any_part(page: Page) -> None:
    def found(q: str) -> list[str]:
        answer = page.client.get("/search", params={"q": q})
        assert answer.status_code == 200, q
        return re.findall(r'class="structure-id">([^<]+)</a>', answer.text)

    assert found(FLAGGED) == [FLAGGED]
    assert found(f"  {FLAGGED} ") == [FLAGGED]
    assert found("gulou east") == [FLAGGED]  # any case
    assert found("鼓楼东大街") == [FLAGGED]
    assert found("110228-0042") == []  # ids match exactly, not in part
    assert found("%") == [] and found("_") == []  # taken literally
    assert found("Lane 3") == [SCRIPT_STRUCTURE]
    empty = page.client.get("/search", params={"q": "   "})
    assert empty.status_code == 200 and "Type a structure id or part of an address." in empty.text
    long = page.client.get("/search", params={"q": "x" * 201})
    assert long.status_code == 400 and "at most 200 characters" in long.text
    control = page.client.get("/search", params={"q": "a\x00b"})
    assert control.status_code == 400


# --- How it answers -----------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(page: Page) -> None:
    for path in ("/", "/static/style.css", "/static/page.js", "/nowhere", "/?page=x"):
        answer = page.client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["x-frame-options"] == "DENY", path
        assert "server" not in answer.headers, path
    assert (
        page.client.get("/static/page.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )


def test_only_get_and_head_are_answered(page: Page) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        for path in ("/", "/search", "/structures/" + FLAGGED, "/static/style.css", "/nowhere"):
            answer = page.client.request(method, path, content=b"x=1")
            assert answer.status_code == 405, (method, path)
            assert answer.headers["allow"] == "GET, HEAD"
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    head = page.client.head("/")
    assert head.status_code == 200 and head.content == b""


def test_the_language_comes_from_the_query_then_the_cookie_then_the_browser(page: Page) -> None:
    client = page.client
    assert "Flagged structures" in client.get("/").text
    assert "违法建设" in client.get("/", headers={"accept-language": "zh-CN,en;q=0.5"}).text
    chosen = client.get("/inbox", params={"lang": "zh"})
    assert "通报" in chosen.text and "未确认" in chosen.text
    assert "lang=zh" in chosen.headers["set-cookie"]
    assert "secure" in chosen.headers["set-cookie"].lower()
    later = client.get("/overdue")  # the cookie is sent back
    assert "逾期移送" in later.text and "city-land" in later.text
    back = client.get("/", params={"lang": "en"}, headers={"accept-language": "zh-CN"})
    assert "Flagged structures" in back.text


# --- The rules under the page -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "cookie", "accept", "chosen"),
    [
        (None, None, None, "en"),
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        (None, None, "en-GB,zh;q=0.9", "en"),
        (None, None, "fr-FR, zh-TW;q=0.5, en;q=0.3", "zh"),
        (None, None, "zh;q=0, en;q=0.1", "en"),
        (None, None, "de, fr", "en"),
        (None, "zh", "en", "zh"),
        ("en", "zh", "zh", "en"),
        ("xx", "zh", "en", "zh"),
        ("xx", "yy", "zh-HK", "zh"),
    ],
)
def test_choose_language(
    asked: str | None, cookie: str | None, accept: str | None, chosen: str
) -> None:
    assert choose_language(asked, cookie, accept) == chosen


def test_every_label_and_term_has_both_languages() -> None:
    for table in (LABELS, TERMS):
        for key, (english, chinese) in table.items():
            assert english.strip() and chinese.strip(), key
    assert TERMS["no_planning_permit"][1] == "未取得建设工程规划许可证"


def _referral(**times: datetime | None) -> ReferralRow:
    found = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    return ReferralRow(
        case_id="C-1",
        structure_id="S-1",
        district="110228",
        case_kind="illegal_land_use",
        found_by="city-planning",
        found_at=found,
        referral_due=datetime(2026, 11, 4, 16, 0, tzinfo=UTC),
        **times,
    )


DUE = datetime(2026, 11, 4, 16, 0, tzinfo=UTC)
LATER = DUE + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("times", "now", "state", "late"),
    [
        ({}, DUE, "awaiting_referral", None),
        ({}, LATER, "awaiting_referral", "referral"),
        ({"referred_at": DUE}, LATER, "referred", None),
        ({"referred_at": LATER}, LATER, "referred", "referral"),
        (
            {"referred_at": DUE, "decided_at": DUE, "answer_due": DUE + timedelta(days=2)},
            DUE + timedelta(days=2),
            "decided",
            None,
        ),
        (
            {"referred_at": DUE, "decided_at": DUE, "answer_due": DUE + timedelta(days=2)},
            DUE + timedelta(days=2, seconds=1),
            "decided",
            "answer",
        ),
        (
            {
                "referred_at": DUE,
                "decided_at": DUE,
                "answer_due": DUE + timedelta(days=2),
                "answered_at": DUE + timedelta(days=3),
            },
            DUE + timedelta(days=30),
            "answered",
            "answer",
        ),
        (
            {
                "referred_at": DUE,
                "decided_at": DUE,
                "answer_due": DUE + timedelta(days=2),
                "answered_at": DUE + timedelta(days=1),
            },
            DUE + timedelta(days=30),
            "answered",
            None,
        ),
    ],
)
def test_referral_state_and_lateness(
    times: dict[str, datetime], now: datetime, state: str, late: str | None
) -> None:
    row = _referral(**times)
    assert referral_state(row) == state
    assert overdue_kind(row, now) == late


def test_months_run_in_the_citys_time() -> None:
    start, end = month_bounds(parse_month("2026-11"))
    assert start == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert parse_month("2026-12") == date(2026, 12, 1)
    assert month_bounds(parse_month("2026-12"))[1] == datetime(2026, 12, 31, 16, tzinfo=UTC)
    for odd in ("2026-13", "26-11", "2026-1", "2026/11", ""):
        with pytest.raises(ValueError, match="is not YYYY-MM"):
            parse_month(odd)
