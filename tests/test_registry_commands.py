"""``registry init`` on an existing registry says what is true (its origin is fixed, its key is
elsewhere), and ``registry status`` shows a signed status record in words, with the signature's
status, or as JSON. Real commands on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
from registry_support import (
    EXAMPLE_LINES,
    ORIGIN,
    S1,
    Registry,
    another_registry,
    invoke,
    key_name,
    open_envelope,
    parse_verifier_key,
    structure,
)

from registry.importer import import_lines
from registry.signing import load_signer
from registry.storage import Database

# --- init --------------------------------------------------------------------------------------


def test_init_with_another_origin_on_an_existing_registry(reg: Registry) -> None:
    reg.load(EXAMPLE_LINES)
    before = reg.snapshot()
    result = reg.cli("init", "--origin", "other.example/registry", keys=True)
    assert result.exit_code == 2
    assert result.stderr == (
        f"permitgate: this registry's origin is {ORIGIN!r}; it cannot change to "
        "'other.example/registry' (every signed checkpoint names it)\n"
    )
    assert reg.snapshot() == before
    # Naming the origin it has is fine.
    again = reg.cli("init", "--origin", ORIGIN, keys=True)
    assert again.exit_code == 0, again.output
    assert f"origin {ORIGIN}" in again.stdout
    assert reg.snapshot() == before


def test_init_where_the_key_is_elsewhere(reg: Registry, tmp_path: Path) -> None:
    reg.load(EXAMPLE_LINES)
    before = reg.snapshot()
    elsewhere = tmp_path / "elsewhere"
    result = invoke(["registry", "init", "--db", reg.url, "--keys", str(elsewhere)])
    assert result.exit_code == 2
    stored = reg.public_key_text.strip()
    assert result.stderr == (
        f"permitgate: this registry was made with the key {key_name(stored)}, but "
        f"{elsewhere / 'registry.key'} does not exist: pass --keys the folder that holds that "
        f"key (its registry.pub reads {stored})\n"
    )
    assert not elsewhere.exists()  # no new key was made for an existing registry
    assert reg.snapshot() == before


def test_import_and_refresh_say_the_same_of_a_key_elsewhere(reg: Registry, tmp_path: Path) -> None:
    elsewhere = str(tmp_path / "elsewhere")
    for args in (["import", "-"], ["refresh"]):
        result = invoke(["registry", *args, "--db", reg.url, "--keys", elsewhere], input="")
        assert result.exit_code == 2
        assert result.stderr.startswith(
            f"permitgate: this registry was made with the key {key_name(reg.public_key_text)}, "
        )


# --- status ------------------------------------------------------------------------------------


def signed_times(reg: Registry, sid: str) -> tuple[str, str]:
    payload = open_envelope(reg.status_row(sid)[2], parse_verifier_key(reg.public_key_text))
    return payload["this_update"], payload["next_update"]


def test_status_shows_the_record_and_that_its_signature_holds(reg: Registry) -> None:
    reg.load([*EXAMPLE_LINES, structure("S-2")])
    this_update, next_update = signed_times(reg, S1)
    result = reg.cli("status", S1, keys=True)
    assert result.exit_code == 0, result.output
    key = key_name(reg.public_key_text)
    assert result.stdout.splitlines() == [
        f"signature: verified: signed by the registry key {key} (from {reg.keys}/registry.pub)",
        f"structure {S1}: urban, district 110228, declared use residential, ...",
        f"record: registry version 4, signed {this_update}, good until {next_update}",
        "permits (1):",
        "  P-2024-0001  construction_planning  valid  issued 2024-03-01T00:00:00Z  "
        "expires 2026-03-01T00:00:00Z  use residential",
        "cases (1):",
        "  C-2025-0042  deviates_from_permit  stop_order  source patrol  "
        "opened 2025-01-02T00:00:00Z",
    ]
    bare = reg.cli("status", "S-2", keys=True).stdout.splitlines()
    assert bare[1:] == [
        "structure S-2: urban, district 110228",
        f"record: registry version 4, signed {signed_times(reg, 'S-2')[0]}, good until "
        f"{signed_times(reg, 'S-2')[1]}",
        "permits: none",
        "cases: none",
    ]


def test_status_without_the_key_is_shown_as_not_checked(reg: Registry, tmp_path: Path) -> None:
    reg.load(EXAMPLE_LINES)
    nowhere = tmp_path / "no-keys"
    result = invoke(["registry", "status", S1, "--db", reg.url, "--keys", str(nowhere)])
    assert result.exit_code == 0, result.output
    shown = result.stdout.splitlines()
    assert shown[0] == (
        f"signature: not checked: no key ({nowhere}/registry.pub does not exist; pass --keys "
        "the registry's key folder)"
    )
    assert shown[1].startswith(f"structure {S1}: ") and "permits (1):" in shown


def test_status_with_another_registrys_key_fails(reg: Registry, tmp_path: Path) -> None:
    reg.load(EXAMPLE_LINES)
    other = another_registry(tmp_path)
    result = invoke(["registry", "status", S1, "--db", reg.url, "--keys", str(other)])
    assert result.exit_code == 1
    shown = result.stdout.splitlines()
    other_key = key_name((other / "registry.pub").read_text())
    assert shown[0].startswith(
        f"signature: failed: does not verify with the registry key {other_key} "
        f"(from {other}/registry.pub): "
    )
    assert shown[1] == "the record as stored (do not rely on it):"


def test_status_of_a_record_changed_behind_the_registrys_back(reg: Registry) -> None:
    reg.load(EXAMPLE_LINES)
    envelope = json.loads(reg.status_row(S1)[2])
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["cases"] = []  # the stop order removed; the signature kept
    envelope["payload"] = base64.b64encode(orjson.dumps(payload)).decode()
    reg.sql(
        "UPDATE status_record SET envelope = :e WHERE structure_id = :s",
        e=orjson.dumps(envelope),
        s=S1,
    )
    result = reg.cli("status", S1, keys=True)
    assert result.exit_code == 1
    assert result.stdout.startswith("signature: failed: does not verify with the registry key ")
    assert "cases: none" in result.stdout  # shown, under "do not rely on it"


def test_status_of_a_record_filed_under_another_structure(reg: Registry) -> None:
    reg.load([*EXAMPLE_LINES, structure("S-2")])
    reg.sql(
        "UPDATE status_record SET envelope = :e WHERE structure_id = :s",
        e=reg.status_row("S-2")[2],
        s=S1,
    )
    result = reg.cli("status", S1, keys=True)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].endswith(f"the record describes 'S-2', not {S1!r}")


def test_status_json_gives_the_envelope_as_signed_and_the_record(reg: Registry) -> None:
    reg.load(EXAMPLE_LINES)
    result = reg.cli("status", S1, "--json", keys=True)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(shown) == {"structure_id", "signature", "record", "envelope"}
    assert shown["structure_id"] == S1
    assert shown["signature"]["status"] == "verified"
    stored = reg.status_row(S1)[2]
    canonical = json.dumps(shown["envelope"], sort_keys=True, separators=(",", ":")).encode()
    assert canonical == stored
    assert shown["record"] == open_envelope(stored, parse_verifier_key(reg.public_key_text))
    assert shown["record"]["cases"] == [json.loads(EXAMPLE_LINES[2])]


def test_status_of_an_expired_record_says_so(reg: Registry) -> None:
    db = Database(reg.url)
    try:
        signed_at = datetime(2025, 1, 1, tzinfo=UTC)
        report = import_lines(
            db,
            [line.encode() for line in EXAMPLE_LINES],
            load_signer(reg.keys, "registry"),
            state_dir=reg.state_dir,
            now=signed_at,
        )
        assert report.ok
    finally:
        db.dispose()
    result = reg.cli("status", S1, keys=True)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2] == (
        "record: registry version 3, signed 2025-01-01T00:00:00Z, EXPIRED at "
        "2025-01-08T00:00:00Z (gates answer REVIEW; run 'permitgate registry refresh')"
    )


def test_status_of_an_unknown_structure(reg: Registry) -> None:
    result = reg.cli("status", "110228-0000-0000", keys=True)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "permitgate: structure '110228-0000-0000' is not in the registry\n"


def test_init_with_an_origin_that_cannot_name_a_key(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    keys = str(tmp_path / "keys")
    result = invoke(
        ["registry", "init", "--db", f"sqlite:///{path}", "--keys", keys, "--origin", "a b"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "permitgate: --origin 'a b': an origin names the signing key too, so it has "
        f"no spaces and no '+' (e.g. {ORIGIN})\n"
    )
    assert not path.exists() and not (tmp_path / "keys").exists()
