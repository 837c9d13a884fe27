"""``permitgate registry import``: bad input, all or nothing, streaming, concurrent imports.

Bad input must print every error (up to 100) as ``line N: field: why``, exit 2, and change
nothing at all: not the tables, not the log, not the checkpoints, not the signed records.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
import pytest
from registry_support import (
    EXAMPLE_LINES,
    S1,
    Registry,
    case,
    export_records,
    jsonl,
    open_envelope,
    parse_verifier_key,
    permit,
    structure,
)

from registry import importer, status
from registry.demo import demo_lines
from registry.importer import ImportReport, import_lines
from registry.signing import load_signer
from registry.storage import Database

P = ParamSpec("P")
T = TypeVar("T")

PERMIT = json.loads(EXAMPLE_LINES[1])
CASE = json.loads(EXAMPLE_LINES[2])


def json_error(raw: str) -> str:
    """orjson's message for ``raw`` as a line on its own (the import drops the newline first,
    so that the position points into the line rather than past it)."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    raise AssertionError(f"{raw!r} is valid JSON")


@pytest.fixture
def seeded(reg: Registry) -> Registry:
    """A registry holding the issue's example (one structure, one permit, one case)."""
    reg.load(EXAMPLE_LINES)
    return reg


def assert_refused(reg: Registry, text: str, errors: list[str], lines: int) -> None:
    """Import ``text``: exit 2, exactly ``errors`` (by line), and nothing changed."""
    before = reg.snapshot()
    result = reg.import_text(text)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    printed = result.stderr.splitlines()
    counted = f"{len(errors)} error{'s' * (len(errors) != 1)} in {lines} line{'s' * (lines != 1)}"
    assert printed[-1] == f"permitgate: {counted}; nothing was imported"
    # Errors of one line in the order its fields are checked; lines in increasing order.
    by_line = sorted(printed[:-1], key=lambda e: int(e.split(":")[0].removeprefix("line ")))
    assert by_line == errors
    assert reg.snapshot() == before


