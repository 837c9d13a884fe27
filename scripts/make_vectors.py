"""Write the test vectors in spec/vectors/ from fixed seeds, or check that they are current.

Every key is an Ed25519 key from a fixed 32-byte seed and every time is fixed, and Ed25519
signatures are deterministic, so each run writes the same bytes. `make vectors` rewrites the
files; `make test` runs this with --check, which fails when a file differs from what this script
writes. Each file is a JSON list of cases whose fields are described in spec/README.md; the
signing side used here is the registry's and the gate's own (``registry.signing``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client._proofs import MapHead
from permitgate_client.formats import (
    GATE_KEY_PAYLOAD_TYPE,
    RECEIPT_PAYLOAD_TYPE,
    Checkpoint,
    Receipt,
    format_time,
    parse_time,
)

from registry.canonical import canonical_json
from registry.merkle import CompactTree, consistency_proof, leaf_hash, root_of
from registry.records import Case, Permit, StatusRecord, Structure
from registry.signing import Signer
from registry.statusmap import StatusMap
from registry.trust import STATUS_PAYLOAD_TYPE
from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage, PermitKind, PermitStatus
from server.receipts import receipt_payload

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors"

VectorCase = dict[str, Any]


# --- keys: fixed seeds ------------------------------------------------------------------------


def _signer(name: str, label: str) -> Signer:
    """An Ed25519 key whose 32-byte seed is SHA-256("permitgate spec vectors: " || label)."""
    seed = hashlib.sha256(b"permitgate spec vectors: " + label.encode()).digest()
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed))


ORIGIN = "registry.example/permitgate"  # the registry's origin is its key's name
REGISTRY = _signer(ORIGIN, "registry")
GATE = _signer("gate.example/permitgate", "gate")
REGISTRY_IMPOSTOR = _signer(ORIGIN, "registry impostor")  # same name, another key
GATE_IMPOSTOR = _signer(GATE.name, "gate impostor")
WITNESS = _signer("witness.example/w1", "witness")  # a cosigner the verifier does not know

# --- fixed times and data ---------------------------------------------------------------------

SIGNED = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # this_update of the status records
NEXT = SIGNED + timedelta(days=7)
AT = datetime(2026, 3, 4, 9, 15, 30, 250000, tzinfo=UTC)  # when the verifier relies on them
SIZE = 1234  # the tree size of the checkpoint held
RECORD_SIZE = 1200  # the tree size the main status record shows


def _root(size: int) -> bytes:
    """An RFC 6962 Merkle root over ``size`` stand-in leaves (the verifier never recomputes it)."""
    return root_of([leaf_hash(b"vector event %d" % i) for i in range(size)])


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


FLAGGED = "110228-0042-0007"
FLAGGED_RECORD = StatusRecord(
    Structure(FLAGGED, Area.URBAN, "110228", address="北京市密云区 鼓楼东大街 7 号"),
    (
        Permit(
            "P-2019-0301", FLAGGED, PermitKind.LAND_USE_PLANNING, PermitStatus.VALID,
            _t("2019-05-01T00:00:00Z"),
        ),
        Permit(
            "P-2019-0302", FLAGGED, PermitKind.LAND_CERTIFICATE, PermitStatus.VALID,
            _t("2019-06-01T00:00:00Z"),
        ),
        Permit(
            "P-2020-0117", FLAGGED, PermitKind.CONSTRUCTION_PLANNING, PermitStatus.REVOKED,
            _t("2020-02-10T00:00:00Z"), use="residential",
        ),
    ),
    (
        Case(
            "C-2026-0042", FLAGGED, CaseKind.DEVIATES_FROM_PERMIT, CaseStage.STOP_ORDER,
            CaseSource.PATROL, _t("2026-02-20T03:30:00Z"),
        ),
    ),
    RECORD_SIZE,
    SIGNED,
    NEXT,
)  # fmt: skip

VILLAGE = "110228-0042-0100"
VILLAGE_RECORD = StatusRecord(Structure(VILLAGE, Area.VILLAGE, "110228"), (), (), 17, SIGNED, NEXT)

BUILDING = "110105-0001-0006"
BUILDING_RECORD = StatusRecord(
    Structure(BUILDING, Area.URBAN, "110105", declared_use="office"),
    (
        Permit(
            "P-2025-0900", BUILDING, PermitKind.CONSTRUCTION_PLANNING, PermitStatus.VALID,
            _t("2025-09-01T00:00:00Z"), use="office",
        ),
        Permit(
            "P-2026-0031", BUILDING, PermitKind.CONSTRUCTION_WORKS, PermitStatus.VALID,
            _t("2026-01-15T00:00:00Z"), _t("2026-09-30T00:00:00Z"),
        ),
    ),
    (),
    1100,
    SIGNED,
    NEXT,
)  # fmt: skip

# --- byte-level helpers -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _envelope(signer: Signer, payload: bytes, payload_type: str) -> bytes:
    return signer.sign_envelope(payload, payload_type)


def _status(record: StatusRecord, signer: Signer = REGISTRY) -> bytes:
    return _envelope(signer, canonical_json(record.to_json()), STATUS_PAYLOAD_TYPE)


def _edit(envelope: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The envelope's JSON object changed by ``change``, written back as canonical JSON."""
    obj = json.loads(envelope)
    change(obj)
    return canonical_json(obj)


def _flip_signature(envelope: bytes) -> bytes:
    def change(obj: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(obj["signatures"][0]["sig"]))
        sig[10] ^= 0x01
        obj["signatures"][0]["sig"] = _b64(bytes(sig))

    return _edit(envelope, change)


