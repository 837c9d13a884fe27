"""The signed registry end to end (issue 2), on SQLite and on the real PostgreSQL server.

init, valid imports and updates, case stage moves, signed status records, checkpoints against
the event log, and export round trips. Signatures and Merkle roots are checked independently of
``registry.trust`` (see ``registry_support``). Bad input is in ``test_import.py``, tamper
detection in ``test_audit.py``, command-line details in ``test_cli.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from registry_support import (
    EMPTY_ROOT,
    EXAMPLE_LINES,
    ORIGIN,
    S1,
    TABLES,
    Registry,
    another_registry,
    case,
    export_records,
    invoke,
    jsonl,
    key_name,
    open_checkpoint,
    open_envelope,
    parse_rfc3339,
    parse_verifier_key,
    permit,
    reset_database,
    rfc6962_root,
    structure,
)

import registry
from registry.demo import demo_lines
from registry.merkle import leaf_hash, root_of
from registry.vocabulary import STAGE_MOVES

# =================================================================================================
# init
# =================================================================================================


def migrations_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(registry.__file__).with_name("migrations")))
    return config


def test_init_creates_schema_key_and_signed_empty_checkpoint(blank_registry: Registry) -> None:
    reg = blank_registry
    result = reg.cli("init", keys=True)
    assert result.exit_code == 0, result.output
    private, public = reg.keys / "registry.key", reg.keys / "registry.pub"
    assert f"created signing key {private} (mode 0600)" in result.stdout
    assert "registry created at" in result.stdout

    # The schema: the registry's tables (later migrations may add more), at the newest revision.
    assert set(sa.inspect(reg.engine).get_table_names()) >= TABLES
    head = ScriptDirectory.from_config(migrations_config()).get_current_head()
    assert reg.sql("SELECT version_num FROM alembic_version") == [(head,)]

    # The private key: PKCS#8 PEM, mode 0600, in a directory only its owner can enter.
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(reg.keys.stat().st_mode) & 0o077 == 0
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    raw_public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )

    # The public key: a valid C2SP verifier key for that private key, named after the origin,
    # printed by init and recorded in the registry.
    text = public.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    verifier = parse_verifier_key(text)
    assert verifier.name == ORIGIN
    assert verifier.raw == raw_public
    assert f"verifier key: {text.strip()}" in result.stdout
    stored = dict(reg.sql("SELECT key, value FROM registry_meta"))
    assert stored == {"origin": ORIGIN, "public_key": text.strip()}

    # The empty checkpoint: size 0, root SHA-256(""), signed by that key.
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    note = reg.checkpoint()
    checkpoint = open_checkpoint(note, verifier)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (ORIGIN, 0, EMPTY_ROOT)
    assert reg.sql("SELECT size, root_hash FROM head") == [(0, EMPTY_ROOT)]
    assert reg.event_count() == 0
    assert reg.sql("SELECT count(*) FROM status_record") == [(0,)]
    assert reg.verify().exit_code == 0


def test_second_init_changes_nothing(reg: Registry) -> None:
    reg.load(EXAMPLE_LINES)
    key_bytes = (reg.keys / "registry.key").read_bytes()
    pub_bytes = (reg.keys / "registry.pub").read_bytes()
    before = reg.snapshot()

    result = reg.cli("init", keys=True)
    assert result.exit_code == 0, result.output
    assert "created signing key" not in result.stdout
    assert "registry upgraded at" in result.stdout
    assert (reg.keys / "registry.key").read_bytes() == key_bytes
    assert (reg.keys / "registry.pub").read_bytes() == pub_bytes
    assert reg.snapshot() == before
    assert reg.verify().exit_code == 0


def test_init_refuses_keys_that_are_not_the_registrys(reg: Registry, tmp_path: Path) -> None:
    reg.load(EXAMPLE_LINES)
    before = reg.snapshot()
    other = another_registry(tmp_path)  # a key of the same name, made for another registry
    other_key = (other / "registry.pub").read_text().strip()
    result = reg.cli("init", "--keys", str(other))
    assert result.exit_code == 2
    wanted = key_name(reg.public_key_text)
    assert result.stderr == (
        f"permitgate: this registry was made with the key {wanted}, but {other} holds "
        f"{key_name(other_key)}: pass --keys the folder that holds {wanted}\n"
    )
    assert reg.snapshot() == before


def test_init_refuses_an_origin_other_than_the_keys_name(
    blank_registry: Registry, tmp_path: Path
) -> None:
    reg = blank_registry
    reg.init()
    fresh = f"sqlite:///{tmp_path / 'second.db'}"
    result = invoke(
        [
            "registry",
            "init",
            "--db",
            fresh,
            "--keys",
            str(reg.keys),
            "--origin",
            "other.example/log",
            "--state",
            str(tmp_path / "second-state"),
        ]
    )
    assert result.exit_code == 2
    assert f"the key in {reg.keys} is named '{ORIGIN}', not 'other.example/log'" in result.stderr


# =================================================================================================
# import: valid files and updates
# =================================================================================================


def status_payload(reg: Registry, structure_id: str) -> dict[str, Any]:
    envelope = reg.status_envelope(structure_id)
    assert envelope == reg.status_row(structure_id)[2]
    return open_envelope(envelope, parse_verifier_key(reg.public_key_text))


def test_import_the_issue_example(reg: Registry) -> None:
    before = datetime.now(UTC)
    result = reg.load(EXAMPLE_LINES)
    after = datetime.now(UTC)
    assert result.stdout == (
        "3 lines: 3 changes, 0 unchanged; registry version 3; 1 status records signed\n"
    )
    # The example lines are already in export form: they come back byte for byte.
    assert reg.export() == jsonl(EXAMPLE_LINES).encode()

    # One event per line, numbered from 0, each the canonical JSON of {at, record, seq}.
    events = [json.loads(b) for b in reg.event_bodies()]
    assert [e["seq"] for e in events] == [0, 1, 2]
    assert [e["record"] for e in events] == [json.loads(line) for line in EXAMPLE_LINES]
    assert reg.sql("SELECT structure_id FROM event ORDER BY seq") == [(S1,)] * 3
    for e in events:
        assert before <= parse_rfc3339(e["at"]) <= after

    # The signed status record holds the structure, its permit and its case, as of version 3.
    payload = status_payload(reg, S1)
    assert payload["structure"] == json.loads(EXAMPLE_LINES[0])
    assert payload["permits"] == [json.loads(EXAMPLE_LINES[1])]
    assert payload["cases"] == [json.loads(EXAMPLE_LINES[2])]
    assert payload["tree_size"] == 3
    assert reg.status_row(S1)[0] == 3
    this_update, next_update = (parse_rfc3339(payload[k]) for k in ("this_update", "next_update"))
    assert before <= this_update <= after
    assert next_update - this_update == timedelta(days=7)
    assert set(payload) == {
        "structure",
        "permits",
        "cases",
        "tree_size",
        "this_update",
        "next_update",
    }

    checkpoint = open_checkpoint(reg.checkpoint(), parse_verifier_key(reg.public_key_text))
    assert checkpoint.size == 3
    assert reg.verify().exit_code == 0


def test_updates_append_events_and_resign_only_the_touched_structure(reg: Registry) -> None:
    reg.load(
        [
            *EXAMPLE_LINES,
            structure("S-2", declared_use="office"),
            permit("P-2", "S-2", kind="construction_planning", use="office"),
        ]
    )
    s2_before = reg.status_row("S-2")
    assert s2_before[0] == 5

    # A permit revoked: one event, S1 re-signed at version 6, S-2's record untouched.
    revoked = json.loads(EXAMPLE_LINES[1]) | {"status": "revoked"}
    result = reg.load([revoked])
    assert result.stdout == (
        "1 lines: 1 changes, 0 unchanged; registry version 6; 1 status records signed\n"
    )
    assert json.loads(reg.event_bodies()[5])["record"] == revoked
    assert reg.status_row(S1)[0] == 6
    payload = status_payload(reg, S1)
    assert payload["tree_size"] == 6
    assert payload["permits"] == [revoked]
    assert reg.status_row("S-2") == s2_before

    # A case moving along, three stages in three files: three events, one record, version 9.
    moved = json.loads(EXAMPLE_LINES[2])
    stages = ["rectify_order", "rectified", "closed"]
    for version, stage in enumerate(stages, start=7):
        result = reg.load([moved | {"stage": stage}])
        assert result.stdout == (
            f"1 lines: 1 changes, 0 unchanged; registry version {version}; "
            "1 status records signed\n"
        )
    assert [json.loads(b)["record"]["stage"] for b in reg.event_bodies()[6:]] == stages
    payload = status_payload(reg, S1)
    assert (payload["tree_size"], payload["cases"]) == (9, [moved | {"stage": "closed"}])
    assert reg.status_row("S-2") == s2_before

    # Now only S-2 changes: S1's record stays exactly as signed at version 9.
    s1_before = reg.status_row(S1)
    reg.load([structure("S-2", declared_use="warehouse")])
    assert reg.status_row(S1) == s1_before
    payload = status_payload(reg, "S-2")
    assert payload["tree_size"] == 10
    assert payload["structure"]["declared_use"] == "warehouse"
    assert reg.event_count() == 10
    assert reg.verify().exit_code == 0


def test_unchanged_lines_add_no_events(reg: Registry) -> None:
    reg.load(EXAMPLE_LINES)
    before = reg.snapshot()
    result = reg.load(EXAMPLE_LINES)
    assert result.stdout == "3 lines, no changes; the registry is unchanged\n"
    # The same instant written another way is the same record.
    same = json.loads(EXAMPLE_LINES[1]) | {"issued": "2024-03-01T08:00:00.000+08:00"}
    result = reg.load([same])
    assert result.stdout == "1 lines, no changes; the registry is unchanged\n"
    assert reg.snapshot() == before

    # Unchanged lines mixed with one change: only the change becomes an event.
    changed = json.loads(EXAMPLE_LINES[0]) | {"address": "No. 7, Binhe Road"}
    result = reg.load([*EXAMPLE_LINES[1:], changed])
    assert result.stdout == (
        "3 lines: 1 changes, 2 unchanged; registry version 4; 1 status records signed\n"
    )
    assert reg.event_count() == 4


STAGES = [
    "reported",
    "filed",
    "stop_order",
    "rectify_order",
    "demolition_order",
    "rectified",
    "demolished",
    "closed",
    "dismissed",
]
"""DOMAIN.md's case stages, in its order."""