BAD_INPUT: list[tuple[str, list[Any], list[str]]] = [
    (
        "bad JSON",
        ['{"type":"structure","id":"S-2",', "{'type': 'structure'}", '{"a":1} x'],
        [
            "line 1: (line): not valid JSON: " + json_error('{"type":"structure","id":"S-2",'),
            "line 2: (line): not valid JSON: " + json_error("{'type': 'structure'}"),
            "line 3: (line): not valid JSON: " + json_error('{"a":1} x'),
        ],
    ),
    (
        "not an object",
        ['["structure"]', '"structure"', "42", "null", "true"],
        [f"line {n}: (line): not a JSON object" for n in range(1, 6)],
    ),
    (
        "unknown or missing type",
        [{"type": "barn", "id": "B-1"}, {"id": "S-2", "area": "urban", "district": "x"}],
        [
            "line 1: type: unknown type 'barn' (structure, permit or case)",
            "line 2: type: missing",
        ],
    ),
    (
        "missing fields",
        [
            {"type": "permit", "id": "P-2", "structure": S1, "status": "valid"},
            {"type": "structure", "id": "S-2"},
            {k: v for k, v in CASE.items() if k != "opened"} | {"id": "C-2"},
        ],
        [
            "line 1: kind: missing",
            "line 1: issued: missing",
            "line 2: area: missing",
            "line 2: district: missing",
            "line 3: opened: missing",
        ],
    ),
    (
        "unknown enum values",
        [
            PERMIT | {"status": "expired"},
            structure("S-2", area="suburb"),
            CASE | {"id": "C-2", "source": "rumour", "kind": "noise"},
            PERMIT | {"id": "P-2", "kind": "fishing_licence"},
            CASE | {"id": "C-3", "stage": "appealed"},
        ],
        [
            "line 1: status: unknown value 'expired' (one of: valid, suspended, revoked)",
            "line 2: area: unknown value 'suburb' (one of: urban, village)",
            "line 3: kind: unknown value 'noise' (one of: illegal_land_use, no_planning_permit, "
            "deviates_from_permit, unauthorized_use_change, temporary_overdue, "
            "post_registration_construction, structural_damage)",
            "line 3: source: unknown value 'rumour' (one of: patrol, report, petition, media, "
            "satellite)",
            "line 4: kind: unknown value 'fishing_licence' (one of: land_use_planning, "
            "land_certificate, construction_planning, temporary_construction_planning, "
            "rural_construction_planning, construction_works, property_ownership)",
            "line 5: stage: unknown value 'appealed' (one of: reported, filed, stop_order, "
            "rectify_order, demolition_order, rectified, demolished, closed, dismissed)",
        ],
    ),
    (
        "bad timestamps",
        [
            PERMIT | {"issued": "2024-03-01"},
            PERMIT | {"expires": "2024-02-30T00:00:00Z"},
            PERMIT | {"issued": "2024-03-01 00:00:00Z"},
            PERMIT | {"expires": "2024-03-01T00:00:00"},
            PERMIT | {"expires": "2020-01-01T00:00:00Z"},
            CASE | {"opened": 1735776000},
        ],
        [
            "line 1: issued: not an RFC 3339 timestamp: '2024-03-01'",
            "line 2: expires: not a valid date and time: '2024-02-30T00:00:00Z'",
            "line 3: issued: not an RFC 3339 timestamp: '2024-03-01 00:00:00Z'",
            "line 4: expires: not an RFC 3339 timestamp: '2024-03-01T00:00:00'",
            "line 5: expires: must be after issued",
            "line 6: opened: must be a string, not int",
        ],
    ),
    (
        "unknown structure",
        [PERMIT | {"structure": "110228-9999-9999"}, case("C-9", "S-404")],
        [
            "line 1: structure: unknown structure '110228-9999-9999'",
            "line 2: structure: unknown structure 'S-404'",
        ],
    ),
    (
        "unknown fields",
        [
            structure("S-2", colour="red"),
            PERMIT | {"holder": "someone", "Status": "valid"},
        ],
        [
            "line 1: colour: unknown field for a structure",
            "line 2: Status: unknown field for a permit",
            "line 2: holder: unknown field for a permit",
        ],
    ),
    (
        "bad text values",
        [
            structure("S-2", address="a\u0000b"),
            structure("S-3", declared_use=5, address=""),
            structure("S-4", district="x" * 501),
            structure("bad id!"),
        ],
        [
            "line 1: address: must not contain NUL characters",
            "line 2: address: must not be empty",
            "line 2: declared_use: must be a string, not int",
            "line 3: district: longer than 500 characters",
            "line 4: id: not a valid id: 'bad id!' (an id is 1 to 64 characters, each an ASCII"
            " letter, a digit or one of . _ : / -, and starts with a letter or digit)",
        ],
    ),
    (
        "permit or case moved to another structure",
        [structure("S-2"), PERMIT | {"structure": "S-2"}, CASE | {"structure": "S-2"}],
        [
            f"line 2: structure: permit P-2024-0001 belongs to '{S1}'; it cannot move to 'S-2'",
            f"line 3: structure: case C-2025-0042 belongs to '{S1}'; it cannot move to 'S-2'",
        ],
    ),
    (
        "forbidden stage moves",
        [CASE | {"stage": "reported"}, case("C-2", S1, stage="closed")],
        [
            "line 1: stage: case C-2025-0042 cannot move from stop_order to reported "
            "(allowed from stop_order: closed, demolition_order, rectify_order)",
        ],
    ),
    (
        "an id twice in one file",
        [CASE | {"stage": "closed"}, structure("S-2"), CASE | {"stage": "closed"}],
        ["line 3: id: duplicate of line 1"],
    ),
    (
        "a valid file with one bad line at the end",
        [
            structure("S-2"),
            permit("P-2", "S-2"),
            case("C-2", "S-2"),
            PERMIT | {"status": "revoked"},
            CASE | {"stage": "closed"},
            permit("P-3", "S-2", status="lost"),
        ],
        ["line 6: status: unknown value 'lost' (one of: valid, suspended, revoked)"],
    ),
    (
        "a reference to a structure whose own line was invalid",
        [structure("S-7", area="suburb"), permit("P-7", "S-7"), case("C-7", "S-7")],
        [
            "line 1: area: unknown value 'suburb' (one of: urban, village)",
            "line 2: structure: unknown structure 'S-7'",
            "line 3: structure: unknown structure 'S-7'",
        ],
    ),
    (
        "a reference to a structure created later in the file",
        [permit("P-8", "S-8"), structure("S-8")],
        ["line 1: structure: unknown structure 'S-8'"],
    ),
    (
        "blank lines are counted in line numbers",
        ["", structure("S-2"), "   ", "\t", "[]", ""],
        ["line 5: (line): not a JSON object"],
    ),
]


