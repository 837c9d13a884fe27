"""The language-neutral test vectors in ``spec/vectors/``, run through the Python verifiers.

Every case's verdict must be the one the file states: ``valid``, or exactly the named
``VerificationError`` subclass. Checkpoints go through the gate's cache (which also knows the
checkpoint held), status records through ``registry.trust`` and again through the gate's cache,
receipts through ``verify_receipt``, heads and their cosigned time through
``verify_registry_head`` and ``verify_fresh``, map proofs through ``verify_map_proof``,
consistency proofs through ``verify_consistency``, gate key statements through
``verify_gate_key_statement``. The valid cases are then checked a second time by hand, from the
specifications, with ``cryptography`` and ``hashlib`` directly (never through
``permitgate_client``), and so are the bad-signature and map-mismatch cases, which must fail
there too. ``verify_consistency`` also runs the RFC 6962 consistency proofs published with
Certificate Transparency. ``make test`` checks that the files are what
``scripts/make_vectors.py`` writes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
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
    MapMismatchError,
    ReceiptError,
    RollbackError,
    VerificationError,
    VerifierKey,
    WrongOriginError,
    WrongStructureError,
    verify_receipt,
)
from permitgate_client.formats import (
    MapProof,
    format_time,
    parse_time,
    verify_checkpoint,
    verify_consistency,
    verify_fresh,
    verify_gate_key_statement,
    verify_map_proof,
    verify_registry_head,
)

from registry.statusmap import StatusMap
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
        MapMismatchError,
    )
}
STATUS_TYPE = "application/vnd.permitgate.status+json"
RECEIPT_TYPE = "application/vnd.permitgate.receipt+json"
GATE_KEY_TYPE = "application/vnd.permitgate.gate-key+json"
SIGNED_FILES = (
    "checkpoints.json",
    "status-records.json",
    "receipts.json",
    "cosignatures.json",
    "gate-keys.json",
)

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
    files = sorted(path.name for path in VECTORS.glob("*.json"))
    assert files == sorted([*SIGNED_FILES, "map-roots.json", "map-proofs.json", "consistency.json"])
    for name in files:
        cases = _cases(name)
        verdicts = {_expected(c) for c in cases}
        assert "valid" in verdicts
        if name != "map-roots.json":  # roots only: every case is a map and its root
            assert len(verdicts) > 2, name
        if name in SIGNED_FILES:
            assert "BadSignatureError" in verdicts, name
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


def _keys(case: Case) -> KeySet | VerifierKey:
    """The keys a receipt case verifies with: a KeySet, or the registry key alone."""
    if case["keyset"]["gate_key"] is None:
        return VerifierKey.from_text(case["keyset"]["registry_key"])
    return KeySet.from_json(json.dumps(case["keyset"]))


@pytest.mark.parametrize("case", _cases("receipts.json"), ids=lambda c: c["name"])
def test_receipt_vector(case: Case) -> None:
    keys = _keys(case)
    envelope = _bytes(case, "receipt")
    expected = _expected(case)
    if expected != "valid":
        with pytest.raises(ReceiptError) as raised:
            verify_receipt(envelope, keys)
        assert type(raised.value.__cause__) is ERRORS[expected], case["description"]
        return
    verified = verify_receipt(envelope, keys)
    result = case["result"]
    assert verified.receipt.to_json() == result["payload"]
    assert verified.checkpoint.size == result["checkpoint_size"]
    assert verified.gate_key_id == result["gate_key_id"]
    valid_until = verified.gate_key_valid_until
    assert (None if valid_until is None else format_time(valid_until)) == result[
        "gate_key_valid_until"
    ]
    cosigned = verified.cosigned_at
    assert (None if cosigned is None else format_time(cosigned)) == result["cosigned_at"]
    age = verified.data_age
    assert (None if age is None else age.total_seconds()) == result["data_age_seconds"]


# --- registry heads: the status map, consistency, cosignatures, gate keys -----------------------


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@pytest.mark.parametrize("case", _cases("map-proofs.json"), ids=lambda c: c["name"])
def test_map_proof_vector(case: Case) -> None:
    value = None if case["value"] is None else bytes.fromhex(case["value"])
    proof = _b64(case["proof_base64"])
    verdict, _ = _verdict(
        lambda: verify_map_proof(
            _b64(case["root"]), case["structure_id"], value, MapProof.from_bytes(proof)
        )
    )
    assert verdict == _expected(case), case["description"]
    if verdict in ("valid", "MapMismatchError"):  # the same by hand, from the byte layout
        walked = hand_map_proof(_b64(case["root"]), case["structure_id"], value, proof)
        assert walked is (verdict == "valid")
        assert MapProof.from_bytes(proof).to_bytes() == proof  # one encoding per proof


@pytest.mark.parametrize("case", _cases("map-roots.json"), ids=lambda c: c["name"])
def test_map_root_vector(case: Case) -> None:
    entries = {e["structure_id"]: bytes.fromhex(e["value"]) for e in case["entries"]}
    built = StatusMap(entries.items())
    assert base64.b64encode(built.root()).decode() == case["result"]["root"]
    assert len(built) == case["result"]["count"]
    assert hand_map_root(entries) == _b64(case["result"]["root"])


@pytest.mark.parametrize("case", _cases("consistency.json"), ids=lambda c: c["name"])
def test_consistency_vector(case: Case) -> None:
    verdict, _ = _verdict(
        lambda: verify_consistency(
            case["old_size"],
            _b64(case["old_root"]),
            case["new_size"],
            _b64(case["new_root"]),
            [_b64(h) for h in case["proof"]],
        )
    )
    assert verdict == _expected(case), case["description"]
    if verdict == "valid":  # the roots are those of the vector log, by RFC 6962's definition
        leaves = [b"vector event %d" % i for i in range(case["new_size"])]
        assert hand_log_root(leaves[: case["old_size"]]) == _b64(case["old_root"])
        assert hand_log_root(leaves) == _b64(case["new_root"])


@pytest.mark.parametrize("case", _cases("cosignatures.json"), ids=lambda c: c["name"])
def test_cosignature_vector(case: Case) -> None:
    key = VerifierKey.from_text(case["registry_key"])
    note = _bytes(case, "note")
    at = parse_time(case["at"])
    max_age = timedelta(seconds=case["max_age_seconds"])

    def verify() -> tuple[Any, timedelta]:
        head = verify_registry_head(note, key)
        return head, verify_fresh(head, now=at, max_age=max_age)

    verdict, verified = _verdict(verify)
    assert verdict == _expected(case), case["description"]
    if verified is not None:
        head, age = verified
        result = case["result"]
        assert (head.map.serial, head.size, head.map.count) == (
            result["serial"],
            result["size"],
            result["map_count"],
        )
        assert head.map.root == _b64(result["map_root"])
        assert format_time(head.cosigned_at) == result["cosigned_at"]
        assert age.total_seconds() == result["age_seconds"]


@pytest.mark.parametrize("case", _cases("gate-keys.json"), ids=lambda c: c["name"])
def test_gate_key_vector(case: Case) -> None:
    key = VerifierKey.from_text(case["registry_key"])
    statement = _bytes(case, "statement")
    verdict, verified = _verdict(lambda: verify_gate_key_statement(statement, key))
    assert verdict == _expected(case), case["description"]
    if verified is not None:
        assert verified.to_json() == case["result"]
    if verdict in ("valid", "BadSignatureError"):  # the same by hand
        payload = _hand_dsse(statement, HandKey(case["registry_key"]), GATE_KEY_TYPE)
        assert (payload is not None) is (verdict == "valid")
        if payload is not None:
            assert json.loads(payload) == case["result"]


def test_the_vectors_rest_on_one_registry() -> None:
    """The status record, the head, the map proof and the receipt vectors describe one
    registry: the record's digest is in the head's map, which the receipt's head commits to."""
    [record] = [c for c in _cases("status-records.json") if c["name"] == "valid"]
    [proof] = [c for c in _cases("map-proofs.json") if c["name"] == "valid-present"]
    [head] = [c for c in _cases("cosignatures.json") if c["name"] == "valid"]
    [root] = [c for c in _cases("map-roots.json") if c["name"] == "head"]
    assert proof["value"] == record["result"]["envelope_sha256"]
    assert proof["structure_id"] == record["structure_id"]
    assert proof["root"] == head["result"]["map_root"] == root["result"]["root"]
    assert record["checkpoint"] == head["note"]


