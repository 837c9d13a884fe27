"""Signed receipts from a real gate: verified offline by ``verify_receipt``, again by hand from
the DSSE and signed-note specifications, against the registry database, and by the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    RECEIPT_TYPE,
    STATUS_TYPE,
    GateRegistry,
    RunningGate,
    Wire,
    batch_check,
    checkpoint_of,
    connection,
    dsse_pae,
    open_dsse,
    open_note,
    parse_key,
    premises,
    reseal_payload,
    served_registry,
    verdict,
)
from permitgate_client import (
    BadSignatureError,
    FromTheFutureError,
    KeySet,
    MalformedError,
    ReceiptError,
    VerificationError,
    VerifierKey,
    WrongOriginError,
    verify_receipt,
)
from permitgate_client.formats import Checkpoint, Receipt
from permitgate_client.v1 import gate_pb2 as pb

from permitgate.cli import main
from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.merkle import CompactTree
from registry.records import format_time
from registry.signing import Signer, load_signer
from server.receipts import receipt_payload

REVOKED = structure_id(1)
TEMP_ONLY = structure_id(5)
BUILDING = structure_id(6)
OK = structure_id(0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("receipts"), demo_lines(len(SCENARIOS))) as served:
        yield served


@pytest.fixture(scope="module")
def wire(served: tuple[GateRegistry, RunningGate]) -> Iterator[Wire]:
    with Wire(served[1].target) as w:
        yield w


@pytest.fixture(scope="module")
def keys(wire: Wire) -> tuple[VerifierKey, VerifierKey]:
    """(gate key, registry key) from GetKeys."""
    keyset = wire.keys()
    return VerifierKey.from_text(keyset.gate_key), VerifierKey.from_text(keyset.registry_key)


@pytest.fixture(scope="module")
def revoked_receipt(wire: Wire) -> pb.Decision:
    decision = wire.ask(
        connection(REVOKED, pb.UTILITY_POWER, application_id="APP-77", receipt=True)
    )
    assert decision.receipt
    return decision


def _payload(envelope: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    return decoded


# --- verify_receipt ----------------------------------------------------------------------------


def test_receipt_verifies_offline(
    revoked_receipt: pb.Decision,
    keys: tuple[VerifierKey, VerifierKey],
    served: tuple[GateRegistry, RunningGate],
) -> None:
    gate_key, registry_key = keys
    verified = verify_receipt(revoked_receipt.receipt, KeySet(registry_key, gate_key))
    r = verified.receipt
    assert r.decision_id == revoked_receipt.decision_id
    assert r.decided_at == revoked_receipt.decided_at.ToDatetime(tzinfo=UTC)
    assert r.verdict == "DENY"
    assert [(x["code"], x["permit_kind"], x["article"]) for x in r.reasons] == [
        ("PERMIT_REVOKED", "construction_planning", 23)
    ]
    assert r.check == {
        "type": "connection",
        "structure_id": REVOKED,
        "utility": "power",
        "kind": "permanent",
        "requested_until": None,
        "application_id": "APP-77",
    }
    assert verified.checkpoint.size == revoked_receipt.registry_version == served[0].version()
    expected = hashlib.sha256(served[0].status_envelope(REVOKED)).hexdigest()
    assert r.status_record_sha256 == expected


def test_receipt_verified_by_hand(
    revoked_receipt: pb.Decision, wire: Wire, served: tuple[GateRegistry, RunningGate]
) -> None:
    """DSSE parsed and PAE rebuilt by hand, Ed25519 checked with ``cryptography`` directly; the
    status record digest and the embedded checkpoint checked against the registry database."""
    registry, _ = served
    keyset = wire.keys()
    gate_key, registry_key = parse_key(keyset.gate_key), parse_key(keyset.registry_key)

    envelope = json.loads(revoked_receipt.receipt)
    assert envelope["payloadType"] == RECEIPT_TYPE
    payload = base64.b64decode(envelope["payload"], validate=True)
    [signature] = envelope["signatures"]
    assert signature["keyid"] == f"{gate_key.name}+{gate_key.key_id.hex()}"
    gate_key.public.verify(  # raises InvalidSignature
        base64.b64decode(signature["sig"]), dsse_pae(RECEIPT_TYPE, payload)
    )
    body = json.loads(payload)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical.encode() == payload
    assert body["decision_id"] == revoked_receipt.decision_id
    assert body["verdict"] == "DENY"

    # The status record the answer used is the one the registry stores and signed.
    stored = registry.status_envelope(REVOKED)
    assert body["status_record"]["sha256"] == hashlib.sha256(stored).hexdigest()
    [(tree_size,)] = registry.sql(
        "SELECT tree_size FROM status_record WHERE structure_id = :sid", sid=REVOKED
    )
    assert body["status_record"]["tree_size"] == tree_size
    record = open_dsse(stored, registry_key, STATUS_TYPE)
    assert record["structure"]["id"] == REVOKED
    assert any(p["status"] == "revoked" for p in record["permits"])

    # The checkpoint inside is the registry's own signed note for the version answered on.
    note = body["registry"]["checkpoint"].encode()
    origin, size, root = checkpoint_of(open_note(note, registry_key))
    assert origin == registry.signer.name
    assert size == revoked_receipt.registry_version
    [(db_root,)] = registry.sql("SELECT root_hash FROM head WHERE size = :n", n=size)
    assert root == bytes(db_root)
    assert tree_size <= size


def test_receipt_for_an_unknown_structure(
    wire: Wire, keys: tuple[VerifierKey, VerifierKey]
) -> None:
    decision = wire.ask(connection("nowhere-0042", receipt=True))
    verified = verify_receipt(decision.receipt, KeySet(keys[1], keys[0]))
    assert verified.receipt.status_record_sha256 is None
    assert [r["code"] for r in verified.receipt.reasons] == ["NOT_IN_REGISTRY"]


def test_receipt_carries_valid_until(wire: Wire, keys: tuple[VerifierKey, VerifierKey]) -> None:
    until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    decision = wire.ask(
        connection(
            BUILDING,
            pb.UTILITY_WATER,
            pb.CONNECTION_KIND_TEMPORARY,
            requested_until=until,
            receipt=True,
        )
    )
    assert verdict(decision) == "ALLOW_TEMPORARY"
    receipt = verify_receipt(decision.receipt, KeySet(keys[1], keys[0])).receipt
    assert receipt.valid_until == until == decision.valid_until.ToDatetime(tzinfo=UTC)
    assert receipt.check["requested_until"] == format_time(until)


def test_receipt_carries_the_notification(
    wire: Wire, keys: tuple[VerifierKey, VerifierKey]
) -> None:
    decision = wire.ask(
        premises(OK, pb.OFFICE_HEALTH, "clinic", application_id="H-1", receipt=True)
    )
    assert verdict(decision) == "NOTIFY" and decision.notification_id
    receipt = verify_receipt(decision.receipt, KeySet(keys[1], keys[0])).receipt
    assert receipt.notification_id == decision.notification_id
    assert receipt.check["declared_use"] == "clinic"


def test_no_receipt_unless_asked(wire: Wire) -> None:
    assert not wire.ask(connection(REVOKED)).receipt


def test_batch_receipts_verify(wire: Wire, keys: tuple[VerifierKey, VerifierKey]) -> None:
    checks = [
        batch_check("r-1", connection(REVOKED, receipt=True)),
        batch_check("r-2", connection(OK)),
        batch_check("r-3", connection(TEMP_ONLY, receipt=True)),
    ]
    [answer] = wire.batches([pb.CheckBatch(checks=checks)])
    first, second, third = answer.decisions
    assert not second.receipt
    for decision, sid in ((first, REVOKED), (third, TEMP_ONLY)):
        receipt = verify_receipt(decision.receipt, KeySet(keys[1], keys[0])).receipt
        assert receipt.decision_id == decision.decision_id
        assert receipt.check["structure_id"] == sid
        assert receipt.verdict == verdict(decision)


# --- what must not verify ----------------------------------------------------------------------


def _failure(envelope: bytes, keyset: KeySet) -> type[VerificationError]:
    """The typed failure under the ``ReceiptError`` that ``verify_receipt`` raises."""
    with pytest.raises(ReceiptError) as raised:
        verify_receipt(envelope, keyset)
    cause = raised.value.__cause__
    assert isinstance(cause, VerificationError), cause
    assert str(cause) in str(raised.value)  # the receipt error says which check failed
    return type(cause)


def test_flipped_payload_byte_fails(
    revoked_receipt: pb.Decision, keys: tuple[VerifierKey, VerifierKey]
) -> None:
    def flip(payload: bytes) -> bytes:
        at = payload.index(b'"verdict"') + 12
        return payload[:at] + bytes([payload[at] ^ 0x01]) + payload[at + 1 :]

    forged = reseal_payload(revoked_receipt.receipt, flip)
    assert _failure(forged, KeySet(keys[1], keys[0])) is BadSignatureError


def test_verdict_rewritten_to_allow_fails(
    revoked_receipt: pb.Decision, keys: tuple[VerifierKey, VerifierKey]
) -> None:
    forged = reseal_payload(
        revoked_receipt.receipt, lambda p: p.replace(b'"verdict":"DENY"', b'"verdict":"ALLOW"')
    )
    assert _payload(forged)["verdict"] == "ALLOW"
    assert _failure(forged, KeySet(keys[1], keys[0])) is BadSignatureError


def test_wrong_gate_key_fails(
    revoked_receipt: pb.Decision, keys: tuple[VerifierKey, VerifierKey]
) -> None:
    gate_key, registry_key = keys
    impostor = Signer(gate_key.name, Ed25519PrivateKey.generate()).verifier
    for wrong in (impostor, registry_key):
        assert _failure(revoked_receipt.receipt, KeySet(registry_key, wrong)) is BadSignatureError


def test_wrong_registry_key_fails(
    revoked_receipt: pb.Decision, keys: tuple[VerifierKey, VerifierKey]
) -> None:
    gate_key, registry_key = keys
    impostor = Signer(registry_key.name, Ed25519PrivateKey.generate()).verifier
    assert _failure(revoked_receipt.receipt, KeySet(impostor, gate_key)) is BadSignatureError


def _resign(registry: GateRegistry, receipt: Receipt) -> bytes:
    """A receipt signed with the gate's real key (as a compromised or buggy gate could)."""
    gate = load_signer(registry.keys_dir, "gate")
    return gate.sign_envelope(receipt_payload(receipt), RECEIPT_TYPE)


