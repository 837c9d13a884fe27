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
from permitgate_client.formats import RECEIPT_PAYLOAD_TYPE, Checkpoint, Receipt, format_time

from registry.canonical import canonical_json
from registry.merkle import leaf_hash, root_of
from registry.records import Case, Permit, StatusRecord, Structure
from registry.signing import Signer
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
            "checkpoint": CHECKPOINT.decode(),
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
    checkpoint_note=CHECKPOINT,
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


def receipt_cases() -> list[VectorCase]:
    cases: list[VectorCase] = []
    keyset = {"registry_key": REGISTRY.verifier.text, "gate_key": GATE.verifier.text}

    def add(name: str, description: str, envelope: bytes, expected: str) -> None:
        case: VectorCase = {
            "name": name,
            "description": description,
            "keyset": keyset,
            **_bytes_field("receipt", envelope),
            "expected": expected,
        }
        if expected == "valid":
            payload = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
            case["result"] = {"payload": payload, "checkpoint_size": SIZE}
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
            replace(DENY_RECEIPT, checkpoint_note=_note(_checkpoint_body(SIZE), REGISTRY_IMPOSTOR))
        ),
        "BadSignatureError",
    )
    add(
        "checkpoint-altered",
        "signed by the gate, but the checkpoint inside had its tree size changed after the "
        "registry signed it",
        _receipt(
            replace(DENY_RECEIPT, checkpoint_note=CHECKPOINT.replace(b"\n1234\n", b"\n1300\n"))
        ),
        "BadSignatureError",
    )
    add(
        "checkpoint-of-another-origin",
        "signed by the gate; the checkpoint inside is signed by the registry key but names "
        "another origin than the key's name",
        _receipt(
            replace(
                DENY_RECEIPT,
                checkpoint_note=_note(_checkpoint_body(SIZE, origin="elsewhere.example/log")),
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
        _receipt(replace(DENY_RECEIPT, checkpoint_note=_checkpoint_body(SIZE).encode())),
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
    return cases


# --- writing and checking ---------------------------------------------------------------------

FILES: dict[str, Callable[[], list[VectorCase]]] = {
    "checkpoints.json": checkpoint_cases,
    "status-records.json": status_record_cases,
    "receipts.json": receipt_cases,
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
