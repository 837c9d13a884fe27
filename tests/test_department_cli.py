"""``permitgate department ...`` end to end: the command line, the department client, and a
registry over mutual TLS on loopback. Each command's line, its JSON, its exit code, and the
option named when an argument is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from department_registry import DepartmentPKI, Identity, Registry, loopback_registry

from permitgate.cli import main
from registry.departments import Role

STRUCTURES = {"110228-0001-0001": "110228", "110229-0001-0001": "110229"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DepartmentPKI:
    return DepartmentPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def registry(pki: DepartmentPKI) -> Iterator[Registry]:
    with loopback_registry(pki, STRUCTURES) as registry:
        registry.enrol(pki.client("city-planning"), Role.PLANNING)
        registry.enrol(pki.client("city-housing"), Role.HOUSING)
        registry.enrol(pki.client("city-enforcement"), Role.ENFORCEMENT)
        yield registry


def env(registry: Registry, identity: Identity) -> dict[str, str]:
    """The department's connection, from the environment as a department's shell sets it."""
    return {
        "PERMITGATE_REGISTRY": registry.target,
        "PERMITGATE_DEPARTMENT_KEY": str(identity.key),
        "PERMITGATE_DEPARTMENT_CERT": str(identity.cert),
        "PERMITGATE_DEPARTMENT_CERT_KEY": str(identity.cert_key),
        "PERMITGATE_REGISTRY_CA": str(registry.ca),
    }


def run(environment: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["department", *args], env=environment)


@pytest.fixture
def planning(registry: Registry, pki: DepartmentPKI) -> dict[str, str]:
    return env(registry, pki.client("city-planning"))


def test_issue_then_read_a_permit(registry: Registry, planning: dict[str, str]) -> None:
    result = run(
        planning,
        "issue-permit", "P-1", "--structure", "110228-0001-0001", "--kind",
        "construction_planning", "--issued", "2026-10-01T08:00:00+08:00", "--use", "office",
        "--request-id", "r-p1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert first.startswith("issue_permit by city-planning: seq 1, registry version 2")
    assert first.endswith("request r-p1")
    assert second.strip() == (
        "permit P-1  construction_planning  valid  110228-0001-0001  issued "
        "2026-10-01T00:00:00Z  use office"
    )
    assert registry.permits["P-1"].use == "office"
    again = run(
        planning,
        "issue-permit", "P-1", "--structure", "110228-0001-0001", "--kind",
        "construction_planning", "--issued", "2026-10-01T08:00:00+08:00", "--use", "office",
        "--request-id", "r-p1", "--json",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    answer = json.loads(again.output)
    assert answer["replayed"] is True and answer["permit"]["issued"] == "2026-10-01T00:00:00Z"
    shown = run(planning, "permit", "P-1", "--json")
    assert json.loads(shown.output)["use"] == "office"
    status = run(planning, "change-permit-status", "P-1", "revoked")
    assert status.exit_code == 0, status.output
    assert registry.permits["P-1"].status == "revoked"


def test_case_from_finding_to_answer(registry: Registry, pki: DepartmentPKI) -> None:
    housing = env(registry, pki.client("city-housing"))
    enforcement = env(registry, pki.client("city-enforcement"))
    opened = run(
        housing,
        "open-case", "C-1", "--structure", "110229-0009-0001", "--kind", "no_planning_permit",
        "--source", "satellite", "--opened", "2026-11-02T10:00:00+08:00",
        "--new-structure-area", "urban", "--district", "110229", "--party", "ORG-1",
    )  # fmt: skip
    assert opened.exit_code == 0, opened.output
    assert "case C-1  no_planning_permit  reported  110229-0009-0001  district 110229" in (
        opened.output
    )
    assert registry.referrals["C-1"].found_by == "city-housing"
    referred = run(housing, "refer-case", "C-1", "city-enforcement")
    assert referred.exit_code == 0, referred.output
    assert "referral C-1  referred" in referred.output and "to city-enforcement" in referred.output
    moved = run(enforcement, "move-case", "C-1", "stop_order")
    assert moved.exit_code == 0, moved.output
    registry.referrals["C-1"].decided_at.GetCurrentTime()
    registry.referrals["C-1"].state = "decided"
    answered = run(enforcement, "answer-referral", "C-1", "stop order served")
    assert answered.exit_code == 0, answered.output
    assert registry.referrals["C-1"].answer == "stop order served"
    suspended = run(enforcement, "suspend-party", "C-1")
    assert suspended.exit_code == 0, suspended.output
    assert "party ORG-1 SUSPENDED" in suspended.output
    lifted = run(enforcement, "suspend-party", "C-1", "--lift", "--json")
    assert json.loads(lifted.output)["case"]["party_suspended"] is False
    listed = run(housing, "cases", "--district", "110229")
    assert listed.exit_code == 0, listed.output
    assert [line.split()[1] for line in listed.stdout.splitlines()] == ["C-1"]


def test_refused_write_prints_the_rule_and_exits_1(
    registry: Registry, planning: dict[str, str]
) -> None:
    result = run(
        planning,
        "issue-permit", "P-2", "--structure", "110228-0001-0001", "--kind",
        "construction_works", "--issued", "2026-10-01T00:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "permitgate: refused: Art. 11: housing and construction issues construction_works "
        "permits, not planning"
    )
    assert registry.permits == {}


def test_missing_record_and_conflict_exit_1(registry: Registry, planning: dict[str, str]) -> None:
    missing = run(planning, "move-case", "C-404", "filed")
    assert (missing.exit_code, missing.stderr.strip()) == (1, "permitgate: case C-404: none")
    case = ["open-case", "C-5", "--structure", "110228-0001-0001", "--kind",
            "temporary_overdue", "--stage", "filed", "--source", "patrol"]  # fmt: skip
    assert run(planning, *case).exit_code == 0
    taken = run(planning, *case)
    assert taken.exit_code == 1 and "case.id: C-5 exists" in taken.stderr


def test_lists_follow_pages_and_limit(registry: Registry, planning: dict[str, str]) -> None:
    for n in range(120):  # more than the client's page of 100
        run(
            planning,
            "issue-permit", f"P-{n:03}", "--structure", "110228-0001-0001", "--kind",
            "land_use_planning", "--issued", "2026-10-01T00:00:00Z",
        )  # fmt: skip
    listed = run(planning, "permits", "--json")
    assert listed.exit_code == 0, listed.output
    ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    assert ids == [f"P-{n:03}" for n in range(120)]
    limited = run(planning, "permits", "--limit", "3")
    assert len(limited.stdout.splitlines()) == 3 and "(3 shown)" in limited.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["move-case", "C-1", "wrecked"], "'wrecked' is not one of 'reported'"),
        (
            [
                "issue-permit",
                "P-1",
                "--structure",
                "S",
                "--kind",
                "deed",
                "--issued",
                "2026-10-01T00:00:00Z",
            ],
            "'--kind'",
        ),
        (
            [
                "issue-permit",
                "P-1",
                "--structure",
                "S",
                "--kind",
                "land_certificate",
                "--issued",
                "2026-10-01",
            ],
            "'--issued'",
        ),
        (
            [
                "open-case",
                "C-1",
                "--structure",
                "S",
                "--kind",
                "temporary_overdue",
                "--source",
                "patrol",
                "--district",
                "110228",
            ],
            "--district:",
        ),
        (
            [
                "open-case",
                "C-1",
                "--structure",
                "S",
                "--kind",
                "temporary_overdue",
                "--source",
                "patrol",
                "--new-structure-area",
                "urban",
            ],
            "--district:",
        ),
        (["answer-referral", "C-1", " "], "ANSWER: 1 to 2000 characters"),
        (["cases", "--registry", "127.0.0.1:99999"], "'--registry'"),
        (["permits", "--limit", "0"], "'--limit'"),
    ],
)
def test_bad_arguments_name_the_option(
    registry: Registry, planning: dict[str, str], args: list[str], named: str
) -> None:
    result = run(planning, *args)
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert registry.statements == []


def test_missing_connection_options_are_named(
    registry: Registry, planning: dict[str, str], tmp_path: Path
) -> None:
    no_cert = {k: v for k, v in planning.items() if k != "PERMITGATE_DEPARTMENT_CERT"}
    result = run(no_cert, "cases")
    assert result.exit_code == 2 and "Missing option '--cert'" in result.stderr
    no_key = {k: v for k, v in planning.items() if k != "PERMITGATE_DEPARTMENT_KEY"}
    write = run(no_key, "move-case", "C-1", "filed")
    assert write.exit_code == 2 and "--key (or PERMITGATE_DEPARTMENT_KEY)" in write.stderr
    assert run(no_key, "cases").exit_code == 0  # reading needs no signing key
    not_a_key = tmp_path / "city-planning.key"
    not_a_key.write_text("not a key")
    bad = run({**planning, "PERMITGATE_DEPARTMENT_KEY": str(not_a_key)}, "move-case", "C", "filed")
    assert bad.exit_code == 2 and "Invalid value for --key" in bad.stderr
    assert "not a PEM private key" in bad.stderr
    assert registry.statements == []


def test_key_of_another_department_is_refused_before_sending(
    registry: Registry, pki: DepartmentPKI
) -> None:
    mixed = env(registry, pki.client("city-planning"))
    mixed["PERMITGATE_DEPARTMENT_KEY"] = str(pki.client("city-housing").key)
    result = run(mixed, "move-case", "C-1", "filed")
    assert result.exit_code == 2
    assert "'city-housing''s signing key, but the certificate names 'city-planning'" in (
        result.stderr
    )
    assert registry.statements == []


def test_unreachable_registry_exits_3(planning: dict[str, str]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(
        main,
        ["department", "cases"],
        env={**planning, "PERMITGATE_REGISTRY": f"127.0.0.1:{port}"},
    )
    assert result.exit_code == 3
    assert f"the registry at 127.0.0.1:{port} did not answer" in result.stderr
