"""``permitgate inbox ...`` end to end: the working group lists its notices and referrals with
filters, acknowledges a notice (a signed write), and shows one item; against a registry over
mutual TLS on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from department_registry import DepartmentPKI, Identity, Registry, loopback_registry

from permitgate.cli import main
from registry.departments import Role

STRUCTURES = {"110228-0001-0001": "110228", "110229-0001-0001": "110229"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DepartmentPKI:
    return DepartmentPKI(tmp_path_factory.mktemp("pki"))


def env(registry: Registry, identity: Identity) -> dict[str, str]:
    return {
        "PERMITGATE_REGISTRY": registry.target,
        "PERMITGATE_DEPARTMENT_KEY": str(identity.key),
        "PERMITGATE_DEPARTMENT_CERT": str(identity.cert),
        "PERMITGATE_DEPARTMENT_CERT_KEY": str(identity.cert_key),
        "PERMITGATE_REGISTRY_CA": str(registry.ca),
    }


@pytest.fixture
def registry(pki: DepartmentPKI) -> Iterator[Registry]:
    """Three notices (tax 10 days old, health 1 day, tax 0 days in 110229) and two referrals
    (one awaiting referral and overdue, one answered)."""
    with loopback_registry(pki, STRUCTURES) as registry:
        for department, role in (
            ("working-group", Role.WORKING_GROUP),
            ("city-housing", Role.HOUSING),
            ("city-planning", Role.PLANNING),
        ):
            registry.enrol(pki.client(department), role)
        registry.add_notice("N-1", "110228-0001-0001", "tax", 10)
        registry.add_notice("N-2", "110228-0001-0001", "health", 1)
        registry.add_notice("N-3", "110229-0001-0001", "tax", 0)
        housing = env(registry, pki.client("city-housing"))
        for case, structure, kind in (
            ("C-1", "110228-0001-0001", "no_planning_permit"),
            ("C-2", "110229-0001-0001", "unauthorized_use_change"),
        ):
            opened = CliRunner().invoke(
                main,
                [
                    "department",
                    "open-case",
                    case,
                    "--structure",
                    structure,
                    "--kind",
                    kind,
                    "--source",
                    "patrol",
                    "--opened",
                    "2026-11-02T10:00:00+08:00",
                ],
                env=housing,
            )
            assert opened.exit_code == 0, opened.output
        registry.referrals["C-1"].overdue = "referral"
        registry.referrals["C-2"].state = "answered"
        registry.statements.clear()
        yield registry


@pytest.fixture
def group(registry: Registry, pki: DepartmentPKI) -> dict[str, str]:
    return env(registry, pki.client("working-group"))


def inbox(environment: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["inbox", *args], env=environment)


def listed(result: Result) -> list[tuple[str, str]]:
    """(kind, id) of each line printed."""
    assert result.exit_code == 0, result.output
    return [tuple(line.split()[:2]) for line in result.stdout.splitlines()]  # type: ignore[misc]


def test_list_shows_notices_then_referrals(group: dict[str, str]) -> None:
    result = inbox(group, "list")
    assert listed(result) == [
        ("notice", "N-1"),
        ("notice", "N-2"),
        ("notice", "N-3"),
        ("referral", "C-1"),
        ("referral", "C-2"),
    ]
    assert "(3 notices, 2 referrals)" in result.stderr
    first = result.stdout.splitlines()[0]
    assert "notice N-1  open  tax  110228-0001-0001  district 110228" in first
    assert "(10 days old)" in first and "reasons MISSING_PERMIT" in first
    assert "OVERDUE (referral)" in result.stdout.splitlines()[3]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--office", "tax"], [("notice", "N-1"), ("notice", "N-3")]),
        (["--district", "110229"], [("notice", "N-3"), ("referral", "C-2")]),
        (["--min-age-days", "1", "--notices"], [("notice", "N-1"), ("notice", "N-2")]),
        (["--max-age-days", "5", "--notices"], [("notice", "N-2"), ("notice", "N-3")]),
        (["--referrals"], [("referral", "C-1"), ("referral", "C-2")]),
        (["--referrals", "--state", "open"], [("referral", "C-1")]),
        (["--state", "acknowledged"], [("referral", "C-2")]),
        (["--overdue"], [("referral", "C-1")]),
    ],
)
def test_list_filters(
    group: dict[str, str], args: list[str], expected: list[tuple[str, str]]
) -> None:
    assert listed(inbox(group, "list", *args)) == expected


def test_ack_acknowledges_and_the_state_filter_sees_it(
    registry: Registry, group: dict[str, str]
) -> None:
    result = inbox(group, "ack", "N-2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("acknowledge_notice by working-group: seq ")
    assert "notice N-2  acknowledged  by working-group" in result.stdout
    assert registry.notices["N-2"].acknowledged_by == "working-group"
    assert listed(inbox(group, "list", "--notices", "--state", "open")) == [
        ("notice", "N-1"),
        ("notice", "N-3"),
    ]
    shown = inbox(group, "show", "N-2", "--json")
    assert json.loads(shown.stdout)["state"] == "acknowledged"


def test_ack_by_another_department_names_the_rule(registry: Registry, pki: DepartmentPKI) -> None:
    result = inbox(env(registry, pki.client("city-planning")), "ack", "N-1")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "permitgate: refused: Art. 13: notices go to the working group, which acknowledges "
        "them, not planning"
    )
    assert registry.notices["N-1"].state == "open"


def test_show_finds_a_notice_or_a_referral(group: dict[str, str]) -> None:
    notice = inbox(group, "show", "N-3")
    assert notice.exit_code == 0 and notice.stdout.startswith("notice N-3  open  tax")
    referral = inbox(group, "show", "C-1", "--json")
    assert referral.exit_code == 0, referral.output
    shown = json.loads(referral.stdout)
    assert (shown["case_id"], shown["state"], shown["found_by"]) == (
        "C-1",
        "awaiting_referral",
        "city-housing",
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
