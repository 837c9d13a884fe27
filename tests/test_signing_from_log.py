"""Signatures come from what the registry signed before, never from rows edited behind its back,
and only with the registry's own key. Every test runs on SQLite and PostgreSQL. (The attacks on
the signed rows themselves are in ``test_registry_trust.py``.)"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from registry_support import (
    ORIGIN,
    STATUS_TYPE,
    Registry,
    another_registry,
    canonical,
    invoke,
    open_envelope,
    parse_verifier_key,
    permit,
    structure,
)

from registry.canonical import canonical_json
from registry.demo import demo_lines
from registry.log import encode_event, event_bytes, fold
from registry.records import Record, StatusRecord, format_time, parse_record
from registry.signing import Signer
from registry.status import RECORD_VALIDITY as WEEK
from registry.status import StatusSigner, state_parts


def _signed_permit_status(reg: Registry, structure_id: str, permit_id: str) -> str:
    _, _, envelope = reg.status_row(structure_id)
    payload = open_envelope(envelope, parse_verifier_key(reg.public_key_text))
    [found] = [p for p in payload["permits"] if p["id"] == permit_id]
    return str(found["status"])


def test_refresh_signs_the_signed_state_not_a_row_edited_in_sql(reg: Registry) -> None:
    reg.load([structure("S-1"), permit("P-1", "S-1", status="revoked")])
    reg.sql("UPDATE permit SET status = 'valid' WHERE id = 'P-1'")  # behind the registry's back
    result = reg.cli("refresh", "--all", keys=True)
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 status records re-signed\n"
    assert _signed_permit_status(reg, "S-1", "P-1") == "revoked"
    verify = reg.verify()
    assert verify.exit_code == 1
    assert "permit P-1: status: the tables say 'valid', the event log says 'revoked'" in (
        verify.stderr
    )


def test_import_signs_the_signed_state_not_a_row_edited_in_sql(reg: Registry) -> None:
    reg.load([structure("S-1"), permit("P-1", "S-1", status="revoked")])
    reg.sql("UPDATE permit SET status = 'valid' WHERE id = 'P-1'")
    reg.load([permit("P-2", "S-1")])  # touches S-1: its record is signed again
    assert _signed_permit_status(reg, "S-1", "P-1") == "revoked"
    assert _signed_permit_status(reg, "S-1", "P-2") == "valid"


def test_refresh_with_another_key_is_refused_and_changes_nothing(reg: Registry) -> None:
    reg.load([structure("S-1"), permit("P-1", "S-1")])
    before = reg.snapshot()
    other = reg.scratch / "other-keys"
    init = invoke(["registry", "init", "--db", reg.url, "--keys", str(other)])
    assert init.exit_code == 2  # the registry exists, and other-keys holds no key for it
    assert another_registry(reg.scratch) == other  # its key, made for a registry of its own
    result = invoke(["registry", "refresh", "--all", "--db", reg.url, "--keys", str(other)])
    assert result.exit_code == 2
    assert result.stderr.startswith("permitgate: this registry was made with the key ")
    assert reg.snapshot() == before
    assert reg.verify().exit_code == 0


def test_refresh_renews_records_with_the_same_content(reg: Registry) -> None:
    reg.load([structure("S-1"), permit("P-1", "S-1")])
    size, _, old = reg.status_row("S-1")
    key = parse_verifier_key(reg.public_key_text)
    result = reg.cli("refresh", "--all", keys=True)
    assert result.exit_code == 0, result.output
    new_size, _, new = reg.status_row("S-1")
    before, after = open_envelope(old, key), open_envelope(new, key)
    assert new_size == size
    assert after["next_update"] > before["next_update"]
    assert {k: v for k, v in after.items() if "update" not in k} == {
        k: v for k, v in before.items() if "update" not in k
    }
    assert json.dumps(after["permits"]) == json.dumps(before["permits"])
    assert reg.verify().exit_code == 0


def test_records_signed_from_parts_are_the_typed_records_canonical_json() -> None:
    # Writers sign a state handed over as each record's canonical JSON; the payload put together
    # from those parts must be the RFC 8785 form of the whole record (checked here with the
    # standard library's json, sorted keys, no spaces), and an event put together from the
    # record's bytes must be what encode_event gives.
    now = datetime(2026, 1, 1, 12, 30, 15, 123456, tzinfo=UTC)
    records = [parse_record(r) for r in demo_lines(60, now=now)]
    records.append(parse_record(structure("S-UNI", address='东河沿 12号 "quoted" \\ back')))
    key = Signer.from_private_bytes(ORIGIN, bytes(32))
    signer = StatusSigner(key, now=now)
    by_structure: dict[str, list[Record]] = {}
    for r in records:
        by_structure.setdefault(r.structure_id, []).append(r)
    for sid, own in by_structure.items():
        state = fold(sid, own)
        record = StatusRecord(*state, tree_size=17, this_update=now, next_update=now + WEEK)
        expected = canonical(record.to_json())
        assert signer.payload(state_parts(*state), 17) == expected
        assert canonical_json(record.to_json()) == expected
        # ... and the envelope around it is the one sign_envelope makes.
        _, _, _, digest, envelope, bucket = signer.row(sid, state_parts(*state), 17)
        assert bucket == int.from_bytes(hashlib.sha256(sid.encode()).digest()[:2], "big")
        assert envelope == key.sign_envelope(expected, STATUS_TYPE)
        assert digest == hashlib.sha256(envelope).digest()
    at = format_time(now)
    for seq, r in enumerate(records):
        raw = canonical_json(r.to_json())
        assert event_bytes(seq, json.dumps(at).encode(), raw) == encode_event(seq, at, r.to_json())
