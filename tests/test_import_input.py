"""Import input as spreadsheets and editors really write it: a byte-order mark, text that is not
UTF-8, UTF-16, an id given twice, a time before the first UTC instant. Each through the real
``permitgate registry import`` on SQLite and PostgreSQL; a refused file writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from registry_support import EXAMPLE_LINES, S1, Registry, jsonl, permit, structure

from registry.vocabulary import ID_RULE

PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
BOM = b"\xef\xbb\xbf"


def refused(reg: Registry, data: bytes) -> list[str]:
    """Import ``data``: it must be refused with nothing written; the lines printed."""
    before = reg.snapshot()
    result = reg.import_text(data)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert reg.snapshot() == before
    return result.stderr.splitlines()


def test_a_byte_order_mark_is_skipped(reg: Registry) -> None:
    # Excel's "CSV UTF-8" and Notepad write one; the file is otherwise what we export.
    result = reg.import_text(BOM + jsonl(EXAMPLE_LINES).encode())
    assert result.exit_code == 0, result.output
    assert reg.export() == jsonl(EXAMPLE_LINES).encode()


def test_a_byte_order_mark_through_a_pipe(reg: Registry) -> None:
    done = subprocess.run(
        [PERMITGATE, "registry", "import", "-", "--db", reg.url, "--keys", str(reg.keys)],
        input=BOM + b"\r\n" + jsonl(EXAMPLE_LINES).encode(),  # the mark alone on a first line
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert reg.export() == jsonl(EXAMPLE_LINES).encode()


def test_a_byte_order_mark_is_only_skipped_at_the_start(reg: Registry) -> None:
    lines = jsonl([structure("S-1")]).encode() + BOM + jsonl([structure("S-2")]).encode()
    printed = refused(reg, lines)
    assert printed[0].startswith(
        "line 2: (line): not valid JSON: UTF-8 byte order mark (BOM) is not supported"
    )


def test_text_that_is_not_utf8(reg: Registry) -> None:
    # Latin-1 as an old spreadsheet saves it: "café" is 63 61 66 E9.
    good = jsonl([structure("S-1")]).encode()
    text = '{"type":"structure","id":"S-2","area":"urban","district":"1","address":"café"}\n'
    latin1 = text.encode("latin-1")
    printed = refused(reg, good + latin1 + latin1)
    column = latin1.index(b"\xe9") + 1
    why = f"not UTF-8 text: byte 0xE9 at column {column} (save the file as UTF-8)"
    assert printed == [
        f"line 2: (line): {why}",
        f"line 3: (line): {why}",
        "permitgate: 2 errors in 3 lines; nothing was imported",
    ]


def test_the_column_counts_characters_not_bytes(reg: Registry) -> None:
    line = '{"type":"structure","id":"S-1","area":"urban","district":"Straße \xff"}\n'.encode()
    line = line.replace("\xff".encode(), b"\xff")
    printed = refused(reg, line)
    column = len(line[: line.index(b"\xff")].decode()) + 1
    assert column == line.index(b"\xff")  # one fewer: "ß" is two bytes
    assert printed[0] == (
        f"line 1: (line): not UTF-8 text: byte 0xFF at column {column} (save the file as UTF-8)"
    )


def test_utf16_is_named(reg: Registry) -> None:
    printed = refused(reg, jsonl(EXAMPLE_LINES).encode("utf-16"))
    assert printed == [
        "line 1: (file): UTF-16 text, not UTF-8: save the file as UTF-8",
        "permitgate: 1 error in 1 line; nothing was imported",
    ]


def test_an_id_twice_in_one_file_names_both_lines(reg: Registry) -> None:
    reg.load(EXAMPLE_LINES)
    lines: list[dict[str, Any] | str] = [
        "",  # blank lines and bad lines count as lines but hold no id
        structure("S-2"),
        permit("P-2", "S-2"),
        structure("S-3"),
        permit("P-3", "S-3"),
        structure("S-4"),
        permit("P-2", "S-2", status="revoked"),  # a changed copy of line 2
        structure("S-3"),  # an unchanged copy of line 3
        structure("S-2", area="village"),
        permit("S-4", "S-4"),  # a permit may share an id with a structure: another kind
        EXAMPLE_LINES[0],  # in the registry already, once in this file: fine
        "[]",
        structure("S-3", area="village"),  # a third S-3 names the first
    ]
    printed = refused(reg, jsonl(lines).encode())
    assert printed == [
        "line 7: id: duplicate of line 3",
        "line 8: id: duplicate of line 4",
        "line 9: id: duplicate of line 2",
        "line 12: (line): not a JSON object",
        "line 13: id: duplicate of line 4",
        "permitgate: 5 errors in 12 lines; nothing was imported",
    ]


def test_duplicates_are_found_across_chunks_and_with_other_errors(reg: Registry) -> None:
    # An import reads 5,000 lines at a time; the second copy is two chunks after the first.
    lines = [structure(f"S-{i:05}") for i in range(10_010)]
    lines.insert(10_005, structure("S-00001", district="110229"))  # line 10,006
    lines.insert(7, structure("bad id!"))  # line 8; everything after moves down one
    printed = refused(reg, jsonl(lines).encode())
    assert printed == [
        f"line 8: id: not a valid id: 'bad id!' ({ID_RULE})",
        "line 10007: id: duplicate of line 2",
        "permitgate: 2 errors in 10012 lines; nothing was imported",
    ]


def test_a_file_of_unique_ids_imports(reg: Registry) -> None:
    lines = [structure(f"S-{i:05}") for i in range(6_000)]
    lines += [permit(f"S-{i:05}", f"S-{i:05}") for i in range(0, 6_000, 7)]
    result = reg.import_text(jsonl(lines))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{len(lines)} lines: {len(lines)} changes")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issued", "0001-01-01T00:30:00+01:00"),  # an hour before the first UTC instant
        ("issued", "9999-12-31T23:30:00-01:00"),  # past the last
        ("expires", "0001-01-01T00:00:00+00:01"),
    ],
)
def test_a_time_that_overflows_in_utc(reg: Registry, field: str, value: str) -> None:
    line = permit("P-1", S1) | {field: value}
    printed = refused(reg, jsonl([structure(S1), line]).encode())
    assert printed[0] == f"line 2: {field}: out of range once turned into UTC: {value!r}"
    assert printed[-1].startswith("permitgate: ")