def test_checkpoint_not_signed_by_the_registry_fails(
    revoked_receipt: pb.Decision,
    keys: tuple[VerifierKey, VerifierKey],
    served: tuple[GateRegistry, RunningGate],
) -> None:
    registry, _ = served
    gate_key, registry_key = keys
    genuine = verify_receipt(revoked_receipt.receipt, KeySet(registry_key, gate_key))
    other = Signer(registry_key.name, Ed25519PrivateKey.generate())
    fake_note = other.sign_note(
        Checkpoint(registry_key.name, genuine.checkpoint.size, CompactTree().root()).body()
    )
    forged = _resign(
        registry,
        Receipt(**{**_fields(genuine.receipt), "checkpoint_note": fake_note}),
    )
    assert _failure(forged, KeySet(registry_key, gate_key)) is BadSignatureError


def test_status_record_newer_than_checkpoint_fails(
    revoked_receipt: pb.Decision,
    keys: tuple[VerifierKey, VerifierKey],
    served: tuple[GateRegistry, RunningGate],
) -> None:
    gate_key, registry_key = keys
    genuine = verify_receipt(revoked_receipt.receipt, KeySet(registry_key, gate_key))
    forged = _resign(
        served[0],
        Receipt(
            **{
                **_fields(genuine.receipt),
                "status_record_tree_size": genuine.checkpoint.size + 1,
            }
        ),
    )
    assert _failure(forged, KeySet(registry_key, gate_key)) is FromTheFutureError


