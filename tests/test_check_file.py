"""``permitgate check --exit-code`` and ``permitgate check-file`` against a real gate: a demo
registry served on loopback, the commands run through click's runner or as real processes."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from gate_helpers import GateRegistry, RunningGate, served_registry, start_gate
from permitgate_client import Client

from permitgate.check_cli import VERDICT_EXIT_CODES
from permitgate.check_file import OUTPUT_COLUMNS
from permitgate.cli import main
from registry.demo import SCENARIOS, demo_lines, structure_id

PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
OK = structure_id(0)  # urban, every permit in force
REVOKED = structure_id(1)
TEMP_ONLY = structure_id(5)  # temporary construction planning permit only
PENDING = structure_id(8)  # reported lead: REVIEW
OTHER_USE = structure_id(10)  # the property certificate names another use
HEADER = "type,structure_id,utility,kind,requested_until,office,declared_use,application_id\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("check"), demo_lines(len(SCENARIOS))) as served:
        yield served


@pytest.fixture
def target(served: tuple[GateRegistry, RunningGate]) -> str:
    return served[1].target


def cli(*args: str, input: str | bytes | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# --- check --exit-code -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "verdict", "code"),
    [
        (["connection", OK, "--utility", "water"], "ALLOW", 0),
        (["connection", TEMP_ONLY, "--utility", "power"], "ALLOW_TEMPORARY", 0),
        (
            ["premises", OTHER_USE, "--office", "tax", "--use", "restaurant", "--application", "A"],
            "NOTIFY",
            10,
        ),
        (["connection", PENDING, "--utility", "water"], "REVIEW", 20),
        (["registration", REVOKED, "--kind", "transfer"], "DENY", 30),
    ],
)
def test_exit_code_follows_the_verdict(
    target: str, args: list[str], verdict: str, code: int
) -> None:
    plain = cli("check", *args, "--target", target)
    assert plain.exit_code == 0  # without --exit-code: answered
    assert plain.stdout.startswith(f"{verdict}  ")
    coded = cli("check", *args, "--target", target, "--exit-code")
    assert coded.exit_code == code, coded.output
    assert coded.stdout.startswith(f"{verdict}  ")
    assert VERDICT_EXIT_CODES[verdict] == code  # type: ignore[index]


def test_exit_code_as_a_real_process(target: str) -> None:
    args = ["connection", REVOKED, "--utility", "gas", "--target", target]
    done = subprocess.run(
        [PERMITGATE, "check", *args, "--exit-code", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 30, done.stderr
    assert json.loads(done.stdout)["verdict"] == "DENY"


def test_exit_code_keeps_2_for_an_invalid_check_and_3_for_no_gate(target: str) -> None:
    invalid = cli(
        "check", "connection", "", "--utility", "water", "--target", target, "--exit-code"
    )
    assert invalid.exit_code == 2 and "invalid check: structure_id:" in invalid.stderr
    overflow = cli(
        "check", "connection", OK, "--utility", "water", "--kind", "temporary", "--until",
        "0001-01-01T00:30:00+01:00", "--target", target, "--exit-code",
    )  # fmt: skip
    assert overflow.exit_code == 2 and "out of range once turned into UTC" in overflow.stderr
    unreachable = cli(
        "check",
        "registration",
        OK,
        "--kind",
        "initial",
        "--target",
        nothing_listening(),
        "--exit-code",
    )
    assert unreachable.exit_code == 3 and "did not answer" in unreachable.stderr


def nothing_listening() -> str:
    """An address where no gate listens (a port bound for a moment, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# --- check-file ----------------------------------------------------------------------------------


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_check_file_answers_every_row_with_its_line(target: str, tmp_path: Path) -> None:
    data = tmp_path / "checks.csv"
    data.write_text(
        HEADER
        + f"connection,{OK},water,,,,,\n"  # line 2
        + f"connection,{TEMP_ONLY},Power,,,,,\n"  # 3: choices ignore case
        + f"registration,{REVOKED},,transfer,,,,R-1\n"  # 4
        + "\n"  # 5: blank
        + f'premises,{OTHER_USE},,,,tax,"restaurant\nand bar",A-1\n'  # 6-7: the gate refuses
        + f"premises,{OTHER_USE},,,,tax,restaurant,A-1\n"  # 8
        + f"connection,{PENDING},water,,,,,\n"  # 9
        + f"connection,{OK},steam,,,,,\n"  # 10: bad utility
        + f"connection,{OK},water,temporary,2020-01-01T00:00:00Z,,,\n"  # 11: the gate refuses
        + f"premises,{OK},,,,fire,,\n"  # 12: declared_use missing
        + f"registration,{OK},water,initial,,,,\n"  # 13: a column its type does not use
        + f"connection,{OK},water,,not-a-time,,,\n"  # 14
        + f"connection,{OK},water,,,,,,extra\n"  # 15: more cells than columns
        + f"lookup,{OK},,,,,,\n"  # 16
    )
    result = cli("check-file", str(data), "--target", target)
    assert result.exit_code == 1, result.output
    out = rows_of(result.stdout)
    assert list(out[0]) == list(OUTPUT_COLUMNS)
    assert [(r["line"], r["verdict"]) for r in out] == [
        ("2", "ALLOW"),
        ("3", "ALLOW_TEMPORARY"),
        ("4", "DENY"),
        ("6", ""),
        ("8", "NOTIFY"),
        ("9", "REVIEW"),
        ("10", ""),
        ("11", ""),
        ("12", ""),
        ("13", ""),
        ("14", ""),
        ("15", ""),
        ("16", ""),
    ]
    assert out[2]["reasons"] and out[2]["application_id"] == "R-1"
    assert out[4]["notification_id"].startswith("N-")
    assert all(r["decision_id"] for r in (*out[:3], *out[4:6]))
    errors = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert errors[0].startswith(
        "line 6: refused by the gate: declared_use: must not contain control characters"
    )
    assert errors[1:] == [
        "line 10: utility: unknown value 'steam' (one of water, power, gas, heat)",
        "line 11: refused by the gate: requested_until: 2020-01-01T00:00:00Z is in the past",
        "line 12: declared_use: missing",
        "line 13: utility: not used by a registration check",
        "line 14: requested_until: not an RFC 3339 timestamp: 'not-a-time'",
        "line 15: 9 cells, but the header names 8 columns",
        "line 16: type: unknown value 'lookup' (one of connection, registration, premises)",
    ]
    assert [r["error"] for r in (out[3], *out[6:])] == [e.split(": ", 1)[1] for e in errors]
    assert result.stderr.splitlines()[-1] == (
        "5 of 13 rows checked: 1 ALLOW, 1 ALLOW_TEMPORARY, 1 NOTIFY, 1 REVIEW, 1 DENY; "
        "8 not checked (see the lines above)"
    )


def test_check_file_gives_what_single_checks_give(target: str, tmp_path: Path) -> None:
    ids = [structure_id(i) for i in range(len(SCENARIOS))]
    data = tmp_path / "all.csv"
    data.write_text(HEADER + "".join(f"connection,{sid},heat,,,,,\n" for sid in ids))
    result = cli("check-file", str(data), "--target", target, "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    answers = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    with Client(target) as client:
        single = [client.check_connection(sid, utility="heat") for sid in ids]
    assert [a["line"] for a in answers] == list(range(2, len(ids) + 2))
    assert [(a["structure_id"], a["verdict"]) for a in answers] == [
        (sid, d.verdict.value) for sid, d in zip(ids, single, strict=True)
    ]
    assert [a["reasons"] for a in answers] == [[r.to_json() for r in d.reasons] for d in single]
    assert result.stderr.splitlines()[-1].startswith(f"{len(ids)} of {len(ids)} rows checked: ")


def test_check_file_keeps_order_over_many_batches(target: str, tmp_path: Path) -> None:
    # 2,600 rows go in three BatchCheck messages; every 97th row is bad and is not sent.
    lines = []
    for n in range(2_600):
        utility = "steam" if n % 97 == 0 else "water"
        lines.append(f"connection,{structure_id(n % len(SCENARIOS))},{utility},,,,,\n")
    data = tmp_path / "many.csv"
    data.write_text(HEADER + "".join(lines))
    out = tmp_path / "many.csv.out.csv"
    result = cli("check-file", str(data), "--target", target, "--out", str(out))
    assert result.exit_code == 1
    answers = rows_of(out.read_text())
    assert [int(a["line"]) for a in answers] == list(range(2, 2_602))
    assert [a["structure_id"] for a in answers] == [
        structure_id(n % len(SCENARIOS)) for n in range(2_600)
    ]
    bad = {n + 2 for n in range(0, 2_600, 97)}
    assert {int(a["line"]) for a in answers if a["error"]} == bad
    assert all(a["verdict"] for a in answers if int(a["line"]) not in bad)
    assert result.stderr.splitlines()[-1].startswith(f"{2_600 - len(bad)} of 2600 rows checked: ")


def test_check_file_reads_a_spreadsheet_export(target: str, tmp_path: Path) -> None:
    # Excel: a byte-order mark, CRLF, columns in its own order and case, a missing column.
    data = tmp_path / "excel.csv"
    text = "Structure_ID,TYPE,Kind\r\n" + f"{OK},registration,initial\r\n"
    data.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = cli("check-file", str(data), "--target", target)
    assert result.exit_code == 0, result.output
    [answer] = rows_of(result.stdout)
    assert (answer["line"], answer["verdict"]) == ("2", "ALLOW")


def test_check_file_from_standard_input_as_a_real_process(target: str) -> None:
    text = HEADER + f"connection,{OK},water,,,,,\n" + "connection,,water,,,,,\n"
    done = subprocess.run(
        [PERMITGATE, "check-file", "-", "--target", target],
        input=text.encode() + b"connection,caf\xe9,water,,,,,\n",
        capture_output=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert [(r["line"], r["verdict"]) for r in rows_of(done.stdout.decode())] == [
        ("2", "ALLOW"),
        ("3", ""),
        ("4", ""),
    ]
    assert done.stderr.decode().splitlines() == [
        "line 3: structure_id: missing",
        "line 4: not UTF-8 text: byte 0xE9 at column 15 (save the file as UTF-8)",
        "1 of 3 rows checked: 1 ALLOW; 2 not checked (see the lines above)",
    ]


ROW = f"connection,{OK},water\n".encode()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty file (a header row names the columns)"),
        (b"type,structure_id,utilty\n" + ROW, "line 1: unknown column 'utilty' (the columns: "),
        (b"structure_id,utility\n" + ROW, "line 1: no 'type' column"),
        (b"type,utility\n" + ROW, "line 1: no 'structure_id' column"),
        (b"type,structure_id,type\n" + ROW, "line 1: column 'type' is named twice"),
        (b"type,structure_id,caf\xe9\n" + ROW, "line 1: not UTF-8 text: byte 0xE9 at column 22"),
    ],
)
def test_check_file_that_cannot_be_read_as_checks(
    target: str, tmp_path: Path, content: bytes, why: str
) -> None:
    data = tmp_path / "bad.csv"
    data.write_bytes(content)
    result = cli("check-file", str(data), "--target", target)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"permitgate: {data}: {why}")
    assert len(result.stderr.splitlines()) == 1


