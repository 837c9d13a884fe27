"""The registry signs only what it signed before: an attacker who writes the database but holds
no key gets nothing signed, and ``registry verify`` names what they changed.

Each test changes the database with raw SQL (or restores an older copy of it), as someone with
database access but without the signing key could, then runs the real commands: the registry
refuses to sign, naming the row, or signs only what follows from its own signed state; verify
names the row. Signed records are opened by hand (``registry_support``), not by the registry's
own verifier. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from registry_support import (
    EXAMPLE_LINES,
    ORIGIN,
    S1,
    Registry,
    another_registry,
    jsonl,
    open_checkpoint,
    open_envelope,
    parse_verifier_key,
    permit,
    structure,
)

from registry.admin import RegistryRolledBack
from registry.demo import demo_lines
from registry.heads import sign_head
from registry.merkle import CompactTree, leaf_hash
from registry.signing import load_signer
from registry.statusmap import StatusMap
from registry.storage import Database
from registry.trusted_state import TrustedState
from registry.writer import open_writer

CASE_ID = "C-2025-0042"  # S1's case, at stop_order
PERMIT_ID = "P-2024-0001"  # S1's permit
CLEAN = "S-CLEAN"  # a structure with one valid permit and no case
REPAIR = (
    "rows were deleted or added outside permitgate; run 'permitgate registry verify' and "
    "restore the database from a backup"
)


@pytest.fixture
def flagged(reg: Registry) -> Registry:
    """One import: head serial 2 over 5 events; S1 with a permit and a case at stop_order,
    S-CLEAN with a permit."""
    reg.load([*EXAMPLE_LINES, structure(CLEAN), permit("P-CLEAN", CLEAN)])
    return reg


def moved(stage: str) -> dict[str, Any]:
    """S1's case (the issue's example line) at ``stage``."""
    return {**json.loads(EXAMPLE_LINES[2]), "stage": stage}


def process_env() -> dict[str, str]:
    """The environment for a ``permitgate`` process: the state beside the keys."""
    return {k: v for k, v in os.environ.items() if k != "PERMITGATE_REGISTRY_STATE"}


def refused(result: Result) -> str:
    """The one line a refused command printed (exit 2, nothing on stdout)."""
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("permitgate: "), result.stderr
    return lines[0].removeprefix("permitgate: ")


def signed_state(reg: Registry, sid: str) -> dict[str, Any]:
    """The current signed record of ``sid``, its signature checked by hand."""
    return open_envelope(reg.status_row(sid)[2], parse_verifier_key(reg.public_key_text))


def case_stage(reg: Registry) -> str:
    [found] = [c for c in signed_state(reg, S1)["cases"] if c["id"] == CASE_ID]
    return str(found["stage"])


def every_signed_stage(reg: Registry) -> set[str]:
    """Every case stage in every status record stored now."""
    key = parse_verifier_key(reg.public_key_text)
    stages = set()
    for (envelope,) in reg.sql("SELECT envelope FROM status_record"):
        stages |= {c["stage"] for c in open_envelope(bytes(envelope), key)["cases"]}
    return stages


def verify_problems(reg: Registry) -> list[str]:
    result = reg.verify()
    assert result.exit_code == 1, result.output
    return result.stderr.splitlines()[:-1]


def newest_serial(reg: Registry) -> int:
    return int(reg.scalar("SELECT max(serial) FROM head"))


def import_refused(reg: Registry, records: list[dict[str, Any]]) -> str:
    """Import ``records``, which must be refused with nothing written; the reason."""
    before = reg.snapshot()
    said = refused(reg.import_text(jsonl(records)))
    assert reg.snapshot() == before
    return said


# --- (a) a lie in an event and in the next_update column -------------------------------------


def close_the_case_in_its_event(reg: Registry) -> None:
    body = reg.event_bodies()[2]
    assert b'"stage":"stop_order"' in body
    lie = body.replace(b'"stage":"stop_order"', b'"stage":"closed"')
    reg.sql("UPDATE event SET body = :body WHERE seq = 2", body=lie)


def test_a_lie_in_an_event_and_in_next_update_is_never_signed(flagged: Registry) -> None:
    reg = flagged
    close_the_case_in_its_event(reg)
    reg.sql(
        "UPDATE status_record SET next_update = :past WHERE structure_id = :sid",
        past=reg.scalar("SELECT min(signed_at) FROM head"),
        sid=S1,
    )
    envelope = reg.status_row(S1)[2]
    # What is due comes from the registry's state: nothing is.
    result = reg.cli("refresh", keys=True)
    assert result.stdout == "0 status records re-signed\n", result.output
    assert reg.status_row(S1)[2] == envelope
    # Re-signing everything re-signs the signed state, not the event.
    result = reg.cli("refresh", "--all", keys=True)
    assert result.stdout == "2 status records re-signed\n", result.output
    assert reg.status_row(S1)[2] != envelope
    assert case_stage(reg) == "stop_order"
    # An import touching S1 starts from its signed record too.
    reg.load([permit("P-NEW", S1)])
    assert case_stage(reg) == "stop_order"
    assert {p["id"] for p in signed_state(reg, S1)["permits"]} == {PERMIT_ID, "P-NEW"}
    assert "closed" not in every_signed_stage(reg)
    # verify names the event.
    found = verify_problems(reg)
    assert found[0] == (
        "head serial 2 (log size 5): the events do not hash to its signed root: one of events "
        "0 to 4 was changed"
    )
    assert (
        f"case {CASE_ID}: stage: the signed status record says 'stop_order', the event log says "
        "'closed' (event 2)"
    ) in found


# --- (b) an event rewritten, with the newest head's tree_state recomputed ---------------------


def test_a_rewritten_event_with_a_recomputed_tree_state(flagged: Registry) -> None:
    reg = flagged
    close_the_case_in_its_event(reg)
    forged = CompactTree()
    for body in reg.event_bodies():
        forged.append(leaf_hash(body))
    reg.sql("UPDATE head SET tree_state = :s WHERE serial = 2", s=forged.state)
    said = import_refused(reg, [structure("S-NEW")])
    assert said == (
        "head row serial 2: its tree_state is not the log's frontier the registry signed: " + REPAIR
    )
    assert refused(reg.cli("refresh", "--all", keys=True)) == said
    found = verify_problems(reg)
    assert found[0].startswith("head serial 2 (log size 5): the events do not hash to its ")
    assert (
        f"case {CASE_ID}: stage: the signed status record says 'stop_order', the event log says "
        "'closed' (event 2)"
    ) in found


# --- (c) an older genuine record put back -----------------------------------------------------


def put_row(reg: Registry, sid: str, row: tuple[Any, ...]) -> None:
    """Store a whole status_record row (every column consistent with its envelope) under
    ``sid``, as a careful forger would."""
    tree_size, next_update, digest, envelope = row
    reg.sql(
        "UPDATE status_record SET tree_size = :t, next_update = :n, digest = :d, envelope = :e "
        "WHERE structure_id = :sid",
        t=tree_size,
        n=next_update,
        d=digest,
        e=envelope,
        sid=sid,
    )


def stored_row(reg: Registry, sid: str) -> tuple[Any, ...]:
    [row] = reg.sql(
        "SELECT tree_size, next_update, digest, envelope FROM status_record "
        "WHERE structure_id = :sid",
        sid=sid,
    )
    return row


def test_an_older_genuine_record_put_back(flagged: Registry) -> None:
    reg = flagged
    older = stored_row(reg, S1)  # the case at stop_order
    reg.load([moved("rectify_order")])
    put_row(reg, S1, older)
    assert signed_state(reg, S1)["cases"][0]["stage"] == "stop_order"  # genuinely signed
    said = import_refused(reg, [permit("P-NEW", S1)])
    assert said == (
        f"status_record row of {S1}: not the record the registry signed (its SHA-256 differs "
        f"from the one in {reg.state_dir / 'registry.sqlite'}): {REPAIR}"
    )
    assert refused(reg.cli("refresh", "--all", keys=True)) == said
    # A move allowed from the old stage but not from the signed one is refused all the same.
    assert import_refused(reg, [moved("closed")]) == said
    found = verify_problems(reg)
    assert f"status_record row of {S1}: not the record the registry signed" in found
    assert any(p.startswith("status map: the 2 stored status records do not give") for p in found)


# --- (d) a clean structure's record copied onto a flagged one ---------------------------------


def test_a_clean_record_copied_onto_a_flagged_structure(flagged: Registry) -> None:
    reg = flagged
    genuine = stored_row(reg, S1)
    put_row(reg, S1, stored_row(reg, CLEAN))
    said = import_refused(reg, [moved("closed")])
    assert said.startswith(f"status_record row of {S1}: not the record the registry signed")
    found = verify_problems(reg)
    assert found[0] == (
        f"status_record row of {S1}: status record: describes '{CLEAN}' but is filed under {S1!r}"
    )
    assert f"status_record row of {S1}: not the record the registry signed" in found
    # A write that does not touch S1 goes on, and its head keeps S1's genuine record: with that
    # row put back, everything verifies against the new head.
    reg.load([structure("S-NEW")])
    assert newest_serial(reg) == 3
    put_row(reg, S1, genuine)
    assert reg.verify().exit_code == 0


# --- (e) rollbacks ----------------------------------------------------------------------------


ROLLED_BACK = (
    "the database was rolled back: its newest head is serial 2 (log size 5), but this registry "
    "signed head serial 3 (log size 6), cosigned "
)


def test_the_newest_head_deleted(flagged: Registry) -> None:
    reg = flagged
    reg.load([structure("S-NEW")])
    reg.sql("DELETE FROM head WHERE serial = 3")
    for _ in range(2):  # and again: every command is a writer started afresh
        said = import_refused(reg, [structure("S-OTHER")])
        assert said.startswith(ROLLED_BACK)
        assert said.endswith(
            f": restore the newest backup; or move {reg.state_dir} aside to re-adopt the "
            "database after a full check"
        )
        assert refused(reg.cli("refresh", "--all", keys=True)).startswith(ROLLED_BACK)
    found = verify_problems(reg)
    assert found[-1].startswith(
        "rolled back: the database's newest head is serial 2 (log size 5), but its state "
        f"{reg.state_dir / 'registry.sqlite'} holds head serial 3 (log size 6), cosigned "
    )


def backup(reg: Registry, where: Path) -> None:
    """A copy of the whole database: SQLite's backup API, or pg_dump."""
    if reg.url.startswith("sqlite"):
        _copy_sqlite(Path(reg.url.removeprefix("sqlite:///")), where)
    else:
        subprocess.run(["pg_dump", "--dbname", reg.url, "--file", str(where)], check=True)