# --- RFC 6962 consistency proofs, as published ---------------------------------------------------

# The eight-leaf tree and its consistency proofs from Certificate Transparency's RFC 6962 test
# data (google/certificate-transparency, as carried in transparency-dev/merkle's
# proof/verify_test.go): the leaves' bytes, the root of the tree of each size 1..8, and
# consistency proofs between sizes. Data only.
RFC6962_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
RFC6962_CONSISTENCY: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_rfc6962_roots_are_the_published_ones() -> None:
    leaves = [bytes.fromhex(leaf) for leaf in RFC6962_LEAVES]
    for size in range(1, 9):
        assert hand_log_root(leaves[:size]).hex() == RFC6962_ROOTS[size - 1]


@pytest.mark.parametrize(
    ("old", "new", "proof"), RFC6962_CONSISTENCY, ids=lambda v: str(v) if isinstance(v, int) else ""
)
def test_rfc6962_consistency_proof(old: int, new: int, proof: list[str]) -> None:
    hashes = [bytes.fromhex(h) for h in proof]
    old_root, new_root = (
        bytes.fromhex(RFC6962_ROOTS[old - 1]),
        bytes.fromhex(RFC6962_ROOTS[new - 1]),
    )
    verify_consistency(old, old_root, new, new_root, hashes)
    # Every tampering of a non-empty proof is refused: sizes, roots, hashes added or removed.
    if not hashes:
        return
    other = hashlib.sha256(b"another root").digest()
    bad: list[tuple[int, bytes, int, bytes, list[bytes]]] = [
        (old - 1, old_root, new, new_root, hashes),
        (old + 1, old_root, new, new_root, hashes),
        (old ^ 2, old_root, new, new_root, hashes),
        (old, old_root, new * 2, new_root, hashes),
        (old, old_root, new // 2, new_root, hashes),
        (old, other, new, new_root, hashes),
        (old, old_root, new, other, hashes),
        (old, new_root, new, old_root, hashes),
        (old, old_root, new, new_root, []),
        (old, old_root, new, new_root, [*hashes, old_root]),
        (old, old_root, new, new_root, [*hashes, new_root]),
        (old, old_root, new, new_root, [old_root, *hashes]),
        (old, old_root, new, new_root, [new_root, *hashes]),
        (old, old_root, new, new_root, [hashes[0], *hashes]),
        (old, old_root, new, new_root, hashes[:-1]),
        *[
            (old, old_root, new, new_root, [*hashes[:i], _flip(h), *hashes[i + 1 :]])
            for i, h in enumerate(hashes)
        ],
    ]
    for args in bad:
        if args[0] == args[2] and args[1] == args[3] and not args[4]:
            continue  # the same tree twice, with an empty proof: that is consistent
        with pytest.raises((ForkError, MalformedError)):
            verify_consistency(*args)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 0x10]) + h[1:]