@pytest.mark.parametrize(
    ("lines", "errors"),
    [pytest.param(lines, errors, id=name) for name, lines, errors in BAD_INPUT],
)
def test_bad_input_is_reported_and_changes_nothing(
    seeded: Registry, lines: list[Any], errors: list[str]
) -> None:
    non_blank = sum(1 for line in lines if not (isinstance(line, str) and not line.strip()))
    assert_refused(seeded, jsonl(lines), errors, non_blank)


def test_temporary_permit_without_expiry(seeded: Registry) -> None:
    line = permit("P-T", S1, kind="temporary_construction_planning")
    assert_refused(
        seeded,
        jsonl([line]),
        ["line 1: expires: missing (a temporary construction planning permit always expires)"],
        1,
    )


def test_more_than_100_errors(seeded: Registry) -> None:
    before = seeded.snapshot()
    result = seeded.import_text(jsonl([structure(f"S-{i}") for i in range(50)] + ["[]"] * 250))
    assert result.exit_code == 2
    printed = result.stderr.splitlines()
    assert len(printed) == 102
    assert printed[:100] == [f"line {n}: (line): not a JSON object" for n in range(51, 151)]
    assert printed[100] == "... and 150 more errors (the first 100 shown)"
    assert printed[101] == "permitgate: 250 errors in 300 lines; nothing was imported"
    assert seeded.snapshot() == before


def test_exactly_100_errors_has_no_more_line(seeded: Registry) -> None:
    result = seeded.import_text(jsonl(["[]"] * 100))
    assert result.exit_code == 2
    printed = result.stderr.splitlines()
    assert len(printed) == 101
    assert printed[-1] == "permitgate: 100 errors in 100 lines; nothing was imported"


def test_errors_in_many_chunks_are_all_counted(seeded: Registry) -> None:
    # 12,000 lines (three chunks), one bad line in each chunk: none of it is kept.
    lines: list[Any] = [structure(f"S-{i}") for i in range(12_000)]
    for n in (10, 6_000, 12_000):
        lines[n - 1] = structure(f"S-{n}", area="moon")
    before = seeded.snapshot()
    result = seeded.import_text(jsonl(lines))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        *(f"line {n}: area: unknown value 'moon' (one of: urban, village)" for n in (10, 6000)),
        "line 12000: area: unknown value 'moon' (one of: urban, village)",
        "permitgate: 3 errors in 12000 lines; nothing was imported",
    ]
    assert seeded.snapshot() == before


def test_references_within_one_file(seeded: Registry) -> None:
    # A structure created earlier in the same file can be referred to, and a permit created
    # earlier in the same file can be updated.
    result = seeded.load(
        [
            structure("S-2"),
            permit("P-2", "S-2"),
            case("C-2", "S-2", stage="reported"),
            "",
            PERMIT | {"status": "revoked"},
        ]
    )
    assert result.stdout == (
        "4 lines: 4 changes, 0 unchanged; registry version 7; 2 status records signed\n"
    )
    # Updated by a later file (an id appears once per file).
    result = seeded.load(
        [permit("P-2", "S-2", status="suspended"), case("C-2", "S-2", stage="filed")]
    )
    assert result.stdout == (
        "2 lines: 2 changes, 0 unchanged; registry version 9; 1 status records signed\n"
    )
    records = {r["id"]: r for r in export_records(seeded.export())}
    assert records["P-2"]["status"] == "suspended"
    assert records["C-2"]["stage"] == "filed"
    assert records["P-2024-0001"]["status"] == "revoked"


def test_empty_and_blank_files_change_nothing(seeded: Registry) -> None:
    before = seeded.snapshot()
    for text in ("", "\n", "\n  \n\t\n"):
        result = seeded.import_text(text)
        assert result.exit_code == 0, result.output
        assert result.stdout == "0 lines, no changes; the registry is unchanged\n"
    assert seeded.snapshot() == before


