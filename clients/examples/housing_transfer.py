"""The housing registry gates a transfer registration, keeps the signed receipt, and verifies it
offline with the KeySet it saved earlier.

Art. 11: unauthorised construction after the initial registration blocks a transfer. The
registry asks the gate before recording one, with a receipt, and files the receipt with the
application: years later, anyone holding the KeySet can show what the gate answered, and on
which signed registry data, with no gate at hand.

Try it against the demo registry: run ``make demo`` in one terminal (it serves the gate on
127.0.0.1:50051 and prints which demo structure shows which case), then in another::

    .venv/bin/python clients/examples/housing_transfer.py 110228-0000-0000 --application R-1
    .venv/bin/python clients/examples/housing_transfer.py 110228-0000-0007 --application R-2
    .venv/bin/python clients/examples/housing_transfer.py --verify demo/receipts/<decision id>.json

Receipts go to ``--receipts`` (default ``demo/receipts``, beside the demo registry). The first
run saves the gate's KeySet (``--keyset``, default ``demo/keyset.json``): do that at a
moment you trust the gate, and compare its registry key with the one the registry publishes.
``--verify`` needs only that file and the receipt. The gate is ``--target HOST:PORT``, else
``PERMITGATE_TARGET``, else 127.0.0.1:50051. Exit status: 0 when the transfer may be recorded
(or the receipt verified), 1 when it may not (or the receipt does not verify), 2 on other errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from permitgate_client import (
    Client,
    GateError,
    KeySet,
    ReceiptError,
    Verdict,
    VerificationError,
    verify_receipt,
)


def saved_keyset(path: Path, client: Client) -> KeySet:
    """The KeySet kept in ``path``; on first use, fetched from the gate and saved there."""
    if path.exists():
        return KeySet.from_json(path.read_bytes())
    keyset = client.keys()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keyset.to_json(), indent=2) + "\n")
    print(f"saved the gate's keys to {path} (registry key {keyset.registry_key.text})")
    return keyset


def verify_offline(receipt_file: Path, keyset_file: Path) -> int:
    """Verify a kept receipt with the saved KeySet alone: no gate is contacted."""
    keyset = KeySet.from_json(keyset_file.read_bytes())
    try:
        verified = verify_receipt(receipt_file.read_bytes().strip(), keyset)
    except ReceiptError as exc:
        print(f"NOT VERIFIED: {exc} ({type(exc.__cause__).__name__})")
        return 1
    receipt = verified.receipt
    print(f"receipt verified: signed by gate {keyset.gate_key.name}")
    print(f"  decision {receipt.decision_id} at {receipt.decided_at.isoformat()}")
    print(f"  asked    {json.dumps(receipt.check, sort_keys=True)}")
    print(f"  answer   {' '.join([receipt.verdict, *(r['code'] for r in receipt.reasons)])}")
    print(f"  on registry {verified.checkpoint.origin} version {verified.checkpoint.size}")
    return 0


def gate_transfer(args: argparse.Namespace) -> int:
    with Client(args.target, timeout=5.0) as client:
        keyset = saved_keyset(args.keyset, client)
        decision = client.check_registration(
            args.structure_id, kind="transfer", application_id=args.application, receipt=True
        )
    print(f"{decision.verdict}  transfer of {args.structure_id} (application {args.application})")
    for reason in decision.reasons:
        print(f"    {reason.code} (Art. {reason.article}): {reason.message}")
    if decision.receipt is None:
        print("the gate sent no receipt", file=sys.stderr)
        return 2
    args.receipts.mkdir(parents=True, exist_ok=True)
    kept = args.receipts / f"{decision.decision_id}.json"
    kept.write_bytes(decision.receipt + b"\n")
    print(f"receipt kept in {kept}")
    # Verified at once with the KeySet saved earlier, as it will be years from now.
    verify_receipt(decision.receipt, keyset)
    print("receipt verified offline with the saved KeySet")
    if decision.verdict is Verdict.ALLOW:
        print("record the transfer")
        return 0
    print("do not record the transfer; file the receipt with the refusal")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("structure_id", nargs="?", help="the structure to be transferred")
    parser.add_argument("--application", default="", help="the registry's application id")
    parser.add_argument("--verify", type=Path, metavar="RECEIPT", help="verify a kept receipt")
    parser.add_argument("--keyset", type=Path, default=Path("demo/keyset.json"))
    parser.add_argument("--receipts", type=Path, default=Path("demo/receipts"))
    parser.add_argument("--target", default=os.environ.get("PERMITGATE_TARGET", "127.0.0.1:50051"))
    args = parser.parse_args()
    if (args.verify is None) == (args.structure_id is None):
        parser.error("give a structure id, or --verify RECEIPT")
    try:
        if args.verify is not None:
            return verify_offline(args.verify, args.keyset)
        return gate_transfer(args)
    except OSError as exc:
        print(f"{exc.filename}: {exc.strerror}", file=sys.stderr)
    except GateError as exc:
        print(f"the gate at {args.target} did not answer: {exc}", file=sys.stderr)
    except VerificationError as exc:  # a saved KeySet that is not one, a receipt that fails
        print(f"NOT VERIFIED: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