# --- the same, by hand ------------------------------------------------------------------------


class HandKey:
    """A C2SP verifier key parsed from its text with hashlib and base64 only."""

    def __init__(self, text: str) -> None:
        self.name, hex_id, blob = text.split("+", 2)
        raw = base64.b64decode(blob, validate=True)
        assert len(raw) == 33 and raw[0] == 0x01
        self.key_id = bytes.fromhex(hex_id)
        assert self.key_id == hashlib.sha256(self.name.encode() + b"\n" + raw).digest()[:4]
        self.raw = raw[1:]
        self.public = Ed25519PublicKey.from_public_bytes(raw[1:])

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def _hand_note(note: bytes, key: HandKey) -> bytes | None:
    """The note's body if it has lines by ``key`` (name and key id) and each verifies over it
    (a line by a trusted key that does not verify spoils the note), else None."""
    text = note.decode()
    split = text.rfind("\n\n")
    if split < 0:
        return None
    body = text[: split + 1].encode()
    verified = False
    for line in text[split + 2 :].splitlines():
        dash, name, blob = line.split(" ")
        raw = base64.b64decode(blob)
        if dash == "\u2014" and name == key.name and raw[:4] == key.key_id:
            if not key.verifies(raw[4:], body):
                return None
            verified = True
    return body if verified else None


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


