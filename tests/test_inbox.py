"""The inbox queries (registry.inbox) over prepared rows, on SQLite and PostgreSQL.

Structures, permits and cases come in through the importer; notices and referrals are written
with the ORM, as the gate and the department writes would. Every expectation is computed here
from the prepared lists (plain Python over the Art. 19 definitions of CONTRACT.md), never from
the module's own SQL: each filter, paging across pages with nothing lost or repeated, states and
overdue flags at several moments, and refused page tokens.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from registry_support import Registry, case, permit, structure

from registry import inbox
from registry.inbox import BadPageToken, Page
from registry.storage import Database, NotificationRow, ReferralRow

T0 = datetime.fromisoformat("2026-10-01T00:00:00+00:00")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)

OFFICES = ["tax", "health", "culture", "market_regulation"]


def _notices() -> list[dict[str, Any]]:
    out = []
    for i in range(23):
        out.append(
            {
                "id": f"N-{i:03d}",
                "structure_id": f"S{i % 3}-{i % 4}" if i % 7 else "GHOST-1",
                "office": OFFICES[i % 4],
                # pairs share a time, so the order's tie-break (the id) is tried
                "created_at": T0 + (i // 2) * DAY,
                "acknowledged": i % 3 == 0,
            }
        )
    return out


DISTRICTS = {"S0": "110228", "S1": "110229", "S2": "110230"}


def _district(structure_id: str) -> str | None:
    return DISTRICTS.get(structure_id.split("-")[0])


def _referrals() -> list[dict[str, Any]]:
    """Referrals in every state, on time and late on each count."""
    out = []
    finders = ["city-planning", "city-land", "city-housing"]
    receivers = ["city-enforcement", "city-land", "city-planning"]
    for i in range(18):
        found = T0 + i * DAY + i * HOUR
        due = found + 2 * DAY
        row: dict[str, Any] = {
            "case_id": f"C-{i:03d}",
            "structure_id": f"S{i % 3}-{i % 4}",
            "district": DISTRICTS[f"S{i % 3}"],
            "found_by": finders[i % 3],
            "found_at": found,
            "referral_due": due,
            "referred_to": None,
            "referred_at": None,
            "decided_at": None,
            "decision": None,
            "answer_due": None,
            "answered_at": None,
        }
        stage = i % 6
        if stage >= 1:  # referred: on time (odd i) or a day late (even i)
            row["referred_to"] = receivers[i % 3]
            row["referred_at"] = due - HOUR if i % 2 else due + DAY
        if stage >= 3:  # decided
            row["decided_at"] = row["referred_at"] + DAY
            row["decision"] = "stop_order"
            row["answer_due"] = row["decided_at"] + 2 * DAY
        if stage >= 5:  # answered, late when i % 4 == 1
            row["answered_at"] = row["answer_due"] + (DAY if i % 4 == 1 else -HOUR)
        out.append(row)
    return out


def _state(r: dict[str, Any]) -> str:
    if r["referred_at"] is None:
        return "awaiting_referral"
    if r["decided_at"] is None:
        return "referred"
    if r["answered_at"] is None:
        return "decided"
    return "answered"


def _late(done: datetime | None, due: datetime | None, now: datetime) -> bool:
    if due is None:
        return False
    return done > due if done is not None else now > due


def _overdue(r: dict[str, Any], now: datetime) -> str:
    if _late(r["referred_at"], r["referral_due"], now):
        return "referral"
    if r["decided_at"] is not None and _late(r["answered_at"], r["answer_due"], now):
        return "answer"
    return ""


@pytest.fixture
def db(reg: Registry) -> Any:
    structures = [
        {**structure(f"{prefix}-{j}"), "district": district}
        for prefix, district in DISTRICTS.items()
        for j in range(4)
    ]
    records: list[dict[str, Any]] = list(structures)
    for j in range(12):
        sid = f"S{j % 3}-{j % 4}"
        kind = ["land_certificate", "construction_planning", "construction_works"][j % 3]
        records.append(permit(f"P-{j:03d}", sid, kind))
    parties = ["ORG-A", "ORG-B", "ORG-C", "ORG-D"]
    for j in range(14):
        record = case(
            f"K-{j:03d}",
            f"S{j % 3}-{j % 4}",
            ["filed", "stop_order", "closed", "demolition_order", "reported"][j % 5],
            ["no_planning_permit", "illegal_land_use", "structural_damage"][j % 3],
        )
        if j % 4 != 3:
            record["party"] = parties[j % 4]
            record["party_suspended"] = j % 2 == 1
        records.append(record)
    reg.load(records)
    database = Database(reg.url)
    with database.session() as session:
        for n in _notices():
            session.add(
                NotificationRow(
                    id=n["id"],
                    structure_id=n["structure_id"],
                    office=n["office"],
                    application_id=n["id"],
                    reasons='[{"code":"NO_PERMIT","article":13}]',
                    created_at=n["created_at"],
                    acknowledged_at=n["created_at"] + HOUR if n["acknowledged"] else None,
                    acknowledged_by="city-working-group" if n["acknowledged"] else None,
                )
            )
        for r in _referrals():
            session.add(ReferralRow(case_kind="no_planning_permit", answer=None, **r))
    yield database, records
    database.dispose()


def _all(fetch: Callable[..., Page[Any]], page_size: int, **filters: Any) -> list[Any]:
    """Every item of a list, page by page; each page at most ``page_size``."""
    items: list[Any] = []
    token = ""
    pages = 0
    while True:
        page = fetch(page_size=page_size, page_token=token, **filters)
        assert len(page.items) <= page_size
        items.extend(page.items)
        pages += 1
        assert pages < 100
        if page.next_page_token is None:
            return items
        assert page.items, "a page with a next token is not empty"
        token = page.next_page_token


# --- Notices ---------------------------------------------------------------------------------


NOW = T0 + 20 * DAY


def _expected_notices(now: datetime, **want: Any) -> list[str]:
    out = []
    for n in sorted(_notices(), key=lambda n: (n["created_at"], n["id"])):
        age = now - n["created_at"]
        if "office" in want and n["office"] != want["office"]:
            continue
        if "district" in want and _district(n["structure_id"]) != want["district"]:
            continue
        if "state" in want and ("acknowledged" if n["acknowledged"] else "open") != want["state"]:
            continue
        if "min_age_days" in want and age < timedelta(days=want["min_age_days"]):
            continue
        if "max_age_days" in want and age > timedelta(days=want["max_age_days"]):
            continue
        if "structure" in want and n["structure_id"] != want["structure"]:
            continue
        out.append(n["id"])
    return out


NOTICE_FILTERS: list[dict[str, Any]] = [
    {},
    {"office": "tax"},
    {"district": "110229"},
    {"state": "open"},
    {"state": "acknowledged"},
    {"min_age_days": 10},
    {"max_age_days": 5},
    {"min_age_days": 3, "max_age_days": 9},
    {"structure": "S1-1"},
    {"office": "health", "state": "open", "district": "110230"},
]


def test_notices(db: Any) -> None:
    database, _ = db
    with database.session() as session:
        for filters in NOTICE_FILTERS:
            for page_size in (1, 4, 1000):
                got = _all(lambda **kw: inbox.notices(session, now=NOW, **kw), page_size, **filters)
                assert [n.id for n in got] == _expected_notices(NOW, **filters), filters
                for n in got:
                    assert n.state == ("acknowledged" if n.acknowledged_at else "open")
                    assert n.district == _district(n.structure_id)
                    assert n.reasons == ("NO_PERMIT",)


def test_notice_by_id(db: Any) -> None:
    database, _ = db
    with database.session() as session:
        found = inbox.get_notice(session, "N-003")
        assert found is not None and found.state == "acknowledged"
        assert found.acknowledged_by == "city-working-group" and found.office == "market_regulation"
        assert inbox.get_notice(session, "N-999") is None


def test_a_notice_written_between_pages_is_neither_lost_nor_repeated(db: Any) -> None:
    database, _ = db
    with database.session() as session:
        first = inbox.notices(session, now=NOW, page_size=5)
    with database.session() as session:  # one earlier than the page read, one later
        for nid, at in (("N-900", T0 - DAY), ("N-901", T0 + 30 * DAY)):
            session.add(
                NotificationRow(
                    id=nid,
                    structure_id="S0-0",
                    office="tax",
                    application_id=nid,
                    reasons="[]",
                    created_at=at,
                )
            )
    with database.session() as session:
        rest = _all(
            lambda **kw: inbox.notices(session, now=NOW + 20 * DAY, **kw),
            5,
        )
    assert first.next_page_token is not None
    rest_from_token: list[Any] = []
    with database.session() as session:
        token: str | None = first.next_page_token
        while token:
            page = inbox.notices(session, now=NOW, page_size=5, page_token=token)
            rest_from_token.extend(page.items)
            token = page.next_page_token
    ids = [n.id for n in first.items] + [n.id for n in rest_from_token]
    assert len(ids) == len(set(ids))
    assert ids == [i for i in _expected_notices(NOW) if i != "N-900"] + ["N-901"]
    assert rest[0].id == "N-900"


# --- Referrals -------------------------------------------------------------------------------


MOMENTS = [T0, T0 + 3 * DAY, T0 + 12 * DAY, T0 + 60 * DAY]


def _expected_referrals(now: datetime, **want: Any) -> list[str]:
    out = []
    for r in sorted(_referrals(), key=lambda r: (r["found_at"], r["case_id"])):
        age = now - r["found_at"]
        if "department" in want and want["department"] not in (r["found_by"], r["referred_to"]):
            continue
        if "district" in want and r["district"] != want["district"]:
            continue
        if "state" in want and _state(r) != want["state"]:
            continue
        if want.get("overdue_only") and not _any_late(r, now):
            continue
        if "min_age_days" in want and age < timedelta(days=want["min_age_days"]):
            continue
        if "max_age_days" in want and age > timedelta(days=want["max_age_days"]):
            continue
        if "structure" in want and r["structure_id"] != want["structure"]:
            continue
        out.append(r["case_id"])
    return out


def _any_late(r: dict[str, Any], now: datetime) -> bool:
    answer_late = r["decided_at"] is not None and _late(r["answered_at"], r["answer_due"], now)
    return _late(r["referred_at"], r["referral_due"], now) or answer_late


REFERRAL_FILTERS: list[dict[str, Any]] = [
    {},
    {"department": "city-land"},
    {"department": "city-enforcement"},
    {"district": "110228"},
    {"state": "awaiting_referral"},
    {"state": "referred"},
    {"state": "decided"},
    {"state": "answered"},
    {"overdue_only": True},
    {"min_age_days": 5},
    {"max_age_days": 4},
    {"structure": "S2-2"},
    {"department": "city-planning", "overdue_only": True, "state": "decided"},
]


@pytest.mark.parametrize("now", MOMENTS)
def test_referrals(db: Any, now: datetime) -> None:
    database, _ = db
    prepared = {r["case_id"]: r for r in _referrals()}
    with database.session() as session:
        for filters in REFERRAL_FILTERS:
            got = _all(lambda **kw: inbox.referrals(session, now=now, **kw), 3, **filters)
            assert [r.case_id for r in got] == _expected_referrals(now, **filters), filters
            for view in got:
                assert view.state == _state(prepared[view.case_id])
                assert view.overdue == _overdue(prepared[view.case_id], now)


def test_every_state_and_lateness_is_prepared() -> None:
    """The fixture's premise: the referrals try each state and each lateness at some moment."""
    rows = _referrals()
    assert {_state(r) for r in rows} == {"awaiting_referral", "referred", "decided", "answered"}
    for now in MOMENTS[1:]:
        assert {_overdue(r, now) for r in rows} == {"", "referral", "answer"}


