"""The gate's signing key, the receipts it signs, and the registry's statement vouching for it.

The receipt format (``Receipt``) and its verifier belong to the client package; the gate signs
the RFC 8785 form of ``Receipt.to_json`` (one Ed25519 signature per receipt), with the
registry's statement vouching for the gate's key put in, so the receipt verifies with the
registry key alone. ``GateKeyVouch`` keeps that statement: read from the registry database when
the gate starts and again every ``interval`` seconds (in a thread of its own, never on the event
loop), verified with the registry key before use, and put into a receipt only when it covers
the moment of the decision. Without one (the registry never vouched for this key, or the
database cannot be read) receipts carry none and verify only with this gate's KeySet.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from permitgate_client import VerificationError, VerifierKey
from permitgate_client.formats import (
    RECEIPT_PAYLOAD_TYPE,
    GateKeyStatement,
    Receipt,
    format_time,
    verify_gate_key_statement,
)

from registry.canonical import canonical_json
from registry.signing import Signer
from registry.storage import Database
from registry.vouch import StatementUnreadable, stored_statement

__all__ = [
    "DEFAULT_GATE_NAME",
    "GATE_ROLE",
    "STATEMENT_INTERVAL",
    "GateKeyVouch",
    "ReceiptSigner",
    "receipt_payload",
]

log = logging.getLogger(__name__)

GATE_ROLE = "gate"
DEFAULT_GATE_NAME = "permitgate.example/gate"
STATEMENT_INTERVAL = 60.0
"""Seconds between reads of the gate's statement from the registry database."""
_RENEW_WITHIN = timedelta(days=7)


def receipt_payload(receipt: Receipt) -> bytes:
    """The exact bytes the gate signs."""
    return _canonical_payload(receipt.to_json(), None)


_MAX_INT = 2**53 - 1


def _scalar(value: Any) -> bool:
    kind = value.__class__
    return (
        kind is str
        or value is None
        or kind is bool
        or (kind is int and -_MAX_INT <= value <= _MAX_INT)
    )


def _flat(value: Any) -> bool:
    """An object of ASCII keys to JCS-safe scalars (a check, a reason, the status record)."""
    if value.__class__ is not dict:
        return False
    for key, item in value.items():
        if key.__class__ is not str or not key.isascii():
            return False
        kind = item.__class__
        if kind is str or item is None:  # most values: no call
            continue
        if not _scalar(item):
            return False
    return True


def _canonical_payload(payload: dict[str, Any], checked: object) -> bytes:
    """``canonical_json(payload)``, checked for a receipt's shape in one pass: scalars, flat
    objects, lists of flat objects, and ``checked`` (the gate key statement, checked once when
    first signed with). Anything else goes through ``canonical_json``, which decides; the bytes
    are the same either way (``tests/test_receipt_payload.py``)."""
    for key, value in payload.items():
        if key.__class__ is not str or not key.isascii():
            break
        if value is checked or _scalar(value) or _flat(value):
            continue
        if value.__class__ is list and all(_flat(item) for item in value):
            continue
        break
    else:
        return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return canonical_json(payload)


