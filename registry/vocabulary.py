"""The registry's vocabulary, exactly as DOMAIN.md spells it, and the one rule for ids.

These identifiers appear in data files, signed records and the API, so they are the contract:
renaming one is a format change. The registry's records use the first half (areas, permits,
cases); the checks the gate answers use the second (utilities, offices, kinds of connection
and registration). ``id_error`` is the one id rule: the importer and the gate both apply it.
``party_key`` is the one way party ids (Art. 22) are compared: a unified social credit code is
one code however it was typed.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Final

# --- Ids -----------------------------------------------------------------------------------------

ID_MAX: Final = 64
ID_RULE: Final = (
    f"an id is 1 to {ID_MAX} characters, each an ASCII letter, a digit or one of . _ : / -,"
    " and starts with a letter or digit"
)
"""The id rule in words, exactly as ``_ID`` checks it; error messages quote it."""

_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
_SHOWN: Final = ID_MAX + 8  # how much of a rejected value an error message quotes


def id_error(value: str) -> str | None:
    """None when ``value`` is a valid id (structure, permit, case); else why not, in words."""
    if _ID.fullmatch(value):
        return None
    if len(value) > _SHOWN:
        return f"not a valid id: {value[:_SHOWN]!r}... ({len(value)} characters; {ID_RULE})"
    return f"not a valid id: {value!r} ({ID_RULE})"


def party_key(party_id: str) -> str:
    """What a party id is compared by: NFKC (full-width digits and letters as ASCII), without
    surrounding white space, in upper case. Records keep the party as written (they are signed);
    every comparison of parties (the gate's index, the Art. 22 rule, the inbox) uses this key."""
    return unicodedata.normalize("NFKC", party_id).strip().upper()


# --- Records -------------------------------------------------------------------------------------


class Area(StrEnum):
    """Where a structure stands: state-owned urban land, or a village."""

    URBAN = "urban"
    VILLAGE = "village"


class PermitKind(StrEnum):
    LAND_USE_PLANNING = "land_use_planning"
    LAND_CERTIFICATE = "land_certificate"
    CONSTRUCTION_PLANNING = "construction_planning"
    TEMPORARY_CONSTRUCTION_PLANNING = "temporary_construction_planning"
    RURAL_CONSTRUCTION_PLANNING = "rural_construction_planning"
    CONSTRUCTION_WORKS = "construction_works"
    PROPERTY_OWNERSHIP = "property_ownership"


class PermitStatus(StrEnum):
    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class CaseKind(StrEnum):
    ILLEGAL_LAND_USE = "illegal_land_use"
    NO_PLANNING_PERMIT = "no_planning_permit"
    DEVIATES_FROM_PERMIT = "deviates_from_permit"
    UNAUTHORIZED_USE_CHANGE = "unauthorized_use_change"
    TEMPORARY_OVERDUE = "temporary_overdue"
    POST_REGISTRATION_CONSTRUCTION = "post_registration_construction"
    STRUCTURAL_DAMAGE = "structural_damage"


class CaseStage(StrEnum):
    REPORTED = "reported"
    FILED = "filed"
    STOP_ORDER = "stop_order"
    RECTIFY_ORDER = "rectify_order"
    DEMOLITION_ORDER = "demolition_order"
    RECTIFIED = "rectified"
    DEMOLISHED = "demolished"
    CLOSED = "closed"
    DISMISSED = "dismissed"


class CaseSource(StrEnum):
    PATROL = "patrol"
    REPORT = "report"
    PETITION = "petition"
    MEDIA = "media"
    SATELLITE = "satellite"


BLOCKING_STAGES: frozenset[CaseStage] = frozenset(
    {CaseStage.FILED, CaseStage.STOP_ORDER, CaseStage.RECTIFY_ORDER, CaseStage.DEMOLITION_ORDER}
)
"""Stages in which a case blocks connections, registrations and blocking offices' permits."""

STAGE_MOVES: dict[CaseStage, frozenset[CaseStage]] = {
    CaseStage.REPORTED: frozenset({CaseStage.FILED, CaseStage.DISMISSED}),
    CaseStage.FILED: frozenset(
        {
            CaseStage.STOP_ORDER,
            CaseStage.RECTIFY_ORDER,
            CaseStage.DEMOLITION_ORDER,
            CaseStage.CLOSED,
            CaseStage.DISMISSED,
        }
    ),
    CaseStage.STOP_ORDER: frozenset(
        {CaseStage.RECTIFY_ORDER, CaseStage.DEMOLITION_ORDER, CaseStage.CLOSED}
    ),
    CaseStage.RECTIFY_ORDER: frozenset({CaseStage.RECTIFIED, CaseStage.DEMOLITION_ORDER}),
    CaseStage.DEMOLITION_ORDER: frozenset({CaseStage.DEMOLISHED}),
    CaseStage.RECTIFIED: frozenset({CaseStage.CLOSED}),
    CaseStage.DEMOLISHED: frozenset({CaseStage.CLOSED}),
    CaseStage.CLOSED: frozenset(),
    CaseStage.DISMISSED: frozenset(),
}
"""Where a case may move from each stage. Staying in the same stage is not a move."""


def may_move(old: CaseStage, new: CaseStage) -> bool:
    """True when a case in stage ``old`` may be updated to stage ``new``."""
    return old == new or new in STAGE_MOVES[old]


PLANNING_PERMITS: dict[Area, frozenset[PermitKind]] = {
    Area.URBAN: frozenset(
        {PermitKind.CONSTRUCTION_PLANNING, PermitKind.TEMPORARY_CONSTRUCTION_PLANNING}
    ),
    Area.VILLAGE: frozenset({PermitKind.RURAL_CONSTRUCTION_PLANNING}),
}
"""The kinds that count as a structure's planning permit, by area."""

PLANNING_PERMIT_NAMED: dict[Area, PermitKind] = {
    Area.URBAN: PermitKind.CONSTRUCTION_PLANNING,
    Area.VILLAGE: PermitKind.RURAL_CONSTRUCTION_PLANNING,
}
"""The kind a reason names when no planning permit is in force."""


# --- Checks --------------------------------------------------------------------------------------


class Utility(StrEnum):
    """Art. 23 service units. All four follow the same rules."""

    WATER = "water"
    POWER = "power"
    GAS = "gas"
    HEAT = "heat"


class ConnectionKind(StrEnum):
    PERMANENT = "permanent"
    TEMPORARY = "temporary"  # construction-period supply


class RegistrationKind(StrEnum):
    INITIAL = "initial"
    TRANSFER = "transfer"
    MORTGAGE = "mortgage"


class Office(StrEnum):
    MARKET_REGULATION = "market_regulation"
    CULTURE = "culture"
    HEALTH = "health"
    TAX = "tax"
    CIVIL_DEFENSE = "civil_defense"
    ENVIRONMENT = "environment"
    FIRE = "fire"


NOTIFYING_OFFICES: Final[frozenset[Office]] = frozenset(
    {Office.MARKET_REGULATION, Office.CULTURE, Office.HEALTH, Office.TAX}
)
"""Art. 13 ¶2: never block; tell the working group when something is wrong."""

BLOCKING_OFFICES: Final[frozenset[Office]] = frozenset(
    {Office.CIVIL_DEFENSE, Office.ENVIRONMENT, Office.FIRE}
)
"""Art. 13 ¶1: must not issue a permit or acceptance for illegal construction."""