@pytest.mark.parametrize("now", MOMENTS)
def test_overdue_by_department(db: Any, now: datetime) -> None:
    database, _ = db
    expected: dict[str, int] = {}
    for r in _referrals():
        if _late(r["referred_at"], r["referral_due"], now):
            expected[r["found_by"]] = expected.get(r["found_by"], 0) + 1
        if r["decided_at"] is not None and _late(r["answered_at"], r["answer_due"], now):
            expected[r["referred_to"]] = expected.get(r["referred_to"], 0) + 1
    with database.session() as session:
        assert inbox.overdue_by_department(session, now) == expected


def test_referral_by_id_at_two_moments(db: Any) -> None:
    database, _ = db
    r = next(r for r in _referrals() if r["case_id"] == "C-003")  # decided, not answered
    with database.session() as session:
        before = inbox.get_referral(session, "C-003", now=r["answer_due"] - HOUR)
        after = inbox.get_referral(session, "C-003", now=r["answer_due"] + HOUR)
        assert inbox.get_referral(session, "C-999", now=NOW) is None
    assert before is not None and after is not None
    assert before.state == after.state == "decided"
    # C-003 was referred on time (odd): late only once the answer is
    assert (before.overdue, after.overdue) == ("", "answer")


# --- Cases, permits, parties -----------------------------------------------------------------