class GateKeyVouch:
    """The registry's current statement vouching for this gate's key, kept fresh.

    ``read`` returns the stored statement envelope (or None); it runs in a daemon thread, at
    once when made and then at most every ``interval`` seconds, when a receipt is signed.
    """

    def __init__(
        self,
        read: Callable[[], bytes | None],
        *,
        registry_key: VerifierKey,
        gate_key: VerifierKey,
        interval: float = STATEMENT_INTERVAL,
    ) -> None:
        self._read = read
        self.registry_key = registry_key
        self.gate_key = gate_key
        self.interval = interval
        # The statement held, and the same as the JSON object a receipt carries: one reference,
        # swapped whole by the reading thread.
        self._held: tuple[GateKeyStatement, dict[str, Any]] | None = None
        self._said: str | None = None  # the last thing logged about the statement
        self._reading = threading.Lock()
        self._read_at = -float("inf")  # time.monotonic() of the last read started
        self.loaded = threading.Event()  # set once the first read has ended, found or not
        self._refresh()

    @classmethod
    def from_registry(
        cls, db: Database, registry_key: VerifierKey, gate_key: VerifierKey
    ) -> GateKeyVouch:
        """Read the statement from the registry database ``db`` (the ``gate_key`` table)."""
        return cls(
            lambda: stored_statement(db, gate_key, registry_key),
            registry_key=registry_key,
            gate_key=gate_key,
        )

    def current(self, at: datetime) -> dict[str, Any] | None:
        """The statement (as the JSON object a receipt carries) when it covers ``at``; starts a
        new read when the last is ``interval`` seconds old."""
        if time.monotonic() - self._read_at >= self.interval:
            self._refresh()
        held = self._held
        if held is None or not held[0].covers(at):
            return None
        return held[1]

    @property
    def statement(self) -> GateKeyStatement | None:
        """The statement held (verified), whether or not it covers now."""
        held = self._held
        return None if held is None else held[0]

    def _refresh(self) -> None:
        if not self._reading.acquire(blocking=False):
            return  # a read is under way
        self._read_at = time.monotonic()
        threading.Thread(target=self._load, name="gate-key-statement", daemon=True).start()

    def _load(self) -> None:
        try:
            self.load()
        finally:
            self._reading.release()
            self.loaded.set()

    def load(self) -> None:
        """Read and verify the statement now (in the calling thread) and adopt it.

        Only a statement that verifies with the registry key and names this gate's key replaces
        the one held; a missing or bad row keeps it (the database is no authority on what the
        registry signed), and says so.
        """
        key = self.gate_key.keyid_text
        try:
            envelope = self._read()
            statement = (
                None if envelope is None else verify_gate_key_statement(envelope, self.registry_key)
            )
        except StatementUnreadable as exc:
            self._say(
                logging.WARNING,
                f"gate key {key}: cannot read the registry's statement vouching for it "
                f"({exc}); {self._keeping()}",
            )
            return
        except VerificationError as exc:
            self._say(
                logging.ERROR,
                f"gate key {key}: the stored statement vouching for it does not verify ({exc}); "
                f"{self._keeping()}",
            )
            return
        if envelope is None or statement is None:
            self._say(
                logging.WARNING,
                f"gate key {key}: the registry database holds no statement vouching for it; "
                f"{self._keeping()} (on the registry: permitgate registry vouch gate.pub)",
            )
            return
        if statement.gate_key != self.gate_key:
            self._say(
                logging.ERROR,
                f"gate key {key}: the stored statement vouches for "
                f"{statement.gate_key.keyid_text}; {self._keeping()}",
            )
            return
        held = self.statement
        if held is not None and not _supersedes(statement, held):
            self._say(
                logging.ERROR,
                f"gate key {key}: the stored statement (valid {format_time(statement.not_before)}"
                f" to {format_time(statement.not_after)}) is older than the one held, or undoes "
                f"a retirement; {self._keeping()}",
            )
            return
        self._held = (statement, json.loads(envelope))
        now = datetime.now(UTC)
        if statement.not_after <= now:
            level, state = logging.WARNING, "ended: receipts verify only with this gate's KeySet"
        elif statement.not_after - now < _RENEW_WITHIN:
            level, state = logging.WARNING, "ends soon: renew it with 'permitgate registry vouch'"
        else:
            level, state = logging.INFO, "in force"
        self._say(
            level,
            f"gate key {key}: vouched for by the registry from "
            f"{format_time(statement.not_before)} until {format_time(statement.not_after)} "
            f"({state})",
        )

    def _keeping(self) -> str:
        statement = self.statement
        if statement is None:
            return "receipts carry no statement and verify only with this gate's KeySet"
        return f"receipts keep the statement held (until {format_time(statement.not_after)})"

    def _say(self, level: int, message: str) -> None:
        """Log ``message`` once, not at every read."""
        if message != self._said:
            self._said = message
            log.log(level, message)


class ReceiptSigner:
    def __init__(self, signer: Signer, vouch: GateKeyVouch | None = None) -> None:
        self._signer = signer
        self.verifier = signer.verifier
        self.vouch = vouch
        self._checked: object = None  # the statement object last found canonicalisable

    def sign(self, receipt: Receipt) -> bytes:
        """A DSSE envelope (JSON bytes) over the receipt's canonical payload, carrying the
        registry's statement for this gate's key when one covers the decision."""
        payload = receipt.to_json()
        statement = None
        if self.vouch is not None and receipt.gate_key_statement is None:
            statement = payload["gate_key_statement"] = self.vouch.current(receipt.decided_at)
            if statement is not None and statement is not self._checked:
                canonical_json(statement)  # raises if it cannot be signed as JCS
                self._checked = statement  # the same object until the statement is renewed
        return self._signer.sign_envelope(
            _canonical_payload(payload, statement), RECEIPT_PAYLOAD_TYPE
        )


def _supersedes(new: GateKeyStatement, held: GateKeyStatement) -> bool:
    """Whether ``new`` may replace ``held``: a renewal (a later start), a retirement (the same
    start, an earlier end), or the same statement. An older statement put back in the database
    (one that a retirement shortened, say) never replaces a newer one held."""
    if new.not_before != held.not_before:
        return new.not_before > held.not_before
    return new.not_after <= held.not_after
