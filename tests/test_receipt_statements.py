"""Receipts from real gates, verified with the registry's public key alone.

A gate the registry vouches for puts the statement into every receipt, which then verifies with
``registry.pub`` and nothing else, and says how old the registry data was at the decision. A
rogue gate (its own key, which the registry never vouched for, the genuine ``registry.pub``,
and an old genuine copy of the database) is caught: its receipts do not verify with the
registry key, whatever statement it copies in, and the data age it shows is the copy's. Each
receipt is also opened by hand (DSSE, PAE, Ed25519 with ``cryptography``).
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    RECEIPT_TYPE,
    GateRegistry,
    RunningGate,
    Wire,
    connection,
    dsse_pae,
    parse_key,
    running_gate,
)
from permitgate_client import (
    BadSignatureError,
    ExpiredError,
    KeySet,
    ReceiptError,
    VerifierKey,
    verify_receipt,
)
from permitgate_client.formats import GateKeyStatement, format_time, parse_time
from registry_support import open_checkpoint, parse_rfc3339, parse_verifier_key
from sqlalchemy import select

from permitgate.cli import main
from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.heads import cosign_head
from registry.signing import Signer, ensure_signer
from registry.storage import Database, HeadRow
from registry.vouch import retire_gate_key, vouch_gate_key
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE

REVOKED = structure_id(1)
OLD = timedelta(hours=2)


def gate_keys(directory: Path, registry: GateRegistry) -> tuple[Path, Signer]:
    """A gate's keys folder: the registry's public key only, and the gate's own key pair."""
    directory.mkdir(parents=True)
    shutil.copy(registry.keys_dir / "registry.pub", directory / "registry.pub")
    signer, _ = ensure_signer(directory, GATE_ROLE, DEFAULT_GATE_NAME)
    return directory, signer


@contextmanager
def start(registry_url: str, keys: Path, **options: Any) -> Iterator[RunningGate]:
    with running_gate(registry_url, keys, **options) as gate:
        assert gate.app.gate.receipts.vouch is not None
        assert gate.app.gate.receipts.vouch.loaded.wait(10)
        yield gate


def old_copy(registry: GateRegistry, path: Path) -> str:
    """A copy of the registry database whose newest head the registry cosigned ``OLD`` ago:
    genuine, and old."""
    assert registry.db.engine.url.database is not None
    source, target = sqlite3.connect(registry.db.engine.url.database), sqlite3.connect(path)
    with target:
        source.backup(target)
    source.close()
    target.close()
    url = f"sqlite:///{path}"
    db = Database(url, create=False)
    with db.session() as session:
        head = session.scalars(select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).one()
        cosign_head(registry.signer, head, datetime.now(UTC) - OLD)
    db.dispose()
    return url


@dataclass
class World:
    registry: GateRegistry
    gate: RunningGate
    gate_signer: Signer
    rogue: RunningGate
    directory: Path

    @property
    def registry_key(self) -> VerifierKey:
        return self.registry.signer.verifier


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("statements")
    registry = GateRegistry(f"sqlite:///{directory / 'registry.db'}", directory / "registry-keys")
    try:
        registry.load(demo_lines(len(SCENARIOS)))
        keys, signer = gate_keys(directory / "gate-keys", registry)
        vouch_gate_key(registry.db, registry.signer, signer.verifier, days=30)
        rogue_url = old_copy(registry, directory / "copy.db")
        rogue_keys, _ = gate_keys(directory / "rogue-keys", registry)
        # The copy is two hours old: within the rogue's staleness bound, so that it answers.
        with (
            start(registry.url, keys) as gate,
            start(rogue_url, rogue_keys, max_staleness=3 * 3600) as rogue,
        ):
            yield World(registry, gate, signer, rogue, directory)
    finally:
        registry.close()


def ask(gate: RunningGate, sid: str = REVOKED, **options: Any) -> bytes:
    with Wire(gate.target) as wire:
        decision = wire.ask(connection(sid, receipt=True, **options))
    assert decision.receipt
    return bytes(decision.receipt)


def payload_of(receipt: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(json.loads(receipt)["payload"]))
    return decoded


def by_hand(receipt: bytes, registry_pub: str) -> dict[str, Any]:
    """Open a receipt with only the registry key, by hand: the statement's signature by the
    registry key, then the receipt's by the key the statement names."""
    registry_key = parse_key(registry_pub)
    envelope = json.loads(receipt)
    payload_bytes = base64.b64decode(envelope["payload"], validate=True)
    payload: dict[str, Any] = json.loads(payload_bytes)
    statement = payload["gate_key_statement"]
    assert statement["payloadType"] == "application/vnd.permitgate.gate-key+json"
    statement_payload = base64.b64decode(statement["payload"], validate=True)
    [signature] = statement["signatures"]
    assert signature["keyid"] == f"{registry_key.name}+{registry_key.key_id.hex()}"
    registry_key.public.verify(
        base64.b64decode(signature["sig"]),
        dsse_pae(statement["payloadType"], statement_payload),
    )
    vouched = json.loads(statement_payload)
    gate_key = parse_key(vouched["gate_key"])
    [gate_signature] = envelope["signatures"]
    assert gate_signature["keyid"] == f"{gate_key.name}+{gate_key.key_id.hex()}"
    gate_key.public.verify(
        base64.b64decode(gate_signature["sig"]), dsse_pae(RECEIPT_TYPE, payload_bytes)
    )
    decided = parse_rfc3339(payload["decided_at"])
    assert parse_rfc3339(vouched["not_before"]) <= decided < parse_rfc3339(vouched["not_after"])
    return payload


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


