"""Helpers for the registry tests: the CLI run in-process, raw SQL, and independent verifiers.

Nothing here uses ``registry.trust`` or ``registry.merkle``: signed notes, DSSE envelopes,
verifier keys and Merkle roots are checked with ``hashlib``, ``base64`` and ``cryptography``
directly, from the formats' specifications (C2SP signed-note and tlog-checkpoint, DSSE v1,
RFC 6962 / RFC 9162), so a bug in the registry's own verifier cannot hide a bug in its signer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from permitgate.cli import main

ORIGIN = "permitgate.example/registry"
STATUS_TYPE = "application/vnd.permitgate.status+json"
EMPTY_ROOT = hashlib.sha256(b"").digest()

# The three example lines of issue 2, verbatim.
S1 = "110228-0042-0007"
EXAMPLE_LINES = [
    '{"type":"structure","id":"110228-0042-0007","area":"urban","district":"110228",'
    '"address":"...","declared_use":"residential"}',
    '{"type":"permit","id":"P-2024-0001","structure":"110228-0042-0007",'
    '"kind":"construction_planning","status":"valid","issued":"2024-03-01T00:00:00Z",'
    '"expires":"2026-03-01T00:00:00Z","use":"residential"}',
    '{"type":"case","id":"C-2025-0042","structure":"110228-0042-0007",'
    '"kind":"deviates_from_permit","stage":"stop_order","source":"patrol",'
    '"opened":"2025-01-02T00:00:00Z"}',
]

# The schema's tables (Alembic's own included).
TABLES = {
    "alembic_version",
    "registry_meta",
    "structure",
    "permit",
    "violation_case",
    "event",
    "head",
    "status_record",
}


def key_name(verifier_key: str) -> str:
    """``name+keyid`` of a verifier key line (``name+keyid+key``), as messages name a key."""
    name, keyid, _ = verifier_key.strip().split("+", 2)
    return f"{name}+{keyid}"


def jsonl(records: Sequence[Mapping[str, Any] | str]) -> str:
    """JSON Lines text: dicts are dumped compactly, strings are taken as lines verbatim."""
    out = []
    for r in records:
        out.append(r if isinstance(r, str) else json.dumps(r, separators=(",", ":")))
    return "".join(line + "\n" for line in out)


def structure(sid: str, area: str = "urban", **extra: Any) -> dict[str, Any]:
    return {"type": "structure", "id": sid, "area": area, "district": "110228", **extra}


def permit(
    pid: str,
    sid: str,
    kind: str = "land_certificate",
    status: str = "valid",
    issued: str = "2024-03-01T00:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": "permit",
        "id": pid,
        "structure": sid,
        "kind": kind,
        "status": status,
        "issued": issued,
        **extra,
    }


def case(
    cid: str,
    sid: str,
    stage: str = "reported",
    kind: str = "no_planning_permit",
    source: str = "patrol",
    opened: str = "2025-01-02T00:00:00Z",
) -> dict[str, Any]:
    return {
        "type": "case",
        "id": cid,
        "structure": sid,
        "kind": kind,
        "stage": stage,
        "source": source,
        "opened": opened,
    }


def invoke(args: Sequence[str], *, input: bytes | str | None = None, **env: str | None) -> Result:
    """Run ``permitgate ARGS`` in-process; a crash (not a clean exit) fails the test."""
    runner = CliRunner()
    result = runner.invoke(main, list(args), input=input, env=dict(env))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def another_registry(scratch: Path, name: str = "other") -> Path:
    """Make another registry in ``scratch`` (SQLite file ``NAME.db``, keys ``NAME-keys``, state
    ``NAME-state``), with a key of the same name as the test registry's; returns its keys."""
    keys, state = scratch / f"{name}-keys", scratch / f"{name}-state"
    db = f"sqlite:///{scratch / f'{name}.db'}"
    made = invoke(["registry", "init", "--db", db, "--keys", str(keys), "--state", str(state)])
    assert made.exit_code == 0, made.output
    return keys


def sa_url(url: str) -> str:
    """The SQLAlchemy URL of a test database (PostgreSQL through psycopg 3)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def reset_database(url: str) -> None:
    """Make a test database empty again (no schema at all)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@dataclass(frozen=True)
class Snapshot:
    """Everything an import could change, to prove that a failed one changed nothing."""

    export: bytes
    checkpoints: list[tuple[int, bytes]]
    events: list[tuple[int, str, bytes]]
    statuses: list[tuple[str, int, bytes, bytes]]
    tables: dict[str, int]


