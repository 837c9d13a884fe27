"""Canonical JSON (RFC 8785) of what the gate and the registry sign, in-process.

What is measured: ``Receipt.to_json`` (the client package's receipt as the JSON object the gate
signs: a DENY with three reasons, with the registry head it cites), ``canonical_json`` of that
object (``registry.canonical``: orjson with sorted keys, after a walk that refuses what JCS and
orjson would write differently), the same for a status record as the registry signs it, and
for comparison the ``rfc8785`` package (pure Python) on the same receipt.

Why it matters: every receipt is encoded once before its signature, and every status record
the registry signs (a million on a full import); the encoding is part of what a receipt costs
beyond its Ed25519 signature (issue 8: "the signature is 26-33 µs; the rest is overhead").
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import rfc8785

from benchmarks.micro.conftest import Demo, receipt_of
from registry.canonical import canonical_json

pytestmark = pytest.mark.benchmark(max_time=0.3)


def test_receipt_to_json(benchmark: Any, demo: Demo) -> None:
    receipt = receipt_of(demo, demo.cases["deny_three"])
    payload = benchmark(receipt.to_json)
    assert payload["verdict"] == "DENY" and len(payload["reasons"]) == 3


def test_canonical_json_of_a_receipt(benchmark: Any, demo: Demo) -> None:
    payload = receipt_of(demo, demo.cases["deny_three"]).to_json()
    out = benchmark(canonical_json, payload)
    benchmark.extra_info["bytes"] = len(out)
    assert out == rfc8785.dumps(payload) and orjson.loads(out) == payload


def test_canonical_json_of_a_receipt_rfc8785_package(benchmark: Any, demo: Demo) -> None:
    """The reference canonicaliser, for the ratio."""
    payload = receipt_of(demo, demo.cases["deny_three"]).to_json()
    out = benchmark(rfc8785.dumps, payload)
    assert orjson.loads(out) == payload


def test_canonical_json_of_a_status_record(benchmark: Any, demo: Demo) -> None:
    record = demo.records[demo.cases["deny_three"]].to_json()
    out = benchmark(canonical_json, record)
    benchmark.extra_info["bytes"] = len(out)
    assert out == rfc8785.dumps(record)