# --- a gate the registry vouches for -------------------------------------------------------------


def test_a_vouched_gates_receipt_verifies_with_the_registry_key_alone(world: World) -> None:
    receipt = ask(world.gate)
    verified = verify_receipt(receipt, world.registry_key)
    assert verified.gate_key == world.gate_signer.verifier
    assert verified.gate_key_id == world.gate_signer.verifier.keyid_text
    assert verified.statement is not None
    [(stored,)] = world.registry.sql("SELECT statement FROM gate_key")
    assert payload_of(receipt)["gate_key_statement"] == json.loads(bytes(stored))
    assert verified.gate_key_valid_until == verified.statement.not_after
    assert verified.statement.not_after - verified.statement.not_before == timedelta(days=30)
    # Opened by hand, with the registry key only.
    payload = by_hand(receipt, (world.registry.keys_dir / "registry.pub").read_text())
    assert payload["decision_id"] == verified.receipt.decision_id
    # A KeySet verifies it too; its gate key does not matter when the receipt is vouched for.
    stranger = Signer("gate.example/stranger", Ed25519PrivateKey.generate()).verifier
    assert verify_receipt(receipt, KeySet(world.registry_key, stranger)).statement is not None


def test_a_receipt_tells_the_datas_age_at_the_decision(world: World) -> None:
    receipt = ask(world.gate)
    verified = verify_receipt(receipt, world.registry_key)
    note = payload_of(receipt)["registry"]["checkpoint"].encode()
    assert note == world.registry.checkpoint_note()  # the cosigned note, as stored
    cosigned = open_checkpoint(note, parse_verifier_key(world.registry_key.text)).cosigned_at
    assert cosigned is not None
    assert verified.cosigned_at == datetime.fromtimestamp(cosigned, UTC)
    assert verified.data_age == verified.receipt.decided_at - verified.cosigned_at
    assert timedelta(0) <= verified.data_age < timedelta(minutes=5)
    assert verified.data_fresh(timedelta(minutes=5))
    assert not verified.data_fresh(verified.data_age - timedelta(microseconds=1))


def test_receipt_verify_with_the_registry_key(world: World) -> None:
    path = world.directory / "vouched-receipt.json"
    path.write_bytes(ask(world.gate))
    registry_pub = str(world.registry.keys_dir / "registry.pub")
    result = cli("receipt", "verify", str(path), "--registry-key", registry_pub)
    assert result.exit_code == 0, result.output
    verified = verify_receipt(path.read_bytes(), world.registry_key)
    assert verified.statement is not None and verified.cosigned_at is not None
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"verified: signed by gate key {world.gate_signer.verifier.keyid_text}; registry "
        f"version {world.registry.version()} signed by {world.registry_key.keyid_text}"
    )
    assert lines[1] == (
        "  gate key vouched for by the registry from "
        f"{format_time(verified.statement.not_before)}, valid until "
        f"{format_time(verified.statement.not_after)}"
    )
    assert (
        f"  data: cosigned by the registry at {format_time(verified.cosigned_at)}, "
        in result.stdout
    )
    assert ": fresh (max age 300 s)" in result.stdout
    strict = cli(
        "receipt", "verify", str(path), "--registry-key", registry_pub, "--max-age", "0",
        "--require-fresh",
    )  # fmt: skip
    assert strict.exit_code == 1
    assert ": NOT fresh (max age 0 s)" in strict.stdout
    assert "NOT FRESH: the registry data is not shown to be at most 0 s old" in strict.stderr
    both = cli(
        "receipt", "verify", str(path), "--registry-key", registry_pub, "--keyset", registry_pub
    )
    assert both.exit_code == 2 and "not both" in both.stderr
    bad = world.directory / "bad.pub"
    bad.write_text("no key here\n")
    assert cli("receipt", "verify", str(path), "--registry-key", str(bad)).exit_code == 2


