"""``permitgate registry import`` says how many uses matched no category of the vocabulary.

Structures' declared uses and permits' uses are kept as written whatever they are; the import's
summary adds one line counting the lines whose use ``registry.uses`` does not know, with the
first few distinct ones, so whoever loads the registry sees what will be compared as text.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest
from registry_support import Registry, case, export_records, permit, structure

from registry import importer, status
from registry.importer import MAX_UNKNOWN_USE_EXAMPLES, import_lines
from registry.signing import load_signer
from registry.storage import Database


def _summary(result: Any) -> list[str]:
    assert result.exit_code == 0, result.output
    return list(result.stdout.splitlines())


def test_unknown_uses_are_counted_and_kept_as_written(reg: Registry) -> None:
    records = [
        structure("S-1", declared_use="住宅"),  # known
        structure("S-2", declared_use="Karaoke Bar"),
        structure("S-3"),  # no use: nothing to count
        permit("P-1", "S-1", use="Ｒｅｓｉｄｅｎｔｉａｌ"),  # known
        permit("P-2", "S-2", use="shop"),
        permit("P-3", "S-2", use="shop"),  # the same value again: counted, shown once
        permit("P-4", "S-3"),
        case("C-1", "S-2"),
    ]
    lines = _summary(reg.load(records))
    assert lines == [
        "8 lines: 8 changes, 0 unchanged; registry version 8; 3 status records signed",
        "3 uses matched no category (kept as written): 'Karaoke Bar', 'shop'",
    ]
    uses = {r["id"]: r.get("declared_use", r.get("use")) for r in export_records(reg.export())}
    assert uses["S-2"] == "Karaoke Bar"
    assert uses["P-1"] == "Ｒｅｓｉｄｅｎｔｉａｌ"
    assert uses["P-3"] == "shop"

    # The same file again changes nothing, and its uses are still counted.
    again = _summary(reg.load(records))
    assert again == [
        "8 lines, no changes; the registry is unchanged",
        "3 uses matched no category (kept as written): 'Karaoke Bar', 'shop'",
    ]


def test_no_line_when_every_use_is_known(reg: Registry) -> None:
    records = [
        structure("S-1", declared_use="residential"),
        structure("S-2", declared_use=" 仓库 "),
        permit("P-1", "S-1", use="居住"),
        permit("P-2", "S-2", use="WAREHOUSE"),
    ]
    assert _summary(reg.load(records)) == [
        "4 lines: 4 changes, 0 unchanged; registry version 4; 2 status records signed"
    ]


def test_one_unknown_use_is_one_use(reg: Registry) -> None:
    lines = _summary(reg.load([structure("S-1", declared_use="retail")]))
    assert lines[-1] == "1 use matched no category (kept as written): 'retail'"


def test_at_most_five_distinct_uses_are_shown(reg: Registry) -> None:
    uses = [f"use {n}" for n in range(MAX_UNKNOWN_USE_EXAMPLES + 2)]
    records = [structure(f"S-{n}", declared_use=use) for n, use in enumerate(uses)]
    records.append(structure("S-again", declared_use=uses[0]))
    lines = _summary(reg.load(records))
    shown = ", ".join(repr(use) for use in uses[:MAX_UNKNOWN_USE_EXAMPLES])
    assert lines[-1] == f"8 uses matched no category (kept as written): {shown}, ..."


def test_a_refused_import_prints_no_use_line(reg: Registry) -> None:
    result = reg.import_text(
        orjson.dumps(structure("S-1", declared_use="shop")).decode()
        + "\n"
        + orjson.dumps(permit("P-1", "S-404", use="shop")).decode()
        + "\n"
    )
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "matched no category" not in result.stderr


def test_uses_are_counted_in_the_worker_processes_too(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 100 lines, parsed past the first by two worker processes: each chunk's unknown
    # uses come back with its parsed lines.
    monkeypatch.setattr(importer, "_CHUNK", 100)
    monkeypatch.setattr(importer, "_WORKERS", 2)
    monkeypatch.setattr(
        importer, "SigningPipeline", functools.partial(status.SigningPipeline, inline_limit=0)
    )
    records: list[dict[str, Any]] = []
    for n in range(250):
        records.append(structure(f"S-{n}", declared_use="住宅" if n % 2 else f"kind {n % 7}"))
        records.append(permit(f"P-{n}", f"S-{n}", use="shop" if n % 5 == 0 else "residential"))
    unknown = sum(1 for n in range(250) if n % 2 == 0) + sum(1 for n in range(250) if n % 5 == 0)
    db = Database(reg.url)
    try:
        report = import_lines(
            db,
            (orjson.dumps(r) for r in records),
            load_signer(reg.keys, "registry"),
            state_dir=reg.state_dir,
        )
    finally:
        db.dispose()
    assert report.ok, report.errors
    assert report.unknown_uses == unknown == 175
    assert report.unknown_use_examples == ["kind 0", "shop", "kind 2", "kind 4", "kind 6"]
    assert report.more_unknown_uses  # kind 1, 3 and 5 were not shown
