"""``permitgate registry verify``: a clean registry verifies; every edit behind its back is found.

Each test edits one thing with raw SQL, as someone with database access but without the signing
key could, then checks that verify exits 1 and names what differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from registry_support import (
    EXAMPLE_LINES,
    ORIGIN,
    S1,
    Registry,
    another_registry,
    permit,
    structure,
)

LONELY = "S-3"  # a structure with no permits or cases


@pytest.fixture
def filled(reg: Registry) -> Registry:
    """Two imports: heads 1, 2 and 3 over 0, 5 and 6 events; structures S1 (permit, case),
    S-2 (permit), S-3."""
    reg.load([*EXAMPLE_LINES, structure("S-2"), permit("P-2", "S-2")])
    reg.load([structure(LONELY)])
    return reg


def problems(reg: Registry, *, with_state: bool = True) -> list[str]:
    """Run verify, which must fail; return the differences it printed. Without the state, it
    is run as a verifier holding only the registry's public key would."""
    args = [] if with_state else ["--state", str(reg.scratch / "no-state")]
    result = reg.cli("verify", *args, keys=True)
    assert result.exit_code == 1, result.output
    assert "ok:" not in result.stdout
    lines = result.stderr.splitlines()
    assert lines[-1] == f"permitgate: verification failed: {len(lines) - 1} differences"
    return lines[:-1]


MAP_CHANGED = (
    "status map: the {count} stored status records do not give the map root of head serial "
    "{serial} (3 records): a status_record row was changed, added or removed"
)


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
        "permit P-2024-0001: status: the tables say 'revoked', the event log says 'valid' (event 1)"
    ]


def test_case_stage_changed_in_sql(filled: Registry) -> None:
    filled.sql("UPDATE violation_case SET stage = 'closed' WHERE id = 'C-2025-0042'")
    assert problems(filled) == [
        "case C-2025-0042: stage: the tables say 'closed', the event log says 'stop_order' "
        "(event 2)"
    ]


def test_last_event_deleted(filled: Registry) -> None:
    filled.sql("DELETE FROM event WHERE seq = 5")
    found = problems(filled)
    assert "event log: 5 events, but head serial 3 signs 6: event 5 on missing" in found
    assert f"structure {LONELY}: in the tables but not in the event log" in found
    assert f"status_record row of {LONELY}: a record of a structure the event log lacks" in found


def test_event_deleted_in_the_middle(filled: Registry) -> None:
    filled.sql("DELETE FROM event WHERE seq = 1")
    found = problems(filled)
    assert found[0] == "event 1: missing (the next is event 2)"
    assert "permit P-2024-0001: in the tables but not in the event log" in found
    assert "permit P-2024-0001: in the signed status record but not in the event log" in found


def test_event_body_edited(filled: Registry) -> None:
    body = filled.event_bodies()[1]
    assert b'"status":"valid"' in body
    forged = body.replace(b'"status":"valid"', b'"status":"revoked"')
    filled.sql("UPDATE event SET body = :body WHERE seq = 1", body=forged)
    found = problems(filled)
    assert found == [
        "head serial 2 (log size 5): the events do not hash to its signed root: one of events "
        "0 to 4 was changed",
        "permit P-2024-0001: status: the tables say 'valid', the event log says 'revoked' "
        "(event 1)",
        "permit P-2024-0001: status: the signed status record says 'valid', the event log says "
        "'revoked' (event 1)",
    ]


def test_event_body_made_non_canonical(filled: Registry) -> None:
    body = filled.event_bodies()[0]
    filled.sql("UPDATE event SET body = :body WHERE seq = 0", body=b" " + body)
    found = problems(filled)
    assert (
        "head serial 2 (log size 5): the events do not hash to its signed root: one of events "
        "0 to 4 was changed"
    ) in found
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


@pytest.mark.parametrize("with_state", [True, False])
def test_status_envelope_replaced_by_another_structures(filled: Registry, with_state: bool) -> None:
    _, _, other = filled.status_row("S-2")
    filled.sql(
        "UPDATE status_record SET envelope = :envelope WHERE structure_id = :sid",
        envelope=other,
        sid=S1,
    )
    found = problems(filled, with_state=with_state)
    assert found == [
        f"status_record row of {S1}: digest column does not match",
        f"status_record row of {S1}: status record: describes 'S-2' but is filed under {S1!r}",
        MAP_CHANGED.format(count=3, serial=3),
        *([f"status_record row of {S1}: not the record the registry signed"] * with_state),
    ]


def test_status_envelope_and_digest_replaced_by_another_structures(filled: Registry) -> None:
    # A careful forger also fixes the digest and tree_size columns: the record still names S-2.
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
    assert (
        f"status_record row of {S1}: status record: describes 'S-2' but is filed under "
        in (found[0])
    )
    assert MAP_CHANGED.format(count=3, serial=3) in found
    assert not any("digest" in p for p in found)