def test_a_case_may_be_created_at_any_stage(reg: Registry) -> None:
    cases = [case(f"C-{stage}", "S-1", stage=stage) for stage in STAGES]
    result = reg.load([structure("S-1"), *cases])
    assert result.stdout.startswith("10 lines: 10 changes, 0 unchanged; registry version 10;")
    assert status_payload(reg, "S-1")["cases"] == sorted(cases, key=lambda c: c["id"])


# The moves exactly as issue 2 states them.
ISSUE_MOVES = (
    "reported→filed|dismissed; filed→stop_order|rectify_order|demolition_order|closed|dismissed; "
    "stop_order→rectify_order|demolition_order|closed; rectify_order→rectified|demolition_order; "
    "demolition_order→demolished; rectified→closed; demolished→closed."
)


def issue_moves() -> dict[str, set[str]]:
    moves: dict[str, set[str]] = {stage: set() for stage in STAGES}
    for rule in ISSUE_MOVES.rstrip(".").split(";"):
        old, news = rule.strip().split("→")
        moves[old] = set(news.split("|"))
    return moves


def test_issue_moves_parse_as_expected() -> None:
    moves = issue_moves()
    assert sum(len(v) for v in moves.values()) == 15
    assert moves["closed"] == moves["dismissed"] == set()
    assert {k.value: {s.value for s in v} for k, v in STAGE_MOVES.items()} == moves