def test_check_file_out_must_be_csv_or_jsonl(target: str, tmp_path: Path) -> None:
    data = tmp_path / "c.csv"
    data.write_text(HEADER + f"connection,{OK},water,,,,,\n")
    result = cli("check-file", str(data), "--target", target, "--out", str(tmp_path / "r.txt"))
    assert result.exit_code == 2 and "name a .csv or a .jsonl file" in result.stderr
    assert not (tmp_path / "r.txt").exists()


def test_check_file_without_a_gate(tmp_path: Path) -> None:
    data = tmp_path / "c.csv"
    data.write_text(HEADER + f"connection,{OK},water,,,,,\n")
    result = cli("check-file", str(data), "--target", nothing_listening())
    assert result.exit_code == 3
    assert "did not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_file_with_only_bad_rows_sends_nothing(target: str, tmp_path: Path) -> None:
    data = tmp_path / "c.csv"
    data.write_text(HEADER + f"connection,{OK},steam,,,,,\n")
    result = cli("check-file", str(data), "--target", target)
    assert result.exit_code == 1
    assert (
        result.stderr.splitlines()[-1] == "0 of 1 rows checked; 1 not checked (see the lines above)"
    )


def test_a_stopped_gate_is_unreachable(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    gate = start_gate(registry.url, registry.keys_dir)
    target = gate.target
    gate.stop()
    registry.close()
    data = tmp_path / "c.csv"
    data.write_text(HEADER + f"connection,{OK},water,,,,,\n")
    assert cli("check-file", str(data), "--target", target).exit_code == 3


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("127.0.0.1:99999", "port 99999 is out of range (1 to 65535)"),  # gRPC: port 34463
        ("0.0.0.0", "no port; give HOST:PORT, e.g. 127.0.0.1:50051"),  # gRPC: port 443
        (":50051", "no host before ':50051'; e.g. 127.0.0.1:50051"),
        ("127.0.0.1:0", "port 0 is no gate's port (1 to 65535)"),
    ],
)
def test_a_gate_address_is_checked_before_anything_is_sent(
    target: str, why: str, tmp_path: Path
) -> None:
    data = tmp_path / "c.csv"
    data.write_text(HEADER + f"connection,{OK},water,,,,,\n")
    for args in (
        ["check", "connection", OK, "--utility", "water", "--exit-code"],
        ["check-file", str(data)],
        ["keys"],
    ):
        result = cli(*args, "--target", target)
        assert (result.exit_code, result.stdout) == (2, ""), args
        assert result.stderr == f"permitgate: --target {target!r}: {why}\n"
