"""Registry lifecycle and reads: init, the latest head, one status record, export.

``init_registry`` is idempotent: it upgrades the schema, creates the signing key when absent,
and on a new database records the origin, signs the empty head (serial 1, log size 0) and makes
the registry's own state (``registry.trusted_state``) hold it, so that every registry, even an
empty one, has a signed head to verify against and a state to check the database with. The
origin and the key are fixed then: a later ``init`` that names another origin, or cannot find
that key, says so. Writing goes through ``registry.writer``; this module only reads, besides init.

The errors every registry command may raise are here too, one class per thing a person can act
on: ``NotInitialised``, ``WrongKey``, ``RegistryDamaged`` (rows changed behind the registry's
back) and ``RegistryRolledBack`` (the database is older than what the registry signed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from permitgate_client import VerifierKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.errors import PlainError
from registry.heads import sign_head
from registry.merkle import CompactTree
from registry.signing import KeyFileError, Signer, ensure_signer, load_signer
from registry.statusmap import StatusMap
from registry.storage import (
    CASE_COLUMNS,
    PERMIT_COLUMNS,
    STRUCTURE_COLUMNS,
    CaseRow,
    Database,
    EventRow,
    HeadRow,
    MetaRow,
    PermitRow,
    StatusRow,
    StructureRow,
    case_of,
    permit_of,
    structure_of,
)
from registry.trusted_state import TrustedState

__all__ = [
    "DEFAULT_ORIGIN",
    "NOT_INITIALISED",
    "REPAIR_ADVICE",
    "STATE_NAME",
    "InitResult",
    "NotInitialised",
    "RegistryDamaged",
    "RegistryRefused",
    "RegistryRolledBack",
    "WrongKey",
    "default_state_dir",
    "export_lines",
    "init_registry",
    "latest_checkpoint_note",
    "load_registry_signer",
    "newest_head",
    "require_registry",
    "status_envelope",
]

DEFAULT_ORIGIN = "permitgate.example/registry"
_ORIGIN = re.compile(r"[^\s+]{1,255}")
ROLE = "registry"
STATE_NAME = "registry"
"""The registry's ``TrustedState`` name: ``<state dir>/registry.sqlite``."""


def default_state_dir(keys_dir: Path) -> Path:
    """Where the registry keeps its own verified state by default: beside its keys."""
    return keys_dir.parent / "registry-state"


@dataclass(frozen=True)
class InitResult:
    signer: Signer
    created_key: bool
    created_registry: bool
    origin: str


def init_registry(
    db: Database, keys_dir: Path, origin: str | None = None, *, state_dir: Path | None = None
) -> InitResult:
    """Create or upgrade the registry in ``db`` and its signing key in ``keys_dir``.

    ``origin`` (default ``DEFAULT_ORIGIN``) names a new registry; for an existing one it may
    only repeat the origin the registry has. A new registry's state goes to ``state_dir``
    (default ``default_state_dir(keys_dir)``), which must not hold another registry's state.
    """
    if origin is not None and not _ORIGIN.fullmatch(origin):
        raise RegistryRefused(
            f"--origin {origin!r}: an origin names the signing key too, so it has no spaces "
            f"and no '+' (e.g. {DEFAULT_ORIGIN})"
        )
    state_dir = default_state_dir(keys_dir) if state_dir is None else state_dir
    if not db.is_initialised():
        _refuse_a_used_state(state_dir)
    db.upgrade()
    with db.session() as session:
        stored = session.scalar(select(MetaRow.value).where(MetaRow.key == "origin"))
        stored_key = session.scalar(select(MetaRow.value).where(MetaRow.key == "public_key"))
    if stored is not None:  # an existing registry: its key must be here already, never made anew
        if origin is not None and origin != stored:
            raise RegistryRefused(
                f"this registry's origin is {stored!r}; it cannot change to {origin!r} "
                "(every signed checkpoint names it)"
            )
        signer = _existing_key(keys_dir, stored_key)
        return InitResult(signer, False, False, stored)
    origin = DEFAULT_ORIGIN if origin is None else origin
    signer, created_key = ensure_signer(keys_dir, ROLE, origin)
    if signer.name != origin:
        raise RegistryRefused(f"the key in {keys_dir} is named {signer.name!r}, not {origin!r}")
    state = TrustedState(state_dir, STATE_NAME)
    try:
        with state.lock():
            if state.head() is not None:  # made meanwhile by another init
                _refuse_a_used_state(state_dir)
            with db.session() as session:
                head = sign_head(
                    signer,
                    origin=origin,
                    tree=CompactTree(),
                    status_map=StatusMap(),
                    serial=1,
                    now=datetime.now(UTC),
                )
                session.add_all(
                    [
                        MetaRow(key="origin", value=origin),
                        MetaRow(key="public_key", value=signer.verifier.text),
                        head,
                    ]
                )
            state.save(head.cosigned_note(), frontier=b"", replace=True)  # after the commit
    finally:
        state.close()
    return InitResult(signer, created_key, True, origin)