def test_cases(db: Any) -> None:
    database, records = db
    cases = sorted((r for r in records if r["type"] == "case"), key=lambda r: r["id"])
    with database.session() as session:
        everything = _all(lambda **kw: inbox.cases(session, **kw), 4)
        assert [c.id for c in everything] == [c["id"] for c in cases]
        for want, keep in (
            ({"district": "110229"}, lambda c: _district(c["structure"]) == "110229"),
            ({"kind": "illegal_land_use"}, lambda c: c["kind"] == "illegal_land_use"),
            ({"party": "ORG-B"}, lambda c: c.get("party") == "ORG-B"),
            ({"structure": "S0-0"}, lambda c: c["structure"] == "S0-0"),
        ):
            got = _all(lambda **kw: inbox.cases(session, **kw), 2, **want)
            assert [c.id for c in got] == [c["id"] for c in cases if keep(c)], want
        one = inbox.get_case(session, "K-001")
        assert inbox.get_case(session, "K-999") is None
    assert one is not None
    assert (one.kind, one.decider, one.lead) == ("illegal_land_use", "land", "land")
    assert one.blocking and one.party == "ORG-B" and one.party_suspended
    assert one.district == "110229"
    by_id = {c.id: c for c in everything}
    assert by_id["K-000"].decider == "enforcement" and by_id["K-000"].lead == "planning"
    assert not by_id["K-002"].blocking  # closed


