"""The three programs in ``clients/examples/``, run as a user runs them: as subprocesses, against
a real gate serving the demo registry on a free loopback port (``PERMITGATE_TARGET``).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gate_helpers import GateRegistry, RunningGate, served_registry

from registry.demo import SCENARIOS, demo_lines, structure_id

EXAMPLES = Path(__file__).resolve().parent.parent / "clients" / "examples"
OK = structure_id(0)
FLAGGED = structure_id(7)
OTHER_USE = structure_id(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("examples"), demo_lines(len(SCENARIOS))) as served:
        yield served


def run(program: str, *args: str, cwd: Path, target: str) -> subprocess.CompletedProcess[str]:
    """Run ``clients/examples/PROGRAM ARGS`` with the gate named only by ``PERMITGATE_TARGET``."""
    env = {**os.environ, "PERMITGATE_TARGET": target}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / program), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- a utility re-verifying its connections ---------------------------------------------------


def test_utility_recheck_prints_what_is_no_longer_allowed(
    served: tuple[GateRegistry, RunningGate], tmp_path: Path
) -> None:
    done = run(
        "utility_recheck.py",
        str(EXAMPLES / "connections.csv"),
        cwd=tmp_path,
        target=served[1].target,
    )
    assert done.returncode == 1, done.stderr
    headlines = [line.split() for line in done.stdout.splitlines() if not line.startswith(" ")]
    flagged = {(words[0], words[5]) for words in headlines[:-1]}
    assert flagged == {
        ("DENY", structure_id(1)),
        ("DENY", structure_id(2)),
        ("DENY", structure_id(3)),
        ("ALLOW_TEMPORARY", structure_id(5)),
        ("DENY", structure_id(7)),
        ("REVIEW", structure_id(8)),
        ("DENY", structure_id(13)),
    }
    for code in ("PERMIT_REVOKED", "PERMIT_SUSPENDED", "PERMIT_EXPIRED", "TEMPORARY_ONLY"):
        assert f"    {code} (Art. 23" in done.stdout
    assert "account W-100002, water to " + structure_id(1) in done.stdout
    assert done.stdout.splitlines()[-1] == (
        "11 connections checked: 4 still ALLOW, 7 need attention, 0 not checked"
    )
    for allowed in (OK, structure_id(6), structure_id(9), structure_id(12)):
        assert allowed not in done.stdout


def test_utility_recheck_reports_rows_it_could_not_check(
    served: tuple[GateRegistry, RunningGate], tmp_path: Path
) -> None:
    rows = tmp_path / "served.csv"
    rows.write_text(
        "account,structure_id,utility,kind\n"
        f"W-1,{OK},water,permanent\n"
        f"W-2,{OK},steam,permanent\n"
        "W-3,110228-9999-9999,water,permanent\n"
    )
    done = run("utility_recheck.py", str(rows), cwd=tmp_path, target=served[1].target)
    assert done.returncode == 2
    assert "line 3: not checked: utility: unknown value 'steam'" in done.stderr
    assert "DENY" in done.stdout and "NOT_IN_REGISTRY" in done.stdout
    assert done.stdout.splitlines()[-1] == (
        "2 connections checked: 1 still ALLOW, 1 need attention, 1 not checked"
    )


def test_utility_recheck_without_a_gate_says_so(tmp_path: Path) -> None:
    done = run(
        "utility_recheck.py",
        str(EXAMPLES / "connections.csv"),
        cwd=tmp_path,
        target="127.0.0.1:1",
    )
    assert done.returncode == 2
    assert done.stderr.startswith("the gate at 127.0.0.1:1 did not answer")
    assert "Traceback" not in done.stderr


# --- the housing registry gating a transfer -----------------------------------------------------


def test_housing_transfer_keeps_a_receipt_that_verifies_offline(
    served: tuple[GateRegistry, RunningGate], tmp_path: Path
) -> None:
    target = served[1].target
    allowed = run("housing_transfer.py", OK, "--application", "R-1", cwd=tmp_path, target=target)
    assert allowed.returncode == 0, allowed.stderr
    assert f"ALLOW  transfer of {OK} (application R-1)" in allowed.stdout
    assert "saved the gate's keys to demo/keyset.json" in allowed.stdout
    assert "record the transfer" in allowed.stdout
    keyset = json.loads((tmp_path / "demo" / "keyset.json").read_text())
    assert keyset["registry_key"].startswith(served[0].signer.name + "+")

    refused = run(
        "housing_transfer.py", FLAGGED, "--application", "R-2", cwd=tmp_path, target=target
    )
    assert refused.returncode == 1, refused.stderr
    assert "saved the gate's keys" not in refused.stdout  # the KeySet kept from the first run
    assert "    STRUCTURE_FLAGGED (Art. 11)" in refused.stdout
    assert "do not record the transfer" in refused.stdout
    [kept] = [line.split()[-1] for line in refused.stdout.splitlines() if "receipt kept" in line]

    # Later, with no gate at all: only the saved KeySet and the receipt.
    verified = run("housing_transfer.py", "--verify", kept, cwd=tmp_path, target="127.0.0.1:1")
    assert verified.returncode == 0, verified.stderr
    assert "receipt verified: signed by gate" in verified.stdout
    assert "  answer   DENY STRUCTURE_FLAGGED" in verified.stdout
    assert f'"structure_id": "{FLAGGED}"' in verified.stdout
    assert f"version {served[0].version()}" in verified.stdout

    # The same receipt with its verdict rewritten to ALLOW does not verify.
    envelope = json.loads((tmp_path / kept).read_bytes())
    payload = base64.b64decode(envelope["payload"]).replace(b'"DENY"', b'"ALLOW"')
    envelope["payload"] = base64.b64encode(payload).decode()
    (tmp_path / "forged.json").write_text(json.dumps(envelope))
    forged = run("housing_transfer.py", "--verify", "forged.json", cwd=tmp_path, target=target)
    assert forged.returncode == 1
    assert forged.stdout.startswith("NOT VERIFIED: ")
    assert "(BadSignatureError)" in forged.stdout


# --- a licensing office verifying premises ----------------------------------------------------


def test_licensing_office_is_given_one_notice_per_application(
    served: tuple[GateRegistry, RunningGate], tmp_path: Path
) -> None:
    target = served[1].target
    args = [OTHER_USE, "--office", "tax", "--use", "restaurant"]

    def notice(application: str) -> str:
        done = run("licensing_premises.py", *args, "--application", application, cwd=tmp_path,
                   target=target)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"NOTIFY  {OTHER_USE}: tax office, use 'restaurant'")
        assert "    USE_MISMATCH (Art. 13, property_ownership)" in done.stdout
        [line] = [x for x in done.stdout.splitlines() if x.startswith("the working group")]
        return line.removeprefix("the working group was notified: notice ")

    first = notice("L-2026-0093")
    assert first and first == notice("L-2026-0093")  # asked again: the same notice
    assert notice("L-2026-0094") != first
    [(office, application)] = served[0].sql(
        "SELECT office, application_id FROM notification WHERE id = :id", id=first
    )
    assert (office, application) == ("tax", "L-2026-0093")


def test_licensing_office_allowed_and_refused(
    served: tuple[GateRegistry, RunningGate], tmp_path: Path
) -> None:
    target = served[1].target
    allowed = run("licensing_premises.py", OK, "--office", "tax", "--use", "residential",
                  "--application", "L-1", cwd=tmp_path, target=target)  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert "nothing to notify" in allowed.stdout and "notice" not in allowed.stdout
    refused = run("licensing_premises.py", OTHER_USE, "--office", "fire", "--use", "restaurant",
                  "--application", "F-1", cwd=tmp_path, target=target)  # fmt: skip
    assert refused.returncode == 1
    assert refused.stdout.startswith(f"DENY  {OTHER_USE}: fire office")
    assert "do not issue the permit or acceptance (Art. 13)" in refused.stdout