@pytest.mark.parametrize("with_state", [True, False])
def test_stale_status_record_put_back(filled: Registry, with_state: bool) -> None:
    # An old, genuinely signed record of the same structure replayed over the current one.
    _, _, old = filled.status_row(S1)
    filled.load([structure(S1, declared_use="warehouse")])
    assert filled.status_row(S1)[0] == 7
    filled.sql(
        "UPDATE status_record SET envelope = :envelope, digest = :digest, tree_size = 5 "
        "WHERE structure_id = :sid",
        envelope=old,
        digest=hashlib.sha256(old).digest(),
        sid=S1,
    )
    found = problems(filled, with_state=with_state)
    assert found[0].startswith(f"status_record row of {S1}: next_update column says ")
    assert found[1:] == [
        f"status_record row of {S1}: shows tree size 5, but the structure last changed at "
        "event 6 of 7",
        f"structure {S1}: address: the signed status record says '...', the event log says "
        "None (event 6)",
        f"structure {S1}: declared_use: the signed status record says 'residential', the event "
        "log says 'warehouse' (event 6)",
        MAP_CHANGED.format(count=3, serial=4),
        *([f"status_record row of {S1}: not the record the registry signed"] * with_state),
    ]


def test_status_record_deleted(filled: Registry) -> None:
    filled.sql("DELETE FROM status_record WHERE structure_id = 'S-2'")
    assert problems(filled) == [
        "structure S-2: no signed status record",
        MAP_CHANGED.format(count=2, serial=3),
        "status_record row of S-2: missing (the registry signed a record of it)",
    ]


def test_next_update_column_moved(filled: Registry) -> None:
    filled.sql(
        "UPDATE status_record SET next_update = :at WHERE structure_id = 'S-2'",
        at=datetime(2020, 1, 1, tzinfo=UTC).replace(tzinfo=None)
        if filled.url.startswith("sqlite")
        else datetime(2020, 1, 1, tzinfo=UTC),
    )
    [found] = problems(filled)
    assert found.startswith(
        "status_record row of S-2: next_update column says 2020-01-01T00:00:00Z, the signed "
        "record 20"
    )


def test_digest_column_corrupted(filled: Registry) -> None:
    filled.sql(
        "UPDATE status_record SET digest = :digest WHERE structure_id = :sid",
        digest=bytes(32),
        sid=S1,
    )
    assert problems(filled) == [f"status_record row of {S1}: digest column does not match"]


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
def test_head_note_changed_by_one_byte(
    filled: Registry, where: str, position: Callable[[bytes], int]
) -> None:
    [(note,)] = filled.sql("SELECT note FROM head WHERE serial = 3")
    note = bytes(note)
    filled.sql("UPDATE head SET note = :note WHERE serial = 3", note=flip(note, position(note)))
    found = problems(filled, with_state=False)
    assert found[0] == f"head serial 3: note: signature by {ORIGIN} does not verify", where
    assert "event log: 6 events, but head serial 2 signs 5: event 5 on added" in found
    # With the registry's state, the head it signed is named too.
    assert problems(filled)[-1] == (
        "head serial 3: not the head the registry signed (its state "
        f"{filled.state_dir / 'registry.sqlite'} holds another)"
    )


def test_head_cosignature_changed(filled: Registry) -> None:
    [(cosignature,)] = filled.sql("SELECT cosignature FROM head WHERE serial = 3")
    forged = flip(bytes(cosignature), len(cosignature) - 20)
    filled.sql("UPDATE head SET cosignature = :c WHERE serial = 3", c=forged)
    found = problems(filled, with_state=False)
    assert found[0] == f"head serial 3: cosignature by {ORIGIN} does not verify"


def test_head_root_column_changed(filled: Registry) -> None:
    filled.sql("UPDATE head SET root_hash = :root WHERE serial = 3", root=bytes(32))
    assert problems(filled, with_state=False) == [
        "head serial 3: root_hash column differs from its note",
        "event log: 6 events, but head serial 2 signs 5: event 5 on added",
        # checked against the newest head that verifies, which had two structures
        "status map: the 3 stored status records do not give the map root of head serial 2 "
        "(2 records): a status_record row was changed, added or removed",
    ]


def test_head_row_deleted_in_the_middle(filled: Registry) -> None:
    filled.sql("DELETE FROM head WHERE serial = 2")
    assert problems(filled) == ["head serial 2: missing (serials run 1, 2, ...)"]


def test_tree_state_column_changed(filled: Registry) -> None:
    filled.sql("UPDATE head SET tree_state = :s WHERE serial = 2", s=bytes(64))
    assert problems(filled) == [
        "head serial 2 (log size 5): its tree_state column is not the events'"
    ]


def test_verify_trusts_the_key_on_disk_not_the_database(filled: Registry) -> None:
    # Someone swaps the registry's recorded public key: verify still uses the keys directory.
    filled.sql("UPDATE registry_meta SET value = 'x' WHERE key = 'public_key'")
    assert filled.verify().exit_code == 0
    # And with another key on disk, nothing verifies.
    other = another_registry(filled.scratch)
    (filled.keys / "registry.pub").write_bytes((other / "registry.pub").read_bytes())
    found = problems(filled)
    assert "head serial 3: note: not signed by any trusted key" in found
    assert "head: none with a valid signature" in found
    assert found[-1].startswith(f"state {filled.state_dir / 'registry.sqlite'}: its head does ")