def restore(reg: Registry, where: Path) -> None:
    """Put the copy back over the whole database as it is now."""
    reg.close()
    if reg.url.startswith("sqlite"):
        _copy_sqlite(where, Path(reg.url.removeprefix("sqlite:///")))
    else:
        reg.sql("DROP SCHEMA public CASCADE")
        reg.sql("CREATE SCHEMA public")
        reg.close()
        psql = ["psql", "--quiet", "--dbname", reg.url, "--file", str(where)]
        subprocess.run([*psql, "-v", "ON_ERROR_STOP=1"], check=True, capture_output=True)


def _copy_sqlite(source: Path, target: Path) -> None:
    """Every page of ``source`` into ``target`` (SQLite's online backup)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def test_an_older_backup_restored(flagged: Registry) -> None:
    reg = flagged
    backup(reg, reg.scratch / "backup")
    reg.load([structure("S-NEW")])
    restore(reg, reg.scratch / "backup")
    assert newest_serial(reg) == 2
    said = import_refused(reg, [structure("S-OTHER")])
    assert said.startswith(ROLLED_BACK)
    # A writer started as a new process remembers as well: the state is on disk.
    command = [str(Path(sys.executable).with_name("permitgate")), "registry", "refresh"]
    done = subprocess.run(
        [*command, "--all", "--db", reg.url, "--keys", str(reg.keys)],
        capture_output=True,
        text=True,
        check=False,
        env=process_env(),
    )
    assert done.returncode == 2 and done.stderr.startswith(f"permitgate: {ROLLED_BACK}")
    assert verify_problems(reg)[-1].startswith("rolled back: the database's newest head is ")
    # The way out the message names: move the state aside; the database is adopted after a
    # full check, with a warning.
    reg.state_dir.rename(reg.scratch / "old-state")
    result = reg.load([structure("S-OTHER")])
    assert result.stderr == (
        f"permitgate: warning: the registry's state in {reg.state_dir} was empty: it was rebuilt "
        "from the database after a full check (head serial 2, 5 events, 2 status records)\n"
    )
    assert newest_serial(reg) == 3
    assert reg.verify().exit_code == 0


# --- (f) a head signed with another key -------------------------------------------------------


def test_a_head_signed_with_another_key(flagged: Registry) -> None:
    reg = flagged
    other = load_signer(another_registry(reg.scratch), "registry")
    assert other.name == ORIGIN and other.verifier != load_signer(reg.keys, "registry").verifier
    tree = CompactTree()
    for body in reg.event_bodies():
        tree.append(leaf_hash(body))
    records = StatusMap(
        (str(sid), hashlib.sha256(bytes(envelope)).digest())
        for sid, envelope in reg.sql("SELECT structure_id, envelope FROM status_record")
    )
    now = datetime.now(UTC)
    row = sign_head(other, origin=ORIGIN, tree=tree, status_map=records, serial=3, now=now)
    db = Database(reg.url)
    try:
        with db.session() as session:
            session.add(row)
    finally:
        db.dispose()
    said = import_refused(reg, [structure("S-NEW")])
    assert said == f"head row serial 3: note: not signed by any trusted key: {REPAIR}"
    assert refused(reg.cli("refresh", "--all", keys=True)) == said
    assert verify_problems(reg)[0] == "head serial 3: note: not signed by any trusted key"


# --- (g) the tables are an index, never the state ---------------------------------------------


def test_a_case_stage_changed_in_its_table(flagged: Registry) -> None:
    reg = flagged
    reg.sql("UPDATE violation_case SET stage = 'closed' WHERE id = :c", c=CASE_ID)
    assert verify_problems(reg) == [
        f"case {CASE_ID}: stage: the tables say 'closed', the event log says 'stop_order' (event 2)"
    ]
    # The checks use the signed stage, stop_order: reported is not allowed from it ...
    result = reg.import_text(jsonl([moved("reported")]))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"line 1: stage: case {CASE_ID} cannot move from stop_order to reported (allowed from "
        "stop_order: closed, demolition_order, rectify_order)",
        "permitgate: 1 error in 1 line; nothing was imported",
    ]
    # ... rectify_order (allowed from stop_order, not from closed) is, and the row is put right.
    reg.load([moved("rectify_order")])
    assert case_stage(reg) == "rectify_order"
    assert reg.verify().exit_code == 0


def test_a_case_row_deleted(flagged: Registry) -> None:
    reg = flagged
    reg.sql("DELETE FROM violation_case WHERE id = :c", c=CASE_ID)
    assert verify_problems(reg) == [
        f"case {CASE_ID}: in the event log (event 2) but not in the tables"
    ]
    # The signed record still holds it: the same line is no change, a bad move an error.
    assert reg.load([moved("stop_order")]).stdout.startswith("1 lines, no changes")
    result = reg.import_text(jsonl([moved("filed")]))
    assert "cannot move from stop_order to filed" in result.stderr
    reg.load([moved("closed")])
    assert case_stage(reg) == "closed"
    assert reg.verify().exit_code == 0


def test_a_permit_row_filed_under_another_structure(flagged: Registry) -> None:
    reg = flagged
    reg.sql("UPDATE permit SET structure_id = :s WHERE id = :p", s=CLEAN, p=PERMIT_ID)
    # Filed (by the table) under S-CLEAN, whose signed record does not hold it: the table is
    # not believed, and the write refused, naming the row.
    said = import_refused(reg, [permit(PERMIT_ID, CLEAN)])
    assert said == (
        f"permit row of {PERMIT_ID}: names structure '{CLEAN}', whose signed record does not "
        f"hold it: {REPAIR}"
    )
    assert verify_problems(reg) == [
        f"permit {PERMIT_ID}: in the event log (event 1) but not in the tables",
        f"permit {PERMIT_ID}: in the tables but not in the event log",
    ]
    # Under its own structure it is found in the signed record, and the row is put right.
    reg.load([permit(PERMIT_ID, S1, status="revoked")])
    assert [p["status"] for p in signed_state(reg, S1)["permits"]] == ["revoked"]
    assert reg.verify().exit_code == 0


def test_a_permit_row_added_for_an_id_nobody_holds(flagged: Registry) -> None:
    reg = flagged
    reg.sql(
        "INSERT INTO permit (id, structure_id, kind, status, issued) "
        "VALUES ('P-PLANTED', :sid, 'property_ownership', 'valid', :at)",
        sid=S1,
        at=reg.scalar("SELECT issued FROM permit WHERE id = 'P-CLEAN'"),
    )
    said = import_refused(reg, [permit("P-PLANTED", S1)])
    assert said.startswith(f"permit row of P-PLANTED: names structure '{S1}', whose signed ")


# --- controls: untouched, a second writer, a crash between the database and the state --------


def test_an_untouched_registry_imports_and_refreshes(flagged: Registry) -> None:
    reg = flagged
    reg.load([moved("rectify_order"), structure("S-NEW")])
    assert reg.cli("refresh", keys=True).stdout == "0 status records re-signed\n"
    assert reg.cli("refresh", "--all", keys=True).stdout == "3 status records re-signed\n"
    assert newest_serial(reg) == 4
    assert reg.verify().exit_code == 0


def test_another_writer_with_its_own_state_catches_up(flagged: Registry) -> None:
    reg = flagged
    second = Registry(reg.url, reg.keys, reg.scratch, reg.scratch / "second-state")
    # Its first write adopts the database after the full check, and says so.
    result = second.load([structure("S-2ND")])
    assert result.stderr == (
        f"permitgate: warning: the registry's state in {second.state_dir} was empty: it was "
        "rebuilt from the database after a full check (head serial 2, 5 events, 2 status "
        "records)\n"
    )
    # The first writer catches up from the newer head the second signed, and back again.
    reg.load([moved("rectify_order")])
    result = second.load([moved("rectified")])
    assert result.stderr == ""
    reg.load([structure("S-1ST")])
    assert newest_serial(reg) == 6
    assert case_stage(reg) == "rectified"
    for writer in (reg, second):
        assert writer.verify().exit_code == 0


def test_a_crash_between_the_database_and_the_state(flagged: Registry) -> None:
    reg = flagged
    kept = reg.scratch / "kept-state"
    shutil.copytree(reg.state_dir, kept)
    reg.load([structure("S-NEW")])
    shutil.rmtree(reg.state_dir)
    kept.rename(reg.state_dir)  # the state as it was before the last commit
    reg.load([structure("S-NEXT")])  # the database is one head ahead: adopted
    assert newest_serial(reg) == 4
    assert reg.verify().exit_code == 0


# --- signing workers die with the import ------------------------------------------------------


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_signing_workers_die_with_a_killed_import(flagged: Registry) -> None:
    reg = flagged
    data = reg.write(jsonl(list(demo_lines(40_000))))
    command = [str(Path(sys.executable).with_name("permitgate")), "registry", "import"]
    importer = subprocess.Popen(
        [*command, str(data), "--db", reg.url, "--keys", str(reg.keys)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=process_env(),
    )
    try:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while not workers and time.monotonic() < deadline:  # the pool's signing workers
            workers = {
                pid
                for pid in children(importer.pid)
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            }
            time.sleep(0.05)
        assert importer.poll() is None, "the import ended before its workers were seen"
        assert workers, "no signing worker started"
        importer.send_signal(signal.SIGKILL)
        importer.wait()
        # A worker notices within a poll once it runs; one still starting (imports under a
        # loaded machine take seconds) notices when its initializer runs.
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if alive(pid)]
    finally:
        if importer.poll() is None:
            importer.kill()
            importer.wait()
    # Nothing of the killed import was kept, and the registry goes on.
    assert newest_serial(reg) == 2
    reg.load([structure("S-NEW")])
    assert reg.verify().exit_code == 0


def test_a_heartbeat_cosigns_the_head_the_state_and_the_database_agree_on(
    flagged: Registry,
) -> None:
    reg = flagged
    later = datetime.now(UTC) + timedelta(minutes=5)
    db = Database(reg.url)
    try:
        with open_writer(db, load_signer(reg.keys, "registry"), reg.state_dir) as writer:
            writer.cosign_head(later)
        key = parse_verifier_key(reg.public_key_text)
        note = reg.checkpoint()
        assert open_checkpoint(note, key).cosigned_at == int(later.timestamp())
        assert newest_serial(reg) == 2
        state = TrustedState(reg.state_dir, "registry")
        try:
            assert state.head() == note
        finally:
            state.close()
        # Not over a database that was rolled back.
        reg.sql("DELETE FROM head WHERE serial = 2")
        with (
            pytest.raises(RegistryRolledBack),
            open_writer(db, load_signer(reg.keys, "registry"), reg.state_dir) as writer,
        ):
            writer.cosign_head(later)
    finally:
        db.dispose()


def test_an_empty_state_adopts_only_a_database_that_passes_the_full_check(
    flagged: Registry,
) -> None:
    reg = flagged
    close_the_case_in_its_event(reg)
    shutil.rmtree(reg.state_dir)  # the state lost (or never made: a registry of before)
    said = import_refused(reg, [structure("S-NEW")])
    assert said.startswith(
        f"the registry's state in {reg.state_dir} is empty, and the database fails the full "
        "check it must pass to be adopted: head serial 2 (log size 5): the events do not hash "
        "to its signed root: one of events 0 to 4 was changed; "
    )
    assert said.endswith(
        ": run 'permitgate registry verify' to see every difference, and restore the database "
        "from a backup"
    )
    # The tables are never signed from: a difference there does not stop the adoption.
    body = reg.event_bodies()[2].replace(b'"stage":"closed"', b'"stage":"stop_order"')
    reg.sql("UPDATE event SET body = :body WHERE seq = 2", body=body)
    reg.sql("UPDATE violation_case SET stage = 'closed' WHERE id = :c", c=CASE_ID)
    result = reg.load([structure("S-NEW")])
    assert result.stderr.startswith("permitgate: warning: the registry's state in ")
    assert case_stage(reg) == "stop_order"


def test_init_makes_the_registrys_state_and_never_starts_over_one(reg: Registry) -> None:
    state = TrustedState(reg.state_dir, "registry")
    try:
        assert state.head() == reg.checkpoint()  # the head as signed and cosigned
        head = open_checkpoint(reg.checkpoint(), parse_verifier_key(reg.public_key_text))
        assert (head.map_serial, head.size, head.map_count) == (1, 0, 0)
        assert state.frontier() == b"" and list(state.entries()) == []
    finally:
        state.close()
    reg.load(EXAMPLE_LINES)
    # The database wiped (every table dropped): init would make a new, empty registry under
    # the same key, a rollback to nothing; the state says what it held instead.
    for table in ("status_record", "event", "head", "permit", "violation_case", "structure"):
        reg.sql(f"DELETE FROM {table}")
    reg.sql("DELETE FROM registry_meta")
    result = reg.cli("init", keys=True)
    assert refused(result) == (
        f"{reg.state_dir} holds the state of a registry (head serial 2, log size 3), but this "
        "database holds none: if the database was lost or wiped, restore it from the newest "
        f"backup; to start a new registry here, move {reg.state_dir} aside (or pass another "
        "--state)"
    )
    assert reg.sql("SELECT count(*) FROM head") == [(0,)]
