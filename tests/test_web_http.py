"""The working group's page at the HTTP level: what it answers, over real TLS, on both backends.

Each test serves the page (``registry.web.WebServer``) over a registry filled by
``web_support.fill`` and asks it with httpx, trusting the test's throwaway certificate. The
browser's view of the same page is ``test_web_page.py``; this file checks what a browser cannot
be relied on to show: escaping, headers, methods, paging, errors, filters, the language choice;
and the pure rules under them (the language choice, Art. 19 lateness, month bounds).
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from registry_support import Registry, reset_database
from web_support import (
    CLEAR,
    FLAGGED,
    FLAGGED_CASE,
    SCRIPT_STRUCTURE,
    STRANGER,
    WORKING_GROUP,
    Sample,
    Tls,
    fill,
    page_tls,
    serving,
)

from registry.admin import load_registry_signer
from registry.demo_pki import make_demo_pki
from registry.department_keys import DepartmentDirectory, revoke_department
from registry.storage import Database
from registry.web.catalog import LABELS, TERMS, Words, choose_language
from registry.web.server import WebServeError, WebServer
from server.listen import ListenError

PAGE_SIZE = 2


@dataclass(frozen=True)
class Page:
    client: httpx.Client  # the enrolled working group's
    sample: Sample
    url: str
    tls: Tls


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def page(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Page]:
    """One filled registry and its page per backend, shared by this file's tests (they only
    read)."""
    scratch = tmp_path_factory.mktemp("web")
    if request.param == "sqlite":
        url = f"sqlite:///{scratch / 'registry.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        reset_database(url)
    registry = Registry(url, scratch / "keys", scratch)
    try:
        registry.init()
        sample = fill(registry, extra_flagged=2)
        tls = page_tls(scratch / "tls", registry)
        with (
            serving(url, tls, page_size=PAGE_SIZE) as server,
            httpx.Client(base_url=server.url, verify=tls.context(), timeout=10) as client,
        ):
            yield Page(client, sample, server.url, tls)
    finally:
        registry.close()


# --- Who may read it -----------------------------------------------------------------------------


def test_the_page_is_not_served_to_a_caller_without_a_client_certificate(page: Page) -> None:
    """The department read calls refuse a caller without a department's client certificate; the
    page, serving the same parties, cases and inbox, refuses it in the TLS handshake."""
    with (
        pytest.raises(httpx.TransportError),
        httpx.Client(base_url=page.url, verify=page.tls.context(None), timeout=10) as client,
    ):
        client.get(f"/structures/{FLAGGED}")


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(
    page: Page, tmp_path: Path
) -> None:
    other = make_demo_pki(tmp_path / "other", [WORKING_GROUP], days=1)
    context = ssl.create_default_context(cafile=page.tls.ca)
    context.load_cert_chain(*other.client(WORKING_GROUP))
    with (
        pytest.raises(httpx.TransportError),
        httpx.Client(base_url=page.url, verify=context, timeout=10) as client,
    ):
        client.get("/")


def test_a_department_not_enrolled_is_403_and_shown_nothing(page: Page) -> None:
    with httpx.Client(base_url=page.url, verify=page.tls.context(STRANGER), timeout=10) as client:
        for path in ("/", "/inbox", f"/structures/{FLAGGED}", "/search?q=C-2026"):
            answer = client.get(path)
            assert answer.status_code == 403, path
            assert "not enrolled" in answer.text and FLAGGED not in answer.text, path
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert page.client.get(f"/structures/{FLAGGED}").status_code == 200


def test_a_department_whose_key_is_revoked_is_403_at_once(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys", tmp_path)
    try:
        registry.init()
        fill(registry)
        tls = page_tls(tmp_path / "tls", registry)
        with (
            serving(registry.url, tls) as server,
            httpx.Client(base_url=server.url, verify=tls.context(), timeout=10) as client,
        ):
            assert client.get("/inbox").status_code == 200
            db = Database(registry.url, create=False)
            try:
                signer = load_registry_signer(db, registry.keys)
                revoke_department(db, signer, registry.state_dir, department_id=WORKING_GROUP)
            finally:
                db.dispose()
            refused = client.get("/inbox")
            assert refused.status_code == 403 and "revoked" in refused.text
    finally:
        registry.close()


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
    bars = len(re.findall(r"<rect ", november))
    assert bars == len(re.findall(r"<tr><td>", november))  # a bar per figure in the table
    assert bars >= 3  # cases found, notices, overdue referrals
    assert re.search(r'<rect x="\d+" y="[\d.]+" width="0', november) is None
    assert 'id="month">2026-11<' in november
    october = page.client.get("/figures", params={"month": "2026-10"}).text
    cases_found = re.search(
        r"Cases found</span> <code class=\"id\">cases_opened</code></td><td>"
        r"<span class=\"term\">No construction planning permit / Patrol</span> "
        r"<code class=\"id\">no_planning_permit/patrol</code></td><td>(\d+)</td>",
        october,
    )
    assert cases_found is not None and cases_found.group(1) == "1"  # CLEAR's, opened 4 Oct
    empty = page.client.get("/figures", params={"month": "2025-01", "district": "999"}).text
    assert "No figures for this month." in empty and "<svg" not in empty
    for odd in ("2026-13", "2026-1", "November", "1969-12"):
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
    client.cookies.clear()
    try:
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
    finally:
        client.cookies.clear()


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


def test_figure_keys_are_named_part_by_part() -> None:
    chinese = Words("zh")
    assert chinese.key("no_planning_permit/patrol") == "未取得建设工程规划许可证 / 巡查"
    assert chinese.key("utility:water/DENY") == "市政公用 供水 / 不予办理"
    assert Words("en").key("city-land") == "city-land"  # a department id, as written


# --- Serving ------------------------------------------------------------------------------------


def test_the_page_alone_serves_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry(url, tmp_path / "keys", tmp_path)
    try:
        registry.init()
        fill(registry)
        tls = page_tls(tmp_path / "tls", registry)
    finally:
        registry.close()
    args = [
        *("--db", url, "--listen", "127.0.0.1:0", "--cert", str(tls.cert)),
        *("--key", str(tls.key), "--client-ca", str(tls.client_ca)),
        *("--state", str(tls.state_dir)),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "registry.web", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the start line, once serving
        found = re.search(r"page at (https://127\.0\.0\.1:\d+/)", line)
        assert found is not None, line
        with httpx.Client(base_url=found[1], verify=tls.context(), timeout=10) as client:
            home = client.get("/")
            assert home.status_code == 200 and FLAGGED in home.text
        with httpx.Client(base_url=found[1], verify=tls.context(STRANGER), timeout=10) as client:
            assert client.get("/").status_code == 403
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_port_in_use_or_an_unusable_certificate_is_a_plain_error(tmp_path: Path) -> None:
    tls = small_registry_tls(tmp_path)
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    directory = DepartmentDirectory(tls.state_dir)
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        busy = WebServer(
            db, f"127.0.0.1:{port}", tls.cert, tls.key, client_ca=tls.client_ca, directory=directory
        )
        with pytest.raises(WebServeError, match=re.escape(f"cannot listen on 127.0.0.1:{port}")):
            asyncio.run(busy.start())
        swapped = WebServer(
            db, "127.0.0.1:0", tls.key, tls.cert, client_ca=tls.client_ca, directory=directory
        )  # key and cert swapped
        with pytest.raises(WebServeError, match=r"TLS certificate .* cannot be used"):
            asyncio.run(swapped.start())
        no_ca = WebServer(
            db, "127.0.0.1:0", tls.cert, tls.key, client_ca=tls.key, directory=directory
        )
        with pytest.raises(WebServeError, match=r"client CA .* cannot be used"):
            asyncio.run(no_ca.start())
        with pytest.raises(ListenError, match="--listen"):
            WebServer(
                db,
                "127.0.0.1:99999",
                tls.cert,
                tls.key,
                client_ca=tls.client_ca,
                directory=directory,
            )
    finally:
        taken.close()
        directory.close()
        db.dispose()


def small_registry_tls(scratch: Path) -> Tls:
    """The page's TLS over a registry of its own (SQLite) where the working group is enrolled."""
    registry = Registry(f"sqlite:///{scratch / 'enrolment.db'}", scratch / "keys", scratch)
    try:
        registry.init()
        return page_tls(scratch / "tls", registry)
    finally:
        registry.close()


def test_a_database_out_of_reach_is_503_with_the_headers(tmp_path: Path) -> None:
    tls = small_registry_tls(tmp_path)
    nowhere = "postgresql://postgres@127.0.0.1:5432/permitgate_no_such_database"
    with (
        serving(nowhere, tls) as server,
        httpx.Client(base_url=server.url, verify=tls.context(), timeout=20) as client,
    ):
        for path in ("/", "/inbox", "/figures", f"/structures/{FLAGGED}", "/search?q=x"):
            answer = client.get(path, headers={"accept-language": "zh-CN"})
            assert answer.status_code == 503, path
            assert "暂时无法读取登记数据" in answer.text
            assert "permitgate_no_such_database" not in answer.text
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
