"""The language-neutral test vectors in ``spec/vectors/``, run through the Python verifiers.

Every case's verdict must be the one the file states: ``valid``, or exactly the named
``VerificationError`` subclass. Checkpoints go through the gate's cache (which also knows the
checkpoint held), status records through ``registry.trust`` and again through the gate's cache,
receipts through ``verify_receipt``. The valid cases are then checked a second time by hand,
from the specifications, with ``cryptography`` directly over the PAE and the note bodies (never
through ``permitgate_client``), and so are the bad-signature cases, which must fail there too.
``make test`` checks that the files are what ``scripts/make_vectors.py`` writes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from permitgate_client import (
    BadSignatureError,
    ExpiredError,
    ForkError,
    FromTheFutureError,
    KeySet,
    MalformedError,
    ReceiptError,
    RollbackError,
    VerificationError,
    VerifierKey,
    WrongOriginError,
    WrongStructureError,
    verify_receipt,
)
from permitgate_client.formats import parse_time, verify_checkpoint

from registry.trust import verify_status_record
from server.cache import read_status_record
from server.verifier import check_follows

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors"
ERRORS: dict[str, type[VerificationError]] = {
    cls.__name__: cls
    for cls in (
        MalformedError,
        BadSignatureError,
        WrongOriginError,
        RollbackError,
        ForkError,
        WrongStructureError,
        FromTheFutureError,
        ExpiredError,
    )
}
STATUS_TYPE = "application/vnd.permitgate.status+json"
RECEIPT_TYPE = "application/vnd.permitgate.receipt+json"

T = TypeVar("T")
Case = dict[str, Any]


def _cases(name: str) -> list[Case]:
    cases: list[Case] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return cases


def _bytes(case: Case, field: str) -> bytes:
    """A bytes input: the field as UTF-8 text, or ``field_base64``."""
    if field in case:
        return str(case[field]).encode()
    return base64.b64decode(case[f"{field}_base64"], validate=True)


def _verdict(verify: Callable[[], T]) -> tuple[str, T | None]:
    """``("valid", result)``, or the name of the ``VerificationError`` subclass raised."""
    try:
        return "valid", verify()
    except VerificationError as exc:
        return type(exc).__name__, None


def _expected(case: Case) -> str:
    expected = str(case["expected"])
    assert expected == "valid" or expected in ERRORS, f"unknown verdict {expected!r}"
    return expected


def test_every_file_has_valid_and_invalid_cases() -> None:
    for name in ("checkpoints.json", "status-records.json", "receipts.json"):
        cases = _cases(name)
        verdicts = {_expected(c) for c in cases}
        assert "valid" in verdicts and "BadSignatureError" in verdicts and len(verdicts) > 2
        assert len({c["name"] for c in cases}) == len(cases), f"{name}: duplicate names"


# --- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("checkpoints.json"), ids=lambda c: c["name"])
def test_checkpoint_vector(case: Case) -> None:
    key = VerifierKey.from_text(case["verifier_key"])
    note = _bytes(case, "note")
    verdict, checkpoint = _verdict(lambda: verify_checkpoint(note, key, origin=case["origin"]))
    if case["held"] is not None and checkpoint is not None:
        # A gate holding a checkpoint takes a later one only if its log extends the one held.
        # These vectors carry no consistency proof: an empty one shows equal logs only.
        held = verify_checkpoint(case["held"].encode(), key, origin=case["origin"])
        if held.size == checkpoint.size or _expected(case) != "valid":
            verdict = _verdict(lambda: check_follows(held, checkpoint, []))[0]
    assert verdict == _expected(case), case["description"]
    if verdict == "valid":
        assert checkpoint is not None
        assert {
            "origin": checkpoint.origin,
            "size": checkpoint.size,
            "root_hash": base64.b64encode(checkpoint.root_hash).decode(),
        } == case["result"]


# --- status records ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("status-records.json"), ids=lambda c: c["name"])
def test_status_record_vector(case: Case) -> None:
    key = VerifierKey.from_text(case["registry_key"])
    checkpoint = verify_checkpoint(case["checkpoint"].encode(), key, origin=key.name)
    held = None if case["held"] is None else verify_status_record(case["held"].encode(), key)
    envelope = _bytes(case, "envelope")
    verdict, record = _verdict(
        lambda: verify_status_record(
            envelope,
            key,
            structure_id=case["structure_id"],
            checkpoint_size=checkpoint.size,
            held=held,
            at=parse_time(case["at"]),
        )
    )
    assert verdict == _expected(case), case["description"]
    if record is not None:
        assert record.to_json() == case["result"]["payload"]
        assert hashlib.sha256(envelope).hexdigest() == case["result"]["envelope_sha256"]


_READER_VERDICTS = {"MalformedError", "WrongStructureError", "FromTheFutureError"}


@pytest.mark.parametrize("case", _cases("status-records.json"), ids=lambda c: c["name"])
def test_status_record_vector_in_the_gate_reader(case: Case) -> None:
    """The gate checks a record by its hash against the signed map, not by its signature, then
    reads it where it is filed: where a vector's verdict is about the record's content or place,
    the gate's reader reaches it too; a record whose signature verifies reads the same."""
    key = VerifierKey.from_text(case["registry_key"])
    checkpoint = verify_checkpoint(case["checkpoint"].encode(), key, origin=key.name)
    envelope = _bytes(case, "envelope")
    verdict, record = _verdict(
        lambda: read_status_record(envelope, case["structure_id"], checkpoint.size)
    )
    expected = _expected(case)
    if expected in _READER_VERDICTS:
        assert verdict == expected, case["description"]
    elif expected in ("valid", "ExpiredError", "RollbackError"):
        assert record == verify_status_record(envelope, key), case["description"]