def test_every_stage_move_against_the_issue(reg: Registry) -> None:
    moves = issue_moves()
    pairs = list(product(STAGES, STAGES))
    assert len(pairs) == 81
    reg.load([structure("S-1"), *(case(f"C-{a}-{b}", "S-1", stage=a) for a, b in pairs)])
    before = reg.snapshot()

    # All 81 moves in one file: each forbidden line is reported, and nothing is written.
    result = reg.import_text(jsonl([case(f"C-{a}-{b}", "S-1", stage=b) for a, b in pairs]))
    assert result.exit_code == 2
    expected = []
    for line, (a, b) in enumerate(pairs, start=1):
        if a != b and b not in moves[a]:
            allowed = ", ".join(sorted(moves[a])) or "none"
            expected.append(
                f"line {line}: stage: case C-{a}-{b} cannot move from {a} to {b} "
                f"(allowed from {a}: {allowed})"
            )
    assert len(expected) == 81 - 9 - 15
    assert result.stderr.splitlines() == [
        *expected,
        f"permitgate: {len(expected)} errors in 81 lines; nothing was imported",
    ]
    assert reg.snapshot() == before

    # Only the allowed moves (staying put included): all accepted, each move one event.
    allowed_pairs = [(a, b) for a, b in pairs if a == b or b in moves[a]]
    result = reg.load([case(f"C-{a}-{b}", "S-1", stage=b) for a, b in allowed_pairs])
    assert result.stdout.startswith(f"{len(allowed_pairs)} lines: 15 changes, 9 unchanged;")
    stages = {c["id"]: c["stage"] for c in export_records(reg.export()) if c["type"] == "case"}
    for a, b in pairs:
        assert stages[f"C-{a}-{b}"] == (b if (a, b) in allowed_pairs else a)