class Registry:
    """One test registry: a database URL, a keys directory, and a scratch directory; its state
    directory is ``state`` when given, else the default beside the keys."""

    def __init__(self, url: str, keys: Path, scratch: Path, state: Path | None = None) -> None:
        self.url = url
        self.keys = keys
        self.scratch = scratch
        self.state = state
        self._engine: sa.Engine | None = None
        self._files = 0

    @property
    def state_dir(self) -> Path:
        """Where the registry keeps its own state (``--state``, else beside the keys)."""
        return self.keys.parent / "registry-state" if self.state is None else self.state

    # --- the command line -------------------------------------------------------------------

    def cli(self, *args: str, input: bytes | str | None = None, keys: bool = False) -> Result:
        """``permitgate registry ARGS --db URL [--keys DIR]``; the state directory goes in
        through PERMITGATE_REGISTRY_STATE (unset unless ``state`` was given), so that commands
        without ``--state`` take it too."""
        extra = ["--db", self.url] + (["--keys", str(self.keys)] if keys else [])
        state = None if self.state is None else str(self.state)
        return invoke(["registry", *args, *extra], input=input, PERMITGATE_REGISTRY_STATE=state)

    def init(self) -> Result:
        result = self.cli("init", keys=True)
        assert result.exit_code == 0, result.output
        return result

    def write(self, text: str | bytes, name: str | None = None) -> Path:
        self._files += 1
        path = self.scratch / (name or f"import-{self._files}.jsonl")
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def import_file(self, path: Path) -> Result:
        return self.cli("import", str(path), keys=True)

    def import_text(self, text: str | bytes) -> Result:
        return self.import_file(self.write(text))

    def load(self, records: Sequence[Mapping[str, Any] | str]) -> Result:
        """Import records that must be valid."""
        result = self.import_text(jsonl(records))
        assert result.exit_code == 0, result.output
        return result

    def export(self) -> bytes:
        result = self.cli("export")
        assert result.exit_code == 0, result.output
        return result.stdout_bytes

    def checkpoint(self) -> bytes:
        result = self.cli("checkpoint")
        assert result.exit_code == 0, result.output
        return result.stdout_bytes

    def status(self, structure_id: str) -> Result:
        return self.cli("status", structure_id)

    def status_envelope(self, structure_id: str) -> bytes:
        """The signed status record as ``status --json`` gives it, re-encoded as signed
        (canonical JSON: sorted keys, no spaces)."""
        result = self.cli("status", structure_id, "--json", keys=True)
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert shown["signature"]["status"] == "verified", shown["signature"]
        return json.dumps(shown["envelope"], sort_keys=True, separators=(",", ":")).encode()

    def verify(self) -> Result:
        return self.cli("verify", keys=True)

    @property
    def public_key_text(self) -> str:
        return (self.keys / "registry.pub").read_text()

    # --- raw SQL ------------------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(sa_url(self.url))
        return self._engine

    def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; rows as tuples (empty for writes)."""
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []

    def scalar(self, statement: str, **params: Any) -> Any:
        rows = self.sql(statement, **params)
        assert len(rows) == 1 and len(rows[0]) == 1, rows
        return rows[0][0]

    def event_bodies(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.sql("SELECT body FROM event ORDER BY seq")]

    def event_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM event"))

    def status_row(self, structure_id: str) -> tuple[int, bytes, bytes]:
        rows = self.sql(
            "SELECT tree_size, digest, envelope FROM status_record WHERE structure_id = :sid",
            sid=structure_id,
        )
        assert len(rows) == 1, rows
        tree_size, digest, envelope = rows[0]
        return int(tree_size), bytes(digest), bytes(envelope)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            export=self.export(),
            checkpoints=[
                (int(s), bytes(n))
                for s, n in self.sql("SELECT size, note FROM head ORDER BY serial")
            ],
            events=[
                (int(s), str(i), bytes(b))
                for s, i, b in self.sql("SELECT seq, structure_id, body FROM event ORDER BY seq")
            ],
            statuses=[
                (str(i), int(t), bytes(d), bytes(e))
                for i, t, d, e in self.sql(
                    "SELECT structure_id, tree_size, digest, envelope FROM status_record "
                    "ORDER BY structure_id"
                )
            ],
            tables={
                t: int(self.scalar(f"SELECT count(*) FROM {t}"))
                for t in ("structure", "permit", "violation_case", "registry_meta")
            },
        )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


# --- independent verification ---------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    name: str
    key_id: bytes
    raw: bytes

    @property
    def key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)


def parse_verifier_key(text: str) -> PublicKey:
    """C2SP signed-note verifier key ``name+hex(keyid)+base64(0x01 || key)``, checked."""
    name, hex_id, blob = text.strip().split("+", 2)
    raw = base64.b64decode(blob, validate=True)
    assert len(raw) == 33 and raw[0] == 0x01, "not an Ed25519 verifier key"
    key_id = bytes.fromhex(hex_id)
    assert len(key_id) == 4
    assert key_id == hashlib.sha256(name.encode() + b"\n" + raw[:1] + raw[1:]).digest()[:4]
    return PublicKey(name, key_id, raw[1:])


@dataclass(frozen=True)
class ParsedCheckpoint:
    origin: str
    size: int
    root: bytes
    body: bytes
    map_serial: int
    map_count: int
    map_root: bytes
    cosigned_at: int | None  # POSIX seconds of the timed cosignature, when the note has one


def open_checkpoint(note: bytes, key: PublicKey) -> ParsedCheckpoint:
    """Parse a C2SP signed note by hand: verify the registry's signature (type 0x01), and the
    timed cosignature by the same key (C2SP tlog-cosignature, type 0x04) when there is one."""
    text = note.decode()
    body, sep, signatures = text.partition("\n\n")
    assert sep, "a signed note has a blank line before its signatures"
    body += "\n"
    sig_lines = signatures.removesuffix("\n").split("\n")
    assert 1 <= len(sig_lines) <= 2, sig_lines
    dash, name, blob = sig_lines[0].split(" ")
    assert dash == "\u2014" and name == key.name
    raw = base64.b64decode(blob, validate=True)
    assert raw[:4] == key.key_id
    key.key.verify(raw[4:], body.encode())  # raises InvalidSignature
    cosigned_at = None
    if len(sig_lines) == 2:
        dash, name, blob = sig_lines[1].split(" ")
        assert dash == "\u2014" and name == key.name
        raw = base64.b64decode(blob, validate=True)
        cosigner_id = hashlib.sha256(name.encode() + b"\n\x04" + key.raw)
        assert raw[:4] == cosigner_id.digest()[:4] and len(raw) == 76
        cosigned_at = int.from_bytes(raw[4:12], "big")
        message = f"cosignature/v1\ntime {cosigned_at}\n{body}".encode()
        key.key.verify(raw[12:], message)
    lines = body.split("\n")
    assert lines[-1] == "" and len(lines) == 5, lines
    origin, size, root, map_line = lines[:4]
    assert size == str(int(size))
    word, serial, count, map_root = map_line.split(" ")
    assert word == "map" and serial == str(int(serial)) and count == str(int(count))
    return ParsedCheckpoint(
        origin,
        int(size),
        base64.b64decode(root, validate=True),
        body.encode(),
        int(serial),
        int(count),
        base64.b64decode(map_root, validate=True),
        cosigned_at,
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding, written out from the DSSE specification."""
    t = payload_type.encode()
    return b" ".join([b"DSSEv1", str(len(t)).encode(), t, str(len(payload)).encode(), payload])


def canonical(value: Any) -> bytes:
    """RFC 8785 for the registry's payloads (ASCII keys, strings and small integers only)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def open_envelope(envelope: bytes, key: PublicKey) -> dict[str, Any]:
    """Verify a status record's DSSE envelope by hand; return its decoded, canonical payload."""
    obj = json.loads(envelope)
    assert set(obj) == {"payload", "payloadType", "signatures"}
    assert obj["payloadType"] == STATUS_TYPE
    payload = base64.b64decode(obj["payload"], validate=True)
    [signature] = obj["signatures"]
    assert signature["keyid"] == f"{key.name}+{key.key_id.hex()}"
    key.key.verify(base64.b64decode(signature["sig"]), pae(STATUS_TYPE, payload))
    decoded: dict[str, Any] = json.loads(payload)
    assert canonical(decoded) == payload, "the payload is not in canonical form"
    return decoded


def rfc6962_root(entries: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1 over the raw entries, straight from the definition."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(entries[:k]) + rfc6962_root(entries[k:])).digest()


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def export_records(export: bytes) -> Iterator[dict[str, Any]]:
    for line in export.splitlines():
        yield json.loads(line)
