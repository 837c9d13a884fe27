"""``permitgate department ...`` end to end: the command line, the department client and the real
registry service over mutual TLS on loopback (SQLite and PostgreSQL). Each command's line, its
JSON, its exit code, and the option named when an argument is wrong."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from department_support import S1, S2, World, make_world

from permitgate.cli import main


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = make_world(db_url, tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()


def env(world: World, department: str) -> dict[str, str]:
    """The department's connection, from the environment as a department's shell sets it."""
    assert world.app is not None and world.app.departments_address is not None
    cert, cert_key = world.pki.client(department)
    return {
        "PERMITGATE_REGISTRY": world.app.departments_address,
        "PERMITGATE_DEPARTMENT_KEY": str(world.scratch / "department-keys" / f"{department}.key"),
        "PERMITGATE_DEPARTMENT_CERT": str(cert),
        "PERMITGATE_DEPARTMENT_CERT_KEY": str(cert_key),
        "PERMITGATE_REGISTRY_CA": str(world.pki.ca),
    }


def run(environment: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["department", *args], env=environment)


@pytest.fixture
def planning(world: World) -> dict[str, str]:
    return env(world, "city-planning")


def test_issue_then_read_a_permit(world: World, planning: dict[str, str]) -> None:
    permit = [
        "issue-permit", "P-2", "--structure", S2, "--kind", "land_use_planning",
        "--issued", "2026-03-02T08:00:00+08:00", "--use", "office", "--request-id", "r-p2",
    ]  # fmt: skip
    result = run(planning, *permit)
    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert first.startswith("issue_permit by city-planning: seq ")
    assert first.endswith(", request r-p2")
    assert second.strip() == (
        f"permit P-2  land_use_planning  valid  {S2}  issued 2026-03-02T00:00:00Z  use office"
    )
    shown = run(planning, "permit", "P-2", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["use"] == "office"
    status = run(planning, "change-permit-status", "P-2", "revoked", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["permit"]["status"] == "revoked"
    taken = run(planning, "change-permit-status", "P-2", "valid", "--request-id", "r-p2")
    assert taken.exit_code == 1  # another write under a request id already used
    assert "request_id 'r-p2'" in taken.stderr


def test_case_from_finding_to_answer(world: World) -> None:
    housing = env(world, "city-housing")
    enforcement = env(world, "city-enforcement")
    opened = run(
        housing,
        "open-case", "C-2", "--structure", "110229-0009-0001", "--kind", "no_planning_permit",
        "--source", "satellite", "--new-structure-area", "urban", "--district", "110229",
        "--party", "91110000MA0000009Z",
    )  # fmt: skip
    assert opened.exit_code == 0, opened.output
    assert "case C-2  no_planning_permit  reported  110229-0009-0001  district 110229" in (
        opened.output
    )
    referral = run(housing, "referral", "C-2")
    assert referral.stdout.startswith("referral C-2  awaiting_referral  no_planning_permit")
    assert "found by city-housing" in referral.stdout
    referred = run(housing, "refer-case", "C-2", "city-enforcement")
    assert referred.exit_code == 0, referred.output
    assert run(enforcement, "move-case", "C-2", "filed").exit_code == 0
    moved = run(enforcement, "move-case", "C-2", "stop_order")
    assert moved.exit_code == 0, moved.output
    answered = run(enforcement, "answer-referral", "C-2", "stop order served")
    assert answered.exit_code == 0, answered.output
    shown = json.loads(run(housing, "referral", "C-2", "--json").stdout)
    assert (shown["state"], shown["answer"], shown["referred_to"]) == (
        "answered",
        "stop order served",
        "city-enforcement",
    )
    suspended = run(enforcement, "suspend-party", "C-2")
    assert suspended.exit_code == 0, suspended.output
    assert "party 91110000MA0000009Z SUSPENDED" in suspended.output
    party = run(housing, "party", "91110000MA0000009Z")
    assert party.stdout.startswith("party 91110000MA0000009Z  SUSPENDED  cases C-2")
    lifted = run(enforcement, "suspend-party", "C-2", "--lift", "--json")
    assert json.loads(lifted.output)["case"]["party_suspended"] is False
    listed = run(housing, "cases", "--district", "110229")
    assert listed.exit_code == 0, listed.output
    assert [line.split()[1] for line in listed.stdout.splitlines()] == ["C-2"]


def test_refused_write_prints_the_rule_and_exits_1(world: World, planning: dict[str, str]) -> None:
    before = world.counts()
    result = run(
        planning,
        "issue-permit", "P-3", "--structure", S1, "--kind", "construction_works",
        "--issued", "2026-10-01T00:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "permitgate: refused: Art. 11: housing and construction issues construction_works "
        "permits, not planning"
    )
    assert world.counts() == before


def test_missing_record_and_conflict_exit_1(world: World, planning: dict[str, str]) -> None:
    missing = run(planning, "move-case", "C-404", "filed")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "permitgate: write.case: no case 'C-404'"
    taken = run(
        planning,
        "open-case", "C-1", "--structure", S1, "--kind", "temporary_overdue", "--stage", "filed",
        "--source", "patrol",
    )  # fmt: skip
    assert taken.exit_code == 1 and "C-1" in taken.stderr
    invalid = run(planning, "answer-referral", "C-1", "x" * 2001)
    assert invalid.exit_code == 2 and "ANSWER: 1 to 2000 characters" in invalid.stderr


def test_lists_follow_pages_and_limit(world: World, planning: dict[str, str]) -> None:
    for n in range(105):  # more than the client's page of 100
        result = run(
            planning,
            "issue-permit", f"P-L{n:03}", "--structure", S2, "--kind", "land_use_planning",
            "--issued", "2026-10-01T00:00:00Z",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    listed = run(planning, "permits", "--structure", S2, "--json")
    assert listed.exit_code == 0, listed.output
    ids = sorted(json.loads(line)["id"] for line in listed.stdout.splitlines())
    assert ids == [f"P-L{n:03}" for n in range(105)]
    limited = run(planning, "permits", "--limit", "3")
    assert len(limited.stdout.splitlines()) == 3 and "(3 shown)" in limited.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["move-case", "C-1", "wrecked"], "'wrecked' is not one of 'reported'"),
        (["issue-permit", "P-1", "--structure", "S", "--kind", "deed", "--issued",
          "2026-10-01T00:00:00Z"], "'--kind'"),
        (["issue-permit", "P-1", "--structure", "S", "--kind", "land_certificate", "--issued",
          "2026-10-01"], "'--issued'"),
        (["open-case", "C-1", "--structure", "S", "--kind", "temporary_overdue", "--source",
          "patrol", "--district", "110228"], "--district:"),
        (["open-case", "C-1", "--structure", "S", "--kind", "temporary_overdue", "--source",
          "patrol", "--new-structure-area", "urban"], "--district:"),
        (["answer-referral", "C-1", " "], "ANSWER: 1 to 2000 characters"),
        (["cases", "--registry", "127.0.0.1:99999"], "'--registry'"),
        (["permits", "--limit", "0"], "'--limit'"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_option(
    world: World, planning: dict[str, str], args: list[str], named: str
) -> None:
    before = world.counts()
    result = run(planning, *args)
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert world.counts() == before


def test_missing_connection_options_are_named(
    world: World, planning: dict[str, str], tmp_path: Path
) -> None:
    before = world.counts()
    no_cert = {k: v for k, v in planning.items() if k != "PERMITGATE_DEPARTMENT_CERT"}
    result = run(no_cert, "cases")
    assert result.exit_code == 2 and "Missing option '--cert'" in result.stderr
    no_key = {k: v for k, v in planning.items() if k != "PERMITGATE_DEPARTMENT_KEY"}
    write = run(no_key, "move-case", "C-1", "stop_order")
    assert write.exit_code == 2 and "--key (or PERMITGATE_DEPARTMENT_KEY)" in write.stderr
    assert run(no_key, "cases").exit_code == 0  # reading needs no signing key
    not_a_key = tmp_path / "city-planning.key"
    not_a_key.write_text("not a key")
    bad = run({**planning, "PERMITGATE_DEPARTMENT_KEY": str(not_a_key)}, "move-case", "C", "filed")
    assert bad.exit_code == 2 and "Invalid value for --key" in bad.stderr
    assert "not a PEM private key" in bad.stderr
    assert world.counts() == before


def test_key_of_another_department_is_refused_before_sending(world: World) -> None:
    before = world.counts()
    mixed = env(world, "city-planning")
    mixed["PERMITGATE_DEPARTMENT_KEY"] = env(world, "city-housing")["PERMITGATE_DEPARTMENT_KEY"]
    result = run(mixed, "move-case", "C-1", "stop_order")
    assert result.exit_code == 2
    assert "'city-housing''s signing key, but the certificate names 'city-planning'" in (
        result.stderr
    )
    assert world.counts() == before


def test_unreachable_registry_exits_3(planning: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run({**planning, "PERMITGATE_REGISTRY": f"127.0.0.1:{port}"}, "cases")
    assert result.exit_code == 3
    assert f"the registry at 127.0.0.1:{port} did not answer" in result.stderr
