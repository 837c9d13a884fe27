"""``permitgate registry verify``: a clean registry verifies; every edit behind its back is found.

Each test edits one thing with raw SQL, as someone with database access but without the signing
key could, then checks that verify exits 1 and names what differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from registry_support import EXAMPLE_LINES, ORIGIN, S1, Registry, invoke, permit, structure

LONELY = "S-3"  # a structure with no permits or cases


@pytest.fixture
def filled(reg: Registry) -> Registry:
    """Two imports: checkpoints 0, 5 and 6; structures S1 (permit, case), S-2 (permit), S-3."""
    reg.load([*EXAMPLE_LINES, structure("S-2"), permit("P-2", "S-2")])
    reg.load([structure(LONELY)])
    return reg


def problems(reg: Registry) -> list[str]:
    """Run verify, which must fail; return the differences it printed."""
    result = reg.verify()
    assert result.exit_code == 1, result.output
    assert "ok:" not in result.stdout
    lines = result.stderr.splitlines()
    assert lines[-1] == f"permitgate: verification failed: {len(lines) - 1} differences"
    return lines[:-1]


def test_a_clean_registry_verifies(filled: Registry) -> None:
    result = filled.verify()
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ok: 6 events match the signed checkpoint; 3 structures match their signed status records\n"
    )
    assert result.stderr == ""


def test_an_empty_registry_verifies(reg: Registry) -> None:
    result = reg.verify()
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 0 events match the signed checkpoint; 0 structures")


def test_permit_status_changed_in_sql(filled: Registry) -> None:
    filled.sql("UPDATE permit SET status = 'revoked' WHERE id = 'P-2024-0001'")
    assert problems(filled) == [
        "permit P-2024-0001: status: the tables say 'revoked', the event log says 'valid'"
    ]


def test_case_stage_changed_in_sql(filled: Registry) -> None:
    filled.sql("UPDATE violation_case SET stage = 'closed' WHERE id = 'C-2025-0042'")
    assert problems(filled) == [
        "case C-2025-0042: stage: the tables say 'closed', the event log says 'stop_order'"
    ]


def test_last_event_deleted(filled: Registry) -> None:
    filled.sql("DELETE FROM event WHERE seq = 5")
    found = problems(filled)
    assert "event log: 5 events, but the checkpoint signs 6" in found
    assert f"structure {LONELY}: in the tables but not in the event log" in found


def test_event_deleted_in_the_middle(filled: Registry) -> None:
    filled.sql("DELETE FROM event WHERE seq = 1")
    found = problems(filled)
    assert found[0] == "event log: event 1 is missing (next is 2)"
    assert "permit P-2024-0001: in the tables but not in the event log" in found


def test_event_body_edited(filled: Registry) -> None:
    body = filled.event_bodies()[1]
    assert b'"status":"valid"' in body
    forged = body.replace(b'"status":"valid"', b'"status":"revoked"')
    filled.sql("UPDATE event SET body = :body WHERE seq = 1", body=forged)
    found = problems(filled)
    assert "event log: the first 5 events do not hash to checkpoint 5" in found
    assert "permit P-2024-0001: status: the tables say 'valid', the event log says 'revoked'" in (
        found
    )


def test_event_body_made_non_canonical(filled: Registry) -> None:
    body = filled.event_bodies()[0]
    filled.sql("UPDATE event SET body = :body WHERE seq = 0", body=b" " + body)
    found = problems(filled)
    assert "event log: the first 5 events do not hash to checkpoint 5" in found
    assert "event 0: event is not in canonical form" in found


def test_event_moved_to_another_structure(filled: Registry) -> None:
    filled.sql("UPDATE event SET structure_id = 'S-2' WHERE seq = 1")
    assert "event 1: its columns differ from its signed bytes" in problems(filled)


def test_structure_row_deleted(filled: Registry) -> None:
    filled.sql("DELETE FROM structure WHERE id = :sid", sid=LONELY)
    assert problems(filled) == [f"structure {LONELY}: in the event log but not in the tables"]


def test_permit_row_added(filled: Registry) -> None:
    filled.sql(
        "INSERT INTO permit (id, structure_id, kind, status, issued) "
        "VALUES ('P-FORGED', :sid, 'property_ownership', 'valid', '2024-03-01 00:00:00.000000')",
        sid=S1,
    )
    assert problems(filled) == ["permit P-FORGED: in the tables but not in the event log"]


def test_status_envelope_replaced_by_another_structures(filled: Registry) -> None:
    _, _, other = filled.status_row("S-2")
    filled.sql(
        "UPDATE status_record SET envelope = :envelope WHERE structure_id = :sid",
        envelope=other,
        sid=S1,
    )
    found = problems(filled)
    assert f"status record {S1}: digest column does not match" in found
    assert f"structure {S1}: in the event log but not in the signed status record" in found
    assert "structure S-2: in the signed status record but not in the event log" in found
    assert "permit P-2: in the signed status record but not in the event log" in found


def test_status_envelope_and_digest_replaced_by_another_structures(filled: Registry) -> None:
    # A careful forger also fixes the digest and tree_size columns: the content still differs.
    tree_size, digest, other = filled.status_row("S-2")
    filled.sql(
        "UPDATE status_record SET envelope = :envelope, digest = :digest, tree_size = :size "
        "WHERE structure_id = :sid",
        envelope=other,
        digest=digest,
        size=tree_size,
        sid=S1,
    )
    found = problems(filled)
    assert f"structure {S1}: in the event log but not in the signed status record" in found
    assert "structure S-2: in the signed status record but not in the event log" in found
    assert not any("digest" in p for p in found)


def test_stale_status_record_put_back(filled: Registry) -> None:
    # An old, genuinely signed record of the same structure replayed over the current one.
    _, _, old = filled.status_row(S1)
    filled.load([structure(S1, declared_use="warehouse")])
    assert filled.status_row(S1)[0] == 7
    filled.sql(
        "UPDATE status_record SET envelope = :envelope, digest = :digest WHERE structure_id = :sid",
        envelope=old,
        digest=hashlib.sha256(old).digest(),
        sid=S1,
    )
    found = problems(filled)
    assert f"status record {S1}: tree_size column does not match" in found
    assert (
        f"status record {S1}: shows tree size 5, but the structure last changed at event 6 of 7"
        in found
    )


def test_status_record_deleted(filled: Registry) -> None:
    filled.sql("DELETE FROM status_record WHERE structure_id = 'S-2'")
    assert problems(filled) == ["structure S-2: no signed status record"]


def test_digest_column_corrupted(filled: Registry) -> None:
    filled.sql(
        "UPDATE status_record SET digest = :digest WHERE structure_id = :sid",
        digest=bytes(32),
        sid=S1,
    )
    assert problems(filled) == [f"status record {S1}: digest column does not match"]


def flip(note: bytes, at: int) -> bytes:
    """``note`` with the base64 character at ``at`` replaced by another one."""
    old = note[at : at + 1]
    return note[:at] + (b"B" if old == b"A" else b"A") + note[at + 1 :]


@pytest.mark.parametrize(
    ("where", "position"),
    [
        ("root hash", lambda note: note.index(b"\n", len(ORIGIN) + 1) + 5),
        ("signature", lambda note: len(note) - 20),
    ],
)
def test_checkpoint_note_changed_by_one_byte(
    filled: Registry, where: str, position: Callable[[bytes], int]
) -> None:
    [(note,)] = filled.sql("SELECT note FROM head WHERE size = 6")
    note = bytes(note)
    filled.sql("UPDATE head SET note = :note WHERE size = 6", note=flip(note, position(note)))
    found = problems(filled)
    assert found[0] == f"checkpoint 6: note: signature by {ORIGIN} does not verify", where
    assert "event log: 6 events, but the checkpoint signs 5" in found


def test_checkpoint_root_column_changed(filled: Registry) -> None:
    filled.sql("UPDATE head SET root_hash = :root WHERE size = 6", root=bytes(32))
    assert problems(filled) == ["checkpoint 6: columns differ from the signed note"]


def test_verify_trusts_the_key_on_disk_not_the_database(filled: Registry) -> None:
    # Someone swaps the registry's recorded public key: verify still uses the keys directory.
    filled.sql("UPDATE registry_meta SET value = 'x' WHERE key = 'public_key'")
    assert filled.verify().exit_code == 0
    # And with another key on disk, nothing verifies.
    other = filled.scratch / "other-keys"
    result = invoke(
        ["registry", "init", "--db", f"sqlite:///{filled.scratch / 'o.db'}", "--keys", str(other)]
    )
    assert result.exit_code == 0, result.output
    (filled.keys / "registry.pub").write_bytes((other / "registry.pub").read_bytes())
    found = problems(filled)
    assert "checkpoint 6: note: not signed by any trusted key" in found
    assert "checkpoint: none with a valid signature" in found