# =================================================================================================
# status records, checkpoints and the log
# =================================================================================================


def test_status_prints_the_signed_record_of_the_current_state(reg: Registry) -> None:
    reg.load([*EXAMPLE_LINES, structure("S-2"), permit("P-2", "S-2")])
    reg.load([json.loads(EXAMPLE_LINES[1]) | {"status": "suspended"}])
    state: dict[str, dict[str, list[dict[str, Any]]]] = {}
    structures = {}
    for record in export_records(reg.export()):
        if record["type"] == "structure":
            structures[record["id"]] = record
        else:
            kind = record["type"] + "s"
            state.setdefault(record["structure"], {}).setdefault(kind, []).append(record)
    for sid, record in structures.items():
        payload = status_payload(reg, sid)
        assert payload["structure"] == record
        assert payload["permits"] == state[sid].get("permits", [])
        assert payload["cases"] == state[sid].get("cases", [])
    _, digest, envelope = reg.status_row(S1)
    assert digest == hashlib.sha256(envelope).digest()
    assert status_payload(reg, S1)["tree_size"] == 6
    assert status_payload(reg, "S-2")["tree_size"] == 5

    result = reg.status("110228-0000-0000")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "permitgate: structure '110228-0000-0000' is not in the registry\n"


def test_rfc6962_reference_matches_published_vectors() -> None:
    # transparency-dev/merkle testonly: the root of the 8 LeafInputs, and of the first 3.
    leaves = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243")]
    leaves += [bytes.fromhex("5051525354555657"), bytes.fromhex("606162636465666768696a6b6c6d6e6f")]
    assert rfc6962_root(leaves).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
    assert rfc6962_root(leaves[:3]).hex() == (
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    )


def test_every_checkpoint_signs_the_root_of_the_event_log(reg: Registry) -> None:
    reg.load(EXAMPLE_LINES)
    reg.load([structure(f"S-{i}") for i in range(10)])
    reg.load([permit(f"P-{i}", f"S-{i % 3}") for i in range(6)])
    reg.load([json.loads(EXAMPLE_LINES[2]) | {"stage": "closed"}])
    key = parse_verifier_key(reg.public_key_text)

    bodies = reg.event_bodies()  # straight from the event table, in log order
    assert len(bodies) == 20
    rows = reg.sql("SELECT size, root_hash, note, cosignature FROM head ORDER BY serial")
    assert [r[0] for r in rows] == [0, 3, 13, 19, 20]
    for size, root_hash, note, _ in rows:
        checkpoint = open_checkpoint(bytes(note), key)
        assert (checkpoint.origin, checkpoint.size) == (ORIGIN, size)
        assert checkpoint.root == bytes(root_hash)
        assert checkpoint.root == root_of([leaf_hash(b) for b in bodies[:size]])
        assert checkpoint.root == rfc6962_root(bodies[:size])

    # `registry checkpoint` prints the newest one, exactly as stored.
    assert reg.checkpoint() == bytes(rows[-1][2]) + bytes(rows[-1][3])
    assert open_checkpoint(reg.checkpoint(), key).root == rfc6962_root(bodies)