def test_permits(db: Any) -> None:
    database, records = db
    permits = sorted((r for r in records if r["type"] == "permit"), key=lambda r: r["id"])
    with database.session() as session:
        assert [p.id for p in _all(lambda **kw: inbox.permits(session, **kw), 5)] == [
            p["id"] for p in permits
        ]
        works = _all(lambda **kw: inbox.permits(session, **kw), 1, kind="construction_works")
        assert [p.id for p in works] == [
            p["id"] for p in permits if p["kind"] == "construction_works"
        ]
        mine = _all(lambda **kw: inbox.permits(session, **kw), 1, structure="S1-1")
        assert [p.id for p in mine] == [p["id"] for p in permits if p["structure"] == "S1-1"]
        assert inbox.get_permit(session, "P-000") is not None
        assert inbox.get_permit(session, "P-999") is None


def _expected_parties(
    records: list[dict[str, Any]],
) -> dict[str, tuple[bool, list[str], list[str]]]:
    out: dict[str, tuple[bool, list[str], list[str]]] = {}
    blocking = {"filed", "stop_order", "rectify_order", "demolition_order"}
    for c in sorted((r for r in records if r["type"] == "case"), key=lambda r: r["id"]):
        if "party" not in c:
            continue
        _, named, suspending = out.setdefault(c["party"], (False, [], []))
        named.append(c["id"])
        if c.get("party_suspended") and c["stage"] in blocking:
            suspending.append(c["id"])
    return {p: (bool(s), n, s) for p, (_, n, s) in out.items()}


def test_parties(db: Any) -> None:
    database, records = db
    expected = _expected_parties(records)
    assert {s for s, _, _ in expected.values()} == {True, False}, "both kinds prepared"
    with database.session() as session:
        got = _all(lambda **kw: inbox.parties(session, **kw), 1)
        assert [p.id for p in got] == sorted(expected)
        for p in got:
            assert (p.suspended, list(p.cases), list(p.suspending_cases)) == expected[p.id]
        suspended = _all(lambda **kw: inbox.parties(session, **kw), 2, suspended=True)
        assert [p.id for p in suspended] == sorted(p for p, e in expected.items() if e[0])
        free = _all(lambda **kw: inbox.parties(session, **kw), 2, suspended=False)
        assert [p.id for p in free] == sorted(p for p, e in expected.items() if not e[0])
        in_district = _all(lambda **kw: inbox.parties(session, **kw), 2, district="110230")
        assert [p.id for p in in_district] == sorted(
            {
                c["party"]
                for c in records
                if c["type"] == "case" and "party" in c and _district(c["structure"]) == "110230"
            }
        )
        one = inbox.get_party(session, "ORG-B")
        assert one is not None and (one.suspended, list(one.cases)) == expected["ORG-B"][:2]
        assert inbox.get_party(session, "ORG-Z") is None


# --- Bad tokens and sizes --------------------------------------------------------------------


def test_bad_page_tokens(db: Any) -> None:
    database, _ = db
    with database.session() as session:
        case_token = inbox.cases(session, page_size=1).next_page_token
        assert case_token is not None
        with pytest.raises(BadPageToken, match="a token of the 'cases' list, not of 'notices'"):
            inbox.notices(session, now=NOW, page_token=case_token)
        for bad in ("not a token!", "AAAA", base64.urlsafe_b64encode(b'["notices", 1]').decode()):
            with pytest.raises(BadPageToken, match="page_token: not a page token of this list"):
                inbox.notices(session, now=NOW, page_token=bad)
        forged = base64.urlsafe_b64encode(b'["notices","yesterday","N-1"]').decode()
        with pytest.raises(BadPageToken, match="page_token"):
            inbox.notices(session, now=NOW, page_token=forged)
        for size in (1001, -1):
            with pytest.raises(ValueError, match=f"page_size: {size} is not between 1 and 1000"):
                inbox.cases(session, page_size=size)
        with pytest.raises(ValueError, match="state: 'shut' is not open or acknowledged"):
            inbox.notices(session, now=NOW, state="shut")
        with pytest.raises(ValueError, match="state: 'late' is not one of awaiting_referral"):
            inbox.referrals(session, now=NOW, state="late")
        with pytest.raises(ValueError, match="now: a naive datetime"):
            inbox.referrals(session, now=datetime(2026, 10, 1))
        assert len(inbox.cases(session).items) == 14  # 0: the default size, 100
