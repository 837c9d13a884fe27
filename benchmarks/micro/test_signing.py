"""Signing a receipt and verifying DSSE envelopes (Ed25519), in-process.

What is measured: one bare Ed25519 signature over a receipt's DSSE pre-authentication encoding
(the floor), ``ReceiptSigner.sign`` of a whole receipt (the JSON object, its canonical form,
the signature, base64 and the envelope's own canonical JSON), and ``verify_envelope`` (the
client package's DSSE verification: parse, payload type, signature) of that receipt and of a
status record as the registry signs it.

Why it matters: a receipt's cost beyond its signature is overhead on the gate's hot path (issue
8 asks for a gate with receipts at 0.75x the bare server); a DSSE verification is what a client
pays per receipt it checks, and what ``check --snapshot`` saves per record by checking hashes
against the signed map instead.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client.formats import RECEIPT_PAYLOAD_TYPE, pae, verify_envelope

from benchmarks.micro.conftest import Demo, receipt_of
from registry.canonical import canonical_json
from registry.trust import STATUS_PAYLOAD_TYPE
from server.receipts import ReceiptSigner

pytestmark = pytest.mark.benchmark(max_time=0.3)


def test_ed25519_sign_of_a_receipt(benchmark: Any, demo: Demo) -> None:
    key = Ed25519PrivateKey.generate()
    message = pae(
        RECEIPT_PAYLOAD_TYPE, canonical_json(receipt_of(demo, demo.cases["allow"]).to_json())
    )
    signature = benchmark(key.sign, message)
    key.public_key().verify(signature, message)  # raises if it does not verify


def test_receipt_signer_sign(benchmark: Any, demo: Demo) -> None:
    signer = ReceiptSigner(demo.gate_signer)
    receipt = receipt_of(demo, demo.cases["allow"])
    envelope = benchmark(signer.sign, receipt)
    benchmark.extra_info["bytes"] = len(envelope)
    payload = verify_envelope(envelope, [demo.gate_signer.verifier], RECEIPT_PAYLOAD_TYPE)
    assert orjson.loads(payload)["decision_id"] == receipt.decision_id


def test_verify_envelope_of_a_receipt(benchmark: Any, demo: Demo) -> None:
    receipt = receipt_of(demo, demo.cases["deny_three"])
    envelope = ReceiptSigner(demo.gate_signer).sign(receipt)
    keys = [demo.registry.verifier, demo.gate_signer.verifier]
    payload = benchmark(verify_envelope, envelope, keys, RECEIPT_PAYLOAD_TYPE)
    assert orjson.loads(payload)["verdict"] == "DENY"


def test_verify_envelope_of_a_status_record(benchmark: Any, demo: Demo) -> None:
    sid = demo.cases["deny_three"]
    envelope = demo.envelopes[sid]
    keys = [demo.registry.verifier]
    payload = benchmark(verify_envelope, envelope, keys, STATUS_PAYLOAD_TYPE)
    benchmark.extra_info["bytes"] = len(envelope)
    assert orjson.loads(payload)["structure"]["id"] == sid