def test_retiring_the_key_ends_what_its_receipts_prove(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry-keys")
    try:
        registry.load(demo_lines(len(SCENARIOS)))
        keys, signer = gate_keys(tmp_path / "gate-keys", registry)
        vouch_gate_key(
            registry.db,
            registry.signer,
            signer.verifier,
            days=30,
            now=datetime.now(UTC) - timedelta(minutes=1),
        )
        with start(registry.url, keys) as gate:
            before = ask(gate)
            retired = retire_gate_key(registry.db, registry.signer, signer.verifier.keyid_text)
            vouch = gate.app.gate.receipts.vouch
            assert vouch is not None
            vouch.load()  # what the gate does within a minute
            assert vouch.statement == retired
            after = ask(gate)
    finally:
        registry.close()
    # Decided before: still verifies with the registry key alone.
    verified = verify_receipt(before, registry.signer.verifier)
    assert verified.receipt.decided_at < retired.not_after
    # Decided after: the gate puts no statement in (none covers the decision) ...
    assert parse_time(payload_of(after)["decided_at"]) >= retired.not_after
    assert payload_of(after)["gate_key_statement"] is None
    with pytest.raises(ReceiptError) as raised:
        verify_receipt(after, registry.signer.verifier)
    assert type(raised.value.__cause__) is BadSignatureError
    assert (
        verify_receipt(after, KeySet(registry.signer.verifier, signer.verifier)).statement is None
    )
    # ... and one that carries the retired statement anyway is outside its validity.
    payload = payload_of(after)
    [(stored,)] = registry.sql("SELECT statement FROM gate_key")
    payload["gate_key_statement"] = json.loads(bytes(stored))
    forged = signer.sign_envelope(json.dumps(payload).encode(), RECEIPT_TYPE)
    with pytest.raises(ReceiptError) as expired:
        verify_receipt(forged, registry.signer.verifier)
    assert type(expired.value.__cause__) is ExpiredError
    assert "outside the registry's statement" in str(expired.value)


# --- a rogue gate --------------------------------------------------------------------------------


def test_a_rogue_gates_receipt_does_not_verify_with_the_registry_key(world: World) -> None:
    receipt = ask(world.rogue)
    assert payload_of(receipt)["gate_key_statement"] is None  # nobody vouched for its key
    with pytest.raises(ReceiptError) as raised:
        verify_receipt(receipt, world.registry_key)
    assert type(raised.value.__cause__) is BadSignatureError
    assert "carries no statement of the registry vouching" in str(raised.value)
    path = world.directory / "rogue-receipt.json"
    path.write_bytes(receipt)
    result = cli(
        "receipt", "verify", str(path), "--registry-key",
        str(world.registry.keys_dir / "registry.pub"),
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("NOT VERIFIED: receipt not verified: receipt: carries no ")


def test_a_rogue_gate_copying_a_genuine_statement_is_caught(world: World) -> None:
    """The rogue puts the real gate's statement (from its copy of the database) into its own
    receipt: the statement verifies, but names a key whose signature the receipt lacks."""
    payload = payload_of(ask(world.rogue))
    [(stored,)] = world.registry.sql("SELECT statement FROM gate_key")
    payload["gate_key_statement"] = json.loads(bytes(stored))
    rogue_signer = world.rogue.app.gate.receipts._signer
    forged = rogue_signer.sign_envelope(json.dumps(payload).encode(), RECEIPT_TYPE)
    with pytest.raises(ReceiptError) as raised:
        verify_receipt(forged, world.registry_key)
    assert type(raised.value.__cause__) is BadSignatureError
    # Its own statement, signed by a key of its own under the registry's name: not the registry's.
    fake_registry = Signer(world.registry_key.name, Ed25519PrivateKey.generate())
    statement = GateKeyStatement(
        rogue_signer.verifier,
        datetime.now(UTC) - timedelta(days=1),
        datetime.now(UTC) + timedelta(days=1),
    )
    payload["gate_key_statement"] = json.loads(
        fake_registry.sign_envelope(
            json.dumps(statement.to_json()).encode(), "application/vnd.permitgate.gate-key+json"
        )
    )
    forged = rogue_signer.sign_envelope(json.dumps(payload).encode(), RECEIPT_TYPE)
    with pytest.raises(ReceiptError) as raised:
        verify_receipt(forged, world.registry_key)
    assert type(raised.value.__cause__) is BadSignatureError


def test_a_rogue_gates_own_keyset_shows_its_old_data(world: World) -> None:
    """Who verifies with keys fetched from the rogue itself gets a genuine receipt of a gate the
    registry never vouched for, on data two hours old."""
    receipt = ask(world.rogue)
    with Wire(world.rogue.target) as wire:
        keyset = KeySet.from_proto(wire.keys())
    verified = verify_receipt(receipt, keyset)
    assert verified.statement is None
    assert verified.data_age is not None and verified.data_age > OLD - timedelta(minutes=1)
    assert not verified.data_fresh(timedelta(seconds=300))
    path, keys = world.directory / "rogue.json", world.directory / "rogue-keyset.json"
    path.write_bytes(receipt)
    keys.write_text(json.dumps(keyset.to_json()))
    result = cli("receipt", "verify", str(path), "--keyset", str(keys), "--require-fresh")
    assert result.exit_code == 1
    assert "gate key: not vouched for in the receipt" in result.stdout
    assert ": NOT fresh (max age 300 s)" in result.stdout