# --- receipts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("receipts.json"), ids=lambda c: c["name"])
def test_receipt_vector(case: Case) -> None:
    keyset = KeySet.from_json(json.dumps(case["keyset"]))
    envelope = _bytes(case, "receipt")
    expected = _expected(case)
    if expected != "valid":
        with pytest.raises(ReceiptError) as raised:
            verify_receipt(envelope, keyset)
        assert type(raised.value.__cause__) is ERRORS[expected], case["description"]
        return
    verified = verify_receipt(envelope, keyset)
    assert verified.receipt.to_json() == case["result"]["payload"]
    assert verified.checkpoint.size == case["result"]["checkpoint_size"]


# --- the same, by hand ------------------------------------------------------------------------


class HandKey:
    """A C2SP verifier key parsed from its text with hashlib and base64 only."""

    def __init__(self, text: str) -> None:
        self.name, hex_id, blob = text.split("+", 2)
        raw = base64.b64decode(blob, validate=True)
        assert len(raw) == 33 and raw[0] == 0x01
        self.key_id = bytes.fromhex(hex_id)
        assert self.key_id == hashlib.sha256(self.name.encode() + b"\n" + raw).digest()[:4]
        self.public = Ed25519PublicKey.from_public_bytes(raw[1:])

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def _hand_note(note: bytes, key: HandKey) -> bytes | None:
    """The note's body if a line by ``key`` (name and key id) verifies over it, else None."""
    text = note.decode()
    split = text.rfind("\n\n")
    if split < 0:
        return None
    body = text[: split + 1].encode()
    for line in text[split + 2 :].splitlines():
        dash, name, blob = line.split(" ")
        raw = base64.b64decode(blob)
        mine = dash == "\u2014" and name == key.name and raw[:4] == key.key_id
        if mine and key.verifies(raw[4:], body):
            return body
    return None


def _hand_dsse(envelope: bytes, key: HandKey, payload_type: str) -> bytes | None:
    """The payload if a signature under ``key``'s keyid verifies over PAE, else None."""
    obj = json.loads(envelope)
    assert obj["payloadType"] == payload_type

    def b64(text: str) -> bytes:  # DSSE: standard or URL-safe base64
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)

    payload = b64(obj["payload"])
    kind = payload_type.encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    for signature in obj["signatures"]:
        mine = signature.get("keyid") == f"{key.name}+{key.key_id.hex()}"
        if mine and key.verifies(b64(signature["sig"]), pae):
            return payload
    return None


def _by_verdict(name: str, *verdicts: str) -> list[Case]:
    return [c for c in _cases(name) if c["expected"] in verdicts]


@pytest.mark.parametrize(
    "case",
    _by_verdict("checkpoints.json", "valid", "BadSignatureError"),
    ids=lambda c: c["name"],
)
def test_checkpoint_vector_by_hand(case: Case) -> None:
    body = _hand_note(_bytes(case, "note"), HandKey(case["verifier_key"]))
    if case["expected"] == "BadSignatureError":
        assert body is None
        return
    assert body is not None
    origin, size, root, *_ = body.decode().split("\n")
    assert origin == case["origin"] == case["result"]["origin"]
    assert int(size) == case["result"]["size"] and root == case["result"]["root_hash"]


@pytest.mark.parametrize(
    "case",
    _by_verdict("status-records.json", "valid", "BadSignatureError"),
    ids=lambda c: c["name"],
)
def test_status_record_vector_by_hand(case: Case) -> None:
    key = HandKey(case["registry_key"])
    payload = _hand_dsse(_bytes(case, "envelope"), key, STATUS_TYPE)
    if case["expected"] == "BadSignatureError":
        assert payload is None
        return
    assert payload is not None
    record = json.loads(payload)
    assert record == case["result"]["payload"]
    checkpoint = _hand_note(case["checkpoint"].encode(), key)
    assert checkpoint is not None
    assert record["structure"]["id"] == case["structure_id"]
    assert record["tree_size"] <= int(checkpoint.decode().split("\n")[1])
    assert case["at"] < record["next_update"]  # both written ...Z with whole seconds or more


@pytest.mark.parametrize(
    "case",
    _by_verdict("receipts.json", "valid", "BadSignatureError"),
    ids=lambda c: c["name"],
)
def test_receipt_vector_by_hand(case: Case) -> None:
    gate_key = HandKey(case["keyset"]["gate_key"])
    registry_key = HandKey(case["keyset"]["registry_key"])
    payload = _hand_dsse(_bytes(case, "receipt"), gate_key, RECEIPT_TYPE)
    checkpoint = None
    if payload is not None:
        receipt = json.loads(payload)
        checkpoint = _hand_note(receipt["registry"]["checkpoint"].encode(), registry_key)
    if case["expected"] == "BadSignatureError":  # one of the two signatures fails
        assert payload is None or checkpoint is None
        return
    assert payload is not None and checkpoint is not None
    assert receipt == case["result"]["payload"]
    origin, size, *_ = checkpoint.decode().split("\n")
    assert origin == registry_key.name and int(size) == case["result"]["checkpoint_size"]
    if receipt["status_record"] is not None:
        assert receipt["status_record"]["tree_size"] <= int(size)


def test_receipt_vector_cites_the_status_record_vector() -> None:
    """The DENY receipt rests on the status record of status-records.json 'valid'."""
    [record] = [c for c in _cases("status-records.json") if c["name"] == "valid"]
    [receipt] = [c for c in _cases("receipts.json") if c["name"] == "valid-deny"]
    cited = receipt["result"]["payload"]["status_record"]
    assert cited["sha256"] == record["result"]["envelope_sha256"]
    assert cited["tree_size"] == record["result"]["payload"]["tree_size"]
    assert receipt["result"]["payload"]["registry"]["checkpoint"] == record["checkpoint"]