def _bit(key: bytes, depth: int) -> int:
    return (key[depth // 8] >> (7 - depth % 8)) & 1


def hand_map_proof(root: bytes, structure_id: str, value: bytes | None, proof: bytes) -> bool:
    """A map proof walked from its byte layout (spec/map.md), with hashlib only."""
    count = int.from_bytes(proof[:2], "big")
    at = 2 + (count + 7) // 8
    siblings = []
    for i in range(count):
        if proof[2 + i // 8] >> (i % 8) & 1:
            siblings.append(bytes(32))
        else:
            siblings.append(proof[at : at + 32])
            at += 32
    key = hashlib.sha256(structure_id.encode()).digest()
    if proof[at:] == b"\x00":
        acc, found = bytes(32), None
    else:
        other, other_value = proof[at + 1 : at + 33], proof[at + 33 :]
        if any(_bit(other, d) != _bit(key, d) for d in range(count)):
            return False
        acc = hashlib.sha256(b"\x00" + other + other_value).digest()
        found = other_value if other == key else None
    for depth in range(count - 1, -1, -1):
        pair = siblings[depth] + acc if _bit(key, depth) else acc + siblings[depth]
        acc = hashlib.sha256(b"\x01" + pair).digest()
    return acc == root and found == value


def hand_map_root(entries: dict[str, bytes]) -> bytes:
    """The status map's root by its definition: empty 32 zeros, one entry its leaf."""

    def node(items: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not items:
            return bytes(32)
        if len(items) == 1:
            return hashlib.sha256(b"\x00" + items[0][0] + items[0][1]).digest()
        left = [i for i in items if not _bit(i[0], depth)]
        right = [i for i in items if _bit(i[0], depth)]
        return hashlib.sha256(b"\x01" + node(left, depth + 1) + node(right, depth + 1)).digest()

    return node([(hashlib.sha256(k.encode()).digest(), v) for k, v in entries.items()], 0)


def hand_log_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1 over the leaves' bytes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + hand_log_root(leaves[:k]) + hand_log_root(leaves[k:])).digest()


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
    registry_key = HandKey(case["keyset"]["registry_key"])
    envelope = _bytes(case, "receipt")
    obj = json.loads(envelope)
    statement = json.loads(base64.b64decode(obj["payload"])).get("gate_key_statement")
    gate_key: HandKey | None
    if statement is not None:  # the key the registry vouches for, if the registry signed it
        vouched = _hand_dsse(json.dumps(statement).encode(), registry_key, GATE_KEY_TYPE)
        gate_key = None if vouched is None else HandKey(json.loads(vouched)["gate_key"])
    elif case["keyset"]["gate_key"] is not None:
        gate_key = HandKey(case["keyset"]["gate_key"])
    else:
        gate_key = None
    payload = None if gate_key is None else _hand_dsse(envelope, gate_key, RECEIPT_TYPE)
    checkpoint = None
    if payload is not None:
        receipt = json.loads(payload)
        checkpoint = _hand_note(receipt["registry"]["checkpoint"].encode(), registry_key)
        if (
            checkpoint is not None
            and _hand_cosignature(receipt["registry"]["checkpoint"].encode(), registry_key) is False
        ):
            checkpoint = None
    if case["expected"] == "BadSignatureError":  # one of the signatures fails
        assert payload is None or checkpoint is None
        return
    assert payload is not None and checkpoint is not None
    assert receipt == case["result"]["payload"]
    origin, size, *_ = checkpoint.decode().split("\n")
    assert origin == registry_key.name and int(size) == case["result"]["checkpoint_size"]
    if receipt["status_record"] is not None:
        assert receipt["status_record"]["tree_size"] <= int(size)


@pytest.mark.parametrize(
    "case",
    _by_verdict("cosignatures.json", "valid", "BadSignatureError"),
    ids=lambda c: c["name"],
)
def test_cosignature_vector_by_hand(case: Case) -> None:
    key = HandKey(case["registry_key"])
    note = _bytes(case, "note")
    signed = _hand_note(note, key) is not None and _hand_cosignature(note, key) is not False
    assert signed is (case["expected"] == "valid")


def _hand_cosignature(note: bytes, key: HandKey) -> bool | None:
    """Whether every cosignature line by ``key`` (C2SP tlog-cosignature: key id over name, 0x04
    and the key) verifies over ``cosignature/v1``, the time and the body; None if it has none."""
    text = note.decode()
    split = text.rfind("\n\n")
    body = text[: split + 1].encode()
    cosigner_id = hashlib.sha256(key.name.encode() + b"\n\x04" + key.raw).digest()[:4]
    seen = None
    for line in text[split + 2 :].splitlines():
        _, name, blob = line.split(" ")
        raw = base64.b64decode(blob)
        if name != key.name or raw[:4] != cosigner_id:
            continue
        timestamp = int.from_bytes(raw[4:12], "big")
        message = b"cosignature/v1\ntime %d\n" % timestamp + body
        seen = key.verifies(raw[12:], message) and seen is not False
    return seen


def test_receipt_vector_cites_the_status_record_vector() -> None:
    """The DENY receipt rests on the status record of status-records.json 'valid'."""
    [record] = [c for c in _cases("status-records.json") if c["name"] == "valid"]
    [receipt] = [c for c in _cases("receipts.json") if c["name"] == "valid-deny"]
    cited = receipt["result"]["payload"]["status_record"]
    assert cited["sha256"] == record["result"]["envelope_sha256"]
    assert cited["tree_size"] == record["result"]["payload"]["tree_size"]
    assert receipt["result"]["payload"]["registry"]["checkpoint"] == record["checkpoint"]