# =================================================================================================
# export
# =================================================================================================

ODD_TIMES = [
    structure("T-1", area="village", address="东河沿 12号", declared_use="住宅"),
    permit(
        "T-P1",
        "T-1",
        kind="rural_construction_planning",
        issued="2024-03-01T08:00:00.123456+08:00",
        expires="2030-01-01t00:00:00z",
        use="住宅",
    ),
    permit("T-P2", "T-1", kind="property_ownership", issued="2024-03-01T00:00:00.5Z"),
    case("T-C1", "T-1", opened="2025-01-01T23:30:00.123456789-05:30"),
]


def test_export_normalises_times_and_round_trips(reg: Registry) -> None:
    records = [*demo_lines(30, now=datetime(2026, 1, 1, tzinfo=UTC)), *ODD_TIMES]
    reg.load([*records, json.loads(EXAMPLE_LINES[0])])
    export = reg.export()
    by_id = {r["id"]: r for r in export_records(export)}
    assert by_id["T-P1"]["issued"] == "2024-03-01T00:00:00.123456Z"
    assert by_id["T-P1"]["expires"] == "2030-01-01T00:00:00Z"
    assert by_id["T-P2"]["issued"] == "2024-03-01T00:00:00.500000Z"
    assert by_id["T-C1"]["opened"] == "2025-01-02T05:00:00.123456Z"
    assert by_id["T-1"]["address"] == "东河沿 12号"
    assert export.count(b"\n") == len(records) + 1

    # Structures, then permits, then cases, each sorted by id.
    kinds = [r["type"] for r in export_records(export)]
    assert kinds == sorted(kinds, key=["structure", "permit", "case"].index)
    for kind in ("structure", "permit", "case"):
        ids = [r["id"] for r in export_records(export) if r["type"] == kind]
        assert ids == sorted(ids)

    # Into an empty registry: the same export, byte for byte, and a registry that verifies.
    reg.close()
    reset_database(reg.url)
    shutil.rmtree(reg.state_dir)  # a new registry: its old state moved aside
    reg.init()
    assert reg.export() == b""
    reg.import_text(export)
    assert reg.export() == export
    assert reg.event_count() == len(records) + 1
    assert reg.verify().exit_code == 0


def test_export_round_trips_between_backends(
    tmp_path: Path, keys_dir: Path, pg_database: str
) -> None:
    # Two registries with one key, each with its own state.
    sqlite = Registry(f"sqlite:///{tmp_path / 'a.db'}", keys_dir, tmp_path, tmp_path / "a-state")
    reset_database(pg_database)
    postgres = Registry(pg_database, keys_dir, tmp_path, tmp_path / "pg-state")
    try:
        sqlite.init()
        postgres.init()
        sqlite.load([*demo_lines(20), *ODD_TIMES])
        export = sqlite.export()
        postgres.import_text(export)
        assert postgres.export() == export
        reset_database(sqlite.url)
        shutil.rmtree(sqlite.state_dir)
        sqlite.init()
        sqlite.import_text(postgres.export())
        assert sqlite.export() == export
    finally:
        sqlite.close()
        postgres.close()


@pytest.mark.parametrize("structures", [0, 1])
def test_export_of_a_small_registry(reg: Registry, structures: int) -> None:
    reg.load([structure(f"S-{i}") for i in range(structures)])
    assert reg.export() == jsonl([structure(f"S-{i}") for i in range(structures)]).encode()
