"""Offline snapshots: ``registry snapshot`` writes only what verifies, ``check --snapshot``
answers as the gate does on the same data, and refuses a forged or damaged file naming the line.

The snapshot's head, records and proofs are checked here by hand from the specifications (the
status map recomputed from its definition, proofs walked from their byte layout, signatures with
``cryptography``), and every answer is compared with a real gate's on the same registry, for
every kind of check.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    GateRegistry,
    RunningGate,
    Wire,
    connection,
    premises,
    reasons,
    registration,
    running_gate,
    verdict,
)
from permitgate_client import (
    BadSignatureError,
    Check,
    ExpiredError,
    FromTheFutureError,
    MalformedError,
    MapMismatchError,
    VerificationError,
)
from permitgate_client.v1 import gate_pb2 as pb
from registry_support import (
    Registry,
    open_checkpoint,
    open_envelope,
    parse_verifier_key,
)
from sqlalchemy import select

from permitgate.check_cli import Duration
from permitgate.cli import main
from permitgate.offline import answer_offline
from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.heads import cosign_head
from registry.signing import Signer
from registry.snapshot import Absent, Found, NotInSnapshot, Snapshot, SnapshotUnusable
from registry.storage import Database, HeadRow
from registry.trusted_state import TrustedState

STRUCTURES = 10 * len(SCENARIOS)
DISTRICT = "110105"
ABSENT = ("110228-9999-0000", "999999-0000-0001", "110105-0000-9999")


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- the status map, from its definition ----------------------------------------------------------


def bit(key: bytes, depth: int) -> int:
    return (key[depth // 8] >> (7 - depth % 8)) & 1


def reference_root(entries: dict[str, bytes]) -> bytes:
    """The map's root by its definition: no entries 32 zero bytes, one its leaf, else a node."""

    def node(items: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not items:
            return bytes(32)
        if len(items) == 1:
            return sha(b"\x00" + items[0][0] + items[0][1])
        left = [i for i in items if not bit(i[0], depth)]
        right = [i for i in items if bit(i[0], depth)]
        return sha(b"\x01" + node(left, depth + 1) + node(right, depth + 1))

    return node([(sha(k.encode()), v) for k, v in entries.items()], 0)


def walk_proof(root: bytes, structure_id: str, value: bytes | None, proof: bytes) -> bool:
    """A map proof checked from its byte layout: u16 count, a bitmap of empty siblings (least
    significant bit first), the other siblings, then 0x00 or 0x01 || key || value."""
    count = int.from_bytes(proof[:2], "big")
    bitmap, at = proof[2 : 2 + (count + 7) // 8], 2 + (count + 7) // 8
    siblings = []
    for i in range(count):
        if bitmap[i // 8] >> (i % 8) & 1:
            siblings.append(bytes(32))
        else:
            siblings.append(proof[at : at + 32])
            at += 32
    key = sha(structure_id.encode())
    tail = proof[at:]
    if tail == b"\x00":
        acc, found = bytes(32), None
    else:
        assert tail[:1] == b"\x01" and len(tail) == 65
        other, other_value = tail[1:33], tail[33:]
        if any(bit(other, d) != bit(key, d) for d in range(count)):
            return False
        acc, found = sha(b"\x00" + other + other_value), (other_value if other == key else None)
    for depth in range(count - 1, -1, -1):
        s = siblings[depth]
        acc = sha(b"\x01" + s + acc) if bit(key, depth) else sha(b"\x01" + acc + s)
    return acc == root and found == value


# --- snapshots as files ---------------------------------------------------------------------------


@dataclass
class SnapshotFile:
    header: dict[str, Any]
    lines: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> SnapshotFile:
        first, *rest = path.read_bytes().splitlines()
        return cls(json.loads(first), [json.loads(line) for line in rest])

    def write(self, path: Path) -> Path:
        text = "".join(json.dumps(obj) + "\n" for obj in [self.header, *self.lines])
        path.write_text(text)
        return path

    def line_of(self, structure_id: str) -> int:
        """The file's line number (1 is the header) of a structure's record."""
        return next(i for i, line in enumerate(self.lines, start=2) if line["id"] == structure_id)


def check_by_hand(path: Path, registry_pub: str) -> SnapshotFile:
    """Every byte of a snapshot checked from the specifications; returns it parsed."""
    snapshot = SnapshotFile.read(path)
    key = parse_verifier_key(registry_pub)
    head = open_checkpoint(snapshot.header["head"].encode(), key)
    assert head.cosigned_at is not None
    assert snapshot.header["format"] == "permitgate-snapshot/v1"
    assert snapshot.header["records"] == len(snapshot.lines)
    ids = [line["id"] for line in snapshot.lines]
    assert ids == sorted(set(ids))
    for line in snapshot.lines:
        envelope = line["envelope"].encode()
        record = open_envelope(envelope, key)
        assert record["structure"]["id"] == line["id"] and record["tree_size"] <= head.size
        proof = base64.b64decode(line["proof"], validate=True)
        assert walk_proof(head.map_root, line["id"], sha(envelope), proof), line["id"]
    return snapshot


def cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# --- writing ------------------------------------------------------------------------------------


def demo(reg: Registry, structures: int = 3 * len(SCENARIOS)) -> None:
    reg.load(list(demo_lines(structures)))


def test_snapshot_holds_every_record_with_its_proof(reg: Registry, tmp_path: Path) -> None:
    demo(reg)
    out = tmp_path / "all.jsonl"
    result = reg.cli("snapshot", str(out), keys=True)
    assert result.exit_code == 0, result.output
    snapshot = check_by_hand(out, reg.public_key_text)
    assert snapshot.header["district"] is None
    stored = dict(reg.sql("SELECT structure_id, envelope FROM status_record"))
    assert {line["id"]: line["envelope"].encode() for line in snapshot.lines} == {
        str(k): bytes(v) for k, v in stored.items()
    }
    head = open_checkpoint(
        snapshot.header["head"].encode(), parse_verifier_key(reg.public_key_text)
    )
    assert reference_root({k: sha(bytes(v)) for k, v in stored.items()}) == head.map_root
    assert snapshot.header["head"].encode() == reg.checkpoint()  # the newest cosigned head
    assert result.stdout == (
        f"wrote {out}: registry version {head.size} (head {head.map_serial}, cosigned "
        f"{datetime.fromtimestamp(head.cosigned_at or 0, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}); "
        f"{len(stored)} of {len(stored)} structures (every district)\n"
    )


def test_district_snapshot_holds_the_district_only(reg: Registry, tmp_path: Path) -> None:
    demo(reg)
    out = tmp_path / "district.jsonl"
    result = reg.cli("snapshot", "--district", DISTRICT, str(out), keys=True)
    assert result.exit_code == 0, result.output
    snapshot = check_by_hand(out, reg.public_key_text)
    assert snapshot.header["district"] == DISTRICT
    key = parse_verifier_key(reg.public_key_text)
    expected = sorted(
        str(sid)
        for sid, envelope in reg.sql("SELECT structure_id, envelope FROM status_record")
        if open_envelope(bytes(envelope), key)["structure"]["district"] == DISTRICT
    )
    assert [line["id"] for line in snapshot.lines] == expected and expected


def _refused(reg: Registry, out: Path, *args: str) -> Result:
    result = reg.cli("snapshot", *args, str(out), keys=True)
    assert result.exit_code == 2, result.output
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    return result


def test_a_tampered_record_gets_no_snapshot(reg: Registry, tmp_path: Path) -> None:
    demo(reg)
    victim = structure_id(3)
    _, _, envelope = reg.status_row(victim)
    obj = json.loads(envelope)
    payload = json.loads(base64.b64decode(obj["payload"]))
    payload["permits"] = []
    obj["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    reg.sql(
        "UPDATE status_record SET envelope = :e WHERE structure_id = :s",
        e=json.dumps(obj).encode(),
        s=victim,
    )
    result = _refused(reg, tmp_path / "out.jsonl")
    assert result.stderr.startswith(
        "permitgate: the status records in the database do not make the status map of the "
        "newest head (head "
    )
    # Named by its signature, or (the registry's state at hand) as not the record it signed.
    assert any(
        f"status_record row of {victim!r}{why}" in result.stderr
        for why in (": envelope: no valid signature", " is not the record the registry signed")
    ), result.stderr
    assert result.stderr.endswith("run 'permitgate registry verify'; no snapshot written\n")


def test_a_missing_record_or_head_gets_no_snapshot(reg: Registry, tmp_path: Path) -> None:
    demo(reg)
    reg.sql("DELETE FROM status_record WHERE structure_id = :s", s=structure_id(4))
    count = 3 * len(SCENARIOS)
    result = _refused(reg, tmp_path / "out.jsonl")
    assert f": {count} records; the database: {count - 1})" in result.stderr
    serial = reg.scalar("SELECT max(serial) FROM head")
    reg.sql("UPDATE head SET note = :n WHERE serial = :s", n=b"forged\n\n", s=serial)
    result = _refused(reg, tmp_path / "out.jsonl")
    assert result.stderr.startswith(
        f"permitgate: head row {serial} does not verify with the registry key ("
    )


def test_the_registrys_state_names_a_record_swapped_for_an_older_one(
    reg: Registry, tmp_path: Path
) -> None:
    """An older genuine record is signed and verifies on its own; only what the registry kept
    of what it signed names it."""
    demo(reg)
    victim = structure_id(0)
    _, _, old = reg.status_row(victim)
    assert reg.cli("refresh", "--all", keys=True).exit_code == 0  # every record signed anew
    state = TrustedState(tmp_path / "registry-state", "registry")
    state.save(
        reg.checkpoint(),
        changed=[
            (str(sid), sha(bytes(env)), None)
            for sid, env in reg.sql("SELECT structure_id, envelope FROM status_record")
        ],
        replace=True,
    )
    state.close()
    reg.sql("UPDATE status_record SET envelope = :e WHERE structure_id = :s", e=old, s=victim)
    without = _refused(reg, tmp_path / "out.jsonl", "--state", str(tmp_path / "nowhere"))
    assert f"row of {victim!r}" not in without.stderr  # genuine, so nothing to name it by
    named = _refused(reg, tmp_path / "out.jsonl", "--state", str(tmp_path / "registry-state"))
    assert f"status_record row of {victim!r} is not the record the registry signed" in named.stderr


# --- answering: the same as the gate --------------------------------------------------------------


@dataclass
class Served:
    registry: GateRegistry
    gate: RunningGate
    full: Path
    district: Path
    directory: Path

    @property
    def keys(self) -> Path:
        return self.registry.keys_dir


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("snapshot")
    registry = GateRegistry(f"sqlite:///{directory / 'registry.db'}", directory / "keys")
    try:
        registry.load(demo_lines(STRUCTURES))
        full, district = directory / "full.jsonl", directory / "district.jsonl"
        for args in ([str(full)], ["--district", DISTRICT, str(district)]):
            result = cli(
                "registry", "snapshot", *args, "--db", registry.url, "--keys",
                str(registry.keys_dir),
            )  # fmt: skip
            assert result.exit_code == 0, result.output
        # The head was cosigned at the import; the offline check allows it an hour, and so does
        # this gate, so that both answer from the same data however long the module runs.
        with running_gate(registry.url, registry.keys_dir, max_staleness=3600) as gate:
            yield Served(registry, gate, full, district, directory)
    finally:
        registry.close()


UNTIL = (datetime.now(UTC) + timedelta(days=90)).replace(microsecond=0)
_UTILITIES = ("water", "power", "gas", "heat")
_OFFICES = ("market_regulation", "culture", "health", "tax", "civil_defense", "environment", "fire")


def checks(sid: str, use: str) -> Iterator[tuple[Check, pb.ConnectionCheck | Any]]:
    """Every kind of check on ``sid``, as the client's ``Check`` and as the wire message."""
    for utility in _UTILITIES:
        number = pb.Utility.Value(f"UTILITY_{utility.upper()}")
        yield Check.connection(sid, utility=utility), connection(sid, number)
        yield (
            Check.connection(sid, utility=utility, kind="temporary", requested_until=UNTIL),
            connection(sid, number, pb.CONNECTION_KIND_TEMPORARY, requested_until=UNTIL),
        )
    for kind in ("initial", "transfer", "mortgage"):
        yield (
            Check.registration(sid, kind=kind),
            registration(sid, pb.RegistrationKind.Value(f"REGISTRATION_KIND_{kind.upper()}")),
        )
    for office in _OFFICES:
        for declared in (use, "restaurant"):
            yield (
                Check.premises(sid, office=office, declared_use=declared, application_id="A-1"),
                premises(
                    sid,
                    pb.Office.Value(f"OFFICE_{office.upper()}"),
                    declared,
                    application_id="A-1",
                ),
            )


def _uses() -> dict[str, str]:
    return {
        str(r["id"]): str(r.get("declared_use", "residential"))
        for r in demo_lines(STRUCTURES)
        if r["type"] == "structure"
    }


def _offline_reasons(decision: Any) -> list[tuple[str, str | None, str | None, int]]:
    out = [
        (r.code.value, None if r.permit_kind is None else r.permit_kind.value, r.case_id, r.article)
        for r in decision.reasons
    ]
    return sorted(out, key=lambda w: (w[0], w[1] or "", w[2] or "", w[3]))


def test_answers_are_the_gates_for_every_kind_of_check(served: Served) -> None:
    key = served.registry.signer.verifier
    now = datetime.now(UTC)
    snapshot = Snapshot.open(served.full, key, now=now, max_age=timedelta(hours=1))
    uses = _uses()
    compared: dict[str, int] = {}
    with Wire(served.gate.target) as wire:
        for sid in [*sorted(uses), *ABSENT]:
            for check, message in checks(sid, uses.get(sid, "residential")):
                gate = wire.ask(message)
                offline = answer_offline(snapshot, check, datetime.now(UTC))
                assert offline.decision.verdict.name == verdict(gate), (sid, check)
                assert _offline_reasons(offline.decision) == reasons(gate), (sid, check)
                assert [r.message for r in offline.decision.reasons] == [
                    r.message for r in gate.reasons
                ], (sid, check)
                valid_until = (
                    gate.valid_until.ToDatetime(tzinfo=UTC)
                    if gate.HasField("valid_until")
                    else None
                )
                assert offline.decision.valid_until == valid_until
                assert offline.registry_version == gate.registry_version
                compared[verdict(gate)] = compared.get(verdict(gate), 0) + 1
    # Every verdict was reached, on both sides.
    assert set(compared) == {"ALLOW", "ALLOW_TEMPORARY", "NOTIFY", "REVIEW", "DENY"}, compared


def test_found_and_absent_are_proven(served: Served) -> None:
    key = served.registry.signer.verifier
    snapshot = Snapshot.open(served.full, key, now=datetime.now(UTC), max_age=timedelta(hours=1))
    found = snapshot.find(structure_id(7))
    assert isinstance(found, Found)
    assert found.digest == sha(served.registry.status_envelope(structure_id(7)))
    head = open_checkpoint(served.registry.checkpoint_note(), parse_verifier_key(key.text))
    for sid in ABSENT:
        absent = snapshot.find(sid)
        assert isinstance(absent, Absent)
        assert walk_proof(head.map_root, sid, None, absent.proof.to_bytes())
    district = Snapshot.open(
        served.district, key, now=datetime.now(UTC), max_age=timedelta(hours=1)
    )
    outside = next(s for s in _uses() if not s.startswith(DISTRICT))
    assert isinstance(district.find(outside), NotInSnapshot)
    assert isinstance(district.find(ABSENT[0]), NotInSnapshot)
    inside = next(s for s in _uses() if s.startswith(DISTRICT))
    assert isinstance(district.find(inside), Found)


def test_a_district_snapshot_answers_review_outside_it(served: Served) -> None:
    outside = next(s for s in _uses() if not s.startswith(DISTRICT))
    result = _check(served, served.district, "connection", outside, "--utility", "water")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"REVIEW  {outside}  (offline: registry version ")
    assert "  - RECORD_UNVERIFIED [Art. 23]: not in this snapshot, which holds district" in (
        result.stdout
    )
    assert (
        _check(served, served.district, "connection", ABSENT[0], "--utility", "water",
               "--exit-code").exit_code == 20
    )  # fmt: skip


def _check(served: Served, snapshot: Path, kind: str, sid: str, *args: str) -> Result:
    return cli("check", kind, sid, *args, "--snapshot", str(snapshot), "--keys", str(served.keys))


def test_check_snapshot_on_the_command_line(served: Served) -> None:
    revoked = structure_id(1)
    result = _check(served, served.full, "connection", revoked, "--utility", "power")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"DENY  {revoked}  (offline: registry version ")
    assert lines[1].startswith("  - PERMIT_REVOKED [Art. 23] construction_planning: ")
    absent = _check(served, served.full, "registration", ABSENT[0], "--kind", "initial", "--json")
    shown = json.loads(absent.stdout)
    assert shown["verdict"] == "DENY"
    assert [r["code"] for r in shown["reasons"]] == ["NOT_IN_REGISTRY"]
    assert shown["snapshot"]["record_sha256"] is None
    notify = _check(
        served, served.full, "premises", structure_id(10), "--office", "tax", "--use",
        "restaurant", "--application", "T-1", "--exit-code",
    )  # fmt: skip
    assert notify.exit_code == 10
    assert "offline: the working group is NOT notified" in notify.stdout
    invalid = _check(served, served.full, "premises", structure_id(10), "--office", "tax",
                     "--use", "restaurant")  # fmt: skip
    assert invalid.exit_code == 2
    assert "invalid check: application_id: required for a notifying office" in invalid.stderr
    receipt = _check(served, served.full, "connection", revoked, "--utility", "power",
                     "--receipt", str(served.directory / "r.json"))  # fmt: skip
    assert receipt.exit_code == 2 and "a snapshot signs no receipts" in receipt.stderr
    no_key = cli("check", "connection", revoked, "--utility", "power", "--snapshot",
                 str(served.full), "--keys", str(served.directory / "none"))  # fmt: skip
    assert no_key.exit_code == 2 and "registry.pub: missing" in no_key.stderr


def test_an_old_snapshot_is_refused(served: Served) -> None:
    result = _check(
        served, served.full, "connection", structure_id(0), "--utility", "water",
        "--max-age", "0s",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(f"permitgate: snapshot {served.full}: too old to rely on: ")
    assert "older than 0 s" in result.stderr


# --- forged and damaged snapshots ----------------------------------------------------------------


def _refusal(served: Served, path: Path, sid: str, error: type[VerificationError]) -> str:
    key = served.registry.signer.verifier
    with pytest.raises(SnapshotUnusable) as raised:
        snapshot = Snapshot.open(path, key, now=datetime.now(UTC), max_age=timedelta(hours=1))
        snapshot.find(sid)
    assert type(raised.value.error) is error, raised.value
    return str(raised.value)


def _edit_envelope(line: dict[str, Any], change: Any) -> None:
    obj = json.loads(line["envelope"])
    payload = json.loads(base64.b64decode(obj["payload"]))
    change(payload)
    obj["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    line["envelope"] = json.dumps(obj)


def test_forged_lines_are_refused_naming_the_line(served: Served) -> None:
    original = SnapshotFile.read(served.full)
    sid = structure_id(1)
    n = original.line_of(sid)
    other = structure_id(0)
    path = served.directory / "forged.jsonl"

    def forged(change: Any) -> Path:
        copy = SnapshotFile(dict(original.header), [dict(line) for line in original.lines])
        change(copy)
        return copy.write(path)

    def revoke_nothing(s: SnapshotFile) -> None:
        _edit_envelope(s.lines[n - 2], lambda p: p["permits"].clear())

    cases: list[tuple[Any, type[VerificationError], str]] = [
        (
            revoke_nothing,
            MapMismatchError,
            f"line {n}: status record of {sid!r}: not the current one",
        ),
        (
            lambda s: s.lines[n - 2].update(envelope=s.lines[s.line_of(other) - 2]["envelope"]),
            MapMismatchError,
            f"line {n}: ",
        ),
        (
            lambda s: s.lines[n - 2].update(proof=_flip(s.lines[n - 2]["proof"], 5)),
            MapMismatchError,
            f"line {n}: map proof for {sid!r}: does not lead to the signed root",
        ),
        (
            lambda s: s.lines[n - 2].update(proof=s.lines[n - 2]["proof"][:-8]),
            MalformedError,
            f"line {n}: map proof",
        ),
        (
            lambda s: s.lines[n - 2].update(proof="not*base64"),
            MalformedError,
            f"line {n}: proof: not base64",
        ),
        (lambda s: s.lines[n - 2].pop("envelope"), MalformedError, f"line {n}: envelope: missing"),
        (
            lambda s: s.lines.insert(0, s.lines[0]),  # the first record twice
            MalformedError,
            f"line 3: id {original.lines[0]['id']!r} is not after {original.lines[0]['id']!r}",
        ),
        (
            lambda s: s.lines.insert(0, s.lines.pop(1)),  # two records out of order
            MalformedError,
            f"line 3: id {original.lines[0]['id']!r} is not after {original.lines[1]['id']!r}",
        ),
        (lambda s: s.lines.insert(3, "text"), MalformedError, "line 5: not a JSON object"),
        (
            lambda s: s.header.update(head=s.header["head"].replace("\n— ", "\n— x", 1)),
            BadSignatureError,
            "line 1: note: not signed by any trusted key",
        ),
        (lambda s: s.header.update(head=42), MalformedError, "line 1: head: missing"),
        (lambda s: s.header.update(format="other/v9"), MalformedError, "line 1: not a "),
    ]
    for change, error, says in cases:
        message = _refusal(served, forged(change), sid, error)
        assert says in message, message
        assert message.startswith(f"snapshot {path} ")


def _flip(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_a_head_signed_by_another_key_is_refused(served: Served) -> None:
    original = SnapshotFile.read(served.full)
    impostor = Signer(served.registry.signer.name, Ed25519PrivateKey.generate())
    body = original.header["head"].split("\n\n")[0] + "\n"
    note = impostor.sign_note(body.encode())
    header = {**original.header, "head": note.decode()}
    path = SnapshotFile(header, original.lines).write(served.directory / "impostor.jsonl")
    message = _refusal(served, path, structure_id(1), BadSignatureError)
    assert message.startswith(f"snapshot {path} line 1: note: not signed by any trusted key")
    # The genuine head, its cosignature dropped: its age cannot be shown.
    unsigned = original.header["head"].rsplit("— ", 1)[0]
    path = SnapshotFile({**original.header, "head": unsigned}, original.lines).write(path)
    message = _refusal(served, path, structure_id(1), ExpiredError)
    assert "carries no cosignature" in message


def test_a_line_taken_out_never_passes_for_an_absence(served: Served) -> None:
    """Without one line, a full snapshot proves neither that structure's absence nor any
    other's; the structures still in it answer from their own proofs."""
    original = SnapshotFile.read(served.full)
    gone = structure_id(2)
    lines = [line for line in original.lines if line["id"] != gone]
    path = SnapshotFile(original.header, lines).write(served.directory / "short.jsonl")
    for sid in (gone, ABSENT[0]):
        message = _refusal(served, path, sid, MalformedError)
        assert "records do not make the head's status map" in message
    key = served.registry.signer.verifier
    snapshot = Snapshot.open(path, key, now=datetime.now(UTC), max_age=timedelta(hours=1))
    assert isinstance(snapshot.find(structure_id(3)), Found)
    # A district snapshot that claims to hold every district proves no absence either.
    district = SnapshotFile.read(served.district)
    path = SnapshotFile({**district.header, "district": None}, district.lines).write(path)
    message = _refusal(served, path, ABSENT[0], MalformedError)
    assert "records do not make the head's status map" in message


def test_old_records_under_a_newer_head_are_refused(served: Served, tmp_path: Path) -> None:
    """A record from an older snapshot, with its old proof, under the newer head."""
    before = SnapshotFile.read(served.full)
    shutil.copy(served.registry.db.engine.url.database or "", tmp_path / "copy.db")
    for suffix in ("-wal", "-shm"):
        source = Path((served.registry.db.engine.url.database or "") + suffix)
        if source.exists():
            shutil.copy(source, tmp_path / f"copy.db{suffix}")
    keys = tmp_path / "keys"  # the copy's own keys folder, so its own registry state beside it
    shutil.copytree(served.keys, keys)
    copy = GateRegistry(f"sqlite:///{tmp_path / 'copy.db'}", keys)
    try:
        victim = structure_id(4)
        copy.load([{**r, "declared_use": "office"} for r in demo_lines(5) if r.get("id") == victim])
        newer = tmp_path / "newer.jsonl"
        result = cli("registry", "snapshot", str(newer), "--db", copy.url, "--keys", str(keys))
        assert result.exit_code == 0, result.output
    finally:
        copy.close()
    after = SnapshotFile.read(newer)
    n = after.line_of(victim)
    after.lines[n - 2] = before.lines[before.line_of(victim) - 2]
    path = after.write(tmp_path / "mixed.jsonl")
    message = _refusal(served, path, victim, MapMismatchError)
    assert f"line {n}: map proof for {victim!r}: does not lead to the signed root" in message


def test_cosigned_in_the_future_is_refused(served: Served, tmp_path: Path) -> None:
    """A head the registry cosigned with a time ahead of the verifier's clock proves no age."""
    db = Database(served.registry.url, create=False)
    try:
        with db.snapshot() as session:
            row = session.scalars(select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).one()
        cosign_head(served.registry.signer, row, datetime.now(UTC) + timedelta(hours=1))
        note = row.cosigned_note()
    finally:
        db.dispose()
    original = SnapshotFile.read(served.full)
    path = SnapshotFile({**original.header, "head": note.decode()}, original.lines).write(
        tmp_path / "future.jsonl"
    )
    message = _refusal(served, path, structure_id(1), FromTheFutureError)
    assert "check the clocks" in message


def test_snapshot_into_a_missing_folder(reg: Registry, tmp_path: Path) -> None:
    result = reg.cli("snapshot", str(tmp_path / "nowhere" / "out.jsonl"), keys=True)
    assert result.exit_code == 2
    assert result.stderr == (
        f"permitgate: cannot write {tmp_path / 'nowhere' / 'out.jsonl'}: the folder "
        f"{tmp_path / 'nowhere'} does not exist\n"
    )


@pytest.mark.parametrize("value", ["2x", "-5m", "nan", "1e400d", ""])
def test_max_age_must_be_a_duration(served: Served, value: str) -> None:
    result = _check(served, served.full, "connection", structure_id(0), "--utility", "water",
                    "--max-age", value)  # fmt: skip
    assert result.exit_code == 2
    assert "Invalid value for '--max-age'" in result.stderr


@pytest.mark.parametrize(("value", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("2H", 7200)])
def test_max_age_units(value: str, seconds: int) -> None:
    assert Duration().convert(value, None, None) == timedelta(seconds=seconds)
