"""The receipt's payload bytes: the gate's one-pass check writes what ``canonical_json`` writes,
and refuses what it refuses, for receipts of every shape (nested, floats, big integers,
non-ASCII keys in the check or reasons included)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from permitgate_client.formats import Receipt

from registry.canonical import canonical_json
from server.receipts import receipt_payload

_KEYS = st.text(max_size=8)  # non-ASCII keys too
_SCALARS = (
    st.none()
    | st.booleans()
    | st.text(max_size=20)
    | st.integers(min_value=-(2**60), max_value=2**60)  # beyond 2**53 too
    | st.floats(allow_nan=False)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=8,
)
_OBJECTS = st.dictionaries(_KEYS, _JSON, max_size=5)
_TIMES = st.datetimes(min_value=datetime(1, 1, 1)).map(lambda t: t.replace(tzinfo=UTC))

_RECEIPTS = st.builds(
    Receipt,
    decision_id=st.text(max_size=20),
    decided_at=_TIMES,
    check=_OBJECTS,
    verdict=st.sampled_from(["ALLOW", "DENY", "REVIEW"]),
    reasons=st.lists(_OBJECTS, max_size=3).map(tuple),
    valid_until=st.none() | _TIMES,
    notification_id=st.none() | st.text(max_size=10),
    checkpoint_note=st.binary(max_size=40).map(lambda b: b.hex().encode()),
    status_record_sha256=st.none() | st.text(alphabet="0123456789abcdef", max_size=64),
    status_record_tree_size=st.none() | st.integers(min_value=-(2**60), max_value=2**60),
    gate_key_statement=st.none() | _OBJECTS,
)


def _outcome(write: Any, receipt: Receipt) -> bytes | str:
    try:
        return bytes(write(receipt))
    except TypeError:
        return "refused"


@given(_RECEIPTS)
def test_the_same_bytes_as_canonical_json(receipt: Receipt) -> None:
    reference = _outcome(lambda r: canonical_json(r.to_json()), receipt)
    assert _outcome(receipt_payload, receipt) == reference


def test_a_typical_receipt_is_written_without_the_general_check() -> None:
    receipt = Receipt(
        decision_id="D-1",
        decided_at=datetime(2026, 1, 1, tzinfo=UTC),
        check={"type": "connection", "structure_id": "S-1", "requested_until": None},
        verdict="DENY",
        reasons=({"code": "MISSING_PERMIT", "article": 23, "case_id": None},),
        valid_until=None,
        notification_id=None,
        checkpoint_note=b"note\n",
        status_record_sha256="ab" * 32,
        status_record_tree_size=12,
    )
    assert receipt_payload(receipt) == canonical_json(receipt.to_json())
    too_big = Receipt(**{**_fields(receipt), "status_record_tree_size": 2**53})
    with pytest.raises(TypeError):
        receipt_payload(too_big)


def _fields(receipt: Receipt) -> dict[str, Any]:
    return {name: getattr(receipt, name) for name in Receipt.__dataclass_fields__}
