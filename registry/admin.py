"""Registry lifecycle and reads: init, the latest checkpoint, one status record, export.

``init_registry`` is idempotent: it upgrades the schema, creates the signing key when absent,
and on a new database records the origin and signs the empty checkpoint (size 0), so that every
registry, even an empty one, has a signed head to verify against. The origin and the key are
fixed then: a later ``init`` that names another origin, or cannot find that key, says so.

Every writer comes through ``open_writer``, which refuses a registry whose newest checkpoint and
log disagree (rows deleted or added behind the registry's back): appending to such a log, or
signing records from it, would sign what the log cannot prove.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from permitgate_client import VerifierKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.errors import PlainError
from registry.heads import sign_head
from registry.merkle import CompactTree
from registry.signing import KeyFileError, Signer, ensure_signer, load_signer
from registry.status import RECORD_VALIDITY, SigningPipeline, StatusSigner
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

__all__ = [
    "DEFAULT_ORIGIN",
    "InitResult",
    "NotInitialised",
    "RegistryDamaged",
    "RegistryRefused",
    "WrongKey",
    "export_lines",
    "init_registry",
    "latest_checkpoint_note",
    "load_registry_signer",
    "newest_head",
    "open_writer",
    "refresh_records",
    "require_registry",
    "status_envelope",
    "stored_status_map",
]

DEFAULT_ORIGIN = "permitgate.example/registry"
_ORIGIN = re.compile(r"[^\s+]{1,255}")
ROLE = "registry"


@dataclass(frozen=True)
class InitResult:
    signer: Signer
    created_key: bool
    created_registry: bool
    origin: str


def init_registry(db: Database, keys_dir: Path, origin: str | None = None) -> InitResult:
    """Create or upgrade the registry in ``db`` and its signing key in ``keys_dir``.

    ``origin`` (default ``DEFAULT_ORIGIN``) names a new registry; for an existing one it may
    only repeat the origin the registry has.
    """
    if origin is not None and not _ORIGIN.fullmatch(origin):
        raise RegistryRefused(
            f"--origin {origin!r}: an origin names the signing key too, so it has no spaces "
            f"and no '+' (e.g. {DEFAULT_ORIGIN})"
        )
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
    with db.session() as session:
        if signer.name != origin:
            raise RegistryRefused(f"the key in {keys_dir} is named {signer.name!r}, not {origin!r}")
        session.add_all(
            [
                MetaRow(key="origin", value=origin),
                MetaRow(key="public_key", value=signer.verifier.text),
                sign_head(
                    signer,
                    origin=origin,
                    tree=CompactTree(),
                    status_map=StatusMap(),
                    serial=1,
                    now=datetime.now(UTC),
                ),
            ]
        )
    return InitResult(signer, created_key, True, origin)


def load_registry_signer(db: Database, keys_dir: Path) -> Signer:
    """The registry's signing key from ``keys_dir``, or an error saying which key is wanted."""
    if not db.is_initialised():
        raise NotInitialised(_NOT_INITIALISED)
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


def stored_status_map(session: Session) -> StatusMap:
    """The status map of the records as stored: each structure's envelope, hashed."""
    rows = session.execute(
        select(StatusRow.structure_id, StatusRow.envelope), execution_options={"yield_per": 5000}
    )
    return StatusMap((sid, hashlib.sha256(envelope).digest()) for sid, envelope in rows)


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
    """The newest checkpoint and the log disagree: rows were removed or added behind its back."""


_NOT_INITIALISED = "no registry here: run 'permitgate registry init' first"


def require_registry(db: Database) -> None:
    """Raise unless ``db`` holds a registry whose newest checkpoint covers exactly its log."""
    if not db.is_initialised():
        raise NotInitialised(_NOT_INITIALISED)
    with db.snapshot() as session:
        _check_head(session, newest_head(session))


def _check_head(session: Session, head: HeadRow | None) -> HeadRow:
    """The newest checkpoint, once the log holds exactly the events it covers."""
    advice = (
        "rows were deleted or added outside permitgate; run 'permitgate registry verify' "
        "and restore the database from a backup"
    )
    if head is None:
        raise RegistryDamaged(f"this registry has no signed checkpoint: {advice}")
    count, last = session.execute(select(func.count(), func.max(EventRow.seq))).one()
    if count != head.size or (count and last != head.size - 1):
        raise RegistryDamaged(
            f"the newest checkpoint covers {head.size} events but the log holds {count}"
            f"{'' if last is None else f' (the last numbered {last})'}: {advice}"
        )
    return head


@contextmanager
def open_writer(db: Database, signer: Signer) -> Iterator[tuple[Session, str, HeadRow]]:
    """The registry's write lock, its origin and latest checkpoint, once ``signer`` is its key.

    Every writer (import, refresh) comes through here, so none can sign with another key.
    """
    if not db.is_initialised():
        raise NotInitialised(_NOT_INITIALISED)
    with db.writer() as session:
        origin = session.scalar(select(MetaRow.value).where(MetaRow.key == "origin"))
        public_key = session.scalar(select(MetaRow.value).where(MetaRow.key == "public_key"))
        if origin is None:
            raise NotInitialised(_NOT_INITIALISED)
        if public_key != signer.verifier.text:
            raise WrongKey(
                f"this registry is signed by {public_key}, not by {signer.verifier.text}"
            )
        yield session, origin, _check_head(session, newest_head(session))


def refresh_records(
    db: Database,
    signer: Signer,
    *,
    now: datetime | None = None,
    within: timedelta = RECORD_VALIDITY / 2,
    everything: bool = False,
) -> int:
    """Re-sign the status records that expire within ``within`` (all with ``everything``).

    A record is good until its ``next_update``; gates answer REVIEW after that. Run this
    periodically (daily, say) so that structures nobody changes keep current records. The state
    is unchanged, so each new record shows the current tree size; gates notice the later
    ``next_update`` and take it. Returns how many records were re-signed.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with open_writer(db, signer) as (session, origin, head):
        if head.size == 0:
            return 0
        due = select(StatusRow.structure_id).order_by(StatusRow.structure_id)
        if not everything:
            due = due.where(StatusRow.next_update < now + within)
        ids = list(session.scalars(due))
        with SigningPipeline(session, StatusSigner(signer, now=now), workers=1) as pipeline:
            for start in range(0, len(ids), 5000):
                pipeline.submit(ids[start : start + 5000], head.size)
            pipeline.finish()
        if ids:
            session.add(
                sign_head(
                    signer,
                    origin=origin,
                    tree=CompactTree.from_state(head.size, head.tree_state),
                    status_map=stored_status_map(session),
                    serial=head.serial + 1,
                    now=now,
                )
            )
    return len(ids)