def test_checkpoint_of_another_log_fails(
    revoked_receipt: pb.Decision,
    keys: tuple[VerifierKey, VerifierKey],
    served: tuple[GateRegistry, RunningGate],
) -> None:
    """A checkpoint the registry key signed, but for another origin than the key's name."""
    registry, _ = served
    gate_key, registry_key = keys
    genuine = verify_receipt(revoked_receipt.receipt, KeySet(registry_key, gate_key))
    other_log = registry.signer.sign_note(
        Checkpoint("elsewhere.example/log", genuine.checkpoint.size, CompactTree().root()).body()
    )
    forged = _resign(
        registry, Receipt(**{**_fields(genuine.receipt), "checkpoint_note": other_log})
    )
    assert _failure(forged, KeySet(registry_key, gate_key)) is WrongOriginError


def test_receipt_payload_of_the_wrong_type_fails(
    revoked_receipt: pb.Decision,
    keys: tuple[VerifierKey, VerifierKey],
    served: tuple[GateRegistry, RunningGate],
) -> None:
    """The gate's signature over a receipt payload announced as a status record: refused."""
    gate_key, registry_key = keys
    genuine = verify_receipt(revoked_receipt.receipt, KeySet(registry_key, gate_key))
    gate = load_signer(served[0].keys_dir, "gate")
    mislabelled = gate.sign_envelope(receipt_payload(genuine.receipt), STATUS_TYPE)
    assert _failure(mislabelled, KeySet(registry_key, gate_key)) is MalformedError


