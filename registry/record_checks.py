"""The checks a change to a structure's records must pass against its current signed state,
shared by every writer: an import line (``registry.importer``) and a department's write
(``registry.department_writes``) are refused for the same reasons, in the same words.

Each check is a pure function over what the writer already read and verified: it returns why a
change may not be made (None when it may), or raises ``RegistryDamaged`` when the tables say
something the signed records do not back (a row added behind the registry's back).
"""

from __future__ import annotations

from registry.admin import REPAIR_ADVICE, RegistryDamaged
from registry.vocabulary import STAGE_MOVES, CaseStage, may_move

__all__ = ["filed_elsewhere", "stage_move_error", "unknown_structure"]


def unknown_structure(structure_id: str) -> str:
    """Why a permit or case may not name ``structure_id``: the registry holds no such one."""
    return f"unknown structure {structure_id!r}"


def filed_elsewhere(what: str, rid: str, filed: str, structure_id: str, backed: bool) -> str:
    """Why a new ``what`` (permit or case) ``rid`` for ``structure_id`` may not be added: the
    tables file that id under ``filed`` already. ``backed`` says whether ``filed``'s signed
    record holds it; when not, the row was written behind the registry's back
    (``RegistryDamaged``)."""
    if not backed:
        raise RegistryDamaged(
            f"{what} row of {rid}: names structure {filed!r}, whose signed record does not "
            f"hold it: {REPAIR_ADVICE}"
        )
    if filed == structure_id:
        return f"{what} {rid} exists already"
    return f"{what} {rid} belongs to {filed!r}; it cannot move to {structure_id!r}"


def stage_move_error(case_id: str, was: CaseStage, now: CaseStage) -> str | None:
    """Why case ``case_id`` may not move from ``was`` to ``now`` (``registry.vocabulary``)."""
    if may_move(was, now):
        return None
    allowed = ", ".join(sorted(s.value for s in STAGE_MOVES[was])) or "none"
    return (
        f"case {case_id} cannot move from {was.value} to {now.value} "
        f"(allowed from {was.value}: {allowed})"
    )
