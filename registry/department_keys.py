"""The department directory: which departments are enrolled, their role, and the one key each
may sign its writes with now.

A department writes as itself (``registry.department_writes``): each write is a statement
signed by its own Ed25519 key. Which key is its own is for the registry's operator to say, and
for nobody who merely writes the database: the directory lives in the registry's own verified
state (``registry.trusted_state``, beside its private key), never in a database table. Every
change is also a **department event** in the log, signed into a head like any other change, so
``registry verify`` can tell, for each log index, which key each department held then:

* ``enrol_department``: a new department (id, role, name) with its first key;
* ``rotate_department_key``: a new key; the old one is no longer accepted from then on;
* ``revoke_department``: the current key is refused from then on (writes signed before stay
  verifiable in the log); a later rotation gives the department a new key (never the revoked
  one), and enrolling the same id again is refused.

Each change is one write through ``open_writer`` (a department event and a new head; the map
of status records is unchanged). ``DepartmentDirectory`` is the read side for the service:
the current entry of a department, from the state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from permitgate_client import VerifierKey
from sqlalchemy import insert

from registry.admin import STATE_NAME
from registry.departments import Role
from registry.errors import PlainError
from registry.log import DepartmentChange, DepartmentEntry, encode_event
from registry.merkle import leaf_hash
from registry.records import format_time
from registry.signing import Signer
from registry.storage import Database, EventRow
from registry.trusted_state import TrustedState
from registry.vocabulary import id_error
from registry.writer import Writer, open_writer

__all__ = [
    "DepartmentDirectory",
    "DepartmentRefused",
    "enrol_department",
    "list_departments",
    "load_department_key",
    "revoke_department",
    "rotate_department_key",
]

_NAME_MAX = 200


class DepartmentRefused(PlainError):
    """A department change that cannot be made as asked; nothing was written."""


def load_department_key(path: Path, department_id: str | None = None) -> VerifierKey:
    """A department's verifier key from its ``.pub`` file (``DepartmentKey.save`` writes it);
    its name must be ``department_id`` when given."""
    try:
        key = VerifierKey.from_text(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DepartmentRefused(f"{path}: missing") from exc
    except (OSError, ValueError) as exc:
        raise DepartmentRefused(f"{path}: not a verifier key file ({exc})") from exc
    if department_id is not None and key.name != department_id:
        raise DepartmentRefused(
            f"{path}: the key is named {key.name!r}, not {department_id!r} (a department's key "
            "carries its id: make it with 'permitgate registry department keygen --id ID')"
        )
    return key


def enrol_department(
    db: Database,
    signer: Signer,
    state_dir: Path,
    *,
    department_id: str,
    role: str,
    name: str,
    key: VerifierKey,
    now: datetime | None = None,
) -> DepartmentEntry:
    """Enrol a department with its first key."""
    why = id_error(department_id)
    if why is not None:
        raise DepartmentRefused(f"--id: {why}")
    try:
        parsed_role = Role(role)
    except ValueError as exc:
        roles = ", ".join(r.value for r in Role)
        raise DepartmentRefused(f"--role: unknown {role!r} (one of: {roles})") from exc
    if not name.strip() or len(name) > _NAME_MAX:
        raise DepartmentRefused(f"--name: must be 1 to {_NAME_MAX} characters")
    if key.name != department_id:
        raise DepartmentRefused(f"--key: the key is named {key.name!r}, not {department_id!r}")
    change = DepartmentChange("enrol", department_id, parsed_role, name, key)
    return _change(db, signer, state_dir, change, now)


def rotate_department_key(
    db: Database,
    signer: Signer,
    state_dir: Path,
    *,
    department_id: str,
    key: VerifierKey,
    now: datetime | None = None,
) -> DepartmentEntry:
    """Give an enrolled department a new key; its old key is refused from now on."""
    with open_writer(db, signer, state_dir) as writer:
        held = _enrolled(writer, department_id)
        if key.name != department_id:
            raise DepartmentRefused(f"--key: the key is named {key.name!r}, not {department_id!r}")
        change = DepartmentChange("rotate", department_id, Role(held.role), held.name, key)
        return _append(writer, change, now)


def revoke_department(
    db: Database,
    signer: Signer,
    state_dir: Path,
    *,
    department_id: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> DepartmentEntry:
    """Revoke a department's current key: its writes are refused until a new key is rotated in;
    those it signed before stay verifiable."""
    with open_writer(db, signer, state_dir) as writer:
        held = _enrolled(writer, department_id)
        change = DepartmentChange(
            "revoke", department_id, Role(held.role), held.name, held.verifier(), reason
        )
        return _append(writer, change, now)


def list_departments(db: Database, signer: Signer, state_dir: Path) -> list[DepartmentEntry]:
    """Every department enrolled, from the registry's state once it agrees with the database."""
    with open_writer(db, signer, state_dir) as writer:
        return writer.departments()


def _enrolled(writer: Writer, department_id: str) -> DepartmentEntry:
    held = writer.department(department_id)
    if held is None:
        raise DepartmentRefused(f"department {department_id!r} is not enrolled")
    return held


def _change(
    db: Database, signer: Signer, state_dir: Path, change: DepartmentChange, now: datetime | None
) -> DepartmentEntry:
    with open_writer(db, signer, state_dir) as writer:
        return _append(writer, change, now)


def _append(writer: Writer, change: DepartmentChange, now: datetime | None) -> DepartmentEntry:
    """Append ``change`` as a department event and sign a head over it."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    seq = writer.tree.size
    try:
        entry = writer.change_department(change, seq)
    except ValueError as exc:
        raise DepartmentRefused(str(exc)) from exc
    body = encode_event(seq, format_time(now), department=change.to_json())
    writer.session.execute(insert(EventRow).values(seq=seq, structure_id="", body=body))
    writer.tree.append(leaf_hash(body))
    writer.sign_head(now)
    return entry


class DepartmentDirectory:
    """The departments as the registry's state holds them (``state_dir``), for the service to
    look a caller up in; each lookup reads the state afresh (a change made by the command line
    beside the service counts at once)."""

    def __init__(self, state_dir: Path) -> None:
        self._state = TrustedState(state_dir, STATE_NAME)

    def lookup(self, department_id: str) -> DepartmentEntry | None:
        row = self._state.department(department_id)
        return None if row is None else DepartmentEntry(*row)

    def all(self) -> list[DepartmentEntry]:
        return [DepartmentEntry(*row) for row in self._state.departments()]

    def close(self) -> None:
        self._state.close()