def _refuse_a_used_state(state_dir: Path) -> None:
    """Refuse to start a new registry over the state of another (or of this one, wiped)."""
    if not (state_dir / f"{STATE_NAME}.sqlite").exists():
        return
    state = TrustedState(state_dir, STATE_NAME)
    try:
        note = state.head()
    finally:
        state.close()
    if note is None:
        return
    raise RegistryRefused(
        f"{state_dir} holds the state of a registry ({_head_words(note)}), but this database "
        "holds none: if the database was lost or wiped, restore it from the newest backup; to "
        f"start a new registry here, move {state_dir} aside (or pass another --state)"
    )


def _head_words(note: bytes) -> str:
    """``head serial S, log size N`` of a stored note, read without verifying (for messages)."""
    lines = note.decode(errors="replace").split("\n")
    size = lines[1] if len(lines) > 1 else "?"
    serial = lines[3].split(" ")[1] if len(lines) > 3 and lines[3].startswith("map ") else "?"
    return f"head serial {serial}, log size {size}"


def load_registry_signer(db: Database, keys_dir: Path) -> Signer:
    """The registry's signing key from ``keys_dir``, or an error saying which key is wanted."""
    if not db.is_initialised():
        raise NotInitialised(NOT_INITIALISED)
    with db.session() as session:
        stored_key = session.scalar(select(MetaRow.value).where(MetaRow.key == "public_key"))
    return _existing_key(keys_dir, stored_key)


def _existing_key(keys_dir: Path, stored_key: str | None) -> Signer:
    """Load the key of an existing registry; when it is not in ``keys_dir``, say which it is."""
    wanted = _key_name(stored_key)
    try:
        signer = load_signer(keys_dir, ROLE)
    except KeyFileError as exc:
        if (keys_dir / f"{ROLE}.key").exists():
            raise  # the file is there but unusable: its own message says why
        raise WrongKey(
            f"this registry was made with the key {wanted}, but {keys_dir / (ROLE + '.key')} "
            f"does not exist: pass --keys the folder that holds that key (its {ROLE}.pub "
            f"reads {stored_key})"
        ) from exc
    if stored_key != signer.verifier.text:
        raise WrongKey(
            f"this registry was made with the key {wanted}, but {keys_dir} holds "
            f"{signer.verifier.keyid_text}: pass --keys the folder that holds {wanted}"
        )
    return signer


def _key_name(text: str | None) -> str:
    """``name+keyid`` of a stored verifier key (what a person can compare with a .pub file)."""
    try:
        return VerifierKey.from_text(text or "").keyid_text
    except ValueError:
        return repr(text)


def latest_checkpoint_note(db: Database) -> bytes | None:
    """The newest head's note with its newest cosignature, as stored."""
    if not db.is_initialised():
        return None
    with db.session() as session:
        head = newest_head(session)
        return None if head is None else head.cosigned_note()


def newest_head(session: Session) -> HeadRow | None:
    """The head row with the largest serial."""
    return session.scalars(select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).first()


def status_envelope(db: Database, structure_id: str) -> bytes | None:
    """The signed status record of one structure, as stored."""
    with db.session() as session:
        return session.scalar(
            select(StatusRow.envelope).where(StatusRow.structure_id == structure_id)
        )


def export_lines(db: Database) -> Iterator[bytes]:
    """The current state as JSON Lines: structures, then permits, then cases, each by id.

    Parents come before children, so importing this into an empty registry reproduces it.
    """
    opts = {"yield_per": 5000}
    with db.session() as session:
        for columns, order, convert in (
            (STRUCTURE_COLUMNS, StructureRow.id, structure_of),
            (PERMIT_COLUMNS, PermitRow.id, permit_of),
            (CASE_COLUMNS, CaseRow.id, case_of),
        ):
            query = select(*columns).order_by(order)
            for row in session.execute(query, execution_options=opts):
                yield orjson.dumps(convert(row).to_json()) + b"\n"


class RegistryRefused(PlainError):
    """The registry cannot be used as asked; nothing was written."""


class NotInitialised(RegistryRefused):
    """The database has no registry yet."""


class WrongKey(RegistryRefused):
    """The signing key given is not the registry's key (its signatures would not verify)."""


class RegistryDamaged(RegistryRefused):
    """The database differs from what the registry signed: rows were changed, removed or added
    behind its back. The message names the row."""


class RegistryRolledBack(RegistryRefused):
    """The database is older than the newest head the registry signed (a head deleted, an older
    backup restored): writing to it would sign a second history."""


NOT_INITIALISED = "no registry here: run 'permitgate registry init' first"
REPAIR_ADVICE = (
    "rows were deleted or added outside permitgate; run 'permitgate registry verify' "
    "and restore the database from a backup"
)


def require_registry(db: Database) -> None:
    """Raise unless ``db`` holds a registry whose newest head covers exactly its log.

    A check for readers (the gate) that have no state of their own to compare with; writers
    compare the database with the registry's state (``registry.writer``).
    """
    if not db.is_initialised():
        raise NotInitialised(NOT_INITIALISED)
    with db.snapshot() as session:
        head = newest_head(session)
        if head is None:
            raise RegistryDamaged(f"this registry has no signed checkpoint: {REPAIR_ADVICE}")
        count, last = session.execute(select(func.count(), func.max(EventRow.seq))).one()
        if count != head.size or (count and last != head.size - 1):
            raise RegistryDamaged(
                f"the newest checkpoint covers {head.size} events but the log holds {count}"
                f"{'' if last is None else f' (the last numbered {last})'}: {REPAIR_ADVICE}"
            )