def _repayload(envelope: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """The payload bytes changed, the old signature kept (a forgery)."""

    def edit(obj: dict[str, Any]) -> None:
        payload = change(base64.b64decode(obj["payload"]))
        obj["payload"] = _b64(payload)

    return _edit(envelope, edit)


def _replace_once(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        if data.count(old) != 1:
            raise AssertionError(f"{old!r} is not in the payload exactly once")
        return data.replace(old, new)

    return change


def _note(body: str, signer: Signer = REGISTRY) -> bytes:
    return signer.sign_note(body.encode())


def _checkpoint_body(size: int, origin: str = ORIGIN, extensions: tuple[str, ...] = ()) -> str:
    return Checkpoint(origin, size, _root(size), extensions).body().decode()


def _sig_line(note: bytes) -> str:
    """The last signature line of a note (with its newline)."""
    lines = note.decode().splitlines(keepends=True)
    return lines[-1]


def _replace_last_line(note: bytes, line: bytes) -> bytes:
    """``note`` with its last signature line replaced by ``line``."""
    return note[: note.rstrip(b"\n").rindex(b"\n") + 1] + line


def _bytes_field(name: str, data: bytes) -> dict[str, str]:
    """``name``: the bytes as text when they are UTF-8; ``name_base64`` otherwise."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": _b64(data)}


# --- checkpoints ------------------------------------------------------------------------------

CHECKPOINT = _note(_checkpoint_body(SIZE))


def checkpoint_cases() -> list[VectorCase]:
    body = _checkpoint_body(SIZE)
    sig = _sig_line(CHECKPOINT)
    cases: list[tuple[str, str, bytes, bytes | None, str]] = []

    def add(name: str, description: str, note: bytes, held: bytes | None, expected: str) -> None:
        cases.append((name, description, note, held, expected))

    add("valid", "the registry's checkpoint at tree size 1234", CHECKPOINT, None, "valid")
    add(
        "valid-empty-registry",
        "a new registry's first checkpoint: size 0, the root of the empty tree (SHA-256 of "
        "nothing)",
        _note(_checkpoint_body(0)),
        None,
        "valid",
    )
    add(
        "valid-extension-line",
        "a checkpoint with an extension line after the root hash",
        _note(_checkpoint_body(SIZE, extensions=("timestamp 1772438400",))),
        None,
        "valid",
    )
    witness_line = _sig_line(WITNESS.sign_note(body.encode()))
    add(
        "valid-cosigned-by-unknown-key",
        "a witness's signature line (a key the verifier does not know) before the registry's: "
        "ignored",
        (body + "\n" + witness_line + sig).encode(),
        None,
        "valid",
    )
    add(
        "valid-advances-held",
        "the verifier holds the checkpoint at size 1000; 1234 grows the tree",
        CHECKPOINT,
        _note(_checkpoint_body(1000)),
        "valid",
    )
    add(
        "valid-same-as-held",
        "the same checkpoint as the one held: nothing new, no error",
        CHECKPOINT,
        CHECKPOINT,
        "valid",
    )
    add(
        "body-size-altered",
        "the tree size changed to 1235 after signing",
        CHECKPOINT.replace(b"\n1234\n", b"\n1235\n", 1),
        None,
        "BadSignatureError",
    )
    root = _b64(_root(SIZE)).encode()
    add(
        "body-root-altered",
        "the root hash replaced by another tree's after signing",
        CHECKPOINT.replace(root, _b64(_root(SIZE + 1)).encode(), 1),
        None,
        "BadSignatureError",
    )
    blob = bytearray(base64.b64decode(sig.split(" ")[2]))
    blob[40] ^= 0x01
    add(
        "signature-altered",
        "one bit of the Ed25519 signature flipped (the key id kept)",
        (body + "\n" + f"\u2014 {ORIGIN} {_b64(bytes(blob))}\n").encode(),
        None,
        "BadSignatureError",
    )
    add(
        "signed-by-another-key",
        "signed by another key under the registry's name: its key id differs, so no line is "
        "by the trusted key",
        _note(body, REGISTRY_IMPOSTOR),
        None,
        "BadSignatureError",
    )
    other = base64.b64decode(_sig_line(_note(body, REGISTRY_IMPOSTOR)).split(" ")[2])
    add(
        "other-signature-under-trusted-key-id",
        "another key's signature presented with the registry key's id: a line by the trusted "
        "key that does not verify",
        (body + "\n" + f"\u2014 {ORIGIN} {_b64(REGISTRY.verifier.id + other[4:])}\n").encode(),
        None,
        "BadSignatureError",
    )
    add(
        "no-signature",
        "the body and the blank line, and no signature line",
        (body + "\n").encode(),
        None,
        "BadSignatureError",
    )
    add(
        "wrong-origin",
        "signed by the registry key, but naming another log as its origin",
        _note(_checkpoint_body(SIZE, origin="elsewhere.example/log")),
        None,
        "WrongOriginError",
    )
    add(
        "rollback",
        "the verifier holds size 1234; this checkpoint (genuine) is of size 1000",
        _note(_checkpoint_body(1000)),
        CHECKPOINT,
        "RollbackError",
    )
    forked = Checkpoint(ORIGIN, SIZE, hashlib.sha256(b"another history").digest()).body()
    add(
        "fork",
        "the verifier holds size 1234; this checkpoint (signed by the registry key) shows "
        "another root for the same size",
        _note(forked.decode()),
        CHECKPOINT,
        "ForkError",
    )
    add(
        "no-blank-line",
        "the signature line follows the body with no blank line between",
        (body + sig).encode(),
        None,
        "MalformedError",
    )
    add(
        "no-final-newline",
        "the note does not end with a newline",
        CHECKPOINT[:-1],
        None,
        "MalformedError",
    )
    add(
        "signature-line-without-em-dash",
        "the signature line starts with '-' (U+002D) instead of '\u2014' (U+2014)",
        (body + "\n" + "-" + sig[1:]).encode(),
        None,
        "MalformedError",
    )
    add(
        "signature-not-base64",
        "the signature field is not base64",
        (body + "\n" + f"\u2014 {ORIGIN} not*base64\n").encode(),
        None,
        "MalformedError",
    )
    add(
        "signature-too-short",
        "the signature field holds the key id only",
        (body + "\n" + f"\u2014 {ORIGIN} {_b64(REGISTRY.verifier.id)}\n").encode(),
        None,
        "MalformedError",
    )
    add(
        "not-utf8",
        "a byte that is not UTF-8 in the body",
        b"\xff" + CHECKPOINT,
        None,
        "MalformedError",
    )
    add(
        "size-with-leading-zero",
        "signed, but the tree size is written 01234",
        _note(body.replace("\n1234\n", "\n01234\n")),
        None,
        "MalformedError",
    )
    add(
        "root-hash-31-bytes",
        "signed, but the root hash is 31 bytes",
        _note(f"{ORIGIN}\n{SIZE}\n{_b64(_root(SIZE)[:31])}\n"),
        None,
        "MalformedError",
    )
    add(
        "two-lines",
        "signed, but the body has no root hash line",
        _note(f"{ORIGIN}\n{SIZE}\n"),
        None,
        "MalformedError",
    )
    out: list[VectorCase] = []
    for name, description, note, held, expected in cases:
        case: VectorCase = {
            "name": name,
            "description": description,
            "verifier_key": REGISTRY.verifier.text,
            "origin": ORIGIN,
            "held": None if held is None else held.decode(),
            **_bytes_field("note", note),
            "expected": expected,
        }
        if expected == "valid":
            parsed = Checkpoint.from_body(note.decode().split("\n\n")[0].encode() + b"\n")
            case["result"] = {
                "origin": parsed.origin,
                "size": parsed.size,
                "root_hash": _b64(parsed.root_hash),
            }
        out.append(case)
    return out


# --- status records ---------------------------------------------------------------------------

FLAGGED_ENVELOPE = _status(FLAGGED_RECORD)
BUILDING_ENVELOPE = _status(BUILDING_RECORD)
VILLAGE_ENVELOPE = _status(VILLAGE_RECORD)

# --- the registry head: the log, the status map, the cosigned time ----------------------------

MAP_SERIAL = 17  # the registry's 17th head
MAP_ENTRIES: dict[str, bytes] = {
    FLAGGED: hashlib.sha256(FLAGGED_ENVELOPE).digest(),
    BUILDING: hashlib.sha256(BUILDING_ENVELOPE).digest(),
    VILLAGE: hashlib.sha256(VILLAGE_ENVELOPE).digest(),
    **{f"110228-0100-{i:04d}": hashlib.sha256(b"vector record %d" % i).digest() for i in range(37)},
}  # 40 entries: three real records, and stand-ins (the map holds digests only)
STATUS_MAP = StatusMap(MAP_ENTRIES.items())
COSIGNED = datetime(2026, 3, 4, 9, 14, 48, tzinfo=UTC)  # 42.25 s before AT


def _head_body(
    size: int = SIZE,
    serial: int = MAP_SERIAL,
    status_map: StatusMap = STATUS_MAP,
    origin: str = ORIGIN,
) -> bytes:
    line = MapHead(serial, len(status_map), status_map.root()).line()
    return Checkpoint(origin, size, _root(size), (line,)).body()


def _cosigned(body: bytes, at: datetime = COSIGNED, signer: Signer = REGISTRY) -> bytes:
    """A head: ``body`` signed by ``signer``, then cosigned by it at ``at``."""
    return signer.sign_note(body) + signer.cosign(body, int(at.timestamp()))


HEAD = _cosigned(_head_body())
"""The head every status record and receipt vector rests on: tree size 1234, map serial 17."""


def _payload_json(record: StatusRecord) -> dict[str, Any]:
    return record.to_json()


def _signed_status_payload(obj: Any) -> bytes:
    """A status-typed envelope the registry key signed over ``obj`` (a bad payload)."""
    payload = obj if isinstance(obj, bytes) else canonical_json(obj)
    return _envelope(REGISTRY, payload, STATUS_PAYLOAD_TYPE)


def _with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = _payload_json(FLAGGED_RECORD)
    change(obj)
    return obj


def status_record_cases() -> list[VectorCase]:
    cases: list[VectorCase] = []

    def add(
        name: str,
        description: str,
        envelope: bytes,
        expected: str,
        *,
        structure_id: str = FLAGGED,
        held: bytes | None = None,
        at: datetime = AT,
    ) -> None:
        case: VectorCase = {
            "name": name,
            "description": description,
            "registry_key": REGISTRY.verifier.text,
            "checkpoint": HEAD.decode(),
            "structure_id": structure_id,
            "held": None if held is None else held.decode(),
            "at": format_time(at),
            **_bytes_field("envelope", envelope),
            "expected": expected,
        }
        if expected == "valid":
            payload = base64.b64decode(json.loads(envelope)["payload"].translate(_URLSAFE))
            case["result"] = {
                "payload": json.loads(payload),
                "envelope_sha256": hashlib.sha256(envelope).hexdigest(),
            }
        cases.append(case)

    add(
        "valid",
        "an urban structure with a revoked construction planning permit and a stop order; "
        "its address is not ASCII",
        FLAGGED_ENVELOPE,
        "valid",
    )
    add(
        "valid-village-no-permits",
        "a village structure with no permits and no cases",
        _status(VILLAGE_RECORD),
        "valid",
        structure_id=VILLAGE,
    )
    add(
        "valid-permit-with-expiry",
        "an urban structure under construction: a permit with an expiry, a declared use",
        BUILDING_ENVELOPE,
        "valid",
        structure_id=BUILDING,
    )
    add(
        "valid-tree-size-equals-checkpoint",
        "a record showing exactly the checkpoint's tree size",
        _status(replace(FLAGGED_RECORD, tree_size=SIZE)),
        "valid",
    )
    add(
        "valid-newer-than-held",
        "the verifier holds this structure's record at tree size 900; this one shows 1200",
        FLAGGED_ENVELOPE,
        "valid",
        held=_status(replace(FLAGGED_RECORD, tree_size=900)),
    )
    earlier = SIGNED - timedelta(days=3)
    signed_earlier = replace(
        FLAGGED_RECORD, this_update=earlier, next_update=earlier + timedelta(days=7)
    )
    add(
        "valid-re-signed-later",
        "the same tree size as the record held, re-signed later (a refresh): not a rollback",
        FLAGGED_ENVELOPE,
        "valid",
        held=_status(signed_earlier),
    )

    def urlsafe(obj: dict[str, Any]) -> None:
        obj["payload"] = obj["payload"].translate(_TO_URLSAFE)
        obj["signatures"][0]["sig"] = obj["signatures"][0]["sig"].translate(_TO_URLSAFE)

    urlsafe_envelope = _edit(FLAGGED_ENVELOPE, urlsafe)
    if b"-" not in urlsafe_envelope and b"_" not in urlsafe_envelope:
        raise AssertionError("the URL-safe case shows no URL-safe character")
    add(
        "valid-urlsafe-base64",
        "payload and signature in URL-safe base64 (with padding), as DSSE allows",
        urlsafe_envelope,
        "valid",
    )

    def extra_fields(obj: dict[str, Any]) -> None:
        obj["comment"] = "unknown members are ignored"
        obj["signatures"][0]["note"] = "so are these"

    add(
        "valid-unknown-envelope-fields",
        "unknown members in the envelope and in its signature object",
        _edit(FLAGGED_ENVELOPE, extra_fields),
        "valid",
    )
    stranger = json.loads(_status(FLAGGED_RECORD, WITNESS))["signatures"][0]

    def two_signatures(obj: dict[str, Any]) -> None:
        obj["signatures"].insert(0, stranger)

    add(
        "valid-second-signature-trusted",
        "two signatures: the first by a key the verifier does not know, the second the registry's",
        _edit(FLAGGED_ENVELOPE, two_signatures),
        "valid",
    )
    add(
        "payload-altered",
        "the revoked permit rewritten as valid after signing (signature kept)",
        _repayload(FLAGGED_ENVELOPE, _replace_once(b'"status":"revoked"', b'"status":"valid"')),
        "BadSignatureError",
    )
    add(
        "signature-altered",
        "one bit of the signature flipped",
        _flip_signature(FLAGGED_ENVELOPE),
        "BadSignatureError",
    )
    add(
        "signed-by-another-key",
        "signed by another key under the registry's name (its keyid differs)",
        _status(FLAGGED_RECORD, REGISTRY_IMPOSTOR),
        "BadSignatureError",
    )
    add(
        "signed-by-the-gate",
        "signed by the gate's key, which signs receipts, not status records",
        _status(FLAGGED_RECORD, GATE),
        "BadSignatureError",
    )
    impostor_sig = json.loads(_status(FLAGGED_RECORD, REGISTRY_IMPOSTOR))["signatures"][0]["sig"]

    def impostor_under_our_keyid(obj: dict[str, Any]) -> None:
        obj["signatures"][0]["sig"] = impostor_sig

    add(
        "other-signature-under-trusted-keyid",
        "another key's signature under the registry key's keyid",
        _edit(FLAGGED_ENVELOPE, impostor_under_our_keyid),
        "BadSignatureError",
    )

    def no_keyid(obj: dict[str, Any]) -> None:
        obj["signatures"][0]["keyid"] = ""

    add(
        "genuine-signature-without-keyid",
        "the registry's genuine signature with an empty keyid: the keyid selects the key, so "
        "no signature is by the trusted key",
        _edit(FLAGGED_ENVELOPE, no_keyid),
        "BadSignatureError",
    )

    def no_signatures(obj: dict[str, Any]) -> None:
        obj["signatures"] = []

    add(
        "no-signatures",
        "an empty signatures list",
        _edit(FLAGGED_ENVELOPE, no_signatures),
        "BadSignatureError",
    )
    add(
        "wrong-payload-type",
        "signed by the registry key, but as a receipt's payload type",
        _envelope(REGISTRY, canonical_json(FLAGGED_RECORD.to_json()), RECEIPT_PAYLOAD_TYPE),
        "MalformedError",
    )

    def relabel(obj: dict[str, Any]) -> None:
        obj["payloadType"] = STATUS_PAYLOAD_TYPE

    add(
        "payload-type-rewritten",
        "signed as another payload type, then relabelled as a status record: the PAE differs",
        _edit(
            _envelope(REGISTRY, canonical_json(FLAGGED_RECORD.to_json()), "application/json"),
            relabel,
        ),
        "BadSignatureError",
    )
    add(
        "filed-under-another-structure",
        f"a genuine record of {BUILDING}, filed under {FLAGGED}",
        BUILDING_ENVELOPE,
        "WrongStructureError",
    )
    add(
        "tree-size-beyond-checkpoint",
        f"a genuine record showing tree size {SIZE + 1}, with the checkpoint at {SIZE}",
        _status(replace(FLAGGED_RECORD, tree_size=SIZE + 1)),
        "FromTheFutureError",
    )
    add(
        "older-than-held",
        "a genuine record at tree size 900, the verifier holding this structure's record at 1200",
        _status(replace(FLAGGED_RECORD, tree_size=900)),
        "RollbackError",
        held=FLAGGED_ENVELOPE,
    )
    add(
        "same-size-signed-earlier-than-held",
        "a genuine record at the tree size held, but signed earlier than the one held",
        _status(signed_earlier),
        "RollbackError",
        held=FLAGGED_ENVELOPE,
    )
    add(
        "expired",
        "relied on at its next_update exactly: a record is good until just before then",
        FLAGGED_ENVELOPE,
        "ExpiredError",
        at=NEXT,
    )
    add("envelope-not-json", "the envelope is not JSON", b"{payload:", "MalformedError")
    add("envelope-not-object", "the envelope is a JSON array", b"[]", "MalformedError")

    def bad_payload_base64(obj: dict[str, Any]) -> None:
        obj["payload"] = "not*base64"

    add(
        "payload-not-base64",
        "the payload field is not base64",
        _edit(FLAGGED_ENVELOPE, bad_payload_base64),
        "MalformedError",
    )
    add(
        "payload-not-json",
        "signed, but the payload is not JSON",
        _signed_status_payload(b"structure: 110228-0042-0007"),
        "MalformedError",
    )
    add(
        "payload-missing-tree-size",
        "signed, but the payload has no tree_size",
        _signed_status_payload(_with(lambda o: o.pop("tree_size"))),
        "MalformedError",
    )
    add(
        "payload-tree-size-string",
        "signed, but tree_size is a string",
        _signed_status_payload(_with(lambda o: o.update(tree_size=str(RECORD_SIZE)))),
        "MalformedError",
    )
    add(
        "payload-unknown-permit-status",
        "signed, but a permit's status is not one of valid, suspended, revoked",
        _signed_status_payload(_with(lambda o: o["permits"][0].update(status="cancelled"))),
        "MalformedError",
    )
    add(
        "payload-time-without-offset",
        "signed, but this_update has no UTC offset",
        _signed_status_payload(_with(lambda o: o.update(this_update="2026-03-02T08:00:00"))),
        "MalformedError",
    )
    add(
        "payload-next-update-not-after-this-update",
        "signed, but next_update equals this_update",
        _signed_status_payload(_with(lambda o: o.update(next_update=o["this_update"]))),
        "MalformedError",
    )
    add(
        "payload-another-structures-permit",
        "signed, but one permit names another structure",
        _signed_status_payload(_with(lambda o: o["permits"][0].update(structure=BUILDING))),
        "MalformedError",
    )
    return cases


_TO_URLSAFE = str.maketrans("+/", "-_")
_URLSAFE = str.maketrans("-_", "+/")

# --- receipts ---------------------------------------------------------------------------------

DECIDED = AT


def _reason(
    code: str,
    message: str,
    *,
    permit_kind: str | None = None,
    case_id: str | None = None,
    article: int = 23,
) -> dict[str, Any]:
    return {
        "code": code,
        "article": article,
        "permit_kind": permit_kind,
        "case_id": case_id,
        "message": message,
    }


DENY_RECEIPT = Receipt(
    decision_id="D-5f0c2a9e41b7-1",
    decided_at=DECIDED,
    check={
        "type": "connection",
        "structure_id": FLAGGED,
        "utility": "water",
        "kind": "permanent",
        "requested_until": None,
        "application_id": "WATER-2026-000417",
    },
    verdict="DENY",
    reasons=(
        _reason(
            "PERMIT_REVOKED",
            "no construction_planning in force: permit P-2020-0117 was revoked",
            permit_kind="construction_planning",
        ),
        _reason(
            "STRUCTURE_FLAGGED",
            "structure flagged by case C-2026-0042 (stop_order)",
            case_id="C-2026-0042",
        ),
    ),
    valid_until=None,
    notification_id=None,
    checkpoint_note=HEAD,
    status_record_sha256=hashlib.sha256(FLAGGED_ENVELOPE).hexdigest(),
    status_record_tree_size=RECORD_SIZE,
)


def _receipt(receipt: Receipt, signer: Signer = GATE, kind: str = RECEIPT_PAYLOAD_TYPE) -> bytes:
    return _envelope(signer, receipt_payload(receipt), kind)


def _signed_receipt_payload(obj: Any) -> bytes:
    payload = obj if isinstance(obj, bytes) else canonical_json(obj)
    return _envelope(GATE, payload, RECEIPT_PAYLOAD_TYPE)


def _receipt_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = DENY_RECEIPT.to_json()
    change(obj)
    return obj


def _cosigned_time(note: bytes) -> datetime | None:
    """The time of a note's cosignature line (76 bytes: key id, u64 time, signature), by hand."""
    for line in note.decode().splitlines():
        if line.startswith("\u2014 "):
            blob = base64.b64decode(line.split(" ")[2])
            if len(blob) == 76:
                return datetime.fromtimestamp(int.from_bytes(blob[4:12], "big"), UTC)
    return None


# --- gate key statements ----------------------------------------------------------------------

ROGUE_GATE = _signer("gate.example/rogue", "rogue gate")  # a gate the registry never vouched for
VOUCHED_FROM = datetime(2026, 3, 1, tzinfo=UTC)
VOUCHED_UNTIL = datetime(2026, 3, 31, tzinfo=UTC)


def _statement_payload(
    gate_key: str = GATE.verifier.text,
    not_before: datetime = VOUCHED_FROM,
    not_after: datetime = VOUCHED_UNTIL,
) -> dict[str, Any]:
    return {
        "gate_key": gate_key,
        "not_before": format_time(not_before),
        "not_after": format_time(not_after),
    }


def _statement(
    payload: dict[str, Any] | bytes | None = None,
    signer: Signer = REGISTRY,
    kind: str = GATE_KEY_PAYLOAD_TYPE,
) -> bytes:
    """A gate key statement: the registry key's DSSE envelope over the payload."""
    body = (
        payload if isinstance(payload, bytes) else canonical_json(payload or _statement_payload())
    )
    return _envelope(signer, body, kind)


STATEMENT = _statement()
"""The registry vouches for GATE's key from 2026-03-01 until 2026-03-31."""


def _vouched(statement: bytes = STATEMENT, **changes: Any) -> Receipt:
    return replace(DENY_RECEIPT, gate_key_statement=json.loads(statement), **changes)


def receipt_cases() -> list[VectorCase]:
    cases: list[VectorCase] = []
    keyset: dict[str, str | None] = {
        "registry_key": REGISTRY.verifier.text,
        "gate_key": GATE.verifier.text,
    }
    registry_only: dict[str, str | None] = {
        "registry_key": REGISTRY.verifier.text,
        "gate_key": None,
    }

    def add(
        name: str,
        description: str,
        envelope: bytes,
        expected: str,
        keys: dict[str, str | None] = keyset,
    ) -> None:
        case: VectorCase = {
            "name": name,
            "description": description,
            "keyset": keys,
            **_bytes_field("receipt", envelope),
            "expected": expected,
        }
        if expected == "valid":
            payload = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
            statement = payload.get("gate_key_statement")
            vouched = (
                None if statement is None else json.loads(base64.b64decode(statement["payload"]))
            )
            gate_key = str(keys["gate_key"]) if vouched is None else vouched["gate_key"]
            cosigned = _cosigned_time(payload["registry"]["checkpoint"].encode())
            age = None if cosigned is None else (parse_time(payload["decided_at"]) - cosigned)
            case["result"] = {
                "payload": payload,
                "checkpoint_size": SIZE,
                "gate_key_id": gate_key.rsplit("+", 1)[0],
                "gate_key_valid_until": None if vouched is None else vouched["not_after"],
                "cosigned_at": None if cosigned is None else format_time(cosigned),
                "data_age_seconds": None if age is None else age.total_seconds(),
            }
        cases.append(case)

    deny = _receipt(DENY_RECEIPT)
    add(
        "valid-deny",
        "a water connection refused (revoked planning permit, stop order), resting on the "
        "status record of status-records.json 'valid'",
        deny,
        "valid",
    )
    add(
        "valid-not-in-registry",
        "a structure the registry does not hold: no status record",
        _receipt(
            replace(
                DENY_RECEIPT,
                decision_id="D-5f0c2a9e41b7-2",
                check={**DENY_RECEIPT.check, "structure_id": "110228-9999-9999"},
                reasons=(_reason("NOT_IN_REGISTRY", "structure not in the registry"),),
                status_record_sha256=None,
                status_record_tree_size=None,
            )
        ),
        "valid",
    )
    until = _t("2026-06-01T00:00:00Z")
    add(
        "valid-allow-temporary",
        "construction-period water supply: ALLOW_TEMPORARY until the requested end",
        _receipt(
            replace(
                DENY_RECEIPT,
                decision_id="D-5f0c2a9e41b7-3",
                check={
                    "type": "connection",
                    "structure_id": BUILDING,
                    "utility": "water",
                    "kind": "temporary",
                    "requested_until": format_time(until),
                    "application_id": "WATER-2026-000418",
                },
                verdict="ALLOW_TEMPORARY",
                reasons=(),
                valid_until=until,
                status_record_sha256=hashlib.sha256(BUILDING_ENVELOPE).hexdigest(),
                status_record_tree_size=BUILDING_RECORD.tree_size,
            )
        ),
        "valid",
    )
    add(
        "valid-notify",
        "a tax office's premises check: NOTIFY, with the notification recorded for the "
        "working group",
        _receipt(
            replace(
                DENY_RECEIPT,
                decision_id="D-5f0c2a9e41b7-4",
                check={
                    "type": "premises",
                    "structure_id": FLAGGED,
                    "office": "tax",
                    "declared_use": "restaurant",
                    "application_id": "TAX-L-2026-0093",
                },
                verdict="NOTIFY",
                reasons=(
                    _reason(
                        "MISSING_PERMIT",
                        "no construction_planning in force: permit P-2020-0117 was revoked",
                        permit_kind="construction_planning",
                        article=13,
                    ),
                    _reason(
                        "MISSING_PERMIT",
                        "no property_ownership in force: none on record",
                        permit_kind="property_ownership",
                        article=13,
                    ),
                    _reason(
                        "STRUCTURE_FLAGGED",
                        "structure flagged by case C-2026-0042 (stop_order)",
                        case_id="C-2026-0042",
                        article=13,
                    ),
                ),
                notification_id="N-2026-000031",
            )
        ),
        "valid",
    )
    add(
        "valid-registration",
        "a transfer registration refused by the housing registry (Art. 11)",
        _receipt(
            replace(
                DENY_RECEIPT,
                decision_id="D-5f0c2a9e41b7-5",
                check={
                    "type": "registration",
                    "structure_id": FLAGGED,
                    "kind": "transfer",
                    "application_id": "REG-2026-7731",
                },
                reasons=(
                    _reason(
                        "MISSING_PERMIT",
                        "no property_ownership in force: none on record",
                        permit_kind="property_ownership",
                        article=11,
                    ),
                    _reason(
                        "STRUCTURE_FLAGGED",
                        "structure flagged by case C-2026-0042 (stop_order)",
                        case_id="C-2026-0042",
                        article=11,
                    ),
                ),
            )
        ),
        "valid",
    )
    add(
        "verdict-altered",
        "the verdict rewritten from DENY to ALLOW after signing (signature kept)",
        _repayload(deny, _replace_once(b'"verdict":"DENY"', b'"verdict":"ALLOW"')),
        "BadSignatureError",
    )
    add(
        "application-id-altered",
        "the application id rewritten after signing",
        _repayload(deny, _replace_once(b"WATER-2026-000417", b"WATER-2026-000999")),
        "BadSignatureError",
    )
    add(
        "signature-altered",
        "one bit of the gate's signature flipped",
        _flip_signature(deny),
        "BadSignatureError",
    )
    add(
        "signed-by-another-gate-key",
        "signed by another key under the gate's name",
        _receipt(DENY_RECEIPT, GATE_IMPOSTOR),
        "BadSignatureError",
    )
    add(
        "signed-by-the-registry",
        "signed by the registry's key, which signs checkpoints and status records, not receipts",
        _receipt(DENY_RECEIPT, REGISTRY),
        "BadSignatureError",
    )
    add(
        "wrong-payload-type",
        "signed by the gate, but as a status record's payload type",
        _receipt(DENY_RECEIPT, GATE, STATUS_PAYLOAD_TYPE),
        "MalformedError",
    )
    add(
        "checkpoint-by-another-key",
        "signed by the gate, but the checkpoint inside is signed by another key under the "
        "registry's name",
        _receipt(
            replace(DENY_RECEIPT, checkpoint_note=_cosigned(_head_body(), signer=REGISTRY_IMPOSTOR))
        ),
        "BadSignatureError",
    )
    add(
        "checkpoint-altered",
        "signed by the gate, but the checkpoint inside had its tree size changed after the "
        "registry signed it",
        _receipt(replace(DENY_RECEIPT, checkpoint_note=HEAD.replace(b"\n1234\n", b"\n1300\n"))),
        "BadSignatureError",
    )
    add(
        "checkpoint-of-another-origin",
        "signed by the gate; the checkpoint inside is signed by the registry key but names "
        "another origin than the key's name",
        _receipt(
            replace(
                DENY_RECEIPT,
                checkpoint_note=_cosigned(_head_body(origin="elsewhere.example/log")),
            )
        ),
        "WrongOriginError",
    )
    add(
        "status-record-beyond-checkpoint",
        "signed by the gate, citing a status record of tree size 1235 with the checkpoint at 1234",
        _receipt(replace(DENY_RECEIPT, status_record_tree_size=SIZE + 1)),
        "FromTheFutureError",
    )
    add(
        "checkpoint-not-a-note",
        "signed by the gate, but the checkpoint inside has no signature block",
        _receipt(replace(DENY_RECEIPT, checkpoint_note=_head_body())),
        "MalformedError",
    )
    add("envelope-not-json", "the receipt is not JSON", b"DSSEv1 receipt", "MalformedError")
    add(
        "payload-not-json",
        "signed by the gate, but the payload is not JSON",
        _signed_receipt_payload(b"verdict=DENY"),
        "MalformedError",
    )
    add(
        "payload-missing-decided-at",
        "signed by the gate, but the payload has no decided_at",
        _signed_receipt_payload(_receipt_with(lambda o: o.pop("decided_at"))),
        "MalformedError",
    )
    add(
        "payload-time-without-offset",
        "signed by the gate, but decided_at has no UTC offset",
        _signed_receipt_payload(
            _receipt_with(lambda o: o.update(decided_at="2026-03-04T09:15:30.25"))
        ),
        "MalformedError",
    )
    add(
        "payload-tree-size-string",
        "signed by the gate, but the status record's tree_size is a string",
        _signed_receipt_payload(
            _receipt_with(lambda o: o["status_record"].update(tree_size=str(RECORD_SIZE)))
        ),
        "MalformedError",
    )
    add(
        "payload-notification-id-number",
        "signed by the gate, but notification_id is a number",
        _signed_receipt_payload(_receipt_with(lambda o: o.update(notification_id=31))),
        "MalformedError",
    )
    add(
        "payload-verdict-not-a-string",
        "signed by the gate, but the verdict is a number",
        _signed_receipt_payload(_receipt_with(lambda o: o.update(verdict=5))),
        "MalformedError",
    )
    add(
        "valid-checkpoint-before-heads",
        "a receipt of a gate that held a plain checkpoint (no status map line, no cosignature): "
        "it verifies, and the data's age cannot be told",
        _receipt(replace(DENY_RECEIPT, checkpoint_note=CHECKPOINT)),
        "valid",
    )
    blob = bytearray(base64.b64decode(HEAD.decode().splitlines()[-1].split(" ")[2]))
    blob[20] ^= 0x01
    cosignature = f"\u2014 {ORIGIN} {_b64(bytes(blob))}\n".encode()
    add(
        "head-cosignature-altered",
        "signed by the gate; one bit of the head's cosignature (not of its time) flipped",
        _receipt(replace(DENY_RECEIPT, checkpoint_note=_replace_last_line(HEAD, cosignature))),
        "BadSignatureError",
    )
    add(
        "head-map-line-malformed",
        "signed by the gate; the head (signed and cosigned by the registry) has an extension "
        "line that is not a status map line",
        _receipt(
            replace(
                DENY_RECEIPT,
                checkpoint_note=_cosigned(
                    Checkpoint(ORIGIN, SIZE, _root(SIZE), ("map seventeen",)).body()
                ),
            )
        ),
        "MalformedError",
    )
    # Gate keys the registry vouches for: verified with the registry key alone.
    add(
        "valid-vouched",
        "the registry's statement vouches for the gate's key: the registry key alone verifies "
        "the receipt",
        _receipt(_vouched(decision_id="D-5f0c2a9e41b7-6")),
        "valid",
        registry_only,
    )
    add(
        "valid-vouched-keyset-of-another-gate",
        "a vouched receipt checked with a KeySet holding another gate's key: the statement, "
        "not the KeySet, names the key that signs",
        _receipt(_vouched(decision_id="D-5f0c2a9e41b7-7")),
        "valid",
        {"registry_key": REGISTRY.verifier.text, "gate_key": ROGUE_GATE.verifier.text},
    )
    add(
        "vouched-statement-expired",
        "decided on 2026-03-04, under a statement that ended on 2026-03-01 (the gate key was "
        "retired, or not renewed)",
        _receipt(
            _vouched(
                _statement(
                    _statement_payload(
                        not_before=datetime(2026, 2, 1, tzinfo=UTC), not_after=VOUCHED_FROM
                    )
                )
            )
        ),
        "ExpiredError",
        registry_only,
    )
    add(
        "vouched-statement-not-yet-valid",
        "decided on 2026-03-04, under a statement valid from 2026-03-05 only",
        _receipt(
            _vouched(_statement(_statement_payload(not_before=datetime(2026, 3, 5, tzinfo=UTC))))
        ),
        "ExpiredError",
        registry_only,
    )
    add(
        "rogue-gate-not-vouched",
        "a gate with a key of its own, which the registry never vouched for, and the genuine "
        "registry data: no statement, and only the registry key to verify with",
        _receipt(DENY_RECEIPT, ROGUE_GATE),
        "BadSignatureError",
        registry_only,
    )
    add(
        "rogue-gate-copies-a-statement",
        "the rogue gate puts the genuine statement of another gate's key into its receipt: the "
        "statement verifies, the receipt's signature is not by the key it names",
        _receipt(_vouched(), ROGUE_GATE),
        "BadSignatureError",
        registry_only,
    )
    add(
        "rogue-gate-own-statement",
        "the rogue gate vouches for itself with a key of its own under the registry's name",
        _receipt(
            _vouched(
                _statement(_statement_payload(gate_key=ROGUE_GATE.verifier.text), REGISTRY_IMPOSTOR)
            ),
            ROGUE_GATE,
        ),
        "BadSignatureError",
        registry_only,
    )
    altered = json.loads(STATEMENT)
    altered["payload"] = _b64(
        canonical_json(_statement_payload(not_after=datetime(2027, 3, 31, tzinfo=UTC)))
    )
    add(
        "statement-altered",
        "the statement's end moved a year later after the registry signed it",
        _receipt(_vouched(canonical_json(altered))),
        "BadSignatureError",
        registry_only,
    )
    add(
        "statement-wrong-payload-type",
        "the registry's signature is over a status record's payload type, not a gate key "
        "statement's",
        _receipt(_vouched(_statement(kind=STATUS_PAYLOAD_TYPE))),
        "MalformedError",
        registry_only,
    )
    add(
        "statement-ends-before-it-starts",
        "signed by the registry, but not_after is before not_before",
        _receipt(
            _vouched(
                _statement(_statement_payload(not_before=VOUCHED_UNTIL, not_after=VOUCHED_FROM))
            )
        ),
        "MalformedError",
        registry_only,
    )
    add(
        "statement-gate-key-malformed",
        "signed by the registry, but gate_key is not a verifier key",
        _receipt(_vouched(_statement(_statement_payload(gate_key="gate.example/permitgate")))),
        "MalformedError",
        registry_only,
    )
    add(
        "statement-for-the-registry-key",
        "signed by the registry key, vouching for the registry key itself as a gate key",
        _receipt(
            _vouched(_statement(_statement_payload(gate_key=REGISTRY.verifier.text))), REGISTRY
        ),
        "MalformedError",
        registry_only,
    )
    add(
        "statement-not-an-object",
        "signed by the gate, but gate_key_statement is a string",
        _signed_receipt_payload(_receipt_with(lambda o: o.update(gate_key_statement="vouched"))),
        "MalformedError",
        registry_only,
    )
    return cases


# --- the status map: proofs and roots ---------------------------------------------------------


def _absent_ids() -> tuple[str, str]:
    """Two ids the vector map does not hold: the search for the first ends in an empty
    subtree, for the second at another structure's entry."""
    empty = other = None
    for i in range(10_000):
        sid = f"110228-9999-{i:04d}"
        terminal = STATUS_MAP.prove(sid).terminal
        if terminal is None and empty is None:
            empty = sid
        if terminal is not None and other is None:
            other = sid
        if empty and other:
            return empty, other
    raise AssertionError("no absent ids found")


def _flip_at(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def map_proof_cases() -> list[VectorCase]:
    cases: list[VectorCase] = []
    root = STATUS_MAP.root()

    def add(
        name: str,
        description: str,
        structure_id: str,
        value: bytes | None,
        proof: bytes,
        expected: str,
        map_root: bytes = root,
    ) -> None:
        case: VectorCase = {
            "name": name,
            "description": description,
            "root": _b64(map_root),
            "structure_id": structure_id,
            "value": None if value is None else value.hex(),
            "proof_base64": _b64(proof),
            "expected": expected,
        }
        if expected == "valid":
            case["result"] = {"present": value is not None}
        cases.append(case)

    flagged, building = MAP_ENTRIES[FLAGGED], MAP_ENTRIES[BUILDING]
    proof = STATUS_MAP.prove(FLAGGED).to_bytes()
    empty_id, other_id = _absent_ids()
    absent_empty = STATUS_MAP.prove(empty_id).to_bytes()
    absent_other = STATUS_MAP.prove(other_id).to_bytes()
    add(
        "valid-present",
        "the record of 110228-0042-0007 (status-records.json 'valid') in the head's map",
        FLAGGED,
        flagged,
        proof,
        "valid",
    )
    add(
        "valid-present-village",
        "the record of 110228-0042-0100 in the head's map",
        VILLAGE,
        MAP_ENTRIES[VILLAGE],
        STATUS_MAP.prove(VILLAGE).to_bytes(),
        "valid",
    )
    add(
        "valid-absent-empty-subtree",
        "a structure the registry does not hold: the search ends in an empty subtree",
        empty_id,
        None,
        absent_empty,
        "valid",
    )
    add(
        "valid-absent-other-entry",
        "a structure the registry does not hold: the search ends at another structure's entry",
        other_id,
        None,
        absent_other,
        "valid",
    )
    add(
        "valid-empty-map",
        "the map of a registry with no structures: root 32 zero bytes, the proof of any id "
        "has no siblings and ends in the empty tree",
        FLAGGED,
        None,
        StatusMap().prove(FLAGGED).to_bytes(),
        "valid",
        StatusMap().root(),
    )
    single = StatusMap([(FLAGGED, flagged)])
    add(
        "valid-one-entry-map",
        "a map of one entry: its root is that entry's leaf hash, its proof has no siblings",
        FLAGGED,
        flagged,
        single.prove(FLAGGED).to_bytes(),
        "valid",
        single.root(),
    )
    add(
        "valid-absent-in-one-entry-map",
        "a map of one entry proves every other id absent with that entry",
        BUILDING,
        None,
        single.prove(BUILDING).to_bytes(),
        "valid",
        single.root(),
    )
    add(
        "wrong-value",
        "the proof of 110228-0042-0007, checked for another record's digest",
        FLAGGED,
        building,
        proof,
        "MapMismatchError",
    )
    add(
        "present-claimed-absent",
        "the proof of 110228-0042-0007, checked as a proof that it is absent",
        FLAGGED,
        None,
        proof,
        "MapMismatchError",
    )
    add(
        "absent-claimed-present",
        "the proof of an absent id, checked as holding a record",
        empty_id,
        flagged,
        absent_empty,
        "MapMismatchError",
    )
    add(
        "another-ids-proof",
        "the proof of 110228-0042-0007, checked for 110105-0001-0006 and its record",
        BUILDING,
        building,
        proof,
        "MapMismatchError",
    )
    first_sibling = 2 + (len(STATUS_MAP.prove(FLAGGED).siblings) + 7) // 8
    add(
        "sibling-flipped",
        "one bit of the first sibling hash flipped",
        FLAGGED,
        flagged,
        _flip_at(proof, first_sibling + 3),
        "MapMismatchError",
    )
    add(
        "terminal-value-flipped",
        "one bit of the value of the entry the proof ends at flipped",
        FLAGGED,
        flagged,
        _flip_at(proof, len(proof) - 1),
        "MapMismatchError",
    )
    terminal = STATUS_MAP.prove(other_id).terminal
    assert terminal is not None
    away = bytes([terminal[0][0] ^ 0x80]) + terminal[0][1:]
    off_path = absent_other[: len(absent_other) - 64] + away + terminal[1]
    add(
        "terminal-off-path",
        "an absence proof ending at an entry whose key leaves the id's path at the root",
        other_id,
        None,
        off_path,
        "MapMismatchError",
    )
    older = StatusMap((k, v) for k, v in MAP_ENTRIES.items() if k != BUILDING)
    add(
        "another-root",
        "a genuine proof from the map before 110105-0001-0006 was added, against the head's root",
        FLAGGED,
        flagged,
        older.prove(FLAGGED).to_bytes(),
        "MapMismatchError",
    )
    add(
        "truncated",
        "the proof without its last byte",
        FLAGGED,
        flagged,
        proof[:-1],
        "MalformedError",
    )
    add(
        "trailing-byte",
        "the proof with one byte more",
        FLAGGED,
        flagged,
        proof + b"\x00",
        "MalformedError",
    )
    add("too-short", "two bytes only", FLAGGED, flagged, proof[:2], "MalformedError")
    add(
        "more-than-256-levels",
        "a count of 257 levels",
        FLAGGED,
        flagged,
        b"\x01\x01" + bytes(33) + b"\x00",
        "MalformedError",
    )
    count = int.from_bytes(proof[:2], "big")
    assert count % 8, "the vector needs a level count that is not a multiple of 8"
    past = bytearray(proof)
    past[2 + (count + 7) // 8 - 1] |= 0x80
    add(
        "bitmap-bit-past-the-last-level",
        "a bit set in the bitmap beyond the proof's last level",
        FLAGGED,
        flagged,
        bytes(past),
        "MalformedError",
    )
    hidden = bytearray(proof)
    hidden[2] |= 0x01  # sibling 0 (non-empty here) marked empty: its hash is read as the end
    assert not proof[2] & 0x01
    add(
        "bitmap-hides-a-sibling",
        "the bitmap marks a non-empty sibling empty: its 32 bytes are left over at the end",
        FLAGGED,
        flagged,
        bytes(hidden),
        "MalformedError",
    )
    add(
        "bad-terminal-tag",
        "the proof ends with tag 0x02",
        FLAGGED,
        flagged,
        proof[: len(proof) - 65] + b"\x02" + proof[len(proof) - 64 :],
        "MalformedError",
    )
    return cases


def map_root_cases() -> list[VectorCase]:
    def add(name: str, description: str, entries: dict[str, bytes]) -> VectorCase:
        return {
            "name": name,
            "description": description,
            "entries": [{"structure_id": k, "value": v.hex()} for k, v in sorted(entries.items())],
            "expected": "valid",
            "result": {"root": _b64(StatusMap(entries.items()).root()), "count": len(entries)},
        }

    return [
        add("empty", "no entries: 32 zero bytes", {}),
        add(
            "one-entry",
            "one entry: its leaf hash SHA-256(0x00 || SHA-256(id) || value), at any depth",
            {FLAGGED: MAP_ENTRIES[FLAGGED]},
        ),
        add(
            "three-records",
            "the three status records of status-records.json",
            {k: MAP_ENTRIES[k] for k in (FLAGGED, BUILDING, VILLAGE)},
        ),
        add("head", "the 40 entries of the head every other vector rests on", MAP_ENTRIES),
    ]


# --- log consistency --------------------------------------------------------------------------

LOG_LEAVES = [leaf_hash(b"vector event %d" % i) for i in range(SIZE)]


def _log_proof(old: int, new: int) -> list[bytes]:
    tree = CompactTree()
    for leaf in LOG_LEAVES[:old]:
        tree.append(leaf)
    return consistency_proof(tree, LOG_LEAVES[old:new])


def consistency_cases() -> list[VectorCase]:
    cases: list[VectorCase] = []

    def add(
        name: str,
        description: str,
        old: int,
        new: int,
        expected: str,
        *,
        proof: list[bytes] | None = None,
        old_root: bytes | None = None,
        new_root: bytes | None = None,
    ) -> None:
        cases.append(
            {
                "name": name,
                "description": description,
                "old_size": old,
                "old_root": _b64(root_of(LOG_LEAVES[:old]) if old_root is None else old_root),
                "new_size": new,
                "new_root": _b64(root_of(LOG_LEAVES[:new]) if new_root is None else new_root),
                "proof": [_b64(h) for h in (_log_proof(old, new) if proof is None else proof)],
                "expected": expected,
            }
        )

    for old, new in ((1, 2), (3, 7), (4, 8), (6, 8), (5, 13), (1000, 1234), (1233, 1234)):
        add(f"valid-{old}-{new}", f"the log at {new} extends the log at {old}", old, new, "valid")
    add("valid-equal-sizes", "the same tree: an empty proof", 1234, 1234, "valid")
    add("valid-from-empty", "every tree extends the empty tree: an empty proof", 0, 1234, "valid")
    proof = _log_proof(1000, 1234)
    other = hashlib.sha256(b"another history").digest()
    add("wrong-old-root", "another root for the old size", 1000, 1234, "ForkError", old_root=other)
    add("wrong-new-root", "another root for the new size", 1000, 1234, "ForkError", new_root=other)
    add(
        "proof-hash-flipped",
        "one bit of a proof hash flipped",
        1000,
        1234,
        "ForkError",
        proof=[proof[0], _flip_at(proof[1], 0), *proof[2:]],
    )
    add(
        "proof-truncated",
        "the proof without its last hash",
        1000,
        1234,
        "ForkError",
        proof=proof[:-1],
    )
    add(
        "proof-extended",
        "the proof with one hash more",
        1000,
        1234,
        "ForkError",
        proof=[*proof, other],
    )
    add(
        "proof-swapped",
        "two proof hashes swapped",
        1000,
        1234,
        "ForkError",
        proof=[proof[1], proof[0], *proof[2:]],
    )
    add(
        "shrinking",
        "a smaller new size than the old",
        1234,
        1000,
        "ForkError",
        proof=_log_proof(1000, 1234),
    )
    add(
        "equal-sizes-different-roots",
        "the same size with another root: the log was rewritten",
        1234,
        1234,
        "ForkError",
        new_root=other,
    )
    add(
        "proof-hash-31-bytes",
        "a proof hash one byte short",
        1000,
        1234,
        "MalformedError",
        proof=[proof[0][:31], *proof[1:]],
    )
    add("empty-proof", "no proof between different sizes", 1000, 1234, "MalformedError", proof=[])
    add(
        "equal-sizes-with-a-proof",
        "a proof between equal sizes",
        1234,
        1234,
        "MalformedError",
        proof=[other],
    )
    add(
        "from-empty-with-a-proof",
        "a proof from the empty tree",
        0,
        1234,
        "MalformedError",
        proof=[other],
    )
    return cases


# --- cosignatures and freshness ---------------------------------------------------------------

WITNESS_COSIGNER = _signer("witness.example/w1", "witness")


def cosignature_cases() -> list[VectorCase]:
    cases: list[VectorCase] = []
    body = _head_body()
    signed = REGISTRY.sign_note(body)

    def add(
        name: str,
        description: str,
        note: bytes,
        expected: str,
        *,
        at: datetime = AT,
        max_age: int = 300,
    ) -> None:
        case: VectorCase = {
            "name": name,
            "description": description,
            "registry_key": REGISTRY.verifier.text,
            "at": format_time(at),
            "max_age_seconds": max_age,
            **_bytes_field("note", note),
            "expected": expected,
        }
        if expected == "valid":
            newest = max(
                datetime.fromtimestamp(int.from_bytes(blob[4:12], "big"), UTC)
                for blob in _lines_by(note, REGISTRY.cosigner.id)
            )
            case["result"] = {
                "serial": MAP_SERIAL,
                "size": SIZE,
                "map_count": len(STATUS_MAP),
                "map_root": _b64(STATUS_MAP.root()),
                "cosigned_at": format_time(newest),
                "age_seconds": (at - newest).total_seconds(),
            }
        cases.append(case)

    def cosign(at: datetime, signer: Signer = REGISTRY, over: bytes = body) -> bytes:
        return signer.cosign(over, int(at.timestamp()))

    add(
        "valid", "cosigned 42.25 s before the verifier's time; at most 300 s allowed", HEAD, "valid"
    )
    add(
        "valid-newest-of-two",
        "two cosignatures by the registry: the newer time counts",
        signed + cosign(COSIGNED - timedelta(hours=5)) + cosign(COSIGNED),
        "valid",
    )
    add(
        "valid-witness-ignored",
        "a cosignature by another cosigner (a witness) beside the registry's: ignored",
        signed + cosign(AT, WITNESS_COSIGNER) + cosign(COSIGNED),
        "valid",
    )
    add(
        "valid-slightly-ahead",
        "cosigned 30 s after the verifier's time: within the clocks' tolerance of 60 s",
        signed + cosign(AT + timedelta(seconds=30)),
        "valid",
    )
    cosignature = cosign(COSIGNED)
    blob = base64.b64decode(cosignature.decode().split(" ")[2])
    add(
        "cosignature-altered",
        "one bit of the cosignature's Ed25519 signature flipped",
        signed + _line(_flip_at(blob, 40)),
        "BadSignatureError",
    )
    moved = blob[:4] + (int.from_bytes(blob[4:12], "big") + 3600).to_bytes(8, "big") + blob[12:]
    add(
        "cosignature-time-altered",
        "the cosigned time moved an hour later, the signature kept",
        signed + _line(moved),
        "BadSignatureError",
    )
    add(
        "cosignature-over-another-head",
        "a genuine cosignature of another head (tree size 1000) under this head's body",
        signed + cosign(COSIGNED, over=_head_body(1000)),
        "BadSignatureError",
    )
    add(
        "cosignature-with-the-note-key-id",
        "a cosignature line carrying the registry's signed-note key id (type 0x01) instead of "
        "its cosigner key id (type 0x04): read as a note signature, which does not verify",
        signed + _line(REGISTRY.verifier.id + blob[4:]),
        "BadSignatureError",
    )
    add(
        "cosignature-wrong-key-id",
        "a cosignature line under the registry's name with a key id of no known key: ignored, "
        "so the head carries no cosignature and its age cannot be shown",
        signed + _line(bytes([0, 1, 2, 3]) + blob[4:]),
        "ExpiredError",
    )
    add(
        "no-cosignature",
        "signed, never cosigned: its age cannot be shown",
        signed,
        "ExpiredError",
    )
    add(
        "too-old",
        "cosigned an hour before the verifier's time; at most 300 s allowed",
        signed + cosign(AT - timedelta(hours=1)),
        "ExpiredError",
    )
    add(
        "future-time",
        "cosigned an hour after the verifier's time: a clock is wrong, the age cannot be told",
        signed + cosign(AT + timedelta(hours=1)),
        "FromTheFutureError",
    )
    add(
        "cosignature-75-bytes",
        "a cosignature with the cosigner key id, one byte short",
        signed + _line(blob[:-1]),
        "MalformedError",
    )
    huge = blob[:4] + (1 << 63).to_bytes(8, "big") + blob[12:]
    add(
        "cosignature-time-out-of-range",
        "a cosigned time of 2^63 seconds",
        signed + _line(huge),
        "MalformedError",
    )
    add(
        "head-without-map-line",
        "a plain checkpoint (no status map line), signed and cosigned",
        _cosigned(_checkpoint_body(SIZE).encode()),
        "MalformedError",
    )
    bad_root = Checkpoint(ORIGIN, SIZE, _root(SIZE), (f"map 17 40 {_b64(bytes(31))}",)).body()
    add(
        "head-map-root-31-bytes",
        "a map line whose root is 31 bytes",
        _cosigned(bad_root),
        "MalformedError",
    )
    add(
        "head-signature-altered",
        "the head's tree size changed after signing (the cosignature over the old body too)",
        HEAD.replace(b"\n1234\n", b"\n1235\n", 1),
        "BadSignatureError",
    )
    add(
        "head-of-another-origin",
        "signed and cosigned by the registry key, but naming another log as its origin",
        _cosigned(_head_body(origin="elsewhere.example/log")),
        "WrongOriginError",
    )
    return cases


def _line(blob: bytes) -> bytes:
    """A signature line under the registry's name carrying ``blob``."""
    return f"\u2014 {ORIGIN} {_b64(blob)}\n".encode()


def _lines_by(note: bytes, key_id: bytes) -> list[bytes]:
    """The signature blobs of ``note`` whose key id is ``key_id``."""
    out = []
    for line in note.decode().split("\n\n", 1)[1].splitlines():
        blob = base64.b64decode(line.split(" ")[2])
        if blob[:4] == key_id:
            out.append(blob)
    return out


# --- gate key statements ----------------------------------------------------------------------


def gate_key_cases() -> list[VectorCase]:
    cases: list[VectorCase] = []

    def add(name: str, description: str, statement: bytes, expected: str) -> None:
        case: VectorCase = {
            "name": name,
            "description": description,
            "registry_key": REGISTRY.verifier.text,
            **_bytes_field("statement", statement),
            "expected": expected,
        }
        if expected == "valid":
            case["result"] = json.loads(base64.b64decode(json.loads(statement)["payload"]))
        cases.append(case)

    add("valid", "the registry vouches for the gate's key from 2026-03-01 to 2026-03-31",
        STATEMENT, "valid")  # fmt: skip
    add(
        "signed-by-another-key",
        "signed by another key under the registry's name",
        _statement(signer=REGISTRY_IMPOSTOR),
        "BadSignatureError",
    )
    add(
        "signed-by-the-gate",
        "the gate vouching for itself",
        _statement(signer=GATE),
        "BadSignatureError",
    )
    add("signature-altered", "one bit of the signature flipped", _flip_signature(STATEMENT),
        "BadSignatureError")  # fmt: skip
    add(
        "payload-altered",
        "the end moved a year later, the signature kept",
        _repayload(STATEMENT, _replace_once(b"2026-03-31", b"2027-03-31")),
        "BadSignatureError",
    )
    add(
        "wrong-payload-type",
        "signed by the registry as a receipt's payload type",
        _statement(kind=RECEIPT_PAYLOAD_TYPE),
        "MalformedError",
    )
    add("payload-not-json", "signed, but the payload is not JSON", _statement(b"gate: ok"),
        "MalformedError")  # fmt: skip
    missing = _statement_payload()
    del missing["not_after"]
    add("payload-missing-not-after", "signed, but without not_after", _statement(missing),
        "MalformedError")  # fmt: skip
    add(
        "time-without-offset",
        "signed, but not_before has no UTC offset",
        _statement({**_statement_payload(), "not_before": "2026-03-01T00:00:00"}),
        "MalformedError",
    )
    add(
        "ends-before-it-starts",
        "signed, but not_after is before not_before",
        _statement(_statement_payload(not_before=VOUCHED_UNTIL, not_after=VOUCHED_FROM)),
        "MalformedError",
    )
    add(
        "ends-when-it-starts",
        "signed, but not_after equals not_before: an empty validity",
        _statement(_statement_payload(not_after=VOUCHED_FROM)),
        "MalformedError",
    )
    wrong_id = GATE.verifier.text.replace(GATE.verifier.id.hex(), "00000000")
    add(
        "gate-key-id-wrong",
        "signed, but the gate key's key id does not match its name and key",
        _statement(_statement_payload(gate_key=wrong_id)),
        "MalformedError",
    )
    add(
        "vouches-for-the-registry-key",
        "signed, vouching for the registry's own key as a gate key",
        _statement(_statement_payload(gate_key=REGISTRY.verifier.text)),
        "MalformedError",
    )
    return cases


# --- writing and checking ---------------------------------------------------------------------

FILES: dict[str, Callable[[], list[VectorCase]]] = {
    "checkpoints.json": checkpoint_cases,
    "status-records.json": status_record_cases,
    "receipts.json": receipt_cases,
    "map-roots.json": map_root_cases,
    "map-proofs.json": map_proof_cases,
    "consistency.json": consistency_cases,
    "cosignatures.json": cosignature_cases,
    "gate-keys.json": gate_key_cases,
}


def render(cases: list[VectorCase]) -> bytes:
    return (json.dumps(cases, indent=2, ensure_ascii=False) + "\n").encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail if a file differs from what would be written"
    )
    check = parser.parse_args().check
    stale: list[str] = []
    for name, build in FILES.items():
        path = VECTORS / name
        data = render(build())
        if check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(str(path.relative_to(ROOT)))
            continue
        VECTORS.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)} ({len(json.loads(data))} cases)")
    if stale:
        print(
            f"test vectors out of date: {', '.join(stale)} (run 'make vectors' and commit)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
