"""Gate keys the registry vouches for: signing, retiring and reading the statements.

Each gate signs its receipts with a key of its own. ``vouch_gate_key`` signs, with the registry
key, a gate key statement (``permitgate_client._gatekeys``: the gate's verifier key and the
times between which it may sign receipts) and stores it in the ``gate_key`` table; the gate
reads it from there (``stored_statement``) and puts it into every receipt, so that a receipt
verifies with ``registry.pub`` alone. ``retire_gate_key`` ends a key's validity now by signing
a new statement with the same start: receipts decided before then still verify, later ones do
not (as soon as the gate reads the new statement; a receipt made with the old statement by a
gate that never reads it again still verifies until the old end, so keep validities short).

Nothing read from the database is signed again unverified: a stored statement is checked with
the registry key before its start is carried into a retiring one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from permitgate_client import VerificationError, VerifierKey
from permitgate_client.formats import (
    GATE_KEY_PAYLOAD_TYPE,
    GateKeyStatement,
    format_time,
    verify_gate_key_statement,
)
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError

from registry.canonical import canonical_json
from registry.errors import PlainError
from registry.signing import Signer
from registry.storage import Database, GateKeyRow, error_line

__all__ = [
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "BadStoredStatement",
    "StatementUnreadable",
    "StoredGateKey",
    "VouchRefused",
    "list_gate_keys",
    "retire_gate_key",
    "stored_statement",
    "vouch_gate_key",
]

DEFAULT_DAYS = 30
"""How long a statement holds unless told: short, since a statement cannot be recalled from a
receipt, and renewing one is one command."""
MAX_DAYS = 3660


class VouchRefused(PlainError):
    """The registry will not sign this statement; nothing was written."""


class BadStoredStatement(VerificationError):
    """A stored statement filed under another key than the one it vouches for."""


class StatementUnreadable(Exception):
    """The registry database could not be read for a statement; the message says why."""


@dataclass(frozen=True, slots=True)
class StoredGateKey:
    """One row of ``gate_key``: its key id, and its statement verified (or why it is not)."""

    key_id: str
    statement: GateKeyStatement | None
    problem: str | None


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _require_table(db: Database) -> None:
    """Refuse plainly on a registry whose schema predates gate keys."""
    if not inspect(db.engine).has_table(GateKeyRow.__tablename__):
        raise VouchRefused(
            f"{db} has no gate_key table yet: run 'permitgate registry init' (it upgrades the "
            "schema) and try again"
        )


def _sign(signer: Signer, statement: GateKeyStatement) -> bytes:
    return signer.sign_envelope(canonical_json(statement.to_json()), GATE_KEY_PAYLOAD_TYPE)


def vouch_gate_key(
    db: Database,
    signer: Signer,
    gate_key: VerifierKey,
    *,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> GateKeyStatement:
    """Sign and store a statement vouching for ``gate_key`` from now for ``days`` days (it
    replaces any statement of that key); returns it."""
    if not 1 <= days <= MAX_DAYS:
        raise VouchRefused(f"--days {days}: between 1 and {MAX_DAYS}")
    if gate_key == signer.verifier:
        raise VouchRefused(
            "that is the registry's own key: a gate signs receipts with a key of its own "
            "(its gate.pub)"
        )
    if len(gate_key.keyid_text) > 300:
        raise VouchRefused(f"the gate key's name is too long ({len(gate_key.name)} characters)")
    _require_table(db)
    start = _now(now).replace(microsecond=0)
    statement = GateKeyStatement(gate_key, start, start + timedelta(days=days))
    envelope = _sign(signer, statement)
    with db.session() as session:
        session.merge(
            GateKeyRow(
                key_id=gate_key.keyid_text, statement=envelope, not_after=statement.not_after
            )
        )
    return statement


def _find(rows: list[GateKeyRow], key_id: str) -> GateKeyRow:
    """The row ``key_id`` names: its full ``name+keyid``, or its 8 hex digits alone."""
    wanted = key_id.strip()
    found = [row for row in rows if wanted in (row.key_id, row.key_id.rsplit("+", 1)[-1])]
    if not found:
        known = ", ".join(row.key_id for row in rows) or "none"
        raise VouchRefused(f"no gate key {wanted!r} is vouched for here (known: {known})")
    if len(found) > 1:
        names = ", ".join(row.key_id for row in found)
        raise VouchRefused(f"{wanted!r} names more than one gate key ({names}): give name+keyid")
    return found[0]


def _verified(row: GateKeyRow, registry_key: VerifierKey) -> GateKeyStatement:
    """The statement of ``row``, once it verifies and names the key it is filed under."""
    try:
        statement = verify_gate_key_statement(row.statement, registry_key)
    except VerificationError as exc:
        raise VouchRefused(
            f"gate_key row {row.key_id!r}: its statement does not verify with the registry key "
            f"({exc}); the database was changed outside permitgate: vouch for the key again"
        ) from exc
    if statement.gate_key.keyid_text != row.key_id:
        raise VouchRefused(
            f"gate_key row {row.key_id!r} holds the statement of {statement.gate_key.keyid_text}"
            ": the database was changed outside permitgate; vouch for the key again"
        )
    return statement


def retire_gate_key(
    db: Database, signer: Signer, key_id: str, *, now: datetime | None = None
) -> GateKeyStatement:
    """End the validity of the gate key ``key_id`` now: a new statement with the same start,
    ending now (to the microsecond: a receipt decided a moment before still verifies), replaces
    the stored one. Returns the new statement."""
    end = _now(now)
    _require_table(db)
    with db.session() as session:
        row = _find(list(session.scalars(select(GateKeyRow))), key_id)
        current = _verified(row, signer.verifier)
        # A statement ends after it starts, even one retired the second it was made.
        end = max(end, current.not_before + timedelta(seconds=1))
        if current.not_after <= end:
            raise VouchRefused(
                f"gate key {row.key_id} is no longer vouched for since "
                f"{format_time(current.not_after)}; nothing to retire"
            )
        retired = GateKeyStatement(current.gate_key, current.not_before, end)
        row.statement = _sign(signer, retired)
        row.not_after = retired.not_after
    return retired


def stored_statement(
    db: Database, gate_key: VerifierKey, registry_key: VerifierKey
) -> bytes | None:
    """The stored statement vouching for ``gate_key``, verified with ``registry_key``; None when
    the registry holds none. ``VerificationError`` when the row does not verify or is another
    key's (the database was written by someone without the registry key);
    ``StatementUnreadable`` when the database cannot be read."""
    try:
        with db.session() as session:
            envelope = session.scalar(
                select(GateKeyRow.statement).where(GateKeyRow.key_id == gate_key.keyid_text)
            )
    except SQLAlchemyError as exc:
        raise StatementUnreadable(error_line(exc)) from exc
    if envelope is None:
        return None
    statement = verify_gate_key_statement(envelope, registry_key)
    if statement.gate_key != gate_key:
        raise BadStoredStatement(
            f"gate_key row {gate_key.keyid_text!r} holds the statement of "
            f"{statement.gate_key.keyid_text}"
        )
    return bytes(envelope)


def list_gate_keys(db: Database, registry_key: VerifierKey) -> list[StoredGateKey]:
    """Every stored statement, verified, by key id."""
    _require_table(db)
    with db.session() as session:
        rows = list(session.scalars(select(GateKeyRow).order_by(GateKeyRow.key_id)))
    out: list[StoredGateKey] = []
    for row in rows:
        try:
            out.append(StoredGateKey(row.key_id, _verified(row, registry_key), None))
        except VouchRefused as exc:
            out.append(StoredGateKey(row.key_id, None, str(exc)))
    return out