def test_blank_lines_and_crlf_are_fine(reg: Registry) -> None:
    text = "\r\n\r\n" + "\r\n\n".join(EXAMPLE_LINES) + "\r\n   \r\n"
    result = reg.import_text(text)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("3 lines: 3 changes, 0 unchanged; registry version 3;")
    assert reg.export() == jsonl(EXAMPLE_LINES).encode()


def test_import_from_standard_input(reg: Registry) -> None:
    result = reg.cli("import", "-", input=jsonl(EXAMPLE_LINES), keys=True)
    assert result.exit_code == 0, result.output
    assert reg.export() == jsonl(EXAMPLE_LINES).encode()

    before = reg.snapshot()
    result = reg.cli("import", "-", input=jsonl([structure("S-2"), "{"]), keys=True)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "line 2: (line): not valid JSON: " + json_error("{"),
        "permitgate: 1 error in 2 lines; nothing was imported",
    ]
    assert reg.snapshot() == before


def test_errors_are_printed_in_line_order(reg: Registry) -> None:
    """A reference error (found after parsing) on line 1 comes before a parse error on line 2."""
    orphan = {
        "type": "permit",
        "id": "P-1",
        "structure": "NOWHERE-1",
        "kind": "construction_planning",
        "status": "valid",
        "issued": "2024-03-01T00:00:00Z",
    }
    result = reg.import_text(jsonl([orphan, "{"]))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "line 1: structure: unknown structure 'NOWHERE-1'",
        "line 2: (line): not valid JSON: " + json_error("{"),
        "permitgate: 2 errors in 2 lines; nothing was imported",
    ]


def test_import_of_a_missing_file(reg: Registry) -> None:
    result = reg.import_file(reg.scratch / "nowhere.jsonl")
    assert result.exit_code == 2
    assert "nowhere.jsonl" in result.stderr


# =================================================================================================
# streaming: more than one chunk
# =================================================================================================


def structure_states(export: bytes) -> dict[str, dict[str, Any]]:
    """Each structure's current state from an export, in status-record form."""
    states: dict[str, dict[str, Any]] = {}
    for record in export_records(export):
        if record["type"] == "structure":
            states[record["id"]] = {"structure": record, "permits": [], "cases": []}
        else:
            states[record["structure"]][record["type"] + "s"].append(record)
    return states


def counted(lines: list[bytes], seen: list[int]) -> Iterator[bytes]:
    for line in lines:
        seen[0] += 1
        yield line


def run_import(reg: Registry, lines: list[bytes]) -> tuple[ImportReport, list[int]]:
    """Import through the API from a generator; returns the report and how many lines had been
    read from the generator each time a chunk was done."""
    seen = [0]
    read_at_chunk: list[int] = []
    db = Database(reg.url)
    try:
        report = import_lines(
            db,
            counted(lines, seen),
            load_signer(reg.keys, "registry"),
            state_dir=reg.state_dir,
            on_chunk=lambda _bytes: read_at_chunk.append(seen[0]),
        )
    finally:
        db.dispose()
    return report, read_at_chunk


def check_all_status_records(reg: Registry, tree_size: int) -> dict[str, dict[str, Any]]:
    """Every structure's signed record (verified by hand) equals its state in the export."""
    key = parse_verifier_key(reg.public_key_text)
    states = structure_states(reg.export())
    rows = reg.sql("SELECT structure_id, tree_size, envelope FROM status_record")
    assert len(rows) == len(states)
    payloads = {}
    for sid, size, envelope in rows:
        payload = open_envelope(bytes(envelope), key)
        assert payload["tree_size"] == size <= tree_size
        assert {k: payload[k] for k in ("structure", "permits", "cases")} == states[sid]
        payloads[sid] = payload
    return payloads


