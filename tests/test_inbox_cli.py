"""``permitgate inbox ...`` end to end: the working group lists its notices and referrals with
filters, acknowledges a notice (a signed write), and shows one item; against the real registry
service over mutual TLS on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from department_support import S1, S2, World, make_world
from permitgate_client.formats import format_time

from permitgate.cli import main
from registry.notifications import record_notification


def env(world: World, department: str) -> dict[str, str]:
    assert world.app is not None and world.app.departments_address is not None
    cert, cert_key = world.pki.client(department)
    return {
        "PERMITGATE_REGISTRY": world.app.departments_address,
        "PERMITGATE_DEPARTMENT_KEY": str(world.scratch / "department-keys" / f"{department}.key"),
        "PERMITGATE_DEPARTMENT_CERT": str(cert),
        "PERMITGATE_DEPARTMENT_CERT_KEY": str(cert_key),
        "PERMITGATE_REGISTRY_CA": str(world.pki.ca),
    }


def department(environment: dict[str, str], *args: str) -> None:
    result = CliRunner().invoke(main, ["department", *args], env=environment)
    assert result.exit_code == 0, result.output


@dataclass
class Inbox:
    world: World
    notices: dict[str, str]  # N-1, N-2, N-3 -> the notice's id

    def label(self, item_id: str) -> str:
        return {v: k for k, v in self.notices.items()}.get(item_id, item_id)


@pytest.fixture
def box(db_url: str, tmp_path: Path) -> Iterator[Inbox]:
    """Three notices (tax 10 days old and health 1 day about S1 in 110228, tax today about S2
    in 110229) and two referrals: C-R1 found by housing 10 days ago and never referred
    (overdue), C-R2 (S2) referred to planning, decided and answered."""
    world = make_world(db_url, tmp_path)
    world.start()
    notices: dict[str, str] = {}
    try:
        now = datetime.now(UTC)
        for n, (structure, office, days) in enumerate(
            ((S1, "tax", 10), (S1, "health", 1), (S2, "tax", 0)), 1
        ):
            notices[f"N-{n}"] = record_notification(
                world.registry.db,
                structure_id=structure,
                office=office,
                application_id=f"A-{n}",
                reasons=[{"code": "MISSING_PERMIT", "article": "13"}],
                at=now - timedelta(days=days, minutes=5),
            )
        housing = env(world, "city-housing")
        planning = env(world, "city-planning")
        found = format_time(now - timedelta(days=10))
        department(housing, "open-case", "C-R1", "--structure", S1, "--kind",
                   "no_planning_permit", "--source", "patrol", "--opened", found)  # fmt: skip
        department(housing, "open-case", "C-R2", "--structure", S2, "--kind",
                   "unauthorized_use_change", "--source", "patrol")  # fmt: skip
        department(housing, "refer-case", "C-R2", "city-planning")
        department(planning, "move-case", "C-R2", "filed")
        department(planning, "move-case", "C-R2", "rectify_order")
        department(planning, "answer-referral", "C-R2", "rectification ordered")
        yield Inbox(world, notices)
    finally:
        world.stop()


@pytest.fixture
def group(box: Inbox) -> dict[str, str]:
    return env(box.world, "working-group")


def inbox(environment: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["inbox", *args], env=environment)


def listed(box: Inbox, result: Result) -> list[tuple[str, str]]:
    """(kind, label) of each line printed: notices first, then referrals, each kind sorted."""
    assert result.exit_code == 0, result.output
    lines = [line.split()[:2] for line in result.stdout.splitlines()]
    kinds = [kind for kind, _ in lines]
    assert kinds == sorted(kinds, key=lambda k: k != "notice")  # notices before referrals
    return sorted(((kind, box.label(i)) for kind, i in lines), key=lambda x: (x[0] != "notice", x))


def test_list_shows_notices_then_referrals(box: Inbox, group: dict[str, str]) -> None:
    result = inbox(group, "list")
    assert listed(box, result) == [
        ("notice", "N-1"),
        ("notice", "N-2"),
        ("notice", "N-3"),
        ("referral", "C-R1"),
        ("referral", "C-R2"),
    ]
    assert "(3 notices, 2 referrals)" in result.stderr
    first = next(line for line in result.stdout.splitlines() if box.notices["N-1"] in line)
    assert f"notice {box.notices['N-1']}  open  tax  {S1}  district 110228" in first
    assert "(10 days old)" in first and "reasons MISSING_PERMIT" in first
    late = next(line for line in result.stdout.splitlines() if "C-R1" in line)
    assert late.startswith("referral C-R1  awaiting_referral") and "OVERDUE (referral)" in late


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--office", "tax"], [("notice", "N-1"), ("notice", "N-3")]),
        (["--district", "110229"], [("notice", "N-3"), ("referral", "C-R2")]),
        (["--min-age-days", "1", "--notices"], [("notice", "N-1"), ("notice", "N-2")]),
        (["--max-age-days", "5", "--notices"], [("notice", "N-2"), ("notice", "N-3")]),
        (["--referrals"], [("referral", "C-R1"), ("referral", "C-R2")]),
        (["--referrals", "--state", "open"], [("referral", "C-R1")]),
        (["--state", "acknowledged"], [("referral", "C-R2")]),
        (["--overdue"], [("referral", "C-R1")]),
    ],
)
def test_list_filters(
    box: Inbox, group: dict[str, str], args: list[str], expected: list[tuple[str, str]]
) -> None:
    assert listed(box, inbox(group, "list", *args)) == expected


def test_ack_acknowledges_and_the_state_filter_sees_it(box: Inbox, group: dict[str, str]) -> None:
    notice = box.notices["N-2"]
    result = inbox(group, "ack", notice)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("acknowledge_notice by working-group: seq ")
    assert f"notice {notice}  acknowledged  by working-group" in result.stdout
    assert listed(box, inbox(group, "list", "--notices", "--state", "open")) == [
        ("notice", "N-1"),
        ("notice", "N-3"),
    ]
    shown = inbox(group, "show", notice, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["state"] == "acknowledged"
    assert json.loads(shown.stdout)["acknowledged_by"] == "working-group"


def test_ack_by_another_department_names_the_rule(box: Inbox, group: dict[str, str]) -> None:
    result = inbox(env(box.world, "city-planning"), "ack", box.notices["N-1"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "permitgate: refused: Art. 13: notices go to the working group, which acknowledges "
        "them, not planning"
    )
    assert json.loads(inbox(group, "show", box.notices["N-1"], "--json").stdout)["state"] == "open"


def test_show_finds_a_notice_or_a_referral(box: Inbox, group: dict[str, str]) -> None:
    notice = inbox(group, "show", box.notices["N-3"])
    assert notice.exit_code == 0
    assert notice.stdout.startswith(f"notice {box.notices['N-3']}  open  tax")
    referral = inbox(group, "show", "C-R2", "--json")
    assert referral.exit_code == 0, referral.output
    shown = json.loads(referral.stdout)
    assert (shown["case_id"], shown["state"], shown["found_by"], shown["answer"]) == (
        "C-R2",
        "answered",
        "city-housing",
        "rectification ordered",
    )
    missing = inbox(group, "show", "X-9")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "permitgate: no notice or referral 'X-9'"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["list", "--state", "closed"], "--state"),
        (["list", "--office", "tax", "--referrals"], "--office"),
        (["list", "--notices", "--referrals"], "--notices and --referrals"),
        (["list", "--min-age-days", "5", "--max-age-days", "2"], "--min-age-days"),
        (["list", "--max-age-days", "0"], "--max-age-days"),
    ],
)
def test_bad_arguments_name_the_option(group: dict[str, str], args: list[str], named: str) -> None:
    result = inbox(group, *args)
    assert result.exit_code == 2
    assert named in result.stderr