def _fields(receipt: Receipt) -> dict[str, Any]:
    return {name: getattr(receipt, name) for name in Receipt.__slots__}


# --- the command line --------------------------------------------------------------------------


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def keyset_file(
    served: tuple[GateRegistry, RunningGate], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``permitgate keys --target`` output, saved as a file."""
    result = _cli("keys", "--target", served[1].target)
    assert result.exit_code == 0, result.output
    path = tmp_path_factory.mktemp("cli") / "keyset.json"
    path.write_text(result.stdout)
    return path


def test_cli_keys_prints_the_keyset(keyset_file: Path, wire: Wire) -> None:
    keyset = wire.keys()
    printed = json.loads(keyset_file.read_text())
    assert printed["registry_key"] == keyset.registry_key
    assert printed["gate_key"] == keyset.gate_key
    assert printed["checkpoint"].encode() == keyset.checkpoint


def test_cli_verifies_a_good_receipt(
    keyset_file: Path, served: tuple[GateRegistry, RunningGate], tmp_path: Path
) -> None:
    receipt_file = tmp_path / "receipt.json"
    asked = _cli(
        "check",
        "connection",
        REVOKED,
        "--utility",
        "water",
        "--receipt",
        str(receipt_file),
        "--target",
        served[1].target,
    )
    assert asked.exit_code == 0, asked.output
    assert asked.stdout.startswith(f"DENY  {REVOKED}")
    result = _cli("receipt", "verify", str(receipt_file), "--keyset", str(keyset_file))
    assert result.exit_code == 0, result.output
    assert "verified: signed by gate" in result.stdout
    assert _payload(receipt_file.read_bytes().strip())["decision_id"] in result.stdout
    assert "PERMIT_REVOKED" in result.stdout


def test_cli_rejects_a_tampered_receipt(
    keyset_file: Path, revoked_receipt: pb.Decision, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(revoked_receipt.receipt)
    assert _cli("receipt", "verify", str(good), "--keyset", str(keyset_file)).exit_code == 0
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(
        reseal_payload(revoked_receipt.receipt, lambda p: p.replace(b"APP-77", b"APP-78"))
    )
    result = _cli("receipt", "verify", str(tampered), "--keyset", str(keyset_file))
    assert result.exit_code == 1, result.output
    assert "NOT VERIFIED" in result.stderr


def test_cli_verifies_with_keys_from_the_gate(
    revoked_receipt: pb.Decision, served: tuple[GateRegistry, RunningGate], tmp_path: Path
) -> None:
    path = tmp_path / "receipt.json"
    path.write_bytes(revoked_receipt.receipt)
    result = _cli("receipt", "verify", str(path), "--target", served[1].target)
    assert result.exit_code == 0, result.output
