"""Registry lifecycle and reads: init, the latest checkpoint, one status record, export.

``init_registry`` is idempotent: it upgrades the schema, creates the signing key when absent,
and on a new database records the origin and signs the empty checkpoint (size 0), so that every
registry, even an empty one, has a signed head to verify against.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from permitgate_client.formats import Checkpoint
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.merkle import CompactTree
from registry.signing import Signer, ensure_signer, load_signer
from registry.status import RECORD_VALIDITY, SigningPipeline, StatusSigner
from registry.storage import (
    CASE_COLUMNS,
    PERMIT_COLUMNS,
    STRUCTURE_COLUMNS,
    CaseRow,
    CheckpointRow,
    Database,
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
    "RegistryRefused",
    "WrongKey",
    "export_lines",
    "init_registry",
    "latest_checkpoint_note",
    "open_writer",
    "refresh_records",
    "status_envelope",
]

DEFAULT_ORIGIN = "permitgate.example/registry"
ROLE = "registry"


@dataclass(frozen=True)
class InitResult:
    signer: Signer
    created_key: bool
    created_registry: bool
    origin: str


def init_registry(db: Database, keys_dir: Path, origin: str = DEFAULT_ORIGIN) -> InitResult:
    """Create or upgrade the registry in ``db`` and its signing key in ``keys_dir``."""
    db.upgrade()
    with db.session() as session:
        stored = session.scalar(select(MetaRow.value).where(MetaRow.key == "origin"))
        stored_key = session.scalar(select(MetaRow.value).where(MetaRow.key == "public_key"))
    if stored is not None:  # an existing registry: its key must be here already, never made anew
        signer = load_signer(keys_dir, ROLE)
        if stored_key != signer.verifier.text:
            raise ValueError(
                f"this registry was signed by {stored_key}, but {keys_dir} holds "
                f"{signer.verifier.text}"
            )
        return InitResult(signer, False, False, stored)
    signer, created_key = ensure_signer(keys_dir, ROLE, origin)
    with db.session() as session:
        if signer.name != origin:
            raise ValueError(f"the key in {keys_dir} is named {signer.name!r}, not {origin!r}")
        tree = CompactTree()
        empty = Checkpoint(origin, 0, tree.root())
        session.add_all(
            [
                MetaRow(key="origin", value=origin),
                MetaRow(key="public_key", value=signer.verifier.text),
                CheckpointRow(
                    size=0,
                    root_hash=empty.root_hash,
                    note=signer.sign_note(empty.body()),
                    tree_state=tree.state,
                    signed_at=datetime.now(UTC),
                ),
            ]
        )
    return InitResult(signer, created_key, True, origin)


def latest_checkpoint_note(db: Database) -> bytes | None:
    """The signed note of the newest checkpoint, as stored."""
    if not db.is_initialised():
        return None
    with db.session() as session:
        return session.scalar(select(CheckpointRow.note).order_by(CheckpointRow.size.desc()))


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


class RegistryRefused(Exception):
    """A write to the registry cannot start; nothing was read or written."""


class NotInitialised(RegistryRefused):
    """The database has no registry yet."""


class WrongKey(RegistryRefused):
    """The signing key given is not the registry's key (its signatures would not verify)."""


@contextmanager
def open_writer(db: Database, signer: Signer) -> Iterator[tuple[Session, str, CheckpointRow]]:
    """The registry's write lock, its origin and latest checkpoint, once ``signer`` is its key.

    Every writer (import, refresh) comes through here, so none can sign with another key.
    """
    if not db.is_initialised():
        raise NotInitialised("no registry here: run 'permitgate registry init' first")
    with db.writer() as session:
        origin = session.scalar(select(MetaRow.value).where(MetaRow.key == "origin"))
        public_key = session.scalar(select(MetaRow.value).where(MetaRow.key == "public_key"))
        head = session.scalars(
            select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)
        ).first()
        if origin is None or head is None:
            raise NotInitialised("no registry here: run 'permitgate registry init' first")
        if public_key != signer.verifier.text:
            raise WrongKey(
                f"this registry is signed by {public_key}, not by {signer.verifier.text}"
            )
        yield session, origin, head


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
    with open_writer(db, signer) as (session, _, checkpoint):
        head = checkpoint.size
        if head == 0:
            return 0
        due = select(StatusRow.structure_id).order_by(StatusRow.structure_id)
        if not everything:
            due = due.where(StatusRow.next_update < now + within)
        ids = list(session.scalars(due))
        with SigningPipeline(session, StatusSigner(signer, now=now), workers=1) as pipeline:
            for start in range(0, len(ids), 5000):
                pipeline.submit(ids[start : start + 5000], head)
            pipeline.finish()
    return len(ids)
