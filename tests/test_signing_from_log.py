"""Signatures come from the log, never from rows edited behind the registry's back, and only
with the registry's own key. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from registry_support import Registry, invoke, open_envelope, parse_verifier_key, permit, structure


def _signed_permit_status(reg: Registry, structure_id: str, permit_id: str) -> str:
    _, _, envelope = reg.status_row(structure_id)
    payload = open_envelope(envelope, parse_verifier_key(reg.public_key_text))
    [found] = [p for p in payload["permits"] if p["id"] == permit_id]
    return str(found["status"])


def test_refresh_signs_the_log_not_a_row_edited_in_sql(reg: Registry) -> None:
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


def test_import_signs_the_log_not_a_row_edited_in_sql(reg: Registry) -> None:
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
    reg_db = reg.scratch / "second.db"
    made = invoke(["registry", "init", "--db", f"sqlite:///{reg_db}", "--keys", str(other)])
    assert made.exit_code == 0, made.output
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