class CountingPool(ProcessPoolExecutor):
    """The status signer's process pool, counting the batches handed to its workers."""

    submitted = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        CountingPool.submitted += 1
        return super().submit(fn, *args, **kwargs)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_import_larger_than_one_chunk(
    reg: Registry, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 1,000 lines. With one worker everything happens in this process; with two,
    # lines are parsed in worker processes a few chunks ahead, and status records are signed
    # there from the start (not after the first 5,000 structures).
    monkeypatch.setattr(importer, "_CHUNK", 1_000)
    monkeypatch.setattr(importer, "_WORKERS", workers)
    if workers > 1:
        pipeline = functools.partial(status.SigningPipeline, inline_limit=0)
        monkeypatch.setattr(importer, "SigningPipeline", pipeline)
        monkeypatch.setattr(status, "ProcessPoolExecutor", CountingPool)
        CountingPool.submitted = 0

    now = datetime(2026, 1, 1, tzinfo=UTC)
    # One filler line first, so that a structure's lines straddle the chunk boundary.
    records = [structure("S-FILLER"), *demo_lines(2760, now=now)]
    first = records[1]["id"]
    # Structure 0 is created in the first chunk; a revoked permit is added in the last.
    first_permit = next(r for r in records if r.get("structure") == first)
    late_permit = first_permit | {"id": f"{first_permit['id']}-late", "status": "revoked"}
    records.append(late_permit)
    lines = [orjson.dumps(r) for r in records]
    assert 12_000 <= len(lines) <= 12_100

    report, read_at_chunk = run_import(reg, lines)
    assert report.ok, report.errors
    assert report.changes == len(lines)
    # Streaming: after each chunk, the importer had read at most the chunks its workers parse
    # ahead (none with one worker), never the whole file before the end.
    assert len(read_at_chunk) == 13
    for done, read in enumerate(read_at_chunk, start=1):
        assert min(1_000 * done, len(lines)) <= read <= min(1_000 * (done + workers), len(lines))
    if workers > 1:
        assert read_at_chunk[5] < len(lines)
        assert CountingPool.submitted >= 13  # lines to parse, and states to sign, in workers

    payloads = check_all_status_records(reg, len(lines))
    assert len(payloads) == 2761
    # Structure 0: signed in chunk 1, re-signed in the last with the revoked permit.
    assert payloads[first]["tree_size"] == len(lines)
    assert late_permit in payloads[first]["permits"]
    # The structure whose lines straddle lines 5,000 and 5,001 is signed after both chunks.
    straddling = records[4_999].get("structure", records[4_999]["id"])
    assert records[5_000].get("structure") == straddling, "pick a case that spans the chunks"
    assert payloads[straddling]["tree_size"] == 6_000
    assert len(payloads[straddling]["permits"]) == 2
    assert reg.event_count() == len(lines)
    assert reg.verify().exit_code == 0


# =================================================================================================
# concurrency
# =================================================================================================


def prefixed(records: Iterator[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    out = []
    for r in records:
        r = r | {"id": prefix + r["id"]}
        if "structure" in r:
            r["structure"] = prefix + r["structure"]
        out.append(r)
    return out


def test_two_imports_at_once_as_processes(reg: Registry) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    files = []
    for prefix in ("A", "B"):
        files.append(reg.write(jsonl(prefixed(demo_lines(700, now=now), prefix))))
    command = [str(Path(sys.executable).with_name("permitgate")), "registry", "import"]
    options = ["--db", reg.url, "--keys", str(reg.keys)]
    processes = [
        subprocess.Popen(
            [*command, str(path), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for path in files
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        assert b"status records signed" in out

    sizes = [len(path.read_bytes().splitlines()) for path in files]
    total = sum(sizes)
    assert reg.sql("SELECT seq FROM event ORDER BY seq") == [(i,) for i in range(total)]
    checkpoints = [r[0] for r in reg.sql("SELECT size FROM head ORDER BY size")]
    assert checkpoints in ([0, sizes[0], total], [0, sizes[1], total])
    check_all_status_records(reg, total)
    result = reg.verify()
    assert result.exit_code == 0, result.output


def test_the_same_file_imported_twice_at_once(reg: Registry) -> None:
    # Both imports start together; one writes everything, the other then finds nothing new.
    lines = [orjson.dumps(r) for r in demo_lines(400)]
    barrier = threading.Barrier(2)
    reports: list[ImportReport] = []
    failures: list[BaseException] = []

    def worker() -> None:
        db = Database(reg.url)
        try:
            barrier.wait()
            signer = load_signer(reg.keys, "registry")
            reports.append(import_lines(db, iter(lines), signer, state_dir=reg.state_dir))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert sorted(r.changes for r in reports) == [0, len(lines)]
    assert sorted(r.unchanged for r in reports) == [0, len(lines)]
    assert all(r.ok for r in reports)
    assert reg.event_count() == len(lines)
    assert [r[0] for r in reg.sql("SELECT size FROM head ORDER BY size")] == [0, len(lines)]
    assert reg.verify().exit_code == 0
